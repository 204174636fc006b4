// Package backend is the seam between the pool's dispatcher and what
// carries its tasks: the dispatcher starts workers through a Launcher and
// talks to each through a Worker — a stream of frames each way, a stop
// aimed at a task, a kill with a grace period, an exit that it can wait
// for and read. It never asks what kind of worker it has: what differs is
// said by Features, by Exit, and by the optional interfaces (Memory,
// Shared) a Worker may implement.
//
// Package process starts worker processes (exec, pipes, process groups)
// and serves tasks in them; package inprocess runs the serve loop on a
// goroutine over in-memory pipes. A new way of carrying tasks is a new
// package that implements these interfaces; the frames it carries are
// those of internal/wire (docs/protocol.md).
package backend

import (
	"io"
	"syscall"
	"time"

	"github.com/procpool/procpool/codec"
	"github.com/procpool/procpool/internal/wire"
)

// Spec is what every worker of a pool is started with, whatever carries
// it. What only one kind of worker needs is given to its Launcher's
// constructor.
type Spec struct {
	Codec     codec.Codec   // the pool's codec; the worker must know it by name
	MaxFrame  int           // the frame limit (wire.Fits), both ways
	KillGrace time.Duration // how long a stopped task has to return before its worker dies
	// SharedMemory is the size of the segment for large arguments (0:
	// none), JournalSize that of the journal (see wire.JournalHeader). A
	// worker that cannot have them does without (Features).
	SharedMemory int
	JournalSize  int
	// Go runs f on a goroutine that the pool waits for before it ends.
	Go func(f func())
	// Log records an event of the start ("no shared memory: ..."), with
	// slog-style key-value pairs.
	Log func(msg string, args ...any)
}

// A Launcher starts the workers of one pool.
type Launcher interface {
	// Start starts a worker. The handshake is not done yet: the worker's
	// hello is the first frame on its Results. It returns a *LaunchError
	// if nothing could be started.
	Start(spec Spec) (Worker, error)
	// Close releases what the launcher holds (a thread, a connection),
	// once every worker it started has exited.
	Close()
}

// LaunchError says why a worker could not be started.
type LaunchError struct {
	Reason string // what failed: "creating the task pipe", "running /path/prog"
	Err    error
}

func (e *LaunchError) Error() string { return e.Reason + ": " + e.Err.Error() }
func (e *LaunchError) Unwrap() error { return e.Err }

// Worker is the pool's link to one worker. Its methods are safe for
// concurrent use unless they say otherwise; none blocks but Reap.
type Worker interface {
	// ID names the worker for people and logs: "pid 1234" for a process;
	// a remote worker gives the one its task ran on, which may change
	// until Exited is closed. Host is where it runs, "" for this machine. Pid is its process id on this machine:
	// the parent's own for an in-process worker, 0 for one that has none
	// here.
	ID() string
	Host() string
	Pid() int

	// Tasks is the stream of frames to the worker: one goroutine writes
	// at a time. Closing it ends the worker's input: it finishes what it
	// has and exits.
	Tasks() io.WriteCloser
	// Results is the stream of frames from the worker: one goroutine
	// reads at a time. It ends once the worker has ended and what it
	// wrote has been read, whoever else holds it: at end of file, or at a
	// wire.KindEnd frame (read it with wire.Reader.StopAtEnd).
	Results() io.Reader

	// Features says which optional parts of the protocol the worker
	// keeps, given its hello. Call it once, after the hello.
	Features(h wire.Hello) Features
	// Stop asks the worker to stop task id, for the reason why (a
	// wire.Stop* byte): cancel it if it runs (it then has the kill grace
	// period to return before the worker dies), skip it if it has not
	// begun, ignore it if it has ended. It reports whether the worker is
	// sure to act on it (a call, not a message): if not, the pool kills
	// the worker should the task still run well after the grace period.
	// Use it only with Features.Control.
	Stop(id uint64, why byte) (sure bool)
	// Kill stops the worker as a whole, now: its running task's context
	// is cancelled and has the grace period, then the worker is killed.
	// KillNow kills it at once. Neither waits.
	Kill()
	KillNow()
	// Running returns the id of the task the worker runs now by its
	// journal, 0 for none: a moment's view of a live worker, for the
	// decision to kill it. Use it only with Features.Journal.
	Running() uint64

	// Exited is closed once the worker has ended and its Results is sure
	// to end. Exit then says how it ended, and Death what its journal
	// tells.
	Exited() <-chan struct{}
	Exit() Exit
	Death() Death
	// Reap waits until Exited is closed, for a worker that is sure to end
	// (a process); it returns at once for one that may never end (a
	// goroutine that a task holds).
	Reap()
	// Release frees what the worker holds (descriptors, mappings), once
	// it has ended and its Results have been read to their end. Nothing
	// may use the worker's shared memory (Shared) then.
	Release()
}

// Features are the optional parts of the protocol that a worker keeps
// (docs/protocol.md).
type Features struct {
	// Journal: Running and Death name the task that runs, and Death holds
	// the answers the worker had not written. Without it, the oldest
	// unanswered task is taken for the running one.
	Journal bool
	// Items: a chunk's finished items are in Death, so a death in the
	// middle of a chunk fails one item.
	Items bool
	// Control: Stop reaches the worker. Without it, a stop is a Kill.
	Control bool
}

// Exit is how a worker ended.
type Exit struct {
	// Status is true when the worker has an exit status of its own (a
	// process): Code and Signal. An in-process worker has none: only
	// what the pool did to it says why it ended.
	Status bool
	Code   int            // the exit status, or -1 if a signal killed it
	Signal syscall.Signal // the signal that killed it, or 0
	// Reported is the fatal signal the Go runtime reported on the
	// worker's standard error, or 0 (a Go program ends with exit status
	// 2 then).
	Reported syscall.Signal
	// Stderr is the end of the worker's standard error (see
	// WorkerExitError.Stderr), and ReportAt where the Go runtime's last
	// report starts in it, or -1.
	Stderr   string
	ReportAt int
	// Reason and Err are a remote worker's own account of its end (a
	// worker on another host that crashed there, a host lost), which the
	// pool reports as they are; "" where the pool tells why by itself.
	Reason string
	Err    error
}

// Death is what the journal of a worker that has ended tells: the id of
// the task it was running, the answers it had not written to its results
// (some of which the pool may have read already), and for a chunk task,
// how many of its items had finished, the encoded results of the first
// Listed of them, and the errors of those that failed (JSON ErrorBody by
// index).
type Death struct {
	Running  uint64
	Answers  []byte
	Finished int  // -1: the chunk had not started its items (or no journal)
	Stopped  bool // the chunk stopped between items: none was running
	Listed   int
	List     []byte
	ItemErrs map[int][]byte
}

// Memory is implemented by a Worker whose resident memory can be read.
type Memory interface {
	// RSS returns the worker's resident memory in bytes now.
	RSS() (int64, error)
}

// Shared is implemented by a Worker with a shared-memory segment for
// large arguments.
type Shared interface {
	// Shared returns the parent's mapping of the segment (nil if the
	// worker has none). The pool copies arguments into it, as the
	// frames that refer to them say, until Release.
	Shared() []byte
}
