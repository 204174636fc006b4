package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"runtime"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

func TestReaderEOF(t *testing.T) {
	one := AppendFrame(nil, KindResult, 7, []byte("hello"))
	for _, tc := range []struct {
		name   string
		input  []byte
		frames int
		want   error
	}{
		{"empty", nil, 0, io.EOF},
		{"one frame", one, 1, io.EOF},
		{"two frames", append(append([]byte{}, one...), one...), 2, io.EOF},
		{"1 byte of length", one[:1], 0, io.ErrUnexpectedEOF},
		{"3 bytes of length", one[:3], 0, io.ErrUnexpectedEOF},
		{"length only", one[:4], 0, io.ErrUnexpectedEOF},
		{"half header", one[:9], 0, io.ErrUnexpectedEOF},
		{"header only", one[:HeaderSize], 0, io.ErrUnexpectedEOF},
		{"body cut", one[:len(one)-1], 0, io.ErrUnexpectedEOF},
		{"second frame cut", append(append([]byte{}, one...), one[:6]...), 1, io.ErrUnexpectedEOF},
	} {
		for _, wrap := range []func(io.Reader) io.Reader{
			func(r io.Reader) io.Reader { return r }, iotest.OneByteReader, iotest.HalfReader, iotest.DataErrReader,
		} {
			rd := NewReader(wrap(bytes.NewReader(tc.input)), 0, 0)
			for i := 0; i < tc.frames; i++ {
				if _, err := rd.Next(); err != nil {
					t.Fatalf("%s: frame %d: %v", tc.name, i, err)
				}
			}
			for range 2 { // the error is sticky
				if _, err := rd.Next(); err != tc.want {
					t.Fatalf("%s: err = %v, want %v", tc.name, err, tc.want)
				}
			}
		}
	}
}

// header returns a frame header with an arbitrary length field.
func header(length uint32, k Kind, id uint64) []byte {
	b := binary.LittleEndian.AppendUint32(nil, length)
	b = append(b, byte(k))
	return binary.LittleEndian.AppendUint64(b, id)
}

func TestReaderMalformed(t *testing.T) {
	for _, tc := range []struct {
		name  string
		input []byte
		want  error
		msg   string
	}{
		{"length 0", header(0, KindTask, 1), ErrMalformed, "length field 0"},
		{"length 8", header(8, KindTask, 1), ErrMalformed, "length field 8"},
		{"length 0 without rest", []byte{0, 0, 0, 0}, ErrMalformed, "length field 0"},
		{"kind 0", header(9, 0, 1), ErrMalformed, "unknown kind 0"},
		{"kind 9", header(9, 9, 1), ErrMalformed, "unknown kind 9"},
		{"kind 255", append(header(12, 255, 1), 1, 2, 3), ErrMalformed, "unknown kind 255"},
		{"over max", header(1001, KindResult, 1), ErrFrameTooLarge, "1001 exceeds the maximum 1000"},
		{"3 GiB, length only", binary.LittleEndian.AppendUint32(nil, 3<<30), ErrFrameTooLarge, "3221225472"},
		{"max uint32", header(^uint32(0), KindResult, 1), ErrFrameTooLarge, "4294967295"},
	} {
		for _, wrap := range []func(io.Reader) io.Reader{func(r io.Reader) io.Reader { return r }, iotest.OneByteReader} {
			rd := NewReader(wrap(bytes.NewReader(tc.input)), 0, 1000)
			_, err := rd.Next()
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("%s: err = %v, want %v containing %q", tc.name, err, tc.want, tc.msg)
			}
			if _, err2 := rd.Next(); err2 != err {
				t.Fatalf("%s: second Next = %v, want sticky %v", tc.name, err2, err)
			}
		}
	}
}

func TestReaderMaxFrameBoundary(t *testing.T) {
	body := bytes.Repeat([]byte{'x'}, 91)
	frame := AppendFrame(nil, KindResult, 1, body) // length 100
	if _, err := NewReader(bytes.NewReader(frame), 0, 100).Next(); err != nil {
		t.Fatalf("length == max: %v", err)
	}
	if _, err := NewReader(bytes.NewReader(frame), 0, 99).Next(); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("length == max+1: err = %v, want ErrFrameTooLarge", err)
	}
	// maxFrame below the smallest frame is raised to it.
	if _, err := NewReader(bytes.NewReader(header(9, KindCancel, 1)), 0, 1).Next(); err != nil {
		t.Fatalf("empty frame with maxFrame 1: %v", err)
	}
}

