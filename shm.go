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
	off, ok := w.shmRing.Alloc(n)
	if !ok {
		return nil, nil, nil, false
	}
	t.shmEnd = off + n
	// The deadline in the frame is the one read from t.ctx at submission:
	// this runs under Pool.mu, and a caller's own Context type is user code.
	frame, _ = wire.AppendSharedTask(make([]byte, 0, len(t.frame)-n+wire.SharedRefSize), t.frame, uint64(off))
	return frame, w.shm[off : off+n : off+n], payload, true
}
