package procpool

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

// BenchmarkTaskContext is the cost the worker-side context adds to each
// task: made at the task's start, released at its end.
func BenchmarkTaskContext(b *testing.B) {
	b.Run("no-deadline", func(b *testing.B) {
		for b.Loop() {
			newTaskCtx(time.Time{}, 0).release()
		}
	})
	b.Run("timeout", func(b *testing.B) {
		for b.Loop() {
			newTaskCtx(time.Time{}, time.Minute).release()
		}
	})
}
