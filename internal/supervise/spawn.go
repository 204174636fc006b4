// Package supervise starts worker processes and stops them: pipes, the
// start on a thread that stays alive (so that the parent-death signal holds),
// process-group kills with escalation, and resident-memory readings.
//
// Linux has every mechanism. macOS has most, some by other means (the
// _darwin.go files say which and how): no memory files, no resident-memory
// readings, no parent-death signal (WatchParent instead), no subreaper. On
// Windows it starts nothing: Processes is false, and every function fails
// with an error wrapping errors.ErrUnsupported or does nothing.
package supervise

import (
	"errors"
	"os/exec"
	"runtime"
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
