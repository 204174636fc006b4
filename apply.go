package procpool

import (
	"context"
)

// Apply runs f(in) on a worker and waits for the result (Python's apply).
// It blocks until the task ends, and with a Callback or ErrorCallback until
// that has run too. If ctx ends first, the task is cancelled (its worker
// stopped if it was running) and Apply returns the context's error: its
// cause, or an error matching ErrTimeout and context.DeadlineExceeded when
// its deadline passed. Errors: *RemoteError (f failed or panicked),
// *WorkerExitError (the worker died), ErrTimeout, *CodecError, ErrClosed,
// and before anything is submitted, ErrZeroFunc or an *OptionError for an
// invalid option. The cost is one round trip on a pipe plus encoding: a few
// microseconds for small values.
//
// With callbacks, if ctx ends while the task's callback waits its turn
// (callbacks run one at a time, so it may be queued behind a slow one),
// Apply returns context.Cause(ctx) once the task has ended, without waiting
// for the callback; the callback still runs once, later, with the task's
// own outcome. So an Apply with a callback called from a callback, which
// waits for a callback that cannot run before the calling one returns,
// returns only when ctx ends.
func Apply[In, Out any](ctx context.Context, p *Pool, f Func[In, Out], in In, opts ...CallOption) (Out, error) {
	fut, err := applyAsync(ctx, p, f, in, submitApply, opts)
	if err != nil {
		var zero Out
		return zero, err
	}
	p.readOwnAnswer(fut.t)
	if fut.ended == nil {
		<-fut.done
		return fut.val, fut.err
	}
	// With callbacks, done waits for the callback queue.
	select {
	case <-fut.done:
		return fut.val, fut.err
	case <-ctx.Done():
	}
	// ctx's watch ends the task if it has not ended (a running task once
	// its worker has exited): wait for that, not for its callback.
	select {
	case <-fut.done:
		return fut.val, fut.err
	case <-fut.ended:
	}
	select {
	case <-fut.done:
		return fut.val, fut.err
	default:
		var zero Out
		return zero, context.Cause(ctx)
	}
}

// ApplyAsync submits f(in) and returns at once with a Future (Python's
// apply_async). The error is about submission only: ErrClosed, a
// *CodecError for an argument that cannot be encoded, ErrZeroFunc, an
// *OptionError for an invalid option or a callback of the wrong type, or
// ctx's error while it waits for room in a bounded queue (WithQueueSize). The task's own outcome comes through the Future, and
// through Callback and ErrorCallback if given.
//
// ctx stays attached to the task after submission: if it is cancelled, the
// task is removed from the queue or its worker stopped, and the Future ends
// with context.Cause(ctx); if its deadline passes while the task runs, the
// Future ends with ErrTimeout. Submission costs a few allocations and, when
// a worker is free, one write system call on the calling goroutine.
func ApplyAsync[In, Out any](ctx context.Context, p *Pool, f Func[In, Out], in In, opts ...CallOption) (*Future[Out], error) {
	return applyAsync(ctx, p, f, in, submitWait, opts)
}

// TryApplyAsync is ApplyAsync that never waits for room in the queue: when
// the queue is full it returns ErrQueueFull at once.
func TryApplyAsync[In, Out any](ctx context.Context, p *Pool, f Func[In, Out], in In, opts ...CallOption) (*Future[Out], error) {
	return applyAsync(ctx, p, f, in, submitTry, opts)
}

// applyAsync submits one task, as mode says (see submitMode).
func applyAsync[In, Out any](ctx context.Context, p *Pool, f Func[In, Out], in In, mode submitMode, opts []CallOption) (*Future[Out], error) {
	cc, err := p.callConfig(f.name, opts)
	if err != nil {
		return nil, err
	}
	cb, err := typedCallback[Out](&cc)
	if err != nil {
		return nil, err
	}
	// The task and its future are allocated together.
	both := &struct {
		t   task
		fut Future[Out]
	}{}
	t, fut := &both.t, &both.fut
	if err := p.initTask(t, ctx, f.name, false, in, &cc); err != nil {
		return nil, err
	}
	*fut = Future[Out]{done: make(chan struct{}), p: p, t: t, cb: cb, ecb: cc.errCallback}
	if mode == submitApply && (cb != nil || cc.errCallback != nil) {
		fut.ended = make(chan struct{})
	}
	t.sink = fut
	if err := p.submit(t, mode); err != nil {
		return nil, err
	}
	return fut, nil
}
