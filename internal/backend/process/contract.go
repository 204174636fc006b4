package process

import (
	"fmt"
	"os"
	"strings"
	"syscall"
)

// The contract between a pool and a worker process it starts, both
// halves: the environment, the descriptors and the exit statuses. A
// worker in another language follows the same (docs/protocol.md,
// "Starting a worker").

// Environment variables through which the parent starts a worker. The
// worker clears them all before it serves (Serve): the processes its
// tasks start are not workers.
const (
	EnvWorker    = "PROCPOOL_WORKER"     // "1" in a worker process
	envCodec     = "PROCPOOL_CODEC"      // the codec's name
	envMaxFrame  = "PROCPOOL_MAX_FRAME"  // the frame size limit in bytes
	envRlimits   = "PROCPOOL_RLIMITS"    // resource limits, see encodeRlimits
	envShared    = "PROCPOOL_SHM"        // the shared-memory segment's size in bytes, on fd 5
	envJournal   = "PROCPOOL_JOURNAL"    // "FD:SIZE": the answer journal (see wire.JournalHeader)
	envControl   = "PROCPOOL_CONTROL"    // "FD": the control pipe, read end (Stop frames; end of file: the parent is gone)
	envKillGrace = "PROCPOOL_KILL_GRACE" // nanoseconds a stopped task has to return before the worker dies
)

// envAll lists every variable of the contract, for the worker to clear.
var envAll = []string{EnvWorker, envCodec, envMaxFrame, envRlimits, envShared, envJournal, envControl, envKillGrace}

// The worker's protocol descriptors: the parent's exec.Cmd.ExtraFiles
// from fd 3 on. Fds 3 to 5 keep their places for workers that know only
// those; the journal and the control pipe are named by envJournal and
// envControl. A missing one is closed in the worker, and its variable not
// set.
const (
	fdTasks   = 3 // the task pipe, read end
	FDResults = 4 // the result pipe, write end (a test hands it on)
	fdShared  = 5 // the shared-memory segment, when PROCPOOL_SHM is set
	fdJournal = 6
	fdControl = 7
)

// Exit statuses of a worker process.
const (
	// ExitSIGTERM is the status a worker exits with when SIGTERM stops it
	// (128 + the signal's number, the shell's convention): from outside,
	// or the pool's own stops (a worker that ends itself because the
	// parent stopped its running task, or is gone, exits with it too).
	ExitSIGTERM = 128 + int(syscall.SIGTERM)
	exitStopped = ExitSIGTERM
	// exitSetup is the status of a worker that fails its own set-up (an
	// rlimit, a mapping, a bad variable, an unknown codec); it says why
	// on its stderr.
	exitSetup = 2
	// GoRuntimeExit is the exit status of a Go program that the runtime
	// ends with a fatal error: an unrecovered panic, a fatal signal it
	// reports (see Exit.Reported).
	GoRuntimeExit = 2
)

// Marked reports whether this process was started as a worker and has not
// cleared the marker yet (Serve clears it). It costs one environment
// lookup.
func Marked() bool { return os.Getenv(EnvWorker) == "1" }

// Rlimit is a resource limit a worker sets on itself before it serves.
type Rlimit struct {
	Resource int
	Cur, Max uint64
}

func encodeRlimits(ls []Rlimit) string {
	parts := make([]string, len(ls))
	for i, l := range ls {
		parts[i] = fmt.Sprintf("%d:%d:%d", l.Resource, l.Cur, l.Max)
	}
	return strings.Join(parts, ",")
}

// hasEnv reports whether env sets the variable key.
func hasEnv(env []string, key string) bool {
	for _, kv := range env {
		if strings.HasPrefix(kv, key+"=") {
			return true
		}
	}
	return false
}
