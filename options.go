package procpool

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/procpool/procpool/codec"
)

// An Option configures a Pool. Options are applied by New in order.
type Option func(*config)

type config struct {
	processes      int
	command        string
	args           []string
	env            []string
	dir            string
	stdout, stderr io.Writer
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
	logger         *slog.Logger
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
			c.setErr(fmt.Errorf("procpool: WithProcesses(%d): need at least 1", n))
		}
		c.processes = n
	}
}

// WithCommand runs path with args as the worker program instead of
// re-executing the current binary. That program's main must call
// procpool.Main first and register the same functions.
func WithCommand(path string, args ...string) Option {
	return func(c *config) { c.command, c.args = path, args }
}

// WithEnv adds environment variables ("KEY=value") to the workers' environment,
// which otherwise is the parent's.
func WithEnv(env ...string) Option {
	return func(c *config) { c.env = append(c.env, env...) }
}

// WithDir sets the workers' working directory (default: the parent's).
func WithDir(dir string) Option { return func(c *config) { c.dir = dir } }

// WithStdout sets where the workers' standard output goes (default: the
// parent's os.Stdout, which workers then write to directly, as a print in a
// Python worker does). A writer that is not an *os.File is fed by one
// copying goroutine per worker; the pool serializes their writes, so w need
// not be safe for concurrent use. Output travels apart from results: a line
// a task printed may reach w after its Future is ready, but Close returns
// only after it has.
func WithStdout(w io.Writer) Option { return func(c *config) { c.stdout = w } }

// WithStderr sets where the workers' standard error goes (default: the
// parent's os.Stderr), under the same rules as WithStdout.
func WithStderr(w io.Writer) Option { return func(c *config) { c.stderr = w } }

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
// that needs no isolation.
func WithInProcess() Option { return func(c *config) { c.inProcess = true } }

// WithCodec sets the codec for arguments and results (default
// codec.Default). Workers look it up by name, so it must be one of the codec
// package's built-in codecs.
func WithCodec(cd codec.Codec) Option { return func(c *config) { c.codec = cd } }

// WithInitializer runs f(arg) once in each worker before its first task,
// like Python's initializer and initargs; use it to set up per-process state
// that tasks then read. If it fails in a worker started by New, New returns
// its error; later, a failing initializer counts against WithRestartLimit.
func WithInitializer[In, Out any](f Func[In, Out], arg In) Option {
	return func(c *config) {
		c.initName = f.name
		c.initArg = func(cd codec.Codec) ([]byte, error) { return cd.Append(nil, arg) }
	}
}

// WithMaxTasksPerWorker retires a worker after it has run k tasks and starts
// a fresh one in its place (Python's maxtasksperchild). 0 means no limit.
// A chunk of a Map counts as one task.
func WithMaxTasksPerWorker(k int) Option { return func(c *config) { c.maxTasks = k } }

// WithPipelineDepth sets how many tasks may be in flight on one worker at a
// time: the running one plus those waiting in its pipe (default 16). Tasks
// are pipelined only while a worker's recent tasks have run for less than a
// millisecond on average: short tasks then travel in batches and save round
// trips, while long tasks go one at a time to whichever worker is free first.
// A chunk of a Map or Imap may also wait behind one other task on a worker
// whose tasks are long (a Map's chunks are alike; this saves the worker a
// round trip of idleness between them). A worker's waiting tasks never start
// elsewhere unless it dies. Depth 1 turns pipelining off.
func WithPipelineDepth(n int) Option {
	return func(c *config) {
		if n < 1 {
			c.setErr(fmt.Errorf("procpool: WithPipelineDepth(%d): need at least 1", n))
		}
		c.depth = n
	}
}

// WithQueueSize bounds the number of tasks waiting for a worker. When the
// queue is full, ApplyAsync and the map family block until there is room or
// their context ends, and TryApplyAsync returns ErrQueueFull. 0 (the
// default) means no bound.
func WithQueueSize(n int) Option { return func(c *config) { c.queueSize = n } }

// WithTaskTimeout bounds each task's run time, counted from the moment it
// starts on a worker. A task that runs longer has its worker stopped and
// ends with ErrTimeout. 0 (the default) means no limit.
func WithTaskTimeout(d time.Duration) Option { return func(c *config) { c.taskTimeout = d } }

// WithKillGrace sets how long a worker being stopped gets between SIGTERM
// and SIGKILL (default 300ms).
func WithKillGrace(d time.Duration) Option { return func(c *config) { c.killGrace = d } }

// WithStartTimeout bounds how long a new worker may take to answer the
// handshake (default 10s).
func WithStartTimeout(d time.Duration) Option { return func(c *config) { c.startTimeout = d } }

// WithMaxWorkerMemory replaces a worker whose resident memory exceeds bytes.
// The pool reads it from /proc after every task (a few microseconds) and
// every 50ms while a task has been running for longer than that; a worker
// over the limit after a task is retired once its pipeline is empty, and one
// over the limit mid-task is stopped, ending that task with a
// *WorkerExitError whose Reason is ReasonMemory. The limit is checked, not
// enforced by the kernel: a short task may exceed it briefly. For a hard
// ceiling, add WithRlimit(syscall.RLIMIT_AS, ...). In-process workers
// (WithInProcess) have no memory of their own and are not checked.
func WithMaxWorkerMemory(bytes int64) Option { return func(c *config) { c.maxMemory = bytes } }

// WithIdleTimeout retires workers that have had no task for d, keeping at
// least min workers alive; new work starts workers again up to
// WithProcesses.
func WithIdleTimeout(d time.Duration, min int) Option {
	return func(c *config) { c.idleTimeout, c.minWorkers = d, min }
}

// WithRestartLimit stops the pool from restarting workers that fail to start
// (they exit, fail the handshake or the initializer) more than n times
// within per. Past that the pool is broken: every pending and later task
// ends with an error wrapping ErrPoolBroken and the last cause. The default
// is 5 failures within 10s.
func WithRestartLimit(n int, per time.Duration) Option {
	return func(c *config) { c.restartN, c.restartPer = n, per }
}

// WithRetries runs a task again, up to n more times, when its worker died or
// it timed out. A task that returned an error is never retried. The default
// is 0, because a task may not be safe to run twice.
func WithRetries(n int) Option { return func(c *config) { c.retries = n } }

// WithMaxFrame bounds the size of one encoded argument or result (default
// 64 MiB). A worker that sends a larger frame is killed.
func WithMaxFrame(bytes int) Option { return func(c *config) { c.maxFrame = bytes } }

// WithSharedMemory sets the size of each worker's shared-memory segment
// (default 16 MiB; 0 turns it off). An argument of 64 KiB or more is copied
// into the segment of the worker that runs it instead of being written down
// its pipe, which saves two copies through the kernel; the segment is
// reused, and its pages cost memory only once touched. Arguments that do not
// fit travel through the pipe.
func WithSharedMemory(bytes int) Option { return func(c *config) { c.sharedMem = max(bytes, 0) } }

// WithLogger logs worker starts and exits, with their causes, to l. Logging
// is off by default.
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

func (c *config) setErr(err error) {
	if c.err == nil {
		c.err = err
	}
}
