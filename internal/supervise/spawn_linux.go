package supervise

import (
	"os"
	"syscall"
)

// Processes is true where this package can start worker processes: Linux
// and macOS.
const Processes = true

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

// WatchParent does nothing on Linux: the parent-death signal (see
// ParentDeathSignal) tells a worker of its parent's death. On macOS, which
// has no such signal, it watches the parent's pid instead.
func WatchParent(ppid int, gone func()) {}
