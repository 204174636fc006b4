'use strict';

// A CBOR (RFC 8949) encoder and decoder for the values a procpool parent
// exchanges with a worker. It reads everything the Go side's codec writes
// (github.com/fxamacker/cbor with procpool's options: shortest-form
// integers, float64 kept at its width, definite lengths, tag 0 for
// time.Time, tags 2 and 3 for big integers, null for nil slices and maps)
// and the rest of well-formed CBOR a Go parent accepts: indefinite
// lengths, half and single floats, undefined, other tags (their content is
// kept, the tag dropped). What JavaScript value each item becomes is in
// README.md ("Types").

class CodecError extends Error {
  constructor(message) {
    super(message);
    this.name = 'CodecError';
  }
}

const MAX_DEPTH = 1000; // as the Go codec: deeper input is refused

// ---- decoding ----

// The decoder's state: decoding is synchronous and runs no user code, so
// one set of module variables serves every call.
let B = null; // the input Buffer
let P = 0; // read position
let E = 0; // end of the input
let SHARE = false; // byte strings may be views of B (B is not reused)

const utf8Slice = typeof Buffer.prototype.utf8Slice === 'function'
  ? (b, s, e) => b.utf8Slice(s, e)
  : (b, s, e) => b.toString('utf8', s, e);

function fail(msg) {
  throw new CodecError('cbor: ' + msg);
}

function need(n) {
  if (n > E - P) fail(`data item cut short at byte ${P} (needs ${n} more bytes, ${E - P} left)`);
}

// argument reads the argument of a head whose additional info is ai, as a
// Number when it is below 2^53, else as a BigInt; -1 for indefinite.
function argument(ai) {
  if (ai < 24) return ai;
  switch (ai) {
    case 24:
      need(1);
      return B[P++];
    case 25: {
      need(2);
      const v = (B[P] << 8) | B[P + 1];
      P += 2;
      return v;
    }
    case 26: {
      need(4);
      const v = B[P] * 16777216 + ((B[P + 1] << 16) | (B[P + 2] << 8) | B[P + 3]);
      P += 4;
      return v;
    }
    case 27: {
      need(8);
      const hi = B[P] * 16777216 + ((B[P + 1] << 16) | (B[P + 2] << 8) | B[P + 3]);
      const lo = B[P + 4] * 16777216 + ((B[P + 5] << 16) | (B[P + 6] << 8) | B[P + 7]);
      P += 8;
      if (hi < 0x200000) return hi * 4294967296 + lo;
      return (BigInt(hi) << 32n) | BigInt(lo);
    }
    case 31:
      return -1;
    default:
      fail(`reserved additional information ${ai} at byte ${P - 1}`);
  }
  return 0; // not reached
}

// length reads a length argument: a count that must fit what is left.
function length(ai, per) {
  const n = argument(ai);
  if (typeof n === 'bigint' || n * per > E - P) fail(`length ${n} at byte ${P} exceeds the ${E - P} bytes left`);
  return n;
}

function nested(depth) {
  if (depth >= MAX_DEPTH) fail(`nested deeper than ${MAX_DEPTH} levels`);
}

