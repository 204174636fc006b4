package procpool

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/procpool/procpool/internal/serve"
	"github.com/procpool/procpool/internal/shmring"
	"github.com/procpool/procpool/internal/supervise"
	"github.com/procpool/procpool/internal/wire"
)

// worker is the parent's link to one worker: a process (or, in-process, a
// goroutine), the pipe its tasks go down and the pipe its answers come up.
//
// Who may touch what: the fields up to status are set by launch before any
// of the worker's goroutines starts, then only read (exited is closed, and
// status written before it, by waitExit); hasJournal and hasControl are set
// by the handshake before the worker goes into service under Pool.mu;
// journal and ctl are guarded by filesMu, the outgoing frames by outMu, the
// dispatcher's view by Pool.mu (see Pool.mu for the lock order); the
// output fields at the end are written by waitExit before it closes
// exited, and read after.
type worker struct {
	p       *Pool
	pid     int
	cmd     *exec.Cmd // nil for an in-process worker
	tasks   io.WriteCloser
	results io.ReadCloser
	r       *wire.Reader
	exited  chan struct{} // closed once the process has been reaped and its reading made to end (or, in-process, the goroutine has returned)
	pipes   [2]uint64     // inode numbers of the result and task pipes, 0 if unknown
	kick    chan struct{} // wakes the reader goroutine: it has reading to do
	status  syscall.WaitStatus
	inproc  struct {
		tasks, results *memPipe
		srv            *serve.Server
	}
	journal *os.File // the journal (see wire.JournalHeader); nil if none or closed
	// filesMu guards journal and ctl against their closing (closeFiles)
	// while a stop or an escalation uses them.
	filesMu sync.Mutex
	ctl     *os.File // the control pipe's write end (Stop frames); nil if none or closed
	// From the hello: the worker keeps a journal (so the parent knows which
	// task it was running when it died, and gets the answers it had not
	// written yet), and it stops a task on a Stop frame only while that task
	// runs. Without them (a worker in another language may lack them), the
	// oldest unanswered task is taken for the running one, and a stop is a
	// signal to the worker's group.
	hasJournal, hasControl bool

	// Outgoing frames, batched: enqueue appends, flush writes (see flush
	// for who). Guarded by outMu, which comes after Pool.mu.
	outMu     sync.Mutex
	out       []byte     // small frames, batched
	big       []outChunk // large frames (and batches before them), in order, ahead of out
	shmGone   bool       // the shared-memory mapping is released: copy nothing into it
	spare     []byte
	writing   bool // a goroutine is writing a batch
	queued    int  // bytes queued (out and big) since the last batch was taken
	outClosed bool
	wake      chan struct{}
	broken    atomic.Bool // a write failed: the worker is gone

	// Guarded by Pool.mu.
	flushQueued bool         // w is in p.toFlush
	pipeBytes   int          // bytes of the frames of its unanswered tasks
	reader      readerOwner  // who reads its result pipe now (reading.go)
	readErr     error        // a protocol error a caller met while reading, for the reader goroutine
	shm         []byte       // the shared-memory segment (parent's mapping); nil if none
	shmRing     shmring.Ring // the regions of shm in use: tasks' arguments, released as they are answered
	inflight    deque[*task]
	ready       bool
	sent        int // tasks given to this worker
	done        int // tasks it answered
	retiring    bool
	retireWhy   string // why it retires (ReasonRecycled, ReasonMemory), reported if it then exits by itself with status 0
	retireErr   error
	stopReason  string // why the pool stopped the worker (its exit then reports this reason); "" if it did not
	stopErr     error
	stopTarget  *task // the task a stop was aimed at; nil for a stop of the whole worker
	stopKilled  bool  // the pool signalled the worker's group: not a stop the worker checked against its running task
	death       death // after the worker died: what its journal tells (see recoverAnswers)
	lastUsed    time.Time
	svc         time.Duration // average run time of its recent tasks; starts high, so nothing is pipelined until tasks prove short
	rss         int64

	// Its output streams that the pool carries (standard error always,
	// standard output when it must), and what its standard error ended
	// with: set by waitExit before it closes exited, read after.
	outputs   []*outputCopy
	errTail   *outputTail
	stderr    string         // the last bytes of its standard error
	reportSig syscall.Signal // the last fatal signal the Go runtime reported on its standard error, or 0
	reportAt  int            // where the Go runtime's last report starts in stderr, or -1
}

