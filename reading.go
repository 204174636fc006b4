package procpool

import "runtime"

// Who reads a worker's answers, and Apply's fast path.
//
// Exactly one goroutine reads a worker's result pipe at a time: the
// worker's reader goroutine (readLoop) while tasks are in flight, or a
// caller of Apply whose task went alone to an idle worker. Such a caller
// reads its own answer on its own thread (readAsCaller): waking it from
// another thread costs more than the round trip on a small machine. It also
// writes its own frame, whatever its size (flushAny, see unlockAndFlush
// and worker.flush), since it waits for that worker anyway. submit calls
// callerReadsLocked, and Apply calls readOwnAnswer: nothing else of the
// fast path shows outside this file but the flush mode.
//
// worker.reader says who reads, under Pool.mu:
//
//	readNone ──assignLocked: a task for an idle worker──► readKick
//	readKick ──unlockAndFlush kicks the goroutine──► readGoroutine
//	readKick ──callerReadsLocked: Apply's task, alone on the worker──► readCaller
//	readGoroutine ──readLoop: every answer in, nothing buffered──► readNone
//	readNone ──readLoop wakes to tasks in flight, or to the worker's end──► readGoroutine
//	readCaller ──readAsCaller: its task has ended──► readNone, or readGoroutine
//	             (kicked) if more is in flight or buffered, or the worker has ended
//
// readKick never outlives the critical section that set it: whoever
// dispatches releases Pool.mu with unlockAndFlush, which turns it into
// readGoroutine and kicks the reader goroutine once the lock is released.

// readerOwner is who reads a worker's result pipe now (see above).
type readerOwner uint8

const (
	readNone      readerOwner = iota // nothing in flight: the reader goroutine waits for a kick
	readKick                         // the reader goroutine is to read: kick it after unlocking
	readGoroutine                    // the reader goroutine reads
	readCaller                       // an Apply caller reads (readAsCaller)
)

// needReaderLocked is called with a task for w: an idle worker's reader
// goroutine is to be kicked once Pool.mu is released.
func (w *worker) needReaderLocked() {
	if w.reader == readNone {
		w.reader = readKick
	}
}

// takeKickLocked is unlockAndFlush's: it reports whether w's reader
// goroutine is to be kicked, and hands it the reading.
func (w *worker) takeKickLocked() bool {
	if w.reader != readKick {
		return false
	}
	w.reader = readGoroutine
	return true
}

// callerReadsLocked is submit's, for Apply's task t, just dispatched: if t
// went alone to an idle worker, the caller reads its answer itself
// (readOwnAnswer). It returns the worker whose frames the caller writes
// (t's, whether or not the caller reads; nil if t is still queued).
func (p *Pool) callerReadsLocked(t *task) *worker {
	w := t.w
	if w != nil && w.reader == readKick && w.inflight.len() == 1 {
		w.reader = readCaller
		t.callerReads = w
	}
	return w
}

// readOwnAnswer is Apply's: if submit gave its caller the reading of t's
// worker, it reads until t has ended, then hands the reading back.
func (p *Pool) readOwnAnswer(t *task) {
	if w := t.callerReads; w != nil {
		p.readAsCaller(w, t)
	}
}

// readLoop is the worker's reader goroutine: it reads w's answers while
// tasks are in flight (or the worker has exited), and waits otherwise. It
// returns nil at the end of the stream, or the protocol error that ended it.
func (w *worker) readLoop() error {
	p := w.p
	for {
		p.mu.Lock()
		for w.reader != readGoroutine {
			if w.reader == readNone && (w.inflight.len() > 0 || isClosed(w.exited)) {
				w.reader = readGoroutine // it woke to tasks in flight, or to the worker's end
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
// back: to the reader goroutine if anything is left to read (or the worker
// has ended: the reader goroutine cleans up), else to nobody.
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
