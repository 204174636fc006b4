//go:build unix

package procpool_test

// The task's context in the worker is real: it carries the caller's
// deadline and is cancelled by Cancel, the caller's context, the deadline,
// Terminate and SIGTERM; a task that honours it ends cleanly and keeps its
// worker.

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/procpool/procpool"
)

type waitArg struct {
	Marker string // written once the task has started
	Done   string // written by the task's deferred cleanup
	Honour bool   // return when the context is done; else block for an hour
}

// waitCtx blocks until its context is done (or, if it does not honour it,
// for an hour), with a deferred cleanup that leaves a file.
var waitCtx = procpool.Register("waitCtx", func(ctx context.Context, a waitArg) (int, error) {
	defer os.WriteFile(a.Done, []byte("cleaned up"), 0o600)
	if err := os.WriteFile(a.Marker, []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
		return 0, err
	}
	if !a.Honour {
		time.Sleep(time.Hour)
	}
	<-ctx.Done()
	return 0, ctx.Err()
})

// deadlineOf returns the task context's deadline as Unix nanoseconds, or -1.
var deadlineOf = procpool.Register("deadlineOf", func(ctx context.Context, _ int) (int64, error) {
	if d, ok := ctx.Deadline(); ok {
		return d.UnixNano(), nil
	}
	return -1, nil
})

func waitArgs(t *testing.T, honour bool) waitArg {
	dir := t.TempDir()
	return waitArg{Marker: filepath.Join(dir, "started"), Done: filepath.Join(dir, "done"), Honour: honour}
}

func started(t *testing.T, a waitArg) int {
	t.Helper()
	var pid int
	waitFor(t, "the task to start", func() bool {
		b, err := os.ReadFile(a.Marker)
		if err != nil {
			return false
		}
		pid, _ = strconv.Atoi(string(b))
		return pid > 0
	})
	return pid
}

func cleanedUp(a waitArg) bool {
	_, err := os.Stat(a.Done)
	return err == nil
}

func TestContextCancelKeepsWorker(t *testing.T) {
	for _, mode := range []string{"process", "in-process"} {
		t.Run(mode, func(t *testing.T) {
			ctx := testCtx(t)
			opts := []procpool.Option{procpool.WithProcesses(1), procpool.WithKillGrace(10 * time.Second)}
			if mode == "in-process" {
				opts = append(opts, procpool.WithInProcess())
			}
			p := newPool(t, opts...)
			a := waitArgs(t, true)
			f, err := procpool.ApplyAsync(ctx, p, waitCtx, a)
			if err != nil {
				t.Fatal(err)
			}
			before := started(t, a)
			f.Cancel()
			if _, err := f.Get(ctx); !errors.Is(err, context.Canceled) {
				t.Fatalf("cancelled task: %v", err)
			}
			waitFor(t, "the task's cleanup", func() bool { return cleanedUp(a) })
			after, err := procpool.Apply(ctx, p, pid, 0)
			if err != nil {
				t.Fatal(err)
			}
			if mode == "process" && after != before {
				t.Fatalf("the worker was replaced (pid %d, then %d): a task that honours its context keeps it", before, after)
			}
			s := p.Stats()
			if s.StoppedClean != 1 || s.WorkersStarted > 1 || len(s.WorkerExits) != 0 {
				t.Fatalf("stats %+v: want one clean stop and no worker exit", s)
			}
		})
	}
}

func TestContextTimeoutKeepsWorker(t *testing.T) {
	ctx := testCtx(t)
	p := newPool(t, procpool.WithProcesses(1), procpool.WithKillGrace(10*time.Second))
	a := waitArgs(t, true)
	_, err := procpool.Apply(ctx, p, waitCtx, a, procpool.Timeout(100*time.Millisecond))
	if !errors.Is(err, procpool.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("task past its timeout: %v", err)
	}
	var re *procpool.RemoteError
	if !errors.As(err, &re) || re.Message != context.DeadlineExceeded.Error() {
		t.Fatalf("want the task's own error, its context's: %v", err)
	}
	if !cleanedUp(a) {
		t.Fatal("the task's deferred cleanup did not run")
	}
	if s := p.Stats(); s.WorkersStarted != 1 || len(s.WorkerExits) != 0 || s.TimedOut != 1 {
		t.Fatalf("stats %+v: want the worker kept and one timeout", s)
	}
}

