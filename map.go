package procpool

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"sync"

	"github.com/procpool/procpool/internal/wire"
)

// Map runs f on every item of xs on the pool's workers and returns the
// results in input order (Python's map). Items travel in chunks
// (ChunkSize). It blocks until every chunk has ended.
//
// If items fail, Map returns the results of the others all the same, with
// the zero value in each failed item's place, and a *MapError that lists
// every failed index with its error (Index is the lowest). An item fails
// with f's error or panic (a *RemoteError); with the worker's exit (a
// *WorkerExitError) if its worker died while running it — the items of its
// chunk that had finished keep their outcomes and the others run again
// elsewhere; or with the context's cause if ctx ended before it finished:
// the chunks still queued or running are then cancelled, and their items
// fail with it (other endings, ErrTerminated or a broken pool's error, fail
// the items they end in the same way). Before anything runs, Map returns the submission errors of
// MapAsync, and no results.
//
// With a Callback, ErrorCallback or OnProgress, the results come through
// the pool's callback queue; called from a callback, such a Map waits for
// a queue that cannot move before it returns, so it returns only when ctx
// ends: then, once every item has ended, with context.Cause(ctx) and no
// results (the callbacks still run, later).
func Map[In, Out any](ctx context.Context, p *Pool, f Func[In, Out], xs []In, opts ...CallOption) ([]Out, error) {
	fut, err := MapAsync(ctx, p, f, xs, opts...)
	if err != nil {
		return nil, err
	}
	if fut.ended == nil {
		<-fut.done
		return fut.val, fut.err
	}
	// With callbacks or OnProgress, the result comes through the callback
	// queue, which a Map called from a callback would wait for in vain: once
	// ctx ends, wait only for every item to settle (ctx's watch cancels the
	// chunks left), as Apply does.
	select {
	case <-fut.done:
		return fut.val, fut.err
	case <-ctx.Done():
	}
	select {
	case <-fut.done:
		return fut.val, fut.err
	case <-fut.ended:
	}
	select {
	case <-fut.done:
		return fut.val, fut.err
	default:
		return nil, context.Cause(ctx)
	}
}

// MapAsync is Map that returns at once with a Future of the result slice
// (Python's map_async). The error is about submission only: ErrClosed,
// ErrZeroFunc, an *OptionError for an invalid option or a callback of the
// wrong type, a *CodecError for a chunk that cannot be encoded, or ctx's
// error; chunks already submitted are then cancelled. A Callback gets the
// whole []Out. If items fail, the Future's Get returns the results of the
// others with a *MapError, as Map does, and an ErrorCallback gets the
// *MapError.
func MapAsync[In, Out any](ctx context.Context, p *Pool, f Func[In, Out], xs []In, opts ...CallOption) (*Future[[]Out], error) {
	cc, err := p.callConfig(f.name, opts)
	if err != nil {
		return nil, err
	}
	cb, err := typedCallback[[]Out](&cc)
	if err != nil {
		return nil, err
	}
	chunk := cc.chunkSize
	if chunk <= 0 {
		chunk = defaultChunk(len(xs), p.cfg.processes)
	}
	fut := newFuture[[]Out]()
	prog := newProgress(p, &cc, len(xs))
	agg := &mapAgg[Out]{fn: f.name, out: make([]Out, len(xs)), left: len(xs), fut: fut, cb: cb, ecb: cc.errCallback, prog: prog}
	if cb != nil || cc.errCallback != nil || prog != nil {
		fut.ended = make(chan struct{}) // the result goes through the callback queue
	}
	if len(xs) == 0 {
		prog.setTotal(0) // the final report
		if fut.ended != nil {
			close(fut.ended)
		}
		deliverQueued(p, fut, cb, cc.errCallback, agg.out, nil, prog != nil)
		return fut, nil
	}
	var tasks []*task
	fut.cancel = func() {
		for _, t := range tasks {
			p.cancelTask(t, context.Canceled)
		}
	}
	for lo := 0; lo < len(xs); lo += chunk {
		hi := min(lo+chunk, len(xs))
		t, err := p.newTask(ctx, f.name, true, xs[lo:hi], &cc)
		if err == nil {
			ms := &mapSink[Out]{agg: agg, lo: lo, hi: hi}
			ms.set.init(hi - lo)
			t.sink, t.items = ms, hi-lo
			err = p.submit(t, submitWait)
		}
		if err != nil {
			prog.stop() // the call failed: no report after it returns
			for _, t := range tasks {
				p.cancelTask(t, context.Canceled)
			}
			return nil, err
		}
		tasks = append(tasks, t)
	}
	return fut, nil
}

