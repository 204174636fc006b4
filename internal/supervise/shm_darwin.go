package supervise

import "os"

// MemFiles is true where MemFile and SharedMemory can make shared-memory
// files. macOS has no memfd_create; its POSIX shared memory (shm_open) is
// reached only through libc, which the syscall package does not export.
const MemFiles = false

// SharedMemory returns an error wrapping errors.ErrUnsupported on macOS
// (see MemFiles): the pool sends every argument through the pipe.
func SharedMemory(size int) (*os.File, []byte, error) {
	return nil, nil, unsupported("shared memory (memfd_create)")
}

// MemFile returns an error wrapping errors.ErrUnsupported on macOS (see
// MemFiles): a worker writes each answer at once, without a journal.
func MemFile(name string, size int) (*os.File, error) {
	return nil, unsupported("memory files (memfd_create)")
}

// FreePages does nothing on macOS, where no shared mapping is made.
func FreePages(b []byte) {}
