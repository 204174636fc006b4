//go:build unix

package procpool_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/pprof"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/procpool/procpool"
)

// reentrantHandler is a slog.Handler that calls back into the pool it
// logs for, as a metrics-minded handler would: use runs on every record
// once the pool is known. It counts the records by kind ("worker
// started", "worker exited: timeout", ...) and keeps what use returned.
type reentrantHandler struct {
	pool atomic.Pointer[procpool.Pool]
	use  func(*procpool.Pool) error

	mu    sync.Mutex
	kinds map[string]int
	errs  []error
	uses  int
}

func newReentrantHandler(use func(*procpool.Pool) error) *reentrantHandler {
	return &reentrantHandler{use: use, kinds: map[string]int{}}
}

func (h *reentrantHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *reentrantHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *reentrantHandler) WithGroup(string) slog.Handler            { return h }

func (h *reentrantHandler) Handle(_ context.Context, r slog.Record) error {
	kind := r.Message
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "reason" {
			kind += ": " + a.Value.String()
		}
		return true
	})
	var err error
	p := h.pool.Load()
	if p != nil {
		err = h.use(p)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.kinds[kind]++
	if p != nil {
		h.uses++
	}
	if err != nil {
		h.errs = append(h.errs, fmt.Errorf("%s: %w", kind, err))
	}
	return nil
}

func (h *reentrantHandler) summary() (kinds map[string]int, uses int, errs []error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	kinds = map[string]int{}
	for k, n := range h.kinds {
		kinds[k] = n
	}
	return kinds, h.uses, append([]error(nil), h.errs...)
}

// boundedOrDump runs fn and waits for it for a generous while. If it does
// not return, the pool is deadlocked: it prints every goroutine's stack
// and ends the test binary, since cleaning up a deadlocked pool (which a
// panic or t.Fatal would do first) would hang too.
func boundedOrDump(what string, fn func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = pprof.Lookup("goroutine").WriteTo(os.Stderr, 2)
		fmt.Fprintf(os.Stderr, "FAIL: %s did not finish: a deadlock (goroutines above)\n", what)
		os.Exit(1)
	}
}

// exerciseLogger runs a pool whose logger calls back into it, while its
// workers start, crash, time out, retire after WithMaxTasksPerWorker and
// retire over their memory limit, then closes it. Every call must return
// (no user code runs under a pool lock, and no goroutine of the pool waits
// for the logger), and the logger must have seen every kind of event.
func exerciseLogger(t *testing.T, processes int, use func(*procpool.Pool) error) {
	ctx := testCtx(t)
	base := baseRSS(t)
	h := newReentrantHandler(use)
	noOrphans(t)
	var p *procpool.Pool
	boundedOrDump("New", func() {
		var err error
		p, err = procpool.New(procpool.WithProcesses(processes), procpool.WithMaxTasksPerWorker(5),
			procpool.WithMaxWorkerMemory(base+40<<20), procpool.WithLogger(slog.New(h)))
		if err != nil {
			t.Errorf("New: %v", err)
		}
	})
	if p == nil {
		t.FailNow()
	}
	h.pool.Store(p)
	boundedOrDump("the workload", func() {
		for round := range 2 {
			for i := range 12 { // a worker retires every 5 tasks
				if v, err := procpool.Apply(ctx, p, square, i); err != nil || v != i*i {
					t.Errorf("round %d: square(%d) = %d, %v", round, i, v, err)
				}
			}
			var exitErr *procpool.WorkerExitError
			if _, err := procpool.Apply(ctx, p, exitWith, 3); !errors.As(err, &exitErr) {
				t.Errorf("round %d: exitWith: %v, want a *WorkerExitError", round, err)
			}
			if _, err := procpool.Apply(ctx, p, sleepMs, 60_000, procpool.Timeout(200*time.Millisecond)); !errors.Is(err, procpool.ErrTimeout) {
				t.Errorf("round %d: sleepMs past its Timeout: %v, want ErrTimeout", round, err)
			}
			// Over the memory limit: the worker retires after the task
			// (or is stopped during it, if sampled then), unless the task
			// was its last under WithMaxTasksPerWorker anyway.
			exits := p.Stats().WorkerExits[procpool.ReasonMemory]
			for range 10 {
				_, _ = procpool.Apply(ctx, p, leak, 80)
				if p.Stats().WorkerExits[procpool.ReasonMemory] > exits {
					break
				}
			}
		}
	})
	boundedOrDump("Close", func() { _ = p.Close() })

	kinds, uses, errs := h.summary()
	for _, err := range errs {
		t.Errorf("the logger's call into the pool failed: %v", err)
	}
	var seen []string
	for k, n := range kinds {
		seen = append(seen, fmt.Sprintf("%s ×%d", k, n))
	}
	sort.Strings(seen)
	t.Logf("records: %s; %d calls into the pool", strings.Join(seen, ", "), uses)
	for _, want := range []string{
		"worker started",
		"worker exited: " + procpool.ReasonCrashed,
		"worker exited: " + procpool.ReasonTimeout,
		"worker exited: " + procpool.ReasonRecycled,
		"worker exited: " + procpool.ReasonMemory,
	} {
		if kinds[want] == 0 {
			t.Errorf("the logger never got %q; it got %s", want, strings.Join(seen, ", "))
		}
	}
	if uses == 0 {
		t.Error("the logger never called into the pool")
	}
}

