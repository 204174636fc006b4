"""Serve procpool tasks from Python: a worker for a Go program's pool.

A Go program that makes a pool with ``procpool.WithCommand("python3",
"worker.py")`` and declares the functions with ``procpool.Declare`` runs
them in Python processes that speak procpool's worker protocol
(docs/protocol.md). This module is that worker: register the functions,
then call ``run()``::

    import procpool_worker as worker

    @worker.function("stats.words")
    def words(text):
        return len(text.split())

    if __name__ == "__main__":
        worker.run()

Standard library only, Python 3.9 or newer, Linux. One function takes one
argument (the Go call's ``In``, decoded) and returns one value (``Out``,
encoded); raising an exception fails the task with a ``*procpool.RemoteError``
whose ``Type`` is the exception's qualified class name
(``builtins.ValueError``) and whose ``Stack`` is the traceback.

What the worker does for you (see the README beside this file for more):

* Codecs: ``json`` (the standard library) and ``cbor`` (a pure-Python
  encoder and decoder for what the Go side sends, or ``cbor2`` when it is
  importable). docs/protocol.md, "Types in each codec", lists which Go type
  becomes which Python type.
* Large arguments arrive through shared memory and are decoded in place.
* A crash (``os._exit``, a segfault) fails only the task that was running,
  and in a chunk of a Map only the item that was running: the worker keeps
  the journal the parent gives it.
* A cancelled or timed-out task is stopped: ``TaskStopped`` (a
  ``BaseException``) is raised inside it at the next bytecode or
  interruptible system call (``time.sleep``, a blocking read, a lock), by a
  signal to the main thread. A task that lets it propagate, or returns,
  within the pool's kill grace keeps its worker; one that does not is
  ended with its worker.
* ``print()`` in a task goes to the parent's standard output; processes a
  task starts inherit neither the protocol's descriptors nor its
  environment variables, and are killed when the worker exits.
"""

import base64
import datetime
import json
import math
import mmap
import os
import re
import signal
import struct
import sys
import threading
import time
import traceback
from itertools import islice

__all__ = [
    "function",
    "initializer",
    "error_code",
    "error_type",
    "run",
    "is_worker",
    "current_task",
    "TaskInfo",
    "TaskStopped",
    "Tag",
    "CBORError",
    "cbor_dumps",
    "cbor_loads",
]

__version__ = "1.0.0"

PROTOCOL = 1

# ---------------------------------------------------------------------------
# Registration
# ---------------------------------------------------------------------------

_functions = {}  # name -> callable
_sentinels = []  # (exception class, sentinel name), in registration order
_values = []  # (exception class, Go type name, encode callable)


def _register(name, fn, what):
    if not isinstance(name, str) or not (1 <= len(name.encode("utf-8")) <= 65535):
        raise ValueError("procpool_worker.%s: name must be a string of 1 to 65535 bytes, not %r" % (what, name))
    if not callable(fn):
        raise TypeError("procpool_worker.%s(%r): %r is not callable" % (what, name, fn))
    if name in _functions and _functions[name] is not fn:
        raise ValueError("procpool_worker.%s(%r): a function is already registered under this name" % (what, name))
    _functions[name] = fn
    return fn


def function(name=None, fn=None):
    """Register a function that the pool can call by name.

    Three forms::

        @worker.function("text.words")     # under the name given
        def words(text): ...

        @worker.function                    # under the function's own name
        def words(text): ...

        worker.function("text.words", words)

    The function takes one argument and returns one value. The name is the
    one the Go program passes to ``procpool.Declare``. Registering another
    function under a taken name raises ``ValueError``. It returns the
    function, unchanged.
    """
    if callable(name) and fn is None:
        return _register(name.__name__, name, "function")
    if fn is not None:
        return _register(name, fn, "function")

    def deco(f):
        return _register(name if name is not None else f.__name__, f, "function")

    return deco


def initializer(name=None, fn=None):
    """Register a function that the pool runs once per worker, first.

    It is a function like any other (same forms as ``function``): Go's
    ``procpool.WithInitializer(declared, arg)`` makes the parent send it, with
    ``arg``, to every worker before its first task. Its return value is
    ignored; an exception fails the worker's start (``New`` returns a
    ``*procpool.StartError`` wrapping the ``*procpool.RemoteError``). Use it
    to set module-level state that the tasks read::

        model = None

        @worker.initializer("app.load")
        def load(path):
            global model
            model = open(path).read()
    """
    if callable(name) and fn is None:
        return _register(name.__name__, name, "initializer")
    if fn is not None:
        return _register(name, fn, "initializer")

    def deco(f):
        return _register(name if name is not None else f.__name__, f, "initializer")

    return deco


def error_code(cls, name=None):
    """Map an exception class to a Go sentinel error's registered name.

    ``error_code(NotFound, "example.com/app.ErrNotFound")`` makes a task that
    raises ``NotFound`` (or a subclass, or an exception whose ``__cause__``
    or ``__context__`` chain holds one) fail in Go with an error for which
    ``errors.Is(err, ErrNotFound)`` is true, where the Go program registered
    ``procpool.RegisterError("example.com/app.ErrNotFound", ErrNotFound)``.
    Unmapped exceptions arrive as a plain ``*procpool.RemoteError``.

    It also works as a class decorator: ``@worker.error_code("name")``. It
    returns the class. Already mapped: ``FileNotFoundError`` to
    ``io/fs.ErrNotExist``, ``FileExistsError`` to ``io/fs.ErrExist``,
    ``PermissionError`` to ``io/fs.ErrPermission``, ``TimeoutError`` to
    ``os.ErrDeadlineExceeded``, and ``TaskStopped`` to ``context.Canceled``
    or ``context.DeadlineExceeded`` by its reason.
    """
    if isinstance(cls, str) and name is None:
        key = cls

        def deco(c):
            return error_code(c, key)

        return deco
    if not (isinstance(cls, type) and issubclass(cls, BaseException)):
        raise TypeError("procpool_worker.error_code: %r is not an exception class" % (cls,))
    if not isinstance(name, str) or not name:
        raise ValueError("procpool_worker.error_code: the name must be a non-empty string")
    _sentinels.append((cls, name))
    return cls


def error_type(cls, go_type=None, encode=None):
    """Send an exception to Go as a value of a registered Go error type.

    ``error_type(TooBig, "*example.com/app.TooBigError")`` makes
    ``errors.As(err, &target)`` with a ``*app.TooBigError`` target work in
    the Go program that called ``procpool.RegisterErrorType[*app.TooBigError]()``:
    the exception's fields are encoded with the pool's codec and decoded into
    the Go struct (fields matched by name). ``encode(exc)`` returns what to
    encode; by default the exception's public attributes as a dict
    (``{"Limit": 10}`` fills a field ``Limit``). A value that does not encode
    is left out. Returns the class; ``@worker.error_type("*example.com/app.TooBigError")``
    works as a class decorator too.
    """
    if isinstance(cls, str):
        name, enc = cls, go_type if callable(go_type) else encode

        def deco(c):
            return error_type(c, name, enc)

        return deco
    if not (isinstance(cls, type) and issubclass(cls, BaseException)):
        raise TypeError("procpool_worker.error_type: %r is not an exception class" % (cls,))
    if not isinstance(go_type, str) or not go_type:
        raise ValueError("procpool_worker.error_type: the Go type name must be a non-empty string")
    _values.append((cls, go_type, encode))
    return cls


def is_worker():
    """True in a process that a procpool pool started as its worker (before
    ``run()`` removes the marker from the environment, and after)."""
    return _started_as_worker or os.environ.get("PROCPOOL_WORKER") == "1"


_started_as_worker = False


class TaskStopped(BaseException):
    """Raised inside a running task that the parent stopped.

    ``reason`` is ``"cancel"`` (the caller's context, ``Future.Cancel``,
    ``Terminate``), ``"deadline"`` (``Timeout``, ``WithTaskTimeout``, the
    caller's deadline), ``"memory"`` (``WithMaxWorkerMemory``) or
    ``"terminate"`` (SIGTERM). It derives from ``BaseException`` so that an
    ``except Exception`` in the task does not swallow it; clean-up in
    ``finally`` blocks runs. A task that lets it propagate ends within the
    pool's kill grace and keeps its worker (for ``memory`` and
    ``terminate`` the worker exits all the same).
    """

    def __init__(self, reason="cancel"):
        BaseException.__init__(self, "task stopped: " + _STOP_WORDS.get(reason, reason))
        self.reason = reason


_STOP_WORDS = {
    "cancel": "cancelled by the caller",
    "deadline": "its deadline passed",
    "memory": "its worker is over the memory limit",
    "terminate": "the worker got SIGTERM",
}

_sentinels.extend([
    (FileNotFoundError, "io/fs.ErrNotExist"),
    (FileExistsError, "io/fs.ErrExist"),
    (PermissionError, "io/fs.ErrPermission"),
    (TimeoutError, "os.ErrDeadlineExceeded"),
])


class TaskInfo:
    """What ``current_task()`` tells about the task that runs."""

    __slots__ = ("id", "function", "deadline", "shared", "chunk")

    def __init__(self, id, function, deadline, shared, chunk):
        self.id = id  #: the task's id (0 for the initializer)
        self.function = function  #: the registered name
        #: the task's deadline as a time.time() value, or None: the earlier
        #: of the caller's deadline and its timeout counted from its start
        self.deadline = deadline
        self.shared = shared  #: the argument came through shared memory
        self.chunk = chunk  #: the task is a chunk of a Map (one call per item)

    def __repr__(self):
        return "TaskInfo(id=%d, function=%r, deadline=%r, shared=%r, chunk=%r)" % (
            self.id, self.function, self.deadline, self.shared, self.chunk)


