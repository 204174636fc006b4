package supervise

import "os"

// SetSubreaper returns an error wrapping errors.ErrUnsupported on macOS,
// which has no child subreapers: an orphan goes to launchd, out of
// KillDescendants' reach.
func SetSubreaper() error { return unsupported("child subreaper") }

// KillDescendants sends SIGKILL to every living descendant of the calling
// process that it can reach: its children, their children, and so on,
// whatever process group or session they are in. A worker calls it on its
// way out, so that nothing its tasks started outlives it.
//
// On macOS, descendants are found through the parent links of the process
// table (sysctl kern.proc.all), in passes until two in a row find no
// process that was not already killed (see sweepDescendants). Without a
// subreaper, a descendant whose parent exited before a pass, and was thus
// reparented to launchd, is out of reach. Each pass reads the whole table:
// a millisecond or a few. It returns after one pass when the caller has
// no living child, and does nothing when the table cannot be read.
func KillDescendants() { sweepDescendants(os.Getpid(), procTable) }
