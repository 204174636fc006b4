"""The worker's side of docs/protocol.md, frame by frame: a test plays the
parent, starts testing_worker.py with the descriptors and variables a
procpool parent gives, and checks what comes back on fd 4, in the journal
and in the exit status. Linux only (memfd_create).

    python3 -m unittest discover -s workers/python/tests
"""

import json
import mmap
import os
import select
import signal
import struct
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

import procpool_worker as w  # noqa: E402

HDR = struct.Struct("<IBQ")
SCRIPT = os.path.join(HERE, "testing_worker.py")
JOURNAL_SIZE = w.J_MIN + (1 << 20)
TIMEOUT = 20.0


def frame(kind, tid, body=b""):
    return HDR.pack(9 + len(body), kind, tid) + body


def task(tid, name, payload, flags=0, frm=None, deadline=None, kind=w.K_TASK):
    b = bytes([flags]) + struct.pack("<H", len(name)) + name.encode()
    if frm is not None:
        b += struct.pack("<I", frm)
    if deadline is not None:
        b += struct.pack("<qq", *deadline)
    return frame(kind, tid, b + payload)


def wait_file(path, lines=1):
    """Poll until tasks have written lines to path."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            with open(path) as f:
                if f.read().count("\n") >= lines:
                    return
        except FileNotFoundError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError("%s never written" % path)
        time.sleep(0.002)


def cbor(v):
    return w.cbor_dumps(v)


class Worker:
    """A worker process with the parent's end of each descriptor."""

    def __init__(self, codec="cbor", journal=True, control=True, shm=0, grace_ns=300000000, env=None):
        self.tasks_r, self.tasks_w = os.pipe()
        self.res_r, self.res_w = os.pipe()
        fds = {3: self.tasks_r, 4: self.res_w}
        e = {k: v for k, v in os.environ.items() if not k.startswith("PROCPOOL_")}
        e.update({"PROCPOOL_WORKER": "1", "PROCPOOL_CODEC": codec, "PROCPOOL_MAX_FRAME": str(64 << 20),
                  "PROCPOOL_RLIMITS": "", "PROCPOOL_KILL_GRACE": str(grace_ns), "PROCPOOL_PYTHON_CBOR": "pure"})
        self.shm = self.journal = None
        if shm:
            f = os.memfd_create("shm")
            os.ftruncate(f, shm)
            self.shm = mmap.mmap(f, shm)
            fds[5] = f
            e["PROCPOOL_SHM"] = str(shm)
        if journal:
            f = os.memfd_create("journal")
            os.ftruncate(f, JOURNAL_SIZE)
            self.journal = mmap.mmap(f, JOURNAL_SIZE)
            fds[6] = f
            e["PROCPOOL_JOURNAL"] = "6:%d" % JOURNAL_SIZE
        self.ctl_w = None
        if control:
            r, self.ctl_w = os.pipe()
            fds[7] = r
            e["PROCPOOL_CONTROL"] = "7"
        e.update(env or {})
        # Move the sources out of 3..7, then dup them into place.
        moved = {dst: os.dup2(src, 30 + dst) for dst, src in fds.items()}
        self.err_r, err_w = os.pipe()
        actions = [(os.POSIX_SPAWN_DUP2, err_w, 2)] + [(os.POSIX_SPAWN_DUP2, src, dst) for dst, src in moved.items()]
        self.pid = os.posix_spawn(sys.executable, [sys.executable, SCRIPT], e, file_actions=actions, setpgroup=0)
        for f in list(moved.values()) + [err_w]:
            os.close(f)
        for dst, f in fds.items():
            if f not in (self.tasks_w,):
                os.close(f)
        self.buf = b""
        self.status = None
        self.hello = self.read()

    def send(self, *frames):
        os.write(self.tasks_w, b"".join(frames))

    def stop(self, tid, why=1):
        os.write(self.ctl_w, frame(w.K_STOP, tid, bytes([why])))

    def close(self):
        os.close(self.tasks_w)
        self.tasks_w = None

    def read(self):
        """The next frame from fd 4: (kind, id, body); None at end of file."""
        deadline = time.monotonic() + TIMEOUT
        while True:
            if len(self.buf) >= 4:
                n = struct.unpack_from("<I", self.buf)[0]
                if len(self.buf) >= 4 + n:
                    _, kind, tid = HDR.unpack_from(self.buf)
                    body, self.buf = self.buf[13:4 + n], self.buf[4 + n:]
                    if kind == w.K_HELLO:
                        return json.loads(body)
                    return kind, tid, body
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.res_r], [], [], left)[0]:
                raise AssertionError("no frame from the worker in %ss" % TIMEOUT)
            b = os.read(self.res_r, 1 << 20)
            if not b:
                return None
            self.buf += b

    def wait(self):
        """The exit status (143 for a signal's exit, as the shell writes it)."""
        deadline = time.monotonic() + TIMEOUT
        while self.status is None:
            pid, st = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(st)
                break
            if time.monotonic() > deadline:
                raise AssertionError("the worker did not exit")
            time.sleep(0.005)
        return self.status

    def stderr(self):
        out = b""
        while select.select([self.err_r], [], [], 0)[0]:
            b = os.read(self.err_r, 65536)
            if not b:
                break
            out += b
        return out.decode(errors="replace")

    def header(self, i):
        return struct.unpack_from("<Q", self.journal, 8 * i)[0]

    def wait_running(self, tid):
        deadline = time.monotonic() + TIMEOUT
        while self.header(0) != tid:
            if time.monotonic() > deadline:
                raise AssertionError("task %d never ran" % tid)
            time.sleep(0.002)

    def end(self):
        for f in (self.tasks_w, self.ctl_w):
            if f is not None:
                try:
                    os.close(f)
                except OSError:
                    pass
        self.tasks_w = self.ctl_w = None
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except OSError:
            pass
        if self.status is None:
            try:
                self.wait()
            except AssertionError:
                pass
        for f in (self.res_r, self.err_r):
            os.close(f)


