package procpool

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/procpool/procpool/internal/backend"
	"github.com/procpool/procpool/internal/hook"
	"github.com/procpool/procpool/internal/wire"
)

// A pool over a remote backend (package cluster's client), and a pool that
// runs tasks encoded by another one (a cluster host): the root's side of
// internal/hook.

func init() {
	hook.WithLauncher = func(launch hook.Launch) any {
		return Option(func(c *config) { c.launch = launch })
	}
	hook.CodecName = func(pool any) string { return pool.(*Pool).codec.Name() }
	hook.Processes = func(pool any) int { return pool.(*Pool).cfg.processes }
	hook.Run = func(ctx context.Context, pool any, body []byte) (wire.Kind, []byte, error) {
		return pool.(*Pool).runEncoded(ctx, body)
	}
}

// remoteLauncher starts the launcher of a pool whose workers a remote
// backend carries (config.launch), after refusing the options that concern
// worker processes on this machine, and sets what such a pool keeps: one
// task per worker (a worker is a slot on the backend; the order of answers
// across slots is the backend's), no journal, no shared memory.
func (c *config) remoteLauncher() (backend.Launcher, error) {
	refuse := func(option string) error {
		return &OptionError{Option: option, Reason: "it concerns worker processes on this machine; a remote pool's workers are its hosts' (set it on the hosts' pools)"}
	}
	switch {
	case c.inProcess:
		return nil, refuse("WithInProcess")
	case c.command != "":
		return nil, refuse("WithCommand")
	case c.initName != "":
		return nil, refuse("WithInitializer")
	case c.maxMemory > 0:
		return nil, refuse("WithMaxWorkerMemory")
	case len(c.rlimits) > 0:
		return nil, refuse("WithRlimit")
	case c.idleTimeout > 0:
		return nil, refuse("WithIdleTimeout")
	case c.maxTasks > 0:
		return nil, refuse("WithMaxTasksPerWorker")
	}
	hc := &hook.Config{
		Workers: c.processes, QueueSize: c.queueSize, Retries: c.retries,
		TaskTimeout: c.taskTimeout, KillGrace: c.killGrace, MaxFrame: c.maxFrame,
		Codec: c.codec, Logger: c.logger,
	}
	l, err := c.launch(hc)
	if err != nil {
		return nil, &StartError{Reason: "starting the remote backend", Err: err}
	}
	c.maxFrame = min(c.maxFrame, hc.MaxFrame)
	c.depth, c.sharedMem = 1, 0
	return l, nil
}

// runEncoded runs a task encoded by another pool (see hook.Run): its frame
// body is the header and argument as that pool wrote them. The task is
// not retried here: a crash is the sender's to retry.
func (p *Pool) runEncoded(ctx context.Context, body []byte) (wire.Kind, []byte, error) {
	h, _, err := wire.ParseTaskHeader(body)
	if err != nil {
		return 0, nil, &CodecError{Op: "decode a task from another pool", Err: err}
	}
	if h.Shared() || h.From > 0 {
		return 0, nil, &CodecError{Op: "decode a task from another pool", Err: fmt.Errorf("%w: a task from another pool refers to its shared memory or items", wire.ErrMalformed)}
	}
	if h.Deadline != 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, time.Unix(0, h.Deadline))
		defer cancel()
	}
	if err := ctx.Err(); err != nil {
		return 0, nil, context.Cause(ctx)
	}
	id := p.nextID.Add(1)
	frame, start := wire.BeginFrame(make([]byte, 0, wire.HeaderSize+len(body)), wire.KindTask, id)
	frame = append(frame, body...)
	if err := wire.EndFrame(frame, start); err != nil {
		return 0, nil, &CodecError{Op: "encode a task from another pool", Err: err}
	}
	if err := p.checkFrame(frame, start); err != nil {
		return 0, nil, &CodecError{Op: "encode a task from another pool", Err: err}
	}
	s := &encodedSink{done: make(chan struct{})}
	// Not a chunk to the dispatcher even when it is one to the worker: its
	// answer goes back whole, and a crash fails it whole.
	t := &task{id: id, fn: string(h.Fn), frame: frame, ctx: ctx, timeout: time.Duration(h.Timeout), sink: s}
	if err := p.submit(t, submitWait); err != nil {
		return 0, nil, err
	}
	<-s.done
	return s.kind, s.body, s.err
}

// encodedSink keeps a task's answer as it came: a result's body, or an
// error report re-encoded (the pool decodes error frames as it reads them).
type encodedSink struct {
	done chan struct{}
	kind wire.Kind
	body []byte
	err  error
}

func (s *encodedSink) result(_ *Pool, body []byte, _ int) bool {
	s.kind, s.body = wire.KindResult, append([]byte(nil), body...)
	close(s.done)
	return true
}

func (s *encodedSink) fail(_ *Pool, err error, _ int) {
	switch e := err.(type) {
	case *RemoteError:
		s.kind, s.body = wire.KindError, e.report()
	default:
		if err == context.Canceled {
			s.kind = wire.KindSkipped
		} else {
			s.err = err
		}
	}
	close(s.done)
}

// report encodes e as the error body a worker sent for it.
func (e *RemoteError) report() []byte {
	eb := wire.ErrorBody{Message: e.Message, Type: e.Type, Stack: e.Stack, Panic: e.Panic, Code: e.Code, Chain: e.Chain}
	if e.wrapped != nil {
		eb.Sentinels, eb.Values = e.wrapped.report.Sentinels, e.wrapped.report.Values
	}
	b, err := json.Marshal(eb)
	if err != nil { // an ErrorBody always marshals
		panic(err)
	}
	return b
}
