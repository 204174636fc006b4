'use strict';

// procpool-worker: write procpool workers in JavaScript. A script
// registers its functions with fn() and calls run(); a Go program starts
// it with procpool.WithCommand("node", "script.js") and calls the
// functions through procpool.Declare handles. See README.md.

const { serve, TaskContext } = require('./lib/serve');
const { registerError } = require('./lib/errors');
const cbor = require('./lib/cbor');
const json = require('./lib/json');

const functions = new Map();
const codecs = { cbor, json };
let started = false;

// Read before run() removes the variable from the environment.
const worker = process.env.PROCPOOL_WORKER === '1';

// fn registers f under name, which the Go side declares with
// procpool.Declare[In, Out](name). f is called as f(arg, ctx) with the
// decoded argument and a TaskContext (ctx.signal, ctx.deadline, ...); it
// returns the result or a Promise of it, or throws. It returns f.
function fn(name, f) {
  if (started) throw new Error(`procpool-worker: fn(${JSON.stringify(name)}) after run(): register every function first`);
  if (typeof name !== 'string' || name === '' || Buffer.byteLength(name) > 65535) {
    throw new TypeError('procpool-worker: a function name is a string of 1 to 65535 bytes');
  }
  if (typeof f !== 'function') throw new TypeError(`procpool-worker: fn(${JSON.stringify(name)}): not a function`);
  if (functions.has(name)) throw new Error(`procpool-worker: a function is already registered as ${JSON.stringify(name)}`);
  functions.set(name, f);
  return f;
}

// run serves the pool that started this script, until it closes the task
// pipe; then the process exits. Outside a pool it prints why and exits
// with status 2.
function run() {
  if (started) throw new Error('procpool-worker: run() called twice');
  started = true;
  serve(functions, codecs);
}

// isWorker reports whether a procpool pool started this process.
function isWorker() {
  return worker;
}

module.exports = { fn, run, isWorker, registerError, TaskContext, codecs: { cbor, json } };
