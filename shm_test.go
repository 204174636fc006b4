//go:build unix

package procpool

import (
	"bytes"
	"context"
	"crypto/sha256"
	"os"
	"testing"
	"time"
)

// bigTask: b[0] == 1 sleeps 300 ms, b[0] == 2 exits the worker after 50
// ms; then it returns the argument's digest.
var bigTask = Register("internal.big", func(_ context.Context, b []byte) ([32]byte, error) {
	switch b[0] {
	case 1:
		time.Sleep(300 * time.Millisecond)
	case 2:
		time.Sleep(50 * time.Millisecond)
		os.Exit(3)
	}
	return sha256.Sum256(b), nil
})

// Tasks requeued from a dead worker hold no claim on the shared memory of
// the worker they go to next.
func TestSharedRegionsAfterRequeue(t *testing.T) {
	ctx := hangCheck(t)
	p, err := New(WithProcesses(2), WithSharedMemory(256<<10))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Terminate()
	for range 10 { // short tasks on both workers: they pipeline
		var futs []*Future[[32]byte]
		for range 40 {
			f, _ := ApplyAsync(ctx, p, bigTask, []byte{0})
			futs = append(futs, f)
		}
		for _, f := range futs {
			f.Get(ctx)
		}
	}
	crash, _ := ApplyAsync(ctx, p, bigTask, []byte{2})
	hold, _ := ApplyAsync(ctx, p, bigTask, []byte{1})
	var futs []*Future[[32]byte]
	var args [][]byte
	for i := range 4 {
		a := bytes.Repeat([]byte{byte(10 + i)}, 100_000)
		f, err := ApplyAsync(ctx, p, bigTask, a)
		if err != nil {
			t.Fatal(err)
		}
		futs, args = append(futs, f), append(args, a)
	}
	crash.Get(ctx)
	hold.Get(ctx)
	for i, f := range futs {
		if got, err := f.Get(ctx); err != nil || got != sha256.Sum256(args[i]) {
			t.Fatalf("argument %d: %v, intact %v", i, err, got == sha256.Sum256(args[i]))
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, w := range p.workers {
		if w.inflight.len() == 0 && w.shmRing.Len() != 0 {
			t.Fatalf("worker %d: nothing in flight, %d shared regions in use", w.pid, w.shmRing.Len())
		}
	}
}
