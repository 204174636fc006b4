package procpool

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/procpool/procpool/codec"
	"github.com/procpool/procpool/internal/hook"
	"github.com/procpool/procpool/internal/wire"
)

// An Option configures a Pool. Options are applied by New in order. An
// option given a value that means nothing makes New return an *OptionError
// (errors.Is(err, ErrInvalidOption)); each option's documentation says
// which values it accepts and what zero means.
type Option func(*config)

type config struct {
	processes      int
	command        string
	args           []string
	env            []string
	dir            string
	stdout, stderr io.Writer
	outputPrefix   bool
	inProcess      bool
	codec          codec.Codec
	initName       string
	initArg        func(codec.Codec) ([]byte, error)
	maxTasks       int
	depth          int
	queueSize      int
	taskTimeout    time.Duration
	killGrace      time.Duration
	startTimeout   time.Duration
	maxMemory      int64
	memoryInterval time.Duration
	idleTimeout    time.Duration
	minWorkers     int
	rlimits        []Rlimit
	restartN       int
	restartPer     time.Duration
	retries        int
	maxFrame       int
	sharedMem      int
	require        []string // names of the functions every worker must register
	requireSet     bool     // WithRequire was given: require replaces the declared functions
	logger         *slog.Logger
	launch         hook.Launch // a remote backend's (remote.go); nil: worker processes or WithInProcess
	err            error
}

func defaultConfig() config {
	return config{
		processes:      runtime.NumCPU(),
		stdout:         os.Stdout,
		stderr:         os.Stderr,
		codec:          codec.Default,
		depth:          defaultDepth,
		killGrace:      300 * time.Millisecond,
		startTimeout:   10 * time.Second,
		memoryInterval: 50 * time.Millisecond,
		restartN:       5,
		restartPer:     10 * time.Second,
		maxFrame:       64 << 20,
		sharedMem:      16 << 20,
	}
}

// defaultDepth is how many short tasks the pool keeps in flight on one
// worker: the one running plus those queued behind it in its pipe. More than
// one lets the pool batch frames and keep the worker busy; see
// WithPipelineDepth.
const defaultDepth = 16

// WithProcesses sets the number of worker processes (default
// runtime.NumCPU()). n < 1 is an error from New.
//
// Each worker runs one task at a time and, unless GOMAXPROCS is set in the
// parent's environment or with WithEnv, runs with GOMAXPROCS=1: N
// single-threaded workers is the usual shape of a process pool, and it makes
// round trips faster. A task that wants several threads of its own can have
// them with WithEnv("GOMAXPROCS=4").
func WithProcesses(n int) Option {
	return func(c *config) {
		if n < 1 {
			c.invalid(fmt.Sprintf("WithProcesses(%d)", n), "need at least 1 worker process")
		}
		c.processes = n
	}
}

// WithCommand runs path with args as the worker program instead of
// re-executing the current binary. That program's main must call
// procpool.Main first. It may register only some of this program's
// functions (a call to one it lacks fails with ErrUnknownFunc; see
// WithRequire), but those it registers must have the same argument and
// result types: New fails, naming them, for a program built from another
// version of them. An empty path is an error from New (leave the option
// out to re-run the program's own binary).
func WithCommand(path string, args ...string) Option {
	return func(c *config) {
		if path == "" {
			c.invalid(`WithCommand("")`, "the path is empty; leave WithCommand out to re-run the program's own binary")
		}
		c.command, c.args = path, args
	}
}

// WithRequire makes New fail, with a *StartError that lists them, when a
// worker program does not register every one of fns. Without it, a
// WithCommand worker may serve a subset of the parent's functions, and a
// call to one it lacks fails with ErrUnknownFunc (a *RemoteError). The
// check uses the list of functions each worker sends when it starts; a
// replacement worker that fails it counts against WithRestartLimit. The
// program's own binary (no WithCommand) registers every function the
// parent does, so there the check always passes. The zero Func, or a nil
// one, is an error from New (wrapping ErrZeroFunc).
//
// A WithCommand pool without WithRequire requires every function the
// program declares (see Declare); WithRequire replaces that list with fns.
//
// Whether or not a function is required, New also fails when a worker
// registers a function under the same name with other argument or result
// types (a worker built from another version of the code); see
// docs/protocol.md, "Function fingerprints".
func WithRequire(fns ...AnyFunc) Option {
	return func(c *config) {
		c.requireSet = true
		for _, f := range fns {
			if f == nil || f.Name() == "" {
				c.setErr(&OptionError{Option: "WithRequire", Reason: zeroFuncReason, Err: ErrZeroFunc})
				continue
			}
			c.require = append(c.require, f.Name())
		}
	}
}

