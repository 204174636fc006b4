package procpool

import (
	"time"
)

// monitor samples workers' memory while they run tasks (WithMaxWorkerMemory)
// and retires idle workers (WithIdleTimeout). It runs only when one of those
// options is set, and ends when the pool is released.
func (p *Pool) monitor() {
	defer p.wg.Done()
	// It ends when the pool is being released (finalize).
	over := func() (moved <-chan struct{}, done bool) {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.phaseMoved, p.phase >= phaseReleasing
	}
	moved, done := over()
	if done {
		return
	}
	every := p.cfg.memoryInterval
	if p.cfg.maxMemory <= 0 || (p.cfg.idleTimeout > 0 && p.cfg.idleTimeout/4 < every) {
		every = max(p.cfg.idleTimeout/4, time.Millisecond)
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-moved:
			if moved, done = over(); done {
				return
			}
			continue
		case <-tick.C:
		}
		p.mu.Lock()
		type sample struct {
			w *worker
			t *task
		}
		var busy []sample
		live := len(p.workers)
		for _, w := range p.workers {
			// A task is sampled once it has run for an interval; a shorter
			// one is checked when it ends.
			if p.cfg.maxMemory > 0 && w.ready && w.mem != nil && w.inflight.len() > 0 &&
				time.Since(w.inflight.front().started) >= p.cfg.memoryInterval {
				busy = append(busy, sample{w, w.inflight.front()})
			}
			if p.cfg.idleTimeout > 0 && w.inflight.len() == 0 && !w.retiring &&
				live > p.cfg.minWorkers && p.queue.len() == 0 && time.Since(w.lastUsed) >= p.cfg.idleTimeout {
				w.retireLocked(ReasonRecycled, nil)
				w.closeInput()
				live--
			}
		}
		p.mu.Unlock()
		for _, b := range busy {
			p.checkMemory(b.w, b.t)
		}
	}
}
