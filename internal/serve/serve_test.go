package serve

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/procpool/procpool/codec"
	"github.com/procpool/procpool/internal/wire"
)

// fakeHandler is echo, which returns its payload, or fail, which fails
// with the payload as its message.
type fakeHandler struct{ name string }

func (h fakeHandler) Name() string { return h.name }

func (h fakeHandler) Call(_ context.Context, _ codec.Codec, payload, dst []byte) ([]byte, error) {
	if h.name == "fail" {
		return dst, errors.New(string(payload))
	}
	return append(dst, payload...), nil
}

func (h fakeHandler) CallChunk(context.Context, codec.Codec, []byte, []byte, int, *wire.Journal) ([]byte, []ItemFailure, error) {
	return nil, nil, errors.New("no chunks here")
}

type fakeFunctions struct{ lookups int }

func (f *fakeFunctions) Lookup(name []byte) Handler {
	f.lookups++
	switch string(name) {
	case "echo", "fail":
		return fakeHandler{string(name)}
	}
	return nil
}
func (*fakeFunctions) Names() []string                 { return []string{"echo", "fail"} }
func (*fakeFunctions) Fingerprints() map[string]string { return nil }
func (*fakeFunctions) Report(err error) wire.ErrorBody { return wire.ErrorBody{Message: err.Error()} }

func task(k wire.Kind, id uint64, fn, payload string) []byte {
	body := append(wire.AppendTaskHeader(nil, false, fn), payload...)
	return wire.AppendFrame(nil, k, id, body)
}

// The loop answers each task in order: results, the function's error, an
// unknown function, the initializer's failure, and a task cancelled before
// it started; the hello comes first and names the functions.
func TestServeAnswers(t *testing.T) {
	var in []byte
	in = append(in, task(wire.KindInit, 0, "fail", "bad init")...)
	in = append(in, task(wire.KindTask, 1, "echo", "one")...)
	in = append(in, task(wire.KindTask, 2, "nope", "x")...)
	in = append(in, task(wire.KindTask, 3, "fail", "boom")...)
	in = append(in, wire.AppendFrame(nil, wire.KindCancel, 4, nil)...) // before task 4 arrives: ignored
	in = append(in, task(wire.KindTask, 4, "echo", "four")...)
	in = append(in, task(wire.KindTask, 5, "echo", "five")...)
	in = append(in, wire.AppendFrame(nil, wire.KindCancel, 6, nil)...)
	in = append(in, task(wire.KindTask, 7, "echo", "seven")...)
	var out bytes.Buffer
	fns := &fakeFunctions{}
	s := New(bytes.NewReader(in), &out, Config{Functions: fns, Codec: codec.Default, MaxFrame: wire.DefaultMaxFrame, Available: func() int { return 0 }})
	if err := s.Hello(42); err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	r := wire.NewReader(&out, 0, 0)
	f, err := r.Next()
	if err != nil || f.Kind != wire.KindHello {
		t.Fatalf("first frame %v, %v", f.Kind, err)
	}
	if h, err := wire.ParseHello(f.Body); err != nil || h.Pid != 42 || len(h.Functions) != 2 || h.Journal || h.Control {
		t.Fatalf("hello %+v, %v", h, err)
	}
	for _, want := range []struct {
		kind    wire.Kind
		id      uint64
		payload string // a result's body, or an error's message
		code    string
	}{
		{wire.KindError, 0, "bad init", CodeInit},
		{wire.KindResult, 1, "one", ""},
		{wire.KindError, 2, "", CodeUnknownFunc},
		{wire.KindError, 3, "boom", ""},
		{wire.KindResult, 4, "four", ""},
		{wire.KindResult, 5, "five", ""},
		{wire.KindResult, 7, "seven", ""},
	} {
		f, err := r.Next()
		if err != nil {
			t.Fatalf("answer for task %d: %v", want.id, err)
		}
		if f.Kind != want.kind || f.ID != want.id {
			t.Fatalf("got %v for task %d, want %v for %d", f.Kind, f.ID, want.kind, want.id)
		}
		if f.Kind == wire.KindResult {
			if string(f.Body) != want.payload {
				t.Fatalf("task %d: result %q, want %q", f.ID, f.Body, want.payload)
			}
			continue
		}
		eb, err := wire.ParseError(f.Body)
		if err != nil || eb.Code != want.code || want.payload != "" && eb.Message != want.payload {
			t.Fatalf("task %d: error %+v, %v; want code %q message %q", f.ID, eb, err, want.code, want.payload)
		}
	}
	if _, err := r.Next(); err == nil {
		t.Fatal("an answer too many")
	}
	// The cache holds the last function found: fail, echo, nope (not
	// found, not cached), fail, echo, and then echo twice from the cache.
	if fns.lookups != 5 {
		t.Fatalf("%d lookups, want 5", fns.lookups)
	}
}
