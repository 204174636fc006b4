package supervise

// HasRSS is true where RSS can read another process's resident memory.
// macOS has no /proc, and reads another process's memory figures only
// through libproc (proc_pidinfo), which needs cgo.
const HasRSS = false

// RSS returns an error wrapping errors.ErrUnsupported on macOS (see HasRSS).
func RSS(pid int) (int64, error) {
	return 0, unsupported("reading another process's resident memory")
}
