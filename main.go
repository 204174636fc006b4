package procpool

import (
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/procpool/procpool/codec"
	"github.com/procpool/procpool/internal/serve"
	"github.com/procpool/procpool/internal/supervise"
	"github.com/procpool/procpool/internal/wire"
)

// Environment variables through which the parent starts a worker.
const (
	envWorker    = "PROCPOOL_WORKER"     // "1" in a worker process
	envCodec     = "PROCPOOL_CODEC"      // the codec's name
	envMaxFrame  = "PROCPOOL_MAX_FRAME"  // the frame size limit in bytes
	envRlimits   = "PROCPOOL_RLIMITS"    // resource limits, see encodeRlimits
	envShared    = "PROCPOOL_SHM"        // the shared-memory segment's size in bytes, on fd 5
	envJournal   = "PROCPOOL_JOURNAL"    // "FD:SIZE": the answer journal (see wire.JournalHeader)
	envControl   = "PROCPOOL_CONTROL"    // "FD": the control pipe, read end (Stop frames; end of file: the parent is gone)
	envKillGrace = "PROCPOOL_KILL_GRACE" // nanoseconds a stopped task has to return before the worker dies
)

// Further descriptors, named to the worker by envJournal and envControl
// (fds 3 to 5 keep their places for workers that know only those).
const (
	fdJournal = 6
	fdControl = 7
)

// exitSIGTERM is the status a worker exits with when SIGTERM stops it
// (128 + the signal's number, the shell's convention).
const exitSIGTERM = 128 + int(syscall.SIGTERM)

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
//
// A worker is the program started again, with the same arguments: whatever
// the program does before Main — every package's package-level variable
// initializers and init functions, and any statement of main above Main —
// runs in each worker too, and what the parent does after Main does not.
// The package documentation's section "Workers re-run the program" lists
// what that means; IsWorker tells the two kinds of process apart.
func Main() {
	registry.serving.Store(true)
	if os.Getenv(envWorker) != "1" {
		mainFound.Store(foundParent)
		return
	}
	// Before serveProcess clears the marker: IsWorker must stay true.
	mainFound.Store(foundWorker)
	os.Exit(serveProcess())
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
	return os.Getenv(envWorker) == "1"
}

