'use strict';

// The plain-Node side of go run ./bench's node-* workloads: the same
// function as the procpool rows, run in child processes that a Node parent
// starts with child_process, without procpool.
//
// Usage: node node_bench.js latency n=N
//        node node_bench.js map n=N workers=W chunk=K
//
// Prints one JSON object per measurement, one a line:
//   {"system": "node-fork-ipc", "value": 12.3, "unit": "µs", ...}

const cp = require('child_process');
const readline = require('readline');

const square = (x) => x * x;

function emit(system, value, unit, extra = {}) {
  process.stdout.write(JSON.stringify({ system, value, unit, ...extra }) + '\n');
}

function args() {
  const a = {};
  for (const kv of process.argv.slice(3)) {
    const [k, v] = kv.split('=');
    a[k] = Number(v);
  }
  return a;
}

function percentile(sorted, q) {
  const k = Math.ceil((q / 100) * sorted.length) - 1;
  return sorted[Math.max(0, Math.min(sorted.length - 1, k))];
}

function report(system, lat) {
  lat.sort((x, y) => x - y);
  const mean = lat.reduce((s, x) => s + x, 0) / lat.length;
  emit(system, percentile(lat, 50), 'µs', { mean, p90: percentile(lat, 90), p99: percentile(lat, 99) });
}

// ---- children ----

// IPC child: answers {i, x} with {i, y} (one call) or {i, xs} with {i, ys}
// (a batch).
function ipcChild() {
  process.on('message', (m) => {
    if (m.xs !== undefined) process.send({ i: m.i, ys: m.xs.map(square) });
    else process.send({ i: m.i, y: square(m.x) });
  });
  process.on('disconnect', () => process.exit(0));
}

// stdio child: one number a line in, its square a line out.
function stdioChild() {
  const rl = readline.createInterface({ input: process.stdin });
  rl.on('line', (line) => process.stdout.write(square(Number(line)) + '\n'));
}

// ---- latency ----

async function latencyIPC(n) {
  const child = cp.fork(__filename, ['ipc-child'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  let resolve = null;
  child.on('message', (m) => resolve(m));
  const call = (i, x) => new Promise((r) => {
    resolve = r;
    child.send({ i, x });
  });
  await call(0, 1); // warm-up
  const lat = new Array(n);
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    const m = await call(i, i);
    lat[i] = Number(process.hrtime.bigint() - t0) / 1000;
    if (m.y !== i * i) throw new Error(`square(${i}) = ${m.y}`);
  }
  child.disconnect();
  report('node-fork-ipc', lat);
}

async function latencyStdio(n) {
  const child = cp.spawn(process.execPath, [__filename, 'stdio-child'], { stdio: ['pipe', 'pipe', 'inherit'] });
  const rl = readline.createInterface({ input: child.stdout });
  let resolve = null;
  rl.on('line', (line) => resolve(Number(line)));
  const call = (x) => new Promise((r) => {
    resolve = r;
    child.stdin.write(x + '\n');
  });
  await call(1);
  const lat = new Array(n);
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    const y = await call(i);
    lat[i] = Number(process.hrtime.bigint() - t0) / 1000;
    if (y !== i * i) throw new Error(`square(${i}) = ${y}`);
  }
  child.stdin.end();
  report('node-stdio-pipe', lat);
}

// ---- map ----

// mapIPC squares 0..n-1 in chunks of k on w forked children, two chunks
// in flight per child, and reports items per second.
async function mapIPC(n, w, k) {
  const xs = Array.from({ length: n }, (_, i) => i);
  const children = Array.from({ length: w }, () => cp.fork(__filename, ['ipc-child'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
  // Warm-up: one call each.
  await Promise.all(children.map((c) => new Promise((r) => {
    c.once('message', r);
    c.send({ i: 0, x: 1 });
  })));
  const out = new Array(n);
  const t0 = process.hrtime.bigint();
  await new Promise((resolve, reject) => {
    let next = 0;
    let pending = 0;
    const send = (c) => {
      if (next >= n) return false;
      const lo = next;
      next = Math.min(n, lo + k);
      pending++;
      c.send({ i: lo, xs: xs.slice(lo, next) });
      return true;
    };
    for (const c of children) {
      c.on('message', (m) => {
        const ys = m.ys;
        for (let j = 0; j < ys.length; j++) out[m.i + j] = ys[j];
        pending--;
        send(c);
        if (pending === 0 && next >= n) resolve();
      });
      c.on('error', reject);
      send(c);
      send(c);
    }
  });
  const dt = Number(process.hrtime.bigint() - t0) / 1e9;
  for (let i = 0; i < n; i++) if (out[i] !== i * i) throw new Error(`square(${i}) = ${out[i]}`);
  for (const c of children) c.disconnect();
  emit('node-fork-ipc', n / dt, 'items/s', { chunk: k });
}

async function main() {
  const mode = process.argv[2];
  const a = args();
  switch (mode) {
    case 'ipc-child':
      return ipcChild();
    case 'stdio-child':
      return stdioChild();
    case 'latency':
      await latencyIPC(a.n);
      await latencyStdio(a.n);
      return undefined;
    case 'map':
      return mapIPC(a.n, a.workers, a.chunk);
    default:
      throw new Error(`unknown mode ${mode}`);
  }
}

main().catch((e) => {
  process.stderr.write(`node_bench.js: ${e.stack}\n`);
  process.exit(1);
});
