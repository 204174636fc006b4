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
	p.watchMu.Unlock()
	if n != 0 {
		t.Fatalf("%d context registrations left after every task ended", n)
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
