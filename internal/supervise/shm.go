package supervise

import (
	"os"
	"syscall"
	"unsafe"
)

// SharedMemory creates an anonymous shared-memory file (memfd) of size bytes
// and maps it read-write. The file is handed to a worker, which maps it too;
// pages cost memory only once touched. Close the file after the worker has
// it, and Munmap the mapping when nothing writes to it any more.
func SharedMemory(size int) (*os.File, []byte, error) {
	if sysMemfdCreate == 0 {
		return nil, nil, os.NewSyscallError("memfd_create", syscall.ENOSYS)
	}
	name := []byte("procpool-shm\x00")
	fd, _, e := syscall.Syscall(sysMemfdCreate, uintptr(unsafe.Pointer(&name[0])), 1 /* MFD_CLOEXEC */, 0)
	if e != 0 {
		return nil, nil, os.NewSyscallError("memfd_create", e)
	}
	f := os.NewFile(fd, "procpool-shm")
	if err := f.Truncate(int64(size)); err != nil {
		f.Close()
		return nil, nil, err
	}
	mem, err := syscall.Mmap(int(fd), 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		f.Close()
		return nil, nil, os.NewSyscallError("mmap", err)
	}
	return f, mem, nil
}

// MapShared maps the shared-memory file at fd read-only, as a worker does.
func MapShared(fd, size int) ([]byte, error) {
	mem, err := syscall.Mmap(fd, 0, size, syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, os.NewSyscallError("mmap", err)
	}
	return mem, nil
}
