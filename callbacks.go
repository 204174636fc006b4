package procpool

import (
	"fmt"
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
			if l := q.p.cfg.logger; l != nil {
				l.Error("procpool: callback panicked", "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			}
		}
	}()
	fn()
}

// close waits until no callback is queued or running.
func (q *callbackQueue) close() {
	q.mu.Lock()
	for q.running {
		q.idle.Wait()
	}
	q.mu.Unlock()
}
