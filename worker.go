package procpool

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/procpool/procpool/internal/backend"
	"github.com/procpool/procpool/internal/backend/process"
	"github.com/procpool/procpool/internal/shmring"
	"github.com/procpool/procpool/internal/wire"
)

// worker is the parent's link to one worker, whatever carries it (a
// backend.Worker: a process, a goroutine): the stream its tasks go down,
// the stream its answers come up, and the dispatcher's view of it.
//
// Who may touch what: the fields up to feat are set by launch before any
// of the worker's goroutines starts, then only read (exited is closed by
// watchExit; feat is set by the handshake before the worker goes into
// service under Pool.mu); the outgoing frames are guarded by outMu, the
// dispatcher's view by Pool.mu (see Pool.mu for the lock order).
type worker struct {
	p      *Pool
	b      backend.Worker
	pid    int            // b.Pid(): a process's id, the parent's own in process
	id     string         // b.ID(), for errors and stats
	host   string         // b.Host()
	tasks  io.WriteCloser // b.Tasks(): written by flush, closed by writeLoop
	r      *wire.Reader   // over b.Results(): read by one goroutine at a time (reading.go)
	shm    []byte         // the shared-memory segment (backend.Shared); nil if none
	mem    backend.Memory // how to read its resident memory; nil if it cannot be read
	exited chan struct{}  // closed once the worker has ended, its reading is sure to end, and it is out of service
	kick   chan struct{}  // wakes the reader goroutine: it has reading to do
	// What the worker keeps of the protocol's optional parts, from its
	// hello: a journal (so the parent knows which task it was running
	// when it died, and gets the answers it had not written yet; with
	// Items, a chunk's finished items), and the control pipe (it stops a
	// task on a Stop frame only while that task runs). Without them (a
	// worker in another language may lack them), the oldest unanswered
	// task is taken for the running one, and a stop is a kill.
	feat backend.Features

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
	stopTarget  *task         // the task a stop was aimed at; nil for a stop of the whole worker
	stopKilled  bool          // the pool signalled the worker's group: not a stop the worker checked against its running task
	death       backend.Death // after the worker died: what its journal tells (see recoverAnswers)
	lastUsed    time.Time
	svc         time.Duration // average run time of its recent tasks; starts high, so nothing is pipelined until tasks prove short
	rss         int64
}

// launch starts a worker through the pool's launcher, with its writer
// goroutine and the goroutine that sees it end. The handshake is not done
// yet. It returns a *StartError if nothing could be started.
func (p *Pool) launch() (*worker, error) {
	b, err := p.launcher.Start(backend.Spec{
		Codec:        p.codec,
		MaxFrame:     p.cfg.maxFrame,
		KillGrace:    p.cfg.killGrace,
		SharedMemory: p.cfg.sharedMem,
		JournalSize:  p.journalSize(),
		Go:           p.goTracked,
		Log:          p.logf,
	})
	if err != nil {
		var le *backend.LaunchError
		if errors.As(err, &le) {
			return nil, &StartError{Reason: le.Reason, Err: le.Err}
		}
		return nil, &StartError{Reason: "starting a worker", Err: err}
	}
	w := &worker{p: p, b: b, pid: b.Pid(), id: b.ID(), host: b.Host(), tasks: b.Tasks(),
		exited: make(chan struct{}), wake: make(chan struct{}, 1), kick: make(chan struct{}, 1), svc: time.Second}
	if s, ok := b.(backend.Shared); ok {
		if w.shm = s.Shared(); w.shm != nil {
			w.shmRing = shmring.New(len(w.shm))
		}
	}
	w.mem, _ = b.(backend.Memory)
	w.r = wire.NewReader(b.Results(), 64<<10, p.cfg.maxFrame)
	w.r.StopAtEnd() // see backend.Worker.Results
	p.goTracked(w.watchExit)
	p.goTracked(w.writeLoop)
	if !p.cfg.inProcess && p.cfg.launch == nil { // Stats.WorkersStarted counts worker processes
		p.stats.workersStarted.Add(1)
		p.logf("worker started", "pid", w.pid)
	}
	return w, nil
}

// goTracked runs f on a goroutine that the pool waits for (Pool.wg).
func (p *Pool) goTracked(f func()) {
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		f()
	}()
}

