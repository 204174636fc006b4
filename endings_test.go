//go:build unix

package procpool_test

// Tests of invariants 1 and 2 of the design under races: every accepted task
// ends exactly once, and a crash, a timeout or a cancel fails exactly the
// task it was aimed at. Each test runs the racing paths many times against
// real worker processes and counts how often each input ran.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/procpool/procpool"
)

// runLog records, in a file that outlives the worker that wrote it, which
// inputs ran: one line per run.
type runLog string

func newRunLog(t *testing.T) runLog { return runLog(filepath.Join(t.TempDir(), "runs")) }

// counts returns how many times each input ran.
func (l runLog) counts(t *testing.T) map[int]int {
	t.Helper()
	b, err := os.ReadFile(string(l))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	n := map[int]int{}
	for _, line := range strings.Fields(string(b)) {
		x, err := strconv.Atoi(line)
		if err != nil {
			t.Fatalf("bad run log line %q", line)
		}
		n[x]++
	}
	return n
}

func (l runLog) reset(t *testing.T) {
	t.Helper()
	if err := os.Remove(string(l)); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
}

type crashArg struct {
	Log   string
	X     int
	Crash int // the input that makes the worker exit with status 3
	Fail  int // the input that returns an error
}

// doubleOrCrash logs its run, then returns 2·x, or exits the worker process
// (as a cgo NULL dereference would) for the crashing input.
var doubleOrCrash = procpool.Register("doubleOrCrash", func(_ context.Context, a crashArg) (int, error) {
	logRun(a.Log, a.X)
	switch a.X {
	case a.Crash:
		os.Exit(3)
	case a.Fail:
		return 0, errors.New("failed by design")
	}
	return 2 * a.X, nil
})

func logRun(path string, x int) {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		panic(err)
	}
	f.WriteString(strconv.Itoa(x) + "\n") // one write: appends do not interleave
	f.Close()
}

// TestCrashFailsOnlyTheRunningTask: short tasks whose answers the worker has
// batched, then one that kills the worker. Only that task fails; every other
// task succeeds and ran once, with retries off.
func TestCrashFailsOnlyTheRunningTask(t *testing.T) {
	ctx := context.Background()
	p := newPool(t, procpool.WithProcesses(2))
	log := newRunLog(t)
	for trial := range 20 {
		log.reset(t)
		futs := make([]*procpool.Future[int], 101)
		for x := 1; x <= 100; x++ {
			f, err := procpool.ApplyAsync(ctx, p, doubleOrCrash, crashArg{Log: string(log), X: x, Crash: 13})
			if err != nil {
				t.Fatal(err)
			}
			futs[x] = f
		}
		for x := 1; x <= 100; x++ {
			v, err := futs[x].Get(ctx)
			if x == 13 {
				var we *procpool.WorkerExitError
				if !errors.As(err, &we) || we.Reason != procpool.ReasonCrashed || we.ExitCode != 3 {
					t.Fatalf("trial %d: input 13: %v, want a *WorkerExitError (crashed, exit status 3)", trial, err)
				}
				continue
			}
			if err != nil || v != 2*x {
				t.Fatalf("trial %d: input %d: %d, %v; want %d (an innocent task was blamed for a crash)", trial, x, v, err, 2*x)
			}
		}
		for x, n := range log.counts(t) {
			if n != 1 {
				t.Fatalf("trial %d: input %d ran %d times, want once", trial, x, n)
			}
		}
	}
	// A task's outcome is counted just after it is delivered (Stats shows
	// it Running meanwhile): Close returns once every one is counted.
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if s := p.Stats(); s.Failed != 20 || s.Succeeded != 20*99 {
		t.Fatalf("stats: %+v, want 20 failed and %d succeeded", s, 20*99)
	}
}

