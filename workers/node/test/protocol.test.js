'use strict';

// The worker's framing, byte for byte: this test plays the parent, starts
// testdata/worker.js with the task pipe on fd 3 and the result pipe on
// fd 4, and checks the frames it reads back (docs/protocol.md).

const test = require('node:test');
const assert = require('node:assert');
const path = require('path');
const cp = require('child_process');
const fs = require('fs');
const os = require('os');
const cbor = require('../lib/cbor');
const { OutBuf } = require('../lib/outbuf');
const { errorFrame } = require('../lib/serve');

const WORKER = path.join(__dirname, '..', 'testdata', 'worker.js');

function encode(v) {
  const out = new OutBuf(16);
  cbor.encode(out, v);
  return Buffer.from(out.buf.subarray(0, out.pos));
}

function frame(kind, id, body = Buffer.alloc(0)) {
  const f = Buffer.alloc(13 + body.length);
  f.writeUInt32LE(9 + body.length, 0);
  f[4] = kind;
  f.writeBigUInt64LE(BigInt(id), 5);
  body.copy(f, 13);
  return f;
}

function task(id, name, arg, { chunk = false, from, deadline, raw } = {}) {
  let flags = chunk ? 1 : 0;
  const parts = [];
  const nb = Buffer.from(name);
  const h = Buffer.alloc(3);
  h.writeUInt16LE(nb.length, 1);
  parts.push(h, nb);
  if (from !== undefined) {
    flags |= 4;
    const b = Buffer.alloc(4);
    b.writeUInt32LE(from);
    parts.push(b);
  }
  if (deadline !== undefined) {
    flags |= 8;
    const b = Buffer.alloc(16);
    b.writeBigInt64LE(BigInt(deadline[0]), 0);
    b.writeBigInt64LE(BigInt(deadline[1]), 8);
    parts.push(b);
  }
  h[0] = flags;
  parts.push(raw !== undefined ? raw : encode(arg));
  return frame(2, id, Buffer.concat(parts));
}

// start runs the worker and collects its frames; done() resolves with
// them and its exit status once it has exited.
function start(env = {}, control = false) {
  const stdio = ['ignore', 'inherit', 'pipe', 'pipe', 'pipe'];
  if (control) {
    stdio.push('ignore', 'ignore', 'pipe');
    env = { PROCPOOL_CONTROL: '7', ...env };
  }
  const child = cp.spawn(process.execPath, [WORKER], {
    stdio,
    env: { ...process.env, PROCPOOL_WORKER: '1', PROCPOOL_CODEC: 'cbor', PROCPOOL_MAX_FRAME: '4096', PROCPOOL_RLIMITS: '', PROCPOOL_KILL_GRACE: '0', ...env },
  });
  const frames = [];
  let pending = Buffer.alloc(0);
  child.stdio[4].on('data', (d) => {
    pending = Buffer.concat([pending, d]);
    while (pending.length >= 4 && pending.length >= 4 + pending.readUInt32LE(0)) {
      const n = pending.readUInt32LE(0);
      frames.push({ kind: pending[4], id: Number(pending.readBigUInt64LE(5)), bigid: pending.readBigUInt64LE(5), body: pending.subarray(13, 4 + n) });
      pending = pending.subarray(4 + n);
    }
  });
  let stderr = '';
  child.stderr.on('data', (d) => {
    stderr += d;
  });
  const exited = new Promise((resolve) => {
    child.on('close', (code) => resolve({ code, frames, stderr }));
  });
  return { child, tasks: child.stdio[3], control: child.stdio[7], frames, done: () => exited };
}

function chunkResult(body) {
  const nerr = body.readUInt32LE(0);
  let p = 4;
  const errs = [];
  for (let i = 0; i < nerr; i++) {
    const index = body.readUInt32LE(p);
    const n = body.readUInt32LE(p + 4);
    errs.push({ index, err: JSON.parse(body.subarray(p + 8, p + 8 + n)) });
    p += 8 + n;
  }
  return { errs, results: cbor.decode(body, p) };
}

