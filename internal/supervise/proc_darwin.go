package supervise

import (
	"encoding/binary"
	"os"
	"syscall"
)

// The layout of macOS's struct kinfo_proc (<sys/sysctl.h>) on its 64-bit
// systems, amd64 and arm64 alike: the size of one and the offsets of the
// fields read here. Both are little-endian.
const (
	kinfoSize = 648
	kinfoStat = 36  // kp_proc.p_stat, a char
	kinfoPid  = 40  // kp_proc.p_pid, an int32
	kinfoPpid = 560 // kp_eproc.e_ppid, an int32
	kinfoPgid = 564 // kp_eproc.e_pgid, an int32
)

// sZomb is p_stat's value for a zombie (<sys/proc.h>).
const sZomb = 5

// procTable returns a snapshot of every process on the machine (sysctl
// kern.proc.all: some hundreds of bytes a process, a millisecond or a few
// for the whole table). It reports false when it cannot read the table,
// or when the table does not show the caller as it is: in its own process
// group, under its parent (read before or after the table, as the parent
// may die in between). A caller that gets false must not act on any pid:
// the check keeps a misreading of the table from naming wrong processes.
func procTable() ([]procEntry, bool) {
	self, pgrp, ppid := os.Getpid(), syscall.Getpgrp(), syscall.Getppid()
	var s string
	var err error
	for range 5 {
		// ENOMEM: the table grew between the sizing and the reading.
		if s, err = syscall.Sysctl("kern.proc.all"); err != syscall.ENOMEM {
			break
		}
	}
	if err != nil {
		return nil, false
	}
	if len(s)%kinfoSize == kinfoSize-1 {
		s += "\x00" // Sysctl drops a last byte that is zero
	}
	if len(s) == 0 || len(s)%kinfoSize != 0 {
		return nil, false
	}
	b := []byte(s)
	procs := make([]procEntry, 0, len(b)/kinfoSize)
	selfSeen := false
	for ; len(b) >= kinfoSize; b = b[kinfoSize:] {
		p := procEntry{
			pid:    int(int32(binary.LittleEndian.Uint32(b[kinfoPid:]))),
			ppid:   int(int32(binary.LittleEndian.Uint32(b[kinfoPpid:]))),
			pgid:   int(int32(binary.LittleEndian.Uint32(b[kinfoPgid:]))),
			zombie: b[kinfoStat] == sZomb,
		}
		if p.pid == self {
			if p.pgid != pgrp || p.zombie || (p.ppid != ppid && p.ppid != syscall.Getppid()) {
				return nil, false
			}
			selfSeen = true
		}
		procs = append(procs, p)
	}
	return procs, selfSeen
}
