package process

import (
	"encoding/binary"
	"errors"
	"io"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/procpool/procpool/internal/backend"
	"github.com/procpool/procpool/internal/supervise"
	"github.com/procpool/procpool/internal/wire"
)

// The parent's half: starting worker processes and handling them.

// Options are what worker processes need beyond backend.Spec.
type Options struct {
	// Command and Args are the program to run; "" means the program's own
	// binary with its own arguments (os.Args[1:]).
	Command string
	Args    []string
	Dir     string   // the working directory; "" the parent's
	Env     []string // added to the parent's environment
	Rlimits []Rlimit // set by the worker on itself before it serves
	// Stdout is the workers' standard output: handed over as it is when
	// it is a file (nil: /dev/null), else, or with OutputPrefix, copied
	// through a pipe. Stderr always goes through a pipe that the pool
	// reads, to keep its end for the errors (nil: discarded).
	Stdout, Stderr io.Writer
	OutputPrefix   bool // "[worker PID] " before each line
}

// Launcher starts worker processes, every one from the same thread, which
// lives as long as the launcher (supervise.Spawner: the parent-death
// signal fires when the thread that forked the child exits).
type Launcher struct {
	opts    Options
	spawner *supervise.Spawner
}

// NewLauncher starts the spawning thread.
func NewLauncher(opts Options) *Launcher {
	return &Launcher{opts: opts, spawner: supervise.NewSpawner()}
}

// Close stops the spawning thread: call it once every worker has exited.
func (l *Launcher) Close() { l.spawner.Stop() }

// Worker is a worker process, as the pool sees it.
type Worker struct {
	// Set by Start, before the worker's goroutines start; then read-only.
	cmd     *exec.Cmd
	pid     int
	tasks   *os.File   // the task pipe's write end
	results resultPipe // the result pipe's read end
	pipes   [2]uint64  // inode numbers of the result and task pipes, 0 if unknown
	exited  chan struct{}
	grace   time.Duration
	log     func(msg string, args ...any)
	shm     []byte // the shared-memory segment (the parent's mapping); nil if none
	jsize   int    // the journal's size
	outputs []*outputCopy
	errTail *outputTail

	// Set by Features, on the goroutine that then calls Death.
	keepsJournal bool

	// filesMu guards journal and ctl against their closing (closeFiles)
	// while a stop or an escalation uses them.
	filesMu sync.Mutex
	journal *os.File // the journal (see wire.JournalHeader); nil if none or closed
	ctl     *os.File // the control pipe's write end (Stop frames); nil if none or closed

	// Written by waitExit before it closes exited; read after.
	exit backend.Exit
}

var _ backend.Worker = (*Worker)(nil)

