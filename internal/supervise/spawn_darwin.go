package supervise

import (
	"os"
	"syscall"
	"time"
)

// Processes is true where this package can start worker processes: Linux
// and macOS.
const Processes = true

// Pipe returns a pipe whose both ends are in blocking mode and close-on-exec.
// Blocking descriptors are read and written with plain system calls rather
// than through Go's network poller, which is measurably faster for the
// small, frequent messages of a pool. macOS has no pipe2: the ends are
// marked close-on-exec under syscall.ForkLock (see pipeCloexec).
func Pipe() (r, w *os.File, err error) { return pipeCloexec() }

// GrowPipe does nothing on macOS, which lets no program set a pipe's
// buffer size (a pipe's buffer grows by itself as writes fill it, up to
// 64 KiB): it returns an error wrapping errors.ErrUnsupported, which
// callers ignore.
func GrowPipe(f *os.File, size int) error { return unsupported("setting a pipe's buffer size") }

// ParentDeathSignal is the signal a worker handles as news of its parent's
// death (see the Linux version). macOS has no parent-death signal, so no
// kernel sends it there: WatchParent does the watching. It is SIGWINCH as
// on Linux, so that a worker behaves alike on both when it gets one.
const ParentDeathSignal = syscall.SIGWINCH

// SysProcAttr is the attribute set of every worker: its own process group,
// so that a kill reaches whatever the task started. (macOS has no
// parent-death signal; see WatchParent.)
func SysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// watchParentEvery is how often WatchParent asks for the parent's pid: a
// worker whose parent died unnoticed otherwise exits within this.
const watchParentEvery = time.Second

// WatchParent starts a goroutine that calls gone, once, when the caller's
// parent is no longer ppid: it asks for the parent's pid every second
// (getppid(2), well under a microsecond), since macOS has no parent-death
// signal. A worker calls it once, at its start; its control pipe's end of
// file tells it of its parent's death at once, and this is the guard
// behind that one. It does not block.
func WatchParent(ppid int, gone func()) { go watchParent(ppid, watchParentEvery, gone) }
