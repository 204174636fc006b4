package procpool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/procpool/procpool/internal/wire"
)

// A worker's answers: who reads its result pipe (the reader goroutine, or
// an Apply caller), and what an answer does to its task and its worker
// (onFrame); a dead worker's answers recovered from its journal.

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
		w.shmRing.Free(t.shmEnd)
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
	checkMemory := p.cfg.maxMemory > 0 && !w.retiring && w.mem != nil
	p.unlockAndFlush(nil)

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

// recoverAnswers reads a dead worker's journal once its pipe has been read
// to the end: the answers it had not written to the pipe end their tasks as
// if they had come through it (those that had are skipped: a worker's task
// ids are unique, and only the oldest unanswered task's answer can come
// next), and the id of the task it was running is kept for workerExited.
// After a protocol error nothing more from the worker is trusted.
func (p *Pool) recoverAnswers(w *worker, readErr error) {
	d := w.b.Death()
	p.mu.Lock()
	w.death = d
	p.mu.Unlock()
	if readErr != nil && !errors.Is(readErr, io.ErrUnexpectedEOF) {
		return
	}
	r := wire.NewReader(bytes.NewReader(d.Answers), len(d.Answers)+1, p.cfg.maxFrame)
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