def current_task():
    """Return a ``TaskInfo`` for the task that runs now, or None between
    tasks and outside a worker. Useful for the deadline: a task that checks
    ``current_task().deadline`` against ``time.time()`` can stop early and
    return what it has."""
    s = _server
    if s is None or s.cur_task is None:
        return None
    t = s.cur_task
    dl = None
    if s.cur_deadline:
        dl = s.cur_deadline / 1e9
    return TaskInfo(t.id, t.name, dl, t.shared, t.chunk)


# ---------------------------------------------------------------------------
# CBOR (RFC 8949): the subset Go's codec writes, and a little more
# ---------------------------------------------------------------------------


class CBORError(ValueError):
    """Raised for data that is not well-formed CBOR, or a value that has no
    CBOR encoding here."""


class Tag:
    """A CBOR tagged value whose tag has no Python type here (tags 0 and 1
    decode to datetime, 2 and 3 to int). Encodes back to the same tag."""

    __slots__ = ("tag", "value")

    def __init__(self, tag, value):
        self.tag = tag
        self.value = value

    def __eq__(self, other):
        return isinstance(other, Tag) and other.tag == self.tag and other.value == self.value

    def __hash__(self):
        return hash((self.tag, repr(self.value)))

    def __repr__(self):
        return "Tag(%d, %r)" % (self.tag, self.value)


_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_F16 = struct.Struct(">e")
_F32 = struct.Struct(">f")
_F64 = struct.Struct(">d")
_u16 = _U16.unpack_from
_u32 = _U32.unpack_from
_u64 = _U64.unpack_from
_f16 = _F16.unpack_from
_f32 = _F32.unpack_from
_f64 = _F64.unpack_from
_pack_f64 = _F64.pack

_PU16 = struct.Struct(">BH").pack
_PU32 = struct.Struct(">BI").pack
_PU64 = struct.Struct(">BQ").pack

# The encodings of small integers, shared.
_SMALL = [bytes((i,)) if i < 24 else bytes((24, i)) for i in range(256)]
_SMALL_NEG = [bytes((0x20 + i,)) if i < 24 else bytes((0x38, i)) for i in range(256)]  # -1 - i

_MAX_DEPTH = 1000

# Lists of numbers are encoded and decoded a block of _BLOCK items at a
# time where the items of a block share one encoded width.
_BLOCK = 32


def _head(out, major, n):
    m = major << 5
    if n < 24:
        out.append(m | n)
    elif n < 0x100:
        out.append(m | 24)
        out.append(n)
    elif n < 0x10000:
        out.append(m | 25)
        out += _U16.pack(n)
    elif n < 0x100000000:
        out.append(m | 26)
        out += _U32.pack(n)
    else:
        out.append(m | 27)
        out += _U64.pack(n)