// defaultChunk is Python's rule: about len/(4·workers), at least 1.
func defaultChunk(n, workers int) int {
	c := n / (4 * max(workers, 1))
	if n%(4*max(workers, 1)) != 0 {
		c++
	}
	return max(c, 1)
}

// mapAgg gathers the items of one MapAsync, as their chunks settle them.
// A chunk's sink writes its items' results into out (each item's slot is
// written by the one sink call that settles it) and records its failures
// between begin and end.
type mapAgg[Out any] struct {
	mu    sync.Mutex
	fn    string
	out   []Out
	left  int         // items not settled yet
	fails []ItemError // every failed item, in the order they settled; guarded by mu
	fut   *Future[[]Out]
	cb    func([]Out)
	ecb   func(error)
	prog  *progress // nil without OnProgress
	// failsAt is len(fails) at begin: the failures recorded since are
	// the current sink call's. Guarded by mu.
	failsAt int
}

// begin starts recording a sink call's outcomes: it locks a.mu until end.
// Between them only fail is called (no decoding, no user code).
func (a *mapAgg[Out]) begin() {
	a.mu.Lock()
	a.failsAt = len(a.fails)
}

// fail records that item i failed with err; a.mu is held.
func (a *mapAgg[Out]) fail(i int, err error) {
	a.fails = append(a.fails, ItemError{Index: i, Err: err})
}

// end counts n more items settled and unlocks a.mu; the call that settles
// the last item delivers the results, with a *MapError if any item failed.
//
// The progress is counted under a.mu too, so that the call that settles the
// last item is the one that queues the final report, before it delivers.
func (a *mapAgg[Out]) end(p *Pool, n int) {
	a.left -= n
	last := n > 0 && a.left == 0
	a.prog.add(n, len(a.fails)-a.failsAt)
	a.mu.Unlock()
	if !last {
		return
	}
	// Every item has settled: no other call touches a now.
	if a.fut.ended != nil {
		close(a.fut.ended)
	}
	queued := a.prog != nil
	if len(a.fails) == 0 {
		deliverQueued(p, a.fut, a.cb, a.ecb, a.out, nil, queued)
		return
	}
	fails := a.fails
	a.fails = nil
	if !slices.IsSortedFunc(fails, cmpItemErrors) {
		slices.SortFunc(fails, cmpItemErrors)
	}
	deliverQueued(p, a.fut, a.cb, a.ecb, a.out, &MapError{Index: fails[0].Index, Err: fails[0].Err, Errors: fails}, queued)
}

func cmpItemErrors(a, b ItemError) int { return cmp.Compare(a.Index, b.Index) }

// mapSink is the sink of one chunk of a MapAsync: items [lo, hi) of the
// input.
type mapSink[Out any] struct {
	agg    *mapAgg[Out]
	lo, hi int
	set    itemSet
}

func (s *mapSink[Out]) result(p *Pool, body []byte, from int) bool {
	ranges := s.set.claim(from, s.hi-s.lo)
	if len(ranges) != 1 || ranges[0] != [2]int{from, s.hi - s.lo} {
		return false // cannot happen: only the task's own ending settles its items from from on
	}
	out := s.agg.out[s.lo+from : s.hi : s.hi]
	vals, itemErrs, err := decodeChunk[Out](p, body, out)
	// The remote errors are built before the lock is taken.
	var remote []error
	switch {
	case err != nil:
		clear(out) // a decoding that failed may have written some
	default:
		if len(vals) > 0 && &vals[0] != &out[0] {
			copy(out, vals)
		}
		if len(itemErrs) > 0 {
			remote = make([]error, len(itemErrs))
			var zero Out
			for k, ie := range itemErrs {
				remote[k] = chunkItemError(remoteFromBody(s.agg.fn, ie.Err))
				out[ie.Index] = zero // a failed item's result is the zero value
			}
		}
	}
	a := s.agg
	a.begin()
	switch {
	case err != nil:
		for i := s.lo + from; i < s.hi; i++ {
			a.fail(i, err)
		}
	default:
		for k, ie := range itemErrs {
			a.fail(s.lo+from+ie.Index, remote[k])
		}
	}
	a.end(p, len(out))
	return err == nil && len(itemErrs) == 0
}

