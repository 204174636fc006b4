package codec

import (
	"bytes"
	"math"
	"testing"

	"github.com/fxamacker/cbor/v2"
)

// The fast paths must write exactly what the library writes, and read it
// back the same.
func TestCBORFastMatchesLibrary(t *testing.T) {
	ints := []int64{0, 1, 23, 24, 255, 256, 65535, 65536, math.MaxUint32, math.MaxUint32 + 1, math.MaxInt64,
		-1, -24, -25, -256, -257, -65536, -65537, math.MinInt64}
	var values []any
	for _, n := range ints {
		values = append(values, int(n), n)
	}
	asInts := make([]int, len(ints))
	for i, n := range ints {
		asInts[i] = int(n)
	}
	long := make([]int, 70000)
	for i := range long {
		long[i] = i - 35000
	}
	values = append(values, []byte("hello"), []byte{}, []byte(nil), make([]byte, 70000),
		asInts, ints, long, []int{}, []int(nil), []int64(nil),
		[]float64{0, -0.5, math.Inf(1), math.MaxFloat64, math.SmallestNonzeroFloat64}, []float64(nil))
	for _, v := range values {
		want, err := cborEnc.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := appendCBORFast([]byte("prefix"), v)
		if !ok || !bytes.Equal(got[6:], want) || string(got[:6]) != "prefix" {
			t.Fatalf("%T %v: fast path wrote % x, library % x", v, v, got, want)
		}
	}
	// Round trips through the fast decoder.
	var n int
	if !unmarshalCBORFast(appendCBORInt(nil, -12345), &n) || n != -12345 {
		t.Fatalf("int: %d", n)
	}
	var xs []int
	b, _ := appendCBORFast(nil, long)
	if !unmarshalCBORFast(b, &xs) || len(xs) != len(long) || xs[0] != long[0] || xs[69999] != long[69999] {
		t.Fatal("[]int round trip")
	}
	var bs []byte
	b, _ = appendCBORFast(nil, []byte("payload"))
	if !unmarshalCBORFast(b, &bs) || string(bs) != "payload" {
		t.Fatalf("[]byte round trip: %q", bs)
	}
	var fs []float64
	b, _ = appendCBORFast(nil, []float64{1.5, -2})
	if !unmarshalCBORFast(b, &fs) || len(fs) != 2 || fs[0] != 1.5 || fs[1] != -2 {
		t.Fatalf("[]float64 round trip: %v", fs)
	}
}

// Inputs outside the fast subset are left to the library, which decodes
// or rejects them as before.
func TestCBORFastDefersToLibrary(t *testing.T) {
	var n int
	for _, in := range [][]byte{
		nil, {0xf6}, {0x18}, {0x1c}, {0x01, 0x02}, {0x9f, 0x01, 0xff}, {0xfb, 0, 0},
		{0x1b, 0x80, 0, 0, 0, 0, 0, 0, 0}, // above MaxInt64
	} {
		if unmarshalCBORFast(in, &n) {
			t.Fatalf("% x taken by the fast path as %d", in, n)
		}
	}
	var xs []int
	for _, in := range [][]byte{{0xf6}, {0x9f, 0x01, 0xff}, {0x9a, 0xff, 0xff, 0xff, 0xff}, {0x82, 0x01}, {0x81, 0x01, 0x01}} {
		if unmarshalCBORFast(in, &xs) {
			t.Fatalf("% x taken by the fast path as %v", in, xs)
		}
	}
	// The library agrees on what the fast path accepts.
	var lib []int
	b, _ := appendCBORFast(nil, []int{1, -2, 300})
	if err := cbor.Unmarshal(b, &lib); err != nil || len(lib) != 3 || lib[2] != 300 {
		t.Fatalf("library reading the fast path's bytes: %v, %v", lib, err)
	}
	// Through the codec, null still zeroes as the library path does.
	xs = []int{1}
	if err := CBOR.Unmarshal([]byte{0xf6}, &xs); err != nil || xs != nil {
		t.Fatalf("null into []int: %v, %v", xs, err)
	}
}

// FuzzCBORFast checks that whatever the fast decoder accepts, the library
// decodes to the same value.
func FuzzCBORFast(f *testing.F) {
	for _, v := range []any{7, -300, []int{1, 2, 3}, []int{}, []float64{1.5}} {
		b, _ := appendCBORFast(nil, v)
		f.Add(b)
	}
	f.Add([]byte{0x9f, 0x01, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		var fast, lib []int
		if unmarshalCBORFast(data, &fast) {
			if err := cborDec.Unmarshal(data, &lib); err != nil || len(lib) != len(fast) {
				t.Fatalf("fast %v, library %v, %v", fast, lib, err)
			}
			for i := range fast {
				if fast[i] != lib[i] {
					t.Fatalf("item %d: fast %d, library %d", i, fast[i], lib[i])
				}
			}
		}
		var fb, lb []byte
		if unmarshalCBORFast(data, &fb) {
			if err := cborDec.Unmarshal(data, &lb); err != nil || string(fb) != string(lb) {
				t.Fatalf("fast %q, library %q, %v", fb, lb, err)
			}
		}
		var fn, ln int
		if unmarshalCBORFast(data, &fn) {
			if err := cborDec.Unmarshal(data, &ln); err != nil || fn != ln {
				t.Fatalf("fast %d, library %d, %v", fn, ln, err)
			}
		}
	})
}
