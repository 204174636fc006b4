"""Tests of procpool_worker's codecs: python3 -m unittest discover -s workers/python/tests

The CBOR codec is checked against bytes the Go side writes, against the
encodings RFC 8949 specifies, by random round trips, and by feeding it
truncated and random bytes: it must decode or raise CBORError, never
anything else. Seeded, so a failure repeats.
"""

import datetime
import math
import os
import random
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import procpool_worker as w  # noqa: E402

UTC = datetime.timezone.utc


def tz(hours, minutes=0):
    return datetime.timezone(datetime.timedelta(hours=hours, minutes=minutes))


# Bytes that Go's codec.CBOR.Append writes, and what they decode to here.
GO_VECTORS = [
    ("1bffffffffffffffff", 2 ** 64 - 1),  # uint64 max
    ("3b7fffffffffffffff", -2 ** 63),  # int64 min
    ("fa3fc00000", 1.5),  # float32
    ("fbc002000000000000", -2.25),  # float64
    ("fbfff0000000000000", -math.inf),
    ("420102", b"\x01\x02"),  # []byte
    ("f6", None),  # a nil slice, a nil map, the zero time.Time
    ("80", []),  # an empty slice
    ("c07823323032342d30322d32395432333a35393a35382e3132333435363738392b30353a3330",
     datetime.datetime(2024, 2, 29, 23, 59, 58, 123456, tz(5, 30))),  # nanoseconds cut to microseconds
    ("c074323030312d30312d30315430303a30303a30305a", datetime.datetime(2001, 1, 1, tzinfo=UTC)),
    # struct{Name string; Score float32; Tags []string; B [2]byte}{"a", 0.5, nil, {9, 8}}
    ("a4644e616d6561616553636f7265fa3f0000006454616773f66142420908",
     {"Name": "a", "Score": 0.5, "Tags": None, "B": b"\x09\x08"}),
    ("a1016178", {1: "x"}),  # map[int]string
    ("6368ff69", "h\udcffi"),  # a string with invalid UTF-8, kept
]

# RFC 8949, Appendix A: (encoding, value); those whose encoding this
# encoder writes back byte for byte are marked canonical.
RFC = [
    ("00", 0, True), ("01", 1, True), ("0a", 10, True), ("17", 23, True), ("1818", 24, True),
    ("1819", 25, True), ("1864", 100, True), ("1903e8", 1000, True), ("1a000f4240", 1000000, True),
    ("1b000000e8d4a51000", 1000000000000, True), ("1bffffffffffffffff", 18446744073709551615, True),
    ("c249010000000000000000", 18446744073709551616, True), ("3bffffffffffffffff", -18446744073709551616, True),
    ("c349010000000000000000", -18446744073709551617, True), ("20", -1, True), ("29", -10, True),
    ("3863", -100, True), ("3903e7", -1000, True),
    ("f90000", 0.0, False), ("f98000", -0.0, False), ("f93c00", 1.0, False), ("fb3ff199999999999a", 1.1, True),
    ("f93e00", 1.5, False), ("f97bff", 65504.0, False), ("fa47c35000", 100000.0, False),
    ("fa7f7fffff", 3.4028234663852886e+38, False), ("fb7e37e43c8800759c", 1.0e+300, True),
    ("f90001", 5.960464477539063e-8, False), ("f90400", 0.00006103515625, False), ("f9c400", -4.0, False),
    ("fbc010666666666666", -4.1, True), ("f97c00", math.inf, False), ("f9fc00", -math.inf, False),
    ("fa7f800000", math.inf, False), ("faff800000", -math.inf, False), ("fb7ff0000000000000", math.inf, True),
    ("fbfff0000000000000", -math.inf, True),
    ("f4", False, True), ("f5", True, True), ("f6", None, True), ("f7", None, False),
    ("c074323031332d30332d32315432303a30343a30305a",
     datetime.datetime(2013, 3, 21, 20, 4, 0, tzinfo=UTC), True),
    ("c11a514b67b0", datetime.datetime(2013, 3, 21, 20, 4, 0, tzinfo=UTC), False),
    ("c1fb41d452d9ec200000", datetime.datetime(2013, 3, 21, 20, 4, 0, 500000, tzinfo=UTC), False),
    ("d74401020304", w.Tag(23, b"\x01\x02\x03\x04"), True),
    ("d818456449455446", w.Tag(24, b"dIETF"), True),
    ("40", b"", True), ("4401020304", b"\x01\x02\x03\x04", True),
    ("60", "", True), ("6161", "a", True), ("6449455446", "IETF", True), ("62225c", "\"\\", True),
    ("62c3bc", "\u00fc", True), ("63e6b0b4", "\u6c34", True), ("64f0908591", "\U00010151", True),
    ("80", [], True), ("83010203", [1, 2, 3], True), ("8301820203820405", [1, [2, 3], [4, 5]], True),
    ("98190102030405060708090a0b0c0d0e0f101112131415161718181819", list(range(1, 26)), True),
    ("a0", {}, True), ("a201020304", {1: 2, 3: 4}, True),
    ("a26161016162820203", {"a": 1, "b": [2, 3]}, True), ("826161a161626163", ["a", {"b": "c"}], True),
    ("a56161614161626142616361436164614461656145", {"a": "A", "b": "B", "c": "C", "d": "D", "e": "E"}, True),
    ("5f42010243030405ff", b"\x01\x02\x03\x04\x05", False),
    ("7f657374726561646d696e67ff", "streaming", False),
    ("9fff", [], False), ("9f018202039f0405ffff", [1, [2, 3], [4, 5]], False),
    ("9f01820203820405ff", [1, [2, 3], [4, 5]], False), ("83018202039f0405ff", [1, [2, 3], [4, 5]], False),
    ("83019f0203ff820405", [1, [2, 3], [4, 5]], False),
    ("9f0102030405060708090a0b0c0d0e0f101112131415161718181819ff", list(range(1, 26)), False),
    ("bf61610161629f0203ffff", {"a": 1, "b": [2, 3]}, False), ("826161bf61626163ff", ["a", {"b": "c"}], False),
    ("bf6346756ef563416d7421ff", {"Fun": True, "Amt": -2}, False),
]