test('hello, tasks written a byte at a time, end of input', async () => {
  const w = start();
  const input = Buffer.concat([task(1, 't.square', 7), task(2, 't.upper', 'abc'), task(3, 't.square', 12)]);
  for (const b of input) {
    w.tasks.write(Buffer.from([b]));
    await new Promise((resolve) => setImmediate(resolve));
  }
  w.tasks.end();
  const { code, frames } = await w.done();
  assert.strictEqual(code, 0);
  assert.strictEqual(frames.length, 4);
  const hello = JSON.parse(frames[0].body);
  assert.strictEqual(frames[0].kind, 1);
  assert.strictEqual(hello.protocol, 1);
  assert.strictEqual(hello.pid, w.child.pid);
  assert.strictEqual(hello.codec, 'cbor');
  assert.ok(hello.functions.includes('t.square') && hello.functions.includes('t.mark'));
  assert.strictEqual(hello.control, undefined, 'no PROCPOOL_CONTROL, no control claimed');
  assert.strictEqual(hello.journal, undefined);
  assert.deepStrictEqual(frames.slice(1).map((f) => [f.kind, f.id, cbor.decode(f.body)]), [[3, 1, 49], [3, 2, 'ABC'], [3, 3, 144]]);
});

test('the protocol example: square of 7', async () => {
  const w = start();
  w.tasks.end(task(1, 't.square', 7));
  const { frames } = await w.done();
  assert.strictEqual(Buffer.concat([Buffer.from([0x0b, 0, 0, 0, 3, 1, 0, 0, 0, 0, 0, 0, 0]), frames[1].body]).toString('hex'), '0b0000000301000000000000001831');
});

async function until(cond) {
  while (!cond()) await new Promise((resolve) => setTimeout(resolve, 2));
}

function tmpdir() {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'procpool-node-'));
}

test('task ids beyond 2^53 come back as they went', async () => {
  const w = start();
  const id = (1n << 60n) + 7n;
  w.tasks.end(Buffer.concat([task(id, 't.square', 5), task(id + 1n, 't.square', 6), frame(5, id + 1n), task(2n ** 64n - 1n, 'nope', 0)]));
  const { frames } = await w.done();
  const ids = frames.slice(1).map((f) => f.bigid);
  assert.deepStrictEqual(ids, [id, id + 1n, 2n ** 64n - 1n]);
  assert.deepStrictEqual(frames.slice(1).map((f) => f.kind), [3, 7, 4]);
});

test('control pipe: a stop aborts the running task, which answers; the worker goes on', async () => {
  const dir = tmpdir();
  const arg = { started: path.join(dir, 's'), aborted: path.join(dir, 'a') };
  const w = start({ PROCPOOL_KILL_GRACE: '10000000000' }, true);
  w.tasks.write(Buffer.concat([task(1, 't.waitAbort', arg), task(2, 't.square', 2)]));
  await until(() => fs.existsSync(arg.started));
  // A stop for another task is ignored; the one for task 1 (reason 2,
  // deadline) aborts its signal.
  w.control.write(Buffer.concat([frame(8, 5, Buffer.from([1])), frame(8, 1, Buffer.from([2]))]));
  await until(() => w.frames.some((f) => f.id === 2));
  w.tasks.end(task(3, 't.square', 3));
  const { code, frames } = await w.done();
  fs.rmSync(dir, { recursive: true });
  assert.strictEqual(code, 0);
  assert.strictEqual(JSON.parse(frames[0].body).control, true);
  assert.deepStrictEqual(frames.slice(1).map((f) => [f.kind, f.id]), [[4, 1], [3, 2], [3, 3]]);
  const err = JSON.parse(frames[1].body);
  assert.strictEqual(err.code, 'deadline');
  assert.strictEqual(err.type, 'DOMException');
  assert.deepStrictEqual(err.sentinels, ['context.DeadlineExceeded']);
});

test('control pipe: a task that ignores its stop ends the worker after the grace, unanswered', async () => {
  const dir = tmpdir();
  const w = start({ PROCPOOL_KILL_GRACE: '50000000' }, true);
  w.tasks.write(Buffer.concat([task(1, 't.square', 1), task(2, 't.ignore', { started: path.join(dir, 's') }), task(3, 't.square', 3)]));
  await until(() => fs.existsSync(path.join(dir, 's')));
  w.control.write(frame(8, 2));
  const { code, frames } = await w.done();
  fs.rmSync(dir, { recursive: true });
  assert.strictEqual(code, 143);
  assert.deepStrictEqual(frames.slice(1).map((f) => f.id), [1]);
});

test('control pipe: its end of file ends the worker', async () => {
  const dir = tmpdir();
  const w = start({}, true);
  w.tasks.write(task(1, 't.ignore', { started: path.join(dir, 's') }));
  await until(() => fs.existsSync(path.join(dir, 's')));
  w.control.end();
  const { code } = await w.done();
  fs.rmSync(dir, { recursive: true });
  assert.strictEqual(code, 143);
});