func (s *mapSink[Out]) fail(p *Pool, err error, from int) {
	ranges := s.set.claim(from, s.hi-s.lo)
	n := 0
	a := s.agg
	a.begin()
	for _, r := range ranges {
		for i := r[0]; i < r[1]; i++ {
			a.fail(s.lo+i, err)
		}
		n += r[1] - r[0]
	}
	a.end(p, n)
}

func (s *mapSink[Out]) settle(p *Pool, from int, pc *itemPiece) {
	ranges := s.set.claim(from, from+pc.count)
	vals, verr := decodePiece[Out](p, pc)
	n, failed := 0, 0
	for _, r := range ranges {
		for i := r[0]; i < r[1]; i++ {
			v, err := pieceItem(pc, vals, verr, i-from)
			s.agg.out[s.lo+i] = v // the zero value if the item failed
			n++
			if err != nil {
				failed++
			}
		}
	}
	a := s.agg
	a.begin()
	if failed > 0 {
		for _, r := range ranges {
			for i := r[0]; i < r[1]; i++ {
				if _, err := pieceItem(pc, vals, verr, i-from); err != nil {
					a.fail(s.lo+i, err)
				}
			}
		}
	}
	a.end(p, n)
}

// decodeChunk splits a chunk's Result body into its per-item errors and its
// results, decoded into dst when the codec can (dst's length is the number
// of items the body answers). An item error for an item past them is a
// *CodecError, as a body that does not parse is.
func decodeChunk[Out any](p *Pool, body []byte, dst []Out) ([]Out, []wire.ItemError, error) {
	itemErrs, payload, err := wire.ParseChunkResult(body)
	if err != nil {
		return nil, nil, &CodecError{Op: "decode chunk result", Err: err}
	}
	// Indexes increase (ParseChunkResult checks): the last is the highest.
	if k := len(itemErrs); k > 0 && itemErrs[k-1].Index >= len(dst) {
		return nil, nil, &CodecError{Op: "decode chunk result", Err: fmt.Errorf("%w: item error for item %d of a chunk of %d", wire.ErrMalformed, itemErrs[k-1].Index, len(dst))}
	}
	vals := dst[:0]
	if err := p.codec.Unmarshal(payload, &vals); err != nil {
		return nil, nil, &CodecError{Op: "decode results", Err: err}
	}
	if len(vals) != len(dst) {
		return nil, nil, &CodecError{Op: "decode results", Err: errCount(len(vals), len(dst))}
	}
	return vals, itemErrs, nil
}