// item reads one data item; depth counts the arrays, maps and tags around
// it.
function item(depth) {
  need(1);
  const ib = B[P++];
  const major = ib >> 5;
  const ai = ib & 31;
  switch (major) {
    case 0:
      if (ai === 31) fail('indefinite length for an integer');
      return argument(ai);
    case 1: {
      if (ai === 31) fail('indefinite length for an integer');
      const n = argument(ai);
      if (typeof n === 'number' && n < 9007199254740991) return -1 - n;
      return -1n - BigInt(n);
    }
    case 2: {
      if (ai === 31) return chunks(2, depth);
      const n = length(ai, 1);
      const v = SHARE ? B.subarray(P, P + n) : Buffer.from(B.subarray(P, P + n));
      P += n;
      return v;
    }
    case 3: {
      if (ai === 31) return chunks(3, depth);
      const n = length(ai, 1);
      const v = utf8Slice(B, P, P + n);
      P += n;
      return v;
    }
    case 4: {
      nested(depth);
      if (ai === 31) {
        const a = [];
        for (;;) {
          need(1);
          if (B[P] === 0xff) {
            P++;
            return a;
          }
          a.push(item(depth + 1));
        }
      }
      const n = length(ai, 1);
      const a = new Array(n);
      for (let i = 0; i < n; i++) {
        // Unsigned integers below 2^32 inline: the elements of most
        // chunks.
        const b = B[P];
        if (b < 0x18) {
          a[i] = b;
          P++;
        } else if (b === 0x18 && P + 1 < E) {
          a[i] = B[P + 1];
          P += 2;
        } else if (b === 0x19 && P + 2 < E) {
          a[i] = (B[P + 1] << 8) | B[P + 2];
          P += 3;
        } else if (b === 0x1a && P + 4 < E) {
          a[i] = B[P + 1] * 16777216 + ((B[P + 2] << 16) | (B[P + 3] << 8) | B[P + 4]);
          P += 5;
        } else {
          a[i] = item(depth + 1);
        }
      }
      return a;
    }
    case 5:
      nested(depth);
      return map(ai, depth);
    case 6: {
      nested(depth);
      if (ai === 31) fail('indefinite length for a tag');
      const tag = argument(ai);
      const v = item(depth + 1);
      return tagged(tag, v);
    }
    default:
      return simple(ai);
  }
}

// chunks reads an indefinite-length byte or text string.
function chunks(major, depth) {
  const parts = [];
  for (;;) {
    need(1);
    if (B[P] === 0xff) {
      P++;
      break;
    }
    if (B[P] >> 5 !== major || (B[P] & 31) === 31) fail(`bad chunk of an indefinite-length string at byte ${P}`);
    const ib = B[P++];
    const n = length(ib & 31, 1);
    parts.push(B.subarray(P, P + n));
    P += n;
  }
  const all = Buffer.concat(parts);
  return major === 2 ? all : utf8Slice(all, 0, all.length);
}

function setKey(obj, k, v) {
  if (k === '__proto__') Object.defineProperty(obj, k, { value: v, enumerable: true, writable: true, configurable: true });
  else obj[k] = v;
}

// map reads a map as a plain object while its keys are strings, or as a Map
// once one is not.
function map(ai, depth) {
  const n = ai === 31 ? -1 : length(ai, 2);
  let obj = {};
  let m = null;
  for (let i = 0; n < 0 || i < n; i++) {
    if (n < 0) {
      need(1);
      if (B[P] === 0xff) {
        P++;
        break;
      }
    }
    const k = item(depth + 1);
    const v = item(depth + 1);
    if (m !== null) {
      m.set(k, v);
    } else if (typeof k === 'string') {
      setKey(obj, k, v);
    } else {
      m = new Map(Object.entries(obj));
      m.set(k, v);
    }
  }
  return m !== null ? m : obj;
}

function tagged(tag, v) {
  switch (tag) {
    case 0: {
      if (typeof v !== 'string') fail('tag 0 (date/time) on a non-string');
      const d = new Date(v);
      if (Number.isNaN(d.getTime())) fail(`tag 0 with a bad date/time ${JSON.stringify(v)}`);
      return d;
    }
    case 1:
      if (typeof v === 'number') return new Date(v * 1000);
      if (typeof v === 'bigint') return new Date(Number(v) * 1000);
      fail('tag 1 (epoch time) on a non-number');
      break;
    case 2:
    case 3: {
      if (!(v instanceof Uint8Array)) fail(`tag ${tag} (bignum) on a non-byte-string`);
      let n = 0n;
      for (let i = 0; i < v.length; i++) n = (n << 8n) | BigInt(v[i]);
      if (tag === 3) n = -1n - n;
      return n >= -9007199254740991n && n <= 9007199254740991n ? Number(n) : n;
    }
  }
  return v;
}

function simple(ai) {
  switch (ai) {
    case 20:
      return false;
    case 21:
      return true;
    case 22:
      return null;
    case 23:
      return undefined;
    case 25: {
      need(2);
      const h = (B[P] << 8) | B[P + 1];
      P += 2;
      return half(h);
    }
    case 26: {
      need(4);
      const v = B.readFloatBE(P);
      P += 4;
      return v;
    }
    case 27: {
      need(8);
      const v = B.readDoubleBE(P);
      P += 8;
      return v;
    }
    case 31:
      fail(`unexpected break at byte ${P - 1}`);
  }
  fail(`unsupported simple value ${ai} at byte ${P - 1}`);
  return undefined;
}

