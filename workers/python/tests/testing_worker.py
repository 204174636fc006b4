"""The functions workers/python/python_test.go calls: the conformance
contract's (conf.*) and the Go tests' own (t.*)."""

import datetime
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import procpool_worker as worker  # noqa: E402
import conformance_worker  # noqa: E402,F401  (registers conf.*)


class NotFound(Exception):
    """Mapped to the Go sentinel the tests register."""


worker.error_code(NotFound, "procpool.test/python.ErrNotFound")


@worker.error_type("*github.com/procpool/procpool/workers/python_test.TooBigError")
class TooBig(Exception):
    def __init__(self, limit):
        Exception.__init__(self, "over the limit of %d" % limit)
        self.Limit = limit


prefix = ""


@worker.initializer("t.init")
def init(p):
    global prefix
    prefix = p
    return None


@worker.initializer("t.init_fail")
def init_fail(msg):
    raise RuntimeError(msg)


@worker.function("t.prefixed")
def prefixed(s):
    return prefix + s


worker.function("t.floats", conformance_worker.echo)


@worker.function("t.square")
def square(x):
    return x * x


@worker.function("t.types")
def types(x):
    """The Python types of what arrived, and the value back."""
    def describe(v):
        if isinstance(v, dict):
            return {str(k): describe(w) for k, w in v.items()}
        if isinstance(v, list):
            return [describe(w) for w in v]
        return type(v).__name__
    return {"types": describe(x), "value": x}


@worker.function("t.now")
def now(_):
    return datetime.datetime(2024, 2, 29, 23, 59, 58, 123456, tzinfo=datetime.timezone(datetime.timedelta(hours=-5)))


@worker.function("t.not_found")
def not_found(name):
    try:
        open(name)
    except FileNotFoundError as e:
        raise NotFound("no such thing: " + name) from e


@worker.function("t.too_big")
def too_big(n):
    raise TooBig(n)


@worker.function("t.missing_file")
def missing_file(path):
    open(path)


@worker.function("t.touch")
def touch(path):
    """Appends a line to path (one per run), returns the pid."""
    with open(path, "a") as f:
        f.write("%d\n" % os.getpid())
    return os.getpid()


@worker.function("t.touch_then_exit")
def touch_then_exit(path):
    with open(path, "a") as f:
        f.write("%d\n" % os.getpid())
    os._exit(3)


@worker.function("t.hang")
def hang(path):
    """Marks path, then ignores stops for ever (an except that swallows
    TaskStopped): the worker must be ended for it."""
    with open(path, "a") as f:
        f.write("%d\n" % os.getpid())
    while True:
        try:
            time.sleep(3600)
        except BaseException:
            pass


@worker.function("t.wait")
def wait(path):
    """Marks path, then sleeps until stopped; on the stop, writes 'stopped'
    to path + '.stop' and lets TaskStopped propagate."""
    with open(path, "a") as f:
        f.write("%d\n" % os.getpid())
    try:
        time.sleep(3600)
    except worker.TaskStopped as e:
        with open(path + ".stop", "a") as f:
            f.write(e.reason + "\n")
        raise
    return 0


@worker.function("t.step")
def step(arg):
    """A chunk item: appends a line to arg["Path"]; with arg["Wait"], then
    sleeps until stopped."""
    with open(arg["Path"], "a") as f:
        f.write("%d\n" % os.getpid())
    if arg["Wait"]:
        time.sleep(3600)
    return 1


@worker.function("t.alloc")
def alloc(mb):
    """Holds mb MiB (touched), then sleeps until stopped."""
    block = bytearray(mb << 20)
    for i in range(0, len(block), 4096):
        block[i] = 1
    time.sleep(3600)
    return len(block)


@worker.function("t.shared")
def shared(b):
    """The length of b and whether it came through shared memory."""
    return {"len": len(b), "shared": worker.current_task().shared,
            "sum": sum(b[::4096]) if isinstance(b, bytes) else 0}


@worker.function("t.item")
def item(x):
    """A chunk item: fails for multiples of 5, exits for -1."""
    if x == -1:
        os._exit(3)
    if x % 5 == 0:
        raise ValueError("item %d" % x)
    return x * 10


@worker.function("t.item_log")
def item_log(arg):
    """Appends its value to the file, then exits the worker for -1."""
    path, x = arg["Path"], arg["X"]
    with open(path, "a") as f:
        f.write("%d\n" % x)
    if x == -1:
        os._exit(3)
    return x


@worker.function("t.print")
def print_(s):
    print("from python:", s)
    return len(s)


@worker.function("t.child")
def child(_):
    """Starts a child that sleeps; returns its pid, and what of the
    protocol it inherited (open fds 3-7, PROCPOOL_ variables)."""
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"], close_fds=False)
    leaked = []
    for fd in range(3, 8):
        try:
            if os.readlink("/proc/%d/fd/%d" % (p.pid, fd)) == os.readlink("/proc/self/fd/%d" % fd):
                leaked.append(fd)
        except OSError:
            pass
    env = sorted(k for k in os.environ if k.startswith("PROCPOOL_") and k != "PROCPOOL_PYTHON_CBOR")
    return {"pid": p.pid, "fds": leaked, "env": env}


@worker.function("t.rlimit")
def rlimit(resource_number):
    import resource
    return list(resource.getrlimit(resource_number))


@worker.function("t.big")
def big(n):
    return "x" * n


@worker.function("t.deadline")
def deadline(_):
    t = worker.current_task()
    return -1.0 if t.deadline is None else t.deadline - time.time()


if __name__ == "__main__":
    worker.run()
