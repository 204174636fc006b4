package serve

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestTaskCtx(t *testing.T) {
	c := newTaskCtx(time.Time{}, 0)
	if _, ok := c.Deadline(); ok || c.Err() != nil {
		t.Fatal("a context without deadline has one, or is done")
	}
	done := c.Done()
	c.cancel(context.Canceled)
	c.cancel(context.DeadlineExceeded) // only the first counts
	<-done
	if !errors.Is(c.Err(), context.Canceled) {
		t.Fatalf("Err = %v", c.Err())
	}
	if c := newTaskCtx(time.Now().Add(-time.Second), 0); c.Err() != context.DeadlineExceeded {
		t.Fatalf("past deadline: Err = %v", c.Err())
	}
	c = newTaskCtx(time.Now().Add(time.Hour), time.Millisecond)
	<-c.Done() // the timeout, earlier than the deadline
	if c.Err() != context.DeadlineExceeded {
		t.Fatalf("timeout: Err = %v", c.Err())
	}
	// A derived context follows it.
	c = newTaskCtx(time.Time{}, 0)
	child, cancel := context.WithCancel(c)
	defer cancel()
	c.cancel(context.Canceled)
	<-child.Done()
}

// TestTaskCtxSlab checks that the slab never hands out a context twice, and
// that each starts fresh whatever became of the one before: a function may
// keep its context after it returns.
func TestTaskCtxSlab(t *testing.T) {
	var s taskCtxs
	seen := map[*TaskCtx]bool{}
	var prev *TaskCtx
	for i := range 3*TaskCtxSlab + 1 {
		c := s.next(time.Time{}, 0)
		if seen[c] {
			t.Fatalf("context %d was handed out before", i)
		}
		seen[c] = true
		if c.Err() != nil || c.StoppedFor() != 0 || c.armed.Load() {
			t.Fatalf("context %d is not fresh: Err %v, stopped for %d, armed %v", i, c.Err(), c.StoppedFor(), c.armed.Load())
		}
		if _, ok := c.Deadline(); ok {
			t.Fatalf("context %d has a deadline", i)
		}
		if prev != nil && prev.Err() != context.Canceled {
			t.Fatalf("context %d: the one before changed: Err %v", i, prev.Err())
		}
		c.Done() // arms nothing: no deadline
		c.stop(1)
		c.release()
		prev = c
	}
	c := s.next(time.Time{}, time.Hour)
	c.Done() // arms the timer
	if !c.armed.Load() {
		t.Fatal("Done with a deadline armed no timer")
	}
	c.release()
}

// BenchmarkTaskContext is the cost the worker-side context adds to each
// task: made at the task's start, released at its end.
func BenchmarkTaskContext(b *testing.B) {
	b.Run("no-deadline", func(b *testing.B) {
		for b.Loop() {
			newTaskCtx(time.Time{}, 0).release()
		}
	})
	b.Run("slab", func(b *testing.B) {
		var s taskCtxs
		for b.Loop() {
			s.next(time.Time{}, 0).release()
		}
	})
	b.Run("timeout", func(b *testing.B) {
		for b.Loop() {
			newTaskCtx(time.Time{}, time.Minute).release()
		}
	})
}
