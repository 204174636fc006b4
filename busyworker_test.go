//go:build linux

package procpool_test

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/procpool/procpool"
)

// startGate runs gateTask on p and waits until it runs; the task returns
// once the returned function opens its gate.
func startGate(t *testing.T, p *procpool.Pool) (*procpool.Future[int], func()) {
	t.Helper()
	dir := t.TempDir()
	a := gateArg{Started: filepath.Join(dir, "started"), Gate: filepath.Join(dir, "gate")}
	f, err := procpool.ApplyAsync(testCtx(t), p, gateTask, a)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the gate task to run", func() bool { return fileExists(a.Started) })
	return f, func() {
		if err := os.WriteFile(a.Gate, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// warmPipelining runs short tasks on p until its workers pipeline (their
// recent tasks averaged under a millisecond).
func warmPipelining(t *testing.T, p *procpool.Pool) {
	t.Helper()
	for i := range 40 {
		if _, err := procpool.Apply(testCtx(t), p, square, i); err != nil {
			t.Fatal(err)
		}
	}
}

// Tasks submitted while the only worker is busy wait in the queue (but for
// one, pipelined behind the running task), though the worker's pipeline has
// more room: its reader hands them over together when the worker answers,
// in one write, instead of each submitter writing its own. Before, each of many goroutines calling Apply at once wrote the task
// it dispatched, and a worker took its tasks a write at a time.
func TestSubmittersLeaveABusyWorkersPipelineToItsReader(t *testing.T) {
	ctx := testCtx(t)
	p := newPool(t, procpool.WithProcesses(1))
	warmPipelining(t, p)
	gate, open := startGate(t, p)

	const callers = 10
	before := p.Stats().Submitted
	results := make([]int, callers)
	errs := make([]error, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() { results[i], errs[i] = procpool.Apply(ctx, p, square, i+100) })
	}
	waitFor(t, "every caller's task to be accepted", func() bool { return p.Stats().Submitted == before+callers })
	// One task waits in the pipe behind the gate task (a submitter fills a
	// worker up to two); the others wait in the queue.
	s := p.Stats()
	if s.Queued != callers-1 || len(s.Workers) != 1 || s.Workers[0].InFlight != 2 {
		t.Fatalf("with the worker busy: %d queued, workers %+v; want %d queued and 2 in flight", s.Queued, s.Workers, callers-1)
	}

	open()
	if _, err := gate.Get(ctx); err != nil {
		t.Fatalf("gate task: %v", err)
	}
	wg.Wait()
	for i := range callers {
		if errs[i] != nil || results[i] != (i+100)*(i+100) {
			t.Errorf("caller %d: %d, %v; want %d", i, results[i], errs[i], (i+100)*(i+100))
		}
	}
	p.Close()
	if s := p.Stats(); s.Succeeded != 40+1+callers || s.Failed != 0 {
		t.Fatalf("after close: %d succeeded, %d failed; want %d and 0", s.Succeeded, s.Failed, 40+1+callers)
	}
}

// WithQueueSize bounds the tasks waiting for a worker: with the only
// worker busy, the queue takes as many as its size, then tasks are let in
// while the worker's pipeline has room, each filling it at once (a small
// bound must not starve the pipeline), and no more.
func TestQueueSizeWithABusyWorker(t *testing.T) {
	ctx := testCtx(t)
	const depth, size = 4, 2
	p := newPool(t, procpool.WithProcesses(1), procpool.WithQueueSize(size), procpool.WithPipelineDepth(depth))
	warmPipelining(t, p)
	gate, open := startGate(t, p)

	var futs []*procpool.Future[int]
	for i := range size + depth - 1 {
		f, err := procpool.TryApplyAsync(ctx, p, square, i)
		if err != nil {
			t.Fatalf("task %d of %d (queue %d, the busy worker's pipeline room %d): %v", i, size+depth-1, size, depth-1, err)
		}
		futs = append(futs, f)
	}
	if _, err := procpool.TryApplyAsync(ctx, p, square, 99); !errors.Is(err, procpool.ErrQueueFull) {
		t.Fatalf("a task with the queue full and the pipeline full: %v, want ErrQueueFull", err)
	}
	if s := p.Stats(); s.Queued != size || len(s.Workers) != 1 || s.Workers[0].InFlight != depth {
		t.Fatalf("%d queued, workers %+v; want %d queued and %d in flight", s.Queued, s.Workers, size, depth)
	}

	open()
	if _, err := gate.Get(ctx); err != nil {
		t.Fatalf("gate task: %v", err)
	}
	for i, f := range futs {
		if v, err := f.Get(ctx); err != nil || v != i*i {
			t.Errorf("task %d: %d, %v", i, v, err)
		}
	}
}
