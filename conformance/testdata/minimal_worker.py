"""A minimal procpool worker, written from docs/protocol.md alone, for the
conformance kit's own tests: it knows only the json codec, keeps no journal
and reads no control pipe, and serves the conformance contract's functions.
It is not the project's Python worker library (workers/python)."""

import json
import mmap
import os
import resource
import signal
import struct
import sys
import time

FUNCTIONS = ["conf.echo", "conf.fail", "conf.sleep", "conf.exit", "conf.len", "conf.pid"]
KIND_HELLO, KIND_TASK, KIND_RESULT, KIND_ERROR, KIND_CANCEL, KIND_INIT = 1, 2, 3, 4, 5, 6
CHUNK, SHARED, FROM, DEADLINE = 0x01, 0x02, 0x04, 0x08


def die(msg):
    sys.stderr.write("minimal worker: %s\n" % msg)
    sys.exit(2)


def frame(kind, ident, body):
    return struct.pack("<IBQ", 9 + len(body), kind, ident) + body


class Fail(Exception):
    def __init__(self, message, code=None):
        super().__init__(message)
        self.code = code


def main():
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    env = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("PROCPOOL_")}
    for fd in range(3, 8):
        try:
            os.set_inheritable(fd, False)
        except OSError:
            pass
    max_frame = int(env.get("PROCPOOL_MAX_FRAME") or 67108864)
    for entry in filter(None, env.get("PROCPOOL_RLIMITS", "").split(",")):
        try:
            res, soft, hard = (int(x) for x in entry.split(":"))
            resource.setrlimit(res, (soft, hard))
        except (ValueError, OSError) as e:
            die("PROCPOOL_RLIMITS entry %r: %s" % (entry, e))

    def write(b):
        while b:
            n = os.write(4, b)
            b = b[n:]

    hello = {"protocol": 1, "pid": os.getpid(), "codec": "json", "functions": FUNCTIONS}
    if env.get("PROCPOOL_CODEC") != "json":
        hello["codec"] = ""
        write(frame(KIND_HELLO, 0, json.dumps(hello).encode()))
        die("unknown codec %r" % env.get("PROCPOOL_CODEC"))
    shm = None
    if env.get("PROCPOOL_SHM"):
        shm = mmap.mmap(5, int(env["PROCPOOL_SHM"]), mmap.MAP_SHARED, mmap.PROT_READ)
    write(frame(KIND_HELLO, 0, json.dumps(hello).encode()))

    def read_exact(n):
        buf = b""
        while len(buf) < n:
            chunk = os.read(3, n - len(buf))
            if not chunk:
                return None if not buf else die("end of input inside a frame")
            buf += chunk
        return buf

    def error_frame(ident, message, etype, code=None):
        body = {"message": message, "type": etype}
        if code:
            body["code"] = code
        while True:
            b = json.dumps(body).encode()
            if 9 + len(b) <= max_frame or not body["message"]:
                return frame(KIND_ERROR, ident, b)
            body["message"] = body["message"][: len(body["message"]) * 3 // 4]

    def call(fn, arg):
        if fn == "conf.echo":
            return arg
        if fn == "conf.fail":
            raise ValueError(arg)
        if fn == "conf.sleep":
            time.sleep(arg / 1000)
            return arg
        if fn == "conf.exit":
            os._exit(arg)
        if fn == "conf.len":
            return len(arg)
        if fn == "conf.pid":
            return os.getpid()
        raise Fail("no function %r" % fn, "unknown_function")

    def run(kind, ident, flags, fn, start, payload):
        try:
            try:
                arg = json.loads(bytes(payload))
            except ValueError as e:
                raise Fail("argument: %s" % e, "decode")
            if flags & CHUNK:
                if fn not in FUNCTIONS:
                    raise Fail("no function %r" % fn, "unknown_function")
                if start > len(arg):
                    raise Fail("first item %d of %d" % (start, len(arg)), "decode")
                errs, out = b"", []
                nerr = 0
                for i, item in enumerate(arg[start:]):
                    try:
                        out.append(call(fn, item))
                    except Exception as e:
                        e_json = json.dumps({"message": str(e), "type": type(e).__name__}).encode()
                        errs += struct.pack("<II", i, len(e_json)) + e_json
                        nerr += 1
                        out.append(None)
                body = struct.pack("<I", nerr) + errs + json.dumps(out).encode()
            else:
                body = json.dumps(call(fn, arg)).encode()
            if 9 + len(body) > max_frame:
                raise Fail("the result does not fit the frame limit", "encode")
            return frame(KIND_RESULT, ident, body)
        except Fail as e:
            return error_frame(ident, str(e), "Fail", e.code)
        except Exception as e:
            return error_frame(ident, str(e), type(e).__name__, "init" if kind == KIND_INIT else None)

    while True:
        head = read_exact(4)
        if head is None:
            sys.exit(0)
        (length,) = struct.unpack("<I", head)
        if length < 9 or length > max_frame:
            die("frame length %d" % length)
        rest = read_exact(length)
        if rest is None:
            die("end of input inside a frame")
        kind, ident = struct.unpack_from("<BQ", rest)
        body = memoryview(rest)[9:]
        if kind == KIND_CANCEL:
            continue  # best effort: never skips
        if kind not in (KIND_TASK, KIND_INIT):
            die("unexpected frame kind %d" % kind)
        if len(body) < 3:
            die("task body of %d bytes" % len(body))
        flags, n = body[0], struct.unpack_from("<H", body, 1)[0]
        if flags & 0xF0 or (flags & FROM and not flags & CHUNK) or n == 0 or n > len(body) - 3:
            die("malformed task header")
        fn, pos, start = bytes(body[3 : 3 + n]).decode(), 3 + n, 0
        if flags & FROM:
            if len(body) < pos + 4:
                die("from cut short")
            (start,) = struct.unpack_from("<I", body, pos)
            pos += 4
        if flags & DEADLINE:
            if len(body) < pos + 16:
                die("deadline cut short")
            pos += 16
        payload = body[pos:]
        if flags & SHARED:
            if shm is None or len(payload) != 16:
                die("bad shared-memory reference")
            off, size = struct.unpack("<QQ", payload)
            if off > len(shm) or size > len(shm) - off:
                die("shared-memory reference outside the segment")
            payload = shm[off : off + size]
        write(run(kind, ident, flags, fn, start, payload))


if __name__ == "__main__":
    main()
