//go:build unix

package procpool_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/procpool/procpool"
	"github.com/procpool/procpool/internal/wire"
)

// waitFor polls cond until it holds, failing the test after a generous
// deadline (only to catch hangs).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// alive reports whether process pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i < 0 || !strings.HasPrefix(string(b[i+1:]), " Z")
}

// killWorkers SIGKILLs a random worker of p every interval, whenever the
// pool has all its n workers in service, until stop is called; killed
// counts the kills.
func killWorkers(p *procpool.Pool, n int, every time.Duration) (killed *atomic.Int64, stop func()) {
	killed = new(atomic.Int64)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			case <-time.After(every):
			}
			ws := p.Stats().Workers
			if len(ws) < n {
				continue // let the pool recover first
			}
			if syscall.Kill(ws[rand.IntN(len(ws))].Pid, syscall.SIGKILL) == nil {
				killed.Add(1)
			}
		}
	}()
	return killed, func() { close(done); wg.Wait() }
}

// chaos runs at least n tasks while another goroutine SIGKILLs a random
// worker every 10 ms once the pool has all its workers again, until it has
// made minKills kills, and checks that every task ends exactly once. The queue is
// bounded, so the task stream lasts as long as the kills do.
func chaos(t *testing.T, n int, minKills int64, opts ...procpool.Option) (ok, crashed int, kills int64) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	p := newPool(t, append([]procpool.Option{procpool.WithProcesses(2), procpool.WithQueueSize(64)}, opts...)...)
	var ends sync.Map // task index -> number of callbacks
	var futs []*procpool.Future[int]

	killed, stopKilling := killWorkers(p, 2, 10*time.Millisecond)

	for i := 0; i < n || killed.Load() < minKills; i++ {
		f, err := procpool.ApplyAsync(ctx, p, napUs, 200,
			procpool.Callback(func(int) { v, _ := ends.LoadOrStore(i, new(atomic.Int32)); v.(*atomic.Int32).Add(1) }),
			procpool.ErrorCallback(func(error) { v, _ := ends.LoadOrStore(i, new(atomic.Int32)); v.(*atomic.Int32).Add(1) }))
		if err != nil {
			t.Fatalf("submit %d: %v", i, err)
		}
		futs = append(futs, f)
	}
	stopKilling()
	// The pool refills to its 2 live workers.
	waitFor(t, "2 live workers after the chaos", func() bool {
		ws := p.Stats().Workers
		return len(ws) == 2 && alive(ws[0].Pid) && alive(ws[1].Pid)
	})
	for i, f := range futs {
		_, err := f.Get(ctx)
		var we *procpool.WorkerExitError
		switch {
		case err == nil:
			ok++
		case errors.As(err, &we):
			crashed++
		default:
			t.Fatalf("task %d: unexpected error %v", i, err)
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	for i := range futs {
		v, found := ends.Load(i)
		if !found || v.(*atomic.Int32).Load() != 1 {
			t.Fatalf("task %d ended %v times, want exactly once", i, v)
		}
	}
	if ok+crashed != len(futs) {
		t.Fatalf("%d + %d tasks ended, want %d", ok, crashed, len(futs))
	}
	if s := p.Stats(); s.Submitted != int64(len(futs)) || s.Succeeded != int64(ok) {
		t.Fatalf("stats: %d submitted, %d succeeded; counted %d and %d", s.Submitted, s.Succeeded, len(futs), ok)
	}
	return ok, crashed, killed.Load()
}

func TestChaosWithoutRetries(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos test in -short mode")
	}
	ok, crashed, kills := chaos(t, 20000, 300)
	t.Logf("%d ok, %d crashed, %d kills", ok, crashed, kills)
	if crashed == 0 {
		t.Fatalf("%d kills and no task saw a crash: the chaos did not happen", kills)
	}
}

func TestChaosWithRetries(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos test in -short mode")
	}
	ok, crashed, kills := chaos(t, 20000, 300, procpool.WithRetries(5))
	t.Logf("%d ok, %d crashed, %d kills", ok, crashed, kills)
	if crashed != 0 {
		t.Fatalf("with retries: %d ok, %d crashed, want all ok", ok, crashed)
	}
}

func TestChaosKeepsWorkers(t *testing.T) {
	ctx := testCtx(t)
	p := newPool(t, procpool.WithProcesses(2))
	for range 20 {
		ws := p.Stats().Workers
		if len(ws) > 0 {
			syscall.Kill(ws[0].Pid, syscall.SIGKILL)
		}
		time.Sleep(time.Millisecond)
	}
	// Every task still runs, and the pool refills to 2 live workers.
	if _, err := procpool.Map(ctx, p, square, make([]int, 100), procpool.ChunkSize(1), procpool.Retries(50)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "2 live workers", func() bool {
		ws := p.Stats().Workers
		return len(ws) == 2 && alive(ws[0].Pid) && alive(ws[1].Pid)
	})
}

