package supervise

import (
	"os"
	"strconv"
	"syscall"
	"unsafe"
)

// pollFd is struct pollfd.
type pollFd struct {
	fd      int32
	events  int16
	revents int16
}

// poll(2)'s POLLERR and POLLHUP, which it reports whatever events asks for.
const (
	pollErr = 0x8
	pollHup = 0x10
)

// PeerOpen reports whether the other end of the pipe that f is an end of is
// still open, in any process: for a read end, whether any writer is left
// (no POLLHUP); for a write end, whether any reader is left (no POLLERR).
// It reports false when it cannot tell (f is closed, poll fails). One
// poll(2) that does not wait.
func PeerOpen(f *os.File) bool {
	rc, err := f.SyscallConn()
	if err != nil {
		return false
	}
	open := false
	_ = rc.Control(func(fd uintptr) {
		p := pollFd{fd: int32(fd)}
		var zero syscall.Timespec
		n, _, e := syscall.Syscall6(syscall.SYS_PPOLL, uintptr(unsafe.Pointer(&p)), 1, uintptr(unsafe.Pointer(&zero)), 0, 0, 0)
		open = e == 0 && (n == 0 || p.revents&(pollErr|pollHup) == 0)
	})
	return open
}

// EndReads ends the reading of r, the read end of a pipe whose writer is
// known to be gone for good — a worker process that has been reaped — even
// while other processes still hold the pipe's write end (what the worker
// started) and would keep a reader waiting for ever.
//
// It makes r non-blocking, so that from then on a read that finds the pipe
// empty fails with EAGAIN, at once, instead of waiting; the caller treats
// that as the end of the stream. Then it writes marker (at most PIPE_BUF
// bytes, so all at once or not at all) into the pipe, to wake up a read that
// is already waiting: the caller's reader treats the marker as the end of
// the stream too. Everything the gone writer wrote is before the marker. If
// the pipe is full the marker is not written: the reader is not waiting,
// then, and meets EAGAIN once it has read what is there.
//
// The marker goes through a write end of the caller's own, opened through
// /proc/self/fd (Linux opens a pipe reached that way as a FIFO, either end)
// and closed at once: the caller holds no write end meanwhile, so the end
// of file of a pipe that nobody else holds is not delayed.
func EndReads(r *os.File, marker []byte) error {
	rc, err := r.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	err = rc.Control(func(fd uintptr) {
		if err := syscall.SetNonblock(int(fd), true); err != nil {
			ferr = os.NewSyscallError("fcntl", err)
			return
		}
		path := "/proc/self/fd/" + strconv.Itoa(int(fd))
		w, err := syscall.Open(path, syscall.O_WRONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
		if err != nil {
			ferr = &os.PathError{Op: "open", Path: path, Err: err}
			return
		}
		defer syscall.Close(w)
		if _, err := syscall.Write(w, marker); err != nil && err != syscall.EAGAIN {
			ferr = os.NewSyscallError("write", err)
		}
	})
	if err != nil {
		return err
	}
	return ferr
}

// ReleaseWriteEnd closes w, the parent's copy of the write end of the pipe
// whose read end r it keeps, once it has handed w to a child (started
// tells whether the child started). On Linux the parent holds no write end
// of such a pipe: its end of file comes when the child's last copy closes,
// and EndReads opens a write end of its own when it needs one. (On macOS,
// where it cannot, the write end of a started child's pipe is kept for
// EndReads.) It returns w.Close's error.
func ReleaseWriteEnd(r, w *os.File, started bool) error { return w.Close() }

// holderPasses bounds KillPipeHolders' passes over /proc: a holder may fork
// children that inherit the pipe while it is being killed.
const holderPasses = 5

// KillPipeHolders sends SIGKILL to every process that holds one of the
// pipes identified by inodes (see PipeInode) open, except the caller and
// its children. The parent of a reaped worker calls it when something still
// holds the worker's pipes: only the worker could have passed them on (they
// are close-on-exec everywhere else), so whatever holds them is what the
// worker started and left behind. The caller's children are spared: while
// one of them is between fork and exec it holds all the caller's
// descriptors, for a moment, whatever it is going to run.
//
// It reads /proc/PID/fd of every process it may read (its own user's), a
// few times: some milliseconds. Processes of other users, and descendants
// of the worker that do not hold the pipes, are out of its reach.
func KillPipeHolders(inodes ...uint64) {
	want := make(map[string]bool, len(inodes))
	for _, ino := range inodes {
		if ino != 0 {
			want["pipe:["+strconv.FormatUint(ino, 10)+"]"] = true
		}
	}
	if len(want) == 0 {
		return
	}
	self := os.Getpid()
	killed := make(map[int]bool)
	for range holderPasses {
		ents, err := os.ReadDir("/proc")
		if err != nil {
			return
		}
		fresh := false
		for _, e := range ents {
			pid, err := strconv.Atoi(e.Name())
			if err != nil || pid == self {
				continue
			}
			if st, ok := readStat(pid); !ok || st.state == 'Z' || st.ppid == self || !holds(pid, want) {
				continue
			}
			if syscall.Kill(pid, syscall.SIGKILL) == nil && !killed[pid] {
				killed[pid] = true
				fresh = true
			}
		}
		if !fresh {
			return
		}
	}
}

// holds reports whether process pid has one of the files named in want
// (as /proc/PID/fd's links read) open.
func holds(pid int, want map[string]bool) bool {
	dir := "/proc/" + strconv.Itoa(pid) + "/fd/"
	d, err := os.Open(dir)
	if err != nil {
		return false // gone, or another user's
	}
	names, _ := d.Readdirnames(-1)
	d.Close()
	for _, n := range names {
		if link, err := os.Readlink(dir + n); err == nil && want[link] {
			return true
		}
	}
	return false
}
