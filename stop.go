package procpool

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/procpool/procpool/internal/supervise"
	"github.com/procpool/procpool/internal/wire"
)

// Ending a task before its answer: a cancellation (Future.Cancel, its
// context), a deadline, the memory limit; the Stop frame aimed at a running
// task, its escalation to a kill, and a worker's retirement.

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
	p.unlockAndFlush(nil)
	after()
	if deadline {
		t.complete(p, fmt.Errorf("%w: %w", ErrTimeout, cause), timedOut)
		return
	}
	t.complete(p, cause, cancelled)
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
// (under its own lock, see serve.Server.Stop): if t is running it cancels t's
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
	if !w.feat.Control {
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
		if !w.sendStop(t.id, why) {
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
	if w.feat.Journal && w.journalRunning() != t.id {
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
	rss, err := w.mem.RSS()
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
		case w.feat.Journal && w.journalRunning() != running.id:
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
