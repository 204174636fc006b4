package supervise

import (
	"syscall"
	"time"
)

// Stop sends SIGTERM to the group of pid and, if exited is not closed within
// twice grace (and a little), SIGKILL: a worker given SIGTERM gives its
// running task grace to return, then sweeps what its tasks started and
// exits, which the SIGKILL must not cut short. It returns at once; the
// escalation runs on a timer.
func Stop(pid int, grace time.Duration, exited <-chan struct{}) {
	if grace <= 0 {
		_ = KillGroup(pid, syscall.SIGKILL)
		return
	}
	_ = KillGroup(pid, syscall.SIGTERM)
	t := time.NewTimer(EscalateAfter(grace))
	go func() {
		defer t.Stop()
		select {
		case <-exited:
			// The leader is gone; sweep the rest of its group.
			_ = KillGroup(pid, syscall.SIGKILL)
		case <-t.C:
			_ = KillGroup(pid, syscall.SIGKILL)
		}
	}()
}

// EscalateAfter is how long after asking a worker to stop, with grace for
// its task, the parent kills it: past the worker's own grace period, so
// that the worker's sweep on its way out is not cut short.
func EscalateAfter(grace time.Duration) time.Duration { return 2*grace + 50*time.Millisecond }