func TestHangingTasksTimeOut(t *testing.T) {
	ctx := testCtx(t)
	p := newPool(t, procpool.WithProcesses(2), procpool.WithTaskTimeout(200*time.Millisecond))
	const n = 40
	futs := make([]*procpool.Future[int], n)
	for i := range n {
		ms := 1
		if i%10 == 0 {
			ms = 3_600_000 // an hour
		}
		f, err := procpool.ApplyAsync(ctx, p, sleepMs, ms)
		if err != nil {
			t.Fatal(err)
		}
		futs[i] = f
	}
	for i, f := range futs {
		v, err := f.Get(ctx)
		if i%10 == 0 {
			if !errors.Is(err, procpool.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("hanging task %d: %v, want ErrTimeout and DeadlineExceeded", i, err)
			}
			var we *procpool.WorkerExitError
			if !errors.As(err, &we) || we.Reason != procpool.ReasonTimeout {
				t.Fatalf("hanging task %d: %v, want a *WorkerExitError with reason timeout", i, err)
			}
			continue
		}
		if err != nil || v != 1 {
			t.Fatalf("task %d: %d, %v", i, v, err)
		}
	}
	if s := p.Stats(); s.TimedOut != 4 || s.WorkerExits[procpool.ReasonTimeout] != 4 {
		t.Fatalf("stats: %d timed out, exits %v; want 4 and 4", s.TimedOut, s.WorkerExits)
	}
}

func TestContextDeadlineStopsRunningTask(t *testing.T) {
	p := newPool(t, procpool.WithProcesses(1))
	before, _ := procpool.Apply(testCtx(t), p, pid, 0)
	ctx, cancel := context.WithTimeout(testCtx(t), 200*time.Millisecond)
	defer cancel()
	_, err := procpool.Apply(ctx, p, sleepMs, 3_600_000)
	if !errors.Is(err, procpool.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Apply past its context deadline: %v", err)
	}
	after, err := procpool.Apply(testCtx(t), p, pid, 0)
	if err != nil || after == before || alive(before) {
		t.Fatalf("worker after a deadline: %d (before %d, alive %v), %v", after, before, alive(before), err)
	}
}

func TestCancel(t *testing.T) {
	ctx := testCtx(t)
	p := newPool(t, procpool.WithProcesses(1), procpool.WithPipelineDepth(1))
	before, _ := procpool.Apply(ctx, p, pid, 0)
	running, err := procpool.ApplyAsync(ctx, p, sleepMs, 3_600_000)
	if err != nil {
		t.Fatal(err)
	}
	queued, err := procpool.ApplyAsync(ctx, p, square, 3)
	if err != nil {
		t.Fatal(err)
	}
	waitRunning(t, p)
	queued.Cancel()
	if _, err := queued.Get(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled queued task: %v", err)
	}
	if alive(before) != true {
		t.Fatal("cancelling a queued task stopped the worker")
	}
	running.Cancel()
	if _, err := running.Get(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled running task: %v", err)
	}
	waitFor(t, "the cancelled task's worker to exit", func() bool { return !alive(before) })
	after, err := procpool.Apply(ctx, p, pid, 0)
	if err != nil || after == before {
		t.Fatalf("after cancel: pid %d (before %d), %v", after, before, err)
	}
	if s := p.Stats(); s.Cancelled != 2 || s.WorkerExits[procpool.ReasonCancelled] != 1 {
		t.Fatalf("stats: %d cancelled, exits %v", s.Cancelled, s.WorkerExits)
	}

	// A cancelled context removes a queued task the same way.
	cctx, cancel := context.WithCancel(ctx)
	blocker, _ := procpool.ApplyAsync(ctx, p, sleepMs, 300)
	f, err := procpool.ApplyAsync(cctx, p, square, 4)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := f.Get(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("task whose context was cancelled: %v", err)
	}
	if v, err := blocker.Get(ctx); err != nil || v != 300 {
		t.Fatalf("unrelated task: %d, %v", v, err)
	}
}

