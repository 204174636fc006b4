package supervise

import (
	"errors"
	"os"
	"strconv"
	"syscall"
	"time"
)

// KillGroup sends sig to the process group led by pid. A group that is
// already gone is not an error.
func KillGroup(pid int, sig syscall.Signal) error {
	if pid <= 0 {
		return errors.New("supervise: bad pid")
	}
	err := syscall.Kill(-pid, sig)
	if err == syscall.ESRCH {
		return nil
	}
	return err
}

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

// KillGroupExceptSelf sends SIGKILL to every other process of the caller's
// process group: a worker calls it on its way out, so that nothing its tasks
// started outlives it, while it still exits with its own status. It scans
// /proc, again until a pass finds nothing (a process may fork meanwhile), at
// most a few times; each pass costs a read of every /proc/PID/stat.
func KillGroupExceptSelf() {
	self, pgrp := syscall.Getpid(), syscall.Getpgrp()
	for range 5 {
		found := false
		ents, err := os.ReadDir("/proc")
		if err != nil {
			return
		}
		for _, e := range ents {
			pid, err := strconv.Atoi(e.Name())
			if err != nil || pid == self {
				continue
			}
			if g, ok := processGroup(pid); ok && g == pgrp {
				_ = syscall.Kill(pid, syscall.SIGKILL)
				found = true
			}
		}
		if !found {
			return
		}
	}
}

// processGroup reads the process group of pid from /proc/PID/stat; a
// zombie has none.
func processGroup(pid int) (int, bool) {
	st, ok := readStat(pid)
	if !ok || st.state == 'Z' {
		return 0, false
	}
	return st.pgrp, true
}

// EscalateAfter is how long after asking a worker to stop, with grace for
// its task, the parent kills it: past the worker's own grace period, so
// that the worker's sweep on its way out is not cut short.
func EscalateAfter(grace time.Duration) time.Duration { return 2*grace + 50*time.Millisecond }
