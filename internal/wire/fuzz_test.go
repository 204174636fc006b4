package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"reflect"
	"testing"
	"testing/iotest"
)

// fuzzMaxFrame keeps the fuzzer's frames small enough to be fast while still
// letting it produce lengths above the limit.
const fuzzMaxFrame = 1 << 16

func addReaderSeeds(f *testing.F) {
	frames := sampleFrames(f)
	stream := encodeFrames(frames)
	f.Add(stream)
	f.Add([]byte{})
	for _, fr := range frames {
		one := AppendFrame(nil, fr.Kind, fr.ID, fr.Body)
		f.Add(one)
		f.Add(one[:len(one)-1])
		f.Add(one[:HeaderSize])
		f.Add(one[:2])
	}
	f.Add(stream[:len(stream)/2])
	f.Add(header(0, KindTask, 1))
	f.Add(header(8, KindTask, 1))
	f.Add(header(9, 0, 1))
	f.Add(header(9, 200, 1))
	f.Add(header(fuzzMaxFrame+1, KindResult, 1))
	f.Add(binary.LittleEndian.AppendUint32(nil, 3<<30))
	f.Add(append(header(1<<15, KindResult, 1), make([]byte, 100)...))
	// Bodies that lie inside well-formed frames.
	f.Add(AppendFrame(nil, KindTask, 1, []byte{0, 0xff, 0xff, 'a'}))
	f.Add(AppendFrame(nil, KindTask, 1, []byte{0xfe, 1, 0, 'a'}))
	f.Add(AppendFrame(nil, KindResult, 1, cat(u32(^uint32(0)), make([]byte, 16))))
	f.Add(AppendFrame(nil, KindResult, 1, cat(u32(1), entry(0, ^uint32(0), "{}"))))
	f.Add(AppendFrame(nil, KindHello, 0, []byte("null")))
	f.Add(AppendFrame(nil, KindError, 1, []byte(`{"message":`)))
}

// expectedEnd says what Next must return for input rem left after the last
// complete frame.
func expectedEnd(rem []byte) error {
	if len(rem) == 0 {
		return io.EOF
	}
	if len(rem) < 4 {
		return io.ErrUnexpectedEOF
	}
	n := binary.LittleEndian.Uint32(rem)
	switch {
	case n < 9:
		return ErrMalformed
	case n > fuzzMaxFrame:
		return ErrFrameTooLarge
	case len(rem) < HeaderSize:
		return io.ErrUnexpectedEOF
	case !Kind(rem[4]).Valid():
		return ErrMalformed
	}
	return io.ErrUnexpectedEOF
}

// FuzzReader feeds arbitrary bytes to Reader.Next through several read
// patterns, checks every frame against the bytes it came from and the final
// error against the bytes left, and parses every body by its kind.
func FuzzReader(f *testing.F) {
	addReaderSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		wrappers := []func(io.Reader) io.Reader{
			func(r io.Reader) io.Reader { return r },
			iotest.OneByteReader,
			iotest.HalfReader,
			func(r io.Reader) io.Reader { return &chunkReader{r: r, n: len(data)%17 + 1} },
		}
		for wi, wrap := range wrappers {
			rd := NewReader(wrap(bytes.NewReader(data)), 64, fuzzMaxFrame)
			off := 0
			for {
				fr, err := rd.Next()
				if err != nil {
					want := expectedEnd(data[off:])
					if !errors.Is(err, want) {
						t.Fatalf("reader %d at offset %d: err = %v, want %v", wi, off, err, want)
					}
					if _, err2 := rd.Next(); err2 != err {
						t.Fatalf("reader %d: error not sticky: %v then %v", wi, err, err2)
					}
					break
				}
				if len(data)-off < HeaderSize {
					t.Fatalf("reader %d: frame returned from %d bytes", wi, len(data)-off)
				}
				n := int(binary.LittleEndian.Uint32(data[off:]))
				if len(fr.Body) != n-9 || off+4+n > len(data) {
					t.Fatalf("reader %d: body of %d bytes for length field %d", wi, len(fr.Body), n)
				}
				if fr.Kind != Kind(data[off+4]) || fr.ID != binary.LittleEndian.Uint64(data[off+5:]) ||
					!bytes.Equal(fr.Body, data[off+HeaderSize:off+4+n]) {
					t.Fatalf("reader %d: frame at %d does not match its bytes", wi, off)
				}
				if rd.Buffered() < 0 || rd.Buffered() > len(data)-off-4-n {
					t.Fatalf("reader %d: Buffered() = %d with %d bytes left", wi, rd.Buffered(), len(data)-off-4-n)
				}
				off += 4 + n
				if wi == 0 {
					checkFuzzBody(t, fr)
				}
			}
		}
	})
}

