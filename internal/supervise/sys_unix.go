//go:build unix

package supervise

import "syscall"

// The system calls a worker makes at its start and a reaped worker's output
// reading makes at its end, here so that the root package builds on
// systems whose syscall package spells them otherwise (Windows). Each is
// the system call itself, inlined: no cost over calling syscall directly.

// CloseOnExec marks fd close-on-exec (fcntl F_SETFD).
func CloseOnExec(fd int) { syscall.CloseOnExec(fd) }

// Getpgrp returns the caller's process group.
func Getpgrp() int { return syscall.Getpgrp() }

// Setrlimit sets the soft (cur) and hard (max) limits of resource, a
// syscall.RLIMIT_* number, for the caller (setrlimit(2)). It returns the
// system call's error.
func Setrlimit(resource int, cur, max uint64) error {
	return syscall.Setrlimit(resource, &syscall.Rlimit{Cur: cur, Max: max})
}

// Munmap removes a mapping made by SharedMemory, MapShared or
// MapSharedWritable (munmap(2)).
func Munmap(b []byte) error { return syscall.Munmap(b) }

// ReadNonblock makes fd non-blocking, then reads from it once: a read that
// finds nothing to read fails with EAGAIN instead of waiting. It returns
// the first failing call's error.
func ReadNonblock(fd uintptr, b []byte) (int, error) {
	if err := syscall.SetNonblock(int(fd), true); err != nil {
		return 0, err
	}
	return syscall.Read(int(fd), b)
}
