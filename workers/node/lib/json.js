'use strict';

// The JSON codec, matching the Go side's encoding/json: payloads are UTF-8
// JSON texts. Decoding is JSON.parse, except that an integer literal
// beyond ±(2^53 − 1) becomes a BigInt instead of a rounded Number.
// Encoding is JSON.stringify for plain data, and a walk of our own for
// what JSON.stringify would get wrong for a Go parent: a BigInt (written
// as its digits), a Uint8Array or Buffer (a base64 string, as Go writes
// []byte), a Map (an object), a Set (an array), and NaN or ±Infinity,
// which Go cannot encode either and are an error here (JSON.stringify
// would quietly write null).

const { CodecError } = require('./cbor');

const MAX_DEPTH = 1000;

const utf8Slice = typeof Buffer.prototype.utf8Slice === 'function'
  ? (b, s, e) => b.utf8Slice(s, e)
  : (b, s, e) => b.toString('utf8', s, e);

// sixteenDigits finds a run of 16 or more digits: only such a number can
// be an integer beyond 2^53 (9007199254740992 has 16 digits). A run inside
// a string, or in a fraction, only costs the slower parse.
const sixteenDigits = /[0-9]{16}/;

function decode(buf, start = 0, end = buf.length) {
  const s = utf8Slice(buf, start, end);
  try {
    if (sixteenDigits.test(s)) return parseBig(s);
    return JSON.parse(s);
  } catch (e) {
    if (e instanceof CodecError) throw e;
    throw new CodecError('json: ' + e.message);
  }
}

// ---- a JSON parser that keeps big integers ----

let S = '';
let I = 0;

function parseBig(s) {
  S = s;
  I = 0;
  try {
    ws();
    const v = val(0);
    ws();
    if (I !== S.length) bad('unexpected text after the value');
    return v;
  } finally {
    S = '';
  }
}

function bad(msg) {
  throw new CodecError(`json: ${msg} at offset ${I}`);
}

function ws() {
  for (;;) {
    const c = S.charCodeAt(I);
    if (c === 32 || c === 9 || c === 10 || c === 13) I++;
    else return;
  }
}

function val(depth) {
  if (depth > MAX_DEPTH) bad(`nested deeper than ${MAX_DEPTH} levels`);
  const c = S.charCodeAt(I);
  if (c === 123) { // {
    I++;
    const obj = {};
    ws();
    if (S.charCodeAt(I) === 125) {
      I++;
      return obj;
    }
    for (;;) {
      ws();
      if (S.charCodeAt(I) !== 34) bad('expected a string key');
      const k = str();
      ws();
      if (S.charCodeAt(I) !== 58) bad("expected ':'");
      I++;
      ws();
      const v = val(depth + 1);
      if (k === '__proto__') Object.defineProperty(obj, k, { value: v, enumerable: true, writable: true, configurable: true });
      else obj[k] = v;
      ws();
      const d = S.charCodeAt(I++);
      if (d === 125) return obj;
      if (d !== 44) bad("expected ',' or '}'");
    }
  }
  if (c === 91) { // [
    I++;
    const a = [];
    ws();
    if (S.charCodeAt(I) === 93) {
      I++;
      return a;
    }
    for (;;) {
      ws();
      a.push(val(depth + 1));
      ws();
      const d = S.charCodeAt(I++);
      if (d === 93) return a;
      if (d !== 44) bad("expected ',' or ']'");
    }
  }
  if (c === 34) return str();
  if (c === 45 || (c >= 48 && c <= 57)) return num();
  if (S.startsWith('true', I)) {
    I += 4;
    return true;
  }
  if (S.startsWith('false', I)) {
    I += 5;
    return false;
  }
  if (S.startsWith('null', I)) {
    I += 4;
    return null;
  }
  bad('unexpected character');
  return undefined;
}

const numRe = /-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/y;

