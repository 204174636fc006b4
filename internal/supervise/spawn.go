// Package supervise starts worker processes and stops them: pipes, the
// start on a thread that stays alive (so that the parent-death signal holds),
// process-group kills with escalation, and resident-memory readings.
package supervise

import (
	"errors"
	"os"
	"os/exec"
	"runtime"
	"syscall"
)

// ErrStopped is returned by Spawner.Start after Stop.
var ErrStopped = errors.New("supervise: spawner stopped")

// A Spawner starts processes from one goroutine locked to one OS thread.
// Linux delivers the parent-death signal (SysProcAttr.Pdeathsig) when the
// thread that forked the child exits, not the process (golang/go#27505);
// starting every worker from a thread that lives as long as the pool keeps
// that signal meaningful.
type Spawner struct {
	reqs chan spawnReq
	done chan struct{}
}

type spawnReq struct {
	cmd   *exec.Cmd
	reply chan error
}

// NewSpawner starts the spawning goroutine. Stop ends it.
func NewSpawner() *Spawner {
	s := &Spawner{reqs: make(chan spawnReq), done: make(chan struct{})}
	go s.loop()
	return s
}

func (s *Spawner) loop() {
	runtime.LockOSThread()
	// The thread goes back to the runtime (and stays alive) only once
	// Stop is called, which the pool does after every worker has exited.
	defer runtime.UnlockOSThread()
	for {
		select {
		case r := <-s.reqs:
			r.reply <- r.cmd.Start()
		case <-s.done:
			return
		}
	}
}

// Start runs cmd.Start on the spawner's thread. It blocks until the process
// has been started (about a millisecond) and returns cmd.Start's error, or
// ErrStopped if Stop was called.
func (s *Spawner) Start(cmd *exec.Cmd) error {
	r := spawnReq{cmd: cmd, reply: make(chan error, 1)}
	select {
	case s.reqs <- r:
		return <-r.reply
	case <-s.done:
		return ErrStopped
	}
}

// Stop ends the spawning goroutine. Call it only once no process it started
// is alive; it must be called exactly once.
func (s *Spawner) Stop() { close(s.done) }

// Pipe returns a pipe whose both ends are in blocking mode and close-on-exec.
// Blocking descriptors are read and written with plain system calls rather
// than through Go's network poller, which is measurably faster for the
// small, frequent messages of a pool.
func Pipe() (r, w *os.File, err error) {
	var fds [2]int
	if err := syscall.Pipe2(fds[:], syscall.O_CLOEXEC); err != nil {
		return nil, nil, os.NewSyscallError("pipe2", err)
	}
	return os.NewFile(uintptr(fds[0]), "procpool-pipe-r"), os.NewFile(uintptr(fds[1]), "procpool-pipe-w"), nil
}

// GrowPipe asks the kernel for a pipe buffer of size bytes (Linux
// F_SETPIPE_SZ). It is best effort: the kernel caps it at
// /proc/sys/fs/pipe-max-size, and an error is ignored by callers.
func GrowPipe(f *os.File, size int) error {
	const fSetPipeSz = 1031
	_, _, e := syscall.Syscall(syscall.SYS_FCNTL, f.Fd(), fSetPipeSz, uintptr(size))
	if e != 0 {
		return e
	}
	return nil
}

// ParentDeathSignal is the signal a worker process gets when its parent
// dies (Pdeathsig). Its default action is to do nothing, so a task that
// resets or ignores its handling cannot turn it into a death that skips the
// sweep of what the tasks started (with SIGTERM's default the worker would
// die before it could sweep). The worker's watchdog, which sees the end of
// file of its control pipe, is the first guard against outliving the
// parent; this signal, handled by the same sweep, is the second. Workers
// are never in a terminal's foreground process group, so no terminal sends
// it to them.
const ParentDeathSignal = syscall.SIGWINCH

// SysProcAttr is the attribute set of every worker: its own process group
// (so that a kill reaches whatever the task started) and the parent-death
// signal.
func SysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: ParentDeathSignal}
}
