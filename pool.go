package procpool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/procpool/procpool/codec"
	"github.com/procpool/procpool/internal/backend"
	"github.com/procpool/procpool/internal/backend/inprocess"
	"github.com/procpool/procpool/internal/backend/process"
	"github.com/procpool/procpool/internal/wire"
)

// Pool is a pool of worker processes. Create it with New; submit work with
// Apply, ApplyAsync, Map, MapAsync, Imap and ImapUnordered; end it with
// Close, Shutdown or Terminate. All methods are safe for concurrent use.
//
// A worker runs one task at a time, in the order it received them. When a
// worker dies, the task it was running ends with a *WorkerExitError (or is
// retried, see WithRetries), the tasks queued behind it run elsewhere, and a
// new worker takes its place.
//
// Submitting a task from inside a task (nested submit-and-wait) can
// deadlock a pool whose workers are all busy waiting: avoid it, or give the
// inner work its own pool.
type Pool struct {
	// Set by New before any goroutine of the pool starts, then read-only.
	cfg       config
	codec     codec.Codec
	launcher  backend.Launcher // starts the workers: processes, or goroutines (WithInProcess)
	initFrame []byte

	// Safe for concurrent use by themselves: their own locks, atomics.
	cb        callbackQueue
	logs      logQueue
	wg        sync.WaitGroup // every goroutine the pool starts
	stats     counters       // its mu comes after Pool.mu
	bigFrames sync.Pool      // *[]byte: buffers of answered tasks' large frames
	nextID    atomic.Uint64  // the last task id handed out

	// watchMu guards the context watches (watch.go). It is never held
	// together with mu: a watch cancels its tasks after releasing it.
	watchMu   sync.Mutex
	watches   map[context.Context]*ctxWatch // by the context of the tasks they watch
	idleWatch *ctxWatch                     // a watch with no task, kept for the next call

	// mu guards the fields below, and every worker's fields marked
	// "Pool.mu" (worker.go), and a task's (task.go). No user code runs
	// under it (see docs/design.md, invariant 6).
	//
	// Lock order: mu before worker.outMu (frames are queued under mu),
	// before counters.mu (a task is counted as it is queued; Stats), and
	// before the backend's own locks, which backend.Worker methods called
	// under mu take: a worker process's filesMu (a stop's escalation and
	// a memory check read its journal), an in-process worker's serve
	// loop's run lock and then its in-memory pipes' locks (a kill cancels
	// the running task and cuts the pipes; the serve loop cuts them under
	// its run lock). None of those is held while mu is taken.
	//
	// Whoever may have queued frames under mu — assignLocked and
	// dispatchLocked (submitting, an answer, a worker that starts or
	// dies), flushLater (a Cancel frame) — releases it with
	// unlockAndFlush, not Unlock: the frames are written after the lock
	// is released, and a plain Unlock would leave them unwritten until
	// the next dispatch.
	mu          sync.Mutex
	phase       phase                // where the pool is in its life; only advanceLocked moves it (lifecycle.go)
	phaseMoved  chan struct{}        // closed and replaced each time phase moves (awaitPhase)
	broken      error                // once the restart budget is spent: ErrPoolBroken with the last failure; never cleared, whatever the phase
	queue       deque[*task]         // tasks accepted and not on a worker, oldest first (requeued ones at the front)
	workers     []*worker            // workers in service (ready or retiring), until workerExited
	starting    int                  // workers being started (runWorker before workerReady or startFailed)
	startFails  []time.Time          // recent failed starts, for the restart budget
	room        chan struct{}        // closed and replaced when the queue gets room
	toFlush     []*worker            // workers with frames to write after unlocking (unlockAndFlush)
	handshaking map[*worker]struct{} // workers started but not yet ready (Terminate kills them too)
}