function half(h) {
  const exp = (h >> 10) & 0x1f;
  const mant = h & 0x3ff;
  let v;
  if (exp === 0) v = mant * 2 ** -24;
  else if (exp === 31) v = mant === 0 ? Infinity : NaN;
  else v = (mant + 1024) * 2 ** (exp - 25);
  return h & 0x8000 ? -v : v;
}

// decode returns the value of the one data item in buf[start:end). With
// share, byte strings are views of buf (the caller gives a buffer that is
// not reused); without, they are copies.
function decode(buf, start = 0, end = buf.length, share = false) {
  B = buf;
  P = start;
  E = end;
  SHARE = share;
  try {
    const v = item(0);
    if (P !== E) fail(`${E - P} bytes after the data item`);
    return v;
  } finally {
    B = null;
  }
}

// ---- encoding ----

// headAt writes a head at b[p] (the caller made room for 9 bytes) and
// returns the position after it.
function headAt(b, p, major, n) {
  const m = major << 5;
  if (n < 24) {
    b[p++] = m | n;
  } else if (n < 0x100) {
    b[p++] = m | 24;
    b[p++] = n;
  } else if (n < 0x10000) {
    b[p++] = m | 25;
    b[p++] = n >> 8;
    b[p++] = n & 0xff;
  } else if (n < 0x100000000) {
    b[p++] = m | 26;
    b[p++] = n >>> 24;
    b[p++] = (n >>> 16) & 0xff;
    b[p++] = (n >>> 8) & 0xff;
    b[p++] = n & 0xff;
  } else {
    const hi = Math.floor(n / 4294967296);
    const lo = n >>> 0;
    b[p++] = m | 27;
    b[p++] = hi >>> 24;
    b[p++] = (hi >>> 16) & 0xff;
    b[p++] = (hi >>> 8) & 0xff;
    b[p++] = hi & 0xff;
    b[p++] = lo >>> 24;
    b[p++] = (lo >>> 16) & 0xff;
    b[p++] = (lo >>> 8) & 0xff;
    b[p++] = lo & 0xff;
  }
  return p;
}

function head(out, major, n) {
  if (n < 24) {
    out.byte((major << 5) | n);
    return;
  }
  out.ensure(9);
  out.pos = headAt(out.buf, out.pos, major, n);
}

function headBig(out, major, n) {
  out.ensure(9);
  out.buf[out.pos] = (major << 5) | 27;
  out.buf.writeBigUInt64BE(n, out.pos + 1);
  out.pos += 9;
}

function float64(out, v) {
  out.ensure(9);
  out.buf[out.pos] = 0xfb;
  out.buf.writeDoubleBE(v, out.pos + 1);
  out.pos += 9;
}

function text(out, s) {
  const max = s.length * 3;
  const h = max < 24 ? 1 : max < 0x100 ? 2 : max < 0x10000 ? 3 : max < 0x100000000 ? 5 : 9;
  out.ensure(h + max);
  const start = out.pos;
  const n = out.buf.utf8Write(s, start + h);
  const h2 = n < 24 ? 1 : n < 0x100 ? 2 : n < 0x10000 ? 3 : n < 0x100000000 ? 5 : 9;
  if (h2 !== h) out.buf.copyWithin(start + h2, start + h, start + h + n);
  headAt(out.buf, start, 3, n);
  out.pos = start + h2 + n;
}

function bigint(out, v) {
  if (v >= 0n) {
    if (v < 0x10000000000000000n) {
      if (v <= 9007199254740991n) head(out, 0, Number(v));
      else headBig(out, 0, v);
      return;
    }
    bignum(out, 2, v);
    return;
  }
  const n = -1n - v;
  if (n < 0x10000000000000000n) {
    if (n <= 9007199254740991n) head(out, 1, Number(n));
    else headBig(out, 1, n);
    return;
  }
  bignum(out, 3, n);
}

