package procpool

import (
	"context"
)

// The pool's life: one phase, under Pool.mu, that only moves forward.
//
//	starting ─► open ─► closing ─► stopping ─────────┐
//	   │          │        │          │               ▼
//	   └──────────┴────────┴──────────┴─► terminated ─► stopped ─► releasing ─► released
//	                       └──────────────────────────────▲ (no worker left or needed)
//
// Close goes closing (beginClose), stopping once every accepted task has
// ended (stopWorkers), stopped once the last worker is gone
// (maybeStoppedLocked), then releasing and released (finalize). Shutdown
// does the same, or terminates if its context ends first. Terminate goes
// terminated from any phase before stopped, then on as Close. A pool whose
// workers are all gone while it closes (a broken pool) skips stopping.
//
// A phase implies those before it: a pool past closing is closed, one past
// terminated counts as terminated (no worker is then alive or starting, so
// nothing could tell the difference).
//
// Whether the pool is broken (its restart budget spent) is not a phase:
// Pool.broken, the error that says why, outlives the phase it was set in,
// since a broken pool still closes, stops and is released like any other.
type phase uint8

const (
	phaseStarting   phase = iota // New is starting the first workers: a failed start fails New, not the restart budget
	phaseOpen                    // tasks are accepted
	phaseClosing                 // Close or Shutdown began: no task is accepted (ErrClosed); those accepted run to their end
	phaseStopping                // every accepted task has ended: the workers' task pipes are closed, and they exit
	phaseTerminated              // Terminate: every task ended with ErrTerminated; the workers are being killed
	phaseStopped                 // no worker is alive or starting
	phaseReleasing               // the first finalize waits for the callbacks and the pool's goroutines (the monitor stops)
	phaseReleased                // all of it is done: Close, Shutdown and Terminate return
)

// closed reports whether the pool accepts no more tasks.
func (ph phase) closed() bool { return ph >= phaseClosing }

// stopping reports whether the workers are being stopped or are gone.
func (ph phase) stopping() bool { return ph >= phaseStopping }

// terminated reports whether Terminate has run, or no worker is left.
func (ph phase) terminated() bool { return ph >= phaseTerminated }

// advanceLocked moves the pool to phase to, unless it is there or past it
// already, and wakes whoever waits for a phase. It reports whether it
// moved. Call it with Pool.mu held.
func (p *Pool) advanceLocked(to phase) bool {
	if p.phase >= to {
		return false
	}
	p.phase = to
	close(p.phaseMoved)
	p.phaseMoved = make(chan struct{})
	return true
}

// awaitPhase waits until the pool has reached phase ph, or until done (nil:
// never) is closed; it reports whether the pool reached ph.
func (p *Pool) awaitPhase(ph phase, done <-chan struct{}) bool {
	p.mu.Lock()
	for p.phase < ph {
		moved := p.phaseMoved
		p.mu.Unlock()
		select {
		case <-moved:
		case <-done:
			return false
		}
		p.mu.Lock()
	}
	p.mu.Unlock()
	return true
}

// Close stops accepting tasks, waits for every accepted task to end (and its
// callbacks to run), then stops the workers and waits for them to exit (and
// the logger to handle their records). It is Python's close followed by
// join. It returns nil; calling it again, or after Terminate, waits for the
// same end and returns nil. In process (WithInProcess), a task that never
// returns keeps Close waiting: a goroutine cannot be killed (Terminate
// cancels its context first).
//
// Called from a callback (Callback, ErrorCallback, of this pool or of
// another; a WithLogger handler counts as one), Close does all of that
// except wait for the callbacks and the logger: the one calling it and
// those queued behind it cannot run before it returns. It returns nil once
// every task has ended and the workers have exited; the remaining
// callbacks and records are then handled, in order, after the calling one
// returns, and the pool releases its last resources once they have. A
// later Close from any goroutine waits for all of that. A callback must not
// wait for another goroutine that calls Close, Shutdown or Terminate: that
// one waits for the callbacks.
func (p *Pool) Close() error {
	inCallback := onCallbackGoroutine()
	p.beginClose()
	<-p.stats.drained
	p.stopWorkers()
	p.awaitPhase(phaseStopped, nil)
	p.finalize(inCallback)
	return nil
}

