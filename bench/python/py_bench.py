"""Python's side of the bench's Python-worker workloads (go run ./bench -only
py-apply-latency,py-map-throughput): multiprocessing.Pool running the same
function as the procpool pool of Python workers.

Usage: python3 py_bench.py apply N WORKERS | map N WORKERS CHUNK

Prints one JSON object of figures. Standard library only.
"""

import json
import math
import multiprocessing
import sys
import time


def square(x):
    return x * x


def percentile(xs, q):
    k = math.ceil(q / 100.0 * len(xs)) - 1
    return xs[max(0, min(len(xs) - 1, k))]


def apply(n, workers):
    with multiprocessing.Pool(workers) as pool:
        pool.apply(square, (1,))
        lat = [0] * n
        clock = time.perf_counter_ns
        for i in range(n):
            t0 = clock()
            pool.apply(square, (i,))
            lat[i] = clock() - t0
    lat.sort()
    print(json.dumps({"p50": percentile(lat, 50) / 1e3, "p90": percentile(lat, 90) / 1e3,
                      "p99": percentile(lat, 99) / 1e3}))


def map_(n, workers, chunk):
    xs = list(range(n))
    with multiprocessing.Pool(workers) as pool:
        pool.apply(square, (1,))
        t0 = time.perf_counter()
        out = pool.map(square, xs, chunksize=chunk)
        dt = time.perf_counter() - t0
    assert out[-1] == (n - 1) ** 2
    print(json.dumps({"rate": n / dt}))


if __name__ == "__main__":
    what, args = sys.argv[1], [int(a) for a in sys.argv[2:]]
    {"apply": apply, "map": map_}[what](*args)
