'use strict';

// The worker that node_test.go starts: one function per behaviour the Go
// tests check.

const fs = require('fs');
const cp = require('child_process');
const worker = require('..');

class QuotaError extends Error {
  constructor(msg) {
    super(msg);
    this.name = 'QuotaError';
  }
}

worker.registerError('example.com/app.ErrQuota', QuotaError);
worker.registerError('example.com/app.ErrBusy', 'EBUSYAPP');

let prefix = '';

worker.fn('t.square', (x) => x * x);
worker.fn('t.upper', (s) => prefix + s.toUpperCase());
worker.fn('t.init', (p) => {
  prefix = p;
});
worker.fn('t.double', async (x) => {
  await new Promise((resolve) => setImmediate(resolve));
  return 2 * x;
});
worker.fn('t.echo', (v) => v);
worker.fn('t.pid', () => process.pid);
worker.fn('t.echo2', (v) => v);
// t.echoLater returns its argument once the file $ECHO_GATE exists.
worker.fn('t.echoLater', (v) => new Promise((resolve) => {
  const timer = setInterval(() => {
    if (fs.existsSync(process.env.ECHO_GATE)) {
      clearInterval(timer);
      resolve(v);
    }
  }, 2);
}));
// t.limits returns the soft and hard limits on open files, from
// /proc/self/limits.
worker.fn('t.limits', () => {
  const line = fs.readFileSync('/proc/self/limits', 'utf8').split('\n').find((l) => l.startsWith('Max open files'));
  return line.split(/\s+/).slice(3, 5).join(' ');
});
worker.fn('t.repeat', ({ s, n }) => s.repeat(n));
// Declared by node_test.go for the conformance worker's pools: served here
// too, so that this worker serves every function the test declares.
worker.fn('conf.echo', (v) => v);

// t.mark appends its key to a file: the Go test counts how often each
// task ran.
worker.fn('t.mark', ({ file, key }) => {
  fs.appendFileSync(file, `${key}\n`);
  return key;
});

// t.fail throws the error its argument names.
worker.fn('t.fail', ({ kind, msg }) => {
  switch (kind) {
    case 'type':
      throw new TypeError(msg);
    case 'range':
      throw new RangeError(msg);
    case 'quota':
      throw new Error('wrapped', { cause: new QuotaError(msg) });
    case 'code': {
      const e = new Error(msg);
      e.code = 'EBUSYAPP';
      throw e;
    }
    case 'enoent':
      fs.readFileSync(msg);
      return 'read';
    case 'string':
      throw msg;
    case 'async':
      return Promise.reject(new RangeError(msg));
    default:
      throw new Error(msg);
  }
});

// t.failOdd fails for odd numbers (chunks with per-item errors).
worker.fn('t.failOdd', (x) => {
  if (x % 2 === 1) throw new RangeError(`odd ${x}`);
  return x * 10;
});

worker.fn('t.exit', (code) => process.exit(code));

// t.spin never returns and never yields: only the pool's kill ends it.
// t.alloc holds mb MiB (written, so resident), then waits until its
// signal aborts (a memory stop ends the worker).
const held = [];
worker.fn('t.alloc', (mb, ctx) => new Promise((resolve, reject) => {
  const b = Buffer.alloc(mb << 20, 1);
  held.push(b);
  ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason), { once: true });
}));

worker.fn('t.spin', () => {
  for (;;);
});

// t.waitAbort writes the file `started`, waits for its signal, then
// writes the abort's reason to the file `aborted` and fails with it.
worker.fn('t.waitAbort', ({ started, aborted }, ctx) => new Promise((resolve, reject) => {
  ctx.signal.addEventListener('abort', () => {
    fs.writeFileSync(aborted, String(ctx.signal.reason && ctx.signal.reason.name));
    reject(ctx.signal.reason);
  }, { once: true });
  fs.writeFileSync(started, 'yes');
}));

// t.gate writes the file `started`, then waits (without blocking the
// event loop) until the file `gate` exists.
worker.fn('t.gate', ({ started, gate }) => new Promise((resolve) => {
  fs.writeFileSync(started, 'yes');
  const timer = setInterval(() => {
    if (fs.existsSync(gate)) {
      clearInterval(timer);
      resolve(0);
    }
  }, 2);
}));

// t.ignore writes the file `started` and never settles, whatever its
// signal says.
worker.fn('t.ignore', ({ started }) => {
  fs.writeFileSync(started, 'yes');
  return new Promise(() => {});
});

// t.bytes returns the length and the sum of the bytes of a Uint8Array.
worker.fn('t.bytes', (b) => {
  let sum = 0;
  for (let i = 0; i < b.length; i++) sum = (sum + b[i]) % 4294967296;
  return { n: b.length, sum };
});

// t.b64 is t.bytes for the JSON codec, which carries []byte as base64.
worker.fn('t.b64', (s) => {
  const b = Buffer.from(s, 'base64');
  let sum = 0;
  for (let i = 0; i < b.length; i++) sum = (sum + b[i]) % 4294967296;
  return { n: b.length, sum };
});

worker.fn('t.log', (s) => {
  console.log(s);
  return s.length;
});

// t.child reports what a process this worker starts inherits: its open
// descriptors (as link targets) and its PROCPOOL_ variables, beside this
// worker's protocol descriptors.
worker.fn('t.child', () => {
  const mine = [3, 4, 5, 7].map((fd) => {
    try {
      return fs.readlinkSync(`/proc/self/fd/${fd}`);
    } catch (_) {
      return '';
    }
  }).filter((s) => s !== '');
  const out = cp.execFileSync(process.execPath, ['-e', `
    const fs = require('fs');
    const fds = fs.readdirSync('/proc/self/fd').map((fd) => { try { return fs.readlinkSync('/proc/self/fd/' + fd); } catch (_) { return ''; } });
    console.log(JSON.stringify({ fds, env: Object.keys(process.env).filter((k) => k.startsWith('PROCPOOL_')) }));
  `], { encoding: 'utf8' });
  const child = JSON.parse(out);
  return { mine, childFds: child.fds, childEnv: child.env };
});

// t.orphan starts a long sleep in the worker's process group and returns
// its pid: the worker must kill it on its way out.
worker.fn('t.orphan', () => {
  const c = cp.spawn('sleep', ['300'], { stdio: 'ignore' });
  c.unref();
  return c.pid;
});

worker.run();
