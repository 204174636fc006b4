package supervise

import (
	"errors"
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
// grace, SIGKILL. It returns at once; the escalation runs on a timer.
func Stop(pid int, grace time.Duration, exited <-chan struct{}) {
	if grace <= 0 {
		_ = KillGroup(pid, syscall.SIGKILL)
		return
	}
	_ = KillGroup(pid, syscall.SIGTERM)
	t := time.NewTimer(grace)
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
