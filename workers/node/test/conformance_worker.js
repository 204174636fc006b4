'use strict';

// The conformance contract's functions (shared by the Python, Node and Go
// workers and procpool's conformance kit), and nothing else.

const worker = require('..');

if (!worker.isWorker()) {
  // `node --test` runs every file under test/: this one only serves a pool.
  return;
}

worker.fn('conf.echo', (x) => x);

worker.fn('conf.fail', (msg) => {
  throw new Error(msg);
});

// conf.sleep waits ms milliseconds, or until the task is stopped.
worker.fn('conf.sleep', (ms, ctx) => new Promise((resolve, reject) => {
  const signal = ctx.signal;
  if (signal.aborted) {
    reject(signal.reason);
    return;
  }
  const timer = setTimeout(() => {
    signal.removeEventListener('abort', onAbort);
    resolve(ms);
  }, ms);
  function onAbort() {
    clearTimeout(timer);
    reject(signal.reason);
  }
  signal.addEventListener('abort', onAbort, { once: true });
}));

worker.fn('conf.exit', (code) => process.exit(code));

// conf.len: bytes of a byte string, code points of a text string.
worker.fn('conf.len', (x) => {
  if (x instanceof Uint8Array) return x.length;
  if (typeof x === 'string') {
    let n = 0;
    for (const _ of x) n++; // eslint-disable-line no-unused-vars
    return n;
  }
  throw new TypeError(`conf.len: a ${typeof x}, not a string or bytes`);
});

worker.fn('conf.pid', () => process.pid);

worker.run();
