// Package hook is how packages of this module other than the root reach
// two pieces of the root's machinery without widening procpool's public
// API: a pool whose workers a backend of their own carries (package
// cluster's client), and a pool that runs tasks already encoded elsewhere
// (a cluster host). The root sets the functions in its init; they are nil
// in a program that does not link the root, which cannot happen for a
// package that imports it.
package hook

import (
	"context"
	"log/slog"
	"time"

	"github.com/procpool/procpool/codec"
	"github.com/procpool/procpool/internal/backend"
	"github.com/procpool/procpool/internal/wire"
)

// Config is what a remote backend learns of the pool's options when New
// starts it. MaxFrame it may lower (to what its transport carries); the
// pool then refuses larger tasks at submission.
type Config struct {
	Workers   int // WithProcesses: how many tasks the pool has on the backend at once
	QueueSize int // WithQueueSize: how many wait in the pool beyond those
	// Retries is WithRetries: the pool retries a task whose worker exited
	// (a backend's Worker that ends with its task), as for local workers.
	Retries     int
	TaskTimeout time.Duration
	KillGrace   time.Duration
	MaxFrame    int
	Codec       codec.Codec
	Logger      *slog.Logger // nil: none
}

// Launch makes the launcher of a remote pool's workers, given its options.
// An error fails New with a *procpool.StartError wrapping it.
type Launch func(cfg *Config) (backend.Launcher, error)

// WithLauncher returns a procpool.Option (as any, asserted by the caller)
// that makes New start the pool's workers through launch. Such a pool
// keeps one task in flight per worker (each Worker is a slot on the
// backend, whose answers may come in any order across slots), reads no
// journal and has no shared memory.
var WithLauncher func(launch Launch) any

// CodecName returns the name of pool's codec (pool is a *procpool.Pool).
var CodecName func(pool any) string

// Processes returns the number of workers pool runs at most
// (WithProcesses), however many are alive now (pool is a *procpool.Pool).
var Processes func(pool any) int

// Run runs a task frame's body (wire.AppendTaskHeaderExt, then the
// encoded argument), as encoded by another pool with the same codec, on
// pool, a *procpool.Pool, and blocks until it ends or ctx ends. The
// header's deadline and timeout apply as they do for the pool's own tasks.
// It returns the answer's kind and body (wire.KindResult, KindError or
// KindSkipped; the body is the caller's), or an error for an ending that
// is no answer: a *procpool.WorkerExitError, ErrTimeout, ErrClosed,
// ctx's error. With retries 0: a crash is the caller's to retry.
var Run func(ctx context.Context, pool any, body []byte) (wire.Kind, []byte, error)
