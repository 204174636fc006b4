package procpool

import (
	"github.com/procpool/procpool/internal/wire"
)

// Large arguments through a worker's shared-memory segment.

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
