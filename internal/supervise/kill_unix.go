//go:build unix

package supervise

import (
	"errors"
	"syscall"
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
