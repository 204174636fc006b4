package supervise

import "os"

// PeerOpen reports false on macOS: it cannot tell there which processes
// hold a pipe, nor kill them (see KillPipeHolders), and EndReads ends the
// reading of a pipe whatever holds it.
func PeerOpen(f *os.File) bool { return false }

// KillPipeHolders does nothing on macOS, which has no /proc to find the
// holders of a pipe in. What a dead worker's started processes hold does
// not hold up the reading of its result pipe (see EndReads); they live on
// unless a group kill or a sweep of descendants reaches them.
func KillPipeHolders(inodes ...uint64) {}

// ReleaseWriteEnd closes w, the parent's copy of the write end of the pipe
// whose read end r it keeps, once it has handed w to a child (started
// tells whether the child started) — except on macOS when the child
// started: then it keeps w for EndReads, which closes it. The pipe has a
// writer as long as that child lives and until EndReads: its reader gets
// no end of file before EndReads (that is, before the parent has reaped
// the child), even if the child closes its own copy. It returns w.Close's
// error, or nil when it keeps w.
func ReleaseWriteEnd(r, w *os.File, started bool) error {
	if !started {
		return w.Close()
	}
	keepWriteEnd(r, w)
	return nil
}

// EndReads ends the reading of r, the read end of a pipe whose writer is
// known to be gone for good — a worker process that has been reaped — even
// while other processes still hold the pipe's write end (what the worker
// started) and would keep a reader waiting for ever.
//
// It makes r non-blocking, so that from then on a read that finds the pipe
// empty fails with EAGAIN, at once, instead of waiting; the caller treats
// that as the end of the stream. Then it writes marker (at most PIPE_BUF
// bytes, so all at once or not at all) into the pipe, to wake up a read that
// is already waiting: the caller's reader treats the marker as the end of
// the stream too. Everything the gone writer wrote is before the marker. If
// the pipe is full the marker is not written: the reader is not waiting,
// then, and meets EAGAIN once it has read what is there.
//
// On macOS the marker goes through the write end that ReleaseWriteEnd
// kept, which it then closes; it fails if none was kept for r.
func EndReads(r *os.File, marker []byte) error { return endReadsKept(r, marker) }
