package procpool

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/procpool/procpool/internal/backend/process"
	"github.com/procpool/procpool/internal/wire"
)

// Sentinel errors. Test for them with errors.Is: the errors procpool returns
// wrap them with more detail.
var (
	// ErrClosed is returned when a task is submitted to a pool that has been
	// closed, shut down or terminated. The task was not accepted.
	ErrClosed = errors.New("procpool: pool is closed")
	// ErrTerminated ends every task that was still pending or running when
	// Terminate was called (or when Shutdown's context ran out).
	ErrTerminated = errors.New("procpool: pool was terminated")
	// ErrTimeout ends a task that ran past its deadline: WithTaskTimeout, a
	// per-call Timeout, or its context's deadline. errors.Is(err,
	// context.DeadlineExceeded) is true for it as well.
	ErrTimeout error = timeoutError{}
	// ErrQueueFull is returned by TryApplyAsync when the pool's queue
	// (WithQueueSize) has no room. The task was not accepted.
	ErrQueueFull = errors.New("procpool: queue is full")
	// ErrPoolBroken ends every pending and later task once workers failed to
	// start more often than WithRestartLimit allows. The error that ends a
	// task wraps both ErrPoolBroken and the last start failure.
	ErrPoolBroken = errors.New("procpool: pool is broken: workers keep failing to start")
	// ErrUnknownFunc means the worker has no function registered under the
	// task's name: the worker binary is not the one that called Register.
	ErrUnknownFunc = errors.New("procpool: function not registered in the worker")
	// ErrHandshake means a worker process did not complete the start-up
	// handshake: it exited, it did not answer in time (its main function
	// probably does not call procpool.Main first), it spoke another
	// protocol version or codec, it registers a function with other
	// argument or result types than the parent's (a worker binary built
	// from another version of the code), or it lacks a function that
	// WithRequire names.
	ErrHandshake = errors.New("procpool: worker handshake failed")
	// ErrProtocol means a worker wrote something on the protocol pipe that is
	// not a valid frame, or answered a task it was never given. The worker
	// is killed; the error reaches the task it was running through a
	// *WorkerExitError.
	ErrProtocol = errors.New("procpool: protocol error from worker")
	// ErrInvalidOption is matched by the *OptionError that New returns for
	// an Option, and a call for a CallOption, whose value means nothing (a
	// negative size, a zero timeout where zero has no meaning). Nothing was
	// started or submitted.
	ErrInvalidOption = errors.New("procpool: invalid option")
	// ErrZeroFunc is returned by every call given the zero Func (one not
	// obtained from Register), and wrapped by New's *OptionError for
	// WithInitializer with it. Nothing was submitted.
	ErrZeroFunc = errors.New("procpool: " + zeroFuncReason)
)

// zeroFuncReason is what is wrong with the zero Func, in words that say
// where a good one comes from.
const zeroFuncReason = "the zero Func: get a Func from procpool.Register"

// OptionError is returned by New for an Option, and by a call (Apply,
// ApplyAsync, Map, Imap, ...) for a CallOption, whose value is invalid.
// Nothing was started or submitted. errors.Is(err, ErrInvalidOption) is
// true for it.
type OptionError struct {
	Option string // the option and its value as given, e.g. "WithMaxFrame(0)"
	Reason string // what is wrong, and what would be accepted
	Err    error  // the cause where there is one (ErrZeroFunc, a codec lookup error), else nil
}

func (e *OptionError) Error() string { return "procpool: " + e.Option + ": " + e.Reason }

// Is makes errors.Is(err, ErrInvalidOption) true.
func (e *OptionError) Is(target error) bool { return target == ErrInvalidOption }

func (e *OptionError) Unwrap() error { return e.Err }

// timeoutError is the type of ErrTimeout. It matches context.DeadlineExceeded
// too, so callers who only know the context package still recognise it.
type timeoutError struct{}

func (timeoutError) Error() string { return "procpool: task timed out" }

