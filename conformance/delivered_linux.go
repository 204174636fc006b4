package conformance

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// awaitDelivered waits until sig, sent to process pid, is no longer
// pending on it: the process has ignored it (it was never pending), taken
// it into a handler, or died. It reads the pending sets of /proc/PID/status
// (ShdPnd, the process's) and of each thread's status (SigPnd). A signal
// is delivered asynchronously, so without this wait a message written
// right after the kill could be answered by one of the worker's threads
// before another takes the signal, and a worker that dies of it would look
// as if it had survived. It returns nil once the signal is not pending, or
// if the process's status cannot be read (it is gone), and ctx's error if
// ctx ends first.
func awaitDelivered(ctx context.Context, pid int, sig syscall.Signal) error {
	dir := filepath.Join("/proc", strconv.Itoa(pid))
	for {
		if !pendingIn(filepath.Join(dir, "status"), "ShdPnd:", sig) {
			tasks, _ := filepath.Glob(filepath.Join(dir, "task", "*", "status"))
			pending := false
			for _, t := range tasks {
				pending = pending || pendingIn(t, "SigPnd:", sig)
			}
			if !pending {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Microsecond):
		}
	}
}

// pendingIn reports whether the status file at path says, in its field
// (a hexadecimal signal set), that sig is pending. A file that cannot be
// read, or a zombie's, has nothing pending.
func pendingIn(path, field string, sig syscall.Signal) bool {
	b, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "State:"); ok && strings.HasPrefix(strings.TrimSpace(v), "Z") {
			return false
		}
		if v, ok := strings.CutPrefix(line, field); ok {
			set, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && sig > 0 && sig <= 64 && set&(1<<(sig-1)) != 0
		}
	}
	return false
}