// Imap runs f over a sequence lazily and yields the results in input order
// (Python's imap): it reads the input only as fast as results are consumed,
// keeping at most Window chunks of ChunkSize items in flight, so memory stays
// flat for any length of input. It blocks, between yields, on reading the
// input and on the next result.
//
// Each item yields its own result or error, in input order, whatever the
// window and chunk size. An item's error is an *ItemError whose Index is the
// item's position in the input (counting from 0 in the order seq yielded
// it), and which unwraps to the cause:
//   - f's error or panic is a *RemoteError; an item whose worker died while
//     running it gets the *WorkerExitError (the items of its chunk that had
//     finished keep their outcomes, the others run again elsewhere);
//   - an item the codec cannot encode gets a *CodecError in its place,
//     and does not run; the other items of its chunk still run, and Imap
//     goes on with the rest of the input (break out of the loop to stop at
//     the first error, as Python's imap does);
//   - if a chunk cannot be submitted (the pool is closed or broken, or ctx
//     has ended), the items before it yield their outcomes first, then each
//     of its items yields that error (ErrClosed, an error wrapping
//     ErrPoolBroken, or ctx's cause), and Imap stops: it reads no more
//     input.
//
// Two errors belong to no item and are yielded once, as they are, not as
// *ItemError: ctx's cause when ctx has ended before the next
// chunk is read, and the error of a call that cannot start (ErrZeroFunc,
// an *OptionError for an invalid option), which reads no input.
//
// Breaking out of the loop, or ctx ending, cancels the chunks still queued
// or running and stops reading the input.
func Imap[In, Out any](ctx context.Context, p *Pool, f Func[In, Out], seq iter.Seq[In], opts ...CallOption) iter.Seq2[Out, error] {
	return func(yield func(Out, error) bool) {
		imap(ctx, p, f, seq, true, opts, func(i int, v Out, err error) bool {
			return yield(v, itemError(i, err))
		})
	}
}

// ImapUnordered is Imap that yields the chunks' outcomes in the order they
// complete (Python's imap_unordered); within a chunk, items keep their input
// order. Errors follow Imap's rules, in completion order: each item's error
// is an *ItemError with the item's index in the input; an item that cannot
// be encoded yields its error as soon as its chunk has been read, and when
// a chunk cannot be submitted its error comes in the order the failure
// happened, the chunks already in flight still yield their outcomes, and
// ImapUnordered then stops. To know which input a result came from, use
// ImapUnorderedIndexed.
func ImapUnordered[In, Out any](ctx context.Context, p *Pool, f Func[In, Out], seq iter.Seq[In], opts ...CallOption) iter.Seq2[Out, error] {
	return func(yield func(Out, error) bool) {
		imap(ctx, p, f, seq, false, opts, func(i int, v Out, err error) bool {
			return yield(v, itemError(i, err))
		})
	}
}

// Indexed is a result of ImapUnorderedIndexed with the position of its item
// in the input: Index counts from 0 in the order the input sequence yielded
// the items, or is -1 for an error that belongs to no item.
type Indexed[T any] struct {
	Index int
	Value T
}

// ImapUnorderedIndexed is ImapUnordered that also yields, with each outcome,
// the index of its item in the input, so that a result can be paired with
// its input without carrying the input in the output. Every item read from
// seq is yielded exactly once, with its index, unless the loop breaks: with
// its result and a nil error, or with the zero Value and the *ItemError of
// the same Index. An error that belongs to no item (see Imap) comes with
// Index -1. It blocks, costs and stops as ImapUnordered does.
func ImapUnorderedIndexed[In, Out any](ctx context.Context, p *Pool, f Func[In, Out], seq iter.Seq[In], opts ...CallOption) iter.Seq2[Indexed[Out], error] {
	return func(yield func(Indexed[Out], error) bool) {
		imap(ctx, p, f, seq, false, opts, func(i int, v Out, err error) bool {
			return yield(Indexed[Out]{Index: i, Value: v}, itemError(i, err))
		})
	}
}

// itemError wraps the error of input item i in an *ItemError; i < 0 means
// an error that belongs to no item, returned as it is.
func itemError(i int, err error) error {
	if err == nil || i < 0 {
		return err
	}
	return &ItemError{Index: i, Err: err}
}

// imapChunk is one chunk of an Imap: up to ChunkSize consecutive items of
// the input. The items that could be encoded travel as one task, each of
// them getting a value or an error, settled once; the others are listed in
// bad. If the task could not be submitted, err is each of its items' error.
type imapChunk[Out any] struct {
	fn    string
	base  int // the input index of the chunk's first item
	n     int // items in the task
	vals  []Out
	errs  []error // per item of the task, nil if none failed; guarded by set.mu while the chunk is in flight
	set   itemSet
	err   error      // the task was not accepted: each of its n items yields it
	bad   []itemFail // items not sent, by position in the chunk, ascending
	stop  bool       // the chunk could not be submitted: Imap ends with it
	done  chan struct{}
	ready chan<- *imapChunk[Out] // ImapUnordered's completion channel
	prog  *progress              // nil without OnProgress
}

