'use strict';

// The Node worker of go run ./bench's node-* workloads: procpool-worker
// (workers/node, found by the harness) serving the benchmark's function.

const worker = require(process.env.PROCPOOL_BENCH_NODE_LIB);

worker.fn('bench.node.square', (x) => x * x);
worker.run();
