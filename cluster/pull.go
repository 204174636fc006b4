package cluster

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// A puller asks the broker for tasks with pull requests of one task each,
// one per free slot, so that the tasks the host has been given (delivered,
// then started at once) and those it has asked for do not exceed its
// slots. All requests share one reply subject and one subscription, where
// a fetch per request would subscribe and unsubscribe each time.
//
// The broker delivers a task under its own subject, so a task does not
// say which request it fills; requests are counted, not named. Each
// request ends exactly once: with a task, or with a status message (408
// when it expired after pullExpires, 409 when the broker cut it short).
// The broker serves and expires waiting requests oldest first, so the
// request a task or status ends is taken to be the oldest out. Only a
// broker that loses its state (a restart) ends none: a request out for
// pullLost of connected time is taken for lost, and its slot asked for
// again. No request is sent while the connection is down (nats.go would
// buffer it, and send it live on reconnect).
type puller struct {
	h       *host
	base    context.Context // the tasks' context (not the host's: a drain finishes them)
	subject string          // $JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>
	inbox   string
	body    []byte // every request's: one task, expiring after pullExpires
	sub     *nats.Subscription
	failed  chan struct{} // closed when a task found the pool closed or broken, or the connection closed for good (err)
	stop    chan struct{} // closed by drain: ends watch

	// mu guards the fields below. Every slot is free, asked for, or
	// running: free+len(out)+running == slots, except that free goes
	// below 0 for a while when a request taken for lost brings a task
	// after all (the broker had it); it runs, and the next requests are
	// fewer.
	mu       sync.Mutex
	free     int
	out      []time.Time // when each request out was sent (or the connection came back), oldest first
	running  int
	streak   int // statuses other than 408 in a row, for the log
	draining bool
	closed   bool // idle is closed: a task that comes now is stored again, not run
	err      error
	idle     chan struct{} // closed once draining with nothing asked for or running
}

// pullExpires is how long a pull request waits on the broker for a task;
// a host that drains waits about this long for its requests.
const pullExpires = 2 * time.Second

// pullLost is how long a request may stay out, connected, before it is
// taken for lost.
const pullLost = pullExpires + 2*time.Second

func newPuller(h *host, base context.Context) (*puller, error) {
	p := &puller{
		h: h, base: base,
		subject: "$JS.API.CONSUMER.MSG.NEXT." + h.cfg.streamName() + "." + consumerName,
		inbox:   nats.NewInbox(),
		body:    []byte(`{"batch":1,"expires":` + strconv.FormatInt(int64(pullExpires), 10) + `}`),
		failed:  make(chan struct{}),
		stop:    make(chan struct{}),
		free:    h.slots,
		idle:    make(chan struct{}),
	}
	sub, err := h.nc.Subscribe(p.inbox, p.onMsg)
	if err != nil {
		return nil, err
	}
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		_ = sub.Unsubscribe()
		return nil, err
	}
	p.sub = sub
	p.request()
	go p.watch()
	return p, nil
}

// requestLocked asks for a task for each free slot, if connected. It
// returns the error of a request that could not be sent, for the caller
// to log once it has unlocked mu (watch takes that request for lost).
func (p *puller) requestLocked() error {
	if p.draining || !p.h.nc.IsConnected() {
		return nil
	}
	var failed error
	now := time.Now()
	for ; p.free > 0; p.free-- {
		p.out = append(p.out, now)
		if err := p.h.nc.PublishRequest(p.subject, p.inbox, p.body); err != nil {
			failed = err
		}
	}
	return failed
}

// request is requestLocked for a caller that does not hold mu.
func (p *puller) request() {
	p.mu.Lock()
	err := p.requestLocked()
	p.mu.Unlock()
	p.logRequest(err)
}

func (p *puller) logRequest(err error) {
	if err != nil {
		p.h.logf(slog.LevelWarn, "requesting tasks", "err", err)
	}
}

// endOneLocked ends the oldest request out, if any; it reports whether
// there was one.
func (p *puller) endOneLocked() bool {
	if len(p.out) == 0 {
		return false
	}
	p.out = p.out[1:]
	return true
}