// Start starts a worker process: its pipes (blocking, 1 MiB buffers), its
// shared memory, journal and control pipe (each left out, with a log
// record, if it cannot be made), its environment, in a process group of
// its own, from the launcher's thread. It returns a *backend.LaunchError
// if the process could not be started; nothing is left open then.
func (l *Launcher) Start(spec backend.Spec) (backend.Worker, error) {
	w := &Worker{exited: make(chan struct{}), grace: spec.KillGrace, log: spec.Log, jsize: spec.JournalSize}
	path, args := l.opts.Command, l.opts.Args
	if path == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, &backend.LaunchError{Reason: "finding the program's own binary", Err: err}
		}
		path, args = exe, os.Args[1:]
	}
	taskR, taskW, err := supervise.Pipe()
	if err != nil {
		return nil, &backend.LaunchError{Reason: "creating the task pipe", Err: err}
	}
	resR, resW, err := supervise.Pipe()
	if err != nil {
		taskR.Close()
		taskW.Close()
		return nil, &backend.LaunchError{Reason: "creating the result pipe", Err: err}
	}
	_ = supervise.GrowPipe(taskW, 1<<20)
	_ = supervise.GrowPipe(resW, 1<<20)

	cmd := exec.Command(path, args...)
	cmd.Env = append(os.Environ(), l.opts.Env...)
	cmd.Env = append(cmd.Env,
		EnvWorker+"=1",
		envCodec+"="+spec.Codec.Name(),
		envMaxFrame+"="+strconv.Itoa(spec.MaxFrame),
		envRlimits+"="+encodeRlimits(l.opts.Rlimits),
		envKillGrace+"="+strconv.FormatInt(int64(spec.KillGrace), 10),
	)
	if !hasEnv(cmd.Env, "GOMAXPROCS") {
		// A worker runs one task at a time: one P spares it the scheduler's
		// spinning between tasks and cuts round-trip latency (see
		// WithProcesses).
		cmd.Env = append(cmd.Env, "GOMAXPROCS=1")
	}
	if !hasEnv(cmd.Env, "GORACE") {
		// A program built with -race sleeps a second at exit by default:
		// every Close of a pool of such workers (go test -race) would wait
		// that long. Without -race the variable means nothing.
		cmd.Env = append(cmd.Env, "GORACE=atexit_sleep_ms=0")
	}
	cmd.Dir = l.opts.Dir
	// Standard error goes through the pool, which keeps its tail for the
	// errors that report the worker's death; standard output only when it
	// needs carrying (a writer that is not a file, a prefix).
	var outW []*os.File // the write ends the worker gets
	closeOutputs := func() {
		for _, f := range outW {
			f.Close()
		}
		for _, c := range w.outputs {
			c.r.Close()
		}
	}
	w.errTail = newOutputTail()
	ec, ew, err := newOutputCopy(l.opts.Stderr, nil, w.errTail)
	if err != nil {
		taskR.Close()
		taskW.Close()
		resR.Close()
		resW.Close()
		return nil, &backend.LaunchError{Reason: "creating the standard error pipe", Err: err}
	}
	w.outputs, outW = append(w.outputs, ec), append(outW, ew)
	cmd.Stderr = ew
	cmd.Stdout = l.opts.Stdout
	if _, isFile := l.opts.Stdout.(*os.File); l.opts.Stdout != nil && (!isFile || l.opts.OutputPrefix) {
		oc, ow, err := newOutputCopy(l.opts.Stdout, nil, nil)
		if err != nil {
			closeOutputs()
			taskR.Close()
			taskW.Close()
			resR.Close()
			resW.Close()
			return nil, &backend.LaunchError{Reason: "creating the standard output pipe", Err: err}
		}
		w.outputs, outW = append(w.outputs, oc), append(outW, ow)
		cmd.Stdout = ow
	}
	// Descriptors 3 to 7: tasks, results, shared memory, journal, control
	// (a missing one is closed in the worker; the environment names those
	// that are there).
	cmd.ExtraFiles = []*os.File{taskR, resW, nil, nil, nil}
	var shmFile, ctlR *os.File
	if spec.SharedMemory > 0 && supervise.MemFiles {
		f, mem, err := supervise.SharedMemory(spec.SharedMemory)
		if err == nil {
			shmFile, w.shm = f, mem
			cmd.ExtraFiles[fdShared-3] = f
			cmd.Env = append(cmd.Env, envShared+"="+strconv.Itoa(spec.SharedMemory))
		} else {
			spec.Log("no shared memory; large arguments go through the pipe", "err", err)
		}
	}
	if f, err := supervise.MemFile("procpool-journal", spec.JournalSize); err == nil {
		w.journal = f
		cmd.ExtraFiles[fdJournal-3] = f
		cmd.Env = append(cmd.Env, envJournal+"="+strconv.Itoa(fdJournal)+":"+strconv.Itoa(spec.JournalSize))
	} else if supervise.MemFiles {
		spec.Log("no answer journal; the worker writes each answer at once", "err", err)
	}
	if r, wr, err := supervise.Pipe(); err == nil {
		ctlR, w.ctl = r, wr // before the worker's goroutines start: no lock needed
		cmd.ExtraFiles[fdControl-3] = r
		cmd.Env = append(cmd.Env, envControl+"="+strconv.Itoa(fdControl))
	} else {
		spec.Log("no control pipe; stops are signals", "err", err)
	}
	cmd.SysProcAttr = supervise.SysProcAttr()
	cmd.WaitDelay = time.Second
	err = l.spawner.Start(cmd)
	taskR.Close()
	supervise.ReleaseWriteEnd(resR, resW, err == nil)
	for _, f := range outW {
		f.Close() // the worker's now
	}
	for _, f := range []*os.File{shmFile, ctlR} {
		if f != nil {
			f.Close() // the worker has it now; a mapping stays
		}
	}
	if err != nil {
		if w.shm != nil {
			_ = supervise.Munmap(w.shm)
			w.shm = nil
		}
		w.closeFiles()
		taskW.Close()
		resR.Close()
		for _, c := range w.outputs {
			c.r.Close()
		}
		w.outputs = nil
		return nil, &backend.LaunchError{Reason: "running " + path, Err: err}
	}
	w.cmd, w.pid = cmd, cmd.Process.Pid
	for _, c := range w.outputs {
		if l.opts.OutputPrefix {
			c.prefix = outputPrefix(w.pid)
		}
		spec.Go(c.run)
	}
	w.tasks, w.results = taskW, resultPipe{resR}
	w.pipes[0], _ = supervise.PipeInode(resR)
	w.pipes[1], _ = supervise.PipeInode(taskW)
	spec.Go(w.waitExit)
	return w, nil
}

