package procpool

import (
	"context"
	"fmt"
	"time"

	"github.com/procpool/procpool/internal/wire"
)

// A CallOption configures one call (Apply, ApplyAsync, Map, Imap, ...). A
// call given an option whose value means nothing returns an *OptionError
// (errors.Is(err, ErrInvalidOption)) and submits nothing; each option's
// documentation says which values it accepts and what zero means.
type CallOption func(*callConfig)

type callConfig struct {
	callback    any // func(Out), checked against the call's result type
	errCallback func(error)
	chunkSize   int
	timeout     time.Duration
	retries     int
	hasRetries  bool
	window      int
	err         error // the first invalid option

	progress      func(Progress) // OnProgress's f, nil if none
	progressEvery time.Duration
}

func (c *callConfig) invalid(option, reason string) {
	if c.err == nil {
		c.err = &OptionError{Option: option, Reason: reason}
	}
}

// Callback runs f with the result of a successful task, in the parent, like
// Python's callback: one callback at a time, in completion order, on a
// goroutine of the pool, before the Future is ready. For MapAsync, f gets
// the whole result slice. A panic in f is recovered and counted in Stats.
// Passing a Callback whose type does not match the call's result type is an
// *OptionError from the call. f should be quick: callbacks queue up behind
// a slow one, without bound. f may submit tasks. It may call Close, Shutdown
// or Terminate: called from a callback, they do not wait for the callbacks
// (this one and those queued behind it), and a later call from another
// goroutine waits for everything (see Close). f must not wait for another
// goroutine that calls them, nor, without a ctx that ends, for an Apply with
// a callback (see Apply): those wait for the callbacks to finish. A nil f
// means no callback. Imap, ImapUnordered and ImapUnorderedIndexed yield
// their results and take no callbacks: passing one is an *OptionError from
// them.
func Callback[T any](f func(T)) CallOption {
	return func(c *callConfig) {
		if f != nil {
			c.callback = f
		}
	}
}

// ErrorCallback runs f with a task's error, in the parent, under the same
// rules as Callback. A nil f means no error callback.
func ErrorCallback(f func(error)) CallOption {
	return func(c *callConfig) { c.errCallback = f }
}

// ChunkSize sets how many items of a Map or Imap travel to a worker as one
// task. The default for Map and MapAsync is about len(items)/(4·processes),
// as in Python; for Imap, ImapUnordered and ImapUnorderedIndexed it is 1.
// 0 means that default; k < 0 is an error from the call.
func ChunkSize(k int) CallOption {
	return func(c *callConfig) {
		if k < 0 {
			c.invalid(fmt.Sprintf("ChunkSize(%d)", k), "need 0 (the default) or more")
		}
		c.chunkSize = k
	}
}

// Timeout bounds this call's tasks' run time, counted from the moment each
// starts on a worker, overriding WithTaskTimeout. 0 means no limit for
// this call's tasks, whatever WithTaskTimeout says; d < 0 is an error from
// the call.
func Timeout(d time.Duration) CallOption {
	return func(c *callConfig) {
		if d < 0 {
			c.invalid(fmt.Sprintf("Timeout(%v)", d), "need 0 (no limit) or more")
		}
		c.timeout = d
	}
}

// Retries overrides WithRetries for this call: 0 means no retries; n < 0 is
// an error from the call.
func Retries(n int) CallOption {
	return func(c *callConfig) {
		if n < 0 {
			c.invalid(fmt.Sprintf("Retries(%d)", n), "need 0 (no retries) or more")
		}
		c.retries, c.hasRetries = n, true
	}
}

// Window bounds how many chunks Imap, ImapUnordered and ImapUnorderedIndexed
// keep submitted ahead of the consumer (default 4 per worker process).
// Memory use is bounded by Window × ChunkSize items. 0 means the default;
// n < 0 is an error from the call. Other calls ignore it.
func Window(n int) CallOption {
	return func(c *callConfig) {
		if n < 0 {
			c.invalid(fmt.Sprintf("Window(%d)", n), "need 0 (the default) or more")
		}
		c.window = n
	}
}

// callConfig applies a call's options for a call of function fn. It returns
// ErrZeroFunc for the zero Func, and the *OptionError of the first invalid
// option.
func (p *Pool) callConfig(fn string, opts []CallOption) (callConfig, error) {
	cc := callConfig{timeout: p.cfg.taskTimeout, retries: p.cfg.retries}
	if fn == "" {
		return cc, ErrZeroFunc
	}
	if len(opts) == 0 {
		return cc, nil // cc stays on the stack: options take its address
	}
	return withCallOptions(cc, opts)
}

// withCallOptions applies opts to cc, which moves to the heap for them; not
// inlined, so that the move stays here, off the path of calls without
// options.
//
//go:noinline
func withCallOptions(cc callConfig, opts []CallOption) (callConfig, error) {
	for _, o := range opts {
		o(&cc)
	}
	return cc, cc.err
}

