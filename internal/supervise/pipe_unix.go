//go:build unix

package supervise

import (
	"os"
	"syscall"
)

// pipeCloexec returns a pipe whose both ends are in blocking mode and
// close-on-exec, on a system without pipe2 (macOS): pipe(2), then
// fcntl(FD_CLOEXEC) on each end, under syscall.ForkLock held for reading,
// so that a process that os/exec starts meanwhile (it forks under the lock
// held for writing) cannot inherit an end before it is marked. A fork that
// does not take the lock (C code, in a program using cgo) can still catch
// an end unmarked. Three system calls.
func pipeCloexec() (r, w *os.File, err error) {
	var fds [2]int
	syscall.ForkLock.RLock()
	err = syscall.Pipe(fds[:])
	if err == nil {
		syscall.CloseOnExec(fds[0])
		syscall.CloseOnExec(fds[1])
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return nil, nil, os.NewSyscallError("pipe", err)
	}
	return os.NewFile(uintptr(fds[0]), "procpool-pipe-r"), os.NewFile(uintptr(fds[1]), "procpool-pipe-w"), nil
}
