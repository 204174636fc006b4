package procpool

import (
	"sync"
	"sync/atomic"
)

// Stats is a snapshot of a pool's counters and workers, from Pool.Stats.
type Stats struct {
	Submitted int64 // tasks accepted (a Map chunk counts as one task)
	Queued    int   // tasks waiting for a worker now
	Running   int   // tasks on workers now (running or in their pipes)
	Succeeded int64 // tasks that returned a result
	Failed    int64 // tasks that ended with an error (their own, or a crash)
	Cancelled int64 // tasks ended by Cancel or their context
	TimedOut  int64 // tasks that ran past their deadline
	Retried   int64 // restarts of tasks after a crash or timeout

	WorkersStarted int64            // worker processes started, replacements included
	WorkerExits    map[string]int64 // worker exits by Reason (ReasonCrashed, ReasonTimeout, ...)
	CallbackPanics int64            // callbacks that panicked
	Workers        []WorkerStats    // the live workers
}

// WorkerStats describes one live worker.
type WorkerStats struct {
	Pid       int   // its process id (the parent's, in-process)
	TasksDone int   // tasks it has answered
	InFlight  int   // tasks given to it and not yet answered
	RSS       int64 // resident memory in bytes at the last reading (0 if not read: see WithMaxWorkerMemory)
}

type counters struct {
	submitted, succeeded, failed, cancelled, timedOut, retried atomic.Int64
	workersStarted, callbackPanics                             atomic.Int64
	exitsMu                                                    sync.Mutex
	exits                                                      map[string]int64
}

func (c *counters) exited(reason string) {
	c.exitsMu.Lock()
	if c.exits == nil {
		c.exits = make(map[string]int64)
	}
	c.exits[reason]++
	c.exitsMu.Unlock()
}

// Stats returns a snapshot of the pool's counters and workers. It takes the
// pool's lock briefly; the cost grows with the number of workers.
func (p *Pool) Stats() Stats {
	s := Stats{
		Submitted:      p.stats.submitted.Load(),
		Succeeded:      p.stats.succeeded.Load(),
		Failed:         p.stats.failed.Load(),
		Cancelled:      p.stats.cancelled.Load(),
		TimedOut:       p.stats.timedOut.Load(),
		Retried:        p.stats.retried.Load(),
		WorkersStarted: p.stats.workersStarted.Load(),
		CallbackPanics: p.stats.callbackPanics.Load(),
		WorkerExits:    map[string]int64{},
	}
	p.stats.exitsMu.Lock()
	for k, v := range p.stats.exits {
		s.WorkerExits[k] = v
	}
	p.stats.exitsMu.Unlock()
	p.mu.Lock()
	s.Queued = p.queue.len()
	for _, w := range p.workers {
		s.Running += w.inflight.len()
		if w.ready {
			s.Workers = append(s.Workers, WorkerStats{Pid: w.pid, TasksDone: w.done, InFlight: w.inflight.len(), RSS: w.rss})
		}
	}
	p.mu.Unlock()
	return s
}