// launch starts a worker process (or goroutine) and its writer goroutine.
// The handshake is not done yet.
func (p *Pool) launch() (*worker, error) {
	w := &worker{p: p, exited: make(chan struct{}), wake: make(chan struct{}, 1), kick: make(chan struct{}, 1), svc: time.Second, reportAt: -1}
	if p.cfg.inProcess {
		w.inproc.tasks, w.inproc.results = newMemPipe(), newMemPipe()
		w.tasks, w.results = w.inproc.tasks, io.NopCloser(w.inproc.results)
		w.pid = os.Getpid()
		s := serve.New(w.inproc.tasks, w.inproc.results, serve.Config{
			Functions: served{},
			Codec:     p.codec,
			MaxFrame:  p.cfg.maxFrame,
			Available: w.inproc.tasks.available,
			Control:   true, // stops are calls
			Grace:     p.cfg.killGrace,
			// Stopping the running task cuts the pipes: the parent reads
			// the answers written so far, then the end; the goroutine,
			// which cannot be killed, finds its pipes closed when the task
			// returns.
			Die: func() {
				w.inproc.results.Close()
				w.inproc.tasks.breakPipe()
			},
		})
		w.inproc.srv = s
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer w.kickReader()
			defer close(w.exited)
			defer w.inproc.results.Close()
			if s.Hello(w.pid) == nil {
				_ = s.Serve()
			}
		}()
	} else if err := p.launchProcess(w); err != nil {
		return nil, err
	}
	w.r = wire.NewReader(w.results, 64<<10, p.cfg.maxFrame)
	w.r.StopAtEnd() // see endReading
	p.wg.Add(1)
	go w.writeLoop()
	return w, nil
}

