//go:build unix

package supervise

import (
	"syscall"
	"time"
)

// watchParent calls gone, once, when the caller's parent is no longer
// ppid (getppid(2) every interval; an orphan's parent becomes launchd, or
// init, or the nearest subreaper). It returns after calling gone; until
// then it runs for ever, so it runs on a goroutine of its own.
func watchParent(ppid int, every time.Duration, gone func()) {
	t := time.NewTicker(every)
	defer t.Stop()
	for range t.C {
		if syscall.Getppid() != ppid {
			gone()
			return
		}
	}
}
