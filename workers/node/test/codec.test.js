'use strict';

// Unit tests of the CBOR and JSON codecs (node --test test/). The CBOR
// vectors are the examples of RFC 8949, Appendix A.

const test = require('node:test');
const assert = require('node:assert');
const { OutBuf } = require('../lib/outbuf');
const cbor = require('../lib/cbor');
const json = require('../lib/json');

function enc(codec, v, initial = 16) {
  const out = new OutBuf(initial);
  codec.encode(out, v);
  return Buffer.from(out.buf.subarray(0, out.pos));
}

const hex = (s) => Buffer.from(s, 'hex');

test('cbor decodes the RFC 8949 examples', () => {
  const cases = [
    ['00', 0], ['01', 1], ['0a', 10], ['17', 23], ['1818', 24], ['1819', 25], ['1864', 100],
    ['1903e8', 1000], ['1a000f4240', 1000000], ['1b000000e8d4a51000', 1000000000000],
    ['1bffffffffffffffff', 18446744073709551615n], ['c249010000000000000000', 18446744073709551616n],
    ['3bffffffffffffffff', -18446744073709551616n], ['c349010000000000000000', -18446744073709551617n],
    ['20', -1], ['29', -10], ['3863', -100], ['3903e7', -1000],
    ['f90000', 0], ['f93c00', 1], ['fb3ff199999999999a', 1.1], ['f93e00', 1.5], ['f97bff', 65504],
    ['fa47c35000', 100000], ['fa7f7fffff', 3.4028234663852886e+38], ['fb7e37e43c8800759c', 1.0e+300],
    ['f90001', 5.960464477539063e-8], ['f90400', 0.00006103515625], ['f9c400', -4], ['fbc010666666666666', -4.1],
    ['f97c00', Infinity], ['f9fc00', -Infinity], ['fa7f800000', Infinity], ['fb7ff0000000000000', Infinity],
    ['f4', false], ['f5', true], ['f6', null], ['f7', undefined],
    ['c11a514b67b0', new Date(1363896240 * 1000)],
    ['c074323031332d30332d32315432303a30343a30305a', new Date('2013-03-21T20:04:00Z')],
    ['d74401020304', Buffer.from([1, 2, 3, 4])], // tag 23: the content is kept
    ['40', Buffer.alloc(0)], ['4401020304', Buffer.from([1, 2, 3, 4])],
    ['60', ''], ['6161', 'a'], ['6449455446', 'IETF'], ['62225c', '"\\'], ['62c3bc', '\u00fc'], ['63e6b0b4', '\u6c34'],
    ['64f0908591', '\u{10151}'],
    ['80', []], ['83010203', [1, 2, 3]], ['8301820203820405', [1, [2, 3], [4, 5]]],
    ['98190102030405060708090a0b0c0d0e0f101112131415161718181819', Array.from({ length: 25 }, (_, i) => i + 1)],
    ['a0', {}], ['a26161016162820203', { a: 1, b: [2, 3] }], ['826161a161626163', ['a', { b: 'c' }]],
    ['5f42010243030405ff', Buffer.from([1, 2, 3, 4, 5])], ['7f657374726561646d696e67ff', 'streaming'],
    ['9fff', []], ['9f018202039f0405ffff', [1, [2, 3], [4, 5]]], ['9f01820203820405ff', [1, [2, 3], [4, 5]]],
    ['83018202039f0405ff', [1, [2, 3], [4, 5]]], ['bf61610161629f0203ffff', { a: 1, b: [2, 3] }],
    ['bf6346756ef563416d7421ff', { Fun: true, Amt: -2 }],
  ];
  for (const [h, want] of cases) {
    assert.deepStrictEqual(cbor.decode(hex(h)), want, h);
  }
  assert.ok(Object.is(cbor.decode(hex('f98000')), -0));
  assert.ok(Number.isNaN(cbor.decode(hex('f97e00'))));
  const m = cbor.decode(hex('a201020304'));
  assert.ok(m instanceof Map);
  assert.deepStrictEqual([...m], [[1, 2], [3, 4]]);
  // Integers up to 2^53 - 1 are Numbers, beyond BigInts.
  assert.strictEqual(cbor.decode(hex('1b001fffffffffffff')), 9007199254740991);
  assert.strictEqual(cbor.decode(hex('1b0020000000000000')), 9007199254740992n);
  assert.strictEqual(cbor.decode(hex('3b001ffffffffffffe')), -9007199254740991);
  assert.strictEqual(cbor.decode(hex('3b001fffffffffffff')), -9007199254740992n);
  // A "__proto__" key is an own property, not the prototype.
  const o = cbor.decode(hex('a1695f5f70726f746f5f5f01'));
  assert.strictEqual(Object.getPrototypeOf(o), Object.prototype);
  assert.deepStrictEqual(Object.keys(o), ['__proto__']);
});