// TestCrashInChunk: a chunk whose worker dies at one item keeps the results
// (and errors) of the items before it, fails that item alone, and runs the
// items after it elsewhere, each once; with a retry, the crashing item runs
// once more and nothing else does.
func TestCrashInChunk(t *testing.T) {
	ctx := context.Background()
	p := newPool(t, procpool.WithProcesses(2))
	log := newRunLog(t)
	in := make([]crashArg, 100)
	for i := range in {
		in[i] = crashArg{Log: string(log), X: i + 1, Crash: 13, Fail: 12}
	}
	seq := func(yield func(crashArg) bool) {
		for _, a := range in {
			if !yield(a) {
				return
			}
		}
	}
	checkRuns := func(what string, crashRuns int) {
		t.Helper()
		counts := log.counts(t)
		for x := 1; x <= 100; x++ {
			want := 1
			if x == 13 {
				want = crashRuns
			}
			if counts[x] != want {
				t.Fatalf("%s: input %d ran %d times, want %d", what, x, counts[x], want)
			}
		}
	}
	for trial := range 5 {
		for _, chunk := range []int{3, 10, 50} {
			log.reset(t)
			_, err := procpool.Map(ctx, p, doubleOrCrash, in, procpool.ChunkSize(chunk))
			var me *procpool.MapError
			var re *procpool.RemoteError
			if !errors.As(err, &me) || me.Index != 11 || !errors.As(err, &re) {
				t.Fatalf("trial %d, chunk %d: Map: %v, want a *MapError at index 11 (the item that failed)", trial, chunk, err)
			}
			checkRuns("Map", 1)

			for _, retries := range []int{0, 1} {
				log.reset(t)
				i := 0
				for v, err := range procpool.Imap(ctx, p, doubleOrCrash, seq, procpool.ChunkSize(chunk), procpool.Retries(retries)) {
					x := i + 1
					i++
					var we *procpool.WorkerExitError
					switch x {
					case 12:
						if !errors.As(err, &re) || re.Message != "failed by design" {
							t.Fatalf("trial %d, chunk %d: Imap: input 12: %v, want its own error", trial, chunk, err)
						}
					case 13:
						if !errors.As(err, &we) || we.ExitCode != 3 || we.Attempts != retries+1 {
							t.Fatalf("trial %d, chunk %d: Imap: input 13: %v, want the worker's exit after %d attempts", trial, chunk, err, retries+1)
						}
					default:
						if err != nil || v != 2*x {
							t.Fatalf("trial %d, chunk %d: Imap: input %d: %d, %v; want %d", trial, chunk, x, v, err, 2*x)
						}
					}
				}
				if i != 100 {
					t.Fatalf("trial %d: Imap yielded %d items, want 100", trial, i)
				}
				checkRuns("Imap", retries+1)
			}
		}
	}
	if s := p.Stats(); s.Submitted != s.Succeeded+s.Failed+int64(s.Queued+s.Running) || s.Cancelled+s.TimedOut+s.Terminated != 0 {
		t.Fatalf("stats do not add up: %+v", s)
	}
}

// TestStopHitsOnlyItsTask: tasks that last about as long as their timeout,
// so that a stop often comes as the task answers. A timeout must never end
// another task: every error is a timeout, and a timed-out task is the one
// the deadline was for.
func TestStopHitsOnlyItsTask(t *testing.T) {
	ctx := context.Background()
	p := newPool(t, procpool.WithProcesses(2), procpool.WithKillGrace(50e6))
	seq := func(yield func(int) bool) {
		for range 300 {
			if !yield(3) {
				return
			}
		}
	}
	timeouts := 0
	for v, err := range procpool.Imap(ctx, p, sleepMs, seq, procpool.Timeout(3100e3), procpool.Window(8)) {
		switch {
		case err == nil:
			if v != 3 {
				t.Fatalf("result %d, want 3", v)
			}
		case errors.Is(err, procpool.ErrTimeout):
			timeouts++
		default:
			t.Fatalf("a task failed with %v: a stop hit a task it was not aimed at", err)
		}
	}
	t.Logf("%d of 300 tasks timed out", timeouts)
}