// New starts a pool and returns once every worker has answered the
// handshake (and run the initializer, if any): about a millisecond per
// worker plus the program's own start-up. If a worker cannot be started —
// the binary does not run, does not call Main, registers a function with
// other argument or result types than this program (a stale WithCommand
// binary), lacks one that WithRequire names, or its initializer fails —
// New stops the others and returns a *StartError that says which; no
// process is left behind.
// An option with a value that means nothing is an *OptionError
// (ErrInvalidOption), and an initializer argument that cannot be encoded a
// *CodecError; New then starts nothing. So is what the operating system
// cannot run, with an error that wraps errors.ErrUnsupported: worker
// processes on Windows (WithInProcess runs there), WithMaxWorkerMemory on
// macOS. See docs/design.md, "Platforms".
func New(opts ...Option) (*Pool, error) {
	cfg := defaultConfig()
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.err != nil {
		return nil, cfg.err
	}
	var launcher backend.Launcher
	if cfg.launch != nil {
		l, err := cfg.remoteLauncher()
		if err != nil {
			return nil, err
		}
		launcher = l
	} else if err := cfg.checkPlatform(); err != nil {
		return nil, err
	}
	cfg.serializeOutput()
	if !cfg.inProcess && cfg.launch == nil && process.Marked() {
		return nil, &StartError{Reason: "procpool.New called inside a worker process: the worker program's main (or TestMain) must call procpool.Main() first", Err: ErrHandshake}
	}
	p := &Pool{
		cfg:        cfg,
		codec:      cfg.codec,
		phaseMoved: make(chan struct{}),
		room:       make(chan struct{}),
	}
	p.handshaking = make(map[*worker]struct{})
	p.stats.drained = make(chan struct{})
	if cfg.initName != "" {
		arg, err := cfg.initArg(p.codec)
		if err != nil {
			return nil, &CodecError{Op: "encode initializer argument", Err: err}
		}
		frame := wire.AppendTaskHeader(nil, false, cfg.initName)
		p.initFrame = wire.AppendFrame(nil, wire.KindInit, 0, append(frame, arg...))
		if err := p.checkFrame(p.initFrame, 0); err != nil {
			return nil, &CodecError{Op: "encode initializer argument", Err: err}
		}
	}
	switch {
	case launcher != nil:
		p.launcher = launcher
	case cfg.inProcess:
		p.launcher = inprocess.NewLauncher(served{})
	default:
		rl := make([]process.Rlimit, len(cfg.rlimits))
		for i, l := range cfg.rlimits {
			rl[i] = process.Rlimit{Resource: l.Resource, Cur: l.Cur, Max: l.Max}
		}
		p.launcher = process.NewLauncher(process.Options{
			Command: cfg.command, Args: cfg.args, Dir: cfg.dir, Env: cfg.env, Rlimits: rl,
			Stdout: cfg.stdout, Stderr: cfg.stderr, OutputPrefix: cfg.outputPrefix,
		})
	}
	p.cb.init(p)
	p.logs.init(cfg.logger)

	n := cfg.processes
	errs := make(chan error, n)
	p.mu.Lock()
	p.starting = n
	p.mu.Unlock()
	for range n {
		p.wg.Add(1)
		go p.runWorker(errs)
	}
	var first error
	for range n {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	if first != nil {
		p.terminate(false) // no callback of this pool can be running yet
		return nil, first
	}
	p.mu.Lock()
	p.advanceLocked(phaseOpen) // start failures now count against the budget
	p.mu.Unlock()
	if cfg.maxMemory > 0 || cfg.idleTimeout > 0 {
		p.wg.Add(1)
		go p.monitor()
	}
	return p, nil
}

// runWorker starts one worker, runs it until it exits and cleans up after
// it. ready, if not nil, receives the start's outcome (for New).
func (p *Pool) runWorker(ready chan<- error) {
	defer p.wg.Done()
	w, err := p.launch()
	if err == nil {
		p.trackStarting(w, true)
		if err = w.handshake(); err != nil {
			w.kill()
			w.closeInput()
			w.reap()
			w.release()
		}
		p.trackStarting(w, false)
	}
	if err != nil {
		if ready != nil {
			ready <- err
		}
		p.startFailed(err)
		return
	}
	inService := p.workerReady(w)
	if ready != nil {
		ready <- nil // New returns once every worker is in service
	}
	if !inService {
		w.closeInput()
		w.reap()
		w.release()
		return
	}
	readErr := w.readLoop()
	// No new task may go to a worker that is gone or going.
	p.mu.Lock()
	w.ready, w.retiring = false, true
	p.mu.Unlock()
	if readErr != nil {
		w.kill() // it broke the protocol: make sure it is gone
	}
	// Its result pipe is closed: a worker does that when it exits. One
	// that closed it and lives on is killed after the grace period.
	w.closeInput()
	grace := time.AfterFunc(p.cfg.killGrace, func() {
		p.mu.Lock()
		if w.stopReason == "" {
			w.stopReason, w.stopErr = ReasonProtocol, errClosedEarly
		}
		p.mu.Unlock()
		w.killNow()
	})
	w.reap()
	grace.Stop()
	p.recoverAnswers(w, readErr)
	w.release()
	p.workerExited(w, readErr)
}

// trackStarting records a worker that is in its handshake, so that
// Terminate can kill it too rather than wait for its start timeout.
func (p *Pool) trackStarting(w *worker, on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !on {
		delete(p.handshaking, w)
		return
	}
	if p.phase.terminated() {
		w.kill()
		return
	}
	p.handshaking[w] = struct{}{}
}

// workerReady puts a freshly started worker into service. It reports false
// if the pool is shutting down and the worker is not needed.
func (p *Pool) workerReady(w *worker) bool {
	p.mu.Lock()
	p.starting--
	if p.phase.stopping() || (p.phase.closed() && p.queue.len() == 0) {
		p.maybeStoppedLocked()
		p.mu.Unlock()
		return false
	}
	w.ready = true
	w.lastUsed = time.Now()
	p.workers = append(p.workers, w)
	p.dispatchLocked()
	p.unlockAndFlush(nil)
	return true
}

// startFailed counts a failed start against the restart budget and starts
// another worker, or declares the pool broken. A worker killed from outside
// during its start is replaced without counting.
func (p *Pool) startFailed(err error) {
	p.logAt(slog.LevelWarn, 0, "worker failed to start", "err", err)
	p.stats.exited(ReasonStart)
	p.mu.Lock()
	p.starting--
	if p.phase == phaseStarting || p.phase.terminated() || p.phase.closed() && p.queue.len() == 0 {
		p.maybeStoppedLocked()
		p.mu.Unlock()
		return
	}
	if se := (*StartError)(nil); errors.As(err, &se) && se.external {
		// Killed from outside while it started: the program is not at
		// fault. Replace it without spending the restart budget.
		p.growLocked()
		p.mu.Unlock()
		return
	}
	now := time.Now()
	p.startFails = append(p.startFails, now)
	recent := p.startFails[:0]
	for _, t := range p.startFails {
		if now.Sub(t) <= p.cfg.restartPer {
			recent = append(recent, t)
		}
	}
	p.startFails = recent
	if len(recent) > p.cfg.restartN {
		p.broken = fmt.Errorf("%w: %d failed starts within %v: %w", ErrPoolBroken, len(recent), p.cfg.restartPer, err)
		p.logAt(slog.LevelError, 0, "pool broken", "err", p.broken)
		lost := p.queue.drain()
		p.roomLocked()
		p.maybeStoppedLocked()
		p.mu.Unlock()
		for _, t := range lost {
			t.finish(p, p.broken, failed)
		}
		return
	}
	p.growLocked()
	p.mu.Unlock()
}

// growLocked starts workers while there are fewer than configured, or fewer
// than the queue needs when idle workers were retired.
func (p *Pool) growLocked() {
	if p.phase.terminated() || p.broken != nil {
		return
	}
	want := p.cfg.processes
	if p.cfg.idleTimeout > 0 {
		// Idle retirement: keep the minimum, and start more only for work
		// the live workers have no room for. Queued tasks that busy
		// workers' pipelines will take at their next answers (submitters
		// leave that room to the readers, see submitterDepth) are not.
		want = max(p.cfg.minWorkers, min(p.cfg.processes, len(p.workers)+p.starting+p.unplacedLocked()))
		want = min(want, p.cfg.processes)
	}
	if p.phase.closed() && p.queue.len() == 0 {
		return
	}
	for len(p.workers)+p.starting < want {
		p.starting++
		p.wg.Add(1)
		go p.runWorker(nil)
	}
}

// unplacedLocked is how many queued tasks the live workers' pipelines have
// no room for.
func (p *Pool) unplacedLocked() int {
	n := p.queue.len()
	for _, w := range p.workers {
		if n <= 0 {
			break
		}
		if p.canTakeTaskLocked(w, nil) {
			n -= p.depthLocked(w) - w.inflight.len()
		}
	}
	return max(n, 0)
}

func (p *Pool) roomLocked() {
	close(p.room)
	p.room = make(chan struct{})
}