func TestContextIgnoredStopsWorker(t *testing.T) {
	ctx := testCtx(t)
	p := newPool(t, procpool.WithProcesses(1), procpool.WithKillGrace(50*time.Millisecond))
	a := waitArgs(t, false)
	f, err := procpool.ApplyAsync(ctx, p, waitCtx, a, procpool.Timeout(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	w := started(t, a)
	_, err = f.Get(ctx)
	var we *procpool.WorkerExitError
	if !errors.Is(err, procpool.ErrTimeout) || !errors.As(err, &we) || we.Reason != procpool.ReasonTimeout || we.Pid != w {
		t.Fatalf("task that ignores its context: %v, want a timeout with worker %d's exit", err, w)
	}
	waitFor(t, "the worker to exit", func() bool { return !alive(w) })
	if got, err := procpool.Apply(ctx, p, pid, 0); err != nil || got == w {
		t.Fatalf("after the stop: pid %d, %v; want a new worker", got, err)
	}
}

func TestContextDeadlineInWorker(t *testing.T) {
	ctx := context.Background() // no deadline
	p := newPool(t, procpool.WithProcesses(1))
	if d, err := procpool.Apply(ctx, p, deadlineOf, 0); err != nil || d != -1 {
		t.Fatalf("without a deadline: %d, %v", d, err)
	}
	want := time.Now().Add(time.Hour)
	dctx, cancel := context.WithDeadline(ctx, want)
	defer cancel()
	d, err := procpool.Apply(dctx, p, deadlineOf, 0)
	if err != nil || d != want.UnixNano() {
		t.Fatalf("caller's deadline %d: the worker saw %d, %v", want.UnixNano(), d, err)
	}
	// The earlier of the caller's deadline and the timeout from the start.
	before := time.Now()
	d, err = procpool.Apply(dctx, p, deadlineOf, 0, procpool.Timeout(time.Minute))
	after := time.Now()
	if err != nil || d < before.Add(time.Minute).UnixNano() || d > after.Add(time.Minute).UnixNano() {
		t.Fatalf("with Timeout(1m): the worker saw %v, %v", time.Unix(0, d), err)
	}
}

func TestSIGTERMFromOutsideCancelsTask(t *testing.T) {
	ctx := testCtx(t)
	p := newPool(t, procpool.WithProcesses(1), procpool.WithKillGrace(10*time.Second))
	a := waitArgs(t, true)
	f, err := procpool.ApplyAsync(ctx, p, waitCtx, a)
	if err != nil {
		t.Fatal(err)
	}
	w := started(t, a)
	if err := syscall.Kill(w, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// The task saw its context cancelled and returned (its cleanup ran);
	// then the worker exited with it running: the task fails with the
	// worker's exit (or would run again with retries), not with an error
	// of its own.
	_, err = f.Get(ctx)
	var we *procpool.WorkerExitError
	if !errors.As(err, &we) || we.Reason != procpool.ReasonTerminatedOutside || we.Pid != w {
		t.Fatalf("task of a worker given SIGTERM: %v, want worker %d's exit, terminated from outside", err, w)
	}
	if !cleanedUp(a) {
		t.Fatal("the task's deferred cleanup did not run")
	}
	waitFor(t, "the worker to exit", func() bool { return !alive(w) })
	if got, err := procpool.Apply(ctx, p, pid, 0); err != nil || got == w {
		t.Fatalf("after SIGTERM: pid %d, %v; want a new worker", got, err)
	}
}

// TestTerminateCancelsInProcessTask: in process, Terminate cancels the
// running task's context and waits for it to return (a goroutine cannot be
// killed).
func TestTerminateCancelsInProcessTask(t *testing.T) {
	ctx := testCtx(t)
	p := newPool(t, procpool.WithProcesses(1), procpool.WithInProcess())
	a := waitArgs(t, true)
	f, err := procpool.ApplyAsync(ctx, p, waitCtx, a)
	if err != nil {
		t.Fatal(err)
	}
	started(t, a)
	within(t, "Terminate", func() { p.Terminate() })
	if _, err := f.Get(ctx); !errors.Is(err, procpool.ErrTerminated) {
		t.Fatalf("task: %v", err)
	}
	if !cleanedUp(a) {
		t.Fatal("Terminate returned before the task's cleanup ran")
	}
}

// BenchmarkStop measures a stopped task's two paths: one that honours its
// context (the worker lives on) and one that ignores it (the worker is
// killed and replaced), each from the stop to the next task's answer.
func BenchmarkStop(b *testing.B) {
	for _, honour := range []bool{true, false} {
		name := "honours-context"
		if !honour {
			name = "ignores-context"
		}
		b.Run(name, func(b *testing.B) {
			ctx := context.Background()
			p, err := procpool.New(procpool.WithProcesses(1), procpool.WithKillGrace(time.Millisecond))
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close()
			dir := b.TempDir()
			for i := 0; b.Loop(); i++ {
				a := waitArg{Marker: filepath.Join(dir, "s"+strconv.Itoa(i)), Done: filepath.Join(dir, "d"+strconv.Itoa(i)), Honour: honour}
				f, err := procpool.ApplyAsync(ctx, p, waitCtx, a)
				if err != nil {
					b.Fatal(err)
				}
				for {
					if _, err := os.Stat(a.Marker); err == nil {
						break
					}
					time.Sleep(20 * time.Microsecond)
				}
				f.Cancel()
				if _, err := procpool.Apply(ctx, p, square, 3); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
