package procpool

import (
	"fmt"
	"sync"
	"time"
)

// Progress is how far a Map, MapAsync, Imap, ImapUnordered or
// ImapUnorderedIndexed has come, as OnProgress reports it.
type Progress struct {
	Done   int // items that have ended, those that failed included
	Failed int // items among Done that failed
	Total  int // items in all; -1 while unknown (an Imap whose input has not been read to its end)
}

// defaultProgressEvery is OnProgress's interval when given 0.
const defaultProgressEvery = 100 * time.Millisecond

// OnProgress reports the progress of a Map, MapAsync, Imap, ImapUnordered or
// ImapUnorderedIndexed to f, on the pool's callback goroutine (so f runs
// one call at a time, in order with the call's callbacks), at most once per
// every (0 means 100 ms; every < 0 is an *OptionError from the call), and
// once more when every item has ended: that final call, with Done equal to
// Total, comes exactly once, and before Map returns or the MapAsync Future
// is ready. Counts never decrease from one call to the next. Items count as
// their chunks end, so with large chunks the counts move in steps. An Imap
// that stops early (the consumer breaks out, ctx ends) may get no final
// call; if its input had been read to the end, the items it cancels still
// count, as failed, and the final call comes.
// Apply and ApplyAsync ignore it.
//
// f must be quick, like a callback: the calls queue behind it. The cost is
// a lock and a clock reading per chunk, and a queued call per interval.
func OnProgress(f func(Progress), every time.Duration) CallOption {
	return func(c *callConfig) {
		if every < 0 {
			c.invalid(fmt.Sprintf("OnProgress(f, %v)", every), "need 0 (every 100 ms) or more")
		}
		if every == 0 {
			every = defaultProgressEvery
		}
		c.progress, c.progressEvery = f, every
	}
}

// progress counts a call's settled items and queues its reports.
type progress struct {
	p     *Pool
	f     func(Progress)
	every time.Duration

	mu     sync.Mutex
	done   int
	failed int
	total  int       // -1: unknown yet
	last   time.Time // when the last report was queued
	queued bool      // a report is queued and has not read the counts yet
	final  bool      // a report has seen every item ended: no more reports
}

// newProgress returns the reporter of a call with total items (-1: not
// known yet), or nil if the call has no OnProgress.
func newProgress(p *Pool, cc *callConfig, total int) *progress {
	if cc.progress == nil {
		return nil
	}
	return &progress{p: p, f: cc.progress, every: cc.progressEvery, total: total}
}

// add counts done more items ended, failed of them failed.
func (r *progress) add(done, failed int) {
	if r == nil || done == 0 {
		return
	}
	r.mu.Lock()
	r.done += done
	r.failed += failed
	r.queueLocked()
}

// stop ends the reports: the call failed to submit, and returns an error.
func (r *progress) stop() {
	if r == nil {
		return
	}
	r.mu.Lock()
	r.final = true
	r.mu.Unlock()
}

// setTotal makes the total known.
func (r *progress) setTotal(total int) {
	if r == nil {
		return
	}
	r.mu.Lock()
	r.total = total
	r.queueLocked()
}

// queueLocked queues a report if one is due: the interval has passed since
// the last, or every item has ended. It unlocks r.mu.
func (r *progress) queueLocked() {
	complete := r.total >= 0 && r.done >= r.total
	if r.queued || r.final || !complete && time.Since(r.last) < r.every {
		r.mu.Unlock()
		return
	}
	r.queued = true
	r.last = time.Now()
	r.mu.Unlock()
	r.p.cb.push(r.report)
}

// report runs on the callback goroutine: it reads the counts as they are
// now, and calls f with them unless an earlier report was the final one.
func (r *progress) report() {
	r.mu.Lock()
	r.queued = false
	if r.final {
		r.mu.Unlock()
		return
	}
	pr := Progress{Done: r.done, Failed: r.failed, Total: r.total}
	r.final = r.total >= 0 && r.done >= r.total
	r.mu.Unlock()
	r.f(pr)
}
