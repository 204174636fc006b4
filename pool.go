package procpool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/procpool/procpool/codec"
	"github.com/procpool/procpool/internal/supervise"
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
	cfg       config
	codec     codec.Codec
	spawner   *supervise.Spawner // nil in-process
	initFrame []byte
	cb        callbackQueue
	logs      logQueue
	wg        sync.WaitGroup // every goroutine the pool starts
	stats     counters
	bigFrames sync.Pool // *[]byte: buffers of answered tasks' large frames
	watchMu   sync.Mutex
	watches   map[context.Context]*ctxWatch // by the context of the tasks they watch
	idleWatch *ctxWatch                     // a watch with no task, kept for the next call

	nextID      atomic.Uint64
	stopOnce    sync.Once
	stopped     chan struct{} // closed once every worker is gone
	monitorStop chan struct{} // closed, and set to nil, by the first finalize
	finalized   chan struct{} // closed once finalize's work is done

	mu          sync.Mutex
	queue       deque[*task]
	workers     []*worker
	starting    int
	closed      bool
	stopping    bool // every task has ended and the workers are being stopped
	terminated  bool
	running     bool  // New has returned: start failures now count against the budget
	broken      error // set once the restart budget is spent
	startFails  []time.Time
	room        chan struct{}        // closed and replaced when the queue gets room
	toFlush     []*worker            // workers with frames to write after unlocking
	handshaking map[*worker]struct{} // workers started but not yet ready
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
	if err := cfg.checkPlatform(); err != nil {
		return nil, err
	}
	cfg.serializeOutput()
	if !cfg.inProcess && isWorkerProcess() {
		return nil, &StartError{Reason: "procpool.New called inside a worker process: the worker program's main (or TestMain) must call procpool.Main() first", Err: ErrHandshake}
	}
	p := &Pool{
		cfg:         cfg,
		codec:       cfg.codec,
		stopped:     make(chan struct{}),
		monitorStop: make(chan struct{}),
		finalized:   make(chan struct{}),
		room:        make(chan struct{}),
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
	if !cfg.inProcess {
		p.spawner = supervise.NewSpawner()
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
	p.running = true
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
	if p.terminated {
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
	if p.terminated || p.stopping || (p.closed && p.queue.len() == 0) {
		p.maybeStoppedLocked()
		p.mu.Unlock()
		return false
	}
	w.ready = true
	w.lastUsed = time.Now()
	p.workers = append(p.workers, w)
	p.dispatchLocked()
	p.unlockAndFlush(nil, 0)
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
	if !p.running || p.terminated || p.closed && p.queue.len() == 0 {
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
	if p.terminated || p.broken != nil {
		return
	}
	want := p.cfg.processes
	if p.cfg.idleTimeout > 0 {
		// Idle retirement: keep the minimum, and start more only for work.
		want = max(p.cfg.minWorkers, min(p.cfg.processes, len(p.workers)+p.starting+p.queue.len()))
		want = min(want, p.cfg.processes)
	}
	if p.closed && p.queue.len() == 0 {
		return
	}
	for len(p.workers)+p.starting < want {
		p.starting++
		p.wg.Add(1)
		go p.runWorker(nil)
	}
}

// Close stops accepting tasks, waits for every accepted task to end (and its
// callbacks to run), then stops the workers and waits for them to exit (and
// the logger to handle their records). It is Python's close followed by
// join. It returns nil; calling it again, or after Terminate, waits for the
// same end and returns nil. In process (WithInProcess), a task that never
// returns keeps Close waiting: a goroutine cannot be killed (Terminate
// cancels its context first).
//
// Called from a callback (Callback, ErrorCallback, of this pool or of
// another; a WithLogger handler counts as one), Close does all of that
// except wait for the callbacks and the logger: the one calling it and
// those queued behind it cannot run before it returns. It returns nil once
// every task has ended and the workers have exited; the remaining
// callbacks and records are then handled, in order, after the calling one
// returns, and the pool releases its last resources once they have. A
// later Close from any goroutine waits for all of that. A callback must not
// wait for another goroutine that calls Close, Shutdown or Terminate: that
// one waits for the callbacks.
func (p *Pool) Close() error {
	inCallback := onCallbackGoroutine()
	p.beginClose()
	<-p.stats.drained
	p.stopWorkers()
	<-p.stopped
	p.finalize(inCallback)
	return nil
}

// Shutdown is Close bounded by ctx: if ctx ends before every task has ended
// and every worker has exited, it terminates the pool (see Terminate) and
// returns ctx.Err(); else it returns nil. Called from a callback, it does not
// wait for the callbacks, as Close.
func (p *Pool) Shutdown(ctx context.Context) error {
	inCallback := onCallbackGoroutine()
	p.beginClose()
	select {
	case <-p.stats.drained:
	case <-ctx.Done():
		p.terminate(inCallback)
		return ctx.Err()
	}
	p.stopWorkers()
	select {
	case <-p.stopped:
	case <-ctx.Done():
		p.terminate(inCallback)
		return ctx.Err()
	}
	p.finalize(inCallback)
	return nil
}

// Terminate stops the pool now: every queued and running task ends with
// ErrTerminated, and the workers are stopped: a running task's context is
// cancelled and it has WithKillGrace to return, then its worker exits (or
// is killed after twice that). It returns nil once they have exited and the
// callbacks have run. In process (WithInProcess), a running task's
// goroutine cannot be killed: Terminate cancels its context and waits for
// it to return. Safe to call at any time, more than once, and together with
// Close. Called from a callback, it does not wait for the callbacks, as
// Close: it returns once every task has ended and the workers have exited.
func (p *Pool) Terminate() error {
	p.terminate(onCallbackGoroutine())
	return nil
}

func (p *Pool) terminate(inCallback bool) {
	p.beginClose()
	p.mu.Lock()
	p.terminated = true
	queued := p.queue.drain()
	var running []*task
	for _, w := range p.workers {
		for i := 0; i < w.inflight.len(); i++ {
			running = append(running, w.inflight.at(i))
		}
		p.stopWorkerLocked(w, ReasonTerminated, nil)
	}
	for w := range p.handshaking {
		w.kill()
	}
	p.roomLocked()
	p.maybeStoppedLocked()
	p.mu.Unlock()
	for _, t := range append(queued, running...) {
		t.finish(p, ErrTerminated, terminated)
	}
	<-p.stopped
	p.finalize(inCallback)
}

func (p *Pool) beginClose() {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		p.roomLocked()
	}
	p.mu.Unlock()
	p.stats.close()
}

// stopWorkers closes every worker's task pipe: each finishes and exits.
func (p *Pool) stopWorkers() {
	p.mu.Lock()
	p.stopping = true
	for _, w := range p.workers {
		w.retireLocked(ReasonRecycled, nil)
		w.closeInput()
	}
	p.maybeStoppedLocked()
	p.mu.Unlock()
}

// maybeStoppedLocked closes p.stopped once the pool is closed and no worker
// is alive or starting.
func (p *Pool) maybeStoppedLocked() {
	if p.closed && len(p.workers) == 0 && p.starting == 0 && (p.terminated || p.queue.len() == 0) {
		p.stopOnce.Do(func() { close(p.stopped) })
	}
}

// finalize waits for the callbacks and the pool's goroutines, then releases
// the spawner thread; it returns when that is done, whoever did it. On a
// callback goroutine it cannot wait for the callbacks: it starts the work on
// another goroutine, if nobody has, and returns at once.
func (p *Pool) finalize(inCallback bool) {
	p.mu.Lock()
	first := p.monitorStop != nil
	if first {
		close(p.monitorStop)
		p.monitorStop = nil
	}
	p.mu.Unlock()
	if first {
		if inCallback {
			go p.release()
		} else {
			p.release()
		}
	}
	if !inCallback {
		<-p.finalized
		p.dropWatches() // again: a task cancelled as Terminate began may have left one since
	}
}

// release is finalize's work, done once.
func (p *Pool) release() {
	p.cb.close()
	p.wg.Wait()
	p.logs.close() // after wg: the pool's goroutines log until they end
	p.dropWatches()
	if p.spawner != nil {
		p.spawner.Stop()
	}
	close(p.finalized)
}

func (p *Pool) roomLocked() {
	close(p.room)
	p.room = make(chan struct{})
}

// isWorkerProcess reports whether this process was started as a worker but
// did not call Main (Main clears the marker).
func isWorkerProcess() bool { return os.Getenv(envWorker) == "1" }