// allocBytes returns how many bytes f allocates on the heap.
func allocBytes(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

func TestReaderHugeLengthDoesNotAllocate(t *testing.T) {
	// A 4-byte header claiming 3 GiB, from a reader that would block
	// forever after it: Next must decide from the length alone.
	pr, pw := io.Pipe()
	defer pr.Close()
	go pw.Write(binary.LittleEndian.AppendUint32(nil, 3<<30))
	type outcome struct {
		err   error
		bytes uint64
	}
	done := make(chan outcome, 1)
	go func() {
		rd := NewReader(pr, 1024, 0)
		var err error
		n := allocBytes(func() { _, err = rd.Next() })
		done <- outcome{err, n}
	}()
	var n uint64
	select {
	case o := <-done:
		if !errors.Is(o.err, ErrFrameTooLarge) {
			t.Fatalf("err = %v, want ErrFrameTooLarge", o.err)
		}
		n = o.bytes
	case <-time.After(10 * time.Second):
		t.Fatal("Next blocked on a frame larger than the maximum")
	}
	if n > 64<<10 {
		t.Fatalf("Next allocated %d bytes rejecting a 3 GiB frame", n)
	}
}

func TestReaderLyingLengthWithinMax(t *testing.T) {
	// A header claiming 60 MiB (within the 64 MiB default) followed by only
	// 1000 bytes: the reader grows with the data, not with the claim.
	input := append(header(60<<20, KindResult, 1), make([]byte, 1000)...)
	var err error
	n := allocBytes(func() {
		_, err = NewReader(bytes.NewReader(input), 256, 0).Next()
	})
	if err != io.ErrUnexpectedEOF {
		t.Fatalf("err = %v, want io.ErrUnexpectedEOF", err)
	}
	if n > 64<<10 {
		t.Fatalf("Next allocated %d bytes for 1013 bytes of input", n)
	}
}

func TestReaderGrowsAndShrinks(t *testing.T) {
	small := AppendFrame(nil, KindResult, 1, []byte("small"))
	bigBody := bytes.Repeat([]byte("0123456789"), RetainMax/10+1) // over RetainMax: not kept
	var stream []byte
	stream = append(stream, small...)
	stream = AppendFrame(stream, KindResult, 2, bigBody)
	stream = append(stream, small...)
	stream = append(stream, small...)
	for _, wrap := range []func(io.Reader) io.Reader{func(r io.Reader) io.Reader { return r }, iotest.HalfReader} {
		rd := NewReader(wrap(bytes.NewReader(stream)), 128, 0)
		base := &rd.base[0]
		if f, err := rd.Next(); err != nil || f.ID != 1 {
			t.Fatalf("frame 1: %v %v", f.ID, err)
		}
		f, err := rd.Next()
		if err != nil || f.ID != 2 || !bytes.Equal(f.Body, bigBody) {
			t.Fatalf("big frame: id %d, %d bytes, %v", f.ID, len(f.Body), err)
		}
		if len(rd.buf) > HeaderSize+len(bigBody) {
			t.Fatalf("buffer grew to %d bytes for a %d-byte frame", len(rd.buf), HeaderSize+len(bigBody))
		}
		for id := 3; id <= 4; id++ {
			if f, err := rd.Next(); err != nil || !bytes.Equal(f.Body, []byte("small")) {
				t.Fatalf("frame %d: %q %v", id, f.Body, err)
			}
			if len(rd.buf) != 128 || &rd.buf[0] != base {
				t.Fatalf("frame %d: buffer is %d bytes, not the original 128", id, len(rd.buf))
			}
		}
		if _, err := rd.Next(); err != io.EOF {
			t.Fatalf("end: %v", err)
		}
	}
}

func TestReaderRetainsModestGrowth(t *testing.T) {
	body := bytes.Repeat([]byte("x"), 100_000)
	var stream []byte
	for id := uint64(1); id <= 3; id++ {
		stream = AppendFrame(stream, KindResult, id, body)
	}
	rd := NewReader(bytes.NewReader(stream), 128, 0)
	if _, err := rd.Next(); err != nil {
		t.Fatal(err)
	}
	grown := &rd.buf[0]
	allocs := testing.AllocsPerRun(1, func() {
		if f, err := rd.Next(); err != nil || len(f.Body) != len(body) {
			t.Fatalf("frame: %d bytes, %v", len(f.Body), err)
		}
	})
	if allocs != 0 || &rd.buf[0] != grown {
		t.Fatalf("a second 100 kB frame cost %v allocations and a new buffer", allocs)
	}
}

func TestReaderBuffered(t *testing.T) {
	a := AppendFrame(nil, KindTask, 1, []byte("aaaa"))
	b := AppendFrame(nil, KindCancel, 1, nil)
	stream := append(append([]byte{}, a...), b...)
	rd := NewReader(bytes.NewReader(stream), 0, 0)
	if rd.Buffered() != 0 {
		t.Fatalf("Buffered before reading = %d", rd.Buffered())
	}
	if _, err := rd.Next(); err != nil {
		t.Fatal(err)
	}
	if rd.Buffered() != len(b) {
		t.Fatalf("Buffered after frame 1 = %d, want %d", rd.Buffered(), len(b))
	}
	if _, err := rd.Next(); err != nil {
		t.Fatal(err)
	}
	if rd.Buffered() != 0 {
		t.Fatalf("Buffered after frame 2 = %d, want 0", rd.Buffered())
	}
	// With one byte per read nothing is ever read ahead.
	rd = NewReader(iotest.OneByteReader(bytes.NewReader(stream)), 0, 0)
	for range 2 {
		if _, err := rd.Next(); err != nil || rd.Buffered() != 0 {
			t.Fatalf("one-byte reader: err %v, Buffered %d", err, rd.Buffered())
		}
	}
}

func TestReaderZeroAllocsSteadyState(t *testing.T) {
	var stream []byte
	for i := range 1000 {
		stream = AppendFrame(stream, KindResult, uint64(i+1), bytes.Repeat([]byte{byte(i)}, i%300))
	}
	src := bytes.NewReader(stream)
	rd := NewReader(src, 4096, 0)
	allocs := testing.AllocsPerRun(5000, func() {
		_, err := rd.Next()
		if err == io.EOF {
			src.Reset(stream)
			rd.err, rd.rerr = nil, nil
			_, err = rd.Next()
		}
		if err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per frame, want 0", allocs)
	}
}

// errAfter returns data, then err (with or without the last bytes).
type errAfter struct {
	data []byte
	err  error
}

func (e *errAfter) Read(p []byte) (int, error) {
	n := copy(p, e.data)
	e.data = e.data[n:]
	if len(e.data) == 0 {
		return n, e.err
	}
	return n, nil
}

func TestReaderUnderlyingError(t *testing.T) {
	boom := errors.New("boom")
	frame := AppendFrame(nil, KindResult, 1, []byte("x"))
	rd := NewReader(&errAfter{data: frame, err: boom}, 0, 0)
	if f, err := rd.Next(); err != nil || f.ID != 1 {
		t.Fatalf("frame delivered with the error: %v %v", f, err)
	}
	if _, err := rd.Next(); err != boom {
		t.Fatalf("err = %v, want boom", err)
	}
	rd = NewReader(&errAfter{data: frame[:5], err: boom}, 0, 0)
	if _, err := rd.Next(); err != boom {
		t.Fatalf("mid-frame: err = %v, want boom", err)
	}
}

type zeroReader struct{}

func (zeroReader) Read([]byte) (int, error) { return 0, nil }

type badCountReader struct{}

func (badCountReader) Read(p []byte) (int, error) { return len(p) + 1, nil }

func TestReaderMisbehavingReaders(t *testing.T) {
	if _, err := NewReader(zeroReader{}, 0, 0).Next(); err != io.ErrNoProgress {
		t.Fatalf("zero reader: err = %v, want io.ErrNoProgress", err)
	}
	if _, err := NewReader(badCountReader{}, 0, 0).Next(); err == nil {
		t.Fatal("reader returning too many bytes: no error")
	}
}

// Fits is the reader's own check: for every frame size around the limit,
// a writer that asks Fits sends exactly the frames the reader accepts.
func TestFitsMatchesReader(t *testing.T) {
	for _, maxFrame := range []int{1, 9, 10, 64, 4096} {
		limit := max(maxFrame, 9)
		for body := max(0, limit-9-12); body <= limit-9+12; body++ {
			frame, start := BeginFrame(make([]byte, 0, 3), KindResult, 1) // start at 3: a frame inside a batch
			frame = append(frame, make([]byte, body)...)
			if err := EndFrame(frame, start); err != nil {
				t.Fatal(err)
			}
			if got := LengthOf(frame, start); got != uint64(9+body) {
				t.Fatalf("LengthOf = %d for a %d-byte body, want %d", got, body, 9+body)
			}
			fits := Fits(LengthOf(frame, start), maxFrame)
			if want := 9+body <= limit; fits != want {
				t.Fatalf("maxFrame %d, body %d: Fits = %v, want %v", maxFrame, body, fits, want)
			}
			_, err := NewReader(bytes.NewReader(frame[start:]), 0, maxFrame).Next()
			switch {
			case fits && err != nil:
				t.Fatalf("maxFrame %d, body %d: Fits, but the reader says %v", maxFrame, body, err)
			case !fits && !errors.Is(err, ErrFrameTooLarge):
				t.Fatalf("maxFrame %d, body %d: does not fit, but the reader says %v", maxFrame, body, err)
			}
		}
	}
	// maxFrame <= 0 means the default, for Fits as for the reader (which
	// refuses a length field alone, before its body arrives).
	for _, maxFrame := range []int{-1, 0} {
		if !Fits(DefaultMaxFrame, maxFrame) || Fits(DefaultMaxFrame+1, maxFrame) {
			t.Fatalf("Fits with maxFrame %d does not mean the default limit", maxFrame)
		}
		_, err := NewReader(bytes.NewReader(header(DefaultMaxFrame+1, KindResult, 1)), 0, maxFrame).Next()
		if !errors.Is(err, ErrFrameTooLarge) {
			t.Fatalf("maxFrame %d, length DefaultMaxFrame+1: %v", maxFrame, err)
		}
	}
	if !Fits(MaxLength, math.MaxInt) || Fits(uint64(MaxLength)+1, math.MaxInt) {
		t.Fatal("Fits does not cap the limit at what the length field can hold")
	}
}

// After StopAtEnd, an End frame ends the input: the frames before it are
// read, nothing after it is, and the end is sticky. Without StopAtEnd, or
// with a body, it is malformed.
func TestReaderStopAtEnd(t *testing.T) {
	one := AppendFrame(nil, KindResult, 7, []byte("hello"))
	end := AppendFrame(nil, KindEnd, 0, nil)
	input := slices.Concat(one, one, end, []byte("garbage after the end"), one)
	for _, wrap := range []func(io.Reader) io.Reader{
		func(r io.Reader) io.Reader { return r }, iotest.OneByteReader, iotest.HalfReader,
	} {
		src := bytes.NewReader(input)
		rd := NewReader(wrap(src), 0, 0)
		rd.StopAtEnd()
		for i := range 2 {
			if f, err := rd.Next(); err != nil || f.Kind != KindResult || string(f.Body) != "hello" {
				t.Fatalf("frame %d: %v, %v", i, f, err)
			}
		}
		for range 2 {
			if _, err := rd.Next(); err != io.EOF {
				t.Fatalf("at the end frame: %v, want io.EOF", err)
			}
		}
	}
	// Read one byte at a time, the reader stops right after the end frame.
	src := bytes.NewReader(input)
	rd := NewReader(iotest.OneByteReader(src), 0, 0)
	rd.StopAtEnd()
	for {
		if _, err := rd.Next(); err != nil {
			break
		}
	}
	if read := len(input) - src.Len(); read != 2*len(one)+len(end) {
		t.Fatalf("read %d bytes, want the %d up to the end frame's", read, 2*len(one)+len(end))
	}

	for name, tc := range map[string]struct {
		input []byte
		stop  bool
	}{
		"without StopAtEnd": {slices.Concat(one, end), false},
		"with a body":       {slices.Concat(one, AppendFrame(nil, KindEnd, 0, []byte{1})), true},
	} {
		rd := NewReader(bytes.NewReader(tc.input), 0, 0)
		if tc.stop {
			rd.StopAtEnd()
		}
		rd.Next()
		if _, err := rd.Next(); !errors.Is(err, ErrMalformed) {
			t.Fatalf("%s: %v, want ErrMalformed", name, err)
		}
	}
}
