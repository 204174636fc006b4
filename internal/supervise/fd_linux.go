package supervise

import (
	"syscall"
	"unsafe"
)

// Available reports how many bytes can be read from fd without blocking
// (ioctl FIONREAD): one system call, well under a microsecond. It returns 0
// if the call fails.
func Available(fd int) int {
	var n int32
	_, _, e := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), syscall.TIOCINQ, uintptr(unsafe.Pointer(&n)))
	if e != 0 {
		return 0
	}
	return int(n)
}
