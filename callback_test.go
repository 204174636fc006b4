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

// deep calls f n frames down the stack.
func deep(n int, f func() error) error {
	if n == 0 {
		return f()
	}
	return deep(n-1, f)
}
