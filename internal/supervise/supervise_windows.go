package supervise

import (
	"os"
	"syscall"
)

// On Windows this package starts no process: a worker's protocol
// descriptors (3 to 7) have no Windows counterpart that os/exec can hand
// over, nor has process-group signalling one. The pool refuses process
// mode there (see Processes) and runs in-process only. What follows lets
// the pool's code build: each function fails with an error wrapping
// errors.ErrUnsupported, or does nothing, or reports nothing.

// Processes is false on Windows: the pool cannot start worker processes.
const Processes = false

// HasRSS is false on Windows: RSS fails.
const HasRSS = false

// MemFiles is false on Windows: MemFile and SharedMemory fail.
const MemFiles = false

// ParentDeathSignal is a number that no signal has on Windows: a worker
// never gets it.
const ParentDeathSignal = syscall.Signal(-1)

// Pipe fails on Windows (see Processes).
func Pipe() (r, w *os.File, err error) { return nil, nil, unsupported("worker pipes") }

// GrowPipe fails on Windows.
func GrowPipe(f *os.File, size int) error { return unsupported("setting a pipe's buffer size") }

// SysProcAttr returns an empty attribute set on Windows.
func SysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{} }

// WatchParent does nothing on Windows.
func WatchParent(ppid int, gone func()) {}

// Available reports 0 on Windows.
func Available(fd int) int { return 0 }

// SetSubreaper fails on Windows.
func SetSubreaper() error { return unsupported("child subreaper") }

// KillDescendants does nothing on Windows.
func KillDescendants() {}

// KillGroup fails on Windows.
func KillGroup(pid int, sig syscall.Signal) error { return unsupported("process groups") }

// KillGroupExceptSelf does nothing on Windows.
func KillGroupExceptSelf() {}

// PipeInode fails on Windows.
func PipeInode(f *os.File) (uint64, error) { return 0, unsupported("pipe inodes") }

// PeerOpen reports false on Windows.
func PeerOpen(f *os.File) bool { return false }

// KillPipeHolders does nothing on Windows.
func KillPipeHolders(inodes ...uint64) {}

// ReleaseWriteEnd closes w on Windows and returns Close's error.
func ReleaseWriteEnd(r, w *os.File, started bool) error { return w.Close() }

// EndReads fails on Windows.
func EndReads(r *os.File, marker []byte) error { return unsupported("ending a pipe's reading") }

// RSS fails on Windows.
func RSS(pid int) (int64, error) { return 0, unsupported("reading another process's resident memory") }

// SharedMemory fails on Windows.
func SharedMemory(size int) (*os.File, []byte, error) {
	return nil, nil, unsupported("shared memory")
}

// MapShared fails on Windows.
func MapShared(fd, size int) ([]byte, error) { return nil, unsupported("shared memory") }

// MapSharedWritable fails on Windows.
func MapSharedWritable(fd, size int) ([]byte, error) { return nil, unsupported("shared memory") }

// MemFile fails on Windows.
func MemFile(name string, size int) (*os.File, error) { return nil, unsupported("memory files") }

// FreePages does nothing on Windows.
func FreePages(b []byte) {}

// Munmap fails on Windows.
func Munmap(b []byte) error { return unsupported("shared memory") }

// CloseOnExec does nothing on Windows, where a handle is inherited only
// when it is handed over.
func CloseOnExec(fd int) {}

// Getpgrp returns -1 on Windows, which has no process groups of this kind:
// no process's pid equals it.
func Getpgrp() int { return -1 }

// Setrlimit fails on Windows, which has no resource limits of this kind.
func Setrlimit(resource int, cur, max uint64) error { return unsupported("setrlimit") }

// ReadNonblock fails on Windows.
func ReadNonblock(fd uintptr, b []byte) (int, error) { return 0, unsupported("non-blocking reads") }