// rchar is how many bytes process pid has read (Linux's /proc/PID/io).
function rchar(pid) {
  return Number(/^rchar: (\d+)$/m.exec(fs.readFileSync(`/proc/${pid}/io`, 'latin1'))[1]);
}

test('an async echo of a scalar sends the argument bytes back, after later reads', { skip: !fs.existsSync('/proc/self/io') && 'no /proc/self/io' }, async () => {
  const dir = tmpdir();
  const gate = path.join(dir, 'gate');
  const w = start({ ECHO_GATE: gate });
  const f64 = Buffer.from('fb4004000000000000', 'hex'); // 2.5 as a float64
  const two = Buffer.from('fb4000000000000000', 'hex'); // 2.0 as a float64
  const first = Buffer.concat([task(1, 't.echoLater', 0, { raw: two }), task(2, 't.echoLater', 0, { raw: f64 })]);
  await until(() => w.frames.length === 1); // the hello
  let read = rchar(w.child.pid);
  w.tasks.write(first);
  // More reads into the worker's read buffer while task 1 waits: each
  // batch once the one before was read.
  await until(() => rchar(w.child.pid) >= read + first.length);
  for (let i = 0; i < 5; i++) {
    const more = Buffer.concat(Array.from({ length: 10 }, (_, j) => task(10 + 10 * i + j, 't.square', 1234567)));
    read = rchar(w.child.pid);
    w.tasks.write(more);
    await until(() => rchar(w.child.pid) >= read + more.length);
  }
  fs.writeFileSync(gate, '');
  w.tasks.end();
  const { frames } = await w.done();
  fs.rmSync(dir, { recursive: true });
  assert.strictEqual(frames[1].body.toString('hex'), two.toString('hex'));
  assert.strictEqual(frames[2].body.toString('hex'), f64.toString('hex'));
  assert.strictEqual(frames.length, 53);
  assert.ok(frames.slice(3).every((f) => cbor.decode(f.body) === 1234567 * 1234567));
});

test('a cancel skips a queued task; one for a running, answered or unknown task is ignored', async () => {
  const dir = tmpdir();
  const started = path.join(dir, 'started');
  const gate = path.join(dir, 'gate');
  const w = start();
  w.tasks.write(Buffer.concat([task(1, 't.gate', { started, gate }), task(2, 't.square', 2), task(3, 't.square', 3), frame(5, 2)]));
  await until(() => fs.existsSync(started));
  // Task 1 runs: its cancel is ignored, whether the worker reads it
  // before or after the gate opens.
  w.tasks.write(frame(5, 1));
  fs.writeFileSync(gate, '');
  await until(() => w.frames.some((f) => f.id === 3));
  w.tasks.end(Buffer.concat([frame(5, 3), frame(5, 99), task(4, 't.square', 4)]));
  const { frames } = await w.done();
  fs.rmSync(dir, { recursive: true });
  assert.deepStrictEqual(frames.slice(1).map((f) => [f.kind, f.id]), [[3, 1], [7, 2], [3, 3], [3, 4]]);
  assert.strictEqual(frames[2].body.length, 0);
});

test('chunks: per-item errors, from, a from past the end', async () => {
  const w = start();
  w.tasks.end(Buffer.concat([
    task(1, 't.failOdd', [0, 1, 2, 3], { chunk: true }),
    task(2, 't.failOdd', [0, 1, 2, 3, 4], { chunk: true, from: 2 }),
    task(3, 't.failOdd', [0, 1], { chunk: true, from: 3 }),
    task(4, 't.double', [5, 6], { chunk: true, from: 2 }),
    task(5, 't.square', 'not a list', { chunk: true }),
  ]));
  const { frames } = await w.done();
  const [r1, r2, r3, r4, r5] = frames.slice(1);
  const c1 = chunkResult(r1.body);
  assert.deepStrictEqual(c1.results, [0, null, 20, null]);
  assert.deepStrictEqual(c1.errs.map((e) => [e.index, e.err.type, e.err.message]), [[1, 'RangeError', 'odd 1'], [3, 'RangeError', 'odd 3']]);
  const c2 = chunkResult(r2.body);
  assert.deepStrictEqual(c2.results, [20, null, 40]);
  assert.deepStrictEqual(c2.errs.map((e) => e.index), [1]);
  assert.strictEqual(r3.kind, 4);
  assert.strictEqual(JSON.parse(r3.body).code, 'decode');
  assert.strictEqual(r4.kind, 3);
  assert.deepStrictEqual(chunkResult(r4.body), { errs: [], results: [] });
  assert.strictEqual(r5.kind, 4);
  assert.strictEqual(JSON.parse(r5.body).code, 'decode');
});