test('cbor byte strings are copies unless shared', () => {
  const input = hex('43010203');
  const copy = cbor.decode(input);
  input[1] = 9;
  assert.deepStrictEqual(copy, Buffer.from([1, 2, 3]));
  const view = cbor.decode(input, 0, input.length, true);
  input[2] = 8;
  assert.deepStrictEqual(view, Buffer.from([9, 8, 3]));
  // A slice of a larger buffer.
  const big = hex('ff0102ff');
  assert.deepStrictEqual(cbor.decode(big, 1, 2), 1);
});

test('cbor refuses malformed input', () => {
  const bad = [
    '', '18', '1a0000', '1c', '1d', '1e', '3f', 'ff', '5a ffffffff', '62 61',
    '9b00000000ffffffff', 'bf6161', '5f 61 61 ff', '7f 41 61 ff', '0000', 'f818', 'fc', 'c0 01',
    '9f', 'a1 01', '1f', '8118', '811901', '811a000000', '821a00000001',
  ];
  for (const h of bad) {
    assert.throws(() => cbor.decode(hex(h.replace(/ /g, ''))), cbor.CodecError, h);
  }
  // Nested deeper than 1000 levels.
  const deep = Buffer.concat([Buffer.alloc(1001, 0x81), hex('00')]);
  assert.throws(() => cbor.decode(deep), /nested deeper/);
  assert.throws(() => cbor.decode(Buffer.concat([Buffer.alloc(1001, 0xa1), hex('00')])), /nested deeper/);
  assert.throws(() => cbor.decode(Buffer.concat([Buffer.alloc(1001, 0xc6), hex('00')])), /nested deeper/);
  const ok = Buffer.concat([Buffer.alloc(1000, 0x81), hex('00')]);
  let v = cbor.decode(ok);
  for (let i = 0; i < 1000; i++) v = v[0];
  assert.strictEqual(v, 0);
});

test('cbor encodes as the Go codec does', () => {
  const cases = [
    [0, '00'], [23, '17'], [24, '1818'], [255, '18ff'], [256, '190100'], [65535, '19ffff'], [65536, '1a00010000'],
    [4294967295, '1affffffff'], [4294967296, '1b0000000100000000'], [9007199254740991, '1b001fffffffffffff'],
    [-1, '20'], [-24, '37'], [-25, '3818'], [-256, '38ff'], [-257, '390100'], [-9007199254740991, '3b001ffffffffffffe'],
    [-0, '00'], [1.5, 'fb3ff8000000000000'], [1.1, 'fb3ff199999999999a'], [1e300, 'fb7e37e43c8800759c'],
    [9007199254740992, 'fb4340000000000000'], [Infinity, 'fb7ff0000000000000'],
    [18446744073709551615n, '1bffffffffffffffff'], [18446744073709551616n, 'c249010000000000000000'],
    [-18446744073709551616n, '3bffffffffffffffff'], [-18446744073709551617n, 'c349010000000000000000'], [5n, '05'], [-5n, '24'],
    [false, 'f4'], [true, 'f5'], [null, 'f6'], [undefined, 'f6'],
    ['', '60'], ['a', '6161'], ['\u00fc', '62c3bc'], ['\u6c34', '63e6b0b4'], ['\u{10151}', '64f0908591'],
    [Buffer.from([1, 2, 3, 4]), '4401020304'], [new Uint8Array([1, 2]), '420102'], [new Uint8Array(new ArrayBuffer(2)), '420000'],
    [[], '80'], [[1, [2, 3], [4, 5]], '8301820203820405'], [{}, 'a0'], [{ a: 1, b: [2, 3] }, 'a26161016162820203'],
    [{ a: 1, skip: undefined, f() {} }, 'a1616101'], [[undefined], '81f6'],
    [new Map([[1, 2], [3, 4]]), 'a201020304'], [new Set([1, 2]), '820102'], [new Int16Array([1, -1]), '820120'],
    [new Date('2013-03-21T20:04:00Z'), 'c07818323031332d30332d32315432303a30343a30302e3030305a'],
    [{ toJSON: () => 'x' }, '6178'],
  ];
  for (const [v, h] of cases) {
    assert.strictEqual(enc(cbor, v).toString('hex'), h, `${typeof v} ${String(v)}`);
  }
});

test('cbor text of every length class and width', () => {
  for (const n of [0, 1, 7, 8, 9, 23, 24, 85, 86, 255, 256, 21845, 21846, 65535, 65536, 100000]) {
    for (const ch of ['a', '\u00fc', '\u6c34', '\u{1F600}']) {
      const s = ch.repeat(n);
      const b = enc(cbor, s, 8);
      assert.strictEqual(cbor.decode(b), s, `${n} × ${ch}`);
      const len = Buffer.byteLength(s);
      const headLen = len < 24 ? 1 : len < 256 ? 2 : len < 65536 ? 3 : 5;
      assert.strictEqual(b.length, headLen + len, `${n} × ${ch}: shortest head`);
    }
  }
});