// ID returns "pid N".
func (w *Worker) ID() string { return "pid " + strconv.Itoa(w.pid) }

// Host returns "": the worker runs on this machine.
func (w *Worker) Host() string { return "" }

// Pid returns the worker's process id.
func (w *Worker) Pid() int { return w.pid }

// Tasks returns the task pipe's write end (blocking).
func (w *Worker) Tasks() io.WriteCloser { return w.tasks }

// Results returns the result pipe's read end (blocking until the worker
// has been reaped, see endReading).
func (w *Worker) Results() io.Reader { return w.results }

// Features: the journal and the control pipe, where the worker said it
// keeps them and the parent could make them.
func (w *Worker) Features(h wire.Hello) backend.Features {
	w.keepsJournal = h.Journal && w.journal != nil
	return backend.Features{Journal: w.keepsJournal, Items: w.keepsJournal, Control: h.Control && w.ctl != nil}
}

// Stop writes a Stop frame to the control pipe. A failed write means the
// worker is gone, which its exit reports. The worker may not be able to
// act on it (stuck where its watchdog cannot run): Stop reports false.
func (w *Worker) Stop(id uint64, why byte) bool {
	var b [wire.HeaderSize + 1]byte
	w.filesMu.Lock()
	defer w.filesMu.Unlock()
	if w.ctl != nil {
		_, _ = w.ctl.Write(wire.AppendFrame(b[:0], wire.KindStop, id, []byte{why}))
	}
	return false
}

// Kill sends SIGTERM to the worker's process group (the worker gives its
// running task the grace period to return), then SIGKILL 2 × grace + 50
// ms later if it has not exited.
func (w *Worker) Kill() { supervise.Stop(w.pid, w.grace, w.exited) }

// KillNow sends SIGKILL to the worker's process group.
func (w *Worker) KillNow() { _ = supervise.KillGroup(w.pid, syscall.SIGKILL) }

// Running reads the id of the task the worker runs now from its journal
// (one pread).
func (w *Worker) Running() uint64 {
	var b [8]byte
	w.filesMu.Lock()
	defer w.filesMu.Unlock()
	if w.journal == nil {
		return 0
	}
	if _, err := w.journal.ReadAt(b[:], 0); err != nil {
		return 0
	}
	return binary.LittleEndian.Uint64(b[:])
}

// Exited is closed once the process has been reaped, its group swept, its
// standard error read and its result pipe's reading made to end.
func (w *Worker) Exited() <-chan struct{} { return w.exited }

// Exit returns the process's exit: call it once Exited is closed.
func (w *Worker) Exit() backend.Exit { return w.exit }

// Reap waits for Exited.
func (w *Worker) Reap() { <-w.exited }

// RSS reads the process's resident memory (/proc/PID/statm).
func (w *Worker) RSS() (int64, error) { return supervise.RSS(w.pid) }