func (p *Pool) launchProcess(w *worker) error {
	path, args := p.cfg.command, p.cfg.args
	if path == "" {
		exe, err := os.Executable()
		if err != nil {
			return &StartError{Reason: "finding the program's own binary", Err: err}
		}
		path, args = exe, os.Args[1:]
	}
	taskR, taskW, err := supervise.Pipe()
	if err != nil {
		return &StartError{Reason: "creating the task pipe", Err: err}
	}
	resR, resW, err := supervise.Pipe()
	if err != nil {
		taskR.Close()
		taskW.Close()
		return &StartError{Reason: "creating the result pipe", Err: err}
	}
	_ = supervise.GrowPipe(taskW, 1<<20)
	_ = supervise.GrowPipe(resW, 1<<20)

	cmd := exec.Command(path, args...)
	cmd.Env = append(os.Environ(), p.cfg.env...)
	cmd.Env = append(cmd.Env,
		envWorker+"=1",
		envCodec+"="+p.codec.Name(),
		envMaxFrame+"="+strconv.Itoa(p.cfg.maxFrame),
		envRlimits+"="+encodeRlimits(p.cfg.rlimits),
		envKillGrace+"="+strconv.FormatInt(int64(p.cfg.killGrace), 10),
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
	cmd.Dir = p.cfg.dir
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
	ec, ew, err := newOutputCopy(p.cfg.stderr, nil, w.errTail)
	if err != nil {
		taskR.Close()
		taskW.Close()
		resR.Close()
		resW.Close()
		return &StartError{Reason: "creating the standard error pipe", Err: err}
	}
	w.outputs, outW = append(w.outputs, ec), append(outW, ew)
	cmd.Stderr = ew
	cmd.Stdout = p.cfg.stdout
	if _, isFile := p.cfg.stdout.(*os.File); p.cfg.stdout != nil && (!isFile || p.cfg.outputPrefix) {
		oc, ow, err := newOutputCopy(p.cfg.stdout, nil, nil)
		if err != nil {
			closeOutputs()
			taskR.Close()
			taskW.Close()
			resR.Close()
			resW.Close()
			return &StartError{Reason: "creating the standard output pipe", Err: err}
		}
		w.outputs, outW = append(w.outputs, oc), append(outW, ow)
		cmd.Stdout = ow
	}
	// Descriptors 3 to 7: tasks, results, shared memory, journal, control
	// (a missing one is closed in the worker; the environment names those
	// that are there).
	cmd.ExtraFiles = []*os.File{taskR, resW, nil, nil, nil}
	var shmFile, ctlR *os.File
	if p.cfg.sharedMem > 0 && supervise.MemFiles {
		f, mem, err := supervise.SharedMemory(p.cfg.sharedMem)
		if err == nil {
			shmFile, w.shm, w.shmRing = f, mem, shmring.New(len(mem))
			cmd.ExtraFiles[fdShared-3] = f
			cmd.Env = append(cmd.Env, envShared+"="+strconv.Itoa(p.cfg.sharedMem))
		} else {
			p.logf("no shared memory; large arguments go through the pipe", "err", err)
		}
	}
	if f, err := supervise.MemFile("procpool-journal", p.journalSize()); err == nil {
		w.journal = f
		cmd.ExtraFiles[fdJournal-3] = f
		cmd.Env = append(cmd.Env, envJournal+"="+strconv.Itoa(fdJournal)+":"+strconv.Itoa(p.journalSize()))
	} else if supervise.MemFiles {
		p.logf("no answer journal; the worker writes each answer at once", "err", err)
	}
	if r, wr, err := supervise.Pipe(); err == nil {
		ctlR, w.ctl = r, wr // before the worker's goroutines start: no lock needed
		cmd.ExtraFiles[fdControl-3] = r
		cmd.Env = append(cmd.Env, envControl+"="+strconv.Itoa(fdControl))
	} else {
		p.logf("no control pipe; stops are signals", "err", err)
	}
	cmd.SysProcAttr = supervise.SysProcAttr()
	cmd.WaitDelay = time.Second
	err = p.spawner.Start(cmd)
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
		return &StartError{Reason: "running " + path, Err: err}
	}
	w.cmd, w.pid = cmd, cmd.Process.Pid
	for _, c := range w.outputs {
		if p.cfg.outputPrefix {
			c.prefix = outputPrefix(w.pid)
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			c.run()
		}()
	}
	w.tasks, w.results = taskW, resultPipe{resR}
	w.pipes[0], _ = supervise.PipeInode(resR)
	w.pipes[1], _ = supervise.PipeInode(taskW)
	p.wg.Add(1)
	go w.waitExit()
	p.stats.workersStarted.Add(1)
	p.logf("worker started", "pid", w.pid)
	return nil
}

