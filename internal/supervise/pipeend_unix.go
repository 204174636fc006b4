//go:build unix

package supervise

import (
	"errors"
	"os"
	"syscall"
)

// PipeInode returns the inode number of the pipe that f is an end of: the N
// of "pipe:[N]" in /proc/PID/fd.
func PipeInode(f *os.File) (uint64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, errors.New("supervise: no inode number for " + f.Name())
	}
	return st.Ino, nil
}
