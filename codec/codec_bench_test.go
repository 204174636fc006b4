package codec_test

import (
	"testing"

	"github.com/procpool/procpool/codec"
)

// The benchmarks measure one encode plus one decode, which is what procpool
// does per task argument and per result. The encoding buffer is reused
// between iterations, as a pool connection reuses its buffer; every decode
// gets a fresh destination, as every task result does.
//
// Run them with:
//
//	go test -run='^$' -bench=RoundTrip -benchmem -cpu=2 -count=10 ./codec/
//
// Besides ns/op, B/op and allocs/op they report wire-B, the size of one
// encoded message.

// benchWorkloads are procpool's typical payloads.
func benchSmall() Small {
	return Small{ID: 123456, Name: "task-00042", Score: 0.875, Tags: []string{"alpha", "beta", "gamma"}}
}

func benchBytes() []byte {
	b := make([]byte, 1<<20)
	for i := range b {
		b[i] = byte(i * 7)
	}
	return b
}

func benchInts() []int {
	s := make([]int, 1000)
	for i := range s {
		s[i] = i * i // the results of a Map chunk of x*x
	}
	return s
}

func benchRoundTrip[T any](b *testing.B, c codec.Codec, v T, setBytes int64) {
	b.ReportAllocs()
	if setBytes > 0 {
		b.SetBytes(setBytes)
	}
	buf, err := c.Append(nil, v)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		buf, err = c.Append(buf[:0], v)
		if err != nil {
			b.Fatal(err)
		}
		var out T
		if err := c.Unmarshal(buf, &out); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(buf)), "wire-B")
}

func BenchmarkRoundTrip(b *testing.B) {
	small, bytes1M, ints := benchSmall(), benchBytes(), benchInts()
	for _, c := range allCodecs {
		b.Run("Int/"+c.Name(), func(b *testing.B) { benchRoundTrip(b, c, 12345, 0) })
		b.Run("Small/"+c.Name(), func(b *testing.B) { benchRoundTrip(b, c, small, 0) })
		b.Run("Bytes1MiB/"+c.Name(), func(b *testing.B) { benchRoundTrip(b, c, bytes1M, int64(len(bytes1M))) })
		b.Run("Ints1000/"+c.Name(), func(b *testing.B) { benchRoundTrip(b, c, ints, 0) })
	}
}
