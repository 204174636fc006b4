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
	frame   []byte // the whole task frame, kept for a resend after a crash
	ctx     context.Context
	items   int           // a chunk's number of items
	timeout time.Duration // run-time bound, counted from the start on a worker
	retries int           // how many more starts a crash or timeout may cost
	sink    sink

	done  atomic.Bool
	chunk bool // a chunk of a Map or Imap
	// Guarded by Pool.mu (here beside done and chunk, which leaves the
	// struct in a smaller size class: one is allocated per task).
	requeued bool // it went back to the queue once: a dead worker's queue may still refer to its frame
	expired  bool // it ran past its deadline; its worker is being stopped

	// Guarded by Pool.watchMu: what cancels t when its context ends.
	watch        *ctxWatch
	wnext, wprev *task // in watch's list
	stopOwn      func() bool

	// Guarded by Pool.mu.
	w *worker
	// from is a chunk's first item not settled yet: items before it were
	// settled one by one after a worker died in the middle of the chunk,
	// and frame then asks for the items from it on. It changes only while
	// the task is off every worker, so the ending of a run reads the from
	// that run was sent with.
	from        int
	attempts    int32       // how many times it (a chunk: its item attemptItem) was started on a worker and blamed
	attemptItem int32       // a chunk's item that attempts counts
	started     time.Time   // when it became the running task of its worker
	sentBytes   int         // the bytes of the frame sent to w
	callerReads *worker     // the worker whose answers Apply's caller reads itself (see readAsCaller)
	shmEnd      int         // end of its argument's region in w's shared memory; 0 if none
	timer       *time.Timer // fires at its deadline while it runs
	// expireCause is the context error when the deadline was the caller's
	// context rather than a timeout option. It stays set: the task must not
	// run again once its caller's context has ended.
	expireCause error
}

// sink receives a task's outcome. Exactly one of result and fail is called,
// once. For a chunk task, both concern its items from index from on (the
// ones before were settled one by one, see itemSink); from is 0 otherwise.
type sink interface {
	// result decodes a Result frame's body; the body is valid only during
	// the call. It reports false if the outcome is a failure after all: the
	// body did not decode, or items of a chunk failed.
	result(p *Pool, body []byte, from int) bool
	// fail ends the task with err.
	fail(p *Pool, err error, from int)
}

// Every ending of a task (an answer, a crash, a timeout, a cancel,
// Terminate, a broken pool) goes through claim, and only the path whose
// claim succeeds delivers an outcome: the others do nothing more with the
// task. finishResult and finish claim and deliver in one step; a path that
// must claim under Pool.mu (so that no other path requeues the task
// meanwhile) calls claim there and complete after releasing the lock.

// finishResult ends t with a Result frame. It reports false if t had already
// ended.
func (t *task) finishResult(p *Pool, f wire.Frame) bool {
	if !t.claim() {
		return false
	}
	t.release(p)
	o := succeeded
	if !t.sink.result(p, f.Body, t.from) {
		o = failed
	}
	p.stats.end(o)
	return true
}

// finish ends t with err, counted as o. It reports false if t had already
// ended.
func (t *task) finish(p *Pool, err error, o outcome) bool {
	if !t.claim() {
		return false
	}
	t.complete(p, err, o)
	return true
}

// claim marks t as ended, reporting false if it already was.
func (t *task) claim() bool { return t.done.CompareAndSwap(false, true) }

// complete delivers the error of a task claimed with claim.
func (t *task) complete(p *Pool, err error, o outcome) {
	t.release(p)
	t.sink.fail(p, err, t.from)
	p.stats.end(o)
	switch o {
	case timedOut:
		p.logf("task timed out", "task", t.id, "func", t.fn, "err", err)
	case cancelled:
		p.logf("task cancelled", "task", t.id, "func", t.fn, "err", err)
	}
}

func (t *task) release(p *Pool) {
	if t.ctx.Done() != nil {
		p.unwatch(t)
	}
}
