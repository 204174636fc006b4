package supervise

import (
	"os"
	"syscall"
	"unsafe"
)

// MemFiles is true where MemFile and SharedMemory can make shared-memory
// files: Linux (memfd_create), though MemFile fails where this package
// does not know the system call's number (see sysMemfdCreate).
const MemFiles = true

// SharedMemory creates an anonymous shared-memory file (memfd) of size bytes
// and maps it read-write. The file is handed to a worker, which maps it too;
// pages cost memory only once touched. Close the file after the worker has
// it, and Munmap the mapping when nothing writes to it any more.
func SharedMemory(size int) (*os.File, []byte, error) {
	f, err := MemFile("procpool-shm", size)
	if err != nil {
		return nil, nil, err
	}
	mem, err := syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		f.Close()
		return nil, nil, os.NewSyscallError("mmap", err)
	}
	return f, mem, nil
}

// MemFile creates an anonymous shared-memory file (memfd) of size bytes,
// close-on-exec, without mapping it: the parent hands it to a worker and
// reads it with ReadAt after the worker has died.
func MemFile(name string, size int) (*os.File, error) {
	if sysMemfdCreate == 0 {
		return nil, os.NewSyscallError("memfd_create", syscall.ENOSYS)
	}
	b := append([]byte(name), 0)
	fd, _, e := syscall.Syscall(sysMemfdCreate, uintptr(unsafe.Pointer(&b[0])), 1 /* MFD_CLOEXEC */, 0)
	if e != 0 {
		return nil, os.NewSyscallError("memfd_create", e)
	}
	f := os.NewFile(fd, name)
	if err := f.Truncate(int64(size)); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// FreePages gives the memory behind b, a region of a shared mapping, back
// to the system (madvise MADV_REMOVE); reading it again gives zeros. Best
// effort: an error is ignored.
func FreePages(b []byte) {
	const madvRemove = 9
	page := os.Getpagesize()
	start := uintptr(unsafe.Pointer(&b[0]))
	first := (start + uintptr(page) - 1) &^ uintptr(page-1)
	end := (start + uintptr(len(b))) &^ uintptr(page-1)
	if end <= first {
		return
	}
	_, _, _ = syscall.Syscall(syscall.SYS_MADVISE, first, end-first, madvRemove)
}
