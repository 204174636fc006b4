package supervise

import (
	"os"
	"syscall"
)

// KillGroupExceptSelf sends SIGKILL to every other process of the caller's
// process group: a worker calls it on its way out, so that nothing its tasks
// started outlives it, while it still exits with its own status. On macOS
// it reads the process table (sysctl kern.proc.all), again until a pass
// finds nothing (a process may fork meanwhile), at most a few times; each
// pass costs a millisecond or a few. It does nothing when the table cannot
// be read.
func KillGroupExceptSelf() { sweepGroup(os.Getpid(), syscall.Getpgrp(), procTable) }