// TestCancelHitsOnlyItsTask: one caller cancels its tasks at about the
// moment they answer; another caller's tasks, pipelined behind them on the
// same workers and never cancelled, must all succeed, each once.
func TestCancelHitsOnlyItsTask(t *testing.T) {
	for _, mode := range []string{"process", "in-process"} {
		t.Run(mode, func(t *testing.T) {
			opts := []procpool.Option{procpool.WithProcesses(2)}
			if mode == "in-process" {
				opts = append(opts, procpool.WithInProcess())
			}
			p := newPool(t, opts...)
			ctx := context.Background()
			log := newRunLog(t)
			var wg sync.WaitGroup
			stop := make(chan struct{})
			wg.Add(1)
			go func() { // the canceller
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					f, err := procpool.ApplyAsync(ctx, p, napUs, 30)
					if err != nil {
						t.Error(err)
						return
					}
					// Cancel at about the moment the task answers.
					time.Sleep(time.Duration(i%60) * time.Microsecond)
					f.Cancel()
					if _, err := f.Get(ctx); err != nil && !errors.Is(err, context.Canceled) {
						t.Errorf("cancelled task: %v", err)
						return
					}
				}
			}()
			const bursts, burst = 100, 40
			for b := range bursts {
				futs := make([]*procpool.Future[int], burst)
				for i := range futs {
					x := b*burst + i
					f, err := procpool.ApplyAsync(ctx, p, doubleOrCrash, crashArg{Log: string(log), X: x, Crash: -1, Fail: -1})
					if err != nil {
						t.Fatal(err)
					}
					futs[i] = f
				}
				for i, f := range futs {
					x := b*burst + i
					if v, err := f.Get(ctx); err != nil || v != 2*x {
						close(stop)
						wg.Wait()
						t.Fatalf("task %d of a caller that never cancels: %d, %v", x, v, err)
					}
				}
			}
			close(stop)
			wg.Wait()
			counts := log.counts(t)
			for x := range bursts * burst {
				if counts[x] != 1 {
					t.Fatalf("input %d ran %d times, want once", x, counts[x])
				}
			}
		})
	}
}

// TestEndingsRace races each pair of a task's endings many times: its answer,
// a cancel, its deadline, Terminate and its worker's death. Every task must
// end exactly once (one callback, one outcome), the counters must add up,
// and Close or Terminate must return.
func TestEndingsRace(t *testing.T) {
	type racer func(p *procpool.Pool, f *procpool.Future[int])
	cancel := func(_ *procpool.Pool, f *procpool.Future[int]) { f.Cancel() }
	kill := func(p *procpool.Pool, _ *procpool.Future[int]) {
		if ws := p.Stats().Workers; len(ws) > 0 {
			killPid(ws[0].Pid)
		}
	}
	cases := []struct {
		name      string
		timeout   bool // tasks have a deadline close to their run time
		a, b      racer
		terminate bool // the round ends with Terminate rather than Close
	}{
		{"answer-cancel", false, cancel, nil, false},
		{"answer-timeout", true, nil, nil, false},
		{"answer-terminate", false, nil, nil, true},
		{"answer-exit", false, kill, nil, false},
		{"cancel-timeout", true, cancel, nil, false},
		{"cancel-terminate", false, cancel, nil, true},
		{"cancel-exit", false, cancel, kill, false},
		{"timeout-exit", true, kill, nil, false},
		{"timeout-terminate", true, nil, nil, true},
		{"exit-terminate", false, kill, nil, true},
	}
	noOrphans(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			for round := range 4 {
				p, err := procpool.New(procpool.WithProcesses(2), procpool.WithKillGrace(20e6))
				if err != nil {
					t.Fatal(err)
				}
				// Stats add up at every moment someone looks, not only at
				// the end.
				observed := make(chan error, 1)
				stopObserving := make(chan struct{})
				go func() {
					defer close(observed)
					for {
						s := p.Stats()
						if sum := s.Succeeded + s.Failed + s.Cancelled + s.TimedOut + s.Terminated + int64(s.Queued+s.Running); sum != s.Submitted || s.Running < 0 {
							observed <- fmt.Errorf("stats do not add up mid-run: %+v", s)
							return
						}
						select {
						case <-stopObserving:
							return
						default:
							runtime.Gosched()
						}
					}
				}()
				const n = 300
				var ends [n]atomic.Int32
				futs := make([]*procpool.Future[int], n)
				var opts []procpool.CallOption
				if c.timeout {
					opts = append(opts, procpool.Timeout(300e3))
				}
				for i := range n {
					f, err := procpool.ApplyAsync(ctx, p, napUs, 100+i%400, append(opts,
						procpool.Callback(func(int) { ends[i].Add(1) }),
						procpool.ErrorCallback(func(error) { ends[i].Add(1) }))...)
					if err != nil {
						t.Fatal(err)
					}
					futs[i] = f
					if i%3 == 0 {
						for _, r := range []racer{c.a, c.b} {
							if r != nil {
								r(p, f)
							}
						}
					}
				}
				if c.terminate {
					if err := p.Terminate(); err != nil {
						t.Fatal(err)
					}
				} else if err := p.Close(); err != nil {
					t.Fatal(err)
				}
				close(stopObserving)
				if err := <-observed; err != nil {
					t.Fatalf("round %d: %v", round, err)
				}
				for i, f := range futs {
					if !f.Ready() {
						t.Fatalf("round %d: task %d still pending after the pool ended", round, i)
					}
					_, err := f.Get(ctx)
					var we *procpool.WorkerExitError
					switch {
					case err == nil, errors.Is(err, context.Canceled), errors.Is(err, procpool.ErrTimeout),
						errors.Is(err, procpool.ErrTerminated), errors.As(err, &we):
					default:
						t.Fatalf("round %d: task %d: unexpected error %v", round, i, err)
					}
					if got := ends[i].Load(); got != 1 {
						t.Fatalf("round %d: task %d ended %d times, want once", round, i, got)
					}
				}
				s := p.Stats()
				if sum := s.Succeeded + s.Failed + s.Cancelled + s.TimedOut + s.Terminated + int64(s.Queued+s.Running); sum != s.Submitted || s.Submitted != n {
					t.Fatalf("round %d: stats do not add up: %+v", round, s)
				}
			}
		})
	}
}

