package supervise

import (
	"bytes"
	"os"
	"strconv"
	"syscall"
)

// prSetChildSubreaper is prctl's PR_SET_CHILD_SUBREAPER (Linux 3.4).
const prSetChildSubreaper = 36

// SetSubreaper makes the calling process a child subreaper (Linux
// prctl(PR_SET_CHILD_SUBREAPER)): a process that any of its descendants
// leaves orphaned — its parent exits — is reparented to the caller instead
// of to init, however it detached itself (setsid, setpgid, a double fork).
// Every descendant thus stays reachable through the parent links of /proc,
// which KillDescendants follows.
//
// The flag lasts for the life of the process, and it has a cost: an
// adopted orphan that exits stays a zombie until the process exits, as
// nothing reaps it (reaping whatever child exits would take exit statuses
// from the code that started those children, such as os/exec's Wait). A
// worker calls it once, before it serves.
func SetSubreaper() error {
	if _, _, e := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); e != 0 {
		return os.NewSyscallError("prctl(PR_SET_CHILD_SUBREAPER)", e)
	}
	return nil
}

// maxPasses bounds KillDescendants' passes over /proc: it stops when two
// passes in a row find nothing new, in practice after two or three.
const maxPasses = 50

// KillDescendants sends SIGKILL to every living descendant of the calling
// process: its children, their children, and so on, whatever process group
// or session they are in. A worker calls it on its way out, so that nothing
// its tasks started outlives it.
//
// Descendants are found through the parent links of /proc/PID/stat. After
// SetSubreaper these links cannot be cut: a process whose parent dies —
// killed by this very function, or exiting on its own — is reparented to
// the caller, and the next pass finds it. A process may fork while it is
// being killed, so the passes repeat until two in a row find no process
// that was not already killed (one pass is not enough: its reading of /proc
// is not atomic, and a child can be read under a parent that is gone by the
// time the parent is read); a killed process can no longer fork. It does not
// reap: the zombies of killed children are left to the caller's own code or
// to its exit. Without SetSubreaper, an orphan that was reparented to init
// before the call is out of reach.
//
// Each pass reads /proc/PID/stat of every process on the machine: about a
// millisecond per hundred processes. When the caller has no living child,
// it returns after reading its threads' lists of children, in some tens of
// microseconds: after SetSubreaper, a process with no living child has no
// living descendant.
func KillDescendants() {
	if !hasLiveChild() {
		return
	}
	self := os.Getpid()
	killed := make(map[int]bool)
	children := make(map[int][]int)
	for pass, quiet := 0, 0; pass < maxPasses && quiet < 2; pass++ {
		clear(children)
		ents, err := os.ReadDir("/proc")
		if err != nil {
			return
		}
		for _, e := range ents {
			pid, err := strconv.Atoi(e.Name())
			if err != nil || pid == self {
				continue
			}
			if st, ok := readStat(pid); ok && st.state != 'Z' {
				children[st.ppid] = append(children[st.ppid], pid)
			}
		}
		fresh := false
		queue := append([]int(nil), children[self]...)
		for len(queue) > 0 {
			pid := queue[0]
			queue = append(queue[1:], children[pid]...)
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

// hasLiveChild reports whether the calling process has a child that is not
// a zombie, from /proc/self/task/TID/children (Linux 3.5 and
// CONFIG_PROC_CHILDREN, as distributions build it). It reports true when it
// cannot tell.
func hasLiveChild() bool {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return true
	}
	for _, t := range tasks {
		b, err := os.ReadFile("/proc/self/task/" + t.Name() + "/children")
		if err != nil {
			return true
		}
		for _, f := range bytes.Fields(b) {
			pid, err := strconv.Atoi(string(f))
			if err != nil {
				return true
			}
			if st, ok := readStat(pid); ok && st.state != 'Z' {
				return true
			}
		}
	}
	return false
}

// procStat is what this package reads from /proc/PID/stat.
type procStat struct {
	state byte // R, S, D, Z, T, ...
	ppid  int
	pgrp  int
}

// readStat reads /proc/PID/stat.
func readStat(pid int) (procStat, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, false
	}
	// pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, false
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 3 || len(f[0]) != 1 {
		return procStat{}, false
	}
	ppid, err1 := strconv.Atoi(string(f[1]))
	pgrp, err2 := strconv.Atoi(string(f[2]))
	if err1 != nil || err2 != nil {
		return procStat{}, false
	}
	return procStat{state: f[0][0], ppid: ppid, pgrp: pgrp}, true
}
