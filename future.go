package procpool

import (
	"context"
	"sync/atomic"
)

// Future is the pending result of an asynchronous call (Python's
// AsyncResult). It is safe for concurrent use.
type Future[T any] struct {
	done    chan struct{}
	val     T
	err     error
	settled atomic.Bool // set has been called: only the first call counts
	cancel  func()      // ends the work behind the future (MapAsync)

	// For ApplyAsync, the future is its task's sink.
	p   *Pool
	t   *task
	cb  func(T)
	ecb func(error)
	// ended, for an Apply with callbacks (or a Map with callbacks or
	// OnProgress), is closed when the task (every item) has ended, before
	// the result goes through the callback queue (done is closed after).
	ended chan struct{}
}

func newFuture[T any]() *Future[T] { return &Future[T]{done: make(chan struct{})} }

// set completes the future; only the first call counts.
//
// A later call returns at once, perhaps before the first has closed done:
// nothing reads val and err before done is closed.
func (f *Future[T]) set(v T, err error) {
	if f.settled.CompareAndSwap(false, true) {
		f.val, f.err = v, err
		close(f.done)
	}
}

// Get waits for the result and returns it, or the task's error (with the
// zero value, except for MapAsync's future, which returns the results of
// the items that succeeded with its *MapError). If ctx ends first, Get
// returns ctx.Err() and the task goes on (call Cancel to stop it).
func (f *Future[T]) Get(ctx context.Context) (T, error) {
	select {
	case <-f.done:
		return f.val, f.err
	default:
	}
	select {
	case <-f.done:
		return f.val, f.err
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
}

// Done returns a channel that is closed once the result is ready (Python's
// wait: <-f.Done()).
func (f *Future[T]) Done() <-chan struct{} { return f.done }

// Ready reports whether the result is ready, without blocking.
func (f *Future[T]) Ready() bool {
	select {
	case <-f.done:
		return true
	default:
		return false
	}
}

// Successful reports whether the task has ended without an error. It is
// false while the task is pending.
func (f *Future[T]) Successful() bool { return f.Ready() && f.err == nil }

// Cancel stops the task: if it is still queued it is removed; if it is
// waiting in a worker's pipe it is skipped there; if it is running, its
// context in the worker is cancelled, and if it does not return within
// WithKillGrace its worker is stopped and replaced. The future then ends with
// context.Canceled, unless it had already ended. (A cancelled context ends it
// with context.Cause(ctx) instead, which also matches context.Canceled
// unless the cause was set otherwise.) Cancel does not wait.
func (f *Future[T]) Cancel() {
	switch {
	case f.t != nil:
		f.p.cancelTask(f.t, context.Canceled)
	case f.cancel != nil:
		f.cancel()
	}
}

// result decodes the task's result (the future is the sink of ApplyAsync's
// task).
func (f *Future[T]) result(p *Pool, body []byte, _ int) bool {
	// Decode in place: only this call writes f.val before the future is
	// done (a task has one sink call), and readers wait for done.
	var err error
	if derr := p.codec.Unmarshal(body, &f.val); derr != nil {
		var zero T
		f.val = zero
		err = &CodecError{Op: "decode result", Err: derr}
	}
	deliver(p, f, f.cb, f.ecb, f.val, err)
	if f.ended != nil {
		close(f.ended)
	}
	return err == nil
}

func (f *Future[T]) fail(p *Pool, err error, _ int) {
	var zero T
	deliver(p, f, f.cb, f.ecb, zero, err)
	if f.ended != nil {
		close(f.ended)
	}
}
