package codec_test

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/procpool/procpool/codec"
	"github.com/procpool/procpool/codec/gob"
	"github.com/procpool/procpool/codec/msgpack"
)

// The codecs' names, as the tables below key their expectations.
const (
	cborName    = "cbor"
	msgpackName = "msgpack"
	jsonName    = "json"
	gobName     = "gob"
)

// allCodecs are the codecs this suite checks: the built-in ones and those
// of the codec packages below this one.
var allCodecs = []codec.Codec{codec.CBOR, msgpack.Codec, codec.JSON, gob.Codec}

// Small is the small-struct workload of the benchmarks.
type Small struct {
	ID    int
	Name  string
	Score float64
	Tags  []string
}

type Inner struct {
	N int
	S string
}

type Outer struct {
	P    *Inner
	PP   **Inner
	PI   *int
	L    []Inner
	M    map[string]Inner
	B    []byte
	Arr  [3]int
	Next *Outer
}

func ptr[T any](v T) *T { return &v }

type roundTripCase struct {
	name string
	v    any
	// skip lists codecs that cannot round-trip v faithfully, with why.
	skip map[string]string
}

func roundTripCases() []roundTripCase {
	inner := &Inner{N: 7, S: "seven"}
	return []roundTripCase{
		{name: "int zero", v: 0},
		{name: "int", v: 42},
		{name: "int negative", v: -12345},
		{name: "int max", v: math.MaxInt64},
		{name: "int min", v: math.MinInt64},
		{name: "int64", v: int64(-1 << 40)},
		{name: "uint64 max", v: uint64(math.MaxUint64)},
		{name: "uint8", v: uint8(200)},
		{name: "float64", v: 3.25},
		{name: "float32", v: float32(-1.5)},
		{name: "float64 tiny", v: math.SmallestNonzeroFloat64},
		{name: "bool", v: true},
		{name: "string empty", v: ""},
		{name: "string", v: "héllo, 世界 <&>"},
		{name: "string invalid utf8", v: "a\xffb", skip: map[string]string{
			jsonName: "encoding/json replaces invalid UTF-8 with U+FFFD",
		}},
		{name: "struct", v: Small{ID: 1, Name: "x", Score: 0.5, Tags: []string{"a", "b"}}},
		{name: "struct zero", v: Small{}},
		{name: "slice int", v: []int{1, -2, 3, 1 << 40}},
		{name: "slice int nil", v: []int(nil)},
		{name: "slice int empty", v: []int{}, skip: map[string]string{
			gobName: "gob decodes an empty slice as nil",
		}},
		{name: "slice string", v: []string{"a", "", "c"}},
		{name: "slice struct", v: []Small{{ID: 1}, {ID: 2, Tags: []string{"t"}}}},
		{name: "map string int", v: map[string]int{"a": 1, "b": 2, "": 0}},
		{name: "map int string", v: map[int]string{1: "a", -2: "b"}},
		{name: "map nil", v: map[string]int(nil), skip: map[string]string{
			gobName: "gob decodes a nil map as an empty map",
		}},
		{name: "map empty", v: map[string]int{}, skip: map[string]string{
			gobName: "gob decodes an empty map as nil",
		}},
		{name: "bytes", v: []byte{0, 1, 2, 255}},
		{name: "bytes nil", v: []byte(nil)},
		{name: "bytes empty", v: []byte{}, skip: map[string]string{
			gobName: "gob decodes an empty slice as nil",
		}},
		{name: "bytes 1MiB", v: bytes.Repeat([]byte{1, 2, 3, 4}, 1<<18)},
		{name: "array", v: [3]int{1, 2, 3}},
		{name: "big.Int", v: new(big.Int).Lsh(big.NewInt(-3), 100)},
		{name: "pointer", v: ptr(5)},
		{name: "pointer to pointer", v: ptr(ptr("deep"))},
		{name: "nested pointers", v: Outer{
			P:    inner,
			PP:   &inner,
			PI:   ptr(3),
			L:    []Inner{{N: 1}, {S: "s"}},
			M:    map[string]Inner{"k": {N: 2, S: "v"}},
			B:    []byte("bytes"),
			Arr:  [3]int{4, 5, 6},
			Next: &Outer{PI: ptr(9)},
		}},
		{name: "pointer to zero", v: Outer{PI: ptr(0)}, skip: map[string]string{
			gobName: "gob does not transmit zero values, so a pointer to 0 decodes as nil",
		}},
		{name: "struct zero with pointers", v: Outer{}},
	}
}

