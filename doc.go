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
