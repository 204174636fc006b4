package procpool

import (
	"context"
	"time"
)

// The dispatcher's core: accepting a task (submit), choosing a worker for
// it (an idle one first, else the least loaded with room in its pipeline;
// a submitter fills only the first slots, see submitterDepth), and getting
// its frame written once Pool.mu is released (unlockAndFlush).
// Answers are in answer.go; stops, deadlines, cancellations and memory
// limits in stop.go; a worker's death in exit.go; shared memory in shm.go.

// submitMode says how submit treats a full queue, and whether the caller
// waits for the task.
type submitMode uint8

const (
	submitWait  submitMode = iota // wait for room in a bounded queue until t.ctx ends
	submitTry                     // a full queue is ErrQueueFull
	submitApply                   // as submitWait, and the caller waits for t (Apply): it writes t's frame itself whatever its size, and reads its answer if t goes to an idle worker (reading.go)
)

// submit accepts t into the queue, as mode says.
func (p *Pool) submit(t *task, mode submitMode) error {
	p.mu.Lock()
	for {
		switch {
		case p.phase.closed():
			p.mu.Unlock()
			return ErrClosed
		case p.broken != nil:
			err := p.broken
			p.mu.Unlock()
			return err
		}
		if p.cfg.queueSize <= 0 || p.queue.len() < p.cfg.queueSize || p.hasFreeWorkerLocked() {
			break
		}
		if mode == submitTry {
			p.mu.Unlock()
			return ErrQueueFull
		}
		room := p.room
		p.mu.Unlock()
		select {
		case <-room:
		case <-t.ctx.Done():
			return context.Cause(t.ctx)
		}
		p.mu.Lock()
	}
	p.stats.accepted()
	p.queue.pushBack(t)
	if p.cfg.queueSize > 0 && p.queue.len() > p.cfg.queueSize {
		// Let in for a busy worker's free slot, the queue being at its
		// bound: fill the slot now, so that no more than queueSize tasks
		// wait (and a small bound does not starve the pipelines).
		p.dispatchLocked()
	} else {
		p.dispatchAsSubmitterLocked()
	}
	if mode == submitApply {
		p.callerReadsLocked(t)
		p.unlockAndFlush(t)
	} else {
		p.unlockAndFlush(nil)
	}
	if t.ctx.Done() != nil {
		// After the lock: a context already done cancels t at once, which
		// takes the lock.
		p.watch(t)
	}
	return nil
}

// hasFreeWorkerLocked reports whether a worker has room for a task.
func (p *Pool) hasFreeWorkerLocked() bool {
	for _, w := range p.workers {
		if p.canTakeTaskLocked(w, nil) {
			return true
		}
	}
	return false
}

// canTakeTaskLocked reports whether w can take t now (any task if t is nil).
// A chunk of a Map may wait behind one other task even when the worker's
// tasks are long: a Map's chunks are alike, and one waiting in the pipe
// saves the worker a round trip of idleness between chunks.
func (p *Pool) canTakeTaskLocked(w *worker, t *task) bool {
	depth := p.depthLocked(w)
	if t != nil && t.chunk && depth < 2 && p.cfg.depth >= 2 {
		depth = 2
	}
	return w.ready && !w.retiring && w.inflight.len() < depth &&
		(p.cfg.maxTasks <= 0 || w.sent < p.cfg.maxTasks)
}

// pipelineBelow is the run time under which a worker's tasks are pipelined.
// A task queued behind a running one waits for it; pipelining only short
// tasks keeps that wait short, while long tasks go to whichever worker is
// free first.
const pipelineBelow = time.Millisecond

// depthLocked is how many tasks w may have in flight: the configured depth
// while its recent tasks have been short, else 1.
func (p *Pool) depthLocked(w *worker) int {
	if w.svc < pipelineBelow {
		return p.cfg.depth
	}
	return 1
}

// submitterDepth is how many tasks a submitting goroutine lets a worker
// have in flight: the running one and the next, so that a worker never
// waits a round trip between two tasks (two callers of Apply on one worker
// pipeline as before). The rest of a pipeline is refilled by whoever reads
// the worker's answers, once it has handled the answers that arrived
// together (onFrame): one write for the batch. Were submitters to fill it
// too, many goroutines calling Apply at once would each write the task they
// dispatch, and a worker would take its tasks a write at a time: twice the
// writes and wake-ups of ApplyAsync's batches for the same tasks. A worker
// with tasks in flight always answers again (or dies, and its exit
// dispatches), so a task left queued for it is dispatched then. The one
// exception is a bounded queue at its bound (WithQueueSize): there submit
// fills any room itself, as the bound counts waiting tasks.
const submitterDepth = 2

// dispatchAsSubmitterLocked is submit's dispatch: dispatchLocked, but only
// to workers with fewer than submitterDepth tasks in flight.
func (p *Pool) dispatchAsSubmitterLocked() { p.dispatchUpToLocked(submitterDepth) }

