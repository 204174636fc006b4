package procpool

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/procpool/procpool/internal/backend/process"
	"github.com/procpool/procpool/internal/wire"
)

// A worker's death: which task it was running (the journal's mark), what
// becomes of that task and of those behind it, the items of a chunk it had
// finished, and the error that reports the death.

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
	x := w.b.Exit()
	reason, cause := ReasonCrashed, error(nil)
	switch {
	case x.Signal != 0:
		reason = ReasonSignal
	case x.Status && x.Code == process.ExitSIGTERM:
		// What a Go worker's SIGTERM handler exits with. The pool's own
		// stops (which end with the same status) override this below.
		reason = ReasonTerminatedOutside
	}
	if errors.Is(readErr, ErrProtocol) {
		reason, cause = ReasonProtocol, readErr
	}
	if x.Reason != "" { // a remote worker's own account
		reason, cause = x.Reason, x.Err
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
	case readErr == nil && x.Signal == 0 && x.Code == 0 && w.retireWhy != "":
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
		if t == running && !p.phase.terminated() && p.broken == nil && p.chunkProgressLocked(w, t) {
			pieces = append(pieces, p.splitChunkLocked(t, victim, w, reason, cause))
			continue
		}
		if t != running || victim || p.phase.terminated() {
			// Not started (or a victim): back to the queue, unless the
			// pool is going away or broken.
			switch {
			case p.phase.terminated():
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
	if !p.phase.terminated() {
		p.growLocked()
		p.dispatchLocked()
	}
	replaced := p.starting > starting
	if replaced {
		p.stats.restarts.Add(1)
	}
	p.maybeStoppedLocked()
	p.unlockAndFlush(nil)
	p.stats.exited(reason)
	level := slog.LevelInfo
	if reason == ReasonCrashed || reason == ReasonSignal || reason == ReasonProtocol {
		level = slog.LevelWarn
	}
	p.logAt(level, 0, "worker exited", "pid", w.pid, "reason", reason, "status", exitText(x), "replaced", replaced)
	for _, pc := range pieces {
		pc.deliver(p)
	}
	for i, t := range ended {
		t.finish(p, errs[i], outcomes[i])
	}
}

// runningAtExitLocked returns the task w was running when it died, or nil if
// it died between tasks. A worker with a journal recorded it; for one
// without, it is taken to be the oldest unanswered task, which holds for a
// worker that writes each answer before it starts the next task, except if
// it died just before starting that task.
func (p *Pool) runningAtExitLocked(w *worker) *task {
	head := w.inflight.front()
	if !w.feat.Journal {
		return head
	}
	if head != nil && head.id == w.death.Running {
		return head
	}
	return nil
}

func (p *Pool) exitError(w *worker, reason string, cause error, attempts int) *WorkerExitError {
	x := w.b.Exit()
	// A remote worker names the worker its task ran on only now.
	e := &WorkerExitError{Pid: w.pid, ExitCode: -1, Reason: reason, Attempts: attempts, Err: cause, Stderr: x.Stderr, Worker: w.b.ID(), Host: w.b.Host()}
	switch {
	case !x.Status: // a goroutine has no exit status
	case x.Signal != 0:
		e.Signal = x.Signal
	default:
		e.ExitCode = x.Code
		e.Signal = reportedSignal(x, reason)
	}
	return e
}

// chunkProgressLocked reports whether w, which died running chunk task t,
// recorded its progress in t's items (a worker whose journal records a
// chunk's items, a chunk of more than one item left, and its items
// started).
func (p *Pool) chunkProgressLocked(w *worker, t *task) bool {
	return t.chunk && w.feat.Items && t.items-t.from >= 2 && w.death.Finished >= 0
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
	finished := min(d.Finished, n)
	pc := &chunkPiece{t: t, from: t.from}
	pc.items = itemPiece{count: finished, listed: min(d.Listed, finished), list: d.List, errs: map[int]error{}}
	for i, body := range d.ItemErrs {
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
	if finished < n && !d.Stopped {
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
