package procpool

import (
	"fmt"
	"os"
	"sync/atomic"

	"github.com/procpool/procpool/internal/backend/process"
)

// Main must be the first statement of main (and of TestMain) in any program
// that uses a pool of processes. In a worker process started by a pool it
// serves tasks until the pool closes the task pipe, then exits the process:
// it never returns. In any other process it returns at once, at the cost of
// one environment lookup.
//
// After Main, Register panics: functions must be registered at package level
// so that workers know them before they start serving.
//
// A worker is the program started again, with the same arguments: whatever
// the program does before Main — every package's package-level variable
// initializers and init functions, and any statement of main above Main —
// runs in each worker too, and what the parent does after Main does not.
// The package documentation's section "Workers re-run the program" lists
// what that means; IsWorker tells the two kinds of process apart.
func Main() {
	registry.serving.Store(true)
	if !process.Marked() {
		mainFound.Store(foundParent)
		return
	}
	// Before process.Serve clears the marker: IsWorker must stay true.
	mainFound.Store(foundWorker)
	os.Exit(process.Serve(served{}))
}

// What Main found, for IsWorker: 0 until Main has run.
const (
	foundParent = 1
	foundWorker = 2
)

var mainFound atomic.Int32

// IsWorker reports whether this process is a worker process started by a
// pool. It is meant for the code that every process of the program runs —
// init functions, package-level variable initializers, functions that tasks
// call — to keep a side effect to the parent (opening a log file, listening
// on a port, starting a server) or to the workers:
//
//	func init() {
//		if !procpool.IsWorker() {
//			startMetricsServer()
//		}
//	}
//
// It is true in a worker from its first init function on, whether it was
// started by re-executing the program or by WithCommand, and stays true
// after Main, which removes the worker marker from the environment so that
// the processes a task starts are not workers: in those it is false. It is
// false in the parent, and in tasks run in the parent by WithInProcess.
// In a worker, the code after Main never runs (Main does not return there),
// so main needs no IsWorker test.
//
// Once Main has run, it costs one atomic load; before (in init functions
// and package-level initializers), one environment lookup.
func IsWorker() bool {
	switch mainFound.Load() {
	case foundWorker:
		return true
	case foundParent:
		return false
	}
	return process.Marked()
}

// Rlimit is an operating-system resource limit applied to each worker
// process (see WithRlimit).
type Rlimit struct {
	Resource int    // syscall.RLIMIT_AS, syscall.RLIMIT_CPU, syscall.RLIMIT_NOFILE, ...
	Cur, Max uint64 // soft and hard limit
}

// WithRlimit applies an OS resource limit to every worker process, set by
// the worker itself before it serves its first task. Useful resources:
// syscall.RLIMIT_AS (address space in bytes), syscall.RLIMIT_CPU (CPU
// seconds: the worker gets SIGXCPU, then SIGKILL, and its task a
// *WorkerExitError) and syscall.RLIMIT_NOFILE (open files).
//
// RLIMIT_AS counts address space reserved, not memory used, and the Go
// runtime reserves much more than it uses: an idle Go worker maps about
// 1.25 GiB (about 1.9 GiB when built with -race), plus its shared-memory
// segment (WithSharedMemory). Set the limit above that and what the tasks need; a
// worker that cannot map what it needs at start-up exits with a message on
// its standard error, and its start fails.
//
// A limit the worker cannot set (a soft limit above the hard one, a hard
// limit above the parent's) makes it fail its start. A negative resource,
// or cur above max, is an error from New.
func WithRlimit(resource int, cur, max uint64) Option {
	return func(c *config) {
		if resource < 0 || cur > max {
			c.invalid(fmt.Sprintf("WithRlimit(%d, %d, %d)", resource, cur, max), "need a resource number of 0 or more and a soft limit (cur) no higher than the hard one (max)")
		}
		c.rlimits = append(c.rlimits, Rlimit{resource, cur, max})
	}
}