function num() {
  numRe.lastIndex = I;
  const m = numRe.exec(S);
  if (m === null) bad('bad number');
  I = numRe.lastIndex;
  const t = m[0];
  if (m[1] === undefined && m[2] === undefined && t.length >= 16) {
    const n = BigInt(t);
    if (n > 9007199254740991n || n < -9007199254740991n) return n;
  }
  return Number(t);
}

const strRe = /"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/y;

function str() {
  strRe.lastIndex = I;
  const m = strRe.exec(S);
  if (m === null) bad('bad string');
  I = strRe.lastIndex;
  return JSON.parse(m[0]);
}

// ---- encoding ----

// plain reports whether JSON.stringify writes v as Go expects: only
// finite numbers, strings, booleans, null, and arrays and plain objects of
// those (undefined, functions and symbols too, which it drops or nulls).
function plain(v, depth) {
  switch (typeof v) {
    case 'number':
      return Number.isFinite(v);
    case 'object':
      if (v === null) return true;
      if (depth > 64) return false; // let the walk check depth and cycles
      if (Array.isArray(v)) {
        for (let i = 0; i < v.length; i++) if (!plain(v[i], depth + 1)) return false;
        return true;
      }
      {
        const proto = Object.getPrototypeOf(v);
        if (proto !== Object.prototype && proto !== null) return false;
        if (typeof v.toJSON === 'function') return false;
        for (const k in v) if (!plain(v[k], depth + 1)) return false;
        return true;
      }
    case 'bigint':
      return false;
    default:
      return true;
  }
}

function stringify(v) {
  if (plain(v, 0)) {
    const s = JSON.stringify(v);
    return s === undefined ? 'null' : s;
  }
  return walk(v, 0);
}

function walk(v, depth) {
  switch (typeof v) {
    case 'number':
      if (!Number.isFinite(v)) throw new CodecError(`json: unsupported value ${v}`);
      return JSON.stringify(v);
    case 'string':
      return JSON.stringify(v);
    case 'boolean':
      return v ? 'true' : 'false';
    case 'bigint':
      return v.toString();
    case 'object':
      break;
    default:
      return 'null';
  }
  if (v === null) return 'null';
  if (depth >= MAX_DEPTH) throw new CodecError(`json: value nested deeper than ${MAX_DEPTH} levels (a cycle?)`);
  if (Array.isArray(v) || v instanceof Set) {
    let s = '[';
    let first = true;
    for (const x of v) {
      if (!first) s += ',';
      first = false;
      s += walk(x, depth + 1);
    }
    return s + ']';
  }
  if (v instanceof Uint8Array || v instanceof DataView) {
    return '"' + Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64') + '"';
  }
  if (v instanceof ArrayBuffer) return '"' + Buffer.from(v).toString('base64') + '"';
  if (ArrayBuffer.isView(v)) return walk(Array.from(v), depth + 1);
  if (v instanceof Map) {
    let s = '{';
    let first = true;
    for (const [k, x] of v) {
      if (skipped(x)) continue;
      if (!first) s += ',';
      first = false;
      s += JSON.stringify(String(k)) + ':' + walk(x, depth + 1);
    }
    return s + '}';
  }
  if (typeof v.toJSON === 'function') return walk(v.toJSON(), depth + 1);
  let s = '{';
  let first = true;
  for (const k of Object.keys(v)) {
    const x = v[k];
    if (skipped(x)) continue;
    if (!first) s += ',';
    first = false;
    s += JSON.stringify(k) + ':' + walk(x, depth + 1);
  }
  return s + '}';
}

function skipped(v) {
  const t = typeof v;
  return t === 'undefined' || t === 'function' || t === 'symbol';
}

// encode appends v's JSON to out (an OutBuf). On error out keeps what it had.
function encode(out, v) {
  let s;
  try {
    s = stringify(v);
  } catch (e) {
    throw e instanceof CodecError ? e : new CodecError('json: ' + (e && e.message));
  }
  out.utf8(s);
}

function encodeList(out, vs) {
  encode(out, vs);
}

module.exports = { name: 'json', decode, encode, encodeList, stringify, CodecError };