func TestRoundTrip(t *testing.T) {
	for _, c := range allCodecs {
		for _, tc := range roundTripCases() {
			t.Run(c.Name()+"/"+tc.name, func(t *testing.T) {
				if why, ok := tc.skip[c.Name()]; ok {
					t.Skip(why)
				}
				b, err := c.Append(nil, tc.v)
				if err != nil {
					t.Fatalf("Append: %v", err)
				}
				got := reflect.New(reflect.TypeOf(tc.v))
				if err := c.Unmarshal(b, got.Interface()); err != nil {
					t.Fatalf("Unmarshal: %v", err)
				}
				if !reflect.DeepEqual(got.Elem().Interface(), tc.v) {
					t.Fatalf("round trip:\n got %#v\nwant %#v", got.Elem().Interface(), tc.v)
				}
			})
		}
	}
}

func TestAppendKeepsPrefix(t *testing.T) {
	for _, c := range allCodecs {
		t.Run(c.Name(), func(t *testing.T) {
			prefix := []byte("prefix")
			dst := append(make([]byte, 0, 64), prefix...)
			out, err := c.Append(dst, Small{ID: 3, Name: "n"})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(out, prefix) {
				t.Fatalf("prefix lost: %q", out)
			}
			var got Small
			if err := c.Unmarshal(out[len(prefix):], &got); err != nil {
				t.Fatal(err)
			}
			if got.ID != 3 || got.Name != "n" {
				t.Fatalf("got %+v", got)
			}

			// On error dst comes back with its length unchanged.
			out, err = c.Append(dst, make(chan int))
			if err == nil {
				t.Fatal("no error for a channel")
			}
			if !bytes.Equal(out, prefix) {
				t.Fatalf("dst changed on error: %q", out)
			}
		})
	}
}