// Shutdown is Close bounded by ctx: if ctx ends before every task has ended
// and every worker has exited, it terminates the pool (see Terminate) and
// returns ctx.Err(); else it returns nil. Called from a callback, it does not
// wait for the callbacks, as Close.
func (p *Pool) Shutdown(ctx context.Context) error {
	inCallback := onCallbackGoroutine()
	p.beginClose()
	select {
	case <-p.stats.drained:
	case <-ctx.Done():
		p.terminate(inCallback)
		return ctx.Err()
	}
	p.stopWorkers()
	if !p.awaitPhase(phaseStopped, ctx.Done()) {
		p.terminate(inCallback)
		return ctx.Err()
	}
	p.finalize(inCallback)
	return nil
}

// Terminate stops the pool now: every queued and running task ends with
// ErrTerminated, and the workers are stopped: a running task's context is
// cancelled and it has WithKillGrace to return, then its worker exits (or
// is killed after twice that). It returns nil once they have exited and the
// callbacks have run. In process (WithInProcess), a running task's
// goroutine cannot be killed: Terminate cancels its context and waits for
// it to return. Safe to call at any time, more than once, and together with
// Close. Called from a callback, it does not wait for the callbacks, as
// Close: it returns once every task has ended and the workers have exited.
func (p *Pool) Terminate() error {
	p.terminate(onCallbackGoroutine())
	return nil
}

func (p *Pool) terminate(inCallback bool) {
	p.beginClose()
	p.mu.Lock()
	p.advanceLocked(phaseTerminated)
	queued := p.queue.drain()
	var running []*task
	for _, w := range p.workers {
		for i := 0; i < w.inflight.len(); i++ {
			running = append(running, w.inflight.at(i))
		}
		p.stopWorkerLocked(w, ReasonTerminated, nil)
	}
	for w := range p.handshaking {
		w.kill()
	}
	// The tasks' ends are claimed here, under the lock that found them
	// queued or running: an answer read once the lock is released (an
	// in-process task returns as soon as stopWorkerLocked cancels its
	// context) finds its task ended and is dropped, never delivered
	// instead of ErrTerminated. The ends are delivered (sinks, callbacks)
	// after the lock.
	var ended []*task
	for _, t := range append(queued, running...) {
		if t.claim() {
			ended = append(ended, t)
		}
	}
	p.roomLocked()
	p.maybeStoppedLocked()
	p.mu.Unlock()
	for _, t := range ended {
		t.complete(p, ErrTerminated, terminated)
	}
	p.awaitPhase(phaseStopped, nil)
	p.finalize(inCallback)
}

// beginClose stops the intake: submitting is ErrClosed from now on, and
// callers waiting for room in the queue are woken to find that out.
func (p *Pool) beginClose() {
	p.mu.Lock()
	if p.advanceLocked(phaseClosing) {
		p.roomLocked()
	}
	p.mu.Unlock()
	p.stats.close()
}

// stopWorkers closes every worker's task pipe: each finishes and exits.
func (p *Pool) stopWorkers() {
	p.mu.Lock()
	p.advanceLocked(phaseStopping)
	for _, w := range p.workers {
		w.retireLocked(ReasonRecycled, nil)
		w.closeInput()
	}
	p.maybeStoppedLocked()
	p.mu.Unlock()
}

// maybeStoppedLocked moves the pool to phaseStopped once it is closed and
// no worker is alive or starting (nor needed for queued tasks).
func (p *Pool) maybeStoppedLocked() {
	if p.phase.closed() && len(p.workers) == 0 && p.starting == 0 && (p.phase.terminated() || p.queue.len() == 0) {
		p.advanceLocked(phaseStopped)
	}
}

// finalize waits for the callbacks and the pool's goroutines, then releases
// the launcher (for worker processes, its spawning thread); it returns when
// that is done, whoever did it. On a callback goroutine it cannot wait for
// the callbacks: it starts the work on another goroutine, if nobody has,
// and returns at once.
func (p *Pool) finalize(inCallback bool) {
	p.mu.Lock()
	first := p.advanceLocked(phaseReleasing) // the monitor stops
	p.mu.Unlock()
	if first {
		if inCallback {
			go p.release()
		} else {
			p.release()
		}
	}
	if !inCallback {
		p.awaitPhase(phaseReleased, nil)
		p.dropWatches() // again: a task cancelled as Terminate began may have left one since
	}
}

// release is finalize's work, done once.
func (p *Pool) release() {
	p.cb.close()
	p.wg.Wait()
	p.logs.close() // after wg: the pool's goroutines log until they end
	p.dropWatches()
	p.launcher.Close()
	p.mu.Lock()
	p.advanceLocked(phaseReleased)
	p.mu.Unlock()
}
