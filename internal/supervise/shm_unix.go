//go:build unix

package supervise

import (
	"os"
	"syscall"
)

// MapShared maps the shared-memory file at fd read-only, as a worker does.
func MapShared(fd, size int) ([]byte, error) {
	mem, err := syscall.Mmap(fd, 0, size, syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, os.NewSyscallError("mmap", err)
	}
	return mem, nil
}

// MapSharedWritable maps the shared-memory file at fd read-write, as a
// worker maps its journal.
func MapSharedWritable(fd, size int) ([]byte, error) {
	mem, err := syscall.Mmap(fd, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		return nil, os.NewSyscallError("mmap", err)
	}
	return mem, nil
}