// TestDecodeAny checks what each codec yields when decoding into *any.
func TestDecodeAny(t *testing.T) {
	type tcase struct {
		v    any
		want map[string]any // per codec
	}
	cases := []tcase{
		{v: 5, want: map[string]any{cborName: int64(5), msgpackName: int64(5), jsonName: 5.0}},
		{v: 300, want: map[string]any{cborName: int64(300), msgpackName: int64(300), jsonName: 300.0}},
		{v: -70000, want: map[string]any{cborName: int64(-70000), msgpackName: int64(-70000), jsonName: -70000.0}},
		{v: uint64(math.MaxUint64), want: map[string]any{
			cborName:    new(big.Int).SetUint64(math.MaxUint64),
			msgpackName: uint64(math.MaxUint64),
			jsonName:    float64(math.MaxUint64),
		}},
		{v: float32(0.5), want: map[string]any{cborName: 0.5, msgpackName: 0.5, jsonName: 0.5}},
		{v: "s", want: map[string]any{cborName: "s", msgpackName: "s", jsonName: "s"}},
		{v: []byte{1, 2}, want: map[string]any{cborName: []byte{1, 2}, msgpackName: []byte{1, 2}, jsonName: "AQI="}},
		{v: []int{1, 2}, want: map[string]any{
			cborName:    []any{int64(1), int64(2)},
			msgpackName: []any{int64(1), int64(2)},
			jsonName:    []any{1.0, 2.0},
		}},
		{v: map[string]int{"a": 1}, want: map[string]any{
			cborName:    map[string]any{"a": int64(1)},
			msgpackName: map[string]any{"a": int64(1)},
			jsonName:    map[string]any{"a": 1.0},
		}},
		{v: map[int]string{1: "a"}, want: map[string]any{
			cborName:    map[any]any{int64(1): "a"},
			msgpackName: map[any]any{int64(1): "a"},
			jsonName:    map[string]any{"1": "a"},
		}},
		{v: map[string]any{"m": map[int]int{2: 3}, "l": []any{uint8(4)}}, want: map[string]any{
			cborName:    map[any]any{"m": map[any]any{int64(2): int64(3)}, "l": []any{int64(4)}},
			msgpackName: map[string]any{"m": map[any]any{int64(2): int64(3)}, "l": []any{int64(4)}},
			jsonName:    map[string]any{"m": map[string]any{"2": 3.0}, "l": []any{4.0}},
		}},
		{v: Small{ID: 1, Name: "n", Tags: []string{"t"}}, want: map[string]any{
			cborName:    map[string]any{"ID": int64(1), "Name": "n", "Score": 0.0, "Tags": []any{"t"}},
			msgpackName: map[string]any{"ID": int64(1), "Name": "n", "Score": 0.0, "Tags": []any{"t"}},
			jsonName:    map[string]any{"ID": 1.0, "Name": "n", "Score": 0.0, "Tags": []any{"t"}},
		}},
		{v: nil, want: map[string]any{cborName: nil, msgpackName: nil, jsonName: nil}},
	}
	for _, c := range []codec.Codec{codec.CBOR, msgpack.Codec, codec.JSON} {
		for _, tc := range cases {
			t.Run(fmt.Sprintf("%s/%T", c.Name(), tc.v), func(t *testing.T) {
				b, err := c.Append(nil, tc.v)
				if err != nil {
					t.Fatal(err)
				}
				var got any = "sentinel"
				if err := c.Unmarshal(b, &got); err != nil {
					t.Fatal(err)
				}
				if want := tc.want[c.Name()]; !reflect.DeepEqual(got, want) {
					t.Fatalf("got %#v, want %#v", got, want)
				}
			})
		}
	}
	// MsgPack normalizes *[]any and *map[string]any destinations too.
	b, err := msgpack.Codec.Append(nil, []any{1, map[string]any{"k": uint16(2)}, float32(0.5)})
	if err != nil {
		t.Fatal(err)
	}
	var list []any
	if err := msgpack.Codec.Unmarshal(b, &list); err != nil {
		t.Fatal(err)
	}
	if want := []any{int64(1), map[string]any{"k": int64(2)}, 0.5}; !reflect.DeepEqual(list, want) {
		t.Errorf("msgpack []any: got %#v, want %#v", list, want)
	}
	b, err = msgpack.Codec.Append(nil, map[string]any{"a": []any{int8(-3)}})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := msgpack.Codec.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if want := map[string]any{"a": []any{int64(-3)}}; !reflect.DeepEqual(m, want) {
		t.Errorf("msgpack map[string]any: got %#v, want %#v", m, want)
	}

	// Gob needs a concrete destination.
	b, err = gob.Codec.Append(nil, 5)
	if err != nil {
		t.Fatal(err)
	}
	var got any
	if err := gob.Codec.Unmarshal(b, &got); err == nil {
		t.Fatalf("gob decoded a concrete value into *any: %#v", got)
	}
}

