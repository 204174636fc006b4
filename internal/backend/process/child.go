package process

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

// Serve is the worker process's half of the contract: procpool.Main calls
// it in a process started by a pool (Marked). It reads the contract's
// variables and clears them, sets the process up (descriptors
// close-on-exec, child subreaper, signals, rlimits, the shared memory and
// the journal mapped, the control pipe's watchdog), writes the hello, and
// serves fns' functions until the task stream ends. It returns the exit
// status: 0 after the end of the tasks, exitSetup (2) when the set-up
// fails (it says why on stderr). A stop or the parent's death ends the
// process from inside, with ExitSIGTERM.
func Serve(fns serve.Functions) int {
	codecName, maxFrame, limits, shared := os.Getenv(envCodec), os.Getenv(envMaxFrame), os.Getenv(envRlimits), os.Getenv(envShared)
	journal, controlEnv, grace := os.Getenv(envJournal), os.Getenv(envControl), os.Getenv(envKillGrace)
	// The marker must not reach processes the tasks start: they are not
	// workers.
	for _, k := range envAll {
		os.Unsetenv(k)
	}
	// Nor must the protocol descriptors: a grandchild holding the result
	// pipe would hide this worker's death from the parent.
	for _, fd := range []int{fdTasks, FDResults, fdShared, fdJournal, fdControl} {
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
				serving.Load().Terminate(func() { exitSwept(ExitSIGTERM) })
			}
			exitSwept(ExitSIGTERM)
		}
	}()
	// Where no parent-death signal comes (macOS), the parent's pid is
	// watched instead; on Linux this does nothing.
	supervise.WatchParent(ppid, func() { exitSwept(exitStopped) })

	fail := func(format string, args ...any) int {
		fmt.Fprintf(os.Stderr, "procpool worker %d: "+format+"\n", append([]any{os.Getpid()}, args...)...)
		return exitSetup
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
	results := os.NewFile(FDResults, "procpool-results")
	if tasks == nil || results == nil {
		return fail("protocol descriptors 3 and 4 are missing")
	}
	cfg := serve.Config{
		Functions: fns,
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
	if results := os.NewFile(FDResults, "procpool-results"); err == nil && results != nil {
		_, _ = results.Write(wire.AppendFrame(nil, wire.KindHello, 0, body))
	}
}

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

// applyRlimits sets the limits encoded in s (encodeRlimits).
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
