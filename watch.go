package procpool

import (
	"context"
	"reflect"
)

// ctxWatch cancels the tasks submitted with one context when it ends. Tasks
// that share a context (a burst of ApplyAsync, the chunks of a Map, a loop
// of Apply) share one context.AfterFunc registration: registering one per
// task costs a lock and a map entry in the context, which showed as a third
// of the submission cost under load.
type ctxWatch struct {
	ctx   context.Context
	stop  func() bool
	head  *task // the tasks watched, linked through task.wnext/wprev
	n     int
	fired bool
}

// watch makes t end when its context does. t.ctx.Done() must not be nil.
// t may have ended already (it was submitted before): then nothing is
// registered, since unwatch has run or will find nothing.
func (p *Pool) watch(t *task) {
	if !reflect.ValueOf(t.ctx).Comparable() {
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
	var drop func() bool // a registration that turned out not to be needed
	if w == nil {
		// Register outside the lock: context.AfterFunc calls ctx's
		// methods (Done, Err, Value, an AfterFunc of its own), which a
		// caller's own Context type implements. If ctx is done already,
		// contextDone(nw) runs at once on another goroutine.
		p.watchMu.Unlock()
		nw := &ctxWatch{ctx: t.ctx}
		nw.stop = context.AfterFunc(t.ctx, func() { p.contextDone(nw) })
		p.watchMu.Lock()
		w = p.watches[t.ctx]
		switch {
		case t.done.Load():
			p.watchMu.Unlock()
			nw.stop()
			return
		case w != nil:
			// Another call registered ctx meanwhile: share its watch.
			drop = nw.stop
		case nw.fired:
			// ctx ended, and contextDone(nw) ran before t was on its
			// list: cancel t here.
			p.watchMu.Unlock()
			p.cancelTask(t, context.Cause(t.ctx))
			return
		default:
			w = nw
			if p.watches == nil {
				p.watches = make(map[context.Context]*ctxWatch)
			}
			p.watches[t.ctx] = w
		}
	}
	if p.idleWatch == w {
		p.idleWatch = nil
	}
	t.wnext, t.wprev = w.head, nil
	if w.head != nil {
		w.head.wprev = t
	}
	w.head = t
	w.n++
	t.watch = w
	p.watchMu.Unlock()
	if drop != nil {
		drop()
	}
}

// unwatch forgets t (it has ended). A watch left with no task stays
// registered while it is the most recent such one, so that a loop of calls
// with one context registers once; the one it displaces is dropped.
func (p *Pool) unwatch(t *task) {
	p.watchMu.Lock()
	w, own := t.watch, t.stopOwn
	t.watch, t.stopOwn = nil, nil
	var stop func() bool
	if w != nil {
		if t.wprev != nil {
			t.wprev.wnext = t.wnext
		} else {
			w.head = t.wnext
		}
		if t.wnext != nil {
			t.wnext.wprev = t.wprev
		}
		t.wnext, t.wprev = nil, nil
		w.n--
		if w.n == 0 && !w.fired && p.idleWatch != w {
			if old := p.idleWatch; old != nil {
				delete(p.watches, old.ctx)
				stop = old.stop
			}
			p.idleWatch = w
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
	if p.idleWatch == w {
		p.idleWatch = nil
	}
	tasks := make([]*task, 0, w.n)
	for t := w.head; t != nil; t = t.wnext {
		tasks = append(tasks, t)
	}
	p.watchMu.Unlock()
	cause := context.Cause(w.ctx)
	for _, t := range tasks {
		p.cancelTask(t, cause)
	}
}

// dropWatches releases the idle registration when the pool ends (every
// task has ended, so no other is left).
func (p *Pool) dropWatches() {
	p.watchMu.Lock()
	w := p.idleWatch
	p.idleWatch = nil
	if w != nil {
		delete(p.watches, w.ctx)
	}
	p.watchMu.Unlock()
	if w != nil {
		w.stop()
	}
}
