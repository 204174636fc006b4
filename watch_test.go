package procpool

import (
	"context"
	"errors"
	"testing"
	"time"
)

var nap = Register("internal.nap", func(ctx context.Context, ms int) (int, error) {
	time.Sleep(time.Duration(ms) * time.Millisecond)
	return ms, nil
})

// Tasks that share a context share one registration with it, which goes
// away with the last of them; cancelling the context ends those still
// pending.
func TestContextWatchIsShared(t *testing.T) {
	p, err := New(WithProcesses(1), WithInProcess(), WithPipelineDepth(1))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Terminate()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var futs []*Future[int]
	for range 20 {
		f, err := ApplyAsync(ctx, p, nap, 1)
		if err != nil {
			t.Fatal(err)
		}
		futs = append(futs, f)
	}
	p.watchMu.Lock()
	n := len(p.watches)
	p.watchMu.Unlock()
	if n != 1 {
		t.Fatalf("%d context registrations for 20 tasks of one context, want 1", n)
	}
	for _, f := range futs {
		if _, err := f.Get(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	p.watchMu.Lock()
	n = len(p.watches)
	idle := p.idleWatch
	p.watchMu.Unlock()
	if n != 1 || idle == nil || idle.n != 0 {
		t.Fatalf("after every task ended: %d registrations, idle %v; want the one kept idle", n, idle)
	}
	// Another context's tasks displace it: still one registration at most
	// without tasks.
	other, cancelOther := context.WithCancel(context.Background())
	defer cancelOther()
	if _, err := Apply(other, p, nap, 1); err != nil {
		t.Fatal(err)
	}
	p.watchMu.Lock()
	n, idle = len(p.watches), p.idleWatch
	p.watchMu.Unlock()
	if n != 1 || idle == nil || idle.ctx != other {
		t.Fatalf("after a task of another context: %d registrations, idle %v", n, idle)
	}

	// Cancelling the context ends the tasks still queued.
	futs = futs[:0]
	for range 5 {
		f, _ := ApplyAsync(ctx, p, nap, 50)
		futs = append(futs, f)
	}
	cancel()
	canceled := 0
	for _, f := range futs {
		if _, err := f.Get(context.Background()); errors.Is(err, context.Canceled) {
			canceled++
		}
	}
	if canceled < 4 { // the first may have finished, or be running
		t.Fatalf("%d of 5 tasks ended with context.Canceled", canceled)
	}
}

// Closing the pool releases the registration it kept.
func TestContextWatchReleasedOnClose(t *testing.T) {
	p, err := New(WithProcesses(1), WithInProcess())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := Apply(ctx, p, nap, 1); err != nil {
		t.Fatal(err)
	}
	p.Close()
	p.watchMu.Lock()
	defer p.watchMu.Unlock()
	if len(p.watches) != 0 || p.idleWatch != nil {
		t.Fatalf("registrations left after Close: %d", len(p.watches))
	}
}
