package inprocess

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/procpool/procpool/codec"
	"github.com/procpool/procpool/internal/backend"
	"github.com/procpool/procpool/internal/serve"
	"github.com/procpool/procpool/internal/wire"
)

// block waits until its context ends (a stop), then returns its payload.
type block struct{ started chan struct{} }

func (block) Name() string { return "block" }

func (b block) Call(ctx context.Context, _ codec.Codec, payload, dst []byte) ([]byte, error) {
	b.started <- struct{}{}
	<-ctx.Done()
	return append(dst, payload...), nil
}

func (block) CallChunk(context.Context, codec.Codec, []byte, []byte, int, *wire.Journal) ([]byte, []serve.ItemFailure, error) {
	return nil, nil, errors.New("no chunks")
}

type functions struct{ h block }

func (f functions) Lookup(name []byte) serve.Handler {
	if string(name) == "block" {
		return f.h
	}
	return nil
}
func (functions) Names() []string                 { return []string{"block"} }
func (functions) Fingerprints() map[string]string { return nil }
func (functions) Report(err error) wire.ErrorBody { return wire.ErrorBody{Message: err.Error()} }

// An in-process worker keeps the backend's contract: a hello first, a stop
// that reaches the running task (which, honouring it, is answered and
// keeps its worker), Running naming that task, and Exited once its input
// is closed, with no exit status.
func TestWorkerContract(t *testing.T) {
	var wg sync.WaitGroup
	fns := functions{block{started: make(chan struct{}, 1)}}
	b, err := NewLauncher(fns).Start(backend.Spec{
		Codec: codec.Default, MaxFrame: wire.DefaultMaxFrame, KillGrace: time.Minute,
		Go:  func(f func()) { wg.Add(1); go func() { defer wg.Done(); f() }() },
		Log: func(string, ...any) {},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer wg.Wait()
	r := wire.NewReader(b.Results(), 0, 0)
	r.StopAtEnd()
	f, err := r.Next()
	if err != nil || f.Kind != wire.KindHello {
		t.Fatalf("first frame %v, %v; want the hello", f.Kind, err)
	}
	h, err := wire.ParseHello(f.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ft := b.Features(h); !ft.Journal || !ft.Control || ft.Items {
		t.Fatalf("Features %+v", ft)
	}
	task := wire.AppendFrame(nil, wire.KindTask, 7, append(wire.AppendTaskHeader(nil, false, "block"), "x"...))
	if _, err := b.Tasks().Write(task); err != nil {
		t.Fatal(err)
	}
	<-fns.h.started
	if id := b.Running(); id != 7 {
		t.Fatalf("Running = %d, want 7", id)
	}
	if !b.Stop(7, wire.StopCancel) {
		t.Fatal("an in-process stop is a call: it must be sure")
	}
	if f, err = r.Next(); err != nil || f.Kind != wire.KindResult || f.ID != 7 || string(f.Body) != "x" {
		t.Fatalf("answer %v %d %q, %v", f.Kind, f.ID, f.Body, err)
	}
	if id := b.Running(); id != 0 {
		t.Fatalf("Running = %d after the answer, want 0", id)
	}
	b.Tasks().Close()
	<-b.Exited()
	if _, err := r.Next(); err == nil {
		t.Fatal("a frame after the end")
	}
	if x := b.Exit(); x.Status || x.ReportAt != -1 {
		t.Fatalf("Exit %+v: an in-process worker has no status", x)
	}
	if d := b.Death(); d.Running != 0 || d.Finished != -1 {
		t.Fatalf("Death %+v", d)
	}
	b.Reap()
	b.Release()
	if b.Pid() == 0 || b.ID() == "" || b.Host() != "" {
		t.Fatalf("names: pid %d, id %q, host %q", b.Pid(), b.ID(), b.Host())
	}
}
