package serve

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/procpool/procpool/internal/wire"
)

// TaskCtx is the context a task's function gets in the worker: it carries
// the caller's deadline (the earlier of the caller's context's and the
// task's timeout counted from its start) and is cancelled when the parent
// stops the task (Future.Cancel, the caller's context, the deadline, the
// memory limit, Terminate) or the worker is told to stop (SIGTERM). The
// function has the kill grace period to return; then the worker dies.
//
// The serve loop takes them from a slab (taskCtxs), not one allocation per
// task; its channel is made, and for a deadline its timer armed, only if
// the function asks for Done.
type TaskCtx struct {
	deadline time.Time
	why      atomic.Uint32 // why a stop cancelled it: a wire.Stop* reason, or StopTerm; 0 otherwise (read per chunk item: no lock)
	armed    atomic.Bool   // timer is set: release must stop it

	mu    sync.Mutex
	done  chan struct{} // made on the first Done or cancel
	err   error
	timer *time.Timer
}

// taskCtxs hands out task contexts from slabs of TaskCtxSlab: one
// allocation per slab instead of one per task, which a busy worker felt. A
// context is never reused: a function may keep its context (in a goroutine
// that outlives the task) and must see it stay as it was; a kept context
// keeps its slab alive, a few kilobytes.
type taskCtxs []TaskCtx

const TaskCtxSlab = 64

// next returns a fresh context for a task that starts now (see newTaskCtx).
func (s *taskCtxs) next(deadline time.Time, timeout time.Duration) *TaskCtx {
	if len(*s) == 0 {
		*s = make([]TaskCtx, TaskCtxSlab)
	}
	c := &(*s)[0]
	*s = (*s)[1:]
	c.init(deadline, timeout)
	return c
}

var closedChan = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// newTaskCtx returns the context of a task that starts now, with the
// caller's deadline (zero: none) and timeout (0: none). It arms no timer:
// Err compares the deadline with the clock, and Done arms a timer only
// when a task asks for it (most tasks never do, and a timer per task cost
// a busy worker a fifth of its throughput).
func newTaskCtx(deadline time.Time, timeout time.Duration) *TaskCtx {
	c := new(TaskCtx)
	c.init(deadline, timeout)
	return c
}

// init sets the deadline of a zero TaskCtx.
func (c *TaskCtx) init(deadline time.Time, timeout time.Duration) {
	c.deadline = deadline
	if timeout > 0 {
		if d := time.Now().Add(timeout); c.deadline.IsZero() || d.Before(c.deadline) {
			c.deadline = d
		}
	}
}

// expireLocked ends the context if its deadline has passed. Call it with
// c.mu held.
func (c *TaskCtx) expireLocked() {
	if c.err == nil && !c.deadline.IsZero() && !time.Now().Before(c.deadline) {
		c.err = context.DeadlineExceeded
		if c.done != nil {
			close(c.done)
		}
	}
}

func (c *TaskCtx) Deadline() (time.Time, bool) { return c.deadline, !c.deadline.IsZero() }

func (c *TaskCtx) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expireLocked()
	if c.done == nil {
		if c.err != nil {
			return closedChan
		}
		c.done = make(chan struct{})
		if !c.deadline.IsZero() && c.timer == nil {
			c.timer = time.AfterFunc(time.Until(c.deadline), func() {
				c.mu.Lock()
				defer c.mu.Unlock()
				c.expireLocked()
			})
			c.armed.Store(true)
		}
	}
	return c.done
}

func (c *TaskCtx) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expireLocked()
	return c.err
}

func (c *TaskCtx) Value(any) any { return nil }

// cancel ends the context with err (context.Canceled or
// context.DeadlineExceeded); only the first call counts.
func (c *TaskCtx) cancel(err error) {
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
func (c *TaskCtx) stop(why byte) {
	err := context.Canceled
	if why == wire.StopDeadline {
		err = context.DeadlineExceeded
	}
	c.why.CompareAndSwap(0, uint32(why))
	c.cancel(err)
}

// StoppedFor returns why a stop cancelled the context: a wire.Stop*
// reason or StopTerm, 0 if none did or c is nil. It is one atomic load.
func (c *TaskCtx) StoppedFor() byte {
	if c == nil {
		return 0
	}
	return byte(c.why.Load())
}

// TaskContext returns the serve loop's context of the task that ctx
// belongs to (ctx itself), or nil if ctx is not one. A Handler reads
// StoppedFor from it between a chunk's items.
func TaskContext(ctx context.Context) *TaskCtx {
	tc, _ := ctx.(*TaskCtx)
	return tc
}

// release stops the deadline's timer, if Done armed one, once the task has
// returned. Done arms it on the task's goroutine, before the task returns,
// so the serve loop that calls release sees armed without the lock.
func (c *TaskCtx) release() {
	if !c.armed.Load() {
		return
	}
	c.mu.Lock()
	t := c.timer
	c.mu.Unlock()
	if t != nil {
		t.Stop()
	}
}

func (c *TaskCtx) String() string { return "procpool.taskContext" }