function bignum(out, tag, n) {
  let hex = n.toString(16);
  if (hex.length & 1) hex = '0' + hex;
  head(out, 6, tag);
  const bytes = Buffer.from(hex, 'hex');
  head(out, 2, bytes.length);
  out.bytes(bytes);
}

// skipped reports whether a property of this value is left out of an
// object, as JSON.stringify leaves it out.
function skipped(v) {
  const t = typeof v;
  return t === 'undefined' || t === 'function' || t === 'symbol';
}

function value(out, v, depth) {
  switch (typeof v) {
    case 'number':
      if (Number.isSafeInteger(v)) {
        if (v >= 0) head(out, 0, v);
        else head(out, 1, -1 - v);
      } else {
        float64(out, v);
      }
      return;
    case 'string':
      text(out, v);
      return;
    case 'boolean':
      out.byte(v ? 0xf5 : 0xf4);
      return;
    case 'bigint':
      bigint(out, v);
      return;
    case 'object':
      if (v === null) {
        out.byte(0xf6);
        return;
      }
      object(out, v, depth);
      return;
    default: // undefined, function, symbol
      out.byte(0xf6);
  }
}

function object(out, v, depth) {
  if (depth >= MAX_DEPTH) throw new CodecError(`cbor: value nested deeper than ${MAX_DEPTH} levels (a cycle?)`);
  if (Array.isArray(v)) {
    const n = v.length;
    head(out, 4, n);
    for (let i = 0; i < n; i++) {
      const x = v[i];
      // Integers of up to 32 bits inline: the results of most chunks.
      if (typeof x === 'number' && x >= -4294967296 && x <= 4294967295 && Math.floor(x) === x) {
        if (out.pos + 5 > out.buf.length) out.ensure(5);
        out.pos = x >= 0 ? headAt(out.buf, out.pos, 0, x) : headAt(out.buf, out.pos, 1, -1 - x);
      } else {
        value(out, x, depth + 1);
      }
    }
    return;
  }
  if (ArrayBuffer.isView(v)) {
    if (v instanceof Uint8Array || v instanceof DataView) {
      head(out, 2, v.byteLength);
      out.bytes(new Uint8Array(v.buffer, v.byteOffset, v.byteLength));
      return;
    }
    head(out, 4, v.length); // another typed array: a list of its numbers
    for (let i = 0; i < v.length; i++) value(out, v[i], depth + 1);
    return;
  }
  if (v instanceof ArrayBuffer) {
    head(out, 2, v.byteLength);
    out.bytes(new Uint8Array(v));
    return;
  }
  if (v instanceof Date) {
    const t = v.getTime();
    if (Number.isNaN(t)) throw new CodecError('cbor: an invalid Date');
    head(out, 6, 0);
    text(out, v.toISOString());
    return;
  }
  if (v instanceof Map) {
    head(out, 5, v.size);
    for (const [k, x] of v) {
      value(out, k, depth + 1);
      value(out, x, depth + 1);
    }
    return;
  }
  if (v instanceof Set) {
    head(out, 4, v.size);
    for (const x of v) value(out, x, depth + 1);
    return;
  }
  if (typeof v.toJSON === 'function') {
    value(out, v.toJSON(), depth + 1);
    return;
  }
  const keys = Object.keys(v);
  let n = 0;
  for (let i = 0; i < keys.length; i++) if (!skipped(v[keys[i]])) n++;
  head(out, 5, n);
  for (let i = 0; i < keys.length; i++) {
    const x = v[keys[i]];
    if (skipped(x)) continue;
    text(out, keys[i]);
    value(out, x, depth + 1);
  }
}

// encode appends v to out (an OutBuf). On error out keeps what it had.
function encode(out, v) {
  const pos = out.pos;
  try {
    value(out, v, 0);
  } catch (e) {
    out.pos = pos;
    throw e instanceof CodecError ? e : new CodecError('cbor: ' + (e && e.message));
  }
}

// encodeList appends a list of values (a chunk's results).
function encodeList(out, vs) {
  encode(out, vs);
}

module.exports = { name: 'cbor', decode, encode, encodeList, CodecError };