// WithEnv adds environment variables ("KEY=value") to the workers' environment,
// which otherwise is the parent's. An entry without a KEY= prefix is an
// error from New.
func WithEnv(env ...string) Option {
	return func(c *config) {
		for _, kv := range env {
			if i := strings.IndexByte(kv, '='); i < 1 {
				c.invalid(fmt.Sprintf("WithEnv(%q)", kv), "an entry must have the form KEY=value")
			}
		}
		c.env = append(c.env, env...)
	}
}

// WithDir sets the workers' working directory. The default, and the
// meaning of "", is the parent's.
func WithDir(dir string) Option { return func(c *config) { c.dir = dir } }

// WithStdout sets where the workers' standard output goes (default: the
// parent's os.Stdout, which workers then write to directly, as a print in a
// Python worker does, unless WithOutputPrefix is on). A writer that is not an *os.File is fed by one
// copying goroutine per worker; the pool serializes their writes, so w need
// not be safe for concurrent use. Output travels apart from results: a line
// a task printed may reach w after its Future is ready, but Close returns
// only after it has (so a w whose Write never returns holds Close up). A nil w discards the workers' standard output.
// In-process workers (WithInProcess) write to the parent's os.Stdout
// whatever the setting.
func WithStdout(w io.Writer) Option { return func(c *config) { c.stdout = w } }

// WithStderr sets where the workers' standard error goes (default: the
// parent's os.Stderr), under the same rules as WithStdout; nil discards it.
//
// Whatever the setting, a worker's standard error is a pipe that the pool
// reads, one goroutine per worker: the pool keeps its last 8 KiB, which the
// errors that report the worker's death quote (WorkerExitError.Stderr,
// StartError.Stderr), and notes a fatal signal the Go runtime reports
// there. Nothing of it costs anything per task. Once a worker has been
// reaped, the pool reads what its pipe holds and stops: a process the
// worker left behind that still writes to it then gets EPIPE.
func WithStderr(w io.Writer) Option { return func(c *config) { c.stderr = w } }

// WithOutputPrefix puts "[worker PID] " before each line that a worker
// writes to its standard output and standard error, so that the output of
// several workers can be told apart. It is off by default. Each line is
// written whole, once its end has come (a line longer than 4 KiB is written
// in pieces, each ended and prefixed; a last line without an end is ended
// when the worker exits), so the lines of workers writing at once do not
// cut into each other. Standard output then goes through the pool too, as
// standard error always does (see WithStderr). In-process workers
// (WithInProcess) write to the parent's own streams, unprefixed.
func WithOutputPrefix() Option { return func(c *config) { c.outputPrefix = true } }

// lockedWriter serializes the writes of several workers' copying goroutines.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// serializeOutput wraps non-file writers so that workers' output is written
// one write at a time; stdout and stderr share a lock when they are the same
// writer.
func (c *config) serializeOutput() {
	var mu sync.Mutex
	_, outFile := c.stdout.(*os.File)
	_, errFile := c.stderr.(*os.File)
	same := c.stdout == c.stderr
	if c.stdout != nil && !outFile {
		c.stdout = lockedWriter{&mu, c.stdout}
	}
	if c.stderr != nil && !errFile {
		if same {
			c.stderr = c.stdout
		} else {
			c.stderr = lockedWriter{new(sync.Mutex), c.stderr}
		}
	}
}

// WithInProcess runs the workers as goroutines in the calling process, like
// Python's ThreadPool: the same API and the same wire format, no isolation.
// A task that times out or is cancelled ends at once, but its goroutine runs
// to completion (a goroutine cannot be killed), and Close and Terminate wait
// for it; a crash takes the whole program down. Use it in tests, or for work
// that needs no isolation, or on Windows, where it is the only mode (see
// New).
func WithInProcess() Option { return func(c *config) { c.inProcess = true } }

