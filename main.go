package procpool

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/procpool/procpool/codec"
	"github.com/procpool/procpool/internal/supervise"
	"github.com/procpool/procpool/internal/wire"
)

// Environment variables through which the parent starts a worker.
const (
	envWorker   = "PROCPOOL_WORKER"    // "1" in a worker process
	envCodec    = "PROCPOOL_CODEC"     // the codec's name
	envMaxFrame = "PROCPOOL_MAX_FRAME" // the frame size limit in bytes
	envRlimits  = "PROCPOOL_RLIMITS"   // resource limits, see encodeRlimits
	envShared   = "PROCPOOL_SHM"       // the shared-memory segment's size in bytes, on fd 5
)

// The worker's protocol descriptors: ExtraFiles[0] and [1] of the parent's
// exec.Cmd.
const (
	fdTasks   = 3
	fdResults = 4
	fdShared  = 5 // the shared-memory segment, when PROCPOOL_SHM is set
)

// Main must be the first statement of main (and of TestMain) in any program
// that uses a pool of processes. In a worker process started by a pool it
// serves tasks until the pool closes the task pipe, then exits the process:
// it never returns. In any other process it returns at once, at the cost of
// one environment lookup.
//
// After Main, Register panics: functions must be registered at package level
// so that workers know them before they start serving.
func Main() {
	registry.serving.Store(true)
	if os.Getenv(envWorker) != "1" {
		return
	}
	os.Exit(serveProcess())
}

// serveProcess runs the worker side and returns the exit code.
func serveProcess() int {
	codecName, maxFrame, limits, shared := os.Getenv(envCodec), os.Getenv(envMaxFrame), os.Getenv(envRlimits), os.Getenv(envShared)
	// The marker must not reach processes the tasks start: they are not
	// workers.
	for _, k := range []string{envWorker, envCodec, envMaxFrame, envRlimits, envShared} {
		os.Unsetenv(k)
	}
	// Nor must the protocol pipes: a grandchild holding the result pipe
	// would hide this worker's death from the parent.
	syscall.CloseOnExec(fdTasks)
	syscall.CloseOnExec(fdResults)
	if shared != "" {
		syscall.CloseOnExec(fdShared)
	}

	// Whatever a task starts stays this worker's descendant, even once it
	// leaves the process group and its own parent exits: orphans are
	// reparented here, where the sweeps on the way out find them. Best
	// effort: without it (Linux before 3.4) the sweeps reach only the
	// group and the descendants whose parents are alive.
	_ = supervise.SetSubreaper()

	// Ctrl-C belongs to the parent. SIGTERM (from the pool, or the
	// parent-death signal) takes down every descendant and the whole
	// process group, so that nothing a task started outlives the worker.
	signal.Ignore(os.Interrupt)
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	go func() {
		<-term
		supervise.KillDescendants()
		if syscall.Getpgrp() == os.Getpid() {
			_ = syscall.Kill(0, syscall.SIGKILL)
		}
		os.Exit(143)
	}()

	fail := func(format string, args ...any) int {
		fmt.Fprintf(os.Stderr, "procpool worker %d: "+format+"\n", append([]any{os.Getpid()}, args...)...)
		return 2
	}
	if err := applyRlimits(limits); err != nil {
		return fail("%v", err)
	}
	c, err := codec.ByName(codecName)
	if err != nil {
		return fail("%v", err)
	}
	mf := wire.DefaultMaxFrame
	if maxFrame != "" {
		if mf, err = strconv.Atoi(maxFrame); err != nil {
			return fail("bad %s=%q", envMaxFrame, maxFrame)
		}
	}
	tasks := os.NewFile(fdTasks, "procpool-tasks")
	results := os.NewFile(fdResults, "procpool-results")
	if tasks == nil || results == nil {
		return fail("protocol descriptors 3 and 4 are missing")
	}
	s := newServer(context.Background(), tasks, results, func() int { return supervise.Available(fdTasks) }, c, mf)
	if shared != "" {
		size, err := strconv.Atoi(shared)
		if err != nil || size <= 0 {
			return fail("bad %s=%q", envShared, shared)
		}
		if s.shm, err = supervise.MapShared(fdShared, size); err != nil {
			return fail("shared memory: %v", err)
		}
	}
	if err := s.hello(os.Getpid()); err != nil {
		return fail("handshake: %v", err)
	}
	err = s.serve()
	// End of the task stream: from Close, or from the parent's death (the
	// kernel closes a dying parent's pipes before it reparents its
	// children, so getppid cannot tell the two apart yet). Either way,
	// nothing the tasks started may outlive this worker.
	supervise.KillDescendants()
	if syscall.Getpgrp() == os.Getpid() {
		supervise.KillGroupExceptSelf()
	}
	if err != nil {
		return fail("%v", err)
	}
	return 0
}

// Rlimit is an operating-system resource limit applied to each worker
// process (see WithRlimit).
type Rlimit struct {
	Resource int    // syscall.RLIMIT_AS, syscall.RLIMIT_CPU, syscall.RLIMIT_NOFILE, ...
	Cur, Max uint64 // soft and hard limit
}

// WithRlimit applies an OS resource limit to every worker process, set by
// the worker itself before it serves its first task. Useful resources:
// syscall.RLIMIT_AS (address space in bytes: the Go runtime needs several
// hundred MiB of it, so set it generously), syscall.RLIMIT_CPU (CPU seconds:
// the worker gets SIGXCPU, then SIGKILL, and its task a *WorkerExitError)
// and syscall.RLIMIT_NOFILE (open files). A limit the worker cannot set makes
// it fail its start.
func WithRlimit(resource int, cur, max uint64) Option {
	return func(c *config) { c.rlimits = append(c.rlimits, Rlimit{resource, cur, max}) }
}

func encodeRlimits(ls []Rlimit) string {
	parts := make([]string, len(ls))
	for i, l := range ls {
		parts[i] = fmt.Sprintf("%d:%d:%d", l.Resource, l.Cur, l.Max)
	}
	return strings.Join(parts, ",")
}

func applyRlimits(s string) error {
	if s == "" {
		return nil
	}
	for _, p := range strings.Split(s, ",") {
		var l Rlimit
		if _, err := fmt.Sscanf(p, "%d:%d:%d", &l.Resource, &l.Cur, &l.Max); err != nil {
			return fmt.Errorf("bad %s entry %q", envRlimits, p)
		}
		if err := syscall.Setrlimit(l.Resource, &syscall.Rlimit{Cur: l.Cur, Max: l.Max}); err != nil {
			return fmt.Errorf("setrlimit(%d, %d, %d): %w", l.Resource, l.Cur, l.Max, err)
		}
	}
	return nil
}