func TestTime(t *testing.T) {
	loc := time.FixedZone("X", 5*3600+30*60)
	times := []time.Time{
		time.Date(2024, 2, 29, 13, 14, 15, 123456789, time.UTC),
		time.Date(1969, 7, 20, 20, 17, 40, 0, loc),
		time.Date(2106, 2, 7, 6, 28, 16, 999999999, time.UTC),
		time.Now(), // has a monotonic reading
	}
	for _, c := range allCodecs {
		for i, tm := range times {
			t.Run(fmt.Sprintf("%s/%d", c.Name(), i), func(t *testing.T) {
				b, err := c.Append(nil, tm)
				if err != nil {
					t.Fatal(err)
				}
				var got time.Time
				if err := c.Unmarshal(b, &got); err != nil {
					t.Fatal(err)
				}
				if !got.Equal(tm) {
					t.Fatalf("got %v, want %v", got, tm)
				}
			})
		}
		t.Run(c.Name()+"/zero", func(t *testing.T) {
			b, err := c.Append(nil, time.Time{})
			if err != nil {
				t.Fatal(err)
			}
			got := time.Now()
			if err := c.Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			if !got.IsZero() {
				t.Fatalf("got %v, want the zero time", got)
			}
		})
	}
	// Times inside containers. For MsgPack the payload of the timestamp
	// extension of the third time starts with 0x81, which reads as a
	// MessagePack map header: Unmarshal must still accept it.
	type withTimes struct {
		T time.Time
		L []time.Time
		M map[string]time.Time
		P *time.Time
	}
	const payload = 0x81a0ddfcddffff00 // 30 bits of nanoseconds, 34 of seconds
	tricky := time.Unix(payload&(1<<34-1), payload>>34)
	in := withTimes{T: times[0], L: times, M: map[string]time.Time{"a": times[1], "b": tricky}, P: &tricky}
	for _, c := range allCodecs {
		b, err := c.Append(nil, in)
		if err != nil {
			t.Fatal(err)
		}
		var got withTimes
		if err := c.Unmarshal(b, &got); err != nil {
			t.Fatalf("%s: %v", c.Name(), err)
		}
		ok := got.T.Equal(in.T) && len(got.L) == len(in.L) && got.M["b"].Equal(tricky) && got.P != nil && got.P.Equal(tricky)
		for i := range got.L {
			ok = ok && got.L[i].Equal(in.L[i])
		}
		if !ok {
			t.Errorf("%s: got %+v, want %+v", c.Name(), got, in)
		}
	}

	// Into any: CBOR and MsgPack yield time.Time.
	for _, c := range []codec.Codec{codec.CBOR, msgpack.Codec} {
		b, err := c.Append(nil, times[0])
		if err != nil {
			t.Fatal(err)
		}
		var got any
		if err := c.Unmarshal(b, &got); err != nil {
			t.Fatal(err)
		}
		if tm, ok := got.(time.Time); !ok || !tm.Equal(times[0]) {
			t.Errorf("%s: got %#v, want time %v", c.Name(), got, times[0])
		}
	}
}

// TestCBORTimeOutOfRange documents that CBOR encodes a time after year 9999
// but cannot decode it: RFC 3339 has four-digit years.
func TestCBORTimeOutOfRange(t *testing.T) {
	tm := time.Date(12000, 1, 1, 0, 0, 0, 0, time.UTC)
	b, err := codec.CBOR.Append(nil, tm)
	if err != nil {
		t.Fatal(err)
	}
	var got time.Time
	if err := codec.CBOR.Unmarshal(b, &got); err == nil {
		t.Fatalf("decoded %v; the documentation says this fails", got)
	}
}

