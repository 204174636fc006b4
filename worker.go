package procpool

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/procpool/procpool/internal/supervise"
	"github.com/procpool/procpool/internal/wire"
)

// worker is the parent's link to one worker: a process (or, in-process, a
// goroutine), the pipe its tasks go down and the pipe its answers come up.
type worker struct {
	p       *Pool
	pid     int
	cmd     *exec.Cmd // nil for an in-process worker
	tasks   io.WriteCloser
	results io.ReadCloser
	r       *wire.Reader
	exited  chan struct{} // closed once the process has been reaped
	status  syscall.WaitStatus
	inproc  struct{ tasks, results *memPipe }

	// Outgoing frames, batched: send appends, the writer goroutine writes.
	outMu     sync.Mutex
	out       []byte
	spare     []byte
	outClosed bool
	wake      chan struct{}

	// Guarded by p.mu.
	inflight   deque[*task]
	ready      bool
	sent       int // tasks given to this worker
	done       int // tasks it answered
	retiring   bool
	stopReason string
	stopErr    error
	lastUsed   time.Time
	rss        int64
}

// launch starts a worker process (or goroutine) and its writer goroutine.
// The handshake is not done yet.
func (p *Pool) launch() (*worker, error) {
	w := &worker{p: p, exited: make(chan struct{}), wake: make(chan struct{}, 1)}
	if p.cfg.inProcess {
		w.inproc.tasks, w.inproc.results = newMemPipe(), newMemPipe()
		w.tasks, w.results = w.inproc.tasks, io.NopCloser(w.inproc.results)
		w.pid = os.Getpid()
		s := newServer(context.Background(), w.inproc.tasks, w.inproc.results, w.inproc.tasks.available, p.codec, p.cfg.maxFrame)
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer close(w.exited)
			defer w.inproc.results.Close()
			if s.hello(w.pid) == nil {
				_ = s.serve()
			}
		}()
	} else if err := p.launchProcess(w); err != nil {
		return nil, err
	}
	w.r = wire.NewReader(w.results, 64<<10, p.cfg.maxFrame)
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
	)
	cmd.Dir = p.cfg.dir
	cmd.Stdout, cmd.Stderr = p.cfg.stdout, p.cfg.stderr
	cmd.ExtraFiles = []*os.File{taskR, resW}
	cmd.SysProcAttr = supervise.SysProcAttr()
	cmd.WaitDelay = time.Second
	err = p.spawner.Start(cmd)
	taskR.Close()
	resW.Close()
	if err != nil {
		taskW.Close()
		resR.Close()
		return &StartError{Reason: "running " + path, Err: err}
	}
	w.cmd, w.pid = cmd, cmd.Process.Pid
	w.tasks, w.results = taskW, resR
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
	f, err := w.r.Next()
	if err != nil {
		if w.cmd != nil {
			w.reap()
		}
		if timer.Stop() || !timedOut.Load() {
			return &StartError{Pid: w.pid, Reason: "the worker exited before the handshake (" + exitText(w.status) + "); does its main function call procpool.Main() first?", Err: ErrHandshake}
		}
		return &StartError{Pid: w.pid, Reason: fmt.Sprintf("no handshake within %v: the worker program does not seem to call procpool.Main() at the start of main", p.cfg.startTimeout), Err: ErrHandshake}
	}
	var h wire.Hello
	if f.Kind != wire.KindHello || json.Unmarshal(f.Body, &h) != nil {
		return &StartError{Pid: w.pid, Reason: "the worker's first frame is not a valid hello: is it a procpool worker?", Err: ErrHandshake}
	}
	if h.Protocol != wire.Version {
		return &StartError{Pid: w.pid, Reason: fmt.Sprintf("the worker speaks protocol %d, this pool %d", h.Protocol, wire.Version), Err: ErrHandshake}
	}
	if h.Codec != p.codec.Name() {
		return &StartError{Pid: w.pid, Reason: fmt.Sprintf("the worker uses codec %q, this pool %q", h.Codec, p.codec.Name()), Err: ErrHandshake}
	}
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
		return &StartError{Pid: w.pid, Reason: "the worker died in the initializer (" + exitText(w.status) + ")", Err: ErrHandshake}
	case f.Kind == wire.KindResult && f.ID == 0:
		return nil
	case f.Kind == wire.KindError && f.ID == 0:
		return &StartError{Pid: w.pid, Reason: "the initializer failed", Err: remoteError(p.cfg.initName, f.Body)}
	default:
		return &StartError{Pid: w.pid, Reason: "unexpected " + f.Kind.String() + " frame in answer to the initializer", Err: ErrProtocol}
	}
}

// send queues a frame for the writer goroutine. It never blocks on the pipe.
func (w *worker) send(frame []byte) {
	w.outMu.Lock()
	if w.outClosed {
		w.outMu.Unlock()
		return
	}
	w.out = append(w.out, frame...)
	w.outMu.Unlock()
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
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *worker) writeLoop() {
	defer w.p.wg.Done()
	defer w.tasks.Close()
	broken := false
	for range w.wake {
		for {
			w.outMu.Lock()
			buf, closing := w.out, w.outClosed
			w.out = w.spare[:0]
			w.outMu.Unlock()
			if len(buf) > 0 && !broken {
				if _, err := w.tasks.Write(buf); err != nil {
					// The worker is gone; its reader sees that and cleans up.
					broken = true
				}
			}
			w.outMu.Lock()
			if cap(buf) <= 1<<20 {
				w.spare = buf[:0]
			}
			empty := len(w.out) == 0
			w.outMu.Unlock()
			if empty {
				if closing {
					return
				}
				break
			}
		}
	}
}

// kill stops the worker now: SIGTERM to its process group, then SIGKILL after
// the grace period. For an in-process worker it cuts both pipes.
func (w *worker) kill() {
	if w.cmd == nil {
		w.inproc.results.breakPipe()
		w.inproc.tasks.breakPipe()
		return
	}
	supervise.Stop(w.pid, w.p.cfg.killGrace, w.exited)
}

// reap waits for the process to exit and records its status. Safe to call
// more than once; only the first waits.
func (w *worker) reap() {
	if w.cmd == nil {
		return // a goroutine cannot be waited for: it may be stuck in a task
	}
	select {
	case <-w.exited:
		return
	default:
	}
	_ = w.cmd.Wait()
	if ps := w.cmd.ProcessState; ps != nil {
		w.status, _ = ps.Sys().(syscall.WaitStatus)
	}
	close(w.exited)
	// Sweep whatever the worker left in its group.
	_ = supervise.KillGroup(w.pid, syscall.SIGKILL)
}

func exitText(ws syscall.WaitStatus) string {
	switch {
	case ws.Signaled():
		return "killed by " + ws.Signal().String()
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
		return &RemoteError{Func: fn, Message: "undecodable error from worker: " + err.Error(), Code: "protocol"}
	}
	return remoteFromBody(fn, eb)
}

func remoteFromBody(fn string, eb wire.ErrorBody) *RemoteError {
	return &RemoteError{Func: fn, Message: eb.Message, Type: eb.Type, Stack: eb.Stack, Panic: eb.Panic, Code: eb.Code}
}