def _enc_int(out, v):
    if v >= 0:
        if v < 0x10000000000000000:
            _head(out, 0, v)
        else:
            b = v.to_bytes((v.bit_length() + 7) // 8, "big")
            out.append(0xC2)
            _head(out, 2, len(b))
            out += b
    else:
        n = -1 - v
        if n < 0x10000000000000000:
            _head(out, 1, n)
        else:
            b = n.to_bytes((n.bit_length() + 7) // 8, "big")
            out.append(0xC3)
            _head(out, 2, len(b))
            out += b


def _rfc3339(dt):
    """An aware datetime as an RFC 3339 string, as Go's time.Time reads it."""
    off = dt.utcoffset()
    if off is None:
        raise CBORError("cannot encode a naive datetime (%s): give it a tzinfo, such as datetime.timezone.utc" % dt)
    if off.microseconds or off.seconds % 60:
        dt = dt.astimezone(datetime.timezone.utc)
        off = datetime.timedelta(0)
    s = "%04d-%02d-%02dT%02d:%02d:%02d" % (dt.year, dt.month, dt.day, dt.hour, dt.minute, dt.second)
    if dt.microsecond:
        s += (".%06d" % dt.microsecond).rstrip("0")
    if not off:
        return s + "Z"
    mins = off.days * 1440 + off.seconds // 60
    sign = "+" if mins >= 0 else "-"
    mins = abs(mins)
    return s + "%s%02d:%02d" % (sign, mins // 60, mins % 60)


_RFC3339 = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:\.(\d+))?(?:([Zz])|([+-])(\d\d):(\d\d))\Z")


def _parse_rfc3339(s):
    m = _RFC3339.match(s)
    if m is None:
        raise CBORError("tag 0: %r is not an RFC 3339 date and time" % (s,))
    y, mo, d, h, mi, sec, frac, z, sign, oh, om = m.groups()
    us = int((frac + "000000")[:6]) if frac else 0
    sec = int(sec)
    leap = sec == 60  # a leap second: Go never writes one; read it as :59.999999
    try:
        if z:
            tz = datetime.timezone.utc
        else:
            delta = datetime.timedelta(hours=int(oh), minutes=int(om))
            tz = datetime.timezone(delta if sign == "+" else -delta) if delta else datetime.timezone.utc
        dt = datetime.datetime(int(y), int(mo), int(d), int(h), int(mi), 59 if leap else sec,
                               999999 if leap else us, tz)
    except ValueError as e:
        raise CBORError("tag 0: %r: %s" % (s, e)) from None
    return dt


def _encode_cbor(out, v, depth=0):
    t = type(v)
    if t is int:
        if 0 <= v < 24:
            out.append(v)
        else:
            _enc_int(out, v)
    elif t is str:
        b = v.encode("utf-8", "surrogateescape")
        _head(out, 3, len(b))
        out += b
    elif t is float:
        out.append(0xFB)
        out += _pack_f64(v)
    elif v is None:
        out.append(0xF6)
    elif v is True:
        out.append(0xF5)
    elif v is False:
        out.append(0xF4)
    elif t is list or t is tuple:
        if depth >= _MAX_DEPTH:
            raise CBORError("value nested deeper than %d levels (a cycle?)" % _MAX_DEPTH)
        _head(out, 4, len(v))
        d = depth + 1
        if len(v) >= _BLOCK:
            _encode_blocks(out, v, d)
            return
        ap = out.append
        for x in v:
            if type(x) is int:
                if 0 <= x:
                    if x < 24:
                        ap(x)
                    elif x < 0x100:
                        out += _SMALL[x]
                    elif x < 0x10000:
                        out += _PU16(0x19, x)
                    elif x < 0x100000000:
                        out += _PU32(0x1A, x)
                    elif x < 0x10000000000000000:
                        out += _PU64(0x1B, x)
                    else:
                        _enc_int(out, x)
                elif x >= -24:
                    ap(0x1F - x)
                else:
                    _enc_int(out, x)
            else:
                _encode_cbor(out, x, d)
    elif t is dict:
        if depth >= _MAX_DEPTH:
            raise CBORError("value nested deeper than %d levels (a cycle?)" % _MAX_DEPTH)
        _head(out, 5, len(v))
        d = depth + 1
        for k, x in v.items():
            _encode_cbor(out, k, d)
            _encode_cbor(out, x, d)
    elif t is bytes or t is bytearray or t is memoryview:
        _head(out, 2, len(v) if t is not memoryview else v.nbytes)
        out += v
    else:
        _encode_other(out, v, depth)


# Encoding a list a block at a time: for _BLOCK ints of one width (or
# floats), one struct call writes them all; then the heads are set.
_PACKS = {}
for _b, _f in ((0x18, "B"), (0x19, "H"), (0x1A, "I"), (0x1B, "Q"), (0x38, "B"), (0x39, "H"), (0x3A, "I"),
               (0x3B, "Q"), (0xFB, "d")):
    _st = struct.Struct(">" + ("x" + _f) * _BLOCK)
    _PACKS[_b] = (_st.size, _st.pack_into, bytes((_b,)) * _BLOCK, _st.size // _BLOCK)
del _b, _f, _st
_INT = {int}
_FLOAT = {float}


def _int_block_head(lo, hi):
    """The head byte that every int in [lo, hi] is encoded with, or 0."""
    if lo >= 0:
        if hi < 24:
            return 1
        if lo >= 24:
            if hi < 0x100:
                return 0x18
            if lo >= 0x100:
                if hi < 0x10000:
                    return 0x19
                if lo >= 0x10000:
                    if hi < 0x100000000:
                        return 0x1A
                    if lo >= 0x100000000 and hi < 0x10000000000000000:
                        return 0x1B
        return 0
    if hi < 0:
        h = _int_block_head(-1 - hi, -1 - lo)
        return h + 0x20 if h > 1 else (2 if h == 1 else 0)
    return 0


def _encode_blocks(out, v, d):
    n = len(v)
    i = 0
    skip = 0
    ap = out.append
    while i < n:
        if not skip and n - i >= _BLOCK:
            blk = v[i:i + _BLOCK]
            h = 0
            try:
                lo, hi = min(blk), max(blk)
            except TypeError:  # not all numbers
                lo = hi = None
            if type(lo) is int and type(hi) is int:
                h = _int_block_head(lo, hi)
                # Between lo and hi there may be other numbers: bools (0
                # and 1, so only where lo < 24), floats and the like, which
                # struct refuses below.
                if h and lo < 24 and set(map(type, blk)) != _INT:
                    h = 0
            elif type(lo) is float and set(map(type, blk)) == _FLOAT:
                h = 0xFB
            if h == 1:
                out += bytes(blk)
                i += _BLOCK
                continue
            if h == 2:  # -24 .. -1
                out += bytes([0x1F - x for x in blk])
                i += _BLOCK
                continue
            if h:
                size, pack_into, heads, w = _PACKS[h]
                at = len(out)
                out += bytes(size)
                try:
                    pack_into(out, at, *(blk if h < 0x38 or h == 0xFB else [-1 - x for x in blk]))
                except (struct.error, TypeError):
                    del out[at:]
                else:
                    out[at:at + size:w] = heads
                    i += _BLOCK
                    continue
            skip = _BLOCK
        elif skip:
            skip -= 1
        x = v[i]
        i += 1
        if type(x) is int and 0 <= x < 24:
            ap(x)
        else:
            _encode_cbor(out, x, d)


def _encode_other(out, v, depth):
    if isinstance(v, bool):
        out.append(0xF5 if v else 0xF4)
    elif isinstance(v, int):
        _enc_int(out, int(v))
    elif isinstance(v, float):
        out.append(0xFB)
        out += _pack_f64(float(v))
    elif isinstance(v, str):
        _encode_cbor(out, str(v), depth)
    elif isinstance(v, (bytes, bytearray)):
        _encode_cbor(out, bytes(v), depth)
    elif isinstance(v, datetime.datetime):
        out.append(0xC0)
        _encode_cbor(out, _rfc3339(v), depth)
    elif isinstance(v, Tag):
        _head(out, 6, v.tag)
        _encode_cbor(out, v.value, depth + 1)
    elif isinstance(v, (list, tuple)):
        _encode_cbor(out, list(v), depth)
    elif isinstance(v, dict):
        _encode_cbor(out, dict(v), depth)
    elif _is_dataclass(v):
        _encode_cbor(out, _dataclass_dict(v), depth)
    else:
        raise CBORError("cannot encode a value of type %s.%s in CBOR" % (type(v).__module__, type(v).__qualname__))


def _is_dataclass(v):
    return hasattr(type(v), "__dataclass_fields__") and not isinstance(v, type)


def _dataclass_dict(v):
    """A dataclass instance's fields by name (not recursively: the encoder
    goes on into the values)."""
    import dataclasses
    return {f.name: getattr(v, f.name) for f in dataclasses.fields(v)}


def cbor_dumps(v):
    """Encode v as CBOR: int (any size: beyond 64 bits as a bignum), float
    (64-bit), str, bytes, bytearray, None, bool, list, tuple, dict, aware
    datetime (tag 0, RFC 3339), dataclass instances (as a map of their
    fields), Tag. Raises CBORError for anything else."""
    out = bytearray()
    try:
        _encode_cbor(out, v)
    except RecursionError:
        raise CBORError("value nested too deeply (a cycle?)") from None
    return bytes(out)


def _dec_arg(data, pos, ai):
    """The argument of a head whose additional information is ai >= 24."""
    if ai == 24:
        return data[pos], pos + 1
    if ai == 25:
        return _u16(data, pos)[0], pos + 2
    if ai == 26:
        return _u32(data, pos)[0], pos + 4
    if ai == 27:
        return _u64(data, pos)[0], pos + 8
    raise CBORError("reserved additional information %d at byte %d" % (ai, pos - 1))


_BREAK = object()


def _decode_cbor(data, pos, depth):
    ib = data[pos]
    pos += 1
    major = ib >> 5
    ai = ib & 31
    if major == 7:
        if ai < 20:
            return Tag(-1, ai), pos  # an unassigned simple value: never written by Go
        if ai == 20:
            return False, pos
        if ai == 21:
            return True, pos
        if ai == 22 or ai == 23:
            return None, pos
        if ai == 27:
            return _f64(data, pos)[0], pos + 8
        if ai == 26:
            return _f32(data, pos)[0], pos + 4
        if ai == 25:
            return _f16(data, pos)[0], pos + 2
        if ai == 31:
            return _BREAK, pos
        if ai == 24:
            if data[pos] < 32:
                raise CBORError("simple value %d in two bytes at byte %d" % (data[pos], pos))
            return Tag(-1, data[pos]), pos + 1
        raise CBORError("reserved additional information %d at byte %d" % (ai, pos - 1))
    if ai < 24:
        n = ai
    elif ai == 31:
        return _decode_indefinite(data, pos, major, depth)
    else:
        n, pos = _dec_arg(data, pos, ai)
    if major == 0:
        return n, pos
    if major == 1:
        return -1 - n, pos
    if major == 2 or major == 3:
        end = pos + n
        if end > len(data):
            raise CBORError("a string of %d bytes runs past the end of the data" % n)
        if major == 2:
            return bytes(data[pos:end]), end
        return str(data[pos:end], "utf-8", "surrogateescape"), end
    if depth >= _MAX_DEPTH:
        raise CBORError("data nested deeper than %d levels" % _MAX_DEPTH)
    if major == 4:
        if n > len(data) - pos:
            raise CBORError("an array of %d items in %d bytes" % (n, len(data) - pos))
        return _decode_array(data, pos, n, depth + 1)
    if major == 5:
        if n > (len(data) - pos) // 2:
            raise CBORError("a map of %d pairs in %d bytes" % (n, len(data) - pos))
        m = {}
        d = depth + 1
        for _ in range(n):
            k, pos = _decode_cbor(data, pos, d)
            v, pos = _decode_cbor(data, pos, d)
            if k is _BREAK or v is _BREAK:
                raise CBORError("unexpected break at byte %d" % (pos - 1))
            m[_key(k)] = v
        return m, pos
    # major 6: a tag
    v, pos = _decode_cbor(data, pos, depth + 1)
    if v is _BREAK:
        raise CBORError("unexpected break at byte %d" % (pos - 1))
    return _tagged(n, v), pos


# Runs of numbers of one width decode a block at a time: struct formats of
# _BLOCK items with the head byte skipped, by head byte (for a Map over
# ints, whose encodings come in runs of one width).
_RUNS = {}
for _b, _w, _f in ((0x18, 2, "B"), (0x19, 3, "H"), (0x1A, 5, "I"), (0x1B, 9, "Q"),
                   (0x38, 2, "B"), (0x39, 3, "H"), (0x3A, 5, "I"), (0x3B, 9, "Q"), (0xFB, 9, "d"), (0xFA, 5, "f")):
    _RUNS[_b] = (_w, struct.Struct(">" + ("x" + _f) * _BLOCK).unpack_from, bytes((_b,)) * _BLOCK, _b & 0xE0 == 0x20)
del _b, _w, _f


def _decode_array(data, pos, n, d):
    lst = []
    append = lst.append
    extend = lst.extend
    left = n
    skip = 0  # items to decode one by one before trying a block again
    while left:
        b = data[pos]
        if left >= _BLOCK and not skip:
            if b < 24:
                seg = data[pos:pos + _BLOCK]
                if max(seg) < 24:
                    extend(seg)
                    pos += _BLOCK
                    left -= _BLOCK
                    continue
            else:
                r = _RUNS.get(b)
                if r is not None:
                    w, unpack, heads, neg = r
                    end = pos + w * _BLOCK
                    if data[pos:end:w] == heads:
                        if neg:
                            extend([-1 - x for x in unpack(data, pos)])
                        else:
                            extend(unpack(data, pos))
                        pos = end
                        left -= _BLOCK
                        continue
            skip = _BLOCK
        elif skip:
            skip -= 1
        left -= 1
        if b < 24:
            append(b)
            pos += 1
        elif b < 28:
            if b == 24:
                append(data[pos + 1])
                pos += 2
            elif b == 25:
                append(_u16(data, pos + 1)[0])
                pos += 3
            elif b == 26:
                append(_u32(data, pos + 1)[0])
                pos += 5
            else:
                append(_u64(data, pos + 1)[0])
                pos += 9
        elif 0x20 <= b < 0x38:
            append(0x1F - b)
            pos += 1
        else:
            v, pos = _decode_cbor(data, pos, d)
            if v is _BREAK:
                raise CBORError("unexpected break at byte %d" % (pos - 1))
            append(v)
    return lst, pos


def _key(k):
    if type(k) is list:
        return tuple(_key(x) for x in k)
    if type(k) is dict:
        raise CBORError("a map key that is a map")
    return k


def _tagged(tag, v):
    if tag == 0:
        if type(v) is not str:
            raise CBORError("tag 0 on a %s, not a text string" % type(v).__name__)
        return _parse_rfc3339(v)
    if tag == 1:
        if type(v) not in (int, float) or v != v or v in (math.inf, -math.inf):
            raise CBORError("tag 1 on %r, not a number" % (v,))
        try:
            return datetime.datetime.fromtimestamp(v, datetime.timezone.utc)
        except (OverflowError, OSError, ValueError) as e:
            raise CBORError("tag 1: %r: %s" % (v, e)) from None
    if tag == 2 or tag == 3:
        if type(v) is not bytes:
            raise CBORError("tag %d on a %s, not a byte string" % (tag, type(v).__name__))
        n = int.from_bytes(v, "big")
        return n if tag == 2 else -1 - n
    if tag == 55799:  # self-described CBOR
        return v
    return Tag(tag, v)


def _decode_indefinite(data, pos, major, depth):
    if major in (0, 1, 6):
        raise CBORError("indefinite length on major type %d at byte %d" % (major, pos - 1))
    if depth >= _MAX_DEPTH:
        raise CBORError("data nested deeper than %d levels" % _MAX_DEPTH)
    d = depth + 1
    if major == 2 or major == 3:
        parts = []
        while True:
            v, pos = _decode_cbor(data, pos, d)
            if v is _BREAK:
                break
            if (major == 2 and type(v) is not bytes) or (major == 3 and type(v) is not str):
                raise CBORError("a chunk of another type in an indefinite-length string")
            parts.append(v)
        return (b"" if major == 2 else "").join(parts), pos
    if major == 4:
        lst = []
        while True:
            v, pos = _decode_cbor(data, pos, d)
            if v is _BREAK:
                return lst, pos
            lst.append(v)
    m = {}
    while True:
        k, pos = _decode_cbor(data, pos, d)
        if k is _BREAK:
            return m, pos
        v, pos = _decode_cbor(data, pos, d)
        if v is _BREAK:
            raise CBORError("a map key without a value")
        m[_key(k)] = v


def cbor_loads(data):
    """Decode one CBOR data item that fills data (bytes, bytearray or a
    memoryview): unsigned and negative integers of any size (bignums too),
    floats of 16, 32 and 64 bits, text (invalid UTF-8 kept with
    surrogateescape), bytes, arrays (lists), maps (dicts; array keys become
    tuples), null and undefined (None), booleans, tag 0 and 1 times (aware
    datetimes, to the microsecond), indefinite lengths. Other tags become
    Tag objects. Raises CBORError for malformed or truncated data."""
    try:
        v, pos = _decode_cbor(data, 0, 0)
    except (IndexError, struct.error):
        raise CBORError("the data ends in the middle of an item") from None
    except RecursionError:
        raise CBORError("data nested too deeply") from None
    except TypeError as e:  # an unhashable map key
        raise CBORError("%s" % e) from None
    if v is _BREAK:
        raise CBORError("a break outside an indefinite-length item")
    if pos != len(data):
        raise CBORError("%d bytes after the data item" % (len(data) - pos))
    return v


# ---------------------------------------------------------------------------
# Codecs as the worker uses them
# ---------------------------------------------------------------------------


class _CBORCodec:
    name = "cbor"
    null = b"\xf6"
    sep = b""
    tail = b""

    def __init__(self, lib=None):
        self.lib = lib
        if lib is not None:
            self._lib_loads = lib.loads
            self._lib_dumps = lib.dumps

    def loads(self, data):
        if self.lib is None:
            if type(data) is memoryview:
                data = bytes(data)  # one copy: bytes index faster than a memoryview
            return cbor_loads(data)
        try:
            v = self._lib_loads(data)
        except Exception:
            # Invalid UTF-8 in a text string (which cbor2 refuses and this
            # module keeps), or malformed data: decode as without cbor2.
            return cbor_loads(data)
        return _from_cbor2(v, self.lib)

    def dumps(self, v):
        if type(v) is int and 0 <= v < 0x100:
            return _SMALL[v]
        if self.lib is None:
            out = bytearray()
            _encode_cbor(out, v)
            return out
        try:
            return self._lib_dumps(v, default=_cbor2_default, datetime_as_timestamp=False)
        except Exception:
            # A string with surrogate escapes, a naive datetime: encode as
            # without cbor2 (which also says why a value has no encoding).
            out = bytearray()
            _encode_cbor(out, v)
            return out

    def item(self, v):
        """The encoding of one item of a list."""
        if type(v) is int:
            if 0 <= v:
                if v < 0x100:
                    return _SMALL[v]
                if v < 0x10000:
                    return _PU16(0x19, v)
                if v < 0x100000000:
                    return _PU32(0x1A, v)
                if v < 0x10000000000000000:
                    return _PU64(0x1B, v)
            elif -0x100 <= v:
                return _SMALL_NEG[-1 - v]
        out = bytearray()
        _encode_cbor(out, v)
        return out

    def head(self, n):
        out = bytearray()
        _head(out, 4, n)
        return out


def _cbor2_default(encoder, v):
    if isinstance(v, Tag):
        encoder.encode(_cbor2_tag(v.tag, v.value))
    elif _is_dataclass(v):
        encoder.encode(_dataclass_dict(v))
    else:
        raise CBORError("cannot encode a value of type %s.%s in CBOR" % (type(v).__module__, type(v).__qualname__))


def _cbor2_tag(tag, value):
    return sys.modules["cbor2"].CBORTag(tag, value)


def _from_cbor2(v, lib):
    """cbor2's values as this module's: undefined as None, tags it does not
    know as Tag. (It gives its own types for some tags that Go does not
    write: Decimal for 4 and 5, UUID for 37, set for 258, ...)"""
    t = type(v)
    if t is list:
        for i, x in enumerate(v):
            if type(x) not in (int, str, float, bytes, bool) and x is not None:
                v[i] = _from_cbor2(x, lib)
        return v
    if t is dict:
        if any(type(k) not in (int, str) for k in v):
            return {_from_cbor2(k, lib): _from_cbor2(x, lib) for k, x in v.items()}
        for k, x in v.items():
            if type(x) not in (int, str, float, bytes, bool) and x is not None:
                v[k] = _from_cbor2(x, lib)
        return v
    if t is tuple:  # an array as a map key
        return tuple(_from_cbor2(x, lib) for x in v)
    if t is lib.CBORTag:
        return Tag(v.tag, _from_cbor2(v.value, lib))
    if v is getattr(lib, "undefined", None):
        return None
    simple = getattr(lib, "CBORSimpleValue", None)
    if simple is not None and isinstance(v, simple):
        return Tag(-1, v.value)
    return v


def _json_default(v):
    if isinstance(v, (bytes, bytearray, memoryview)):
        return base64.b64encode(v).decode("ascii")
    if isinstance(v, datetime.datetime):
        return _rfc3339(v)
    if _is_dataclass(v):
        return _dataclass_dict(v)
    if isinstance(v, Tag):
        return v.value
    raise TypeError("cannot encode a value of type %s.%s in JSON" % (type(v).__module__, type(v).__qualname__))


class _JSONCodec:
    name = "json"
    null = b"null"
    sep = b","
    tail = b"]"

    def __init__(self):
        self._enc = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False,
                                     default=_json_default).encode

    def loads(self, data):
        if type(data) is memoryview:
            data = bytes(data)
        return json.loads(data)

    def dumps(self, v):
        return self._enc(v).encode("utf-8", "surrogatepass")

    def item(self, v):
        if type(v) is int:
            return b"%d" % v
        return self._enc(v).encode("utf-8", "surrogatepass")

    def head(self, n):
        return b"["


def _codec(name):
    if name == "json":
        return _JSONCodec()
    if name == "cbor":
        choice = os.environ.get("PROCPOOL_PYTHON_CBOR", "")
        if choice != "pure":
            try:
                import cbor2
            except ImportError:
                if choice == "cbor2":
                    raise
                cbor2 = None
            return _CBORCodec(cbor2)
        return _CBORCodec()
    return None


# ---------------------------------------------------------------------------
# The protocol
# ---------------------------------------------------------------------------

K_HELLO, K_TASK, K_RESULT, K_ERROR, K_CANCEL, K_INIT, K_SKIPPED, K_STOP = 1, 2, 3, 4, 5, 6, 7, 8
F_CHUNK, F_SHARED, F_FROM, F_DEADLINE = 0x01, 0x02, 0x04, 0x08

_HDR = struct.Struct("<IBQ")  # length, kind, id
_hdr_pack_into = _HDR.pack_into
_hdr_unpack_from = _HDR.unpack_from
_U16LE = struct.Struct("<H").unpack_from
_U32LE = struct.Struct("<I")
_DEADLINE = struct.Struct("<qq").unpack_from
_SHMREF = struct.Struct("<QQ").unpack_from
HEADER = 13
HELLO_LIMIT = 1 << 20
DEFAULT_MAX_FRAME = 64 << 20

# The journal (docs/protocol.md, "Journal").
J_HEADER = 40
J_ANSWERS = 256 << 10
J_ERRORS = 64 << 10
J_ERRORS_AT = J_HEADER + J_ANSWERS
J_LIST_AT = J_ERRORS_AT + J_ERRORS
J_MIN = J_LIST_AT
ITEMS_BEGUN = 1 << 63
ITEM_STEP = 1 << 32  # one more item in the journal's items field
# A chunk's items are recorded in the journal one by one when its
# function's items have taken this long (nanoseconds) or more, or no chunk
# of the function has run yet in this worker; faster items run unrecorded,
# since recording one costs about a microsecond (a crash then fails the
# whole chunk, as without a journal). PROCPOOL_PYTHON_RECORD_ITEMS=always or
# never overrides it.
RECORD_ITEMS_NS = 20000

STOP_REASONS = {1: "cancel", 2: "deadline", 3: "memory"}
EXIT_STOPPED = 143

FD_TASKS, FD_RESULTS, FD_SHM, FD_JOURNAL, FD_CONTROL = 3, 4, 5, 6, 7

_ENV = ("PROCPOOL_WORKER", "PROCPOOL_CODEC", "PROCPOOL_MAX_FRAME", "PROCPOOL_RLIMITS", "PROCPOOL_SHM",
        "PROCPOOL_JOURNAL", "PROCPOOL_CONTROL", "PROCPOOL_KILL_GRACE")

# The signal the control thread sends the main thread to raise TaskStopped
# in the task that runs there.
STOP_SIGNAL = signal.SIGRTMIN + 3 if hasattr(signal, "SIGRTMIN") else signal.SIGUSR2


class ProtocolError(Exception):
    pass


class _Task:
    __slots__ = ("kind", "id", "flags", "name", "frm", "deadline", "timeout", "payload", "skip", "shared", "chunk")

    def __init__(self, kind, id, flags, name, frm, deadline, timeout, payload):
        self.kind = kind
        self.id = id
        self.flags = flags
        self.name = name
        self.frm = frm
        self.deadline = deadline
        self.timeout = timeout
        self.payload = payload
        self.skip = False
        self.shared = bool(flags & F_SHARED)
        self.chunk = bool(flags & F_CHUNK)


def _qualname(cls):
    mod = getattr(cls, "__module__", None) or "builtins"
    return mod + "." + getattr(cls, "__qualname__", cls.__name__)


def _exc_chain(e):
    """e and the exceptions it was raised from or while handling, outermost
    first, at most 32, each once."""
    chain = []
    seen = set()
    while e is not None and len(chain) < 32 and id(e) not in seen:
        seen.add(id(e))
        chain.append(e)
        if e.__cause__ is not None:
            e = e.__cause__
        elif not e.__suppress_context__:
            e = e.__context__
        else:
            e = None
    return chain


class _Server:
    def __init__(self):
        self.run_lock = threading.Lock()
        self.out_lock = threading.Lock()
        self.running = 0
        self.stop_for = 0
        self.stop_why = None
        self.exiting = False
        self.in_user = False
        self.cur_task = None
        self.cur_deadline = 0
        self.grace_until = None  # monotonic time a stopped task must end by
        self.grace_id = 0
        self.jm = None
        self.jhdr = None
        self.jans = 0
        self.shm = None
        self.control_fd = None
        self.ahead = []
        self.took = {}  # function name -> nanoseconds an item (or task) takes, averaged
        # When to record a chunk's items in the journal: "auto" (see
        # RECORD_ITEMS_NS), "always" or "never".
        self.record_items = os.environ.get("PROCPOOL_PYTHON_RECORD_ITEMS", "auto")
        self.cur_id = 0
        self.cur_skip = False

    # -- set-up -------------------------------------------------------------

    def fail(self, msg, code=2):
        sys.stderr.write("procpool worker %d (python): %s\n" % (os.getpid(), msg))
        sys.stderr.flush()
        os._exit(code)

    def setup(self):
        env = os.environ
        cfg = {k: env.get(k) for k in _ENV}
        for k in _ENV:
            env.pop(k, None)
        for fd in (FD_TASKS, FD_RESULTS, FD_SHM, FD_JOURNAL, FD_CONTROL):
            try:
                os.set_inheritable(fd, False)
            except OSError:
                pass
        self.ppid = os.getppid()
        _set_subreaper()
        signal.signal(signal.SIGINT, signal.SIG_IGN)

        limits = cfg["PROCPOOL_RLIMITS"] or ""
        if limits:
            import resource
            for part in limits.split(","):
                try:
                    r, soft, hard = (int(x) for x in part.split(":"))
                except ValueError:
                    self.fail("bad PROCPOOL_RLIMITS entry %r" % part)
                inf = resource.RLIM_INFINITY
                soft = inf if soft >= 0xFFFFFFFFFFFFFFFF else soft
                hard = inf if hard >= 0xFFFFFFFFFFFFFFFF else hard
                try:
                    resource.setrlimit(r, (soft, hard))
                except (OSError, ValueError) as e:
                    self.fail("setrlimit(%d, %d, %d): %s" % (r, soft, hard, e))

        mf = cfg["PROCPOOL_MAX_FRAME"]
        try:
            self.max_frame = int(mf) if mf else DEFAULT_MAX_FRAME
            if self.max_frame < 9:
                raise ValueError
        except ValueError:
            self.fail("bad PROCPOOL_MAX_FRAME=%r" % mf)
        if self.record_items not in ("auto", "always", "never"):
            self.fail("bad PROCPOOL_PYTHON_RECORD_ITEMS=%r: auto, always or never" % self.record_items)
        g = cfg["PROCPOOL_KILL_GRACE"]
        try:
            self.grace = int(g) / 1e9 if g else 0.3
            if self.grace < 0:
                raise ValueError
        except ValueError:
            self.fail("bad PROCPOOL_KILL_GRACE=%r" % g)

        codec_name = cfg["PROCPOOL_CODEC"] or "cbor"
        try:
            self.codec = _codec(codec_name)
        except ImportError as e:
            self.codec = None
            why = "cbor2 was asked for with PROCPOOL_PYTHON_CBOR=cbor2 and cannot be imported: %s" % e
        else:
            why = "the codec %r is not supported by the Python worker (it knows cbor and json)" % codec_name
        if self.codec is None:
            # A hello that names no codec tells the parent which one this
            # worker lacks; then exit.
            self.write_all(self.frame(K_HELLO, 0, json.dumps({"protocol": PROTOCOL, "pid": os.getpid(), "codec": "", "functions": []}).encode()))
            self.fail(why)

        shm = cfg["PROCPOOL_SHM"]
        if shm:
            try:
                size = int(shm)
                if size <= 0:
                    raise ValueError
            except ValueError:
                self.fail("bad PROCPOOL_SHM=%r" % shm)
            try:
                self.shm = memoryview(mmap.mmap(FD_SHM, size, mmap.MAP_SHARED, mmap.PROT_READ))
            except (OSError, ValueError) as e:
                self.fail("shared memory: %s" % e)
        j = cfg["PROCPOOL_JOURNAL"]
        if j:
            try:
                fd, size = (int(x) for x in j.split(":"))
                if size < J_MIN + (1 << 20):
                    raise ValueError
            except ValueError:
                self.fail("bad PROCPOOL_JOURNAL=%r" % j)
            try:
                self.jm = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            except (OSError, ValueError) as e:
                self.fail("journal: %s" % e)
            self.jmv = memoryview(self.jm)
            # The five header fields, each written with one 8-byte store.
            self.jhdr = self.jmv[:J_HEADER].cast("Q")
            if sys.byteorder != "little":
                self.fail("the journal needs a little-endian machine")
            for i in range(5):
                self.jhdr[i] = 0
            self.jlist = self.jmv[J_LIST_AT:]
            self.jlist_size = size - J_LIST_AT
        c = cfg["PROCPOOL_CONTROL"]
        if c:
            try:
                self.control_fd = int(c)
                os.fstat(self.control_fd)
            except (ValueError, OSError):
                self.fail("bad PROCPOOL_CONTROL=%r" % c)

        # The reader's buffer, and a way to tell what waits in fd 3.
        self.buf = bytearray(256 << 10)
        self.bufmv = memoryview(self.buf)
        self.rpos = 0
        self.wpos = 0
        self.eof = False
        import fcntl
        import termios
        self._ioctl = fcntl.ioctl
        self._fionread = termios.FIONREAD
        self._avail = bytearray(4)

        # print() in a task reaches the parent's output as it is written.
        for f in (sys.stdout, sys.stderr):
            try:
                if f is not None and not f.isatty():
                    f.reconfigure(line_buffering=True)
            except (AttributeError, ValueError, OSError):
                pass

    # -- signals and the watchdog thread ---------------------------------------

    def start_watchdog(self):
        self.main_ident = threading.main_thread().ident
        self.wake_r, self.wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        signal.signal(STOP_SIGNAL, self._on_stop_signal)
        signal.signal(signal.SIGTERM, self._on_sigterm)
        signal.signal(signal.SIGWINCH, self._on_sigwinch)
        # The watchdog thread blocks the signals, so that the kernel gives
        # the process's SIGTERM to the main thread, whose blocking call (a
        # task's sleep, a read) it interrupts, instead of to the watchdog.
        mine = {signal.SIGTERM, signal.SIGWINCH, STOP_SIGNAL}
        old = signal.pthread_sigmask(signal.SIG_BLOCK, mine)
        try:
            t = threading.Thread(target=self._watchdog, name="procpool-watchdog", daemon=True)
            t.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)

    def _on_stop_signal(self, signum, frame):
        # Runs in the main thread, between bytecodes. It raises only inside
        # the task's own code (in_user), and at most once per stop.
        if self.in_user and self.stop_why is not None:
            self.in_user = False
            raise TaskStopped(self.stop_why)

    def _on_sigterm(self, signum, frame):
        try:
            os.write(self.wake_w, b"T")
        except OSError:
            pass
        if self.in_user:
            self.in_user = False
            if self.stop_why is None:
                self.stop_why = "terminate"
            raise TaskStopped("terminate")

    def _on_sigwinch(self, signum, frame):
        try:
            os.write(self.wake_w, b"W")
        except OSError:
            pass

    def _watchdog(self):
        import select
        p = select.poll()
        p.register(self.wake_r, select.POLLIN)
        ctl = self.control_fd
        cbuf = bytearray()
        if ctl is not None:
            p.register(ctl, select.POLLIN)
        terminate_until = None
        while True:
            timeout = None
            now = time.monotonic()
            for until in (self.grace_until, terminate_until):
                if until is not None:
                    left = max(0.0, until - now)
                    timeout = left if timeout is None else min(timeout, left)
            events = p.poll(None if timeout is None else int(timeout * 1000) + 1)
            for fd, ev in events:
                if fd == self.wake_r:
                    try:
                        got = os.read(self.wake_r, 64)
                    except OSError:
                        got = b""
                    if b"W" in got and os.getppid() != self.ppid:
                        self.die()
                    if b"T" in got and terminate_until is None:
                        terminate_until = self._terminate()
                elif fd == ctl:
                    try:
                        data = os.read(ctl, 4096)
                    except OSError:
                        data = b""
                    if not data:
                        self.die()  # the parent is gone
                    cbuf += data
                    while len(cbuf) >= 4:
                        n = _U32LE.unpack_from(cbuf, 0)[0]
                        if n < 9 or n > 1024:
                            self.die()
                        if len(cbuf) < 4 + n:
                            break
                        length, kind, tid = _hdr_unpack_from(cbuf, 0)
                        why = cbuf[HEADER] if n > 9 else 1
                        del cbuf[:4 + n]
                        if kind == K_STOP:
                            self.stop(tid, STOP_REASONS.get(why, "cancel"))
            now = time.monotonic()
            if self.grace_until is not None and now >= self.grace_until:
                with self.run_lock:
                    if self.running == self.grace_id and self.running:
                        self.die()
                    self.grace_until = None
            if terminate_until is not None and now >= terminate_until:
                with self.run_lock:
                    self.flush()
                    self.die()

    def stop(self, tid, why):
        with self.run_lock:
            if tid == 0:
                return
            if self.running != tid:
                self.stop_for = tid
                return
            if self.grace <= 0:
                self.die()
            if self.stop_why is None:
                self.stop_why = why
            self._interrupt()
            if self.grace_until is None or self.grace_id != tid:
                self.grace_id = tid
                self.grace_until = time.monotonic() + self.grace

    def _interrupt(self):
        try:
            signal.pthread_kill(self.main_ident, STOP_SIGNAL)
        except OSError:
            pass

    def _terminate(self):
        """SIGTERM: begin no further task; give the running one the grace to
        end; then write out the answers and exit. Returns when to exit."""
        with self.run_lock:
            self.exiting = True
            if not self.running or self.grace <= 0:
                self.flush()
                self.die()
            if self.stop_why is None:
                self.stop_why = "terminate"
            self._interrupt()
        return time.monotonic() + self.grace

    def die(self):
        """End the worker now: sweep what the tasks started, exit 143."""
        for f in (sys.stdout, sys.stderr):
            try:
                f.flush()
            except Exception:
                pass
        _sweep()
        os._exit(EXIT_STOPPED)

    # -- answers ------------------------------------------------------------

    @staticmethod
    def frame(kind, tid, body):
        f = bytearray(HEADER)
        _hdr_pack_into(f, 0, 9 + len(body), kind, tid)
        f += body
        return f

    def write_all(self, data):
        n = os.write(FD_RESULTS, data)
        if n < len(data):
            mv = memoryview(data)
            while n < len(mv):
                n += os.write(FD_RESULTS, mv[n:])

    def flush(self):
        """Write out the answers in the journal's area (for an exit)."""
        with self.out_lock:
            if self.jans:
                try:
                    self.write_all(self.jmv[J_HEADER:J_HEADER + self.jans])
                finally:
                    self.jans = 0
                    self.jhdr[1] = 0

    def answer(self, frame):
        """Record the answer to the task that ran (or was skipped) and, in
        the same step, that no task runs; then write it out (this worker
        writes every answer before it reads the next task)."""
        with self.run_lock:
            if self.running and (self.exiting or self.stop_why in ("memory", "terminate")):
                # Stopped for the worker's memory or its SIGTERM: the answer
                # is not its own outcome. Exit with it running; the parent
                # fails it with the worker's exit (or runs it again).
                self.stop_now()
            with self.out_lock:
                jh = self.jhdr
                n = len(frame)
                if jh is not None:
                    # Rule 2: the frame into the answer area, then "no task
                    # runs", each with one 8-byte store.
                    jans = self.jans
                    if jans and jans + n > J_ANSWERS:
                        self.write_all(self.jmv[J_HEADER:J_HEADER + jans])
                        jans = self.jans = 0
                        jh[1] = 0
                    if n <= J_ANSWERS:
                        at = J_HEADER + jans
                        self.jmv[at:at + n] = frame
                        self.jans = jans = jans + n
                        jh[1] = jans
                    else:  # larger than the area: straight to the pipe
                        self.write_all(frame)
                    if self.running:
                        jh[0] = 0
                self.running = 0
                self.cur_task = None
                self.grace_until = None
                # Rule 3: write the area out, then empty it.
                if jh is None:
                    self.write_all(frame)
                elif self.jans:
                    self.write_all(frame if self.jans == n else self.jmv[J_HEADER:J_HEADER + self.jans])
                    self.jans = 0
                    jh[1] = 0

    def stop_now(self):
        """End the worker with the running task unanswered, after writing out
        the answers of the tasks before it. Call with run_lock held."""
        self.flush()
        self.die()

    def begin(self, t):
        """Mark t as running, unless a stop for it came first (then it is
        skipped: False)."""
        with self.run_lock:
            if self.exiting:
                self.stop_now()
            if self.stop_for == t.id:
                self.stop_for = 0
                return False
            self.stop_for = 0
            self.stop_why = None
            self.running = t.id
            self.cur_task = t
            dl = t.deadline
            if t.timeout > 0:
                d2 = time.time_ns() + t.timeout
                if dl <= 0 or d2 < dl:
                    dl = d2
            self.cur_deadline = dl if dl > 0 else 0
            jh = self.jhdr
            if jh is not None:
                jh[2] = 0
                jh[3] = 0
                jh[4] = 0
                jh[0] = t.id
            return True

    # -- errors ---------------------------------------------------------------

    def error_body(self, e, code=None, skip_frames=1):
        tb = e.__traceback__
        for _ in range(skip_frames):
            if tb is not None and tb.tb_next is not None:
                tb = tb.tb_next
        try:
            stack = "".join(traceback.format_exception(type(e), e, tb))
        except Exception:
            stack = ""
        try:
            msg = str(e)
        except Exception:
            msg = "<the exception's str() failed>"
        chain = _exc_chain(e)
        body = {"message": msg, "type": _qualname(type(e)), "stack": stack, "panic": True,
                "chain": [_qualname(type(x)) for x in chain]}
        if code:
            body["code"] = code
        elif self.cur_deadline and time.time_ns() >= self.cur_deadline:
            body["code"] = "deadline"
        sentinels = []
        values = []
        for x in chain:
            if isinstance(x, TaskStopped):
                name = "context.DeadlineExceeded" if x.reason == "deadline" else "context.Canceled"
                if x.reason == "deadline" and "code" not in body:
                    body["code"] = "deadline"
                if name not in sentinels:
                    sentinels.append(name)
            for cls, name in _sentinels:
                if isinstance(x, cls) and name not in sentinels:
                    sentinels.append(name)
            for cls, go_type, enc in _values:
                if isinstance(x, cls):
                    try:
                        v = enc(x) if enc is not None else {k: w for k, w in vars(x).items() if not k.startswith("_")}
                        data = bytes(self.codec.dumps(v))
                    except Exception:
                        continue
                    values.append({"type": go_type, "codec": self.codec.name, "data": base64.b64encode(data).decode("ascii")})
        if sentinels:
            body["sentinels"] = sentinels
        if values:
            body["values"] = values
        return body

    def error_frame(self, tid, body):
        """An error frame, shortened to fit the frame limit as the protocol
        says: the stack cut, then values, chain dropped, the message and the
        type cut, sentinels dropped."""
        mark = " [cut to fit the frame limit]"

        def enc():
            b = json.dumps(body, separators=(",", ":")).encode("utf-8")
            return self.frame(K_ERROR, tid, b)

        f = enc()
        if len(f) - 4 <= self.max_frame:
            return f

        def cut(key):
            full = body.get(key, "")
            lo, hi, best = 0, len(full), -1
            while lo <= hi:
                mid = (lo + hi) // 2
                body[key] = full[:mid] + mark
                if len(enc()) - 4 <= self.max_frame:
                    best, lo = mid, mid + 1
                else:
                    hi = mid - 1
            body[key] = full[:best] + mark if best >= 0 else ""

        for step in (lambda: cut("stack"), lambda: body.pop("values", None), lambda: body.pop("chain", None),
                     lambda: cut("message"), lambda: cut("type"), lambda: body.pop("sentinels", None)):
            step()
            f = enc()
            if len(f) - 4 <= self.max_frame:
                break
        return f

    def fail_task(self, tid, message, code, type_=""):
        self.answer(self.error_frame(tid, {"message": message, "type": type_, "code": code}))

    # -- reading tasks ----------------------------------------------------------

    def _fill(self):
        """Read more bytes into the buffer; False at end of file."""
        buf = self.buf
        if self.rpos == self.wpos:
            self.rpos = self.wpos = 0
        elif self.wpos == len(buf):
            n = self.wpos - self.rpos
            buf[:n] = buf[self.rpos:self.wpos]
            self.rpos, self.wpos = 0, n
        got = os.readv(FD_TASKS, [self.bufmv[self.wpos:]])
        if got == 0:
            return False
        self.wpos += got
        return True

    def _available(self):
        try:
            self._ioctl(FD_TASKS, self._fionread, self._avail, True)
        except OSError:
            return 0
        return int.from_bytes(self._avail, sys.byteorder)

    def _next_frame(self, block):
        """Parse the next whole frame from the buffer, reading if block (or
        if bytes wait in the pipe). Returns (kind, id, body) or None."""
        while True:
            have = self.wpos - self.rpos
            if have >= HEADER:
                length, kind, tid = _hdr_unpack_from(self.buf, self.rpos)
                if length < 9 or length > self.max_frame:
                    raise ProtocolError("a frame's length field is %d, outside 9..%d" % (length, self.max_frame))
                if kind not in (K_TASK, K_CANCEL, K_INIT):
                    raise ProtocolError("a frame of kind %d on the task pipe" % kind)
                total = 4 + length
                if have >= total:
                    start = self.rpos + HEADER
                    self.rpos += total
                    return kind, tid, start, self.rpos, self.buf
                if total > len(self.buf):
                    return self._big_frame(kind, tid, total)
            if self.eof:
                if have:
                    raise ProtocolError("the task pipe ended in the middle of a frame")
                return None
            if not block and self._available() == 0:
                return None
            if not self._fill():
                self.eof = True

    def _big_frame(self, kind, tid, total):
        """A frame larger than the buffer, read into a buffer of its own."""
        body = bytearray(total - HEADER)
        have = self.wpos - self.rpos - HEADER
        body[:have] = self.buf[self.rpos + HEADER:self.wpos]
        self.rpos = self.wpos = 0
        mv = memoryview(body)
        while have < len(body):
            n = os.readv(FD_TASKS, [mv[have:]])
            if n == 0:
                raise ProtocolError("the task pipe ended in the middle of a frame")
            have += n
        return kind, tid, 0, len(body), body

    def accept(self, fr):
        kind, tid, start, end, buf = fr
        if kind == K_CANCEL:
            if tid == self.cur_id:
                self.cur_skip = True
            for t in self.ahead:
                if t.id == tid:
                    t.skip = True
            return
        if end - start < 3:
            raise ProtocolError("a task body of %d bytes" % (end - start))
        flags = buf[start]
        if flags & 0xF0 or (flags & F_FROM and not flags & F_CHUNK):
            raise ProtocolError("task flags 0x%02x" % flags)
        nlen = _U16LE(buf, start + 1)[0]
        p = start + 3 + nlen
        if nlen == 0 or p > end:
            raise ProtocolError("a function name of %d bytes in a task body of %d" % (nlen, end - start))
        mv = self.bufmv if buf is self.buf else memoryview(buf)
        name = str(mv[start + 3:p], "utf-8", "surrogateescape")
        frm = 0
        deadline = timeout = 0
        if flags & F_FROM:
            if p + 4 > end:
                raise ProtocolError("a chunk's first item index cut short")
            frm = _U32LE.unpack_from(buf, p)[0]
            p += 4
        if flags & F_DEADLINE:
            if p + 16 > end:
                raise ProtocolError("a task's deadline cut short")
            deadline, timeout = _DEADLINE(buf, p)
            p += 16
        if flags & F_SHARED:
            if end - p != 16 or self.shm is None:
                raise ProtocolError("a shared-memory reference of %d bytes" % (end - p))
            off, n = _SHMREF(buf, p)
            if off > len(self.shm) or n > len(self.shm) - off:
                raise ProtocolError("a shared-memory reference [%d, +%d) outside the segment" % (off, n))
            payload = self.shm[off:off + n]
        elif buf is self.buf:
            payload = bytes(mv[p:end])  # the buffer is reused: one copy
        else:
            payload = mv[p:end]  # a frame's own buffer
        self.ahead.append(_Task(kind, tid, flags, name, frm, deadline, timeout, payload))

    # -- running tasks --------------------------------------------------------

    def serve(self):
        ahead = self.ahead
        while True:
            read_ahead = bool(ahead)
            while not ahead:
                fr = self._next_frame(True)
                if fr is None:
                    return
                self.accept(fr)
            t = ahead.pop(0)
            # Read what has already arrived, so that a cancel for this task
            # (or one behind it) is seen before it begins.
            self.cur_id, self.cur_skip = t.id, False
            while True:
                if self.wpos - self.rpos < HEADER and not read_ahead:
                    break
                fr = self._next_frame(False)
                if fr is None:
                    break
                self.accept(fr)
            skip = t.skip or self.cur_skip
            self.cur_id = 0
            if skip:
                self.answer(self.frame(K_SKIPPED, t.id, b""))
                continue
            if t.kind == K_TASK:
                if not self.begin(t):
                    self.answer(self.frame(K_SKIPPED, t.id, b""))
                    continue
            else:
                self.cur_task = t
                self.cur_deadline = 0
            if t.chunk:
                self.run_chunk(t)
            else:
                self.run_one(t)

    def invoke(self, fn, arg):
        """Run the task's own code, where a stop may raise TaskStopped."""
        try:
            self.in_user = True
            if self.stop_why is not None:
                self.in_user = False
                raise TaskStopped(self.stop_why)
            v = fn(arg)
            self.in_user = False
            return True, v
        except BaseException as e:
            self.in_user = False
            return False, e

    def run_one(self, t):
        fn = _functions.get(t.name)
        if fn is None:
            self.fail_task(t.id, 'no function registered as "%s" in worker %d (python)' % (t.name, os.getpid()),
                           "unknown_function")
            return
        codec = self.codec
        try:
            arg = codec.loads(t.payload)
        except Exception as e:
            self.fail_task(t.id, "decoding the argument: %s" % (e,), "decode", _qualname(type(e)))
            return
        try:
            ok, v = self.invoke(fn, arg)
        except BaseException as e:  # a stop that landed outside the function's frame
            self.in_user = False
            ok, v = False, e
        arg = None
        if not ok:
            code = "init" if t.kind == K_INIT else None
            self.answer(self.error_frame(t.id, self.error_body(v, code, skip_frames=1)))
            return
        f = bytearray(HEADER)
        try:
            f += codec.dumps(v)
        except Exception as e:
            self.fail_task(t.id, "encoding the result: %s" % (e,), "encode", _qualname(type(e)))
            return
        n = len(f) - 4
        if n > self.max_frame:
            self.fail_task(t.id, "the result's frame is %d bytes (length field %d), over the frame limit of %d (WithMaxFrame)"
                           % (len(f), n, self.max_frame), "encode")
            return
        _hdr_pack_into(f, 0, n, K_RESULT, t.id)
        self.answer(f)

    def run_chunk(self, t):
        fn = _functions.get(t.name)
        if fn is None:
            self.fail_task(t.id, 'no function registered as "%s" in worker %d (python)' % (t.name, os.getpid()),
                           "unknown_function")
            return
        codec = self.codec
        try:
            args = codec.loads(t.payload)
            if type(args) is not list:
                raise ValueError("a chunk's payload is a %s, not a list" % type(args).__name__)
        except Exception as e:
            self.fail_task(t.id, "decoding the arguments: %s" % (e,), "decode", _qualname(type(e)))
            return
        frm = t.frm
        if frm > len(args):
            self.fail_task(t.id, "first item %d of a chunk of %d" % (frm, len(args)), "decode")
            return
        n = len(args) - frm
        # Each item's outcome goes into the journal as it finishes, so that
        # a crash fails only the item that was running, when that costs
        # little next to the items themselves: for a function whose items
        # have taken RECORD_ITEMS_NS or more, or whose first chunk this is.
        mode = self.record_items
        took = self.took.get(t.name)
        record = self.jhdr is not None and n >= 2 and (
            mode == "always" or mode == "auto" and (took is None or took >= RECORD_ITEMS_NS))
        t0 = time.perf_counter_ns()
        if record:
            f = self._chunk_recorded(t, fn, args, frm, n)
        else:
            f = self._chunk_fast(t, fn, args, frm, n)
        if f is None:
            return  # answered already
        self._took(t.name, (time.perf_counter_ns() - t0) // max(n, 1))
        length = len(f) - 4
        if length > self.max_frame:
            self.fail_task(t.id, "the chunk's result frame is %d bytes (length field %d), over the frame limit of %d (WithMaxFrame)"
                           % (len(f), length, self.max_frame), "encode")
            return
        _hdr_pack_into(f, 0, length, K_RESULT, t.id)
        self.answer(f)

    def _took(self, name, ns):
        old = self.took.get(name)
        self.took[name] = ns if old is None else (3 * old + ns) // 4

    def _item_error(self, e):
        return json.dumps(self.error_body(e, skip_frames=1), separators=(",", ":")).encode("utf-8")

    def _stopped_items(self, why, k, n, errs):
        """A stop came: items k.. do not run (for memory and SIGTERM the
        worker exits at once, with the item before them running)."""
        if why in ("memory", "terminate") or self.exiting:
            with self.run_lock:
                self.stop_now()
        eb = self._item_error(TaskStopped(why))
        for j in range(k, n):
            errs.append((j, eb))

    def _chunk_header(self, errs):
        f = bytearray(HEADER)
        f += _U32LE.pack(len(errs))
        for idx, eb in errs:
            f += _U32LE.pack(idx)
            f += _U32LE.pack(len(eb))
            f += eb
        return f

    def _chunk_fast(self, t, fn, args, frm, n):
        """The items one after the other, their results encoded as one list
        at the end; a crash fails the whole chunk."""
        out = []
        ap = out.append
        errs = []
        srv = self
        while len(out) < n:
            k = len(out)
            why = srv.stop_why
            if why is not None:
                self._stopped_items(why, k, n, errs)
                out.extend([None] * (n - k))
                break
            try:
                srv.in_user = True
                for x in (args if frm + k == 0 else islice(args, frm + k, None)):
                    ap(fn(x))
                srv.in_user = False
            except BaseException as e:
                # The item that raised, or (for a stop that landed between
                # two items) the one about to run, is the next one.
                srv.in_user = False
                k = len(out)
                if k >= n:
                    break
                if isinstance(e, TaskStopped) and (e.reason in ("memory", "terminate") or srv.exiting):
                    with srv.run_lock:
                        srv.stop_now()
                errs.append((k, srv._item_error(e)))
                ap(None)
        f = self._chunk_header(errs)
        try:
            f += self.codec.dumps(out)
        except Exception as e:
            self.fail_task(t.id, "encoding the results: %s" % (e,), "encode", _qualname(type(e)))
            return None
        return f

    def _chunk_recorded(self, t, fn, args, frm, n):
        """The items one after the other, each one's outcome recorded in the
        journal as it finishes (docs/protocol.md, "Journal", rule 4)."""
        codec = self.codec
        item = codec.item
        sep = codec.sep
        null = codec.null
        jh = self.jhdr
        jl = self.jlist
        jl_size = self.jlist_size
        jmv = self.jmv
        errs = []  # (index, JSON)
        parts = []  # encoded results that did not fit the list area
        pos = 0  # bytes of the list area in use
        err_used = 0
        overflow = False
        hdr = ITEMS_BEGUN
        jh[2] = hdr
        srv = self
        i = 0
        landed = None  # a stop that landed outside the function (below)
        stopped = stopped_eb = None
        while i < n:
            try:
                while i < n:
                    why = srv.stop_why
                    if landed is not None:
                        ok, v, landed = False, landed, None
                    elif why is not None:
                        # Stopped: the items left do not run, and share one
                        # error.
                        if why in ("memory", "terminate") or srv.exiting:
                            with srv.run_lock:
                                srv.stop_now()
                        if stopped is None:
                            stopped = TaskStopped(why)
                            stopped_eb = srv._item_error(stopped)
                        ok, v = False, stopped
                    else:
                        try:
                            srv.in_user = True
                            v = fn(args[frm + i])
                            srv.in_user = False
                            ok = True
                        except BaseException as e:
                            srv.in_user = False
                            ok, v = False, e
                    if ok:
                        try:
                            b = item(v)
                        except Exception as e:
                            srv.fail_task(t.id, "encoding the results: item %d: %s" % (i, e), "encode", _qualname(type(e)))
                            return None
                    else:
                        if isinstance(v, TaskStopped) and v.reason in ("memory", "terminate"):
                            with srv.run_lock:
                                srv.stop_now()
                        eb = stopped_eb if v is stopped else srv._item_error(v)
                        errs.append((i, eb))
                        b = null
                        if not overflow:
                            if err_used + 8 + len(eb) > J_ERRORS:
                                overflow = True
                            else:
                                at = J_ERRORS_AT + err_used
                                jmv[at:at + 8] = _U32LE.pack(i) + _U32LE.pack(len(eb))
                                jmv[at + 8:at + 8 + len(eb)] = eb
                                err_used += 8 + len(eb)
                                jh[3] = err_used
                    if not overflow:
                        if i and sep:
                            b = sep + b
                        end = pos + len(b)
                        if end <= jl_size:
                            jl[pos:end] = b
                            pos = end
                            hdr += ITEM_STEP
                            jh[2] = hdr + pos  # item i has finished: one 8-byte store
                            i += 1
                            continue
                        overflow = True
                        if i and sep:
                            b = b[len(sep):]
                    jh[4] = i + 2
                    parts.append(b)
                    i += 1
            except TaskStopped as e:
                # A stop landed after the function returned or raised and
                # before the worker noted it (in_user was still set): item
                # i, not yet recorded, failed with it.
                srv.in_user = False
                landed = e
        f = self._chunk_header(errs)
        f += codec.head(n)
        f += jl[:pos]
        if parts:
            if sep and pos:
                f += sep
            f += sep.join(parts)
        f += codec.tail
        return f

    def hello(self):
        h = {"protocol": PROTOCOL, "pid": os.getpid(), "codec": self.codec.name,
             "functions": sorted(_functions)}
        if self.jhdr is not None:
            h["journal"] = True
        if self.control_fd is not None:
            h["control"] = True
        f = self.frame(K_HELLO, 0, json.dumps(h, separators=(",", ":")).encode("utf-8"))
        if len(f) - 4 > max(self.max_frame, HELLO_LIMIT):
            self.fail("the hello frame, which lists the %d registered functions, is %d bytes, over its limit of %d"
                      % (len(_functions), len(f), max(self.max_frame, HELLO_LIMIT)))
        self.write_all(f)


_server = None

# The public classes' names, as the Go side sees them in error types, are
# the same when this file runs as a script.
for _c in (TaskStopped, Tag, TaskInfo, CBORError):
    _c.__module__ = "procpool_worker"
del _c


def _set_subreaper():
    """Make this process a child subreaper, so that what the tasks start
    stays its descendant (best effort)."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except Exception:
        pass


def _read_stat(pid):
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            b = f.read()
    except OSError:
        return None
    i = b.rfind(b")")
    if i < 0:
        return None
    fields = b[i + 1:].split()
    if len(fields) < 3:
        return None
    try:
        return fields[0], int(fields[1]), int(fields[2])  # state, ppid, pgrp
    except ValueError:
        return None


def _pids():
    try:
        return [int(n) for n in os.listdir("/proc") if n.isdigit()]
    except OSError:
        return []


def _has_live_child():
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return True
    for t in tasks:
        try:
            with open("/proc/self/task/%s/children" % t, "rb") as f:
                kids = f.read().split()
        except OSError:
            return True
        for k in kids:
            st = _read_stat(int(k))
            if st is not None and st[0] != b"Z":
                return True
    return False


def _sweep():
    """SIGKILL every descendant of this process, then the other processes of
    its group (docs/protocol.md: the sweep on the way out)."""
    me = os.getpid()
    try:
        if _has_live_child():
            killed = set()
            quiet = 0
            for _ in range(50):
                if quiet >= 2:
                    break
                children = {}
                for pid in _pids():
                    if pid == me:
                        continue
                    st = _read_stat(pid)
                    if st is not None and st[0] != b"Z":
                        children.setdefault(st[1], []).append(pid)
                fresh = False
                queue = list(children.get(me, ()))
                while queue:
                    pid = queue.pop()
                    queue.extend(children.get(pid, ()))
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        continue
                    if pid not in killed:
                        killed.add(pid)
                        fresh = True
                quiet = 0 if fresh else quiet + 1
        pgrp = os.getpgrp()
        if pgrp == me:
            for _ in range(5):
                found = False
                for pid in _pids():
                    if pid == me:
                        continue
                    st = _read_stat(pid)
                    if st is not None and st[0] != b"Z" and st[2] == pgrp:
                        try:
                            os.kill(pid, signal.SIGKILL)
                            found = True
                        except OSError:
                            pass
                if not found:
                    break
    except Exception:
        pass


def run():
    """Serve tasks until the parent closes the task pipe, then exit (status
    0). Call it once, in the main thread, after registering the functions.

    It never returns. Started by anything but a procpool pool (no
    ``PROCPOOL_WORKER=1`` in the environment) it prints why and exits with
    status 2. A malformed frame from the parent ends the worker with status
    2; a stop whose task does not end within the kill grace, SIGTERM, the end
    of the control pipe or the parent's death end it with status 143, after
    it has killed the processes its tasks started.
    """
    global _server, _started_as_worker
    if os.environ.get("PROCPOOL_WORKER") != "1":
        sys.stderr.write("procpool_worker: this program serves a procpool pool: start it from Go with "
                         "procpool.New(procpool.WithCommand(\"python3\", \"%s\"), ...)\n" % (sys.argv[0] if sys.argv else "worker.py"))
        sys.stderr.flush()
        os._exit(2)
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("procpool_worker.run() must be called in the main thread")
    _started_as_worker = True
    s = _Server()
    _server = s
    s.setup()
    s.start_watchdog()
    s.hello()
    code = 0
    try:
        s.serve()
    except ProtocolError as e:
        try:
            s.flush()
        except OSError:
            pass
        sys.stderr.write("procpool worker %d (python): protocol error: %s\n" % (os.getpid(), e))
        code = 2
    except OSError as e:
        sys.stderr.write("procpool worker %d (python): %s\n" % (os.getpid(), e))
        code = 2
    try:
        s.flush()
    except OSError:
        pass
    for f in (sys.stdout, sys.stderr):
        try:
            f.flush()
        except Exception:
            pass
    _sweep()
    os._exit(code)


def _main(argv):
    """python3 procpool_worker.py SCRIPT_OR_MODULE: import the functions'
    module (a .py path or a module name), then serve."""
    if len(argv) < 2:
        sys.stderr.write("usage: python3 -m procpool_worker SCRIPT.py|MODULE\n")
        return 2
    # The script's "import procpool_worker" must find this very module.
    sys.modules["procpool_worker"] = sys.modules[__name__]
    target = argv[1]
    sys.argv = argv[1:]
    if target.endswith(".py") or os.sep in target:
        import runpy
        sys.path.insert(0, os.path.dirname(os.path.abspath(target)))
        runpy.run_path(target, run_name="__procpool_worker__")
    else:
        import importlib
        importlib.import_module(target)
    run()
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv))
