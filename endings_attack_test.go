//go:build unix

package procpool_test

// Adversarial tests of the exact endings (journal, targeted stops, claims),
// written by a review that broke an earlier version of them. Each names the
// interleaving it forces.

import (
	"context"
	"errors"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/procpool/procpool"
)

// spinMs busy-loops for ms milliseconds without a blocking call, so that, with
// the worker's GOMAXPROCS=1, the worker's other goroutines (the 50 µs flush
// timer, the watchdog) run only when the runtime preempts it. If log is not
// empty it first records that it started.
type spinArg struct {
	Log string
	Ms  int
}

// byteLen returns the length of its argument: its run time is the time to
// receive and decode the argument.
var byteLen = procpool.Register("attackByteLen", func(_ context.Context, b []byte) (int, error) { return len(b), nil })

var spinMs = procpool.Register("attackSpinMs", func(_ context.Context, a spinArg) (int, error) {
	if a.Log != "" {
		logRun(a.Log, 1)
	}
	end := time.Now().Add(time.Duration(a.Ms) * time.Millisecond)
	n := 0
	for time.Now().Before(end) {
		n++
	}
	return a.Ms, nil
})

// warm proves the worker's tasks short, so that the pool pipelines the next
// ones (w.svc < 1 ms needs about 25 quick answers from its start of 1 s).
func warm(t *testing.T, p *procpool.Pool) {
	t.Helper()
	for i := range 40 {
		if _, err := procpool.Apply(context.Background(), p, square, i); err != nil {
			t.Fatal(err)
		}
	}
}

func baseRSS(t *testing.T) int64 {
	t.Helper()
	probe := newPool(t, procpool.WithProcesses(1), procpool.WithMaxWorkerMemory(1<<40))
	procpool.Apply(context.Background(), probe, leak, 1)
	var base int64
	waitFor(t, "a memory reading", func() bool {
		base = probe.Stats().Workers[0].RSS
		return base > 0
	})
	probe.Close()
	return base
}