// noCallbacks returns an *OptionError if the call has callbacks: for Imap,
// which yields its results instead.
func noCallbacks(cc *callConfig) error {
	const reason = "Imap, ImapUnordered and ImapUnorderedIndexed take no callbacks: they yield each result"
	switch {
	case cc.callback != nil:
		return &OptionError{Option: "Callback", Reason: reason}
	case cc.errCallback != nil:
		return &OptionError{Option: "ErrorCallback", Reason: reason}
	}
	return nil
}

// typedCallback returns the callback as a func(T), or an error if its type
// does not fit.
func typedCallback[T any](cc *callConfig) (func(T), error) {
	if cc.callback == nil {
		return nil, nil
	}
	f, ok := cc.callback.(func(T))
	if !ok {
		var zero T
		return nil, &OptionError{Option: "Callback", Reason: fmt.Sprintf("it takes %T, but this call's result is %T", cc.callback, zero)}
	}
	return f, nil
}

// newTask encodes arg into a task frame for function fn.
func (p *Pool) newTask(ctx context.Context, fn string, chunk bool, arg any, cc *callConfig) (*task, error) {
	t := new(task)
	if err := p.initTask(t, ctx, fn, chunk, arg, cc); err != nil {
		return nil, err
	}
	return t, nil
}

// initTask encodes arg into t's task frame for function fn.
func (p *Pool) initTask(t *task, ctx context.Context, fn string, chunk bool, arg any, cc *callConfig) error {
	if err := ctx.Err(); err != nil {
		return context.Cause(ctx)
	}
	id := p.nextID.Add(1)
	frame, start := wire.BeginFrame(p.frameBuffer(fn, arg), wire.KindTask, id)
	var deadline int64
	if d, ok := ctx.Deadline(); ok {
		deadline = d.UnixNano()
	}
	frame = wire.AppendTaskHeaderExt(frame, chunk, fn, 0, deadline, int64(cc.timeout))
	frame, err := p.codec.Append(frame, arg)
	if err != nil {
		op := "encode argument"
		if chunk {
			op = "encode arguments"
		}
		return &CodecError{Op: op, Err: err}
	}
	if err := wire.EndFrame(frame, start); err != nil {
		return &CodecError{Op: "encode argument", Err: err}
	}
	if err := p.checkFrame(frame, start); err != nil {
		return &CodecError{Op: "encode argument", Err: err}
	}
	t.id, t.fn, t.chunk, t.frame, t.ctx, t.timeout, t.retries = id, fn, chunk, frame, ctx, cc.timeout, cc.retries
	return nil
}

// checkFrame returns an error wrapping wire.ErrFrameTooLarge if the frame
// that starts at frame[start] is over the frame limit, which the worker
// would refuse (and die of): the same check as the worker's reader.
func (p *Pool) checkFrame(frame []byte, start int) error {
	if n := wire.LengthOf(frame, start); !wire.Fits(n, p.cfg.maxFrame) {
		by := "WithMaxFrame"
		if p.cfg.launch != nil {
			by = "WithMaxFrame or the remote backend (a NATS server's max payload)"
		}
		return fmt.Errorf("%w: a frame of %d bytes (length field %d) is over the limit of %d set by %s", wire.ErrFrameTooLarge, len(frame)-start, n, p.cfg.maxFrame, by)
	}
	return nil
}

// deliver completes fut with (v, err), through the callback queue when the
// call has callbacks.
func deliver[T any](p *Pool, fut *Future[T], cb func(T), ecb func(error), v T, err error) {
	deliverQueued(p, fut, cb, ecb, v, err, false)
}

// deliverQueued is deliver that goes through the callback queue also when
// queued is true: after the reports OnProgress queued before it.
func deliverQueued[T any](p *Pool, fut *Future[T], cb func(T), ecb func(error), v T, err error, queued bool) {
	if cb == nil && ecb == nil && !queued {
		fut.set(v, err)
		return
	}
	p.cb.push(func() {
		defer fut.set(v, err)
		switch {
		case err == nil && cb != nil:
			cb(v)
		case err != nil && ecb != nil:
			ecb(err)
		}
	})
}

// frameBuffer returns an empty buffer for a task frame: for a large []byte
// argument, one of the right size, reused from an earlier task when one is
// free (a fresh megabyte costs more to allocate and fault in than to fill).
func (p *Pool) frameBuffer(fn string, arg any) []byte {
	b, ok := arg.([]byte)
	if !ok || len(b) < sharedMin {
		return make([]byte, 0, 64)
	}
	need := len(b) + len(fn) + 32
	if v, _ := p.bigFrames.Get().(*[]byte); v != nil && cap(*v) >= need {
		return (*v)[:0]
	}
	return make([]byte, 0, need)
}

// recycleFrame keeps the frame of an answered task for reuse, if it is large
// and nothing else can still refer to it: it went to one worker only, w,
// whose answer shows it has been written in full, and w's writer is not
// in a write (whose end would otherwise not be ordered before the reuse).
func (p *Pool) recycleFrame(t *task, w *worker) {
	if cap(t.frame) < sharedMin || t.requeued {
		return
	}
	w.outMu.Lock()
	writing := w.writing
	w.outMu.Unlock()
	if writing {
		return
	}
	b := t.frame[:0]
	t.frame = nil
	p.bigFrames.Put(&b)
}
