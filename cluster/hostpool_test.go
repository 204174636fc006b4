//go:build unix

package cluster_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/procpool/procpool"
	"github.com/procpool/procpool/cluster"
)

// Hosts in this process (Serve over an in-process pool), whose runs the
// tests count here: counted's state.
var (
	countedRuns    sync.Map // X -> *atomic.Int32: how many times task X ran
	countedNow     atomic.Int32
	countedMax     atomic.Int32 // the most that ran at once
	countedGate    atomic.Pointer[chan struct{}]
	countedStarted atomic.Int32
)

type countedArg struct {
	X int
	D time.Duration
}

// counted counts its run of a.X, waits for the gate if one is set, then
// for a.D, and returns a.X; it ends early when its context does.
var counted = procpool.Register("ct.counted", func(ctx context.Context, a countedArg) (int, error) {
	v, _ := countedRuns.LoadOrStore(a.X, new(atomic.Int32))
	v.(*atomic.Int32).Add(1)
	n := countedNow.Add(1)
	defer countedNow.Add(-1)
	for {
		m := countedMax.Load()
		if n <= m || countedMax.CompareAndSwap(m, n) {
			break
		}
	}
	countedStarted.Add(1)
	if g := countedGate.Load(); g != nil {
		select {
		case <-*g:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	select {
	case <-time.After(a.D):
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	return a.X, nil
})

func resetCounted() {
	countedRuns.Range(func(k, _ any) bool { countedRuns.Delete(k); return true })
	countedNow.Store(0)
	countedMax.Store(0)
	countedGate.Store(nil)
	countedStarted.Store(0)
}

func runsOf(x int) int32 {
	if v, ok := countedRuns.Load(x); ok {
		return v.(*atomic.Int32).Load()
	}
	return 0
}

// localHost is Serve over an in-process pool, in this process.
type localHost struct {
	cancel context.CancelFunc
	done   chan error // Serve's error; refilled with nil once read, for the cleanup
	pool   *procpool.Pool
}

func (e *env) localHost(name string, workers, slots int) *localHost {
	e.t.Helper()
	pool, err := procpool.New(procpool.WithInProcess(), procpool.WithProcesses(workers))
	if err != nil {
		e.t.Fatal(err)
	}
	nc := e.connect()
	ctx, cancel := context.WithCancel(context.Background())
	h := &localHost{cancel: cancel, done: make(chan error, 1), pool: pool}
	go func() {
		h.done <- cluster.Serve(ctx, nc, pool, e.config(), cluster.WithSlots(slots), cluster.WithName(name))
	}()
	e.t.Cleanup(func() { cancel(); <-h.done; pool.Close() })
	return h
}

// wait returns Serve's error once it has returned; the test fails if it
// has not within a minute (a hang, not a slow machine).
func (h *localHost) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-h.done:
		h.done <- nil
		return err
	case <-time.After(time.Minute):
		t.Fatal("Serve did not return")
		return nil
	}
}

// Hosts that start and drain at random moments while tasks flow: every
// task ends with its result and runs exactly once (retries 0: a draining
// host loses no task and runs none twice), every Serve that set up
// returns nil, and
// no host runs more tasks at once than its slots (2, on a pool of 4
// workers that could run more).
func TestDrainWhileTasksFlow(t *testing.T) {
	resetCounted()
	e := newEnv(t)
	p := e.client(procpool.WithProcesses(32))
	ctx := context.Background()
	const n = 400
	futs := make([]*procpool.Future[int], n)
	for i := range futs {
		f, err := procpool.ApplyAsync(ctx, p, counted, countedArg{X: i, D: time.Duration(rand.IntN(20)) * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		futs[i] = f
	}
	// One host at a time, so that countedMax is one host's.
	for round := 0; ; round++ {
		done := 0
		for _, f := range futs {
			if f.Ready() {
				done++
			}
		}
		if done == n {
			break
		}
		if round > 500 {
			t.Fatalf("only %d of %d tasks ended after %d hosts", done, n, round)
		}
		h := e.localHost("h", 4, 2)
		time.Sleep(time.Duration(rand.IntN(300)) * time.Millisecond) // when to drain: not a timed assertion
		h.cancel()
		// A host cancelled before it has set up (the stream and consumer
		// round trips) returns the context's error; one that drained, nil.
		if err := h.wait(t); err != nil && !errors.Is(err, context.Canceled) {
			t.Fatalf("Serve: %v", err)
		}
	}
	for i, f := range futs {
		if v, err := f.Get(ctx); err != nil || v != i {
			t.Errorf("task %d: %d, %v", i, v, err)
		}
		if r := runsOf(i); r != 1 {
			t.Errorf("task %d ran %d times", i, r)
		}
	}
	if m := countedMax.Load(); m > 2 {
		t.Errorf("a host with 2 slots ran %d tasks at once", m)
	}
}

// A host's default slots are its pool's size (WithProcesses), not the
// workers alive when Serve starts: a pool whose workers all retired for
// idleness starts them again for the host's tasks.
func TestDefaultSlotsAreThePoolsSize(t *testing.T) {
	e := newEnv(t)
	pool, err := procpool.New(procpool.WithProcesses(2), procpool.WithIdleTimeout(50*time.Millisecond, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	waitFor(t, "the idle workers to retire", func() bool { return len(pool.Stats().Workers) == 0 })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	nc := e.connect()
	go func() { served <- cluster.Serve(ctx, nc, pool, e.config()) }()
	p := e.client()
	f, err := procpool.ApplyAsync(context.Background(), p, square, 3)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-served:
		t.Fatalf("Serve on a pool of 2 workers, all retired for idleness: %v", err)
	case <-f.Done():
	}
	if v, err := f.Get(context.Background()); err != nil || v != 9 {
		t.Fatalf("square(3): %d, %v", v, err)
	}
	cancel()
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
}

// A host whose pool is terminated while it runs a task answers the task
// as lost, as a host that died: with retries 0 the caller gets
// ReasonHostLost, with a retry the task runs again on another host; and
// Serve returns ErrTerminated.
func TestTerminatedHostPoolReportsItsTaskLost(t *testing.T) {
	for _, retries := range []int{0, 1} {
		t.Run(map[int]string{0: "no retries", 1: "one retry"}[retries], func(t *testing.T) {
			resetCounted()
			gate := make(chan struct{})
			countedGate.Store(&gate)
			defer close(gate)
			e := newEnv(t)
			p := e.client(procpool.WithRetries(retries))
			a := e.localHost("a", 1, 1)
			f, err := procpool.ApplyAsync(context.Background(), p, counted, countedArg{X: 7})
			if err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the task to start on a", func() bool { return countedStarted.Load() == 1 })
			countedGate.Store(nil) // a retry does not wait
			_ = a.pool.Terminate()
			if err := a.wait(t); !errors.Is(err, procpool.ErrTerminated) {
				t.Fatalf("Serve over a pool terminated under it: %v, want ErrTerminated", err)
			}
			if retries == 0 {
				v, err := f.Get(context.Background())
				var we *procpool.WorkerExitError
				if !errors.As(err, &we) || we.Reason != cluster.ReasonHostLost || !errors.Is(err, cluster.ErrHostLost) {
					t.Fatalf("the task, retries 0: %d, %v; want a WorkerExitError for a lost host", v, err)
				}
				if r := runsOf(7); r != 1 {
					t.Fatalf("the task ran %d times, want 1", r)
				}
				return
			}
			e.localHost("b", 1, 1)
			if v, err := f.Get(context.Background()); err != nil || v != 7 {
				t.Fatalf("the task, retries 1: %d, %v; want 7 from host b", v, err)
			}
			if r := runsOf(7); r != 2 {
				t.Fatalf("the task ran %d times, want 2 (a, then b)", r)
			}
		})
	}
}