test('cbor round trips', () => {
  const values = [
    0, -1, 1e-7, 123456789.125, -(2 ** 60), 2n ** 63n - 1n, -(2n ** 63n), 2n ** 64n - 1n, 2n ** 100n,
    'text', '', Buffer.from('bytes'), [1, 'a', null, true, [2, [3]]], { x: { y: { z: [1, 2] } }, s: 'v' },
    Array.from({ length: 70000 }, (_, i) => i * 3 - 100000),
    [0, 23, 24, 255, 256, 65535, 65536, 4294967295, 4294967296, -1, -24, -25, -4294967296, -4294967297, 1.5, -0.5, 2 ** 53 - 1, -(2 ** 53) + 1, 'x', null],
  ];
  for (const v of values) assert.deepStrictEqual(cbor.decode(enc(cbor, v)), v);
});

test('cbor refuses a cycle', () => {
  const a = [];
  a.push(a);
  const out = new OutBuf(16);
  out.pos = 5;
  assert.throws(() => cbor.encode(out, a), /nested deeper/);
  assert.strictEqual(out.pos, 5, 'the buffer keeps what it had');
});

test('json decodes, keeping big integers', () => {
  const dec = (s) => json.decode(Buffer.from(s));
  assert.deepStrictEqual(dec('{"a":[1,2.5,"x",null,true,false]}'), { a: [1, 2.5, 'x', null, true, false] });
  assert.strictEqual(dec('9007199254740991'), 9007199254740991);
  assert.strictEqual(dec('1234567890123456'), 1234567890123456);
  assert.strictEqual(dec('9223372036854775807'), 9223372036854775807n);
  assert.strictEqual(dec('-9223372036854775808'), -9223372036854775808n);
  assert.strictEqual(dec('18446744073709551615'), 18446744073709551615n);
  assert.deepStrictEqual(dec(' [ 18446744073709551615 , {"k" : -9007199254740993} ] '), [18446744073709551615n, { k: -9007199254740993n }]);
  assert.strictEqual(dec('12345678901234567890.5'), 12345678901234567890.5);
  assert.strictEqual(dec('12345678901234567890e2'), 12345678901234567890e2);
  assert.deepStrictEqual(dec('["12345678901234567890", "\\u00fc\\n"]'), ['12345678901234567890', '\u00fc\n']);
  assert.deepStrictEqual(Object.keys(dec('{"__proto__": 1, "big": 12345678901234567890}')), ['__proto__', 'big']);
  assert.deepStrictEqual(dec('"h\u00e9llo"'), 'h\u00e9llo');
  for (const bad of ['', '[1,', '{"a" 1}', '01', 'nul', '[1] x', '{"a":12345678901234567890,}', '"\t"', '[12345678901234567890']) {
    assert.throws(() => dec(bad), json.CodecError, bad);
  }
});

test('json encodes as Go expects', () => {
  const s = (v) => enc(json, v).toString();
  assert.strictEqual(s({ a: [1, 'x', null, true] }), '{"a":[1,"x",null,true]}');
  assert.strictEqual(s(undefined), 'null');
  assert.strictEqual(s(9223372036854775807n), '9223372036854775807');
  assert.strictEqual(s({ n: -5n, b: Buffer.from([1, 2, 3]) }), '{"n":-5,"b":"AQID"}');
  assert.strictEqual(s(new Uint8Array([255])), '"/w=="');
  assert.strictEqual(s(new Map([['k', 1], [2, 'v']])), '{"k":1,"2":"v"}');
  assert.strictEqual(s(new Set(['a'])), '["a"]');
  assert.strictEqual(s(new Date('2013-03-21T20:04:00Z')), '"2013-03-21T20:04:00.000Z"');
  assert.strictEqual(s({ a: undefined, f() {}, b: 1 }), '{"b":1}');
  assert.strictEqual(s([undefined, () => 1]), '[null,null]');
  assert.strictEqual(s('\u00fc"\\'), '"\u00fc\\"\\\\"');
  for (const bad of [NaN, Infinity, [1, -Infinity], { x: NaN, y: 1n }]) {
    assert.throws(() => enc(json, bad), /unsupported value/);
  }
  const a = {};
  a.self = a;
  assert.throws(() => enc(json, a), json.CodecError);
  const big = Array.from({ length: 100000 }, (_, i) => i);
  assert.deepStrictEqual(json.decode(enc(json, big)), big);
});
