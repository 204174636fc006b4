package procpool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"time"

	"github.com/procpool/procpool/internal/supervise"
	"github.com/procpool/procpool/internal/wire"
)

// submit accepts t into the queue. With block, it waits for room in a
// bounded queue until t.ctx ends; without, a full queue is ErrQueueFull.
// With wait, the caller is about to wait for t (Apply): it writes t's frame
// itself whatever its size.
func (p *Pool) submit(t *task, block, wait bool) error {
	p.mu.Lock()
	for {
		switch {
		case p.closed:
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

// stopIfRunning stops the cancelled task t if it is still the oldest
// unanswered task on w.
func (p *Pool) stopIfRunning(w *worker, t *task) {
	p.mu.Lock()
	after := noop
	if t.w == w && w.inflight.front() == t {
		after = p.stopTaskLocked(w, t, ReasonCancelled, nil)
	}
	p.mu.Unlock()
	after()
}

func noop() {}

// Who reads a worker's result pipe. Exactly one goroutine may, at a time:
// the worker's reader goroutine while tasks are in flight, or a caller of
// Apply that sent the only task to an idle worker and reads its answer
// itself, on its own thread (no hand-off from another thread, which on a
// small machine costs more than the round trip). Guarded by Pool.mu.
const (
	readNone      = iota // nothing in flight: the reader goroutine waits for a kick
	readGoroutine        // the reader goroutine reads
	readCaller           // an Apply caller reads
)

// readLoop is the worker's reader goroutine: it reads w's answers while
// tasks are in flight (or the worker has exited), and waits otherwise. It
// returns nil at the end of the stream, or the protocol error that ended it.
func (w *worker) readLoop() error {
	p := w.p
	for {
		p.mu.Lock()
		for w.reader != readGoroutine {
			if w.reader == readNone && (w.inflight.len() > 0 || isClosed(w.exited)) {
				w.reader = readGoroutine
				break
			}
			// Once the worker has exited, only a kick (from a caller that
			// reads and hands over) can change anything.
			onlyKick := isClosed(w.exited)
			p.mu.Unlock()
			if onlyKick {
				<-w.kick // a caller hands over with a kick
			} else {
				select {
				case <-w.kick:
				case <-w.exited:
				}
			}
			p.mu.Lock()
		}
		err := w.readErr
		p.mu.Unlock()
		if err != nil {
			return err
		}
		for {
			f, err := w.r.Next()
			if err != nil {
				return readError(err)
			}
			// Answers that arrived together are handled together: the
			// tasks their slots free are dispatched, and written, once
			// for the batch.
			last := w.r.Buffered() == 0
			if err := p.onFrame(w, f, last); err != nil {
				return err
			}
			if !last {
				continue
			}
			p.mu.Lock()
			idle := w.inflight.len() == 0 && !isClosed(w.exited)
			if idle {
				w.reader = readNone
			}
			p.mu.Unlock()
			if idle {
				break
			}
			// About to block in read(2). Let the goroutine this answer
			// woke (usually a caller waiting in ApplyAsync's future) run
			// on this thread first, rather than wait for another thread
			// to pick it up.
			runtime.Gosched()
		}
	}
}

// readAsCaller reads w's answers on the calling goroutine until t has
// ended (its answer is in, or it ended otherwise), then hands the reading
// back: to the reader goroutine if anything is left to read, else to nobody.
func (p *Pool) readAsCaller(w *worker, t *task) {
	var fail error
	for !t.done.Load() {
		f, err := w.r.Next()
		if err != nil {
			break // sticky: the reader goroutine meets it again and cleans up
		}
		if err := p.onFrame(w, f, w.r.Buffered() == 0); err != nil {
			fail = err
			break
		}
	}
	p.mu.Lock()
	if fail != nil {
		w.readErr = fail
	}
	kick := w.inflight.len() > 0 || w.r.Buffered() > 0 || fail != nil || !t.done.Load() || isClosed(w.exited)
	if kick {
		w.reader = readGoroutine
	} else {
		w.reader = readNone
	}
	p.mu.Unlock()
	if kick {
		w.kickReader()
	}
}

func readError(err error) error {
	if errors.Is(err, io.EOF) {
		return nil
	}
	if errors.Is(err, wire.ErrFrameTooLarge) || errors.Is(err, wire.ErrMalformed) {
		return fmt.Errorf("%w: %w", ErrProtocol, err)
	}
	return err
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// With dispatch false (more answers are buffered), the freed pipeline slots
// are filled after the last answer of the batch.
func (p *Pool) onFrame(w *worker, f wire.Frame, dispatch bool) error {
	p.mu.Lock()
	t := w.inflight.front()
	if t == nil || t.id != f.ID {
		p.mu.Unlock()
		return fmt.Errorf("%w: %s frame for task %d, expected %s", ErrProtocol, f.Kind, f.ID, expected(t))
	}
	switch f.Kind {
	case wire.KindResult, wire.KindError, wire.KindSkipped:
	default:
		p.mu.Unlock()
		return fmt.Errorf("%w: unexpected %s frame", ErrProtocol, f.Kind)
	}
	w.inflight.popFront()
	w.pipeBytes -= t.sentBytes
	if t.shmEnd > 0 {
		w.freeSharedLocked(t.shmEnd)
		t.shmEnd = 0
	}
	w.done++
	now := time.Now()
	w.lastUsed = now
	// The run time of this task, averaged over recent ones (weight 1/4).
	w.svc += (now.Sub(t.started) - w.svc) / 4
	if t.timer != nil {
		t.timer.Stop()
	}
	var memStop error // the memory limit stopped t: why, for its outcome
	if w.stopTarget == t && !w.stopKilled {
		// The stop found its task ended, not begun, or honouring its
		// context: the worker lives on, but retires if it is over its
		// memory limit.
		if f.Kind != wire.KindSkipped {
			p.stats.stoppedClean.Add(1)
		}
		if w.stopReason == ReasonMemory {
			memStop = fmt.Errorf("procpool: task stopped: worker %d %w", w.pid, w.stopErr)
			w.retireLocked(ReasonMemory, w.stopErr)
		}
		w.stopReason, w.stopErr, w.stopTarget = "", nil, nil
	}

	t.w = nil
	if next := w.inflight.front(); next != nil {
		p.startLocked(w, next, now)
	}
	if w.retiring && w.inflight.len() == 0 {
		w.closeInput()
	}
	if dispatch {
		p.dispatchLocked()
	}
	checkMemory := p.cfg.maxMemory > 0 && !w.retiring && w.cmd != nil
	p.unlockAndFlush(nil, 0)

	switch f.Kind {
	case wire.KindResult:
		t.finishResult(p, f)
	case wire.KindError:
		err := remoteError(t.fn, f.Body)
		switch {
		case t.expired || err.Code == CodeDeadline:
			// It returned once its deadline had passed, by the parent's
			// clock or by the worker's, which may run out first (it
			// counts from the task's start, the parent from the front of
			// the pipeline).
			t.finish(p, timeoutErr(t, err), timedOut)
		case memStop != nil:
			t.finish(p, fmt.Errorf("%w: %w", memStop, err), failed)
		default:
			t.finish(p, err, failed)
		}
	case wire.KindSkipped:
		// Cancelled, or stopped before it started.
		switch {
		case t.expired:
			t.finish(p, timeoutErr(t, nil), timedOut)
		case memStop != nil:
			t.finish(p, memStop, failed)
		default:
			t.finish(p, context.Canceled, cancelled)
		}
	}
	p.recycleFrame(t, w)
	if checkMemory {
		p.checkMemory(w, nil)
	}
	return nil
}

func expected(t *task) string {
	if t == nil {
		return "none (no task in flight)"
	}
	return fmt.Sprintf("an answer for task %d", t.id)
}

// cancelTask ends t with cause: a queued task is removed, a task waiting in
// a worker's pipe is skipped there, and a running task is stopped on its
// worker. A deadline (cause matches context.DeadlineExceeded) ends the task
// with ErrTimeout; a running task then ends when its worker has answered or
// exited, so that the error can say how, or is retried. Like every ending,
// it ends t only if it wins t's claim.
func (p *Pool) cancelTask(t *task, cause error) {
	deadline := errors.Is(cause, context.DeadlineExceeded)
	p.mu.Lock()
	if t.done.Load() {
		p.mu.Unlock()
		return
	}
	w := t.w
	running := w != nil && w.inflight.front() == t
	if deadline && running {
		after := p.expireLocked(w, t, cause)
		p.mu.Unlock()
		after()
		return
	}
	// Claim it under the lock, so that a worker's death cannot put it back
	// in the queue in between. The claim fails if another ending (an
	// answer, Terminate) got there first: that one ends t.
	if !t.claim() {
		p.mu.Unlock()
		return
	}
	after := noop
	switch {
	case w == nil:
		p.queue.remove(func(q *task) bool { return q == t })
		if p.cfg.queueSize > 0 {
			p.roomLocked()
		}
	case running:
		after = p.stopTaskLocked(w, t, ReasonCancelled, nil)
	default:
		w.enqueue(wire.AppendFrame(nil, wire.KindCancel, t.id, nil))
		p.flushLater(w)
	}
	p.unlockAndFlush(nil, 0)
	after()
	if deadline {
		t.complete(p, fmt.Errorf("%w: %w", ErrTimeout, cause), timedOut)
		return
	}
	t.complete(p, cause, cancelled)
}

// expire handles a task that ran past its deadline on w: it is stopped on
// its worker, and ends (or is retried) when the worker has answered or
// exited.
func (p *Pool) expire(w *worker, t *task, cause error) {
	p.mu.Lock()
	after := p.expireLocked(w, t, cause)
	p.mu.Unlock()
	after()
}

func (p *Pool) expireLocked(w *worker, t *task, cause error) (after func()) {
	if t.done.Load() || t.w != w || w.inflight.front() != t {
		return noop
	}
	t.expired = true
	t.expireCause = cause
	return p.stopTaskLocked(w, t, ReasonTimeout, nil)
}

// stopTaskLocked stops t, the oldest unanswered task on w, for reason. It
// returns what to do once p.mu is released.
//
// The stop names its task, and the worker decides against the task it runs
// (under its own lock, see server.stop): if t is running it cancels t's
// context and gives it the kill grace period to return (then t ends as
// usual and the worker lives on) before it dies; it skips t if t has not
// started, and does nothing if t has ended. So a stop never hits the next
// task, even when the worker has answered t and moved on while the parent
// decided. Only if the worker has not ended t well after the grace period
// is its group killed (escalate); that kill, and the signal that stops a
// worker without a control pipe, can still land on the next task: that
// task is then the pool's victim and goes back to the queue (see
// workerExited).
func (p *Pool) stopTaskLocked(w *worker, t *task, reason string, err error) (after func()) {
	if w.stopKilled || w.stopTarget == t {
		return noop // the worker is being killed, or this stop is under way
	}
	w.stopReason, w.stopErr, w.stopTarget = reason, err, t
	if !w.hasControl {
		w.stopKilled = true
		w.retiring = true
		w.kill()
		return noop
	}
	why := wire.StopCancel
	switch reason {
	case ReasonTimeout:
		why = wire.StopDeadline
	case ReasonMemory:
		why = wire.StopMemory
	}
	return func() {
		w.sendStop(t.id, why)
		if w.cmd != nil {
			// The worker ends the task itself after the grace period;
			// this is for a worker that cannot act on the stop.
			time.AfterFunc(supervise.EscalateAfter(p.cfg.killGrace), func() { p.escalate(w, t) })
		}
	}
}

// escalate kills w's group if the stop aimed at t has not ended t yet and
// t is running: the worker did not act on the stop (it may be stuck where
// its watchdog cannot run). If t has not begun (the worker is still reading
// its frame, say), the worker skips it when it gets there: no kill.
func (p *Pool) escalate(w *worker, t *task) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if w.stopTarget != t || w.inflight.front() != t || isClosed(w.exited) {
		return
	}
	if w.hasJournal && w.journalRunning() != t.id {
		return
	}
	// A window remains: the worker may answer t and begin the next task
	// between that check and the kill. The next task is then the pool's
	// victim (see workerExited).
	w.stopKilled = true
	w.retiring = true
	w.killNow()
}

// retireLocked makes w take no more tasks and exit once its in-flight ones
// are answered; reason is what its exit reports if it then exits cleanly.
func (w *worker) retireLocked(reason string, err error) {
	if w.retireWhy == "" {
		w.retireWhy, w.retireErr = reason, err
	}
	w.retiring = true
	if w.inflight.len() == 0 {
		w.closeInput()
	}
}

// stopWorkerLocked kills w as a whole (not aimed at a task) with a reason
// that its exit will report.
func (p *Pool) stopWorkerLocked(w *worker, reason string, err error) {
	if w.stopReason == "" || w.stopTarget != nil {
		w.stopReason, w.stopErr, w.stopTarget = reason, err, nil
	}
	w.stopKilled = true
	w.retiring = true
	w.kill()
}

// checkMemory retires (between tasks) or stops (mid-task) a worker over the
// memory limit.
func (p *Pool) checkMemory(w *worker, running *task) {
	rss, err := supervise.RSS(w.pid)
	if err != nil {
		return
	}
	p.mu.Lock()
	after := noop
	defer func() {
		p.mu.Unlock()
		after()
	}()
	w.rss = rss
	if rss <= p.cfg.maxMemory || w.retiring {
		return
	}
	over := fmt.Errorf("resident memory %d MiB is over the limit of %d MiB", rss>>20, p.cfg.maxMemory>>20)
	if running != nil {
		// Sampled mid-task: stop that task if it is still the oldest
		// unanswered one and has begun (the worker checks again). One that
		// has not begun (the worker is still reading its argument, say)
		// is not to blame: the worker retires instead. A retiring worker
		// is not sampled: it is over the limit already, perhaps through an
		// earlier task, and exits once its tasks are answered.
		switch {
		case w.inflight.front() != running:
		case w.hasJournal && w.journalRunning() != running.id:
			w.retireLocked(ReasonMemory, over)
			p.growLocked()
		default:
			after = p.stopTaskLocked(w, running, ReasonMemory, over)
		}
		return
	}
	w.retireLocked(ReasonMemory, over)
	if w.inflight.len() == 0 {
		w.closeInput()
	}
	p.growLocked()
}

// workerExited accounts for a worker that is gone: the task it was running
// fails (or is retried), the tasks behind it go back to the queue, and a new
// worker is started if the pool still needs one. The answers the worker
// produced before it died have been read by now (recoverAnswers).
func (p *Pool) workerExited(w *worker, readErr error) {
	p.mu.Lock()
	for i, x := range p.workers {
		if x == w {
			p.workers = append(p.workers[:i], p.workers[i+1:]...)
			break
		}
	}
	running := p.runningAtExitLocked(w)
	reason, cause := ReasonCrashed, error(nil)
	switch {
	case w.status.Signaled():
		reason = ReasonSignal
	case w.cmd != nil && w.status.Exited() && w.status.ExitStatus() == exitSIGTERM:
		// What a Go worker's SIGTERM handler exits with. The pool's own
		// stops (which end with the same status) override this below.
		reason = ReasonTerminatedOutside
	}
	if errors.Is(readErr, ErrProtocol) {
		reason, cause = ReasonProtocol, readErr
	}
	// A stop of the whole worker, or one that hit its target or killed the
	// group, is why the worker exited. A stop the worker refused (its
	// target was not running) is not: the worker then died by itself.
	switch {
	case w.stopReason != "" && (w.stopTarget == nil || w.stopTarget == running || w.stopKilled):
		if cause == nil {
			cause = w.stopErr
		}
		reason = w.stopReason
	case readErr == nil && w.status.Exited() && w.status.ExitStatus() == 0 && w.retireWhy != "":
		// It retired and exited cleanly.
		reason, cause = w.retireWhy, w.retireErr
	}
	// A kill the pool aimed at another task hit this one: it is the pool's
	// victim, not a failure, and runs again whatever its retries say.
	victim := running != nil && w.stopTarget != nil && w.stopTarget != running && w.stopKilled

	var ended []*task
	var errs []error
	var outcomes []outcome
	fail := func(t *task, err error, o outcome) {
		ended, errs, outcomes = append(ended, t), append(errs, err), append(outcomes, o)
	}
	var pieces []*chunkPiece
	tasks := w.inflight.drain()
	for i := len(tasks) - 1; i >= 0; i-- {
		t := tasks[i]
		t.w = nil
		t.shmEnd = 0 // its region was in the dead worker's segment
		if t.timer != nil {
			t.timer.Stop()
		}
		if t.done.Load() {
			continue
		}
		if t == running && !p.terminated && p.broken == nil && p.chunkProgressLocked(w, t) {
			pieces = append(pieces, p.splitChunkLocked(t, victim, w, reason, cause))
			continue
		}
		if t != running || victim || p.terminated {
			// Not started (or a victim): back to the queue, unless the
			// pool is going away or broken.
			switch {
			case p.terminated:
				fail(t, ErrTerminated, terminated)
			case p.broken != nil:
				fail(t, p.broken, failed)
			case t.expireCause != nil:
				// Its caller's context has ended: it must not run again.
				fail(t, timeoutErr(t, nil), timedOut)
			default:
				t.expired = false
				t.requeued = true
				p.queue.pushFront(t)
			}
			continue
		}
		t.attempts++
		exitErr := p.exitError(w, reason, cause, int(t.attempts))
		var err error = exitErr
		o := failed
		if t.expired {
			err, o = timeoutErr(t, exitErr), timedOut
		}
		if t.retries > 0 && reason != ReasonTerminated && p.broken == nil && t.expireCause == nil {
			t.retries--
			t.expired = false
			t.requeued = true
			p.stats.retried.Add(1)
			p.logf("task retried", "task", t.id, "func", t.fn, "pid", w.pid, "reason", reason, "retries_left", t.retries)
			p.queue.pushFront(t)
			continue
		}
		fail(t, err, o)
	}
	starting := p.starting
	if !p.terminated {
		p.growLocked()
		p.dispatchLocked()
	}
	replaced := p.starting > starting
	if replaced {
		p.stats.restarts.Add(1)
	}
	p.maybeStoppedLocked()
	p.unlockAndFlush(nil, 0)
	p.stats.exited(reason)
	level := slog.LevelInfo
	if reason == ReasonCrashed || reason == ReasonSignal || reason == ReasonProtocol {
		level = slog.LevelWarn
	}
	p.logAt(level, 0, "worker exited", "pid", w.pid, "reason", reason, "status", exitText(w.status), "replaced", replaced)
	for _, pc := range pieces {
		pc.deliver(p)
	}
	for i, t := range ended {
		t.finish(p, errs[i], outcomes[i])
	}
}

// chunkProgressLocked reports whether w, which died running chunk task t,
// recorded its progress in t's items (a worker process with a journal, a
// chunk of more than one item left, and its items started).
func (p *Pool) chunkProgressLocked(w *worker, t *task) bool {
	return t.chunk && w.cmd != nil && w.hasJournal && t.items-t.from >= 2 && w.death.finished >= 0
}

// chunkPiece is a run of items of a chunk task settled on their own after
// its worker died, from index from on. ends is set when they were the
// chunk's last items: the task ends with them (its claim won), counted as
// outcome.
type chunkPiece struct {
	t       *task
	from    int
	items   itemPiece
	ends    bool
	outcome outcome
}

// deliver settles the piece's items, after Pool.mu is released (decoding
// runs the codec, user code). Items settle once whatever the order of the
// pieces and the task's own ending (itemSet).
func (pc *chunkPiece) deliver(p *Pool) {
	if pc.items.count > 0 {
		pc.t.sink.(itemSink).settle(p, pc.from, &pc.items)
	}
	if pc.ends {
		pc.t.release(p)
		p.stats.end(pc.outcome)
	}
}

// errResultLost is the error of an item that finished in a dead worker
// whose journal had no room left to record its result.
var errResultLost = errors.New("procpool: the worker died after this item finished, and its result was lost: the chunk's results outgrew the worker's journal (WithMaxFrame)")

// splitChunkLocked settles the items of chunk task t that its dead worker
// w finished, fails the item that was running (or, if retries allow or the
// task was the pool's victim, runs it again), and puts the rest of the chunk
// back in the queue as the same task, from its first item left. So a crash
// fails one item, and no finished item runs twice.
func (p *Pool) splitChunkLocked(t *task, victim bool, w *worker, reason string, cause error) *chunkPiece {
	d := w.death
	n := t.items - t.from
	finished := min(d.finished, n)
	pc := &chunkPiece{t: t, from: t.from}
	pc.items = itemPiece{count: finished, listed: min(d.listed, finished), list: d.list, errs: map[int]error{}}
	for i, body := range d.itemErrs {
		if i < finished {
			pc.items.errs[i] = chunkItemError(remoteError(t.fn, body))
		}
	}
	for i := pc.items.listed; i < finished; i++ {
		if pc.items.errs[i] == nil {
			pc.items.errs[i] = errResultLost // finished, but no room to record its result
		}
	}
	o := failed
	if finished < n && !d.stopped {
		// The item after those was running when the worker died.
		item := t.from + finished
		if int32(item) != t.attemptItem {
			t.attemptItem, t.attempts = int32(item), 0 // attempts count per item
		}
		switch {
		case victim && t.expireCause == nil:
		case t.retries > 0 && reason != ReasonTerminated && t.expireCause == nil:
			t.attempts++
			t.retries--
			p.stats.retried.Add(1)
			p.logf("task retried", "task", t.id, "func", t.fn, "pid", w.pid, "reason", reason, "retries_left", t.retries, "item", t.from+finished)
		default:
			t.attempts++
			exitErr := p.exitError(w, reason, cause, int(t.attempts))
			var err error = exitErr
			if t.expired {
				err, o = timeoutErr(t, exitErr), timedOut
			}
			pc.items.errs[finished] = err
			pc.items.count++
		}
	}
	if t.expireCause != nil {
		// The caller's context has ended: the items left must not run.
		for i := pc.items.count; i < n; i++ {
			pc.items.errs[i] = timeoutErr(t, nil)
		}
		pc.items.count, o = n, timedOut
	}
	t.expired = false
	from := t.from + pc.items.count
	if from >= t.items {
		if len(pc.items.errs) == 0 {
			o = succeeded
		}
		pc.ends, pc.outcome = t.claim(), o
		return pc
	}
	frame, ferr := wire.AppendTaskFrom(make([]byte, 0, len(t.frame)+4), t.frame, from)
	if ferr != nil || !wire.Fits(wire.LengthOf(frame, 0), p.cfg.maxFrame) {
		// The rest cannot be asked for within the frame limit (the index
		// adds 4 bytes to a frame at the limit): those items fail.
		err := &CodecError{Op: "encode arguments", Err: fmt.Errorf("the rest of a chunk from item %d is over the frame limit of %d (WithMaxFrame)", from, p.cfg.maxFrame)}
		for i := pc.items.count; i < n; i++ {
			pc.items.errs[i] = err
		}
		pc.items.count = n
		pc.ends, pc.outcome = t.claim(), failed
		return pc
	}
	t.from, t.frame = from, frame
	t.requeued = true
	p.queue.pushFront(t)
	return pc
}

// recoverAnswers reads a dead worker's journal once its pipe has been read
// to the end: the answers it had not written to the pipe end their tasks as
// if they had come through it (those that had are skipped: a worker's task
// ids are unique, and only the oldest unanswered task's answer can come
// next), and the id of the task it was running is kept for workerExited.
// After a protocol error nothing more from the worker is trusted.
func (p *Pool) recoverAnswers(w *worker, readErr error) {
	d := w.readJournal()
	p.mu.Lock()
	w.death = d
	p.mu.Unlock()
	if readErr != nil && !errors.Is(readErr, io.ErrUnexpectedEOF) {
		return
	}
	r := wire.NewReader(bytes.NewReader(d.answers), len(d.answers)+1, p.cfg.maxFrame)
	for {
		f, err := r.Next()
		if err != nil {
			return
		}
		p.mu.Lock()
		head := w.inflight.front()
		next := head != nil && head.id == f.ID
		p.mu.Unlock()
		if next {
			_ = p.onFrame(w, f, true)
		}
	}
}

// runningAtExitLocked returns the task w was running when it died, or nil if
// it died between tasks. A worker with a journal recorded it; for one
// without, it is taken to be the oldest unanswered task, which holds for a
// worker that writes each answer before it starts the next task, except if
// it died just before starting that task.
func (p *Pool) runningAtExitLocked(w *worker) *task {
	head := w.inflight.front()
	if !w.hasJournal {
		return head
	}
	if head != nil && head.id == w.death.running {
		return head
	}
	return nil
}

func (p *Pool) exitError(w *worker, reason string, cause error, attempts int) *WorkerExitError {
	e := &WorkerExitError{Pid: w.pid, ExitCode: -1, Reason: reason, Attempts: attempts, Err: cause, Stderr: w.stderr}
	switch {
	case w.cmd == nil: // a goroutine has no exit status
	case w.status.Signaled():
		e.Signal = w.status.Signal()
	case w.status.Exited():
		e.ExitCode = w.status.ExitStatus()
		e.Signal = w.reportedSignal(reason)
	}
	return e
}

// timeoutErr is the error of a task stopped at its deadline, with what
// happened then: the exit of the worker it was stopped on, the task's own
// error once its context was done, or nothing (nil) if it had not begun.
func timeoutErr(t *task, then error) error {
	switch {
	case then == nil && t.expireCause != nil:
		return fmt.Errorf("%w: %w", ErrTimeout, t.expireCause)
	case then == nil:
		return fmt.Errorf("%w after %v", ErrTimeout, t.timeout)
	case t.expireCause != nil:
		return fmt.Errorf("%w: %w: %w", ErrTimeout, t.expireCause, then)
	}
	return fmt.Errorf("%w after %v: %w", ErrTimeout, t.timeout, then)
}

// sharedMin is the argument size from which a task's argument travels in
// the worker's shared memory rather than down its pipe.
const sharedMin = 64 << 10

// sharedFrameLocked reserves room in w's shared memory for t's argument and
// returns the short frame that refers to it, with the copy to make before
// that frame is written. ok is false if the argument is small, the worker
// has no shared memory, or there is no room: t's own frame then goes down
// the pipe.
func (p *Pool) sharedFrameLocked(w *worker, t *task) (frame, dst, src []byte, ok bool) {
	t.shmEnd = 0
	if w.shm == nil || len(t.frame) < sharedMin {
		return nil, nil, nil, false // no parse: the argument is smaller than the frame
	}
	payload, err := wire.TaskPayload(t.frame)
	n := len(payload)
	if err != nil || n < sharedMin {
		return nil, nil, nil, false
	}
	off, ok := w.allocSharedLocked(n)
	if !ok {
		return nil, nil, nil, false
	}
	t.shmEnd = off + n
	// The deadline in the frame is the one read from t.ctx at submission:
	// this runs under Pool.mu, and a caller's own Context type is user code.
	frame, _ = wire.AppendSharedTask(make([]byte, 0, len(t.frame)-n+wire.SharedRefSize), t.frame, uint64(off))
	return frame, w.shm[off : off+n : off+n], payload, true
}

// allocSharedLocked reserves n contiguous bytes of w's shared memory. Regions
// are released in the order they were reserved (a worker answers in order),
// so the segment is used as a ring.
func (w *worker) allocSharedLocked(n int) (int, bool) {
	size := len(w.shm)
	if w.shmCount == 0 {
		w.shmHead, w.shmTail = 0, 0
	}
	var off int
	switch {
	case n > size:
		return 0, false
	case w.shmCount == 0 || w.shmHead >= w.shmTail:
		// In use: [tail, head). Free: [head, size) and [0, tail).
		switch {
		case w.shmHead+n <= size:
			off = w.shmHead
		case n < w.shmTail:
			off = 0
		default:
			return 0, false
		}
	default:
		// Wrapped. In use: [tail, size) and [0, head). Free: [head, tail).
		if w.shmHead+n >= w.shmTail {
			return 0, false
		}
		off = w.shmHead
	}
	w.shmHead = off + n
	w.shmCount++
	return off, true
}

// freeSharedLocked releases the oldest reserved region, which ends at end.
func (w *worker) freeSharedLocked(end int) {
	w.shmCount--
	w.shmTail = end
	if w.shmCount == 0 {
		w.shmHead, w.shmTail = 0, 0
	}
}