// watchExit waits for the worker to end, takes it out of service, and
// wakes its reader to read its answers to their end.
func (w *worker) watchExit() {
	<-w.b.Exited()
	p := w.p
	p.mu.Lock()
	w.ready, w.retiring = false, true
	p.mu.Unlock()
	close(w.exited)
	w.kickReader()
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
		w.b.Reap()
		if timer.Stop() || !timedOut.Load() {
			return w.startExit("before the handshake")
		}
		x := w.b.Exit()
		e := &StartError{Pid: w.pid, Reason: fmt.Sprintf("no handshake within %v (WithStartTimeout)", p.cfg.startTimeout), Err: ErrHandshake, Stderr: x.Stderr, report: x.ReportAt + 1}
		if silent(x) {
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
	w.feat = w.b.Features(h)
	if p.initFrame == nil {
		return nil
	}
	w.send(p.initFrame)
	f, err = w.r.Next()
	switch {
	case err != nil:
		w.b.Reap()
		if timer.Stop() || !timedOut.Load() {
			return w.startExit("in the initializer")
		}
		x := w.b.Exit()
		return &StartError{Pid: w.pid, Reason: fmt.Sprintf("the initializer did not finish within %v (WithStartTimeout)", p.cfg.startTimeout), Err: ErrHandshake, Stderr: x.Stderr, report: x.ReportAt + 1}
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

// silent reports whether a worker that ended wrote nothing (but white
// space) to its standard error.
func silent(x backend.Exit) bool { return strings.TrimSpace(x.Stderr) == "" }

// reportedSignal returns the signal that a worker which exited (rather than
// being killed) reported itself: SIGTERM for ReasonTerminatedOutside, the
// fatal signal the Go runtime reported on its standard error for exit
// status 2, else 0.
func reportedSignal(x backend.Exit, reason string) syscall.Signal {
	switch {
	case reason == ReasonTerminatedOutside:
		return syscall.SIGTERM
	case x.Signal == 0 && x.Code == process.GoRuntimeExit:
		return x.Reported
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
	x := w.b.Exit()
	e := &StartError{Pid: w.pid, Err: ErrHandshake, Stderr: x.Stderr, report: x.ReportAt + 1}
	switch {
	case !x.Status:
		e.Reason = "the in-process worker stopped " + stage
	case x.Signal != 0:
		e.Signal = x.Signal
		e.Reason = "killed by signal " + process.SignalName(e.Signal) + " during start-up (" + stage + ")"
		if process.SelfInflicted(e.Signal) {
			e.Reason += ": the worker program crashed"
		} else {
			e.Reason += ", not by the pool"
			e.external = true
		}
	case x.Code == process.ExitSIGTERM:
		// The worker's SIGTERM handler exits with this status (when it
		// does not lead its process group, which it then kills).
		e.Signal, e.external = syscall.SIGTERM, true
		e.Reason = "stopped by signal SIGTERM during start-up (" + stage + "), not by the pool"
	case x.Code == 0 && stage == "before the handshake" && silent(x):
		e.Reason = "the worker exited with status 0 before the handshake; " + mainHint
	case x.Code == process.GoRuntimeExit && x.Reported != 0:
		e.Signal = x.Reported
		e.Reason = "the worker crashed by " + process.SignalName(e.Signal) + " " + stage + " (reported by the Go runtime, exit status 2)"
	default:
		e.Reason = fmt.Sprintf("the worker exited with status %d %s", x.Code, stage)
		if silent(x) {
			e.Reason += ", and wrote nothing to its standard error"
		}
	}
	return e
}

// kill stops the worker now: its running task's context is cancelled and
// has the grace period to return, then it is killed (a process: SIGTERM to
// its group, then SIGKILL; a goroutine: its pipes are cut).
func (w *worker) kill() { w.b.Kill() }

// killNow kills the worker at once (a process: SIGKILL to its group).
func (w *worker) killNow() { w.b.KillNow() }

// reap waits until the worker has ended and its reading is sure to end, for
// a worker that is sure to end (a process; a goroutine may be stuck in a
// task). Safe to call more than once.
func (w *worker) reap() { w.b.Reap() }

// release frees what the worker held once it has ended and its reading is
// over: no goroutine may copy into its shared memory from now on, then the
// backend lets go of its descriptors and mappings. (The task stream is the
// writer goroutine's to close.)
func (w *worker) release() {
	w.stopSharedCopies()
	w.b.Release()
}

// sendStop asks the worker to stop task id, for the reason why (a
// wire.StopCancel, StopDeadline or StopMemory): if it runs, its context is
// cancelled and it has the kill grace period to return before the worker
// dies; if it has not started, it is skipped. It reports whether the
// worker is sure to act on it (see backend.Worker.Stop).
func (w *worker) sendStop(id uint64, why byte) (sure bool) { return w.b.Stop(id, why) }

// journalRunning reads the id of the task the worker runs now from its
// journal: a moment's view of a live worker, for the decision to kill it.
func (w *worker) journalRunning() uint64 { return w.b.Running() }

var errClosedEarly = errors.New("the worker closed its result pipe but did not exit")

// kickReader wakes the worker's reader goroutine.
func (w *worker) kickReader() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// exitText says how a worker ended, for the log.
func exitText(x backend.Exit) string {
	if x.Signal != 0 {
		return "killed by signal " + process.SignalName(x.Signal)
	}
	return "exit status " + strconv.Itoa(x.Code)
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

// journalSize is the size of each worker's journal (see wire.JournalHeader):
// the answer and error areas, and a list area as large as the largest
// frame, for the results of a chunk's items. The file is sparse: pages cost
// memory only once touched.
func (p *Pool) journalSize() int {
	return wire.JournalMin + max(p.cfg.maxFrame, 1<<20)
}