// Is reports whether target is context.DeadlineExceeded.
func (timeoutError) Is(target error) bool { return target == context.DeadlineExceeded }

// RemoteError is a task's own failure, reported by the worker: the function
// returned an error, or it panicked. The worker survives both and goes on
// with the next task.
//
// The error keeps its identity across the boundary where it can:
// errors.Is(err, fs.ErrNotExist) is true when the worker's error matched
// fs.ErrNotExist, and so for the standard library's other common sentinels
// and for those registered with RegisterError; errors.As finds an error of
// a type registered with RegisterErrorType, rebuilt from its encoding.
// Other errors arrive as their message and types only.
type RemoteError struct {
	Func    string // the registered name of the function
	Message string // err.Error() of the returned error, or the panic value
	Type    string // the Go type of the error or panic value, e.g. "*fs.PathError"; Chain[0] when Chain is set
	Panic   bool   // true if the function panicked
	Stack   string // the worker-side stack, for a panic
	Code    string // a machine word for failures outside the function: one of the Code constants; "" for the function's own error or panic
	// Chain is the Go types of the error and of the errors it wraps,
	// outermost first, in the order errors.Is walks them (depth first
	// through errors.Join), e.g. ["*fmt.wrapError", "*fs.PathError",
	// "syscall.Errno"]. It is nil for a worker that does not send it, and
	// holds at most 32 types.
	Chain []string

	// wrapped is what Unwrap returns; nil if nothing.
	wrapped *unwrapped
	// The report of the error's identity that a worker sends.
	sentinels []string
	values    []wire.ErrorValue
}

// unwrapped holds what a RemoteError's Unwrap returns. In the worker: the
// function's own error or panic value. In the parent: the errors rebuilt
// from the worker's report, on the first call of Unwrap, on the caller's
// goroutine: decoding a typed error may run its codec methods, user code,
// and the pool makes RemoteErrors under its lock. It is shared by copies of
// the RemoteError.
type unwrapped struct {
	once   sync.Once
	report wire.ErrorBody // the worker's report: only Sentinels and Values are used
	errs   []error
}

// Codes carried by RemoteError.Code for failures outside the function's
// own code. The same words are the "code" of the protocol's error frame
// (docs/protocol.md), except CodeProtocol, which the parent sets.
const (
	CodeUnknownFunc = "unknown_function" // the worker has no function of that name (errors.Is(err, ErrUnknownFunc))
	CodeDecode      = "decode"           // the argument did not decode in the worker
	CodeEncode      = "encode"           // the result did not encode, or its frame is over WithMaxFrame
	CodeInit        = "init"             // the initializer failed
	CodeDeadline    = "deadline"         // the function returned an error once its context's deadline had passed: the task ends with ErrTimeout wrapping it
	CodeProtocol    = "protocol"         // the worker's error report did not parse
)

func (e *RemoteError) Error() string {
	var b strings.Builder
	b.WriteString("procpool: ")
	b.WriteString(e.Func)
	if e.Panic {
		b.WriteString(": panic: ")
	} else {
		b.WriteString(": ")
	}
	b.WriteString(e.Message)
	if e.Type != "" {
		b.WriteString(" (")
		b.WriteString(e.Type)
		b.WriteString(")")
	}
	return b.String()
}

// Is makes errors.Is(err, ErrUnknownFunc) true for a task sent to a worker
// that does not know its function.
func (e *RemoteError) Is(target error) bool {
	return target == ErrUnknownFunc && e.Code == CodeUnknownFunc
}

// Unwrap returns the errors that keep the task's error's identity in the
// parent: those of types registered with RegisterErrorType, rebuilt from
// the worker's encoding, outermost first, then the registered sentinels
// (RegisterError, and the standard library's) that the error matched in
// the worker. errors.Is and errors.As look through them. It returns nil
// when there are none. The slice must not be modified. The first call
// decodes the typed errors, with their codec methods if they have any;
// later calls cost nothing. It is safe for concurrent use.
func (e *RemoteError) Unwrap() []error {
	u := e.wrapped
	if u == nil {
		return nil
	}
	u.once.Do(func() {
		if u.errs == nil {
			u.errs = rebuild(&u.report)
		}
	})
	return u.errs
}