// itemFail is an item of a chunk that was not sent: its position in the
// chunk and its error.
type itemFail struct {
	pos int
	err error
}

func (c *imapChunk[Out]) setErr(i int, err error) {
	c.set.mu.Lock()
	if c.errs == nil {
		c.errs = make([]error, c.n)
	}
	c.errs[i] = err
	c.set.mu.Unlock()
}

func (c *imapChunk[Out]) result(p *Pool, body []byte, from int) bool {
	ranges := c.set.claim(from, c.n)
	if len(ranges) != 1 || ranges[0] != [2]int{from, c.n} {
		return false // cannot happen: only the task's own ending settles its items from from on
	}
	vals, itemErrs, err := decodeChunk[Out](p, body, c.vals[from:])
	ok := err == nil && len(itemErrs) == 0
	switch {
	case err != nil:
		for i := from; i < c.n; i++ {
			c.setErr(i, err)
		}
		c.prog.add(c.n-from, c.n-from)
	default:
		if len(vals) > 0 && &vals[0] != &c.vals[from] {
			copy(c.vals[from:], vals)
		}
		for _, ie := range itemErrs {
			c.setErr(from+ie.Index, chunkItemError(remoteFromBody(c.fn, ie.Err)))
		}
		c.prog.add(c.n-from, len(itemErrs))
	}
	if c.set.written(count(ranges)) {
		c.end()
	}
	return ok
}

func (c *imapChunk[Out]) fail(p *Pool, err error, from int) {
	ranges := c.set.claim(from, c.n)
	for _, r := range ranges {
		for i := r[0]; i < r[1]; i++ {
			c.setErr(i, err)
		}
	}
	c.prog.add(count(ranges), count(ranges))
	if c.set.written(count(ranges)) {
		c.end()
	}
}

func (c *imapChunk[Out]) settle(p *Pool, from int, pc *itemPiece) {
	ranges := c.set.claim(from, from+pc.count)
	vals, verr := decodePiece[Out](p, pc)
	failed := 0
	for _, r := range ranges {
		for i := r[0]; i < r[1]; i++ {
			v, err := pieceItem(pc, vals, verr, i-from)
			c.vals[i] = v
			if err != nil {
				c.setErr(i, err)
				failed++
			}
		}
	}
	c.prog.add(count(ranges), failed)
	if c.set.written(count(ranges)) {
		c.end()
	}
}

func (c *imapChunk[Out]) end() {
	close(c.done)
	if c.ready != nil {
		c.ready <- c // buffered for the whole window: never blocks
	}
}

// imap runs an Imap, ordered or not, calling yield with each outcome and the
// index of its item in the input (-1 for an error that belongs to no item).
func imap[In, Out any](ctx context.Context, p *Pool, f Func[In, Out], seq iter.Seq[In], ordered bool, opts []CallOption, yield func(int, Out, error) bool) {
	var zero Out
	cc, err := p.callConfig(f.name, opts)
	if err == nil {
		err = noCallbacks(&cc)
	}
	if err != nil {
		yield(-1, zero, err) // ErrZeroFunc or an invalid option: nothing was submitted
		return
	}
	chunk := max(cc.chunkSize, 1)
	window := cc.window
	if window <= 0 {
		window = 4 * p.cfg.processes
	}
	prog := newProgress(p, &cc, -1)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	next, stop := iter.Pull(seq)
	defer stop()

	var pending deque[*imapChunk[Out]] // in input order
	var ready chan *imapChunk[Out]
	if !ordered {
		ready = make(chan *imapChunk[Out], window)
	}
	// inFlight counts the chunks submitted or failed and not yet
	// yielded; stopped: a chunk could not be submitted, read no more;
	// read: the items read from the input so far.
	inFlight, exhausted, stopped, read := 0, false, false, 0
	totalKnown := false
	items := make([]In, 0, chunk)
	for {
		for !exhausted && !stopped && inFlight < window {
			var c *imapChunk[Out]
			if ctx.Err() != nil {
				c = &imapChunk[Out]{base: read, err: context.Cause(ctx), stop: true, done: make(chan struct{}), ready: ready}
				c.end()
			} else {
				items = items[:0]
				for len(items) < chunk {
					x, ok := next()
					if !ok {
						exhausted = true
						break
					}
					items = append(items, x)
				}
				if len(items) == 0 {
					break
				}
				c = submitChunk[In, Out](ctx, p, f.name, read, items, &cc, ready, prog)
				read += len(items)
			}
			inFlight++
			stopped = c.stop
			if ordered {
				pending.pushBack(c)
			}
		}
		if exhausted && !stopped && !totalKnown {
			prog.setTotal(read)
			totalKnown = true
		}
		if inFlight == 0 {
			return
		}
		var c *imapChunk[Out]
		if ordered {
			c = pending.popFront()
			<-c.done
		} else {
			c = <-ready
		}
		inFlight--
		if !yieldChunk(c, yield) {
			return
		}
	}
}