// WithCodec sets the codec for arguments and results (default
// codec.Default, CBOR). Workers find the codec by its name (codec.ByName),
// so it must be registered in this program, as cd itself: the built-in
// codec.CBOR and codec.JSON are, msgpack.Codec and gob.Codec (packages
// codec/msgpack and codec/gob) register themselves when their package is
// imported, and a codec of one's own is registered with codec.Register at
// package level. nil, or a codec whose name is not registered as that
// codec, is an *OptionError from New. A worker whose program does not know
// the codec (a WithCommand binary that does not import its package) fails
// its start: New returns a *StartError that names the codec.
func WithCodec(cd codec.Codec) Option {
	return func(c *config) {
		if cd == nil {
			c.invalid("WithCodec(nil)", "need a codec: codec.Default, or another registered codec")
			return
		}
		reg, err := codec.ByName(cd.Name())
		switch {
		case err != nil:
			c.setErr(&OptionError{Option: fmt.Sprintf("WithCodec(%q)", cd.Name()), Reason: "workers find a codec by its name: register it with codec.Register at package level, in a package the workers' program imports too: " + err.Error(), Err: err})
		case !sameCodec(reg, cd):
			c.invalid(fmt.Sprintf("WithCodec(%q)", cd.Name()), fmt.Sprintf("another codec (%T) is registered under that name, and workers would use it", reg))
		}
		c.codec = cd
	}
}

// sameCodec reports whether a and b are the same codec value (false for
// values that cannot be compared, rather than a panic).
func sameCodec(a, b codec.Codec) bool {
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	return va.Type() == vb.Type() && va.Comparable() && vb.Comparable() && a == b
}

// WithInitializer runs f(arg) once in each worker before its first task,
// like Python's initializer and initargs; use it to set up per-process state
// that tasks then read. If it fails in a worker started by New, New returns
// its error; later, a failing initializer counts against WithRestartLimit.
// The zero Func is an error from New (wrapping ErrZeroFunc), and so is an
// argument whose encoding is over WithMaxFrame (a *CodecError).
func WithInitializer[In, Out any](f Func[In, Out], arg In) Option {
	return func(c *config) {
		if f.name == "" {
			c.setErr(&OptionError{Option: "WithInitializer", Reason: zeroFuncReason, Err: ErrZeroFunc})
		}
		c.initName = f.name
		c.initArg = func(cd codec.Codec) ([]byte, error) { return cd.Append(nil, arg) }
	}
}

// WithMaxTasksPerWorker retires a worker after it has run k tasks and starts
// a fresh one in its place (Python's maxtasksperchild). 0 (the default)
// means no limit; k < 0 is an error from New. A chunk of a Map counts as
// one task.
func WithMaxTasksPerWorker(k int) Option {
	return func(c *config) {
		if k < 0 {
			c.invalid(fmt.Sprintf("WithMaxTasksPerWorker(%d)", k), "need 0 (no limit) or more")
		}
		c.maxTasks = k
	}
}

// WithPipelineDepth sets how many tasks may be in flight on one worker at a
// time: the running one plus those waiting in its pipe (default 16). Tasks
// are pipelined only while a worker's recent tasks have run for less than a
// millisecond on average: short tasks then travel in batches and save round
// trips, while long tasks go one at a time to whichever worker is free first.
// A chunk of a Map or Imap may also wait behind one other task on a worker
// whose tasks are long (a Map's chunks are alike; this saves the worker a
// round trip of idleness between them). A worker's waiting tasks never start
// elsewhere unless it dies. A busy worker's pipeline is refilled from the
// queue when its answers are read, in one write for the answers that came
// together; a submitted task goes straight to a worker only while that
// worker has fewer than two in flight. Depth 1 turns pipelining off; n < 1
// is an error from New.
func WithPipelineDepth(n int) Option {
	return func(c *config) {
		if n < 1 {
			c.invalid(fmt.Sprintf("WithPipelineDepth(%d)", n), "need at least 1 (1 turns pipelining off)")
		}
		c.depth = n
	}
}

// WithQueueSize bounds the number of tasks waiting for a worker. When the
// queue is full, ApplyAsync and the map family block until there is room or
// their context ends, and TryApplyAsync returns ErrQueueFull. 0 (the
// default) means no bound; n < 0 is an error from New.
func WithQueueSize(n int) Option {
	return func(c *config) {
		if n < 0 {
			c.invalid(fmt.Sprintf("WithQueueSize(%d)", n), "need 0 (no bound) or more")
		}
		c.queueSize = n
	}
}