// TestAttackTimeoutIgnoredOnMemoryRetiredWorker: a task leaks memory and
// answers; onFrame's checkMemory(w, nil) retires the worker and sets
// w.stopReason = ReasonMemory without a target. The task pipelined behind it
// then runs past its Timeout: expireLocked -> stopTaskLocked sees
// w.stopReason != "" and returns noop ("already being stopped"), so no Stop
// frame is sent, nothing escalates, and the task runs to its end and even
// succeeds. A task that never ends would leave its Future pending and Close
// hanging.
func TestAttackTimeoutIgnoredOnMemoryRetiredWorker(t *testing.T) {
	ctx := testCtx(t)
	base := baseRSS(t)
	limit := base + 200<<20
	for attempt := range 5 {
		p := newPool(t, procpool.WithProcesses(1), procpool.WithMaxWorkerMemory(limit))
		// Up to about 12 MiB under the limit in quick steps, then a quick
		// task that crosses it.
		for {
			if _, err := procpool.Apply(ctx, p, leak, 2); err != nil {
				t.Fatal(err)
			}
			if ws := p.Stats().Workers; len(ws) == 1 && ws[0].RSS > limit-12<<20 {
				break
			}
		}
		warm(t, p)
		leaky, err := procpool.ApplyAsync(ctx, p, leak, 16)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		slow, err := procpool.ApplyAsync(ctx, p, sleepMs, 4000, procpool.Timeout(300*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		if ws := p.Stats().Workers; len(ws) != 1 || ws[0].InFlight != 2 {
			t.Fatalf("the slow task was not pipelined behind the leaking one: %+v", ws)
		}
		if _, err := leaky.Get(ctx); err != nil {
			// The monitor caught the leaking task mid-task: set-up missed.
			t.Logf("attempt %d: leaking task: %v", attempt, err)
			p.Terminate()
			continue
		}
		v, err := slow.Get(ctx)
		took := time.Since(start)
		t.Logf("task with Timeout(300ms): %d, %v after %v; stats %+v", v, err, took, p.Stats())
		if !errors.Is(err, procpool.ErrTimeout) {
			t.Fatalf("a task with Timeout(300ms) on a worker retiring for memory ended with (%d, %v) after %v: its deadline was ignored", v, err, took)
		}
		return
	}
	t.Skip("set-up never worked")
}

// TestAttackCancelledTaskOutlivesClose: task C is pipelined behind P and is
// already running in the worker when it is cancelled, but the parent has
// not read P's answer yet (it waits in the journal for the flush timer,
// which a CPU-bound C delays up to a preemption slice). cancelTask takes the
// pipelined branch: claim, a Cancel frame the running worker never reads.
// When P's answer comes, C becomes the front with done set and startLocked
// arms stopIfRunning after the kill grace. P's ending drains the pool; Close
// calls stopWorkers, which sets w.stopReason = ReasonRecycled. The grace
// timer then calls stopTaskLocked, which returns noop because stopReason is
// set: C is never stopped and Close waits for it to finish (for ever if it
// hangs).
func TestAttackCancelledTaskOutlivesClose(t *testing.T) {
	const spin = 4000
	hits := 0
	for trial := 0; trial < 20 && hits == 0; trial++ {
		ctx := context.Background()
		p := newPool(t, procpool.WithProcesses(1), procpool.WithKillGrace(100*time.Millisecond))
		warm(t, p)
		log := newRunLog(t)
		pf, err := procpool.ApplyAsync(ctx, p, napUs, 1)
		if err != nil {
			t.Fatal(err)
		}
		cf, err := procpool.ApplyAsync(ctx, p, spinMs, spinArg{Log: string(log), Ms: spin})
		if err != nil {
			t.Fatal(err)
		}
		// Cancel as soon as C has started in the worker, before the parent
		// has P's answer.
		deadline := time.Now().Add(2 * time.Second)
		for len(log.counts(t)) == 0 && time.Now().Before(deadline) {
			runtime.Gosched()
		}
		ahead := !pf.Ready()
		cf.Cancel()
		if !ahead {
			p.Terminate()
			continue // P's answer was in first: cancelTask stopped C directly
		}
		hits++
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		// Had Close defeated the stop, C would have spun to its end and
		// its worker exited cleanly, as recycled.
		if s := p.Stats(); s.WorkerExits[procpool.ReasonCancelled] != 1 {
			t.Fatalf("trial %d: worker exits %v: the cancelled task C (spinning %d ms) was never stopped", trial, s.WorkerExits, spin)
		}
	}
	if hits == 0 {
		t.Skip("never cancelled C while P's answer was outstanding")
	}
}

func fdNames(t *testing.T) map[string]int {
	ents, _ := os.ReadDir("/proc/self/fd")
	m := map[string]int{}
	for _, e := range ents {
		l, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil {
			continue
		}
		if i := strings.IndexByte(l, '['); i > 0 {
			l = l[:i]
		}
		if strings.HasPrefix(l, "/memfd:") {
			l = strings.Fields(l)[0]
		}
		m[l]++
	}
	return m
}

// Control for TestAttackCancelledTaskOutlivesClose: the same interleaving
// without Close. The cancelled, running C is stopped after the kill grace
// (its worker exits with ReasonCancelled): only Close's stopWorkers defeats
// the stop.
func TestAttackCancelledTaskControl(t *testing.T) {
	ctx := context.Background()
	p := newPool(t, procpool.WithProcesses(1), procpool.WithKillGrace(100*time.Millisecond))
	warm(t, p)
	log := newRunLog(t)
	pf, _ := procpool.ApplyAsync(ctx, p, napUs, 1)
	cf, _ := procpool.ApplyAsync(ctx, p, spinMs, spinArg{Log: string(log), Ms: 4000})
	for len(log.counts(t)) == 0 {
		runtime.Gosched()
	}
	ahead := !pf.Ready()
	cf.Cancel()
	time.Sleep(time.Second)
	s := p.Stats()
	t.Logf("P answer outstanding at cancel: %v; exits %v", ahead, s.WorkerExits)
	if s.WorkerExits[procpool.ReasonCancelled] != 1 {
		t.Fatalf("the cancelled task was not stopped: %+v", s)
	}
}

// TestAttackBigArgumentRequeuedForever: a task whose argument alone takes
// the worker over its memory limit while the worker reads the frame (150 MB
// through the pipe: larger than the shared segment). The parent counts the
// task as running from the moment it is assigned (startLocked); the monitor
// samples it after 50 ms and stops it (ReasonMemory). The worker has not
// begun it (it is still in r.Next()), so serve.Server.Stop only records stopFor;
// the kill grace passes before the frame is read, escalate SIGKILLs the
// group, and workerExited finds runningID == 0: "not started", requeued
// without an attempt or a retry. The next worker does the same, for ever:
// the Future never ends and a worker is started and killed every ~0.4 s.
// (Before 80fd46b the task was blamed with a *WorkerExitError.)
func TestAttackBigArgumentRequeuedForever(t *testing.T) {
	ctx := testCtx(t)
	base := baseRSS(t)
	p := newPool(t, procpool.WithProcesses(1), procpool.WithMaxWorkerMemory(base+60<<20), procpool.WithMaxFrame(256<<20))
	f, err := procpool.ApplyAsync(ctx, p, digest, make([]byte, 150<<20))
	if err != nil {
		t.Fatal(err)
	}
	// The defect's signature is a worker started and killed again and
	// again while the task stays pending; the bound only ends a hang (a
	// loaded machine reads 150 MB through a pipe slowly).
	bound := time.Now().Add(2 * time.Minute)
	for !f.Ready() && p.Stats().WorkersStarted <= 3 && time.Now().Before(bound) {
		time.Sleep(10 * time.Millisecond)
	}
	s := p.Stats()
	t.Logf("stats: started %d, exits %v, retried %d", s.WorkersStarted, s.WorkerExits, s.Retried)
	if !f.Ready() {
		t.Fatalf("the task is still pending; %d workers started, exits %v, retried %d (no retries configured)", s.WorkersStarted, s.WorkerExits, s.Retried)
	}
	_, err = f.Get(ctx)
	t.Logf("task: %v", err)
}

// TestAttackBigArgumentTimeoutRequeuedForever: the same loop without a
// memory limit: the task's Timeout counts from its assignment, and the
// kill grace passes while the worker still reads the frame: escalate kills
// the worker, the task is "not started" and requeued, for ever.
func TestAttackBigArgumentTimeoutRequeuedForever(t *testing.T) {
	ctx := testCtx(t)
	p := newPool(t, procpool.WithProcesses(1), procpool.WithMaxFrame(256<<20), procpool.WithKillGrace(20*time.Millisecond))
	big := make([]byte, 150<<20)
	start := time.Now()
	if _, err := procpool.Apply(ctx, p, byteLen, big); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	t.Logf("one 150 MB task without a timeout: %v", took)
	f, err := procpool.ApplyAsync(ctx, p, byteLen, big, procpool.Timeout(took/8))
	if err != nil {
		t.Fatal(err)
	}
	// As above: the defect's signature is workers started again and again
	// while the task stays pending; the bound only ends a hang.
	bound := time.Now().Add(2 * time.Minute)
	for !f.Ready() && p.Stats().WorkersStarted <= 3 && time.Now().Before(bound) {
		time.Sleep(10 * time.Millisecond)
	}
	s := p.Stats()
	t.Logf("task with Timeout(%v); stats: started %d, exits %v, retried %d", took/8, s.WorkersStarted, s.WorkerExits, s.Retried)
	if !f.Ready() {
		t.Fatalf("the task is still pending; %d workers started, exits %v", s.WorkersStarted, s.WorkerExits)
	}
}

// TestAttackMemoryStopOfUnstartedTaskIsCancelled: as above, but with a kill
// grace long enough for the worker to finish reading the frame. The worker
// then finds stopFor == the task in begin and skips it; onFrame ends a
// Skipped task that is not t.expired with context.Canceled (counted as
// Cancelled): a task nobody cancelled, which never ran, fails as cancelled,
// and the worker, still over its limit, lives on.
func TestAttackMemoryStopOfUnstartedTaskIsCancelled(t *testing.T) {
	ctx := testCtx(t)
	base := baseRSS(t)
	p := newPool(t, procpool.WithProcesses(1), procpool.WithMaxWorkerMemory(base+60<<20),
		procpool.WithMaxFrame(256<<20), procpool.WithKillGrace(30*time.Second))
	_, err := procpool.Apply(ctx, p, byteLen, make([]byte, 150<<20))
	s := p.Stats()
	t.Logf("task: %v; stats %+v", err, s)
	if errors.Is(err, context.Canceled) {
		t.Fatalf("a task nobody cancelled ended with %v (cancelled %d)", err, s.Cancelled)
	}
}

// TestAttackVictimRunsTwice: A has ended in the worker and B (CPU-bound)
// has begun, but A's answer still waits in the journal for the flush timer,
// which B starves (GOMAXPROCS=1: up to a preemption slice). A is cancelled:
// the parent still sees A as the front, so stopTaskLocked sends Stop(A);
// the watchdog (starved too) does not answer within the grace, escalate
// SIGKILLs the group, and workerExited finds B running: the "victim" goes
// back to the queue and runs again, although it had started and the task
// has no retries (invariant 2: "a task that started runs again only when
// retries allow it").
func TestAttackVictimRunsTwice(t *testing.T) {
	for trial := range 20 {
		ctx := context.Background()
		p := newPool(t, procpool.WithProcesses(1), procpool.WithKillGrace(2*time.Millisecond))
		warm(t, p)
		logB := newRunLog(t)
		af, _ := procpool.ApplyAsync(ctx, p, napUs, 1)
		bf, _ := procpool.ApplyAsync(ctx, p, spinMs, spinArg{Log: string(logB), Ms: 300})
		for len(logB.counts(t)) == 0 {
			runtime.Gosched()
		}
		if af.Ready() {
			p.Terminate()
			continue
		}
		af.Cancel()
		v, err := bf.Get(ctx)
		runs := logB.counts(t)[1]
		s := p.Stats()
		t.Logf("trial %d: B: %d, %v; B ran %d times; exits %v, retried %d", trial, v, err, runs, s.WorkerExits, s.Retried)
		if runs > 1 {
			t.Fatalf("B, with no retries, ran %d times: a kill aimed at A hit it and it was requeued", runs)
		}
		p.Terminate()
	}
}

// TestAttackStopAfterAnswerKillsWorker: a stop that reaches serve.Server.Stop
// after run() has recorded the task's answer (out.add) but before end()
// clears s.running still finds the task "running" and dies. The parent
// gets the answer (the task succeeds), onFrame clears the stop (its target
// answered, not stopKilled), and workerExited then records a worker that
// nothing crashed as ReasonCrashed (exit status 143): a needless restart and
// a false crash in Stats and the log.
func TestAttackStopAfterAnswerKillsWorker(t *testing.T) {
	for _, mode := range []string{"process", "in-process"} {
		t.Run(mode, func(t *testing.T) {
			opts := []procpool.Option{procpool.WithProcesses(2)}
			if mode == "in-process" {
				opts = append(opts, procpool.WithInProcess())
			}
			p := newPool(t, opts...)
			ctx := context.Background()
			var futs []*procpool.Future[int]
			for i := range 3000 {
				f, err := procpool.ApplyAsync(ctx, p, napUs, 200+i%200, procpool.Timeout(300*time.Microsecond))
				if err != nil {
					t.Fatal(err)
				}
				futs = append(futs, f)
			}
			for _, f := range futs {
				f.Get(ctx)
			}
			s := p.Stats()
			t.Logf("%+v", s)
			if n := s.WorkerExits[procpool.ReasonCrashed] + s.WorkerExits[procpool.ReasonTerminatedOutside]; n > 0 {
				t.Fatalf("%d workers recorded as crashed or stopped from outside; nothing crashed (exits %v)", n, s.WorkerExits)
			}
		})
	}
}

// TestAttackFailedStartLeaksJournalAndControl: runWorker's failed-handshake
// path (and the !inService path) kill, close the task pipe, reap and unmap,
// but never call closeFiles: each failed start leaves the worker's journal
// memfd and the control pipe's write end open until a GC finalizer runs.
func TestAttackFailedStartLeaksJournalAndControl(t *testing.T) {
	debugGC := runtime.GC
	debugGC()
	before := fdNames(t)
	for range 10 {
		if p, err := procpool.New(procpool.WithProcesses(2), procpool.WithInitializer(failInit, 0)); err == nil {
			p.Terminate()
			t.Fatal("New succeeded with a failing initializer")
		}
	}
	after := fdNames(t)
	t.Logf("before %v\nafter  %v", before, after)
	if d := after["/memfd:procpool-journal"] - before["/memfd:procpool-journal"]; d > 0 {
		t.Fatalf("%d journal memfds still open after 20 failed starts (and %d more pipes)", d, after["pipe:"]-before["pipe:"])
	}
}