func TestSpecialFloats(t *testing.T) {
	for _, c := range allCodecs {
		for _, f := range []float64{math.NaN(), math.Inf(1), math.Inf(-1), math.Copysign(0, -1)} {
			t.Run(fmt.Sprintf("%s/%v", c.Name(), f), func(t *testing.T) {
				b, err := c.Append(nil, f)
				if c == codec.JSON && (math.IsNaN(f) || math.IsInf(f, 0)) {
					if err == nil {
						t.Fatal("json encoded NaN or Inf without error")
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				var got float64
				if err := c.Unmarshal(b, &got); err != nil {
					t.Fatal(err)
				}
				if math.Float64bits(got) != math.Float64bits(f) && !(math.IsNaN(got) && math.IsNaN(f)) {
					t.Fatalf("got %v (%x), want %v", got, math.Float64bits(got), f)
				}
			})
		}
	}
}

type Node struct {
	Val  int
	Next *Node
}

type withChan struct {
	C chan int
}

func unencodable() map[string]any {
	cyc := &Node{Val: 1}
	cyc.Next = &Node{Val: 2, Next: cyc}
	m := map[string]any{"a": 1}
	m["self"] = m
	s := make([]any, 2)
	s[1] = s
	var iface any
	iface = &iface
	return map[string]any{
		"chan":             make(chan int),
		"func":             func() {},
		"nil func":         (func())(nil),
		"cyclic pointer":   cyc,
		"cyclic map":       m,
		"cyclic slice":     s,
		"cyclic interface": &iface,
		"complex":          complex(1, 2),
	}
}

func TestUnencodable(t *testing.T) {
	for _, c := range allCodecs {
		for name, v := range unencodable() {
			t.Run(c.Name()+"/"+name, func(t *testing.T) {
				if name == "complex" && c != codec.JSON {
					t.Skip("only JSON cannot encode complex numbers")
				}
				b, err := c.Append(nil, v)
				if err == nil {
					t.Fatalf("no error, encoded %d bytes", len(b))
				}
				if !strings.HasPrefix(err.Error(), "codec "+c.Name()+": ") {
					t.Errorf("error %q does not name the codec", err)
				}
				t.Log(err)
			})
		}
	}
}

func TestNilPointer(t *testing.T) {
	for _, c := range allCodecs {
		b, err := c.Append(nil, (*Small)(nil))
		if c == gob.Codec {
			// gob panics on a nil pointer; Append must turn that
			// into an error.
			if err == nil {
				t.Error("gob: no error for a nil pointer")
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.Name(), err)
			continue
		}
		got := &Small{ID: 1}
		if err := c.Unmarshal(b, &got); err != nil || got != nil {
			t.Errorf("%s: got %+v, %v; want nil", c.Name(), got, err)
		}
	}
}

func TestStructWithChanField(t *testing.T) {
	// CBOR, MsgPack and JSON refuse a struct with a channel field; gob
	// silently skips such fields and has nothing left to send.
	for _, c := range allCodecs {
		if _, err := c.Append(nil, withChan{C: make(chan int)}); err == nil {
			t.Errorf("%s: no error for a struct with only a channel field", c.Name())
		}
	}
}

// TestDeepAcyclic checks that a deep but acyclic value is not mistaken for a
// cycle.
func TestDeepAcyclic(t *testing.T) {
	var head *Node
	for i := range 500 {
		head = &Node{Val: i, Next: head}
	}
	shared := &Inner{N: 1}
	type twice struct{ A, B *Inner }
	var deep any = "leaf"
	for range 300 {
		deep = []any{deep}
	}
	for _, c := range allCodecs {
		for _, v := range []any{head, twice{shared, shared}, deep} {
			if c == gob.Codec && reflect.TypeOf(v) == reflect.TypeOf(deep) {
				continue // gob cannot encode []any without registration
			}
			b, err := c.Append(nil, v)
			if err != nil {
				t.Errorf("%s %T: %v", c.Name(), v, err)
				continue
			}
			got := reflect.New(reflect.TypeOf(v))
			if err := c.Unmarshal(b, got.Interface()); err != nil {
				t.Errorf("%s %T: %v", c.Name(), v, err)
			} else if !reflect.DeepEqual(got.Elem().Interface(), v) && c != codec.JSON {
				t.Errorf("%s %T: round trip changed the value", c.Name(), v)
			}
		}
	}
}

func TestTrailingData(t *testing.T) {
	for _, c := range allCodecs {
		b, err := c.Append(nil, Small{ID: 1})
		if err != nil {
			t.Fatal(err)
		}
		b = append(b, b...)
		var got Small
		if err := c.Unmarshal(b, &got); err == nil {
			t.Errorf("%s: no error for trailing data", c.Name())
		}
	}
}

func TestUnmarshalBadDestination(t *testing.T) {
	for _, c := range allCodecs {
		b, err := c.Append(nil, 1)
		if err != nil {
			t.Fatal(err)
		}
		var n int
		for _, dst := range []any{nil, n, (*int)(nil)} {
			if err := c.Unmarshal(b, dst); err == nil {
				t.Errorf("%s: no error decoding into %#v", c.Name(), dst)
			}
		}
		var s string
		if err := c.Unmarshal(b, &s); err == nil {
			t.Errorf("%s: decoded an int into a string: %q", c.Name(), s)
		}
	}
}

// destinations returns fresh pointers of the types garbage is decoded into.
// Gob is not given destinations that contain maps: up to Go 1.26 gob
// preallocates a map of the declared size (golang.org/issue/79539), which a
// fuzzer finds quickly and which can exhaust memory.
func destinations(c codec.Codec) []any {
	d := []any{new(any), new(Small), new([]int), new(int), new(string), new([]byte), new(time.Time), new([]Inner)}
	if c != gob.Codec {
		d = append(d, new(Outer), new(map[string]any), new(map[string][]int), new([]any))
	}
	return d
}

func garbageInputs() [][]byte {
	var valid [][]byte
	for _, c := range allCodecs {
		for _, v := range []any{42, "str", Small{ID: 1, Name: "n", Tags: []string{"a"}}, []int{1, 2, 3}, map[string]int{"k": 1}, []byte("xyz"), time.Now()} {
			b, err := c.Append(nil, v)
			if err == nil {
				valid = append(valid, b)
			}
		}
	}
	inputs := [][]byte{nil, {}, {0xff}, {0xc1}, {0x00, 0x00}, []byte("{"), []byte("[1,"), []byte(`"\u12`)}
	for _, b := range valid {
		for i := range len(b) { // every proper prefix
			inputs = append(inputs, b[:i])
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for _, b := range valid {
		for range 20 { // random byte changes
			m := bytes.Clone(b)
			for range 1 + r.IntN(3) {
				m[r.IntN(len(m))] = byte(r.Uint32())
			}
			inputs = append(inputs, m)
		}
	}
	for range 500 { // random bytes
		m := make([]byte, r.IntN(64))
		for i := range m {
			m[i] = byte(r.Uint32())
		}
		inputs = append(inputs, m)
	}
	return inputs
}

func TestUnmarshalGarbage(t *testing.T) {
	inputs := garbageInputs()
	for _, c := range allCodecs {
		t.Run(c.Name(), func(t *testing.T) {
			for _, in := range inputs {
				for _, dst := range destinations(c) {
					// Unmarshal must return, with or without an error.
					_ = c.Unmarshal(in, dst)
				}
			}
			for _, in := range [][]byte{nil, {}} {
				if err := c.Unmarshal(in, new(any)); err == nil {
					t.Errorf("no error for empty input %#v", in)
				}
			}
		})
	}
}

// TestTruncatedInput checks that every proper prefix of a valid encoding is
// an error.
func TestTruncatedInput(t *testing.T) {
	for _, c := range allCodecs {
		b, err := c.Append(nil, Outer{P: &Inner{N: 300, S: "s"}, L: []Inner{{N: 1}}, B: []byte("b")})
		if err != nil {
			t.Fatal(err)
		}
		for i := range len(b) {
			var got Outer
			if err := c.Unmarshal(b[:i], &got); err == nil {
				t.Errorf("%s: no error for %d of %d bytes", c.Name(), i, len(b))
			}
		}
	}
}

// allocated returns the bytes allocated while f runs.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestLyingLengths decodes short inputs that declare huge lengths and checks
// that they fail without allocating much.
func TestLyingLengths(t *testing.T) {
	type tcase struct {
		name string
		c    codec.Codec
		in   []byte
		// valid: the input is also a legitimate value for some
		// destinations, so only the allocation is checked.
		valid bool
	}
	huge4 := []byte{0xff, 0xff, 0xff, 0xff}
	huge8 := []byte{0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	cases := []tcase{
		{"cbor array", codec.CBOR, cat([]byte{0x9b}, huge8, []byte{1, 2}), false},
		{"cbor map", codec.CBOR, cat([]byte{0xbb}, huge8, []byte{1, 2}), false},
		{"cbor bytes", codec.CBOR, cat([]byte{0x5b}, huge8, []byte{1, 2}), false},
		{"cbor text", codec.CBOR, cat([]byte{0x7b}, huge8, []byte{'a'}), false},
		{"cbor array32", codec.CBOR, cat([]byte{0x9a}, huge4, []byte{1}), false},
		{"cbor nested array", codec.CBOR, cat([]byte{0x82, 0x01, 0x9a}, huge4, []byte{1}), false},
		{"msgpack array32", msgpack.Codec, cat([]byte{0xdd}, huge4, []byte{1, 2}), false},
		{"msgpack map32", msgpack.Codec, cat([]byte{0xdf}, huge4, []byte{0xa1, 'k', 1}), false},
		{"msgpack bin32", msgpack.Codec, cat([]byte{0xc6}, huge4, []byte{1, 2}), false},
		{"msgpack str32", msgpack.Codec, cat([]byte{0xdb}, huge4, []byte{'a'}), false},
		{"msgpack ext32", msgpack.Codec, cat([]byte{0xc9}, huge4, []byte{1, 2}), false},
		{"msgpack array16 in array", msgpack.Codec, []byte{0x92, 0x01, 0xdc, 0xff, 0xff, 0x01}, false},
		// An extension whose payload, read as MessagePack, is a map
		// holding an array of 2^32-1 elements; the library reads it so
		// when decoding into a map or struct.
		{"msgpack ext as map", msgpack.Codec, cat([]byte{0xc7, 0x08, 0x05, 0x81, 0xa1, 'T', 0xdd}, huge4, []byte{0x00}), false},
		// A valid timestamp whose payload, read as MessagePack, is a map
		// holding an array of 2^32-1 elements.
		{"msgpack timestamp as map", msgpack.Codec, cat([]byte{0xd7, 0xff, 0x81, 0xa0, 0xdd}, huge4, []byte{0x00}), true},
		{"gob huge message", gob.Codec, cat([]byte{0xf8}, huge8[:7], []byte{0xff, 0x01}), false},
	}
	// gob: a []int message whose element count lies. The last message of
	// the stream is the value; for []int{1} it ends with the count 01 and
	// the element 02. Replace the count by 2^32-1.
	b, err := gob.Codec.Append(nil, []int{1})
	if err != nil || !bytes.HasSuffix(b, []byte{0x01, 0x02}) {
		t.Fatalf("unexpected gob encoding % x, %v", b, err)
	}
	lied := cat(b[:len(b)-2], []byte{0xfc}, huge4, []byte{0x02})
	cases = append(cases, tcase{"gob slice count", gob.Codec, fixLastGobMessage(b, lied), false})

	dests := func(c codec.Codec) []any {
		return append(destinations(c), new(map[string][]int), new(struct{ T []int }), new([]int))
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, dst := range dests(tc.c) {
				var err error
				n := allocated(func() { err = tc.c.Unmarshal(tc.in, dst) })
				if err == nil && !tc.valid {
					t.Errorf("%T: no error", dst)
				}
				if n > 1<<20 {
					t.Errorf("%T: allocated %d bytes for %d bytes of input (err %v)", dst, n, len(tc.in), err)
				}
			}
		})
	}
}

// lastMsgStart and fixLastGobMessage rewrite the last message of a gob
// stream; they assume one-byte message lengths, true for tiny values.
func lastMsgStart(b []byte) int {
	pos, last := 0, 0
	for pos < len(b) {
		last = pos
		pos += 1 + int(b[pos])
	}
	return last
}

func fixLastGobMessage(orig, newStream []byte) []byte {
	start := lastMsgStart(orig)
	body := newStream[start+1:]
	out := append([]byte{}, orig[:start]...)
	out = append(out, byte(len(body)))
	return append(out, body...)
}

func TestByName(t *testing.T) {
	for _, c := range allCodecs {
		got, err := codec.ByName(c.Name())
		if err != nil || got != c {
			t.Errorf("ByName(%q) = %v, %v", c.Name(), got, err)
		}
	}
	names := map[codec.Codec]string{codec.CBOR: "cbor", msgpack.Codec: "msgpack", codec.JSON: "json", gob.Codec: "gob"}
	for c, want := range names {
		if c.Name() != want {
			t.Errorf("Name() = %q, want %q", c.Name(), want)
		}
	}
	for _, name := range []string{"", "CBOR", "xml", "cbor "} {
		c, err := codec.ByName(name)
		if !errors.Is(err, codec.ErrUnknownCodec) || c != nil {
			t.Errorf("ByName(%q) = %v, %v; want ErrUnknownCodec", name, c, err)
		}
	}
	if d, err := codec.ByName(codec.Default.Name()); err != nil || d != codec.Default {
		t.Errorf("Default %v is not a built-in codec", codec.Default)
	}
}

// named is CBOR under another name.
type named string

func (n named) Name() string                           { return string(n) }
func (named) Append(dst []byte, v any) ([]byte, error) { return codec.CBOR.Append(dst, v) }
func (named) Unmarshal(data []byte, v any) error       { return codec.CBOR.Unmarshal(data, v) }

// registered is registered at package level, as Register asks.
var registered = func() codec.Codec {
	c := named("test.Registered_1+x")
	codec.Register(c)
	return c
}()

func TestRegister(t *testing.T) {
	if c, err := codec.ByName(registered.Name()); err != nil || c != registered {
		t.Fatalf("ByName(%q) = %v, %v", registered.Name(), c, err)
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = codec.ByName("msgpack") }); n != 0 {
		t.Errorf("ByName of a registered codec: %v allocations", n)
	}
	_, err := codec.ByName("nope")
	if !errors.Is(err, codec.ErrUnknownCodec) || !strings.Contains(err.Error(), "cbor, json, gob, msgpack, test.Registered_1+x") {
		t.Errorf("ByName(\"nope\"): %v; want ErrUnknownCodec listing the known codecs", err)
	}
	for _, c := range []codec.Codec{nil, named(""), named("a b"), named("é"), named(strings.Repeat("x", 65)),
		named("cbor"), named("json"), named("msgpack"), named("gob"), registered} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Register(%v) did not panic", c)
				}
			}()
			codec.Register(c)
		}()
	}
}