// checkFuzzBody parses a frame's body by its kind and checks what the parse
// returns against the body.
func checkFuzzBody(t *testing.T, fr Frame) {
	switch fr.Kind {
	case KindTask, KindInit:
		if h, ref, err := ParseTaskHeader(fr.Body); err == nil && h.Flags&FlagShared != 0 {
			if _, _, err := ParseSharedRef(ref, 1<<20); err != nil && !errors.Is(err, ErrMalformed) {
				t.Fatalf("ParseSharedRef: %v", err)
			}
		} else if err != nil && !errors.Is(err, ErrMalformed) {
			t.Fatalf("ParseTaskHeader: %v", err)
		}
		chunk, fn, payload, err := ParseTask(fr.Body)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("ParseTask: %v", err)
			}
			return
		}
		again := append(AppendTaskHeader(nil, chunk, string(fn)), payload...)
		if !bytes.Equal(again, fr.Body) {
			t.Fatalf("ParseTask(%x) re-encodes as %x", fr.Body, again)
		}
	case KindResult:
		checkChunkResult(t, fr.Body)
	case KindHello:
		if _, err := ParseHello(fr.Body); err != nil && !errors.Is(err, ErrMalformed) {
			t.Fatalf("ParseHello: %v", err)
		}
	case KindError:
		if _, err := ParseError(fr.Body); err != nil && !errors.Is(err, ErrMalformed) {
			t.Fatalf("ParseError: %v", err)
		}
	}
}

// checkChunkResult parses body as a chunk result and, if it parses, checks
// that the payload is the body's tail and that re-encoding the errors gives
// the same errors back.
func checkChunkResult(t *testing.T, body []byte) {
	errs, payload, err := ParseChunkResult(body)
	if err != nil {
		if !errors.Is(err, ErrMalformed) {
			t.Fatalf("ParseChunkResult: %v", err)
		}
		return
	}
	if !bytes.HasSuffix(body, payload) || len(payload) > len(body)-4-8*len(errs) {
		t.Fatalf("payload %x is not the tail of body %x", payload, body)
	}
	again, err := AppendChunkResultHeader(nil, errs)
	if err != nil {
		t.Fatalf("re-encoding parsed item errors %+v: %v", errs, err)
	}
	again = append(again, payload...)
	errs2, payload2, err := ParseChunkResult(again)
	if err != nil || !reflect.DeepEqual(errs, errs2) || !bytes.Equal(payload, payload2) {
		t.Fatalf("re-encoded chunk result differs: %+v %x %v, want %+v %x", errs2, payload2, err, errs, payload)
	}
}

// FuzzChunkResult feeds arbitrary bodies to ParseChunkResult.
func FuzzChunkResult(f *testing.F) {
	ok := `{"message":"m","type":"t","stack":"s","panic":true,"code":"decode"}`
	good, err := AppendChunkResultHeader(nil, []ItemError{
		{Index: 0, Err: ErrorBody{Message: "a", Type: "t"}},
		{Index: 7, Err: ErrorBody{Message: "b\u00e9<>&", Type: "t", Panic: true}},
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(append(good, 0x82, 0xf6, 0xf6))
	f.Add(good[:len(good)-3])
	f.Add([]byte{0, 0, 0, 0})
	f.Add([]byte{0, 0, 0, 0, 0x80})
	f.Add([]byte{1, 0, 0})
	f.Add(cat(u32(1), entry(3, uint32(len(ok)), ok), []byte{0x81, 0}))
	f.Add(cat(u32(^uint32(0)), make([]byte, 32)))
	f.Add(cat(u32(1), entry(0, ^uint32(0), ok)))
	f.Add(cat(u32(1), entry(1<<31, uint32(len(ok)), ok)))
	f.Add(cat(u32(2), entry(4, uint32(len(ok)), ok), entry(4, uint32(len(ok)), ok)))
	f.Add(cat(u32(1), entry(0, 4, "null")))
	f.Add(cat(u32(1), entry(0, 6, "{\"\xff\":1}")))
	f.Fuzz(func(t *testing.T, body []byte) {
		checkChunkResult(t, body)
	})
}