// Exit reasons carried by WorkerExitError.Reason.
const (
	ReasonCrashed    = "crashed"          // the worker exited by itself (os.Exit, a fatal runtime error; Signal is set if the Go runtime reported a fatal signal, such as a SIGSEGV in cgo)
	ReasonSignal     = "killed by signal" // a signal the pool did not send killed it (SIGKILL from outside, the OOM killer)
	ReasonTimeout    = "timeout"          // the pool stopped it: its task ran past the deadline
	ReasonCancelled  = "cancelled"        // the pool stopped it: its task was cancelled
	ReasonMemory     = "memory limit"     // the pool stopped it: it used more memory than WithMaxWorkerMemory
	ReasonProtocol   = "protocol error"   // the pool stopped it: it wrote garbage on the protocol pipe
	ReasonTerminated = "terminated"       // the pool stopped it: Terminate or Shutdown's deadline
	ReasonRecycled   = "recycled"         // the pool retired it: WithMaxTasksPerWorker or idle
	ReasonStart      = "failed to start"  // it did not complete the handshake or the initializer

	// ReasonTerminatedOutside: a SIGTERM the pool did not send stopped the
	// worker (kill(1), a service manager, a chaos tool). A Go worker's
	// SIGTERM handler kills what its tasks started and exits with status
	// 143 (Signal is SIGTERM); the pool's own stops end with that status
	// too, but then their reason is the pool's. A task that calls
	// os.Exit(143) looks the same.
	ReasonTerminatedOutside = "terminated by SIGTERM from outside the pool"
)

// WorkerExitError ends a task whose worker process died while running it.
// Tasks queued behind it on the same worker never started; they are run on
// another worker and do not see this error.
//
// Signal is set with ExitCode -1 when a signal killed the worker, and with
// an exit status when the worker reported the signal itself before it
// exited: the Go runtime ends a program that gets a fatal signal it did not
// cause in Go code (a SIGSEGV in cgo, a SIGABRT, a SIGSEGV sent by another
// process) with exit status 2 and a report on its standard error, which the
// pool reads; and a Go worker stopped by SIGTERM exits with status 143
// (ReasonTerminatedOutside when the pool did not send it).
type WorkerExitError struct {
	Pid      int            // the worker's process id
	ExitCode int            // the exit status, or -1 if it was killed by a signal
	Signal   syscall.Signal // the signal that killed it or that it reported (see above), or 0
	Reason   string         // one of the Reason constants
	Attempts int            // how many times the task was started (more than 1 with retries)
	Err      error          // the cause where there is one (a protocol error, the memory figure)
	// Stderr is the end of what the worker wrote to its standard error,
	// 8 KiB at most, starting at a line's start when it was cut: a Go
	// runtime's panic or crash report, the message of an os.Exit. Error
	// does not include it. It is empty for an in-process worker.
	Stderr string
	// Worker names the worker for people and logs: "pid 1234" for a
	// worker process (Pid is then its process id; in process, the
	// parent's). A worker that is no process here (on another host, say)
	// has Pid 0, and Worker and Host say which it was.
	Worker string
	Host   string // where the worker ran: "" for this machine
}