// serveProcess runs the worker side and returns the exit code.
func serveProcess() int {
	codecName, maxFrame, limits, shared := os.Getenv(envCodec), os.Getenv(envMaxFrame), os.Getenv(envRlimits), os.Getenv(envShared)
	journal, controlEnv, grace := os.Getenv(envJournal), os.Getenv(envControl), os.Getenv(envKillGrace)
	// The marker must not reach processes the tasks start: they are not
	// workers.
	for _, k := range []string{envWorker, envCodec, envMaxFrame, envRlimits, envShared, envJournal, envControl, envKillGrace} {
		os.Unsetenv(k)
	}
	// Nor must the protocol descriptors: a grandchild holding the result
	// pipe would hide this worker's death from the parent.
	for _, fd := range []int{fdTasks, fdResults, fdShared, fdJournal, fdControl} {
		supervise.CloseOnExec(fd)
	}
	ppid := os.Getppid()

	// Whatever a task starts stays this worker's descendant, even once it
	// leaves the process group and its own parent exits: orphans are
	// reparented here, where the sweeps on the way out find them. Best
	// effort: without it (Linux before 3.4) the sweeps reach only the
	// group and the descendants whose parents are alive.
	_ = supervise.SetSubreaper()

	// Ctrl-C belongs to the parent. SIGTERM (from the pool, or from outside)
	// takes down everything the tasks started, then the worker.
	signal.Ignore(os.Interrupt)
	var serving atomic.Pointer[serve.Server]
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, supervise.ParentDeathSignal)
	go func() {
		for sig := range sigs {
			switch {
			case sig == supervise.ParentDeathSignal && os.Getppid() == ppid:
				continue // not from the parent's death
			case sig == syscall.SIGTERM && serving.Load() != nil:
				// From outside (systemd, kill): the running task's
				// context is cancelled and it gets the grace period.
				serving.Load().Terminate(func() { exitSwept(exitSIGTERM) })
			}
			exitSwept(exitSIGTERM)
		}
	}()
	// Where no parent-death signal comes (macOS), the parent's pid is
	// watched instead; on Linux this does nothing.
	supervise.WatchParent(ppid, func() { exitSwept(exitStopped) })

	fail := func(format string, args ...any) int {
		fmt.Fprintf(os.Stderr, "procpool worker %d: "+format+"\n", append([]any{os.Getpid()}, args...)...)
		return 2
	}
	if err := applyRlimits(limits); err != nil {
		return fail("%v", err)
	}
	c, err := codec.ByName(codecName)
	if err != nil {
		// A hello that names no codec lets the parent say which one this
		// program lacks; then exit.
		helloNoCodec()
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
	cfg := serve.Config{
		Functions: served{},
		Codec:     c,
		MaxFrame:  mf,
		Available: func() int { return supervise.Available(fdTasks) },
		Die:       func() { exitSwept(exitStopped) },
	}
	if g := grace; g != "" {
		n, err := strconv.ParseInt(g, 10, 64)
		if err != nil || n < 0 {
			return fail("bad %s=%q", envKillGrace, g)
		}
		cfg.Grace = time.Duration(n)
	}
	if shared != "" {
		size, err := strconv.Atoi(shared)
		if err != nil || size <= 0 {
			return fail("bad %s=%q", envShared, shared)
		}
		if cfg.Shared, err = supervise.MapShared(fdShared, size); err != nil {
			return fail("shared memory: %v", err)
		}
	}
	if journal != "" {
		fdText, sizeText, _ := strings.Cut(journal, ":")
		fd, err1 := strconv.Atoi(fdText)
		size, err2 := strconv.Atoi(sizeText)
		if err1 != nil || err2 != nil || size < wire.JournalMin+1<<20 {
			return fail("bad %s=%q", envJournal, journal)
		}
		mem, err := supervise.MapSharedWritable(fd, size)
		if err != nil {
			return fail("journal: %v", err)
		}
		cfg.Journal = wire.NewJournal(mem)
		cfg.FreePages = supervise.FreePages
	}
	var control *os.File
	if controlEnv != "" {
		fd, err := strconv.Atoi(controlEnv)
		control = os.NewFile(uintptr(fd), "procpool-control")
		if err != nil || control == nil {
			return fail("bad %s=%q", envControl, controlEnv)
		}
		cfg.Control = true
	}
	s := serve.New(tasks, results, cfg)
	if control != nil {
		go watchdog(s, control)
	}
	if err := s.Hello(os.Getpid()); err != nil {
		return fail("handshake: %v", err)
	}
	serving.Store(s)
	err = s.Serve()
	// End of the task stream: from Close, or from the parent's death (the
	// kernel closes a dying parent's pipes before it reparents its
	// children, so getppid cannot tell the two apart yet). Either way,
	// nothing the tasks started may outlive this worker.
	sweep()
	if err != nil {
		return fail("%v", err)
	}
	return 0
}

// helloNoCodec writes a hello frame whose codec is empty: the worker does
// not know the codec the parent asked for (see docs/protocol.md).
func helloNoCodec() {
	body, err := json.Marshal(wire.Hello{Protocol: wire.Version, Pid: os.Getpid()})
	if results := os.NewFile(fdResults, "procpool-results"); err == nil && results != nil {
		_, _ = results.Write(wire.AppendFrame(nil, wire.KindHello, 0, body))
	}
}

// exitStopped is the exit status of a worker that ended itself because the
// parent stopped its running task (a timeout, a cancel, a memory limit) or
// is gone: the status of a stop by SIGTERM, which it replaces.
const exitStopped = exitSIGTERM

// watchdog reads the control pipe on a goroutine of its own, independent of
// the task that runs: Stop frames reach the server; the end of file means
// the parent is gone (it holds the only write end), and the worker sweeps
// what its tasks started and exits, whatever the task has done to its
// signal handling.
func watchdog(s *serve.Server, f *os.File) {
	r := wire.NewReader(f, 4<<10, 1<<10)
	for {
		fr, err := r.Next()
		if err != nil {
			exitSwept(exitStopped)
		}
		if fr.Kind == wire.KindStop {
			why := wire.StopCancel
			if len(fr.Body) > 0 {
				why = fr.Body[0]
			}
			s.Stop(fr.ID, why)
		}
	}
}

// exitSwept kills what the worker's tasks started, then exits.
func exitSwept(code int) {
	sweep()
	os.Exit(code)
}

// sweep kills every process the worker's tasks started, in its process
// group or not.
func sweep() {
	supervise.KillDescendants()
	if supervise.Getpgrp() == os.Getpid() {
		supervise.KillGroupExceptSelf()
	}
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
		if err := supervise.Setrlimit(l.Resource, l.Cur, l.Max); err != nil {
			return fmt.Errorf("setrlimit(%d, %d, %d): %w", l.Resource, l.Cur, l.Max, err)
		}
	}
	return nil
}
