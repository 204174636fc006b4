package procpool

import (
	"context"
	"time"
)

// The dispatcher's core: accepting a task (submit), choosing a worker for
// it (an idle one first, else the least loaded with room in its pipeline),
// and getting its frame written once Pool.mu is released (unlockAndFlush).
// Answers are in answer.go; stops, deadlines, cancellations and memory
// limits in stop.go; a worker's death in exit.go; shared memory in shm.go.

// submit accepts t into the queue. With block, it waits for room in a
// bounded queue until t.ctx ends; without, a full queue is ErrQueueFull.
// With wait, the caller is about to wait for t (Apply): it writes t's frame
// itself whatever its size.
func (p *Pool) submit(t *task, block, wait bool) error {
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
		if !block {
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
	p.dispatchLocked()
	var waiter *worker
	if wait {
		waiter = t.w
		if w := t.w; w != nil && w.kickPending && w.inflight.len() == 1 {
			// t went to an idle worker: the caller reads the answer itself.
			w.reader, w.kickPending = readCaller, false
			t.callerReads = w
		}
	}
	p.unlockAndFlush(waiter, t.sentBytes)
	if t.ctx.Done() != nil {
		// After the lock: a context already done cancels t at once, which
		// takes the lock.
		p.watch(t)
	}
	return nil
}

func (p *Pool) hasFreeWorkerLocked() bool {
	for _, w := range p.workers {
		if p.canTakeLocked(w) {
			return true
		}
	}
	return false
}

func (p *Pool) canTakeLocked(w *worker) bool { return p.canTakeTaskLocked(w, nil) }

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

// dispatchLocked hands queued tasks to workers: an idle worker first, else
// the least loaded one with room in its pipeline.
func (p *Pool) dispatchLocked() {
	moved := false
	for p.queue.len() > 0 {
		next := p.queue.front()
		var best *worker
		for _, w := range p.workers {
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
	if w.reader == readNone {
		w.reader = readGoroutine
		w.kickPending = true
	}
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

// unlockAndFlush releases p.mu, then writes the frames that dispatching
// queued: small batches on this goroutine, large ones by the writers. The
// worker waiter, if any, gets everything written by this goroutine, which
// is about to wait for that worker anyway (a synchronous Apply).
func (p *Pool) unlockAndFlush(waiter *worker, own int) {
	if len(p.toFlush) == 0 {
		p.mu.Unlock()
		return
	}
	var local [4]*worker
	var modes [4]flushMode
	ws := local[:0]
	if len(p.toFlush) > len(local) {
		ws = make([]*worker, 0, len(p.toFlush))
	}
	var kicks [4]bool
	for i, w := range p.toFlush {
		w.flushQueued = false
		ws = append(ws, w)
		kick := w.kickPending
		w.kickPending = false
		if i < len(kicks) {
			kicks[i] = kick
		} else if kick {
			defer w.kickReader() // rare: more than 4 workers in one dispatch
		}
		if i < len(modes) {
			switch {
			case w == waiter:
				modes[i] = flushAny
			case w.pipeBytes <= inlinePipeBytes:
				// The worker's pipe is far from full: this write cannot
				// block.
				modes[i] = flushSmall
			default:
				modes[i] = flushHandOver
			}
		}
		p.toFlush[i] = nil
	}
	p.toFlush = p.toFlush[:0]
	p.mu.Unlock()
	for i, w := range ws {
		if i < len(kicks) && kicks[i] {
			w.kickReader()
		}
	}
	for i, w := range ws {
		mode := flushHandOver
		if i < len(modes) {
			mode = modes[i]
		}
		w.flush(mode, own)
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
