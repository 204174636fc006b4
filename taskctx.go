package procpool

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/procpool/procpool/internal/wire"
)

// taskCtx is the context a task's function gets in the worker: it carries
// the caller's deadline (the earlier of the caller's context's and the
// task's timeout counted from its start) and is cancelled when the parent
// stops the task (Future.Cancel, the caller's context, the deadline, the
// memory limit, Terminate) or the worker is told to stop (SIGTERM). The
// function has the kill grace period to return; then the worker dies.
//
// One small allocation per task; its channel is made only if the function
// asks for Done, and its timer only if there is a deadline.
type taskCtx struct {
	deadline time.Time
	why      atomic.Uint32 // why a stop cancelled it: a wire.Stop* reason, or stopSIGTERM; 0 otherwise (read per chunk item: no lock)

	mu    sync.Mutex
	done  chan struct{} // made on the first Done or cancel
	err   error
	timer *time.Timer
}

var closedChan = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// newTaskCtx returns the context of a task that starts now, with the
// caller's deadline (zero: none) and timeout (0: none).
func newTaskCtx(deadline time.Time, timeout time.Duration) *taskCtx {
	c := &taskCtx{deadline: deadline}
	if timeout > 0 {
		if d := time.Now().Add(timeout); c.deadline.IsZero() || d.Before(c.deadline) {
			c.deadline = d
		}
	}
	if !c.deadline.IsZero() {
		d := time.Until(c.deadline)
		if d <= 0 {
			c.cancel(context.DeadlineExceeded)
		} else {
			c.timer = time.AfterFunc(d, func() { c.cancel(context.DeadlineExceeded) })
		}
	}
	return c
}

func (c *taskCtx) Deadline() (time.Time, bool) { return c.deadline, !c.deadline.IsZero() }

func (c *taskCtx) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil {
		if c.err != nil {
			return closedChan
		}
		c.done = make(chan struct{})
	}
	return c.done
}

func (c *taskCtx) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *taskCtx) Value(any) any { return nil }

// cancel ends the context with err (context.Canceled or
// context.DeadlineExceeded); only the first call counts.
func (c *taskCtx) cancel(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return
	}
	c.err = err
	if c.done != nil {
		close(c.done)
	}
}

// stop cancels the context for a stop of the task, for the reason why.
func (c *taskCtx) stop(why byte) {
	err := context.Canceled
	if why == wire.StopDeadline {
		err = context.DeadlineExceeded
	}
	c.why.CompareAndSwap(0, uint32(why))
	c.cancel(err)
}

// stoppedFor returns why a stop cancelled the context, 0 if none did.
func (c *taskCtx) stoppedFor() byte { return byte(c.why.Load()) }

// release stops the deadline's timer once the task has returned.
func (c *taskCtx) release() {
	if c.timer != nil {
		c.timer.Stop()
	}
}

func (c *taskCtx) String() string { return "procpool.taskContext" }
