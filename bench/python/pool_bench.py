"""The Python side of procpool's benchmark harness (go run ./bench).

Usage: python3 pool_bench.py WORKLOAD [key=value ...]

Runs one workload against multiprocessing.Pool (and, where the harness asks
for it, concurrent.futures.ProcessPoolExecutor) and prints one JSON object
per measurement on standard output, one a line:

    {"system": "python-pool", "value": 123.4, "unit": "\u00b5s"}

The harness adds the workload name. Standard library only. Every pool is
warmed with one call before it is timed, as the Go side does.
"""

import itertools
import json
import math
import multiprocessing
import os
import random
import statistics
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor


# Task functions. They live at module level so that workers (forked or
# spawned) find them.

def square(x):
    return x * x


def length(b):
    return len(b)


def burn(n):
    """A CPU-bound loop of n steps (a linear congruential generator)."""
    x = 1
    for _ in range(n):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
    return x


def emit(system, value, unit, **extra):
    rec = {"system": system, "value": value, "unit": unit}
    rec.update(extra)
    print(json.dumps(rec), flush=True)


def percentile(sorted_xs, q):
    """The nearest-rank percentile of an ascending list (q in 0..100)."""
    if not sorted_xs:
        return float("nan")
    k = math.ceil(q / 100.0 * len(sorted_xs)) - 1
    return sorted_xs[max(0, min(len(sorted_xs) - 1, k))]


def peak_rss_bytes():
    """This process's peak resident set size (VmHWM) in bytes."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# Workloads. Each takes the parsed key=value arguments.

def apply_latency(args):
    n, workers = args["n"], args["workers"]
    with multiprocessing.Pool(workers) as pool:
        pool.apply(square, (1,))
        lat = [0] * n
        clock = time.perf_counter_ns
        for i in range(n):
            t0 = clock()
            pool.apply(square, (i,))
            lat[i] = clock() - t0
    mean = sum(lat) / len(lat) / 1e3
    lat.sort()
    emit("python-pool", percentile(lat, 50) / 1e3, "\u00b5s",
         mean=mean, p90=percentile(lat, 90) / 1e3, p99=percentile(lat, 99) / 1e3)


def async_throughput(args):
    n, workers = args["n"], args["workers"]
    with multiprocessing.Pool(workers) as pool:
        pool.apply_async(square, (1,)).get()
        t0 = time.perf_counter()
        rs = [pool.apply_async(square, (i,)) for i in range(n)]
        for r in rs:
            r.get()
        dt = time.perf_counter() - t0
    emit("python-pool", n / dt, "tasks/s")
    with ProcessPoolExecutor(workers) as ex:
        ex.submit(square, 1).result()
        t0 = time.perf_counter()
        fs = [ex.submit(square, i) for i in range(n)]
        for f in fs:
            f.result()
        dt = time.perf_counter() - t0
    emit("python-ppe", n / dt, "tasks/s")


def apply_concurrent(args):
    """n Pool.apply calls made by that many threads at once, each taking
    the next index from a shared counter (next() on itertools.count is
    atomic under the GIL)."""
    n, threads, workers = args["n"], args["threads"], args["workers"]
    counter = itertools.count()
    errors = []

    def caller():
        try:
            while not errors:
                i = next(counter)
                if i >= n:
                    return
                got = pool.apply(square, (i,))
                if got != i * i:
                    raise AssertionError("square(%d) = %r" % (i, got))
        except BaseException as e:  # reported by the main thread
            errors.append(e)

    with multiprocessing.Pool(workers) as pool:
        pool.apply(square, (1,))
        ts = [threading.Thread(target=caller) for _ in range(threads)]
        t0 = time.perf_counter()
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        dt = time.perf_counter() - t0
    if errors:
        raise errors[0]
    emit("python-pool", n / dt, "tasks/s", threads=threads)


def map_throughput(args):
    n, workers = args["n"], args["workers"]
    xs = list(range(n))
    with multiprocessing.Pool(workers) as pool:
        pool.apply(square, (1,))
        t0 = time.perf_counter()
        out = pool.map(square, xs)
        dt = time.perf_counter() - t0
        assert len(out) == n
    emit("python-pool", n / dt, "items/s")
    with ProcessPoolExecutor(workers) as ex:
        ex.submit(square, 1).result()
        t0 = time.perf_counter()
        out = list(ex.map(square, xs, chunksize=1000))
        dt = time.perf_counter() - t0
        assert len(out) == n
    emit("python-ppe", n / dt, "items/s")


def payload_throughput(args):
    n, workers, size = args["n"], args["workers"], args["size"]
    payload = random.Random(1).randbytes(size)
    with multiprocessing.Pool(workers) as pool:
        pool.apply(length, (payload,))
        t0 = time.perf_counter()
        for _ in range(n):
            got = pool.apply(length, (payload,))
        dt = time.perf_counter() - t0
        assert got == size
    emit("python-pool", n * size / (1 << 20) / dt, "MiB/s")


def startup(args):
    runs, workers = args["runs"], args["workers"]
    for system, method in (("python-pool", "fork"), ("python-pool-spawn", "spawn")):
        ctx = multiprocessing.get_context(method)
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            pool = ctx.Pool(workers)
            pool.apply(square, (3,))
            times.append(time.perf_counter() - t0)
            pool.close()
            pool.join()
        emit(system, statistics.median(times) * 1e3, "ms")


def calibrate_burn(target_s):
    """The number of burn steps that take about target_s in this process."""
    n = 1000
    while True:
        t0 = time.perf_counter()
        burn(n)
        dt = time.perf_counter() - t0
        if dt > 0.05:
            break
        n *= 2
    per_step = dt / n
    # Take the best of a few timings of the calibrated size.
    n = max(1, int(target_s / per_step))
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        burn(n)
        best = min(best, time.perf_counter() - t0)
    return max(1, int(n * target_s / best))


def cpu_scaling(args):
    tasks, cores = args["tasks"], args["cores"]
    steps = calibrate_burn(args["task_ms"] / 1e3)
    xs = [steps] * tasks
    times = {}
    for workers in (1, cores):
        with multiprocessing.Pool(workers) as pool:
            pool.apply(burn, (1,))
            t0 = time.perf_counter()
            pool.map(burn, xs, chunksize=1)
            times[workers] = time.perf_counter() - t0
    emit("python-pool", times[1] / times[cores], "x",
         t1_s=times[1], tn_s=times[cores], cores=cores, steps=steps)


def stream_memory(args):
    n, workers = args["n"], args["workers"]
    total = 0
    with multiprocessing.Pool(workers) as pool:
        pool.apply(square, (1,))
        for v in pool.imap(square, range(n), chunksize=1000):
            total += v
    # The sum of squares of 0..n-1, to check every result arrived.
    assert total == (n - 1) * n * (2 * n - 1) // 6
    emit("python-pool", peak_rss_bytes() / 1e6, "MB")


WORKLOADS = {
    "apply-latency": apply_latency,
    "async-throughput": async_throughput,
    "apply-concurrent": apply_concurrent,
    "map-throughput": map_throughput,
    "payload-throughput": payload_throughput,
    "startup": startup,
    "cpu-scaling": cpu_scaling,
    "stream-memory": stream_memory,
}


def main():
    if len(sys.argv) < 2 or sys.argv[1] not in WORKLOADS:
        sys.exit("usage: pool_bench.py {%s} [key=value ...]" % "|".join(WORKLOADS))
    args = {}
    for kv in sys.argv[2:]:
        k, _, v = kv.partition("=")
        args[k] = int(v)
    WORKLOADS[sys.argv[1]](args)


if __name__ == "__main__":
    main()