// handshake reads the worker's hello and runs the initializer. It returns
// a *StartError on failure; the caller then stops the worker.
func (w *worker) handshake() error {
	p := w.p
	var timedOut atomic.Bool
	timer := time.AfterFunc(p.cfg.startTimeout, func() {
		timedOut.Store(true)
		w.kill()
	})
	defer timer.Stop()
	w.r.SetMaxFrame(max(p.cfg.maxFrame, wire.HelloLimit))
	f, err := w.r.Next()
	w.r.SetMaxFrame(p.cfg.maxFrame)
	if err != nil {
		if w.cmd != nil {
			w.reap()
		}
		if timer.Stop() || !timedOut.Load() {
			return w.startExit("before the handshake")
		}
		e := &StartError{Pid: w.pid, Reason: fmt.Sprintf("no handshake within %v (WithStartTimeout)", p.cfg.startTimeout), Err: ErrHandshake, Stderr: w.stderr, report: w.reportAt + 1}
		if w.silent() {
			// Nothing went wrong that it could tell: most likely it never
			// became a worker.
			e.Reason += "; " + mainHint
		}
		return e
	}
	var h wire.Hello
	if f.Kind != wire.KindHello || json.Unmarshal(f.Body, &h) != nil {
		return &StartError{Pid: w.pid, Reason: "the worker's first frame is not a valid hello: is it a procpool worker?", Err: ErrHandshake}
	}
	if h.Protocol != wire.Version {
		return &StartError{Pid: w.pid, Reason: fmt.Sprintf("the worker speaks protocol %d, this pool %d", h.Protocol, wire.Version), Err: ErrHandshake}
	}
	if h.Codec == "" && p.codec.Name() != "" {
		return &StartError{Pid: w.pid, Reason: fmt.Sprintf("the worker does not know codec %q: its program must import the package that registers it (codec.Register)", p.codec.Name()), Err: ErrHandshake}
	}
	if h.Codec != p.codec.Name() {
		return &StartError{Pid: w.pid, Reason: fmt.Sprintf("the worker uses codec %q, this pool %q", h.Codec, p.codec.Name()), Err: ErrHandshake}
	}
	if err := p.checkFunctions(w.pid, &h); err != nil {
		return err
	}
	// In process, the parent reads the server's running task directly and
	// answers are never held back.
	w.hasJournal = w.cmd == nil || h.Journal && w.journal != nil
	w.hasControl = w.cmd == nil || h.Control && w.ctl != nil
	if p.initFrame == nil {
		return nil
	}
	w.send(p.initFrame)
	f, err = w.r.Next()
	switch {
	case err != nil:
		if w.cmd != nil {
			w.reap()
		}
		if timer.Stop() || !timedOut.Load() {
			return w.startExit("in the initializer")
		}
		return &StartError{Pid: w.pid, Reason: fmt.Sprintf("the initializer did not finish within %v (WithStartTimeout)", p.cfg.startTimeout), Err: ErrHandshake, Stderr: w.stderr, report: w.reportAt + 1}
	case f.Kind == wire.KindResult && f.ID == 0:
		return nil
	case f.Kind == wire.KindError && f.ID == 0:
		return &StartError{Pid: w.pid, Reason: "the initializer failed", Err: remoteError(p.cfg.initName, f.Body)}
	default:
		return &StartError{Pid: w.pid, Reason: "unexpected " + f.Kind.String() + " frame in answer to the initializer", Err: ErrProtocol}
	}
}

// mainHint is what a start error says when the worker program most likely
// does not call procpool.Main.
const mainHint = "does its main function call procpool.Main() first?"

// silent reports whether the worker wrote nothing (but white space) to its
// standard error. Call it after the reap.
func (w *worker) silent() bool { return strings.TrimSpace(w.stderr) == "" }

// reportedSignal returns the signal that a worker which exited (rather than
// being killed) reported itself: SIGTERM for ReasonTerminatedOutside, the
// fatal signal the Go runtime reported on its standard error for exit
// status 2, else 0. Call it after the reap.
func (w *worker) reportedSignal(reason string) syscall.Signal {
	switch {
	case reason == ReasonTerminatedOutside:
		return syscall.SIGTERM
	case w.status.Exited() && w.status.ExitStatus() == goRuntimeExit:
		return w.reportSig
	}
	return 0
}

// startExit describes a worker that exited during its start (stage says
// when) by itself or by a signal the pool did not send, and quotes the end
// of its standard error. A signal from another process (the OOM killer, a
// kill(1), a chaos tool) says nothing about the worker program: the
// StartError is marked to be replaced without counting against the restart
// budget. The hint about procpool.Main is given only where a missing call
// is the likely cause: a clean exit before the handshake, with nothing on
// its standard error. A worker that fails its own set-up (an rlimit, the
// shared-memory mapping) exits with status 2 and says why on its stderr.
func (w *worker) startExit(stage string) *StartError {
	ws := w.status
	e := &StartError{Pid: w.pid, Err: ErrHandshake, Stderr: w.stderr, report: w.reportAt + 1}
	switch {
	case w.cmd == nil:
		e.Reason = "the in-process worker stopped " + stage
	case ws.Signaled():
		e.Signal = ws.Signal()
		e.Reason = "killed by signal " + signalName(e.Signal) + " during start-up (" + stage + ")"
		if selfInflicted(e.Signal) {
			e.Reason += ": the worker program crashed"
		} else {
			e.Reason += ", not by the pool"
			e.external = true
		}
	case ws.Exited() && ws.ExitStatus() == exitSIGTERM:
		// The worker's SIGTERM handler exits with this status (when it
		// does not lead its process group, which it then kills).
		e.Signal, e.external = syscall.SIGTERM, true
		e.Reason = "stopped by signal SIGTERM during start-up (" + stage + "), not by the pool"
	case ws.Exited() && ws.ExitStatus() == 0 && stage == "before the handshake" && w.silent():
		e.Reason = "the worker exited with status 0 before the handshake; " + mainHint
	case ws.Exited() && ws.ExitStatus() == goRuntimeExit && w.reportSig != 0:
		e.Signal = w.reportSig
		e.Reason = "the worker crashed by " + signalName(e.Signal) + " " + stage + " (reported by the Go runtime, exit status 2)"
	case ws.Exited():
		e.Reason = fmt.Sprintf("the worker exited with status %d %s", ws.ExitStatus(), stage)
		if w.silent() {
			e.Reason += ", and wrote nothing to its standard error"
		}
	default:
		e.Reason = "the worker stopped " + stage + " (" + exitText(ws) + ")"
	}
	return e
}

