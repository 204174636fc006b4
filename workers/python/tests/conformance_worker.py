"""The conformance contract's functions (conf.*), served by the Python
worker and nothing else. See the conformance kit for what each must do."""

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import procpool_worker as worker  # noqa: E402


@worker.function("conf.echo")
def echo(x):
    return x


@worker.function("conf.fail")
def fail(message):
    raise ValueError(message)


@worker.function("conf.sleep")
def sleep(ms):
    # time.sleep is interrupted by a stop: TaskStopped is raised in it.
    time.sleep(ms / 1000.0)
    return ms


@worker.function("conf.exit")
def exit_(status):
    os._exit(status)


@worker.function("conf.len")
def length(x):
    return len(x)


@worker.function("conf.pid")
def pid(_):
    return os.getpid()


if __name__ == "__main__":
    worker.run()
