package main

import "syscall"

// blockingPipe makes a pipe whose ends are close-on-exec and blocking, read
// and written with plain system calls outside Go's poller. macOS has no
// pipe2: the ends are marked close-on-exec under syscall.ForkLock, which
// os/exec holds while it forks.
func blockingPipe(p []int) error {
	syscall.ForkLock.RLock()
	defer syscall.ForkLock.RUnlock()
	if err := syscall.Pipe(p); err != nil {
		return err
	}
	syscall.CloseOnExec(p[0])
	syscall.CloseOnExec(p[1])
	return nil
}
