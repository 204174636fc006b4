'use strict';

// How a JavaScript error crosses to the Go parent: the JSON error object of
// docs/protocol.md ("error"), with the error's identity as the names of
// the sentinels it matches.

const MAX_CHAIN = 32; // as the Go worker: at most 32 entries in "chain"

// The keys every Go parent knows (docs/protocol.md, "Identity"), matched
// from what Node's own errors carry.
const builtins = [
  { key: 'io/fs.ErrNotExist', test: (e) => e.code === 'ENOENT' },
  { key: 'io/fs.ErrExist', test: (e) => e.code === 'EEXIST' },
  { key: 'io/fs.ErrPermission', test: (e) => e.code === 'EACCES' || e.code === 'EPERM' },
  { key: 'context.Canceled', test: (e) => e.name === 'AbortError' || e.code === 'ABORT_ERR' },
  { key: 'context.DeadlineExceeded', test: (e) => e.name === 'TimeoutError' },
];

// The program's own keys (registerError), after the built-in ones.
const registered = [];

// matcherOf turns registerError's second argument into a test.
function matcherOf(m) {
  if (typeof m === 'string') return (e) => e.code === m;
  if (typeof m === 'function') {
    if (m === Error || m.prototype instanceof Error) return (e) => e instanceof m;
    return (e) => m(e) === true;
  }
  if (m !== null && typeof m === 'object') {
    const tests = [];
    if (m.code !== undefined) tests.push((e) => e.code === m.code);
    if (m.name !== undefined) tests.push((e) => e.name === m.name);
    if (m.class !== undefined) {
      if (typeof m.class !== 'function') throw new TypeError('registerError: "class" must be a constructor');
      tests.push((e) => e instanceof m.class);
    }
    if (m.test !== undefined) {
      if (typeof m.test !== 'function') throw new TypeError('registerError: "test" must be a function');
      tests.push((e) => m.test(e) === true);
    }
    if (tests.length === 0) throw new TypeError('registerError: give one of code, name, class or test');
    return (e) => tests.every((t) => t(e));
  }
  throw new TypeError('registerError: the matcher must be an err.code string, an Error class, a function or an object');
}

function registerError(key, matcher) {
  if (typeof key !== 'string' || key === '') throw new TypeError('registerError: the key must be a non-empty string');
  if (builtins.some((b) => b.key === key) || registered.some((r) => r.key === key)) {
    throw new Error(`registerError: the key ${JSON.stringify(key)} is already registered`);
  }
  registered.push({ key, test: matcherOf(matcher) });
}

// typeName is what "type" says: the constructor's name for an object, the
// typeof for anything else.
function typeName(v) {
  if (v === null) return 'null';
  if (typeof v !== 'object' && typeof v !== 'function') return typeof v;
  try {
    const c = v.constructor;
    if (typeof c === 'function' && typeof c.name === 'string' && c.name !== '') return c.name;
  } catch (_) {
    // a getter that throws: fall through
  }
  return 'Object';
}

// chainOf lists e and the errors it wraps (cause, and an AggregateError's
// errors), outermost first, depth first, at most MAX_CHAIN.
function chainOf(e) {
  const out = [];
  const seen = new Set();
  const walk = (x) => {
    while (x !== null && typeof x === 'object' && out.length < MAX_CHAIN && !seen.has(x)) {
      seen.add(x);
      out.push(x);
      let errs;
      try {
        errs = x instanceof AggregateError && Array.isArray(x.errors) ? x.errors : null;
      } catch (_) {
        errs = null;
      }
      if (errs !== null) {
        for (const inner of errs) walk(inner);
        return;
      }
      let c;
      try {
        c = x.cause;
      } catch (_) {
        return;
      }
      x = c;
    }
  };
  walk(e);
  return out;
}

function safe(f, dflt) {
  try {
    return f();
  } catch (_) {
    return dflt;
  }
}

// errorBody returns the JSON error object for a thrown value. code is the
// protocol's code ("" for the function's own error).
function errorBody(thrown, code) {
  const isObj = thrown !== null && typeof thrown === 'object';
  const body = {
    message: isObj && 'message' in thrown ? safe(() => String(thrown.message), '') : safe(() => String(thrown), ''),
    type: typeName(thrown),
  };
  if (isObj) {
    const stack = safe(() => thrown.stack, undefined);
    if (typeof stack === 'string' && stack !== '') body.stack = stack;
  }
  if (code) body.code = code;
  if (!isObj) return body;
  const chain = chainOf(thrown);
  body.chain = chain.map(typeName);
  const sentinels = [];
  for (const list of [builtins, registered]) {
    for (const r of list) {
      if (chain.some((x) => safe(() => r.test(x), false))) sentinels.push(r.key);
    }
  }
  if (sentinels.length > 0) body.sentinels = sentinels;
  return body;
}

// A failure outside the function's code (unknown function, decode, ...).
function plainBody(message, type, code) {
  return { message, type, code };
}

module.exports = { registerError, errorBody, plainBody, typeName };
