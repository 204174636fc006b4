package procpool

import (
	"context"
	"reflect"
)

// ctxWatch cancels the tasks submitted with one context when it ends. Tasks
// that share a context (a burst of ApplyAsync, the chunks of a Map) share
// one context.AfterFunc registration: registering one per task costs a
// lock and a map entry in the context, which showed as a third of the
// submission cost under load.
type ctxWatch struct {
	ctx   context.Context
	stop  func() bool
	tasks map[*task]struct{}
	fired bool
}

// watch makes t end when its context does. t.ctx.Done() must not be nil.
// t may have ended already (it was submitted before): then nothing is
// registered, since unwatch has run or will find nothing.
func (p *Pool) watch(t *task) {
	if !reflect.TypeOf(t.ctx).Comparable() {
		// A context that cannot be a map key: a registration of its own.
		stop := context.AfterFunc(t.ctx, func() { p.cancelTask(t, context.Cause(t.ctx)) })
		p.watchMu.Lock()
		if t.done.Load() {
			p.watchMu.Unlock()
			stop()
			return
		}
		t.stopOwn = stop
		p.watchMu.Unlock()
		return
	}
	p.watchMu.Lock()
	if t.done.Load() {
		p.watchMu.Unlock()
		return
	}
	w := p.watches[t.ctx]
	if w == nil {
		w = &ctxWatch{ctx: t.ctx, tasks: make(map[*task]struct{})}
		if p.watches == nil {
			p.watches = make(map[context.Context]*ctxWatch)
		}
		p.watches[t.ctx] = w
		// If ctx is already done, this runs at once on another goroutine,
		// which waits for watchMu.
		w.stop = context.AfterFunc(t.ctx, func() { p.contextDone(w) })
	}
	w.tasks[t] = struct{}{}
	t.watch = w
	p.watchMu.Unlock()
}

// unwatch forgets t (it has ended); the registration goes when its last
// task does.
func (p *Pool) unwatch(t *task) {
	p.watchMu.Lock()
	w, own := t.watch, t.stopOwn
	t.watch, t.stopOwn = nil, nil
	var stop func() bool
	if w != nil {
		delete(w.tasks, t)
		if len(w.tasks) == 0 && !w.fired {
			delete(p.watches, w.ctx)
			stop = w.stop
		}
	}
	p.watchMu.Unlock()
	if stop != nil {
		stop()
	}
	if own != nil {
		own()
	}
}

// contextDone cancels every task still watched under w's context.
func (p *Pool) contextDone(w *ctxWatch) {
	p.watchMu.Lock()
	w.fired = true
	if p.watches[w.ctx] == w {
		delete(p.watches, w.ctx)
	}
	tasks := make([]*task, 0, len(w.tasks))
	for t := range w.tasks {
		tasks = append(tasks, t)
	}
	p.watchMu.Unlock()
	cause := context.Cause(w.ctx)
	for _, t := range tasks {
		p.cancelTask(t, cause)
	}
}