func (e *WorkerExitError) Error() string {
	var b strings.Builder
	if e.Pid == 0 && e.Worker != "" { // a worker that is no process here
		fmt.Fprintf(&b, "procpool: worker %s", e.Worker)
		if e.Host != "" {
			fmt.Fprintf(&b, " on %s", e.Host)
		}
		fmt.Fprintf(&b, " %s", e.Reason)
	} else {
		fmt.Fprintf(&b, "procpool: worker %d %s", e.Pid, e.Reason)
	}
	switch {
	case e.Signal != 0 && e.ExitCode < 0:
		fmt.Fprintf(&b, " (%s)", process.SignalName(e.Signal))
	case e.Signal != 0 && e.Reason == ReasonTerminatedOutside:
		fmt.Fprintf(&b, " (exit status %d)", e.ExitCode)
	case e.Signal != 0 && e.Reason == ReasonCrashed:
		fmt.Fprintf(&b, " by %s (reported by the Go runtime, exit status %d)", process.SignalName(e.Signal), e.ExitCode)
	case e.Signal != 0:
		fmt.Fprintf(&b, " (%s reported by the Go runtime, exit status %d)", process.SignalName(e.Signal), e.ExitCode)
	case e.ExitCode >= 0:
		fmt.Fprintf(&b, " (exit status %d)", e.ExitCode)
	}
	if e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	if e.Attempts > 1 {
		fmt.Fprintf(&b, " after %d attempts", e.Attempts)
	}
	return b.String()
}

func (e *WorkerExitError) Unwrap() error { return e.Err }

// MapError is returned by Map, and by MapAsync's Future, when items fail.
// The results of the items that succeeded are returned with it. Errors lists
// every failed item with its error, by ascending Index; Index and Err repeat
// the first of them (the lowest failed index, whatever the order in which
// the items failed). errors.Is and errors.As see each item's *ItemError,
// and through it each cause, lowest index first.
//
// A failed item costs one ItemError in Errors (24 bytes, no allocation of
// its own) besides its cause; a Map whose chunks failed as a whole (a
// cancelled context, a chunk that could not be decoded) shares one cause
// between their items.
type MapError struct {
	Index  int         // the lowest failed index
	Err    error       // its error
	Errors []ItemError // every failed item, by ascending Index
}

func (e *MapError) Error() string {
	msg := "procpool: item " + strconv.Itoa(e.Index) + ": " + errString(e.Err)
	if n := len(e.Errors); n > 1 {
		msg += " (and " + strconv.Itoa(n-1) + " more failed items)"
	}
	return msg
}

// Unwrap returns a pointer to each element of Errors, as errors, in order
// (or Err alone if Errors is empty). It allocates the slice it returns,
// len(Errors) interface values, on each call; errors.Is and errors.As call
// it once per MapError they pass through.
func (e *MapError) Unwrap() []error {
	if len(e.Errors) == 0 {
		if e.Err == nil {
			return nil
		}
		return []error{e.Err}
	}
	errs := make([]error, len(e.Errors))
	for i := range e.Errors {
		errs[i] = &e.Errors[i]
	}
	return errs
}

// ItemError is the failure of one item of a Map, MapAsync, Imap,
// ImapUnordered or ImapUnorderedIndexed call: Index is the item's position
// in the input (the slice, or the order in which the sequence yielded it),
// Err its error (a *RemoteError, a *WorkerExitError, a *CodecError,
// ErrClosed, the context's cause, ...). It unwraps to Err, so errors.Is and
// errors.As see the cause through it.
type ItemError struct {
	Index int
	Err   error
}

func (e *ItemError) Error() string {
	return "procpool: item " + strconv.Itoa(e.Index) + ": " + errString(e.Err)
}
func (e *ItemError) Unwrap() error { return e.Err }

// errString is err.Error(), or "<nil>" for nil, as %v writes it.
func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

// CodecError means an argument or result could not be encoded or decoded by
// the pool's codec. Op says which ("encode argument", "decode result", ...).
// The task was not run (encode argument) or its result is lost.
type CodecError struct {
	Op  string
	Err error
}

func (e *CodecError) Error() string { return "procpool: " + e.Op + ": " + e.Err.Error() }
func (e *CodecError) Unwrap() error { return e.Err }