// WithTaskTimeout bounds each task's run time, counted from the moment it
// starts on a worker: the task's context there has that deadline (or its
// caller's, if earlier). A task that runs longer is stopped (see
// WithKillGrace) and ends with ErrTimeout, unless it returns its result
// within the grace period: as with a function called with a context, a
// result that comes after the deadline is still the result. 0 (the default)
// means no limit; d < 0 is an error from New.
func WithTaskTimeout(d time.Duration) Option {
	return func(c *config) {
		if d < 0 {
			c.invalid(fmt.Sprintf("WithTaskTimeout(%v)", d), "need 0 (no limit) or more")
		}
		c.taskTimeout = d
	}
}

// WithKillGrace sets how long a stopped task has to return (default
// 300ms). A task is stopped by Future.Cancel, its caller's context, its
// deadline, the memory limit, Terminate or SIGTERM from outside: its
// context in the worker is cancelled, and a task that returns within the
// grace period ends as usual and keeps its worker. One that does not is
// ended with its worker, which sweeps what the task started and exits; the
// pool kills the worker's group itself if it is still there after twice the
// grace period. 0 means the worker dies at once, without waiting for the
// task; d < 0 is an error from New.
func WithKillGrace(d time.Duration) Option {
	return func(c *config) {
		if d < 0 {
			c.invalid(fmt.Sprintf("WithKillGrace(%v)", d), "need 0 (SIGKILL at once) or more")
		}
		c.killGrace = d
	}
}

// WithStartTimeout bounds how long a new worker may take to answer the
// handshake (default 10s). d <= 0 is an error from New: no worker could
// start.
func WithStartTimeout(d time.Duration) Option {
	return func(c *config) {
		if d <= 0 {
			c.invalid(fmt.Sprintf("WithStartTimeout(%v)", d), "need a positive duration")
		}
		c.startTimeout = d
	}
}

// WithMaxWorkerMemory replaces a worker whose resident memory exceeds bytes.
// The pool reads it from /proc after every task (a few microseconds) and
// every 50ms while a task has been running for longer than that; a worker
// over the limit after a task is retired once its pipeline is empty, and one
// over the limit mid-task is stopped, ending that task with a
// *WorkerExitError whose Reason is ReasonMemory. The limit is checked, not
// enforced by the kernel: a short task may exceed it briefly. For a hard
// ceiling, add WithRlimit(syscall.RLIMIT_AS, ...). In-process workers
// (WithInProcess) have no memory of their own and are not checked. 0 (the
// default) means no limit; bytes < 0 is an error from New. On macOS, which
// has no /proc, a limit for worker processes is an *OptionError from New
// that wraps errors.ErrUnsupported.
func WithMaxWorkerMemory(bytes int64) Option {
	return func(c *config) {
		if bytes < 0 {
			c.invalid(fmt.Sprintf("WithMaxWorkerMemory(%d)", bytes), "need 0 (no limit) or more")
		}
		c.maxMemory = bytes
	}
}

// WithIdleTimeout retires workers that have had no task for d, keeping at
// least min workers alive (all of them if min is WithProcesses or more);
// new work starts workers again up to WithProcesses. d = 0 (the default)
// means workers are never retired for idleness. d < 0 or min < 0 is an
// error from New.
func WithIdleTimeout(d time.Duration, min int) Option {
	return func(c *config) {
		if d < 0 || min < 0 {
			c.invalid(fmt.Sprintf("WithIdleTimeout(%v, %d)", d, min), "need a duration of 0 (never) or more and a minimum of 0 or more")
		}
		c.idleTimeout, c.minWorkers = d, min
	}
}

// WithRestartLimit stops the pool from restarting workers that fail to start
// (they exit, fail the handshake or the initializer) more than n times
// within per. Past that the pool is broken: every pending and later task
// ends with an error wrapping ErrPoolBroken and the last cause. The default
// is 5 failures within 10s. n = 0 means the first failed start of a
// replacement worker breaks the pool; n < 0 or per <= 0 is an error from
// New. A worker killed during its start by a signal the pool did not send
// (SIGKILL from the OOM killer or another process, SIGTERM) is replaced
// without counting: its binary is not at fault.
func WithRestartLimit(n int, per time.Duration) Option {
	return func(c *config) {
		if n < 0 || per <= 0 {
			c.invalid(fmt.Sprintf("WithRestartLimit(%d, %v)", n, per), "need a count of 0 or more and a positive period")
		}
		c.restartN, c.restartPer = n, per
	}
}

