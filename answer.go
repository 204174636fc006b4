package procpool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"time"

	"github.com/procpool/procpool/internal/wire"
)

// A worker's answers: who reads its result pipe (the reader goroutine, or
// an Apply caller), and what an answer does to its task and its worker
// (onFrame); a dead worker's answers recovered from its journal.

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