// dispatchLocked hands queued tasks to workers: an idle worker first, else
// the least loaded one with room in its pipeline.
func (p *Pool) dispatchLocked() { p.dispatchUpToLocked(0) }

// dispatchUpToLocked is dispatchLocked, skipping workers with limit or
// more tasks in flight when limit > 0.
func (p *Pool) dispatchUpToLocked(limit int) {
	moved := false
	for p.queue.len() > 0 {
		next := p.queue.front()
		var best *worker
		for _, w := range p.workers {
			if limit > 0 && w.inflight.len() >= limit {
				continue
			}
			if p.canTakeTaskLocked(w, next) && (best == nil || w.inflight.len() < best.inflight.len()) {
				best = w
				if w.inflight.len() == 0 {
					break
				}
			}
		}
		if best == nil {
			break
		}
		t := p.queue.popFront()
		moved = true
		if t.done.Load() {
			continue
		}
		p.assignLocked(best, t)
	}
	if moved && p.cfg.queueSize > 0 {
		p.roomLocked()
	}
	if p.queue.len() > 0 {
		p.growLocked()
	}
}

func (p *Pool) assignLocked(w *worker, t *task) {
	t.w = w
	w.inflight.pushBack(t)
	w.sent++
	if w.inflight.len() == 1 {
		p.startLocked(w, t, time.Now())
	}
	if frame, dst, src, ok := p.sharedFrameLocked(w, t); ok {
		t.sentBytes = len(frame)
		w.enqueueShared(frame, dst, src)
	} else {
		t.sentBytes = len(t.frame)
		w.enqueue(t.frame)
	}
	w.pipeBytes += t.sentBytes
	w.needReaderLocked()
	p.flushLater(w)
	if p.cfg.maxTasks > 0 && w.sent >= p.cfg.maxTasks {
		w.retireLocked(ReasonRecycled, nil)
	}
}

// flushLater notes that w has frames to write once p.mu is released.
func (p *Pool) flushLater(w *worker) {
	if !w.flushQueued {
		w.flushQueued = true
		p.toFlush = append(p.toFlush, w)
	}
}

// unlockAndFlush releases p.mu, then kicks the reader goroutines that have
// reading to do (readKick) and writes the frames that dispatching queued:
// small batches on this goroutine, large ones by the writers. own, if not
// nil, is the task of a synchronous Apply, whose caller is about to wait
// for its worker anyway: it writes its own frame to that worker whatever
// its size (flushAny, reading.go).
func (p *Pool) unlockAndFlush(own *task) {
	if len(p.toFlush) == 0 {
		p.mu.Unlock()
		return
	}
	type job struct {
		w    *worker
		kick bool
		mode flushMode
	}
	var local [4]job // no allocation for a dispatch that touches few workers
	jobs := local[:0]
	if len(p.toFlush) > len(local) {
		jobs = make([]job, 0, len(p.toFlush))
	}
	var waiter *worker
	ownBytes := 0
	if own != nil {
		waiter, ownBytes = own.w, own.sentBytes
	}
	for i, w := range p.toFlush {
		w.flushQueued = false
		j := job{w: w, kick: w.takeKickLocked(), mode: flushHandOver}
		switch {
		case i >= len(local):
			// A dispatch that touches many workers leaves their writing
			// to their writers.
		case w == waiter:
			j.mode = flushAny
		case w.pipeBytes <= inlinePipeBytes:
			// The worker's pipe is far from full: this write cannot
			// block.
			j.mode = flushSmall
		}
		jobs = append(jobs, j)
		p.toFlush[i] = nil
	}
	p.toFlush = p.toFlush[:0]
	p.mu.Unlock()
	for _, j := range jobs {
		if j.kick {
			j.w.kickReader()
		}
	}
	for _, j := range jobs {
		j.w.flush(j.mode, ownBytes)
	}
}

// inlinePipeBytes bounds the bytes of unanswered tasks in a worker's pipe
// under which a dispatching goroutine writes to it itself: half the smallest
// pipe buffer Linux gives (64 KiB), so that such a write never blocks.
const inlinePipeBytes = 32 << 10

// startLocked marks t as the task now running on w, as far as the parent
// can tell (the worker has answered every task before it), and arms its
// deadline.
func (p *Pool) startLocked(w *worker, t *task, now time.Time) {
	t.started = now
	switch {
	case t.done.Load():
		// Cancelled while it waited in the pipe. The worker skips it if the
		// Cancel frame came in time; if it runs it anyway and does not
		// answer within the grace period, stop it.
		t.timer = time.AfterFunc(p.cfg.killGrace, func() { p.stopIfRunning(w, t) })
	case t.timeout > 0:
		t.timer = time.AfterFunc(t.timeout, func() { p.expire(w, t, nil) })
	}
}