// WithRetries runs a task again, up to n more times, when its worker died or
// it timed out. A task that returned an error is never retried. The default
// is 0, because a task may not be safe to run twice; n < 0 is an error from
// New.
func WithRetries(n int) Option {
	return func(c *config) {
		if n < 0 {
			c.invalid(fmt.Sprintf("WithRetries(%d)", n), "need 0 (no retries) or more")
		}
		c.retries = n
	}
}

// minMaxFrame is the smallest frame limit WithMaxFrame accepts.
const minMaxFrame = 1 << 10

// WithMaxFrame bounds the size of every frame between the pool and its
// workers (default 64 MiB): the bytes of a frame after its 4-byte length
// field, that is an encoded argument or result plus a few bytes of header
// (9, and for a task 3 more plus the function's name). An argument over it
// is refused by the call with a *CodecError; a result over it ends its task
// with a *RemoteError; a worker that sends a larger frame anyway is killed.
// Values below 1 KiB or above 4 GiB - 1 (what the length field can hold)
// are an error from New: the protocol's own frames, such as the handshake
// that lists the registered functions, need room.
func WithMaxFrame(bytes int) Option {
	return func(c *config) {
		if bytes < minMaxFrame || uint64(bytes) > wire.MaxLength {
			c.invalid(fmt.Sprintf("WithMaxFrame(%d)", bytes), fmt.Sprintf("need a limit from %d bytes to %d", minMaxFrame, uint64(wire.MaxLength)))
		}
		c.maxFrame = bytes
	}
}

// WithSharedMemory sets the size of each worker's shared-memory segment
// (default 16 MiB). An argument of 64 KiB or more is copied into the
// segment of the worker that runs it instead of being written down its
// pipe, which saves two copies through the kernel; the segment is reused,
// and its pages cost memory only once touched. Arguments that do not fit
// travel through the pipe, so a segment under 64 KiB is never used. 0
// turns shared memory off; bytes < 0 is an error from New. On macOS, which
// has no memfd, there is no segment: every argument travels through the
// pipe, whatever this option says.
func WithSharedMemory(bytes int) Option {
	return func(c *config) {
		if bytes < 0 {
			c.invalid(fmt.Sprintf("WithSharedMemory(%d)", bytes), "need 0 (off) or more")
		}
		c.sharedMem = bytes
	}
}

// WithLogger logs the pool's lifecycle events to l, each a record with
// structured attributes. Logging is off by default, and with a nil l (it
// then costs one nil check per event). The events, by message:
//
//   - "worker started" (pid), at Info;
//   - "worker failed to start" (err), at Warn;
//   - "worker exited" (pid, reason: a Reason* constant, status, replaced:
//     whether a replacement is starting), at Warn for ReasonCrashed,
//     ReasonSignal and ReasonProtocol, at Info otherwise;
//   - "task retried" (task, func, pid, reason, retries_left; item for a
//     chunk), at Info;
//   - "task timed out" and "task cancelled" (task, func, err), at Info;
//   - "pool broken" (err), at Error, once the restart budget is spent;
//   - "procpool: callback panicked" (panic, stack), at Error;
//   - the pool's degraded modes at a worker's start ("no shared memory...",
//     "no answer journal...", "no control pipe..."; err), at Info.
//
// The pool hands its records to l's handler on a goroutine of its own, one
// at a time, in the order the events happened (each record keeps the time
// of its event). No lock of the pool is held then, and nothing in the pool
// waits for the handler: it may call Stats, or submit tasks and wait for
// them. A slow handler delays only the records behind it. Close, Shutdown
// and Terminate return only once every record made before the workers
// exited has been handled; called from the handler, they do not wait for
// it (as from a callback).
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

func (c *config) setErr(err error) {
	if c.err == nil {
		c.err = err
	}
}

// invalid records an *OptionError for New to return: option is the option
// as the caller wrote it, reason what it needs.
func (c *config) invalid(option, reason string) {
	c.setErr(&OptionError{Option: option, Reason: reason})
}
