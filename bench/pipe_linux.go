package main

import "syscall"

// blockingPipe makes a pipe whose ends are close-on-exec and blocking, read
// and written with plain system calls outside Go's poller: pipe2 without
// O_NONBLOCK.
func blockingPipe(p []int) error { return syscall.Pipe2(p, syscall.O_CLOEXEC) }