def same(a, b):
    """Equality that also holds for NaN, tells -0.0 from 0.0 and 1 from True."""
    if type(a) is not type(b):
        return False
    if type(a) is float:
        if math.isnan(a):
            return math.isnan(b)
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if type(a) in (list, tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if type(a) is dict:
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if type(a) is w.Tag:
        return a.tag == b.tag and same(a.value, b.value)
    return a == b


# Characters of every UTF-8 length, and lone surrogates (invalid UTF-8 kept).
ALPHABET = "aZ09 ~\"\\\x00\x7f\x80\u00e9\u07ff\u0800\u6c34\ufffd\U00010151\U0010ffff\udc80\udcff"


class Random:
    def __init__(self, seed, tags=(4, 5, 32, 1000, 2 ** 40)):
        self.r = random.Random(seed)
        self.tags = tags

    def scalar(self):
        r = self.r
        k = r.randrange(12)
        if k == 0:
            return r.randrange(-30, 30)
        if k == 1:
            bits = r.choice([8, 16, 32, 63, 64, 65, 100, 200])
            v = r.getrandbits(bits)
            return -v - 1 if r.random() < 0.5 else v
        if k == 2:
            return r.choice([0.0, -0.0, math.inf, -math.inf, math.nan, 5e-324, 1.7976931348623157e308,
                             r.uniform(-1e6, 1e6), r.random()])
        if k == 3:
            return "".join(r.choice(ALPHABET) for _ in range(r.randrange(0, 20)))
        if k == 4:
            return r.randbytes(r.choice([0, 1, 23, 24, 255, 256, 1000]))
        if k == 5:
            return r.choice([None, True, False])
        if k == 6:
            off = datetime.timedelta(minutes=r.randrange(-14 * 60, 14 * 60 + 1))
            return datetime.datetime(r.randrange(1, 10000), r.randrange(1, 13), r.randrange(1, 29), r.randrange(24),
                                      r.randrange(60), r.randrange(60), r.choice([0, r.randrange(1000000)]),
                                      datetime.timezone(off))
        if k == 7:
            return w.Tag(r.choice(self.tags), r.randrange(100))
        return r.randrange(-(2 ** 64), 2 ** 64)

    def value(self, depth=0):
        r = self.r
        k = r.randrange(10)
        if depth > 3 or k < 5:
            return self.scalar()
        width = 8 >> depth
        if k < 7:
            return [self.value(depth + 1) for _ in range(r.randrange(0, width + 1))]
        if k < 9:
            d = {}
            for _ in range(r.randrange(0, width + 1)):
                key = r.choice([self.scalar, lambda: r.randrange(-1000, 1000), lambda: "k%d" % r.randrange(100)])()
                if isinstance(key, float) and math.isnan(key):
                    continue
                d[key] = self.value(depth + 1)
            return d
        return [self.scalar() for _ in range(r.randrange(0, 60))]


class CBORTest(unittest.TestCase):
    def test_go_vectors(self):
        for enc, want in GO_VECTORS:
            got = w.cbor_loads(bytes.fromhex(enc))
            self.assertTrue(same(got, want), "%s decoded to %r, want %r" % (enc, got, want))
            self.assertEqual(got.utcoffset() if isinstance(got, datetime.datetime) else None,
                             want.utcoffset() if isinstance(want, datetime.datetime) else None)
        self.assertTrue(math.isnan(w.cbor_loads(bytes.fromhex("fb7ff8000000000001"))))

    def test_rfc_examples(self):
        for enc, want, canonical in RFC:
            b = bytes.fromhex(enc)
            got = w.cbor_loads(b)
            self.assertTrue(same(got, want), "%s decoded to %r, want %r" % (enc, got, want))
            if canonical:
                self.assertEqual(w.cbor_dumps(want).hex(), enc, "encoding of %r" % (want,))
        self.assertTrue(math.isnan(w.cbor_loads(bytes.fromhex("f97e00"))))
        self.assertTrue(math.isnan(w.cbor_loads(bytes.fromhex("fa7fc00000"))))

    def test_encodings_go_reads(self):
        # Times as Go writes them: RFC 3339, "Z" for UTC, no trailing zeros.
        cases = [
            (datetime.datetime(2001, 1, 1, tzinfo=UTC), "2001-01-01T00:00:00Z"),
            (datetime.datetime(2001, 1, 1, 0, 0, 0, 120000, tz(-3, -30)), "2001-01-01T00:00:00.12-03:30"),
            (datetime.datetime(9999, 12, 31, 23, 59, 59, 999999, tz(14)), "9999-12-31T23:59:59.999999+14:00"),
        ]
        for dt, s in cases:
            self.assertEqual(w.cbor_dumps(dt), b"\xc0" + w.cbor_dumps(s))
        with self.assertRaises(w.CBORError):
            w.cbor_dumps(datetime.datetime(2001, 1, 1))  # naive
        self.assertEqual(w.cbor_dumps(1.5).hex(), "fb3ff8000000000000")  # always 64 bits
        self.assertEqual(w.cbor_dumps((1, 2)).hex(), "820102")
        self.assertEqual(w.cbor_dumps(bytearray(b"ab")).hex(), "426162")
        for bad in (set(), object(), 1j, datetime.date(2001, 1, 1)):
            with self.assertRaises(w.CBORError):
                w.cbor_dumps(bad)
        cyc = []
        cyc.append(cyc)
        with self.assertRaises(w.CBORError):
            w.cbor_dumps(cyc)

    def test_round_trip(self):
        rnd = Random(1)
        for i in range(1500):
            v = rnd.value()
            b = w.cbor_dumps(v)
            got = w.cbor_loads(b)
            if not same(got, v):
                self.fail("case %d: %s decoded to something else" % (i, b.hex()[:200]))
            # Decoding from a memoryview (shared memory) gives the same.
            self.assertTrue(same(w.cbor_loads(memoryview(b)), v))

    def test_truncated(self):
        rnd = Random(2)
        for _ in range(300):
            b = w.cbor_dumps(rnd.value())
            for n in sorted(set(rnd.r.randrange(len(b)) for _ in range(20))):
                with self.assertRaises(w.CBORError, msg="prefix %d of %s" % (n, b.hex())):
                    w.cbor_loads(b[:n])
            with self.assertRaises(w.CBORError):
                w.cbor_loads(b + b"\x00")

    def test_garbage(self):
        r = random.Random(3)
        rnd = Random(4)
        for i in range(20000):
            if i % 2:
                b = r.randbytes(r.randrange(1, 40))
            else:  # a valid encoding with bytes changed
                b = bytearray(w.cbor_dumps(rnd.value()))
                for _ in range(r.randrange(1, 4)):
                    b[r.randrange(len(b))] = r.getrandbits(8)
                b = bytes(b)
            try:
                w.cbor_loads(b)
            except w.CBORError:
                pass

    def test_limits(self):
        deep = b"\x81" * 2000 + b"\x00"
        with self.assertRaises(w.CBORError):
            w.cbor_loads(deep)
        # A length larger than the data is refused before anything is made.
        for enc in ("9b7fffffffffffffff", "bb7fffffffffffffff", "5b7fffffffffffffff01", "7a0000ffff41"):
            with self.assertRaises(w.CBORError):
                w.cbor_loads(bytes.fromhex(enc))
        for enc in ("ff", "1c", "5fff00", "5f6161ff", "9f", "bf01ff", "c06161", "c1f6", "c261", "f818", "c0781a393939392d39392d39395439393a39393a39392b39393a3939",
                    "a1a0f6"):
            with self.assertRaises(w.CBORError, msg=enc):
                w.cbor_loads(bytes.fromhex(enc))
        self.assertEqual(w.cbor_loads(bytes.fromhex("a1820102f6")), {(1, 2): None})  # an array key: a tuple
        self.assertEqual(w.cbor_loads(bytes.fromhex("d9d9f70a")), 10)  # self-described CBOR

    def test_number_runs(self):
        # Lists of numbers go a block at a time where a block's items share
        # one width: runs of every width, of both signs, and the borders.
        r = random.Random(7)
        edges = [0, 23, 24, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, 2 ** 64 - 1]
        for _ in range(300):
            vs = []
            for _ in range(r.randrange(1, 6)):
                lo = r.choice(edges)
                hi = lo + r.choice([0, 1, 30, 1000])
                run = [r.randint(lo, hi) for _ in range(r.randrange(1, 80))]
                if r.random() < 0.3:
                    run = [-1 - x for x in run]
                if r.random() < 0.1:
                    run = [float(x) for x in run]
                if r.random() < 0.05:
                    run[r.randrange(len(run))] = r.choice([True, None, "x", 2 ** 70, 1.5])
                vs += run
            b = w.cbor_dumps(vs)
            got = w.cbor_loads(b)
            self.assertTrue(same(got, vs), "%r became %r" % (vs[:40], got[:40]))
            # Byte for byte what an item at a time writes.
            c = w._CBORCodec()
            self.assertEqual(b, bytes(c.head(len(vs))) + b"".join(bytes(c.item(v)) for v in vs))
            for n in (len(b) - 1, len(b) // 2, 5):
                with self.assertRaises(w.CBORError):
                    w.cbor_loads(b[:n])

    def test_list_items(self):
        # The worker encodes a chunk's results one by one; the list they make
        # is the encoding of the whole list.
        c = w._CBORCodec()
        rnd = Random(5)
        for _ in range(200):
            vs = [rnd.value() for _ in range(rnd.r.randrange(0, 50))]
            b = bytes(c.head(len(vs))) + b"".join(bytes(c.item(v)) for v in vs)
            self.assertEqual(b, w.cbor_dumps(vs))


class JSONTest(unittest.TestCase):
    def test_go_types(self):
        c = w._JSONCodec()
        self.assertEqual(c.dumps(b"\x00\x01\xff"), b'"AAH/"')  # []byte: base64
        self.assertEqual(c.dumps(datetime.datetime(2001, 1, 1, 0, 0, 0, 500000, tz(1))), b'"2001-01-01T00:00:00.5+01:00"')
        self.assertEqual(c.dumps({"a": [1, 2.5, None, True, "é"]}), '{"a":[1,2.5,null,true,"é"]}'.encode())
        with self.assertRaises(ValueError):
            c.dumps(math.nan)
        with self.assertRaises(TypeError):
            c.dumps(object())
        self.assertEqual(c.loads(memoryview(b'{"x":[1,2]}')), {"x": [1, 2]})
        self.assertEqual(c.loads(b"18446744073709551615"), 2 ** 64 - 1)
        vs = [1, "a", None, {"b": 2}]
        self.assertEqual(json_list(c, vs), c.dumps(vs))


def json_list(c, vs):
    out = bytearray(c.head(len(vs)))
    for i, v in enumerate(vs):
        if i:
            out += c.sep
        out += c.item(v)
    return bytes(out + c.tail)


@unittest.skipUnless(w._codec("cbor").lib is not None, "cbor2 is not importable: the pure codec is used")
class CBOR2Test(unittest.TestCase):
    """With cbor2 importable, the worker decodes with it: the same values."""

    def test_same_values(self):
        c = w._codec("cbor")
        for enc, want in GO_VECTORS:
            got = c.loads(bytes.fromhex(enc))
            self.assertTrue(same(got, want), "%s: cbor2 gave %r, want %r" % (enc, got, want))
        rnd = Random(6, tags=(1000, 2 ** 40))  # tags cbor2 has no type for
        for _ in range(500):
            v = rnd.value()
            self.assertTrue(same(c.loads(w.cbor_dumps(v)), v))
            self.assertTrue(same(w.cbor_loads(c.dumps(v)), v))


if __name__ == "__main__":
    unittest.main()
