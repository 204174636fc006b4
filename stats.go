package procpool

import (
	"sync"
	"sync/atomic"
)

// Stats is a snapshot of a pool's counters and workers, from Pool.Stats.
// The task counts add up at every moment:
//
//	Submitted = Queued + Running + Succeeded + Failed + Cancelled + TimedOut + Terminated
type Stats struct {
	Submitted  int64 // tasks accepted (a Map chunk counts as one task)
	Queued     int   // tasks waiting for a worker now
	Running    int   // tasks accepted, not queued and not ended: on workers (running or in their pipes), or ending now
	Succeeded  int64 // tasks that returned a result that decoded (a chunk: every item did)
	Failed     int64 // tasks that ended with an error: their own, a result that did not decode, a crash, a broken pool
	Cancelled  int64 // tasks ended by Cancel or their context
	TimedOut   int64 // tasks that ran past their deadline
	Terminated int64 // tasks ended by Terminate
	Retried    int64 // restarts of tasks after a crash or timeout
	// StoppedClean counts stops (Cancel, a deadline, the memory limit)
	// after which the worker lived on: the task honoured its context and
	// returned within WithKillGrace, or had just ended.
	StoppedClean int64

	WorkersStarted int64            // worker processes started, replacements included
	Restarts       int64            // workers started to replace one that exited (a crash, a stop, a recycling)
	WorkerExits    map[string]int64 // worker exits by Reason (ReasonCrashed, ReasonTimeout, ...)
	CallbackPanics int64            // callbacks that panicked
	Workers        []WorkerStats    // the live workers
}

// WorkerStats describes one live worker.
type WorkerStats struct {
	Pid       int    // its process id (the parent's, in-process; 0 for a worker that is no process here)
	TasksDone int    // tasks it has answered
	InFlight  int    // tasks given to it and not yet answered
	RSS       int64  // resident memory in bytes at the last reading (0 if not read: see WithMaxWorkerMemory)
	Worker    string // names it, as WorkerExitError.Worker: "pid 1234" for a worker process
	Host      string // where it runs: "" for this machine
}

// outcome is how a task ended, for the counters.
type outcome uint8

const (
	succeeded outcome = iota
	failed
	cancelled
	timedOut
	terminated
	numOutcomes
)

type counters struct {
	// mu guards the task counts, so that a snapshot adds up: a task is
	// counted as pending from its acceptance (under Pool.mu, with its
	// queueing) until its outcome is counted, in one step. Lock order:
	// Pool.mu, then mu.
	mu        sync.Mutex
	submitted int64
	pending   int64 // accepted tasks that have not ended
	ended     [numOutcomes]int64
	closed    bool // the pool is closed: the last ending closes drained
	drained   chan struct{}

	retried, stoppedClean          atomic.Int64
	workersStarted, callbackPanics atomic.Int64
	restarts                       atomic.Int64
	exitsMu                        sync.Mutex
	exits                          map[string]int64
}

// accepted counts a task the pool has taken. Call it under Pool.mu.
func (c *counters) accepted() {
	c.mu.Lock()
	c.submitted++
	c.pending++
	c.mu.Unlock()
}

// ended counts a task's outcome, once per task, after the outcome has been
// delivered.
func (c *counters) end(o outcome) {
	c.mu.Lock()
	c.ended[o]++
	c.pending--
	last := c.pending == 0 && c.closed
	c.mu.Unlock()
	if last {
		c.markDrained()
	}
}

// close marks the pool closed; drained is closed once nothing is pending.
func (c *counters) close() {
	c.mu.Lock()
	first := !c.closed
	c.closed = true
	last := c.pending == 0
	c.mu.Unlock()
	if first && last {
		c.markDrained()
	}
}

func (c *counters) markDrained() { close(c.drained) }

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
		Retried:        p.stats.retried.Load(),
		StoppedClean:   p.stats.stoppedClean.Load(),
		WorkersStarted: p.stats.workersStarted.Load(),
		CallbackPanics: p.stats.callbackPanics.Load(),
		Restarts:       p.stats.restarts.Load(),
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
		if w.ready {
			s.Workers = append(s.Workers, WorkerStats{Pid: w.pid, TasksDone: w.done, InFlight: w.inflight.len(), RSS: w.rss, Worker: w.id, Host: w.host})
		}
	}
	c := &p.stats
	c.mu.Lock()
	s.Submitted = c.submitted
	s.Running = int(c.pending) - s.Queued
	s.Succeeded, s.Failed, s.Cancelled = c.ended[succeeded], c.ended[failed], c.ended[cancelled]
	s.TimedOut, s.Terminated = c.ended[timedOut], c.ended[terminated]
	c.mu.Unlock()
	p.mu.Unlock()
	return s
}
