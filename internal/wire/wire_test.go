package wire

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestKindString(t *testing.T) {
	want := map[Kind]string{
		KindHello: "hello", KindTask: "task", KindResult: "result", KindError: "error",
		KindCancel: "cancel", KindInit: "init", KindSkipped: "skipped", KindStop: "stop", KindEnd: "end",
		0: "Kind(0)", 9: "Kind(9)", 254: "Kind(254)",
	}
	for k, s := range want {
		if got := k.String(); got != s {
			t.Errorf("Kind(%d).String() = %q, want %q", uint8(k), got, s)
		}
		// KindEnd is named but is not a protocol kind.
		if got, wantValid := k.Valid(), !strings.HasPrefix(s, "Kind(") && k != KindEnd; got != wantValid {
			t.Errorf("Kind(%d).Valid() = %v, want %v", uint8(k), got, wantValid)
		}
	}
}

func TestAppendFrameLayout(t *testing.T) {
	got := AppendFrame([]byte("prefix"), KindError, 0x0102030405060708, []byte("xyz"))
	want := []byte("prefix\x0c\x00\x00\x00\x04\x08\x07\x06\x05\x04\x03\x02\x01xyz")
	if !bytes.Equal(got, want) {
		t.Fatalf("AppendFrame = %x, want %x", got, want)
	}
	empty := AppendFrame(nil, KindCancel, 9, nil)
	if want := []byte("\x09\x00\x00\x00\x05\x09\x00\x00\x00\x00\x00\x00\x00"); !bytes.Equal(empty, want) {
		t.Fatalf("empty frame = %x, want %x", empty, want)
	}
}

func TestBeginEndFrameMatchesAppendFrame(t *testing.T) {
	for _, body := range [][]byte{nil, {}, []byte("a"), bytes.Repeat([]byte("b"), 1000)} {
		dst, start := BeginFrame([]byte("xx"), KindResult, 77)
		if start != 2 {
			t.Fatalf("start = %d, want 2", start)
		}
		dst = append(dst, body...)
		if err := EndFrame(dst, start); err != nil {
			t.Fatal(err)
		}
		want := AppendFrame([]byte("xx"), KindResult, 77, body)
		if !bytes.Equal(dst, want) {
			t.Fatalf("BeginFrame/EndFrame = %x, want %x", dst, want)
		}
	}
}

func TestEndFrameBadStart(t *testing.T) {
	dst, _ := BeginFrame(nil, KindTask, 1)
	for _, start := range []int{-1, 1, len(dst), len(dst) + 1} {
		if err := EndFrame(dst, start); err == nil {
			t.Errorf("EndFrame(start=%d) succeeded on a %d-byte slice", start, len(dst))
		}
	}
}