// submitChunk encodes items (the input's, from index base on) as one task
// and submits it. If the chunk cannot be encoded, each item is encoded alone
// to find the ones that cannot: they get their own *CodecError, and the
// others are sent as the chunk (work done only on failure). The chunk returned has ended already unless its task was
// accepted.
func submitChunk[In, Out any](ctx context.Context, p *Pool, fn string, base int, items []In, cc *callConfig, ready chan<- *imapChunk[Out], prog *progress) *imapChunk[Out] {
	c := &imapChunk[Out]{fn: fn, base: base, n: len(items), done: make(chan struct{}), ready: ready, prog: prog}
	// Items that end here, without a task, count now.
	defer func() {
		if n := len(c.bad) + c.n; c.err != nil {
			prog.add(n, n)
		} else {
			prog.add(len(c.bad), len(c.bad))
		}
	}()
	t, err := p.newTask(ctx, fn, true, items, cc)
	var ce *CodecError
	if err != nil && errors.As(err, &ce) {
		var good []In
		for i := range items {
			// Encoded as it would travel alone; ctx plays no part here.
			if _, ierr := p.newTask(context.Background(), fn, true, items[i:i+1], cc); ierr != nil {
				c.bad = append(c.bad, itemFail{pos: i, err: ierr})
			} else {
				good = append(good, items[i])
			}
		}
		switch {
		case len(c.bad) == 0:
			// No item fails alone: the chunk as a whole does (over the
			// frame limit). Each of its items gets that error.
			c.err = err
			c.end()
			return c
		case len(good) == 0:
			c.n, err = 0, nil
		default:
			c.n = len(good)
			t, err = p.newTask(ctx, fn, true, good, cc)
		}
		if err == nil && t == nil { // every item failed alone
			c.end()
			return c
		}
	}
	if err == nil {
		c.vals = make([]Out, c.n)
		c.set.init(c.n)
		t.sink, t.items = c, c.n
		if err = p.submit(t, submitWait); err == nil {
			return c
		}
	}
	// Not accepted: its sink will never be called.
	c.err = err
	c.stop = !errors.As(err, &ce)
	c.end()
	return c
}

// yieldChunk yields a finished chunk's items in their order, with their
// input indexes; false means the consumer stopped.
func yieldChunk[Out any](c *imapChunk[Out], yield func(int, Out, error) bool) bool {
	var zero Out
	if c.n+len(c.bad) == 0 {
		// A stop before any item was read: ctx ended.
		return yield(-1, zero, c.err)
	}
	b, g := 0, 0 // next bad item, next item sent
	for pos := range c.n + len(c.bad) {
		i := c.base + pos
		switch {
		case b < len(c.bad) && c.bad[b].pos == pos:
			if !yield(i, zero, c.bad[b].err) {
				return false
			}
			b++
			continue
		case c.err != nil:
			if !yield(i, zero, c.err) {
				return false
			}
		case c.errs != nil && c.errs[g] != nil:
			if !yield(i, zero, c.errs[g]) {
				return false
			}
		default:
			if !yield(i, c.vals[g], nil) {
				return false
			}
		}
		g++
	}
	return true
}
