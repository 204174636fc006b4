package supervise

import (
	"os"
	"strconv"
	"syscall"
)

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