// watch, every half pullExpires: takes the requests out for pullLost of
// connected time for lost and asks again; asks for free slots once the
// connection is back; and ends the host if the connection closed for good.
func (p *puller) watch() {
	t := time.NewTicker(pullExpires / 2)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
		now := time.Now()
		p.mu.Lock()
		if p.h.nc.IsClosed() {
			if p.err == nil {
				p.err = nats.ErrConnectionClosed
				p.draining = true
				close(p.failed)
			}
			// Nothing more can come: what is out is lost.
			p.free += len(p.out)
			p.out = nil
			p.checkIdleLocked()
			p.mu.Unlock()
			continue
		}
		if !p.h.nc.IsConnected() {
			// Time while the connection is down does not count.
			for i := range p.out {
				p.out[i] = now
			}
			p.mu.Unlock()
			continue
		}
		lost := 0
		for len(p.out) > 0 && now.Sub(p.out[0]) > pullLost {
			p.out = p.out[1:]
			p.free++
			lost++
		}
		p.checkIdleLocked()
		err := p.requestLocked()
		p.mu.Unlock()
		if lost > 0 {
			p.h.logf(slog.LevelWarn, "taking pull requests for lost", "requests", lost)
		}
		p.logRequest(err)
	}
}

// onMsg takes what the broker sends: a task, or a request's end (a
// status message).
func (p *puller) onMsg(m *nats.Msg) {
	status := ""
	if len(m.Data) == 0 && m.Header != nil {
		status = m.Header.Get("Status")
	}
	if status == "100" { // an idle heartbeat: the request goes on
		return
	}
	p.mu.Lock()
	if !p.endOneLocked() {
		// A request taken for lost ended after all: a task it brings
		// runs in a slot that is not free; its status frees none.
		p.free--
	}
	if status != "" {
		p.free++
		p.checkIdleLocked()
		if status == "408" || status == "404" {
			p.streak = 0
			err := p.requestLocked()
			p.mu.Unlock()
			p.logRequest(err)
			return
		}
		p.streak++
		streak := p.streak
		p.mu.Unlock()
		// Cut short (too many waiting requests, a new leader, no such
		// consumer): ask again a little later rather than at once.
		level := slog.LevelDebug
		if streak >= 10 {
			level = slog.LevelWarn
		}
		p.h.logf(level, "pull request refused", "status", status, "description", m.Header.Get("Description"), "in_a_row", streak)
		time.AfterFunc(100*time.Millisecond, p.request)
		return
	}
	if p.closed {
		// Drain is past waiting (a request taken for lost brought it):
		// give it back to its client, to send to another host, rather
		// than run it.
		p.free++
		p.mu.Unlock()
		p.h.giveBack(m)
		return
	}
	p.running++
	p.mu.Unlock()
	go p.run(m)
}

// run runs a task and frees its slot.
func (p *puller) run(m *nats.Msg) {
	err := p.h.run(p.base, m)
	p.mu.Lock()
	p.running--
	p.free++
	if err != nil && p.err == nil {
		p.err = err
		p.draining = true
		close(p.failed)
	}
	rerr := p.requestLocked()
	p.checkIdleLocked()
	p.mu.Unlock()
	p.logRequest(rerr)
}

// checkIdleLocked closes idle once the puller drains with nothing asked
// for or running, and in the same step closes the puller to tasks: one
// that comes later is given back, never run after drain has stopped
// waiting for the running ones.
func (p *puller) checkIdleLocked() {
	if p.draining && !p.closed && p.running == 0 && len(p.out) == 0 {
		p.closed = true
		close(p.idle)
	}
}

// drain stops asking for tasks, waits until the requests out have ended
// (a task one brings meanwhile is run) and the running tasks have, then
// drains the subscription (a task still in it is given back), and
// returns what stopped the host early, if anything.
func (p *puller) drain() error {
	p.mu.Lock()
	p.draining = true
	p.checkIdleLocked()
	p.mu.Unlock()
	<-p.idle
	close(p.stop)
	closed := p.sub.StatusChanged(nats.SubscriptionClosed)
	if p.sub.Drain() == nil {
		select {
		case <-closed:
		case <-time.After(pullExpires):
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}