test('deadline flag, unknown function, undecodable argument, result over the frame limit', async () => {
  const w = start();
  const now = BigInt(Date.now()) * 1000000n;
  w.tasks.end(Buffer.concat([
    task(1, 't.square', 3, { deadline: [now + 60000000000n, 1000000000] }),
    task(2, 'nope', 1),
    task(3, 't.square', 0, { raw: Buffer.from([0x1a, 0]) }),
    task(4, 't.echo', 'x'.repeat(5000).slice(0, 100)),
    task(5, 't.upper', 'y'.repeat(1000)),
    task(6, 't.square', 1, { deadline: [1, 0] }),
  ]));
  const { frames } = await w.done();
  const [r1, r2, r3, r4, r5] = frames.slice(1);
  assert.strictEqual(cbor.decode(r1.body), 9);
  assert.deepStrictEqual([r2.kind, JSON.parse(r2.body).code], [4, 'unknown_function']);
  assert.deepStrictEqual([r3.kind, JSON.parse(r3.body).code], [4, 'decode']);
  assert.strictEqual(r4.kind, 3);
  assert.strictEqual(r5.kind, 3); // 1000 bytes fit 4096
  assert.strictEqual(frames[6].kind, 3, 'a deadline in the past is given to the task, not refused');

  const w2 = start({ PROCPOOL_MAX_FRAME: '200' });
  w2.tasks.end(task(1, 't.repeat', { s: 'z', n: 300 }));
  const { frames: f2 } = await w2.done();
  assert.strictEqual(f2[1].kind, 4);
  assert.strictEqual(JSON.parse(f2[1].body).code, 'encode');
  assert.ok(f2[1].body.length + 9 <= 200);
});

test('bad frames end the worker with status 2', async () => {
  for (const [what, bytes] of [
    ['length over the limit', (() => { const f = frame(2, 1, Buffer.alloc(10)); f.writeUInt32LE(5000, 0); return f; })()],
    ['length under 9', (() => { const f = frame(2, 1); f.writeUInt32LE(8, 0); return f; })()],
    ['a result frame', frame(3, 1, Buffer.from([0]))],
    ['a stop frame on fd 3', frame(8, 1)],
    ['reserved flag', (() => { const f = task(1, 't.square', 1); f[13] = 0x10; return f; })()],
    ['from without chunk', (() => { const f = task(1, 't.square', 1, { from: 0 }); f[13] = 0x04; return f; })()],
    ['empty name', frame(2, 1, Buffer.from([0, 0, 0, 1]))],
    ['shared without a segment', (() => { const f = task(1, 't.square', 1, { raw: Buffer.alloc(16) }); f[13] = 0x02; return f; })()],
  ]) {
    const w = start();
    w.tasks.write(task(7, 't.square', 2));
    w.tasks.end(Buffer.concat([bytes, task(8, 't.square', 3)]));
    const { code, frames, stderr } = await w.done();
    assert.strictEqual(code, 2, what);
    assert.ok(frames.every((f) => f.id !== 8), `${what}: nothing after the bad frame runs`);
    assert.match(stderr, /procpool worker \d+:/, what);
  }
});

test('an unknown codec: a hello with an empty codec, then exit', async () => {
  const w = start({ PROCPOOL_CODEC: 'msgpack' });
  w.tasks.end();
  const { code, frames, stderr } = await w.done();
  assert.strictEqual(code, 2);
  assert.strictEqual(frames.length, 1);
  assert.strictEqual(JSON.parse(frames[0].body).codec, '');
  assert.match(stderr, /unknown codec "msgpack"/);
});

test('an error frame is cut to fit the frame limit', () => {
  const body = { message: 'm'.repeat(300), type: 'T'.repeat(50), stack: 's'.repeat(5000), chain: ['a', 'b'], sentinels: ['x'] };
  const f = errorFrame(9, { ...body }, 600);
  assert.ok(f.length - 4 <= 600);
  const got = JSON.parse(f.subarray(13));
  assert.ok(got.stack.endsWith('[cut to fit the frame limit]'));
  assert.strictEqual(got.message, body.message);
  const g = JSON.parse(errorFrame(9, { ...body }, 120).subarray(13));
  assert.strictEqual(g.stack, '');
  assert.strictEqual(g.chain, undefined);
  assert.ok(g.message.length < 300);
  const small = errorFrame(9, { message: 'ok', type: 'Error' }, 400);
  assert.deepStrictEqual(JSON.parse(small.subarray(13)), { message: 'ok', type: 'Error' });
});