// signalName returns the conventional name of sig ("SIGKILL"), or "signal
// N" for one without a name here. (syscall.Signal's String is a
// description, "killed", which does not read well after "killed by".)
func signalName(sig syscall.Signal) string {
	if n, ok := signalNames[sig]; ok {
		return n
	}
	return "signal " + strconv.Itoa(int(sig))
}

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
	defer w.p.wg.Done()
	defer w.tasks.Close()
	for range w.wake {
		if w.flush(flushByWriter, 0) {
			return
		}
	}
}

// kill stops the worker now: SIGTERM to its process group (the worker gives
// its running task the grace period to return), then SIGKILL. For an
// in-process worker it cancels the running task's context and cuts both
// pipes.
func (w *worker) kill() {
	if w.cmd == nil {
		// A goroutine cannot be killed: cancel its task's context, cut
		// the pipes, and let it return.
		w.inproc.srv.Kill()
		w.inproc.results.breakPipe()
		w.inproc.tasks.breakPipe()
		return
	}
	supervise.Stop(w.pid, w.p.cfg.killGrace, w.exited)
}

// releaseShared unmaps the worker's shared memory once no goroutine can be
// copying into it. Call it after the worker has exited.
func (w *worker) releaseShared() {
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
	_ = supervise.Munmap(w.shm)
}

// killNow kills the worker's process group with SIGKILL at once.
func (w *worker) killNow() {
	if w.cmd == nil {
		w.kill()
		return
	}
	_ = supervise.KillGroup(w.pid, syscall.SIGKILL)
}

var errClosedEarly = errors.New("the worker closed its result pipe but did not exit")

// reap waits until waitExit has reaped the process, recorded its status,
// swept its group and made its reading end. Safe to call more than once.
func (w *worker) reap() {
	if w.cmd == nil {
		return // a goroutine cannot be waited for: it may be stuck in a task
	}
	<-w.exited
}

// waitExit waits for the worker process to exit (wait4, on a goroutine of
// its own, so that a death is seen at once even while nobody reads the
// worker's pipe), records its status, sweeps its process group, makes the
// reading of its pipe end, takes it out of service and wakes its reader to
// read the pipe to its end.
func (w *worker) waitExit() {
	defer w.p.wg.Done()
	_ = w.cmd.Wait()
	if ps := w.cmd.ProcessState; ps != nil {
		w.status, _ = ps.Sys().(syscall.WaitStatus)
	}
	// Sweep whatever the worker left in its group.
	_ = supervise.KillGroup(w.pid, syscall.SIGKILL)
	endOutputs(w.outputs)
	w.stderr, w.reportSig, w.reportAt = w.errTail.snapshot()
	w.endReading()
	p := w.p
	p.mu.Lock()
	w.ready, w.retiring = false, true
	p.mu.Unlock()
	close(w.exited)
	w.kickReader()
}

// kickReader wakes the worker's reader goroutine.
func (w *worker) kickReader() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

func exitText(ws syscall.WaitStatus) string {
	switch {
	case ws.Signaled():
		return "killed by signal " + signalName(ws.Signal())
	case ws.Exited():
		return "exit status " + strconv.Itoa(ws.ExitStatus())
	default:
		return "still running"
	}
}

