package supervise

import (
	"bytes"
	"os"
	"strconv"
	"syscall"
)

var pageSize = int64(os.Getpagesize())

// HasRSS is true where RSS can read another process's resident memory.
const HasRSS = true

// RSS returns the resident memory of process pid in bytes, read from
// /proc/PID/statm (one open, read and close: a few microseconds).
func RSS(pid int) (int64, error) {
	var buf [128]byte
	fd, err := syscall.Open("/proc/"+strconv.Itoa(pid)+"/statm", syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	n, err := syscall.Read(fd, buf[:])
	syscall.Close(fd)
	if err != nil {
		return 0, err
	}
	// statm: size resident shared text lib data dt (in pages)
	fields := bytes.Fields(buf[:n])
	if len(fields) < 2 {
		return 0, syscall.EINVAL
	}
	pages, err := strconv.ParseInt(string(fields[1]), 10, 64)
	if err != nil {
		return 0, err
	}
	return pages * pageSize, nil
}
