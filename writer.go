package procpool

import "time"

// A worker's outgoing frames: queued under Pool.mu (enqueue), written after
// it is released by the dispatching goroutine or the worker's writer
// goroutine (flush), the task stream closed at the end (closeInput).

// inlineMax is the largest batch a submitting goroutine writes to a
// worker's pipe itself; larger ones go to the worker's writer goroutine, so
// that no caller blocks on a pipe that is full.
const inlineMax = 4 << 10

// bigFrame is the size from which a frame is written from its own memory
// rather than copied into the outgoing batch.
const bigFrame = 64 << 10

// enqueue adds a frame to the worker's outgoing batch. It does not write;
// see flush. The frame must not change until it is written.
func (w *worker) enqueue(frame []byte) {
	w.outMu.Lock()
	if !w.outClosed {
		w.queued += len(frame)
	}
	switch {
	case w.outClosed:
	case len(frame) >= bigFrame:
		if len(w.out) > 0 {
			w.big = append(w.big, outChunk{b: w.out})
			w.out = nil
		}
		w.big = append(w.big, outChunk{b: frame})
	default:
		w.out = append(w.out, frame...)
	}
	w.outMu.Unlock()
}

// outChunk is a piece of a worker's outgoing stream: bytes to write, and for
// a task whose argument travels in shared memory, the copy into the segment
// to make first.
type outChunk struct {
	b        []byte
	dst, src []byte
}

// enqueueShared queues the frame of a task whose argument goes into shared
// memory: whoever writes the frame copies src into dst first, outside the
// pool's lock.
func (w *worker) enqueueShared(frame, dst, src []byte) {
	w.outMu.Lock()
	if !w.outClosed {
		w.queued += len(frame)
		if len(w.out) > 0 {
			w.big = append(w.big, outChunk{b: w.out})
			w.out = nil
		}
		w.big = append(w.big, outChunk{b: frame, dst: dst, src: src})
	}
	w.outMu.Unlock()
}

// send queues a frame and gets it written.
func (w *worker) send(frame []byte) {
	w.enqueue(frame)
	w.flush(flushSmall, 0)
}

// How flush may write.
type flushMode int

const (
	flushByWriter flushMode = iota // the writer goroutine: anything, blocking if need be
	flushSmall                     // a dispatching goroutine: small batches only, else hand over
	flushAny                       // Apply's caller, which waits anyway: its own frame alone, however large
	flushHandOver                  // only wake the writer
)

// flush gets the outgoing batch written: by the calling goroutine when its
// mode allows (one system call, no hand-off), else by the writer goroutine.
// It reports whether the task pipe may now be closed.
//
// With flushAny, own is the size of the caller's frame: the caller writes
// only when that frame is all there is to write, and only once. It may be
// the one reading the worker's answers, so it must not block writing other
// tasks' frames while the worker waits for it to read.
func (w *worker) flush(mode flushMode, own int) bool {
	w.outMu.Lock()
	for !w.writing && (len(w.out) > 0 || len(w.big) > 0) {
		if mode == flushAny && w.queued != own {
			mode = flushHandOver
		}
		if mode == flushHandOver || (mode == flushSmall && (len(w.big) > 0 || len(w.out) > inlineMax)) {
			w.wakeWriter()
			break
		}
		if mode == flushAny {
			mode = flushHandOver // one batch: anything queued meanwhile goes to the writer
		}
		w.writing = true
		w.queued = 0
		big, buf := w.big, w.out
		w.big, w.out = nil, w.spare[:0]
		w.spare = nil
		gone := w.shmGone
		w.outMu.Unlock()
		for _, c := range big {
			if c.dst != nil {
				if gone {
					continue // the worker is gone; its task was requeued
				}
				copy(c.dst, c.src)
			}
			w.write(c.b)
		}
		w.write(buf)
		w.outMu.Lock()
		w.writing = false
		if cap(buf) <= 1<<20 {
			w.spare = buf[:0]
		}
	}
	closing := w.outClosed && !w.writing && len(w.out) == 0 && len(w.big) == 0
	if mode != flushByWriter && w.outClosed {
		w.wakeWriter()
	}
	w.outMu.Unlock()
	return closing
}

// write writes b to the task pipe unless an earlier write failed.
func (w *worker) write(b []byte) {
	if len(b) == 0 || w.broken.Load() {
		return
	}
	if _, err := w.tasks.Write(b); err != nil {
		// The worker is gone; its reader sees that and cleans up.
		w.broken.Store(true)
	}
}

func (w *worker) wakeWriter() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// closeInput asks the writer to close the task pipe once everything queued
// is written: the worker then finishes and exits.
func (w *worker) closeInput() {
	w.outMu.Lock()
	w.outClosed = true
	w.outMu.Unlock()
	w.wakeWriter()
}

// writeLoop writes the batches that flush hands over and closes the task
// pipe at the end.
func (w *worker) writeLoop() {
	defer w.tasks.Close()
	for range w.wake {
		if w.flush(flushByWriter, 0) {
			return
		}
	}
}

// stopSharedCopies makes sure that no goroutine copies into the worker's
// shared memory from now on (its mapping is about to go). Call it after
// the worker has exited.
func (w *worker) stopSharedCopies() {
	if w.shm == nil {
		return
	}
	w.outMu.Lock()
	for w.writing {
		// A writer is finishing a batch (its writes to the dead worker fail
		// at once); wait for it, rarely and briefly.
		w.outMu.Unlock()
		time.Sleep(time.Millisecond)
		w.outMu.Lock()
	}
	w.shmGone = true
	w.outMu.Unlock()
}