// A logger whose handler calls Stats (a metrics-minded handler) does not
// freeze the pool.
func TestLoggerMayCallStats(t *testing.T) {
	for _, n := range []int{1, 2} {
		t.Run(fmt.Sprintf("processes=%d", n), func(t *testing.T) {
			exerciseLogger(t, n, func(p *procpool.Pool) error {
				if s := p.Stats(); s.WorkersStarted == 0 {
					return errors.New("Stats: no worker started")
				}
				return nil
			})
		})
	}
}

// A logger whose handler submits a task from another goroutine and waits
// for its result does not freeze the pool, even with one worker, whose
// own start or exit is what is being logged.
func TestLoggerMayApplyAndWait(t *testing.T) {
	for _, n := range []int{1, 2} {
		t.Run(fmt.Sprintf("processes=%d", n), func(t *testing.T) {
			var answered atomic.Int64
			exerciseLogger(t, n, func(p *procpool.Pool) error {
				errc := make(chan error, 1)
				go func() {
					v, err := procpool.Apply(context.Background(), p, square, 7)
					if err == nil && v != 49 {
						err = fmt.Errorf("square(7) = %d", v)
					}
					errc <- err
				}()
				err := <-errc
				if errors.Is(err, procpool.ErrClosed) {
					return nil // logged while the pool closes
				}
				if err == nil {
					answered.Add(1)
				}
				return err
			})
			if answered.Load() == 0 {
				t.Error("no task submitted by the logger was answered")
			}
		})
	}
}

// A logger's handler may close the pool: Close then does not wait for the
// handler that called it, as from a callback.
func TestLoggerMayClose(t *testing.T) {
	ctx := testCtx(t)
	closed := make(chan error, 1)
	var once sync.Once
	h := newReentrantHandler(func(p *procpool.Pool) error {
		once.Do(func() { closed <- p.Close() })
		return nil
	})
	p := newPool(t, procpool.WithProcesses(1), procpool.WithLogger(slog.New(h)))
	h.pool.Store(p)
	boundedOrDump("Apply", func() { _, _ = procpool.Apply(ctx, p, exitWith, 3) }) // logs the exit and a start
	boundedOrDump("Close", func() {
		if err := <-closed; err != nil {
			t.Errorf("Close from the handler: %v", err)
		}
		_ = p.Close()
	})
	if _, err := procpool.Apply(ctx, p, square, 2); !errors.Is(err, procpool.ErrClosed) {
		t.Fatalf("Apply after the handler's Close: %v, want ErrClosed", err)
	}
}

// userCtx is a caller's own Context type whose methods call back into the
// pool: Stats on every call (it takes the pool's main lock), and once, in
// Value, a submission with a context of its own (which takes the lock of
// the pool's context watches). The pool must call none of its methods
// under a lock of its own.
type userCtx struct {
	context.Context
	pr *ctxProbe
}

type ctxProbe struct {
	pool   atomic.Pointer[procpool.Pool]
	calls  atomic.Int64
	nested atomic.Bool
	fut    chan *procpool.Future[int]
}

func (c userCtx) touch() {
	if p := c.pr.pool.Load(); p != nil {
		p.Stats()
		c.pr.calls.Add(1)
	}
}

func (c userCtx) Deadline() (time.Time, bool) { c.touch(); return c.Context.Deadline() }
func (c userCtx) Done() <-chan struct{}       { c.touch(); return c.Context.Done() }
func (c userCtx) Err() error                  { c.touch(); return c.Context.Err() }

func (c userCtx) Value(key any) any {
	c.touch()
	if p := c.pr.pool.Load(); p != nil && c.pr.nested.CompareAndSwap(false, true) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		f, err := procpool.ApplyAsync(ctx, p, square, 5)
		if err != nil {
			panic(err)
		}
		c.pr.fut <- f
		_, _ = f.Get(ctx)
	}
	return c.Context.Value(key)
}

// A caller's own Context type is user code too: the pool calls its methods
// under no lock, when it watches the context and when it asks again for
// the rest of a chunk whose worker died.
func TestUserContextNotCalledUnderLock(t *testing.T) {
	base, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pr := &ctxProbe{fut: make(chan *procpool.Future[int], 1)}
	ctx := userCtx{base, pr}
	p := newPool(t, procpool.WithProcesses(1))
	pr.pool.Store(p)
	boundedOrDump("ApplyAsync with the caller's context", func() {
		f, err := procpool.ApplyAsync(ctx, p, square, 3)
		if err != nil {
			t.Errorf("ApplyAsync: %v", err)
			return
		}
		if v, err := f.Get(base); err != nil || v != 9 {
			t.Errorf("square(3) = %d, %v", v, err)
		}
	})
	boundedOrDump("Map of crashing items with the caller's context", func() {
		// Each item kills its worker: the rest of the chunk is asked for
		// again, from the next item, with the context's deadline.
		_, err := procpool.Map(ctx, p, exitWith, []int{3, 3, 3, 3}, procpool.ChunkSize(4))
		var me *procpool.MapError
		if !errors.As(err, &me) || len(me.Errors) != 4 {
			t.Errorf("Map: %v, want a *MapError with 4 items", err)
		}
	})
	select {
	case f := <-pr.fut:
		if v, err := f.Get(base); err != nil || v != 25 {
			t.Errorf("the task the context's Value submitted: %d, %v", v, err)
		}
	default:
		t.Error("the pool never called the context's Value")
	}
	if pr.calls.Load() == 0 {
		t.Error("the pool never called the context's methods")
	}
}