// Shared returns the parent's mapping of the worker's shared memory, nil
// if it has none.
func (w *Worker) Shared() []byte { return w.shm }

// waitExit waits for the worker process to exit (wait4, on a goroutine of
// its own, so that a death is seen at once even while nobody reads the
// worker's pipe), records its status, sweeps its process group, takes in
// the end of its standard error, makes the reading of its result pipe
// end, and closes exited.
func (w *Worker) waitExit() {
	_ = w.cmd.Wait()
	var ws syscall.WaitStatus
	if ps := w.cmd.ProcessState; ps != nil {
		ws, _ = ps.Sys().(syscall.WaitStatus)
	}
	// Sweep whatever the worker left in its group.
	_ = supervise.KillGroup(w.pid, syscall.SIGKILL)
	endOutputs(w.outputs)
	x := backend.Exit{Status: true, Code: ws.ExitStatus()}
	if ws.Signaled() {
		x.Signal = ws.Signal()
	}
	x.Stderr, x.Reported, x.ReportAt = w.errTail.snapshot()
	w.exit = x
	w.endReading()
	close(w.exited)
}

// Death reads the journal of the worker, which has exited. Without one it
// is empty.
func (w *Worker) Death() backend.Death {
	if !w.keepsJournal || w.journal == nil {
		return backend.Death{Finished: -1}
	}
	var hdr [wire.JournalHeader]byte
	if _, err := w.journal.ReadAt(hdr[:], 0); err != nil {
		return backend.Death{Finished: -1}
	}
	st, err := wire.ParseJournalHeader(hdr[:], w.jsize)
	if err != nil {
		return backend.Death{Finished: -1}
	}
	d := backend.Death{Running: st.Running, Finished: st.Finished, Stopped: st.Stopped}
	read := func(n int, at int64) []byte {
		if n == 0 {
			return nil
		}
		b := make([]byte, n)
		if _, err := w.journal.ReadAt(b, at); err != nil {
			return nil
		}
		return b
	}
	d.Answers = read(st.Answers, wire.JournalHeader)
	if st.Finished >= 0 {
		if d.List = read(st.List, wire.JournalListAt); d.List != nil {
			d.Listed = st.Listed
		}
		d.ItemErrs, _ = wire.ParseItemErrors(read(st.Errors, wire.JournalErrorsAt))
	}
	return d
}

// Release frees what the worker held once it has exited and its reading
// is over: its shared memory, its journal and control pipe, and the read
// end of its result pipe. (The task pipe's write end is closed by whoever
// writes the tasks.)
func (w *Worker) Release() {
	if w.shm != nil {
		_ = supervise.Munmap(w.shm)
	}
	w.closeFiles()
	_ = w.results.Close()
}

// closeFiles closes the journal and the control pipe once the worker is
// gone.
func (w *Worker) closeFiles() {
	w.filesMu.Lock()
	defer w.filesMu.Unlock()
	if w.journal != nil {
		w.journal.Close()
		w.journal = nil
	}
	if w.ctl != nil {
		w.ctl.Close()
		w.ctl = nil
	}
}

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

// KillPipeHolders lets a test leave alone the processes that hold a dead
// worker's pipes, as if they could not be killed.
var KillPipeHolders = true

// endReading makes sure that the reading of a reaped worker's result pipe
// ends, whoever else holds the pipe. Until now the reader's end of file
// came when the last write end closed; but a process the worker started
// may hold the pipe (handed to it on purpose: Serve makes fds 3 and 4
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
// waitExit calls it after the reap and before it closes exited: the read
// end is still open (Release closes it after exited).
func (w *Worker) endReading() {
	if KillPipeHolders && (supervise.PeerOpen(w.results.File) || supervise.PeerOpen(w.tasks)) {
		supervise.KillPipeHolders(w.pipes[:]...)
	}
	if err := supervise.EndReads(w.results.File, endMarker); err != nil {
		w.log("cannot end the reading of a dead worker's result pipe", "pid", w.pid, "err", err)
	}
}