func TestAppendDoesNotAllocateWithCapacity(t *testing.T) {
	buf := make([]byte, 0, 1024)
	body := []byte("payload")
	allocs := testing.AllocsPerRun(100, func() {
		b := AppendFrame(buf[:0], KindResult, 5, body)
		b, start := BeginFrame(b, KindTask, 6)
		b = AppendTaskHeader(b, true, "square")
		b = append(b, body...)
		if err := EndFrame(b, start); err != nil {
			t.Fatal(err)
		}
		if _, err := AppendChunkResultHeader(b, nil); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per run, want 0", allocs)
	}
}

// TestDocExample pins the hex dumps printed in docs/protocol.md.
func TestDocExample(t *testing.T) {
	task, start := BeginFrame(nil, KindTask, 1)
	task = AppendTaskHeader(task, false, "square")
	task = append(task, 0x07) // CBOR for the integer 7
	if err := EndFrame(task, start); err != nil {
		t.Fatal(err)
	}
	const wantTask = "130000000201000000000000000006007371756172650" + "7"
	if got := hex.EncodeToString(task); got != wantTask {
		t.Errorf("task frame = %s, want %s", got, wantTask)
	}
	result := AppendFrame(nil, KindResult, 1, []byte{0x18, 0x31}) // CBOR for 49
	const wantResult = "0b00000003010000000000000018" + "31"
	if got := hex.EncodeToString(result); got != wantResult {
		t.Errorf("result frame = %s, want %s", got, wantResult)
	}

	// Chunk task of [7, 8] (CBOR 82 07 08) and its result: item 1 failed.
	chunk, start := BeginFrame(nil, KindTask, 2)
	chunk = AppendTaskHeader(chunk, true, "square")
	chunk = append(chunk, 0x82, 0x07, 0x08)
	if err := EndFrame(chunk, start); err != nil {
		t.Fatal(err)
	}
	const wantChunk = "1500000002020000000000000001060073717561726582070" + "8"
	if got := hex.EncodeToString(chunk); got != wantChunk {
		t.Errorf("chunk task frame = %s, want %s", got, wantChunk)
	}
	cres, start := BeginFrame(nil, KindResult, 2)
	cres, err := AppendChunkResultHeader(cres, []ItemError{{Index: 1, Err: ErrorBody{Message: "boom", Type: "error"}}})
	if err != nil {
		t.Fatal(err)
	}
	cres = append(cres, 0x82, 0x18, 0x31, 0x00) // CBOR [49, 0]
	if err := EndFrame(cres, start); err != nil {
		t.Fatal(err)
	}
	const wantCres = "3a00000003020000000000000001000000010000002100000" +
		"07b226d657373616765223a22626f6f6d222c2274797065223a226572726f72227d82183100"
	if got := hex.EncodeToString(cres); got != wantCres {
		t.Errorf("chunk result frame = %s, want %s", got, wantCres)
	}
	if testing.Verbose() {
		t.Logf("task:\n%s", hex.Dump(task))
		t.Logf("result:\n%s", hex.Dump(result))
		t.Logf("chunk task:\n%s", hex.Dump(chunk))
		t.Logf("chunk result:\n%s", hex.Dump(cres))
	}
}

// sampleFrames returns one valid frame of every kind, with realistic bodies.
func sampleFrames(t testing.TB) []Frame {
	hello, err := json.Marshal(Hello{Protocol: Version, Pid: 1234, Codec: "cbor", Functions: []string{"square", "upper"}})
	if err != nil {
		t.Fatal(err)
	}
	errBody, err := json.Marshal(ErrorBody{Message: "boom", Type: "*errors.errorString", Stack: "main.f()\n", Panic: true, Code: "decode"})
	if err != nil {
		t.Fatal(err)
	}
	task := append(AppendTaskHeader(nil, false, "square"), 0x07)
	chunkTask := append(AppendTaskHeader(nil, true, "upper"), 0x82, 0x61, 'a', 0x61, 'b')
	initBody := append(AppendTaskHeader(nil, false, "setup"), 0xf6)
	chunkRes, err := AppendChunkResultHeader(nil, []ItemError{{Index: 0, Err: ErrorBody{Message: "x", Type: "t"}}})
	if err != nil {
		t.Fatal(err)
	}
	chunkRes = append(chunkRes, 0x82, 0xf6, 0x61, 'B')
	return []Frame{
		{KindHello, 0, hello},
		{KindInit, 0, initBody},
		{KindResult, 0, []byte{}},
		{KindTask, 1, task},
		{KindTask, 2, chunkTask},
		{KindCancel, 3, []byte{}},
		{KindResult, 1, []byte{0x18, 0x31}},
		{KindResult, 2, chunkRes},
		{KindSkipped, 3, []byte{}},
		{KindError, 4, errBody},
		{KindTask, ^uint64(0), append(AppendTaskHeader(nil, false, strings.Repeat("n", 300)), bytes.Repeat([]byte{0xab}, 5000)...)},
	}
}

func encodeFrames(frames []Frame) []byte {
	var b []byte
	for _, f := range frames {
		b = AppendFrame(b, f.Kind, f.ID, f.Body)
	}
	return b
}

func TestRoundTripEveryKind(t *testing.T) {
	frames := sampleFrames(t)
	stream := encodeFrames(frames)
	wrappers := map[string]func(io.Reader) io.Reader{
		"plain":    func(r io.Reader) io.Reader { return r },
		"onebyte":  iotest.OneByteReader,
		"half":     iotest.HalfReader,
		"dataerr":  iotest.DataErrReader,
		"chunks7":  func(r io.Reader) io.Reader { return &chunkReader{r: r, n: 7} },
		"chunks13": func(r io.Reader) io.Reader { return &chunkReader{r: r, n: 13} },
	}
	for name, wrap := range wrappers {
		for _, bufSize := range []int{0, 1, 64, 100, 4096} {
			rd := NewReader(wrap(bytes.NewReader(stream)), bufSize, 0)
			for i, want := range frames {
				got, err := rd.Next()
				if err != nil {
					t.Fatalf("%s/buf %d: frame %d: %v", name, bufSize, i, err)
				}
				if got.Kind != want.Kind || got.ID != want.ID || !bytes.Equal(got.Body, want.Body) {
					t.Fatalf("%s/buf %d: frame %d = %v %d %x, want %v %d %x", name, bufSize, i, got.Kind, got.ID, got.Body, want.Kind, want.ID, want.Body)
				}
				if cap(got.Body) != len(got.Body) {
					t.Fatalf("%s/buf %d: frame %d: body cap %d != len %d", name, bufSize, i, cap(got.Body), len(got.Body))
				}
				checkBody(t, got)
			}
			for range 2 {
				if _, err := rd.Next(); err != io.EOF {
					t.Fatalf("%s/buf %d: after last frame: err = %v, want io.EOF", name, bufSize, err)
				}
			}
		}
	}
}

// checkBody parses the body of a sample frame according to its kind.
func checkBody(t *testing.T, f Frame) {
	t.Helper()
	switch f.Kind {
	case KindHello:
		h, err := ParseHello(f.Body)
		if err != nil || h.Protocol != Version || h.Pid != 1234 || h.Codec != "cbor" || len(h.Functions) != 2 {
			t.Fatalf("ParseHello = %+v, %v", h, err)
		}
	case KindTask, KindInit:
		if _, fn, _, err := ParseTask(f.Body); err != nil || len(fn) == 0 {
			t.Fatalf("ParseTask(%x) = %q, %v", f.Body, fn, err)
		}
	case KindError:
		e, err := ParseError(f.Body)
		if err != nil || e.Message != "boom" || !e.Panic || e.Code != "decode" {
			t.Fatalf("ParseError = %+v, %v", e, err)
		}
	case KindCancel, KindSkipped:
		if len(f.Body) != 0 {
			t.Fatalf("%v body = %x, want empty", f.Kind, f.Body)
		}
	}
}

// chunkReader returns at most n bytes per Read.
type chunkReader struct {
	r io.Reader
	n int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(p) > c.n {
		p = p[:c.n]
	}
	return c.r.Read(p)
}

func BenchmarkAppendFrame(b *testing.B) {
	body := append(AppendTaskHeader(nil, false, "square"), bytes.Repeat([]byte{1}, 100)...)
	buf := make([]byte, 0, 4096)
	b.SetBytes(int64(HeaderSize + len(body)))
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendFrame(buf[:0], KindTask, 42, body)
	}
}

func BenchmarkReaderNext(b *testing.B) {
	for _, size := range []int{16, 1024, 60000} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			body := bytes.Repeat([]byte{1}, size)
			var stream []byte
			for len(stream) < 1<<20 {
				stream = AppendFrame(stream, KindResult, 1, body)
			}
			frameSize := HeaderSize + size
			perStream := len(stream) / frameSize
			src := bytes.NewReader(stream)
			rd := NewReader(src, 0, 0)
			b.SetBytes(int64(frameSize))
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				if n == perStream {
					src.Reset(stream)
					rd.err, rd.rerr = nil, nil
					n = 0
				}
				if _, err := rd.Next(); err != nil {
					b.Fatal(err)
				}
				n++
			}
		})
	}
}
