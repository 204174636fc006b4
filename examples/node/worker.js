// The Node.js worker of examples/node: two functions for the Go program
// in main.go. In a project of your own, require('procpool-worker').
const worker = require('../../workers/node');

worker.fn('square', (x) => x * x);

// shout is async: the worker awaits it; ctx.signal aborts when the caller
// cancels or its deadline passes.
worker.fn('shout', async (s, ctx) => {
  await new Promise((resolve) => setImmediate(resolve));
  ctx.throwIfAborted();
  return `${s.toUpperCase()}! (from node ${process.pid})`;
});

worker.run();
