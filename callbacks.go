package procpool

import (
	"fmt"
	"log/slog"
	"reflect"
	"runtime"
	"runtime/debug"
	"sync"
)

// callbackQueue runs callbacks in the parent, one at a time, in the order
// their tasks completed, on one goroutine of the pool — so a callback may
// append to a slice without a lock, as in Python. The goroutine starts with
// the first callback and ends when the queue is empty; a callback that
// panics is logged (with WithLogger) and does not break the pool.
type callbackQueue struct {
	p       *Pool
	mu      sync.Mutex
	jobs    []func()
	running bool
	idle    sync.Cond
}

func (q *callbackQueue) init(p *Pool) {
	q.p = p
	q.idle.L = &q.mu
}

// push queues fn; it never blocks.
func (q *callbackQueue) push(fn func()) {
	q.mu.Lock()
	q.jobs = append(q.jobs, fn)
	if !q.running {
		q.running = true
		q.p.wg.Add(1)
		go q.run()
	}
	q.mu.Unlock()
}

func (q *callbackQueue) run() {
	defer q.p.wg.Done()
	q.mu.Lock()
	for len(q.jobs) > 0 {
		fn := q.jobs[0]
		q.jobs[0] = nil
		q.jobs = q.jobs[1:]
		q.mu.Unlock()
		q.call(fn)
		q.mu.Lock()
	}
	q.jobs = nil
	q.running = false
	q.idle.Broadcast()
	q.mu.Unlock()
}

func (q *callbackQueue) call(fn func()) {
	defer func() {
		if v := recover(); v != nil {
			q.p.stats.callbackPanics.Add(1)
			if q.p.logs.h != nil {
				q.p.logAt(slog.LevelError, 0, "procpool: callback panicked", "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			}
		}
	}()
	runCallback(fn)
}

// runCallback runs a callback. Its frame on a goroutine's stack is how
// Close, Shutdown and Terminate recognise that a callback called them (see
// onCallbackGoroutine), so it must stay a frame of its own.
//
//go:noinline
func runCallback(fn func()) { fn() }

// runCallbackName is runCallback's name as stack frames report it.
var runCallbackName = runtime.FuncForPC(reflect.ValueOf(runCallback).Pointer()).Name()

// onCallbackGoroutine reports whether the calling goroutine is running a
// callback, of this pool or of another: whether runCallback is on its
// stack. Go has no goroutine identity to compare; the stack is the
// goroutine's own record of what it is doing. It costs a walk of the
// caller's stack, a few microseconds: Close, Shutdown and Terminate pay it
// once per call.
func onCallbackGoroutine() bool {
	var pcs [64]uintptr
	for skip := 2; ; {
		n := runtime.Callers(skip, pcs[:])
		frames := runtime.CallersFrames(pcs[:n])
		for {
			f, more := frames.Next()
			if f.Function == runCallbackName {
				return true
			}
			if !more {
				break
			}
		}
		if n < len(pcs) {
			return false
		}
		// Deeper than one batch: go on below the frames seen (Callers
		// records one pc per frame, inlined ones included, as skip counts).
		skip += n
	}
}

// close waits until no callback is queued or running.
func (q *callbackQueue) close() {
	q.mu.Lock()
	for q.running {
		q.idle.Wait()
	}
	q.mu.Unlock()
}
