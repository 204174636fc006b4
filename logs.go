package procpool

import (
	"context"
	"log/slog"
	"runtime"
	"sync"
	"time"
)

// logQueue hands the pool's log records to the WithLogger handler on a
// goroutine of its own, one at a time, in the order they were made. The
// pool's goroutines only queue a record (never blocking, under no lock of
// the pool), so the handler is user code that nothing in the pool waits
// for: it may call Stats, or submit tasks and wait for them, even when the
// event it logs is the start of the worker that will run them. The
// goroutine starts with the first record and ends when the queue is empty;
// Close, Shutdown and Terminate wait until it has handled every record.
type logQueue struct {
	h       slog.Handler // nil: logging is off
	mu      sync.Mutex
	recs    []slog.Record
	running bool
	idle    sync.Cond
}

func (q *logQueue) init(l *slog.Logger) {
	if l != nil {
		q.h = l.Handler()
	}
	q.idle.L = &q.mu
}

// push queues a record; it never blocks on the handler.
func (q *logQueue) push(r slog.Record) {
	q.mu.Lock()
	q.recs = append(q.recs, r)
	if !q.running {
		q.running = true
		go q.run()
	}
	q.mu.Unlock()
}

func (q *logQueue) run() {
	q.mu.Lock()
	for len(q.recs) > 0 {
		r := q.recs[0]
		q.recs[0] = slog.Record{}
		q.recs = q.recs[1:]
		q.mu.Unlock()
		q.handle(r)
		q.mu.Lock()
	}
	q.recs = nil
	q.running = false
	q.idle.Broadcast()
	q.mu.Unlock()
}

// handle passes r to the handler, as slog.Logger would have when r was
// made. It runs through runCallback, so that Close, Shutdown and Terminate
// called by the handler know not to wait for the handler itself.
func (q *logQueue) handle(r slog.Record) {
	ctx := context.Background()
	if q.h.Enabled(ctx, r.Level) {
		runCallback(func() { _ = q.h.Handle(ctx, r) })
	}
}

// close waits until every record queued so far has been handled.
func (q *logQueue) close() {
	q.mu.Lock()
	for q.running {
		q.idle.Wait()
	}
	q.mu.Unlock()
}

// logf logs an event at level Info (see logAt).
func (p *Pool) logf(msg string, args ...any) {
	if p.logs.h != nil {
		p.logAt(slog.LevelInfo, callerPC(), msg, args...)
	}
}

// logAt queues a record for the logger; pc is where it was made (0 for
// unknown). It takes no lock of the pool and does not wait for the
// handler.
func (p *Pool) logAt(level slog.Level, pc uintptr, msg string, args ...any) {
	if p.logs.h == nil {
		return
	}
	r := slog.NewRecord(time.Now(), level, msg, pc)
	r.Add(args...)
	p.logs.push(r)
}

// callerPC returns the program counter of its caller's caller, for a
// record's source as slog.Logger records it.
func callerPC() uintptr {
	var pcs [1]uintptr
	runtime.Callers(3, pcs[:]) // runtime.Callers, callerPC, logf
	return pcs[0]
}