func TestConcurrent(t *testing.T) {
	var wg sync.WaitGroup
	for _, c := range allCodecs {
		for g := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var buf []byte
				for i := range 200 {
					in := Small{ID: g*1000 + i, Name: "n", Tags: []string{fmt.Sprint(i)}}
					var err error
					buf, err = c.Append(buf[:0], in)
					if err != nil {
						t.Error(err)
						return
					}
					var out Small
					if err := c.Unmarshal(buf, &out); err != nil || !reflect.DeepEqual(in, out) {
						t.Errorf("%s: got %+v, %v; want %+v", c.Name(), out, err, in)
						return
					}
					_ = c.Unmarshal(buf[:len(buf)/2], &out)
				}
			}()
		}
	}
	wg.Wait()
}

// TestNoRetain checks that Unmarshal does not keep references into its input.
func TestNoRetain(t *testing.T) {
	for _, c := range allCodecs {
		v := Outer{B: []byte("bytes"), L: []Inner{{S: "str"}}, M: map[string]Inner{"k": {S: "v"}}}
		b, err := c.Append(nil, v)
		if err != nil {
			t.Fatal(err)
		}
		var got Outer
		if err := c.Unmarshal(b, &got); err != nil {
			t.Fatal(err)
		}
		for i := range b {
			b[i] = 0
		}
		if !reflect.DeepEqual(got, v) {
			t.Errorf("%s: decoded value changed with its input: %#v", c.Name(), got)
		}
	}
}

func FuzzUnmarshal(f *testing.F) {
	for _, c := range allCodecs {
		for _, v := range []any{0, -1, 1 << 40, "s", 1.5, []int{1, 2}, Small{ID: 1, Name: "n", Tags: []string{"t"}},
			map[string]any{"k": []any{1, "x", nil}}, []byte{1, 2}, time.Unix(1700000000, 5), Outer{P: &Inner{N: 1}}} {
			if b, err := c.Append(nil, v); err == nil {
				f.Add(b)
			}
		}
	}
	f.Add([]byte{0xd7, 0xff, 0x81, 0xa0, 0xdd, 0xff, 0xff, 0xff, 0xff, 0x00})
	f.Add([]byte{0x9b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, c := range allCodecs {
			for _, dst := range destinations(c) {
				if err := c.Unmarshal(data, dst); err != nil {
					continue
				}
				// Whatever decoded must encode again, except that gob
				// cannot encode a nil interface it can decode.
				out := reflect.ValueOf(dst).Elem().Interface()
				if c == gob.Codec && out == nil {
					continue
				}
				if _, err := c.Append(nil, out); err != nil {
					t.Errorf("%s: decoded %T but cannot encode it: %v", c.Name(), dst, err)
				}
			}
		}
	})
}