func TestCancelPipelinedTaskIsSkipped(t *testing.T) {
	ctx := testCtx(t)
	dir := t.TempDir()
	p := newPool(t, procpool.WithProcesses(1))
	// Prove tasks short so the pool pipelines them, then queue one behind
	// a slower task and cancel it before it starts.
	for i := range 20 {
		procpool.Apply(ctx, p, square, i)
	}
	slow, _ := procpool.ApplyAsync(ctx, p, sleepMs, 300)
	path := filepath.Join(dir, "runs")
	behind, err := procpool.ApplyAsync(ctx, p, countRun, runArg{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	behind.Cancel()
	if _, err := behind.Get(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled task: %v", err)
	}
	if _, err := slow.Get(ctx); err != nil {
		t.Fatalf("the task ahead of a cancelled one: %v", err)
	}
	if v, err := procpool.Apply(ctx, p, square, 9); err != nil || v != 81 {
		t.Fatalf("after a skip: %d, %v", v, err)
	}
	if _, err := os.Stat(path); err == nil {
		t.Fatal("a task cancelled before it started ran anyway")
	}
}

func TestRetries(t *testing.T) {
	ctx := testCtx(t)
	dir := t.TempDir()
	p := newPool(t, procpool.WithProcesses(1), procpool.WithRetries(2))
	runs := func(path string) int {
		b, _ := os.ReadFile(path)
		return strings.Count(string(b), "run\n")
	}
	exits := filepath.Join(dir, "exits")
	_, err := procpool.Apply(ctx, p, countRun, runArg{Path: exits, Then: "exit"})
	var we *procpool.WorkerExitError
	if !errors.As(err, &we) || we.Attempts != 3 || we.ExitCode != 5 || !strings.Contains(err.Error(), "after 3 attempts") {
		t.Fatalf("a task that always kills its worker, 2 retries: %v", err)
	}
	if n := runs(exits); n != 3 {
		t.Fatalf("it ran %d times, want 3", n)
	}
	fails := filepath.Join(dir, "fails")
	_, err = procpool.Apply(ctx, p, countRun, runArg{Path: fails, Then: "fail"})
	var re *procpool.RemoteError
	if !errors.As(err, &re) {
		t.Fatalf("a failing task: %v", err)
	}
	if n := runs(fails); n != 1 {
		t.Fatalf("a task that returned an error ran %d times, want 1 (no retry)", n)
	}
	// The per-call option overrides the pool's.
	once := filepath.Join(dir, "once")
	procpool.Apply(ctx, p, countRun, runArg{Path: once, Then: "exit"}, procpool.Retries(0))
	if n := runs(once); n != 1 {
		t.Fatalf("with Retries(0) it ran %d times", n)
	}
	if s := p.Stats(); s.Retried != 2 {
		t.Fatalf("stats: %d retries, want 2", s.Retried)
	}
}

func TestMemoryLimitStopsTask(t *testing.T) {
	ctx := testCtx(t)
	p := newPool(t, procpool.WithProcesses(1), procpool.WithMaxWorkerMemory(150<<20))
	_, err := procpool.Apply(ctx, p, allocMB, [2]int{400, 30_000})
	var we *procpool.WorkerExitError
	if !errors.As(err, &we) || we.Reason != procpool.ReasonMemory || !strings.Contains(err.Error(), "MiB") {
		t.Fatalf("task over the memory limit: %v", err)
	}
	if v, err := procpool.Apply(ctx, p, square, 7); err != nil || v != 49 {
		t.Fatalf("after a memory kill: %d, %v", v, err)
	}
	if s := p.Stats(); s.WorkerExits[procpool.ReasonMemory] != 1 {
		t.Fatalf("exits: %v", s.WorkerExits)
	}
}

func TestMemoryLimitRetiresBetweenTasks(t *testing.T) {
	ctx := testCtx(t)
	// A fresh worker's resident memory differs a lot with and without
	// -race, and by tens of MiB between two workers under -race on a
	// loaded machine (CI saw a worker at the limit after 10 MiB of leaks
	// with 40 MiB of room): measure it, then set the limit 100 MiB above.
	probe := newPool(t, procpool.WithProcesses(1), procpool.WithMaxWorkerMemory(1<<40))
	procpool.Apply(ctx, probe, leak, 1)
	var base int64
	waitFor(t, "a memory reading", func() bool { // it is taken just after the task ends
		base = probe.Stats().Workers[0].RSS
		return base > 0
	})
	probe.Close()

	p := newPool(t, procpool.WithProcesses(1), procpool.WithMaxWorkerMemory(base+100<<20))
	first, _ := procpool.Apply(ctx, p, pid, 0)
	// Each task leaks 10 MiB and returns at once: every task succeeds, and
	// the worker is replaced after the task that took it over the limit.
	// The one exception: the monitor may sample the worker while the
	// task that crosses the limit still runs (a loaded machine can
	// deschedule it between its allocation and its return); that task is
	// then stopped with ReasonMemory, as TestMemoryLimitStopsTask wants.
	// Either way there is exactly one memory exit, and no other failure.
	replaced, stopped := false, 0
	for i := range 100 {
		if _, err := procpool.Apply(ctx, p, leak, 10); err != nil {
			var we *procpool.WorkerExitError
			if !errors.As(err, &we) || we.Reason != procpool.ReasonMemory || stopped > 0 {
				t.Fatalf("leaking task %d: %v", i, err)
			}
			t.Logf("leaking task %d crossed the limit while it ran: %v", i, err)
			stopped++
		}
		if now, _ := procpool.Apply(ctx, p, pid, 0); now != first {
			replaced = true
			break
		}
	}
	if err := p.Close(); err != nil { // every outcome counted (see TestCrashFailsOnlyTheRunningTask)
		t.Fatal(err)
	}
	if s := p.Stats(); !replaced || s.WorkerExits[procpool.ReasonMemory] != 1 || s.Failed != int64(stopped) {
		t.Fatalf("replaced %v; stats: exits %v, %d failed (%d stopped over the limit); want one memory exit and no other failure", replaced, s.WorkerExits, s.Failed, stopped)
	}
}

func TestCrashLoopBreaksPool(t *testing.T) {
	ctx := testCtx(t)
	marker := filepath.Join(t.TempDir(), "fail-now")
	p := newPool(t, procpool.WithProcesses(1), procpool.WithInitializer(initUnlessFile, marker),
		procpool.WithRestartLimit(3, time.Minute))
	if v, err := procpool.Apply(ctx, p, square, 2); err != nil || v != 4 {
		t.Fatalf("before the crash loop: %d, %v", v, err)
	}
	os.WriteFile(marker, nil, 0o600)
	_, err := procpool.Apply(ctx, p, exitWith, 1) // the worker dies; its replacements cannot start
	var we *procpool.WorkerExitError
	if !errors.As(err, &we) {
		t.Fatalf("task that exits: %v", err)
	}
	_, err = procpool.Apply(ctx, p, square, 3)
	if !errors.Is(err, procpool.ErrPoolBroken) || !errors.Is(err, procpool.ErrHandshake) {
		t.Fatalf("task on a crash-looping pool: %v, want ErrPoolBroken wrapping the start failure", err)
	}
	if _, err := procpool.ApplyAsync(ctx, p, square, 3); !errors.Is(err, procpool.ErrPoolBroken) {
		t.Fatalf("submit to a broken pool: %v", err)
	}
	s := p.Stats()
	if s.WorkersStarted > 1+4 {
		t.Fatalf("%d workers started: the restart budget of 3 was not kept", s.WorkersStarted)
	}
	if n := s.WorkerExits[procpool.ReasonStart]; n < 4 {
		t.Fatalf("%d failed starts counted, want 4 (3 within the budget, then the one that broke it)", n)
	}
}

func TestProgramWithoutMain(t *testing.T) {
	noOrphans(t)
	_, err := procpool.New(procpool.WithProcesses(2), procpool.WithCommand(os.Args[0]),
		procpool.WithEnv(envMode+"=exit-without-main"), procpool.WithStdout(new(strings.Builder)))
	if !errors.Is(err, procpool.ErrHandshake) || !strings.Contains(err.Error(), "procpool.Main()") {
		t.Fatalf("a program that exits without Main: %v", err)
	}
	_, err = procpool.New(procpool.WithProcesses(1), procpool.WithCommand(os.Args[0]),
		procpool.WithEnv(envMode+"=hang-without-main"), procpool.WithStartTimeout(500*time.Millisecond))
	if !errors.Is(err, procpool.ErrHandshake) || !strings.Contains(err.Error(), "procpool.Main()") {
		t.Fatalf("a program that never answers: %v", err)
	}
}

func TestGarbageFromWorker(t *testing.T) {
	for _, mode := range []string{"garbage", "close-early", "wrong-id", "huge-frame"} {
		t.Run(mode, func(t *testing.T) {
			ctx := testCtx(t)
			p := newPool(t, procpool.WithProcesses(1), procpool.WithCommand(os.Args[0]),
				procpool.WithEnv(envMode+"="+mode), procpool.WithKillGrace(100*time.Millisecond))
			for i := range 3 {
				_, err := procpool.Apply(ctx, p, square, i)
				var we *procpool.WorkerExitError
				if !errors.As(err, &we) {
					t.Fatalf("task %d on a %s worker: %v, want *WorkerExitError", i, mode, err)
				}
				if mode != "close-early" && !errors.Is(err, procpool.ErrProtocol) {
					t.Fatalf("task %d on a %s worker: %v, want ErrProtocol", i, mode, err)
				}
				if mode == "huge-frame" && !errors.Is(err, wire.ErrFrameTooLarge) {
					t.Fatalf("huge frame: %v", err)
				}
			}
			if n := p.Stats().WorkersStarted; n < 3 {
				t.Fatalf("%d workers started for 3 broken tasks: not replaced", n)
			}
		})
	}
}

func TestQueueBackpressure(t *testing.T) {
	ctx := testCtx(t)
	p := newPool(t, procpool.WithProcesses(1), procpool.WithPipelineDepth(1), procpool.WithQueueSize(2))
	release, err := procpool.ApplyAsync(ctx, p, sleepMs, 300)
	if err != nil {
		t.Fatal(err)
	}
	waitRunning(t, p)
	var queued []*procpool.Future[int]
	for i := range 2 {
		f, err := procpool.TryApplyAsync(ctx, p, square, i)
		if err != nil {
			t.Fatalf("queue slot %d: %v", i, err)
		}
		queued = append(queued, f)
	}
	if _, err := procpool.TryApplyAsync(ctx, p, square, 9); !errors.Is(err, procpool.ErrQueueFull) {
		t.Fatalf("TryApplyAsync on a full queue: %v, want ErrQueueFull", err)
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := procpool.ApplyAsync(short, p, square, 9); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("ApplyAsync on a full queue past its context: %v", err)
	}
	// A blocking submit gets in once the queue moves.
	f, err := procpool.ApplyAsync(ctx, p, square, 5)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := f.Get(ctx); err != nil || v != 25 {
		t.Fatalf("blocked submit: %d, %v", v, err)
	}
	for _, q := range append(queued, release) {
		if _, err := q.Get(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if s := p.Stats(); s.Submitted != 4 {
		t.Fatalf("submitted %d, want 4 (refused submits do not count)", s.Submitted)
	}
}

func TestOrphansAfterParentKilled(t *testing.T) {
	for _, deaf := range []string{"", "ignore", "reset"} {
		name := "plain"
		if deaf != "" {
			name = "tasks that " + deaf + " SIGTERM"
		}
		t.Run(name, func(t *testing.T) { orphansAfterParentKilled(t, deaf) })
	}
}

// orphansAfterParentKilled SIGKILLs a parent whose pool's tasks started
// grandchildren (some of which left the workers' groups and sessions) and
// checks that every one of them dies. With deaf, tasks have also changed
// SIGTERM's disposition and block: the workers' death with their parent
// must not depend on it.
func orphansAfterParentKilled(t *testing.T, deaf string) {
	noOrphans(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envMode+"=orphan-parent", envDeaf+"="+deaf)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // for the cleanup's group kill
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	defer func() {
		if !killed { // a failed check below: do not leave the helper's pool behind
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			cmd.Process.Kill()
			cmd.Wait()
		}
	}()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "PIDS ") {
		t.Fatalf("helper parent said %q, %v", line, err)
	}
	var pids []int
	for _, f := range strings.Fields(line)[1:] {
		n, _ := strconv.Atoi(f)
		pids = append(pids, n)
	}
	if want := map[bool]int{false: 6, true: 8}[deaf != ""]; len(pids) != want {
		t.Fatalf("helper parent reported %v, want 2 workers, 2 grandchildren, 2 detached ones and, with deaf tasks, 2 more", pids)
	}
	t.Cleanup(func() { // after a failure: leave nothing behind
		for _, pid := range pids {
			if alive(pid) {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	for _, pid := range pids {
		if !alive(pid) {
			t.Fatalf("process %d of the helper's pool is not alive before the kill", pid)
		}
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	killed = true
	deadline := time.Now().Add(30 * time.Second)
	for {
		var left []string
		for _, pid := range pids {
			if alive(pid) {
				b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
				left = append(left, string(b))
			}
		}
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("processes outlived their killed parent:\n%s", strings.Join(left, "\n"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestTerminateKillsGrandchildren(t *testing.T) {
	ctx := testCtx(t)
	p := newPool(t, procpool.WithProcesses(1))
	g, err := procpool.Apply(ctx, p, spawnSleeper, 0)
	if err != nil || !alive(g) {
		t.Fatalf("grandchild %d: %v", g, err)
	}
	p.Terminate()
	waitFor(t, "the grandchild to die", func() bool { return !alive(g) })
}

func TestWorkersIgnoreSIGINT(t *testing.T) {
	ctx := testCtx(t)
	p := newPool(t, procpool.WithProcesses(1))
	w, _ := procpool.Apply(ctx, p, pid, 0)
	syscall.Kill(w, syscall.SIGINT)
	time.Sleep(50 * time.Millisecond)
	if v, err := procpool.Apply(ctx, p, pid, 0); err != nil || v != w {
		t.Fatalf("after SIGINT: worker %d (was %d), %v", v, w, err)
	}
}

func TestRlimit(t *testing.T) {
	ctx := testCtx(t)
	p := newPool(t, procpool.WithProcesses(1), procpool.WithRlimit(syscall.RLIMIT_NOFILE, 100, 100),
		procpool.WithRlimit(syscall.RLIMIT_CPU, 1, 2))
	if n, err := procpool.Apply(ctx, p, nofile, 0); err != nil || n != 100 {
		t.Fatalf("worker's open-file limit: %d, %v; want 100", n, err)
	}
	// Two CPU seconds of spinning passes the limit of one.
	_, err := procpool.Apply(ctx, p, spin, 5000)
	var we *procpool.WorkerExitError
	if !errors.As(err, &we) || we.Signal == 0 {
		t.Fatalf("task over the CPU limit: %v", err)
	}
}

func TestIdleTimeout(t *testing.T) {
	ctx := testCtx(t)
	p := newPool(t, procpool.WithProcesses(2), procpool.WithIdleTimeout(50*time.Millisecond, 1))
	waitFor(t, "idle workers to be retired down to 1", func() bool { return len(p.Stats().Workers) == 1 })
	// Work brings workers back.
	if _, err := procpool.Map(ctx, p, sleepMs, []int{50, 50, 50, 50}, procpool.ChunkSize(1)); err != nil {
		t.Fatal(err)
	}
	if s := p.Stats(); s.WorkersStarted < 3 || s.WorkerExits[procpool.ReasonRecycled] < 1 {
		t.Fatalf("stats: %d started, exits %v", s.WorkersStarted, s.WorkerExits)
	}
}

func TestLogger(t *testing.T) {
	ctx := testCtx(t)
	var buf syncBuffer
	p := newPool(t, procpool.WithProcesses(1), procpool.WithLogger(slog.New(slog.NewTextHandler(&buf, nil))))
	procpool.Apply(ctx, p, exitWith, 2)
	p.Close()
	log := buf.String()
	for _, want := range []string{"worker started", "worker exited", "reason=crashed", "exit status 2"} {
		if !strings.Contains(log, want) {
			t.Fatalf("log lacks %q:\n%s", want, log)
		}
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestDeadlineWhilePipelined(t *testing.T) {
	for _, inProcess := range []bool{false, true} {
		t.Run(map[bool]string{false: "processes", true: "in-process"}[inProcess], func(t *testing.T) {
			ctx := testCtx(t)
			opts := []procpool.Option{procpool.WithProcesses(1)}
			if inProcess {
				opts = append(opts, procpool.WithInProcess())
			}
			p := newPool(t, opts...)
			for i := range 50 { // short tasks: the worker pipelines
				procpool.Apply(ctx, p, square, i)
			}
			ahead, _ := procpool.ApplyAsync(ctx, p, sleepMs, 300)
			dctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
			defer cancel()
			behind, err := procpool.ApplyAsync(dctx, p, sleepMs, 3_600_000)
			if err != nil {
				t.Fatal(err)
			}
			// Without the deadline taking effect in the pipe, this waits an
			// hour (and the test's own deadline fails it).
			if _, err := behind.Get(ctx); !errors.Is(err, procpool.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("task whose deadline passed while it waited in the pipe: %v", err)
			}
			if v, err := ahead.Get(ctx); err != nil || v != 300 {
				t.Fatalf("the task ahead: %d, %v", v, err)
			}
			if v, err := procpool.Apply(ctx, p, square, 4); err != nil || v != 16 {
				t.Fatalf("after: %d, %v", v, err)
			}
		})
	}
}

func TestBrokenPoolFailsRequeuedTasks(t *testing.T) {
	ctx := testCtx(t)
	marker := filepath.Join(t.TempDir(), "fail-now")
	p := newPool(t, procpool.WithProcesses(2), procpool.WithInitializer(initUnlessFile, marker),
		procpool.WithRestartLimit(0, time.Minute))
	os.WriteFile(marker, nil, 0o600)
	// One task will die after the pool has broken (its replacement cannot
	// start), with a retry it can no longer use.
	slow, err := procpool.ApplyAsync(ctx, p, exitAfterMs, 300, procpool.Retries(1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := procpool.Apply(ctx, p, exitWith, 1); err == nil {
		t.Fatal("a task that exits succeeded")
	}
	_, err = slow.Get(ctx) // pending for ever if it went back to a queue no worker serves
	var we *procpool.WorkerExitError
	if !errors.As(err, &we) && !errors.Is(err, procpool.ErrPoolBroken) {
		t.Fatalf("task whose worker died after the pool broke: %v", err)
	}
	if _, err := procpool.ApplyAsync(ctx, p, square, 1); !errors.Is(err, procpool.ErrPoolBroken) {
		t.Fatalf("submit to a broken pool: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
}

// Large arguments in shared memory survive crashes: tasks behind a killed
// worker are sent again (to another worker's segment) and arrive intact.
func TestLargeArgumentsUnderKills(t *testing.T) {
	ctx := testCtx(t)
	p := newPool(t, procpool.WithProcesses(2), procpool.WithRetries(10), procpool.WithSharedMemory(2<<20))
	_, stopKilling := killWorkers(p, 2, 15*time.Millisecond)
	var bufs [][]byte
	var futs []*procpool.Future[[32]byte]
	for i := range 300 {
		b := bytes.Repeat([]byte{byte(i)}, 200<<10+i)
		f, err := procpool.ApplyAsync(ctx, p, digest, b)
		if err != nil {
			t.Fatal(err)
		}
		bufs, futs = append(bufs, b), append(futs, f)
	}
	for i, f := range futs {
		if got, err := f.Get(ctx); err != nil || got != sha256.Sum256(bufs[i]) {
			t.Fatalf("task %d: digest mismatch or %v", i, err)
		}
	}
	stopKilling()
	if n := p.Stats().WorkerExits[procpool.ReasonSignal]; n == 0 {
		t.Fatal("no worker was killed: the test did not test anything")
	}
}

// within runs f and fails the test if it has not returned after a generous
// time (only to catch hangs).
func within(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("%s hangs", what)
	}
}

// statField returns field n (1-based, as in proc(5)) of /proc/PID/stat, or
// "" if the process is gone.
func statField(pid, n int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:])) // from field 3 on
	if i < 0 || n < 3 || n-3 >= len(f) {
		return ""
	}
	return f[n-3]
}

// detached waits for the pid that a detach task writes to path, makes sure
// the process does not outlive the test, and checks that it left the
// session of the worker w: no process-group kill can reach it.
func detached(t *testing.T, path string, w int) int {
	t.Helper()
	var g int
	// The pid is written before the grandchild has called setsid: wait
	// for it to lead its session (or be gone: then the check below fails).
	waitFor(t, "the detached grandchild's pid and its setsid", func() bool {
		b, _ := os.ReadFile(path)
		g, _ = strconv.Atoi(string(b))
		return g > 0 && (leadsSession(strconv.Itoa(g)) || !alive(g))
	})
	t.Cleanup(func() {
		if alive(g) {
			syscall.Kill(g, syscall.SIGKILL)
		}
	})
	if s := statField(g, 6); s != strconv.Itoa(g) || s == statField(w, 6) {
		t.Fatalf("grandchild %d is in session %s, worker %d in %s: it did not leave the worker's session", g, s, w, statField(w, 6))
	}
	return g
}

// Descendants of a task that left the worker's process group (setsid) and
// whose own parent has exited die with their worker however it ends: Close,
// a timeout, a cancel, Terminate. (The parent's death is in
// TestOrphansAfterParentKilled.)
func TestDetachedGrandchildrenDieWithWorker(t *testing.T) {
	for _, how := range []string{"close", "timeout", "cancel", "terminate"} {
		t.Run(how, func(t *testing.T) {
			ctx := testCtx(t)
			path := filepath.Join(t.TempDir(), "pid")
			p := newPool(t, procpool.WithProcesses(1), procpool.WithKillGrace(2*time.Second))
			w, err := procpool.Apply(ctx, p, pid, 0)
			if err != nil {
				t.Fatal(err)
			}
			arg, opts := detachArg{Path: path, Then: "hang"}, []procpool.CallOption(nil)
			switch how {
			case "close":
				arg.Then = ""
			case "timeout":
				opts = append(opts, procpool.Timeout(200*time.Millisecond))
			}
			f, err := procpool.ApplyAsync(ctx, p, detach, arg, opts...)
			if err != nil {
				t.Fatal(err)
			}
			g := detached(t, path, w)
			switch how {
			case "close":
				if _, err := f.Get(ctx); err != nil {
					t.Fatal(err)
				}
				within(t, "Close", func() { p.Close() })
			case "timeout":
				if _, err := f.Get(ctx); !errors.Is(err, procpool.ErrTimeout) {
					t.Fatalf("task past its timeout: %v", err)
				}
			case "cancel":
				f.Cancel()
				if _, err := f.Get(ctx); !errors.Is(err, context.Canceled) {
					t.Fatalf("cancelled task: %v", err)
				}
			case "terminate":
				within(t, "Terminate", func() { p.Terminate() })
			}
			waitFor(t, "the worker to exit", func() bool { return !alive(w) })
			waitFor(t, "the detached grandchild to die", func() bool { return !alive(g) })
		})
	}
}

// A grandchild that holds the worker's result pipe and lives on in a session
// of its own hangs neither the task nor the pool: once the worker has been
// reaped its reading ends, the task fails with a *WorkerExitError, a new
// worker takes over, and the grandchild is killed.
func TestGrandchildHoldingResultPipe(t *testing.T) {
	for _, how := range []string{"exit", "timeout", "terminate"} {
		t.Run(how, func(t *testing.T) {
			ctx := testCtx(t)
			path := filepath.Join(t.TempDir(), "pid")
			p := newPool(t, procpool.WithProcesses(1))
			w, err := procpool.Apply(ctx, p, pid, 0)
			if err != nil {
				t.Fatal(err)
			}
			arg, opts := detachArg{Path: path, Hold: true, Then: "hang"}, []procpool.CallOption(nil)
			switch how {
			case "exit":
				arg.Then = "exit"
			case "timeout":
				opts = append(opts, procpool.Timeout(200*time.Millisecond))
			}
			f, err := procpool.ApplyAsync(ctx, p, detach, arg, opts...)
			if err != nil {
				t.Fatal(err)
			}
			g := detached(t, path, w)
			if how == "terminate" {
				within(t, "Terminate", func() { p.Terminate() })
			}
			within(t, "the task", func() { _, err = f.Get(ctx) })
			var we *procpool.WorkerExitError
			switch {
			case how == "terminate":
				if !errors.Is(err, procpool.ErrTerminated) {
					t.Fatalf("task of a terminated pool: %v", err)
				}
			case !errors.As(err, &we) || we.Pid != w:
				t.Fatalf("task whose worker %d died: %v, want its *WorkerExitError", w, err)
			case how == "exit" && we.ExitCode != 3:
				t.Fatalf("task that exited with status 3: %v", err)
			case how == "timeout" && !errors.Is(err, procpool.ErrTimeout):
				t.Fatalf("task past its timeout: %v", err)
			}
			if how != "terminate" {
				for i := range 3 {
					v, err := procpool.Apply(ctx, p, squarePid, i)
					if err != nil || v[0] != i*i || v[1] == w {
						t.Fatalf("task %d after the worker died: %v, %v", i, v, err)
					}
				}
				within(t, "Close", func() { p.Close() })
			}
			waitFor(t, "the grandchild holding the pipe to die", func() bool { return !alive(g) })
		})
	}
}

// openFDs returns this process's open descriptors and what they refer to.
func openFDs(t *testing.T) map[string]string {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	fds := make(map[string]string, len(ents))
	for _, e := range ents {
		fds[e.Name()], _ = os.Readlink("/proc/self/fd/" + e.Name()) // "" for the directory's own, closed by now
	}
	return fds
}

// Every descriptor a worker needed is closed once it is gone, without help
// from the garbage collector: after retirements, crashes and failed starts.
func TestNoDescriptorLeak(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	ctx := testCtx(t)
	before := openFDs(t)
	p := newPool(t, procpool.WithProcesses(2), procpool.WithMaxTasksPerWorker(1))
	if _, err := procpool.Map(ctx, p, square, make([]int, 400), procpool.ChunkSize(1)); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		if _, err := procpool.Apply(ctx, p, exitWith, 1); err == nil {
			t.Fatal("a task that exits its worker succeeded")
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if n := p.Stats().WorkersStarted; n < 410 {
		t.Fatalf("%d workers started, want at least 410", n)
	}
	for range 5 {
		if _, err := procpool.New(procpool.WithProcesses(2), procpool.WithInitializer(failInit, 0)); err == nil {
			t.Fatal("New with a failing initializer succeeded")
		}
	}
	after := openFDs(t)
	var leaked []string
	for fd, what := range after {
		if _, ok := before[fd]; !ok {
			leaked = append(leaked, fd+" -> "+what)
		}
	}
	if len(after) != len(before) {
		slices.Sort(leaked)
		t.Fatalf("%d descriptors open before the pool, %d after Close; new ones: %v", len(before), len(after), leaked)
	}
}