class ProtocolTest(unittest.TestCase):
    def worker(self, **kw):
        wk = Worker(**kw)
        self.addCleanup(wk.end)
        return wk

    def result(self, wk, tid):
        kind, got, body = wk.read()
        self.assertEqual((kind, got), (w.K_RESULT, tid), body)
        return w.cbor_loads(body)

    def error(self, wk, tid):
        kind, got, body = wk.read()
        self.assertEqual((kind, got), (w.K_ERROR, tid), body)
        return json.loads(body)

    def test_hello_and_a_task(self):
        wk = self.worker()
        h = wk.hello
        self.assertEqual((h["protocol"], h["pid"], h["codec"], h["journal"], h["control"]), (1, wk.pid, "cbor", True, True))
        self.assertEqual(h["functions"], sorted(h["functions"]))
        self.assertIn("conf.echo", h["functions"])
        wk.send(task(1, "t.square", cbor(7)))
        self.assertEqual(self.result(wk, 1), 49)
        self.assertEqual(wk.header(0), 0)  # no task runs
        wk.close()
        self.assertIsNone(wk.read())
        self.assertEqual(wk.wait(), 0)

    def test_json(self):
        wk = self.worker(codec="json", journal=False, control=False)
        self.assertEqual((wk.hello["codec"], wk.hello.get("journal"), wk.hello.get("control")), ("json", None, None))
        wk.send(task(1, "conf.echo", b'{"a":[1,2.5,"x"]}'))
        kind, _, body = wk.read()
        self.assertEqual((kind, json.loads(body)), (w.K_RESULT, {"a": [1, 2.5, "x"]}))

    def test_cancel_before_begin(self):
        wk = self.worker()
        # All at once: the worker reads the cancel before it begins task 2.
        wk.send(task(1, "conf.sleep", cbor(50)), task(2, "t.square", cbor(3)), frame(w.K_CANCEL, 2),
                frame(w.K_CANCEL, 99), task(3, "t.square", cbor(4)))
        self.assertEqual(self.result(wk, 1), 50)
        self.assertEqual(wk.read(), (w.K_SKIPPED, 2, b""))
        self.assertEqual(self.result(wk, 3), 16)

    def test_stop_before_begin(self):
        wk = self.worker()
        wk.send(task(1, "conf.sleep", cbor(300)), task(2, "t.square", cbor(3)))
        wk.wait_running(1)
        wk.stop(2)
        self.assertEqual(self.result(wk, 1), 300)
        self.assertEqual(wk.read(), (w.K_SKIPPED, 2, b""))
        wk.stop(2)  # answered: ignored
        wk.send(task(3, "t.square", cbor(5)))
        self.assertEqual(self.result(wk, 3), 25)

    def test_stop_running(self):
        wk = self.worker()
        wk.send(task(1, "conf.sleep", cbor(60000)))
        wk.wait_running(1)
        wk.stop(1, 2)  # deadline
        e = self.error(wk, 1)
        self.assertEqual((e["type"], e["code"], e["sentinels"]), ("procpool_worker.TaskStopped", "deadline", ["context.DeadlineExceeded"]))
        self.assertIn("TaskStopped: task stopped: its deadline passed", e["stack"])
        wk.send(task(2, "t.square", cbor(5)))  # the worker lives on
        self.assertEqual(self.result(wk, 2), 25)

    def test_stop_ignored(self):
        wk = self.worker(grace_ns=50000000)
        path = os.path.join(self.tmp(), "hang")
        wk.send(task(1, "t.hang", cbor(path)))
        wait_file(path)
        wk.stop(1)
        self.assertIsNone(wk.read())  # no answer: the worker ends itself
        self.assertEqual(wk.wait(), 143)
        self.assertEqual(wk.header(0), 1)  # the journal says what ran

    def test_stop_grace_zero(self):
        wk = self.worker(grace_ns=0)
        wk.send(task(1, "conf.sleep", cbor(60000)))
        wk.wait_running(1)
        wk.stop(1)
        self.assertIsNone(wk.read())
        self.assertEqual(wk.wait(), 143)

    def test_memory_stop(self):
        wk = self.worker()
        wk.send(task(1, "conf.sleep", cbor(60000)))
        wk.wait_running(1)
        wk.stop(1, 3)  # the task returns within the grace, but the worker exits with it running
        self.assertIsNone(wk.read())
        self.assertEqual(wk.wait(), 143)
        self.assertEqual(wk.header(0), 1)

    def test_sigterm(self):
        wk = self.worker()
        path = os.path.join(self.tmp(), "wait")
        wk.send(task(1, "t.square", cbor(2)), task(2, "t.wait", cbor(path)))
        self.assertEqual(self.result(wk, 1), 4)
        wait_file(path)
        os.kill(wk.pid, signal.SIGTERM)
        self.assertIsNone(wk.read())
        self.assertEqual(wk.wait(), 143)
        with open(path + ".stop") as f:
            self.assertEqual(f.read(), "terminate\n")

    def test_control_pipe_closed(self):
        wk = self.worker()
        wk.send(task(1, "conf.sleep", cbor(60000)))
        wk.wait_running(1)
        os.close(wk.ctl_w)
        wk.ctl_w = None
        self.assertEqual(wk.wait(), 143)

    def test_chunk_from_and_errors(self):
        wk = self.worker()
        wk.send(task(1, "t.item", cbor([1, 5, 2, 10, 3]), flags=w.F_CHUNK | w.F_FROM, frm=1))
        kind, tid, body = wk.read()
        self.assertEqual((kind, tid), (w.K_RESULT, 1))
        nerr = struct.unpack_from("<I", body)[0]
        errs, p = [], 4
        for _ in range(nerr):
            idx, n = struct.unpack_from("<II", body, p)
            errs.append((idx, json.loads(body[p + 8:p + 8 + n])["message"]))
            p += 8 + n
        self.assertEqual(errs, [(0, "item 5"), (2, "item 10")])  # counted from item 1
        self.assertEqual(w.cbor_loads(body[p:]), [None, 20, None, 30])
        wk.send(task(2, "t.item", cbor([1]), flags=w.F_CHUNK | w.F_FROM, frm=2))
        self.assertEqual(self.error(wk, 2)["code"], "decode")

    def test_stop_in_chunk(self):
        # A stop of a chunk: the running item raises TaskStopped, the items
        # after it do not run; the items before keep their results.
        for mode in ("always", "never"):
            wk = self.worker(env={"PROCPOOL_PYTHON_RECORD_ITEMS": mode})
            path = os.path.join(self.tmp(), "steps")
            items = [{"Path": path, "Wait": False}, {"Path": path, "Wait": True}] + [{"Path": path, "Wait": False}] * 1000
            wk.send(task(1, "t.step", cbor(items), flags=w.F_CHUNK))
            wait_file(path, 2)  # item 1 runs
            wk.stop(1, 2)
            kind, tid, body = wk.read()
            self.assertEqual((kind, tid), (w.K_RESULT, 1))
            nerr = struct.unpack_from("<I", body)[0]
            p, idx = 4, []
            for _ in range(nerr):
                i, n = struct.unpack_from("<II", body, p)
                e = json.loads(body[p + 8:p + 8 + n])
                self.assertEqual((e["type"], e["code"]), ("procpool_worker.TaskStopped", "deadline"))
                idx.append(i)
                p += 8 + n
            self.assertEqual(idx, list(range(1, 1002)), mode)
            self.assertEqual(w.cbor_loads(body[p:]), [1] + [None] * 1001)
            with open(path) as f:
                self.assertEqual(len(f.read().split()), 2)  # no item after the stopped one ran
            wk.send(task(2, "t.square", cbor(3)))  # the worker lives on
            self.assertEqual(self.result(wk, 2), 9)

    def test_crash_in_chunk_journal(self):
        wk = self.worker()
        wk.send(task(1, "t.item", cbor([1, 2, 5, -1, 4]), flags=w.F_CHUNK))
        self.assertIsNone(wk.read())
        self.assertEqual(wk.wait(), 3)
        items = wk.header(2)
        self.assertEqual((wk.header(0), items >> 63, items >> 32 & 0x3FFFFFFF), (1, 1, 3))
        n = items & 0xFFFFFFFF
        self.assertEqual(w.cbor_loads(bytes([0x83]) + wk.journal[w.J_LIST_AT:w.J_LIST_AT + n]), [10, 20, None])
        errs = wk.journal[w.J_ERRORS_AT:w.J_ERRORS_AT + wk.header(3)]
        idx, ln = struct.unpack_from("<II", errs)
        self.assertEqual((idx, json.loads(errs[8:8 + ln])["message"]), (2, "item 5"))

    def test_shared_memory(self):
        wk = self.worker(shm=1 << 20)
        data = cbor(bytes(range(256)) * 1000)
        wk.shm[4096:4096 + len(data)] = data
        wk.send(task(1, "t.shared", struct.pack("<QQ", 4096, len(data)), flags=w.F_SHARED))
        self.assertEqual(self.result(wk, 1), {"len": 256000, "shared": True, "sum": 0})

    def tmp(self):
        import tempfile
        d = tempfile.mkdtemp()
        self.addCleanup(lambda: __import__("shutil").rmtree(d, ignore_errors=True))
        return d

    def test_deadline_flag(self):
        wk = self.worker()
        now = time.time_ns()
        wk.send(task(1, "t.deadline", cbor(0), flags=w.F_DEADLINE, deadline=(now + 10 ** 10, 2 * 10 ** 9)))
        left = self.result(wk, 1)
        self.assertTrue(0 < left <= 2, left)  # the timeout, counted from the start, is the earlier
        wk.send(task(2, "conf.fail", cbor("late"), flags=w.F_DEADLINE, deadline=(now - 10 ** 9, 0)))
        e = self.error(wk, 2)
        self.assertEqual((e["message"], e["code"]), ("late", "deadline"))

    def test_init_and_unknown(self):
        wk = self.worker()
        wk.send(task(0, "t.init", cbor(">"), kind=w.K_INIT), task(1, "t.prefixed", cbor("a")), task(2, "nope", cbor(1)))
        self.assertEqual(wk.read()[:2], (w.K_RESULT, 0))
        self.assertEqual(self.result(wk, 1), ">a")
        self.assertEqual(self.error(wk, 2)["code"], "unknown_function")
        wk.send(task(3, "t.square", b"\xff"))  # does not decode
        self.assertEqual(self.error(wk, 3)["code"], "decode")
        wk.send(task(0, "t.init_fail", cbor("no"), kind=w.K_INIT))
        self.assertEqual(self.error(wk, 0)["code"], "init")

    def test_malformed(self):
        for bad in (HDR.pack(5, w.K_TASK, 1), frame(w.K_RESULT, 1), frame(w.K_STOP, 1), frame(w.K_TASK, 1, b"\x10\x01\x00a"),
                    frame(w.K_TASK, 1, b"\x04\x01\x00a"), frame(w.K_TASK, 1, b"\x00\x05\x00ab")):
            wk = Worker()
            try:
                wk.send(task(1, "t.square", cbor(2)))
                self.assertEqual(self.result(wk, 1), 4)
                wk.send(bad)
                self.assertIsNone(wk.read())
                self.assertEqual(wk.wait(), 2, bad)
                self.assertIn("protocol error", wk.stderr())
            finally:
                wk.end()

    def test_eof_answers_everything(self):
        wk = self.worker()
        wk.send(*(task(i, "t.square", cbor(i)) for i in range(1, 50)))
        wk.close()
        for i in range(1, 50):
            self.assertEqual(self.result(wk, i), i * i)
        self.assertIsNone(wk.read())
        self.assertEqual(wk.wait(), 0)

    def test_unknown_codec_and_bad_rlimit(self):
        # An unknown codec: a hello that names none, then exit 2. An rlimit
        # that cannot be set: exit 2 before the hello.
        for env, hello, word in (({"PROCPOOL_CODEC": "msgpack"}, "", "msgpack"),
                                 ({"PROCPOOL_RLIMITS": "7:10:99999999999"}, None, "setrlimit")):
            wk = self.worker(env=env)
            self.assertEqual(wk.hello and wk.hello["codec"], hello)
            self.assertEqual(wk.wait(), 2)
            self.assertIn(word, wk.stderr())

if __name__ == "__main__":
    unittest.main()