// StartError is returned by New, and ends tasks once the pool is broken,
// when a worker could not be started: the binary could not be run, it
// failed the handshake, or its initializer failed. Signal is set when a
// signal killed the worker during its start; one the pool did not send and
// the program did not bring on itself (SIGKILL, SIGTERM from another
// process) does not count against WithRestartLimit.
type StartError struct {
	Pid    int            // 0 if the process never started
	Reason string         // what went wrong, in words a user can act on
	Signal syscall.Signal // the signal that killed the worker during its start (or that the Go runtime reported, see WorkerExitError), or 0
	Err    error          // the cause: ErrHandshake, an exec error, a *RemoteError from the initializer
	// Stderr is the end of what a worker that exited or timed out during
	// its start wrote to its standard error, 8 KiB at most (see
	// WorkerExitError.Stderr); Error quotes its last lines.
	Stderr string

	// external: a signal from another process killed the worker (the OOM
	// killer, a kill from outside): not the program's fault, so the pool
	// replaces it without counting against the restart budget.
	external bool
	// report: where a report of the Go runtime (a panic, a fatal error or
	// signal) starts in Stderr, if there is one (> 0 means at report-1).
	report int
}

func (e *StartError) Error() string {
	var s string
	if e.Pid != 0 {
		s = fmt.Sprintf("procpool: worker %d: %s: %v", e.Pid, e.Reason, e.Err)
	} else {
		s = fmt.Sprintf("procpool: starting a worker: %s: %v", e.Reason, e.Err)
	}
	switch {
	case e.report > 0:
		if q := quoteHead(e.Stderr[e.report-1:]); q != "" {
			s += "; the Go runtime reported:\n" + q
		}
	default:
		if q := quoteTail(e.Stderr); q != "" {
			s += "; its standard error ended with:\n" + q
		}
	}
	return s
}

// Bounds of the part of a worker's standard error that StartError.Error
// quotes: its last lines, as much as fits.
const (
	quoteLines = 10
	quoteBytes = 1 << 10
)

// quoteTail returns the last lines of tail (quoteLines and quoteBytes at
// most), each indented by a tab, or "" if tail is blank.
func quoteTail(tail string) string {
	tail = strings.TrimRight(tail, "\n\r\t ")
	if strings.TrimSpace(tail) == "" {
		return ""
	}
	if len(tail) > quoteBytes {
		tail = tail[len(tail)-quoteBytes:]
		if i := strings.IndexByte(tail, '\n'); i >= 0 && i+1 < len(tail) {
			tail = tail[i+1:]
		}
		tail = strings.ToValidUTF8(tail, "") // one long line, cut in a character
	}
	lines := strings.Split(tail, "\n")
	if len(lines) > quoteLines {
		lines = lines[len(lines)-quoteLines:]
	}
	return indent(lines)
}

// indent joins lines, each but the empty ones indented by a tab.
func indent(lines []string) string {
	var b strings.Builder
	for i, l := range lines {
		if i > 0 {
			b.WriteByte('\n')
		}
		if l != "" {
			b.WriteByte('\t')
			b.WriteString(l)
		}
	}
	return b.String()
}

// quoteHead returns the first lines of report (quoteLines and quoteBytes
// at most), each indented by a tab, or "" if report is blank: the start of
// a Go runtime's report says what happened, its end is goroutines and
// registers.
func quoteHead(report string) string {
	report = strings.TrimRight(report, "\n\r\t ")
	if strings.TrimSpace(report) == "" {
		return ""
	}
	lines := strings.SplitN(report, "\n", quoteLines+1)
	if len(lines) > quoteLines {
		lines = lines[:quoteLines]
	}
	q := strings.Join(lines, "\n")
	if len(q) > quoteBytes {
		q = q[:quoteBytes]
		if i := strings.LastIndexByte(q, '\n'); i > 0 {
			q = q[:i]
		}
		q = strings.ToValidUTF8(q, "") // one long line, cut in a character
	}
	return indent(strings.Split(q, "\n"))
}
func (e *StartError) Unwrap() error { return e.Err }

func errCount(got, want int) error {
	return fmt.Errorf("worker returned %d results for %d items", got, want)
}
