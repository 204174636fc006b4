//go:build unix

package supervise

import (
	"errors"
	"os"
	"sync"
	"syscall"
)

// keptWriteEnds holds, by read end, the write ends that keepWriteEnd kept
// for endReadsKept.
var keptWriteEnds struct {
	sync.Mutex
	m map[*os.File]*os.File
}

// keepWriteEnd keeps w, a write end of the pipe whose read end is r, for
// endReadsKept, which closes it. The pipe then has a writer for as long as
// it is kept: r gets no end of file before endReadsKept.
func keepWriteEnd(r, w *os.File) {
	keptWriteEnds.Lock()
	defer keptWriteEnds.Unlock()
	if keptWriteEnds.m == nil {
		keptWriteEnds.m = make(map[*os.File]*os.File)
	}
	keptWriteEnds.m[r] = w
}

// endReadsKept is EndReads for a system where a process cannot open a
// write end of a pipe through its read end (macOS has no /proc/self/fd,
// and its /dev/fd duplicates a descriptor with that descriptor's access
// mode): it writes the marker through the write end that keepWriteEnd kept
// for r, then closes that write end. r is made non-blocking first, as
// EndReads makes it. It fails if no write end was kept for r.
func endReadsKept(r *os.File, marker []byte) error {
	keptWriteEnds.Lock()
	w := keptWriteEnds.m[r]
	delete(keptWriteEnds.m, r)
	keptWriteEnds.Unlock()
	if w == nil {
		return errors.New("supervise: no write end kept for " + r.Name())
	}
	defer w.Close()
	rc, err := r.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	err = rc.Control(func(fd uintptr) {
		if err := syscall.SetNonblock(int(fd), true); err != nil {
			ferr = os.NewSyscallError("fcntl", err)
		}
	})
	if err != nil {
		return err
	}
	if ferr != nil {
		return ferr
	}
	wc, err := w.SyscallConn()
	if err != nil {
		return err
	}
	err = wc.Control(func(fd uintptr) {
		if err := syscall.SetNonblock(int(fd), true); err != nil {
			ferr = os.NewSyscallError("fcntl", err)
			return
		}
		if _, err := syscall.Write(int(fd), marker); err != nil && err != syscall.EAGAIN {
			ferr = os.NewSyscallError("write", err)
		}
	})
	if err != nil {
		return err
	}
	return ferr
}