// remoteError decodes an Error frame's body.
func remoteError(fn string, body []byte) *RemoteError {
	eb, err := wire.ParseError(body)
	if err != nil {
		return &RemoteError{Func: fn, Message: "undecodable error from worker: " + err.Error(), Code: CodeProtocol}
	}
	return remoteFromBody(fn, eb)
}

// remoteFromBody makes a worker's error report a *RemoteError. The
// sentinels and typed errors the report names are rebuilt behind Unwrap
// when it is first called (see rebuild), not here: this runs under the
// pool's lock too, and decoding a typed error may run user code.
func remoteFromBody(fn string, eb wire.ErrorBody) *RemoteError {
	re := &RemoteError{Func: fn, Message: eb.Message, Type: eb.Type, Stack: eb.Stack, Panic: eb.Panic, Code: eb.Code, Chain: eb.Chain}
	if len(eb.Sentinels) > 0 || len(eb.Values) > 0 {
		re.wrapped = &unwrapped{report: wire.ErrorBody{Sentinels: eb.Sentinels, Values: eb.Values}}
	}
	return re
}

// hasEnv reports whether env sets the variable key.
func hasEnv(env []string, key string) bool {
	for _, kv := range env {
		if strings.HasPrefix(kv, key+"=") {
			return true
		}
	}
	return false
}

// journalSize is the size of each worker's journal (see wire.JournalHeader):
// the answer and error areas, and a list area as large as the largest
// frame, for the results of a chunk's items. The file is sparse: pages cost
// memory only once touched.
func (p *Pool) journalSize() int {
	return wire.JournalMin + max(p.cfg.maxFrame, 1<<20)
}

// closeFiles closes the journal and the control pipe once the worker is gone.
func (w *worker) closeFiles() {
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

// sendStop asks the worker to stop task id, for the reason why (a
// wire.StopCancel, StopDeadline or StopMemory): if it runs, its context is
// cancelled and it has the kill grace period to return before the worker
// dies; if it has not started, it is skipped. A failed write means the worker is gone,
// which its exit reports.
func (w *worker) sendStop(id uint64, why byte) {
	if w.cmd == nil {
		w.inproc.srv.Stop(id, why)
		return
	}
	var b [wire.HeaderSize + 1]byte
	w.filesMu.Lock()
	defer w.filesMu.Unlock()
	if w.ctl != nil {
		_, _ = w.ctl.Write(wire.AppendFrame(b[:0], wire.KindStop, id, []byte{why}))
	}
}

// death is what a dead worker's journal tells: the id of the task it was
// running, the answers it had not written to the pipe (some of which the
// parent may have read already), and for a chunk task, how many of its
// items had finished, the encoded results of the first listed of them, and
// the errors of those that failed (JSON ErrorBody by index).
type death struct {
	running  uint64
	answers  []byte
	finished int  // -1: the chunk had not started its items
	stopped  bool // the chunk stopped between items: none was running
	listed   int
	list     []byte
	itemErrs map[int][]byte
}

// readJournal reads a dead worker's journal. Without one it is empty; in
// process, the running task is the server's.
func (w *worker) readJournal() death {
	if w.cmd == nil {
		return death{running: w.inproc.srv.Running(), finished: -1}
	}
	if !w.hasJournal || w.journal == nil {
		return death{finished: -1}
	}
	var hdr [wire.JournalHeader]byte
	if _, err := w.journal.ReadAt(hdr[:], 0); err != nil {
		return death{finished: -1}
	}
	st, err := wire.ParseJournalHeader(hdr[:], w.p.journalSize())
	if err != nil {
		return death{finished: -1}
	}
	d := death{running: st.Running, finished: st.Finished, stopped: st.Stopped}
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
	d.answers = read(st.Answers, wire.JournalHeader)
	if st.Finished >= 0 {
		if d.list = read(st.List, wire.JournalListAt); d.list != nil {
			d.listed = st.Listed
		}
		d.itemErrs, _ = wire.ParseItemErrors(read(st.Errors, wire.JournalErrorsAt))
	}
	return d
}

// journalRunning reads the id of the task the worker is running now from its
// journal (one pread). It is a moment's view of a live worker, for the
// decision to kill it.
func (w *worker) journalRunning() uint64 {
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
