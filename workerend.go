package procpool

import (
	"errors"
	"io"
	"os"
	"syscall"

	"github.com/procpool/procpool/internal/supervise"
	"github.com/procpool/procpool/internal/wire"
)

// resultPipe is the parent's read end of a worker's result pipe. Once the
// worker has been reaped, the pipe is non-blocking (see endReading), and a
// read that finds it empty is the end of the stream.
type resultPipe struct{ *os.File }

func (r resultPipe) Read(b []byte) (int, error) {
	n, err := r.File.Read(b)
	if err != nil && errors.Is(err, syscall.EAGAIN) {
		return n, io.EOF
	}
	return n, err
}

// endMarker is what endReading writes into a reaped worker's result pipe:
// an End frame, the end of the stream for the worker's reader.
var endMarker = wire.AppendFrame(nil, wire.KindEnd, 0, nil)

// killPipeHolders lets a test leave alone the processes that hold a dead
// worker's pipes, as if they could not be killed.
var killPipeHolders = true

// endReading makes sure that the reading of a reaped worker's result pipe
// ends, whoever else holds the pipe. Until now the reader's end of file
// came when the last write end closed; but a process the worker started
// may hold the pipe (handed to it on purpose: Main makes fds 3 and 4
// close-on-exec) and live on, in a session of its own, beyond any group
// kill: the reader would wait for ever, and with it the task, Close and
// Terminate.
//
// It kills what still holds the worker's pipes, if anything does: only
// the worker could have passed them on. Then it makes the read end
// non-blocking and writes an End frame into it (supervise.EndReads): the
// reader reads whatever the worker wrote before it died, and stops at the
// End frame, or, should the worker have died in the middle of a frame, at
// the first read that finds the pipe empty. What the holders write later
// is never read.
//
// waitExit calls it after the reap and before it closes w.exited: the read
// end is still open (release closes it after w.exited).
func (w *worker) endReading() {
	res, ok := w.results.(resultPipe)
	if !ok {
		return
	}
	tasks, _ := w.tasks.(*os.File)
	if killPipeHolders && (supervise.PeerOpen(res.File) || tasks != nil && supervise.PeerOpen(tasks)) {
		supervise.KillPipeHolders(w.pipes[:]...)
	}
	if err := supervise.EndReads(res.File, endMarker); err != nil {
		w.p.logf("cannot end the reading of a dead worker's result pipe", "pid", w.pid, "err", err)
	}
}

// release frees what the worker held once it has exited and its reading is
// over: its shared memory, its journal and control pipe, and the read end of
// its result pipe. (The task pipe's write end is the writer goroutine's to
// close.)
func (w *worker) release() {
	w.releaseShared()
	w.closeFiles()
	if w.cmd != nil {
		_ = w.results.Close()
	}
}
