// Package procpool runs Go functions in a pool of reusable worker processes,
// with the API of Python's multiprocessing.Pool made idiomatic for Go.
//
// A pool starts N worker processes once and sends them many tasks. Each task
// runs in a separate address space, so a task that crashes (a segfault in
// cgo, os.Exit, an out-of-memory kill), leaks or hangs cannot hurt the
// caller or the other tasks: the task that was hit fails with an error that
// says why, its worker is replaced, and the pool carries on.
//
// # Setup
//
// Workers re-run the program's own binary. Call Main as the first statement
// of main (and of TestMain in tests): in a worker it serves tasks and exits;
// in the parent it returns at once. Register the functions workers run at
// package level, so that every process of the program knows them:
//
//	var Square = procpool.Register("square", func(ctx context.Context, x int) (int, error) {
//		return x * x, nil
//	})
//
//	func main() {
//		procpool.Main()
//		p, err := procpool.New(procpool.WithProcesses(4))
//		if err != nil { ... }
//		defer p.Close()
//		v, err := procpool.Apply(ctx, p, Square, 7) // 49
//	}
//
// # Workers re-run the program
//
// Go cannot fork, so a worker is the program's own binary started again
// (os.Executable, or the program given to WithCommand), told by an
// environment variable that it is a worker. It runs everything the program
// runs before Main, then serves tasks; it never runs the rest of main. So:
//
//   - Package-level variable initializers and init functions — of every
//     package the program links — run in the parent and again in every
//     worker, each time one starts (replacements too), and their cost adds
//     to the worker's start. Computing read-only data there is fine: each
//     worker computes its own copy, which its tasks can read. Side effects
//     there happen once per process: keep opening or truncating files,
//     listening on ports, starting servers, connecting to databases and
//     parsing flags out of init functions and package-level initializers,
//     or guard them with IsWorker.
//   - main's statements after Main, and everything they start, run only in
//     the parent. flag.Parse placed after Main is never reached in a
//     worker, so a task that reads a flag's variable sees its default:
//     pass the values to tasks as arguments, or to WithInitializer.
//   - A worker gets the parent's arguments (os.Args[1:]; os.Args[0] is the
//     binary's absolute path) unless WithCommand sets them, and the
//     parent's environment as it is when that worker starts (os.Setenv in
//     the parent reaches workers started afterwards), plus WithEnv, plus
//     GOMAXPROCS=1 unless GOMAXPROCS is set there; the PROCPOOL_* variables
//     the pool adds are removed by Main before any task runs, so the
//     processes that tasks start are not workers. Its working directory is
//     the parent's (or WithDir's); its standard input is /dev/null, its
//     standard output and error the parent's (or WithStdout's and
//     WithStderr's).
//   - Nothing else of the parent's state reaches a worker: not the values
//     of variables the parent set after it started, not its open files,
//     sockets or locks (Go opens files close-on-exec; a worker holds only
//     descriptors 0 to 2 and the pool's 3 to 7, which the processes its
//     tasks start do not inherit), not its goroutines. A task sees what its
//     worker computed before Main, what earlier tasks on the same worker
//     left in package-level variables, its argument, and what
//     WithInitializer set up in that worker.
//   - A worker is in a process group of its own and ignores SIGINT: Ctrl-C
//     in a terminal reaches the parent only, and the workers end when it
//     closes its pools or dies (a worker exits when its parent does).
//     SIGTERM stops a worker, and whatever its tasks started.
//
// IsWorker reports which kind of process the code runs in, at the cost of
// one environment lookup before Main and one atomic load after it. Per-worker
// state (a connection, a loaded model) is set up by the function given to
// WithInitializer, which runs once in each worker before its first task.
// None of this applies to WithInProcess, whose tasks run in the parent.
//
// # Calls
//
// Apply and ApplyAsync run one task; Map and MapAsync run a function over a
// slice in chunks and return the results in order; Imap and ImapUnordered
// run it over an iter.Seq lazily, with a bounded window. Futures, callbacks,
// Close, Shutdown and Terminate follow Python's AsyncResult, callback,
// close/join and terminate.
//
// # Failures
//
// A task's own error or panic comes back as a *RemoteError, which keeps
// the error's identity where it can: errors.Is matches the standard
// library's common sentinels (fs.ErrNotExist, io.EOF, context.Canceled,
// ...) and those registered with RegisterError, and errors.As finds errors
// of types registered with RegisterErrorType. A worker that
// dies under a task gives that task a *WorkerExitError; the tasks queued
// behind it never started and run on another worker. ErrTimeout,
// ErrTerminated, ErrClosed, ErrQueueFull and ErrPoolBroken work with
// errors.Is. Every accepted task ends exactly once. Map and MapAsync
// return the results of the items that succeeded with a *MapError that
// lists every failed item; Imap's and ImapUnordered's item errors are
// *ItemError, with the item's index in the input (ImapUnorderedIndexed
// gives the index of every result too).
//
// # Costs
//
// Arguments and results are encoded with a codec (CBOR by default, see the
// codec package) and travel on dedicated pipes, never on the workers'
// stdout or stderr, which stay the user's. A round trip costs a few
// microseconds more than the pipe itself; short tasks are pipelined and
// batched. See docs/benchmarks.md.
//
// Submitting tasks from inside a task and waiting for them can deadlock a
// pool whose workers are all busy waiting; give nested work its own pool.
package procpool
