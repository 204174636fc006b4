//go:build unix

package procpool_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/procpool/procpool"
)

// hangGuard bounds a wait that must end, so that a hang fails the test
// instead of stalling it; it measures nothing.
const hangGuard = 30 * time.Second

// recv waits for a value on ch, failing the test if none comes within
// hangGuard.
func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(hangGuard):
		t.Fatalf("hung: %s", what)
		panic("unreachable")
	}
}

// closeFromTest calls Close from the test goroutine's side, failing the test
// if it hangs.
func closeFromTest(t *testing.T, p *procpool.Pool) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- p.Close() }()
	if err := recv(t, done, "Close from the test after a callback closed the pool"); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// Close, Shutdown and Terminate called from a callback return instead of
// waiting for the callbacks (their own included), and a later Close from
// another goroutine returns once everything has ended (issue 7, item 12:
// they deadlocked, and every later Close hung too).
func TestCloseFromCallback(t *testing.T) {
	type result struct {
		err          error
		otherReady   bool // the task submitted before had ended
		workersAlive []int
	}
	cases := []struct {
		name      string
		otherMs   int // what the other task sleeps
		stop      func(p *procpool.Pool) error
		wantErr   error
		wantOther error // the other task's outcome; nil: its result
	}{
		{name: "Close", otherMs: 50, stop: (*procpool.Pool).Close},
		// Called 200 frames deep in the callback: its goroutine is still
		// recognised.
		{name: "CloseDeep", otherMs: 50, stop: func(p *procpool.Pool) error { return deep(200, p.Close) }},
		{name: "Shutdown", otherMs: 50, stop: func(p *procpool.Pool) error { return p.Shutdown(context.Background()) }},
		{name: "Terminate", otherMs: 60_000, stop: (*procpool.Pool).Terminate, wantOther: procpool.ErrTerminated},
		{name: "ShutdownExpired", otherMs: 60_000, stop: func(p *procpool.Pool) error {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return p.Shutdown(ctx)
		}, wantErr: context.Canceled, wantOther: procpool.ErrTerminated},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t)
			p := newPool(t, procpool.WithProcesses(2))
			// Another task, without a callback, on the other worker: a
			// Close from the callback waits for it, a Terminate ends it.
			other, err := procpool.ApplyAsync(ctx, p, sleepMs, tc.otherMs)
			if err != nil {
				t.Fatal(err)
			}
			results := make(chan result, 1)
			var later atomic.Int32
			_, err = procpool.ApplyAsync(ctx, p, square, 3, procpool.Callback(func(int) {
				// A callback queued behind this one, which runs after
				// it returns (with the result, or ErrTerminated).
				if _, err := procpool.ApplyAsync(ctx, p, square, 4,
					procpool.Callback(func(int) { later.Add(1) }),
					procpool.ErrorCallback(func(error) { later.Add(1) })); err != nil {
					t.Errorf("submit from a callback: %v", err)
				}
				err := tc.stop(p)
				results <- result{err: err, otherReady: other.Ready(), workersAlive: children()}
			}))
			if err != nil {
				t.Fatal(err)
			}
			r := recv(t, results, tc.name+" from a callback")
			if !errors.Is(r.err, tc.wantErr) || (tc.wantErr == nil && r.err != nil) {
				t.Errorf("%s from a callback: %v, want %v", tc.name, r.err, tc.wantErr)
			}
			if !r.otherReady {
				t.Errorf("%s from a callback returned before the other task had ended", tc.name)
			}
			if len(r.workersAlive) != 0 {
				t.Errorf("%s from a callback returned with workers alive: %v", tc.name, r.workersAlive)
			}
			closeFromTest(t, p)
			if n := later.Load(); n != 1 {
				t.Errorf("the callback queued behind ran %d times, want 1 (Close waits for callbacks)", n)
			}
			v, err := other.Get(ctx)
			if tc.wantOther != nil {
				if !errors.Is(err, tc.wantOther) {
					t.Errorf("the other task: %v, want %v", err, tc.wantOther)
				}
			} else if err != nil || v != tc.otherMs {
				t.Errorf("the other task: %d, %v", v, err)
			}
		})
	}
}

// An Apply with a Callback returns when its context ends, even while its
// callback waits behind a slow one; the callback still runs once, later,
// with the task's outcome (issue 7, item 12: Apply ignored its context).
func TestApplyWithCallbackHonoursContext(t *testing.T) {
	for _, ended := range []bool{true, false} {
		name := "task ended"
		if !ended {
			name = "task running"
		}
		t.Run(name, func(t *testing.T) {
			ctx := testCtx(t)
			p := newPool(t, procpool.WithProcesses(2))
			entered, release := make(chan struct{}), make(chan struct{})
			defer func() {
				select {
				case <-release:
				default:
					close(release)
				}
			}()
			// A slow callback holds the callback goroutine.
			_, err := procpool.ApplyAsync(ctx, p, square, 1, procpool.Callback(func(int) {
				close(entered)
				<-release
			}))
			if err != nil {
				t.Fatal(err)
			}
			recv(t, entered, "the slow callback to start")

			actx, cancel := context.WithCancel(ctx)
			defer cancel()
			var runs atomic.Int32
			var got atomic.Value
			type out struct {
				v   int
				err error
			}
			done := make(chan out, 1)
			task, arg := square, 5
			if !ended {
				task, arg = sleepMs, 60_000
			}
			go func() {
				v, err := procpool.Apply(actx, p, task, arg,
					procpool.Callback(func(v int) { runs.Add(1); got.Store(out{v: v}) }),
					procpool.ErrorCallback(func(err error) { runs.Add(1); got.Store(out{err: err}) }))
				done <- out{v, err}
			}()
			if ended {
				// Its task has ended; its callback is queued behind the
				// slow one.
				waitFor(t, "the task to succeed", func() bool { return p.Stats().Succeeded == 2 })
			} else {
				// Submitted and Succeeded too: the first task counts as
				// running until its outcome is counted, which may come
				// after its callback has started.
				waitFor(t, "the task to run", func() bool {
					s := p.Stats()
					return s.Submitted == 2 && s.Succeeded == 1 && s.Running == 1
				})
			}
			cancel()
			r := recv(t, done, "Apply with a callback queued behind a slow one, after its context ended")
			if !errors.Is(r.err, context.Canceled) {
				t.Fatalf("Apply: %d, %v, want context.Canceled", r.v, r.err)
			}
			if n := runs.Load(); n != 0 {
				t.Fatalf("the callback ran %d times before the slow one returned", n)
			}
			close(release)
			closeFromTest(t, p)
			if n := runs.Load(); n != 1 {
				t.Fatalf("the callback ran %d times, want once", n)
			}
			o, _ := got.Load().(out)
			if ended && (o.err != nil || o.v != 25) {
				t.Fatalf("the callback got %d, %v; want the task's result 25", o.v, o.err)
			}
			if !ended && !errors.Is(o.err, context.Canceled) {
				t.Fatalf("the error callback got %v, want context.Canceled", o.err)
			}
		})
	}
}

// deep calls f n frames down the stack.
func deep(n int, f func() error) error {
	if n == 0 {
		return f()
	}
	return deep(n-1, f)
}
