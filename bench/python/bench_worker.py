"""The function of the bench's Python-worker workloads, served to a Go
pool: python3 workers/python/procpool_worker.py bench_worker.py"""

import procpool_worker as worker


@worker.function("bench.py.square")
def square(x):
    return x * x