// TestImapBreakRace: consumers that break out of Imap while its chunks are
// answering, from several goroutines at once: every chunk still ends once
// (a second ending used to panic with "close of closed channel").
func TestImapBreakRace(t *testing.T) {
	for _, mode := range []string{"process", "in-process"} {
		t.Run(mode, func(t *testing.T) {
			opts := []procpool.Option{procpool.WithProcesses(2)}
			if mode == "in-process" {
				opts = append(opts, procpool.WithInProcess())
			}
			p := newPool(t, opts...)
			ctx := context.Background()
			var wg sync.WaitGroup
			for g := range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for round := range 300 {
						stopAt := (g*7 + round) % 20
						i := 0
						for _, err := range procpool.Imap(ctx, p, napUs, func(yield func(int) bool) {
							for x := 0; x < 1000 && yield(x%5); x++ {
							}
						}, procpool.Window(8)) {
							if err != nil {
								t.Error(err)
								return
							}
							if i == stopAt {
								break
							}
							i++
						}
					}
				}()
			}
			wg.Wait()
			s := p.Stats()
			if sum := s.Succeeded + s.Failed + s.Cancelled + s.TimedOut + s.Terminated + int64(s.Queued+s.Running); sum != s.Submitted {
				t.Fatalf("stats do not add up: %+v", s)
			}
		})
	}
}

func killPid(pid int) { _ = syscall.Kill(pid, syscall.SIGKILL) }

// TestChaosExactlyOnce: tasks that log each run, while another goroutine
// SIGKILLs a random worker every few milliseconds, with retries off. A task
// that succeeded ran exactly once; one that failed with its worker's exit
// ran at most once (it was killed after it began, perhaps before it
// logged); none ran twice.
func TestChaosExactlyOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos test in -short mode")
	}
	ctx := testCtx(t)
	p := newPool(t, procpool.WithProcesses(2), procpool.WithQueueSize(64))
	log := newRunLog(t)
	killed, stopKilling := killWorkers(p, 2, 5*time.Millisecond)
	var futs []*procpool.Future[int]
	for x := 0; x < 4000 || killed.Load() < 200; x++ {
		f, err := procpool.ApplyAsync(ctx, p, doubleOrCrash, crashArg{Log: string(log), X: x, Crash: -1, Fail: -1})
		if err != nil {
			t.Fatal(err)
		}
		futs = append(futs, f)
	}
	for _, f := range futs {
		<-f.Done()
	}
	stopKilling()
	counts := log.counts(t)
	crashed := 0
	for x, f := range futs {
		v, err := f.Get(ctx)
		var we *procpool.WorkerExitError
		switch {
		case err == nil && v == 2*x:
			if counts[x] != 1 {
				t.Fatalf("task %d succeeded and ran %d times", x, counts[x])
			}
		case errors.As(err, &we):
			crashed++
			if counts[x] > 1 {
				t.Fatalf("task %d failed with its worker's exit and ran %d times", x, counts[x])
			}
		default:
			t.Fatalf("task %d: %d, %v", x, v, err)
		}
	}
	t.Logf("%d tasks, %d kills, %d failed with their worker", len(futs), killed.Load(), crashed)
	if killed.Load() == 0 {
		t.Fatal("no kill happened")
	}
}
