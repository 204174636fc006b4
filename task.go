package procpool

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/procpool/procpool/internal/wire"
)

// task is one unit of work as the dispatcher sees it: an encoded frame, the
// worker it is on, and where its outcome goes. Every accepted task ends
// exactly once, through finish; the atomic done flag makes the first ending
// win when several paths (a result, a crash, a timeout, a cancel) race.
type task struct {
	id      uint64
	fn      string // the function's registered name
	chunk   bool   // a chunk of a Map or Imap
	frame   []byte // the whole task frame, kept for a resend after a crash
	ctx     context.Context
	timeout time.Duration // run-time bound, counted from the start on a worker
	retries int           // how many more starts a crash or timeout may cost
	sink    sink

	done atomic.Bool
	// Guarded by Pool.watchMu: what cancels t when its context ends.
	watch        *ctxWatch
	wnext, wprev *task // in watch's list
	stopOwn      func() bool

	// Guarded by Pool.mu.
	w           *worker
	attempts    int         // how many times it was started on a worker
	started     time.Time   // when it became the running task of its worker
	sentBytes   int         // the bytes of the frame sent to w
	callerReads *worker     // the worker whose answers Apply's caller reads itself (see readAsCaller)
	requeued    bool        // it went back to the queue once: a dead worker's queue may still refer to its frame
	shmEnd      int         // end of its argument's region in w's shared memory; 0 if none
	timer       *time.Timer // fires at its deadline while it runs
	expired     bool        // it ran past its deadline; its worker is being stopped
	// expireCause is the context error when the deadline was the caller's
	// context rather than a timeout option.
	expireCause error
}

// sink receives a task's outcome. Exactly one method is called, once.
type sink interface {
	// result decodes a Result frame's body; the body is valid only during
	// the call.
	result(p *Pool, body []byte)
	// fail ends the task with err.
	fail(p *Pool, err error)
}

// finishResult ends t with a Result frame. It reports false if t had already
// ended.
func (t *task) finishResult(p *Pool, f wire.Frame) bool {
	if !t.done.CompareAndSwap(false, true) {
		return false
	}
	t.release(p)
	t.sink.result(p, f.Body)
	p.taskEnded()
	return true
}

// finish ends t with err. It reports false if t had already ended.
func (t *task) finish(p *Pool, err error) bool {
	if !t.claim() {
		return false
	}
	t.complete(p, err)
	return true
}

// claim marks t as ended, reporting false if it already was. A path that
// claims a task while holding Pool.mu (so that no other path requeues it
// meanwhile) calls complete after releasing the lock.
func (t *task) claim() bool { return t.done.CompareAndSwap(false, true) }

// complete delivers the error of a task claimed with claim.
func (t *task) complete(p *Pool, err error) {
	t.release(p)
	t.sink.fail(p, err)
	p.taskEnded()
}

func (t *task) release(p *Pool) {
	if t.ctx.Done() != nil {
		p.unwatch(t)
	}
}
