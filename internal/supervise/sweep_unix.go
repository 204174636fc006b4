//go:build unix

package supervise

import "syscall"

// procEntry is a process as a snapshot of the process table shows it.
// Entries whose pid is not positive (macOS lists its kernel as pid 0) are
// never signalled: kill(2) would take 0 for the caller's own group.
type procEntry struct {
	pid, ppid, pgid int
	zombie          bool
}

// sweepPasses bounds sweepDescendants' passes: it stops when two passes in
// a row find nothing new, in practice after two or three.
const sweepPasses = 50

// sweepDescendants sends SIGKILL to every living descendant of self that
// the parent links of a snapshot of the process table (table) reach, pass
// after pass, until two in a row find no process that was not already
// killed: a process may fork while it is being killed, and a killed one
// can no longer fork. It stops, doing nothing more, when table fails.
//
// It is KillDescendants for a system without /proc and without child
// subreapers (macOS): a descendant whose parent exited before the snapshot
// is out of its reach, and so is one whose parent it kills before the
// next pass, if it was forked after this one's snapshot. When the first
// snapshot shows self without a living child, it returns at once: no
// descendant can be reached.
func sweepDescendants(self int, table func() ([]procEntry, bool)) {
	killed := make(map[int]bool)
	seen := make(map[int]bool)
	children := make(map[int][]int)
	for pass, quiet := 0, 0; pass < sweepPasses && quiet < 2; pass++ {
		procs, ok := table()
		if !ok {
			return
		}
		clear(children)
		for _, p := range procs {
			if p.pid > 0 && p.pid != self && !p.zombie {
				children[p.ppid] = append(children[p.ppid], p.pid)
			}
		}
		if pass == 0 && len(children[self]) == 0 {
			return
		}
		clear(seen)
		fresh := false
		queue := append([]int(nil), children[self]...)
		for len(queue) > 0 {
			pid := queue[0]
			queue = queue[1:]
			if seen[pid] {
				continue // a snapshot taken as pids were reused
			}
			seen[pid] = true
			queue = append(queue, children[pid]...)
			// Every pass signals every descendant it finds, not only new
			// ones: a pid may have been reused since it was killed.
			if syscall.Kill(pid, syscall.SIGKILL) == nil && !killed[pid] {
				killed[pid] = true
				fresh = true
			}
		}
		if fresh {
			quiet = 0
		} else {
			quiet++
		}
	}
}

// groupPasses bounds sweepGroup's passes.
const groupPasses = 5

// sweepGroup sends SIGKILL to every living process of process group pgrp
// but self, as a snapshot of the process table (table) shows them, pass
// after pass until one finds none (a process may fork meanwhile), at most
// groupPasses times. It stops when table fails. It is KillGroupExceptSelf
// for a system without /proc (macOS).
func sweepGroup(self, pgrp int, table func() ([]procEntry, bool)) {
	for range groupPasses {
		procs, ok := table()
		if !ok {
			return
		}
		found := false
		for _, p := range procs {
			if p.pgid == pgrp && p.pid > 0 && p.pid != self && !p.zombie {
				_ = syscall.Kill(p.pid, syscall.SIGKILL)
				found = true
			}
		}
		if !found {
			return
		}
	}
}
