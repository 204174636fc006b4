// Package inprocess runs workers on goroutines of the parent (the pool's
// WithInProcess): the serve loop of internal/serve over two in-memory
// pipes, with the same frames and codec as a worker process, so that what
// works in process encodes the same way in processes. There is no
// isolation and no journal: the parent asks the serve loop which task runs;
// a stop is a call. A goroutine cannot be killed: a kill cancels the
// running task's context and cuts the pipes, and the goroutine runs on
// until its function returns.
package inprocess

import (
	"io"
	"os"
	"strconv"

	"github.com/procpool/procpool/internal/backend"
	"github.com/procpool/procpool/internal/mempipe"
	"github.com/procpool/procpool/internal/serve"
	"github.com/procpool/procpool/internal/wire"
)

// Launcher starts in-process workers serving fns.
type Launcher struct {
	fns serve.Functions
}

// NewLauncher returns a launcher of workers that serve fns.
func NewLauncher(fns serve.Functions) *Launcher { return &Launcher{fns: fns} }

// Close does nothing: an in-process worker holds nothing of the launcher.
func (*Launcher) Close() {}

// Worker is an in-process worker: a goroutine running the serve loop.
type Worker struct {
	pid            int
	tasks, results *mempipe.Pipe
	srv            *serve.Server
	exited         chan struct{}
}

var _ backend.Worker = (*Worker)(nil)

// Start starts the serve loop on a goroutine (spec.Go), which writes the
// hello, then serves until its task pipe is closed or cut. It never fails.
func (l *Launcher) Start(spec backend.Spec) (backend.Worker, error) {
	w := &Worker{pid: os.Getpid(), tasks: mempipe.New(), results: mempipe.New(), exited: make(chan struct{})}
	w.srv = serve.New(w.tasks, w.results, serve.Config{
		Functions: l.fns,
		Codec:     spec.Codec,
		MaxFrame:  spec.MaxFrame,
		Available: w.tasks.Available,
		Control:   true, // stops are calls
		Grace:     spec.KillGrace,
		// Stopping the running task cuts the pipes: the parent reads the
		// answers written so far, then the end; the goroutine, which
		// cannot be killed, finds its pipes closed when the task returns.
		Die: func() {
			w.results.Close()
			w.tasks.Break()
		},
	})
	spec.Go(func() {
		defer close(w.exited)
		defer w.results.Close()
		if w.srv.Hello(w.pid) == nil {
			_ = w.srv.Serve()
		}
	})
	return w, nil
}

// ID returns "pid N" with the parent's pid: the worker is one of its
// goroutines.
func (w *Worker) ID() string { return "pid " + strconv.Itoa(w.pid) }

// Host returns "".
func (w *Worker) Host() string { return "" }

// Pid returns the parent's own pid.
func (w *Worker) Pid() int { return w.pid }

// Tasks returns the in-memory task pipe; writes never block.
func (w *Worker) Tasks() io.WriteCloser { return w.tasks }

// Results returns the in-memory result pipe (its Close is the serve
// loop's).
func (w *Worker) Results() io.Reader { return w.results }

// Features: everything. The parent reads which task runs from the serve
// loop itself (Running, Death), answers are never held back, and a stop is
// a call; a chunk's items are not recorded (an in-process worker cannot
// die in the middle of a chunk but by a stop, and then nothing of it
// counts).
func (w *Worker) Features(wire.Hello) backend.Features {
	return backend.Features{Journal: true, Items: false, Control: true}
}

// Stop asks the serve loop to stop task id; it acts on it for sure.
func (w *Worker) Stop(id uint64, why byte) bool {
	w.srv.Stop(id, why)
	return true
}

// Kill cancels the running task's context, makes the serve loop begin no
// further task, and cuts both pipes.
func (w *Worker) Kill() {
	w.srv.Kill()
	w.results.Break()
	w.tasks.Break()
}

// KillNow is Kill: a goroutine cannot be killed any harder.
func (w *Worker) KillNow() { w.Kill() }

// Running returns the id of the task the serve loop runs.
func (w *Worker) Running() uint64 { return w.srv.Running() }

// Exited is closed once the serve loop's goroutine has returned.
func (w *Worker) Exited() <-chan struct{} { return w.exited }

// Exit returns an Exit without status: a goroutine has none.
func (w *Worker) Exit() backend.Exit { return backend.Exit{ReportAt: -1} }

// Death returns the task the serve loop ran when the worker was cut, if
// any.
func (w *Worker) Death() backend.Death {
	return backend.Death{Running: w.srv.Running(), Finished: -1}
}

// Reap returns at once: the goroutine may be held by a task for ever.
func (w *Worker) Reap() {}

// Release does nothing: the pipes are memory.
func (w *Worker) Release() {}
