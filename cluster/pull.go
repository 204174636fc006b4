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
// then started at once) and those it has asked for never exceed its
// slots. All requests share one reply subject and one subscription, where
// a fetch per request would subscribe and unsubscribe each time.
//
// The broker delivers a task under its own subject, so a task does not
// say which request it fills; requests are counted, not named. Each
// request ends exactly once: with a task, or with a status message (408
// when it expired after pullExpires, 409 when the broker cut it short).
// Only a broker that loses its state (a restart) ends none: when nothing
// has come for pullExpires plus a margin while requests are out, they are
// taken for lost and asked again.
type puller struct {
	h       *host
	base    context.Context // the tasks' context (not the host's: a drain finishes them)
	subject string          // $JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>
	inbox   string
	body    []byte // every request's: one task, expiring after pullExpires
	sub     *nats.Subscription
	failed  chan struct{} // closed when a task found the pool closed or broken (err)
	stop    chan struct{} // closed by drain: ends watch

	// mu guards the fields below. Every slot is free, asked for, or
	// running: free+asked+running == slots, except that free goes below 0
	// for a while when requests taken for lost bring tasks after all.
	mu       sync.Mutex
	free     int
	asked    int
	running  int
	heard    time.Time // when the broker last sent a task or a status
	draining bool
	err      error
	idle     chan struct{} // closed once draining with nothing asked for or running
}

// pullExpires is how long a pull request waits on the broker for a task;
// a host that drains waits at most about this long for its requests.
const pullExpires = 2 * time.Second

// pullLost is how long requests may go unanswered before they are taken
// for lost.
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
		heard:   time.Now(),
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

// requestLocked asks for a task for each free slot. It returns the error
// of a request that could not be sent, for the caller to log once it has
// unlocked mu (watch takes that request for lost, and asks again).
func (p *puller) requestLocked() error {
	if p.draining {
		return nil
	}
	if p.asked == 0 {
		p.heard = time.Now() // the silence that counts starts now
	}
	var failed error
	for ; p.free > 0; p.free-- {
		p.asked++
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

// watch takes the requests out for lost when the broker has sent nothing
// for pullLost, and asks again.
func (p *puller) watch() {
	t := time.NewTicker(pullExpires / 2)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
		p.mu.Lock()
		lost := 0
		var err error
		if p.asked > 0 && time.Since(p.heard) > pullLost {
			lost = p.asked
			p.free += p.asked
			p.asked = 0
			p.checkIdleLocked()
			err = p.requestLocked()
		}
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
	p.heard = time.Now()
	if p.asked > 0 {
		p.asked--
	} else {
		// A request taken for lost ended after all: a task it brings
		// runs in a slot that is not free; its status frees none.
		p.free--
	}
	if status != "" {
		p.free++
		p.checkIdleLocked()
		if status == "408" || status == "404" {
			err := p.requestLocked()
			p.mu.Unlock()
			p.logRequest(err)
			return
		}
		p.mu.Unlock()
		// Cut short (too many waiting requests, a new leader): ask again
		// a little later rather than at once.
		p.h.logf(slog.LevelDebug, "pull request ended", "status", status, "description", m.Header.Get("Description"))
		time.AfterFunc(100*time.Millisecond, p.request)
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

func (p *puller) checkIdleLocked() {
	if p.draining && p.running == 0 && p.asked == 0 {
		select {
		case <-p.idle:
		default:
			close(p.idle)
		}
	}
}

// drain stops asking for tasks, waits until the requests out have ended
// (a task one brings meanwhile is run) and the running tasks have, and
// returns what stopped the host early, if anything.
func (p *puller) drain() error {
	p.mu.Lock()
	p.draining = true
	p.checkIdleLocked()
	p.mu.Unlock()
	<-p.idle
	close(p.stop)
	_ = p.sub.Unsubscribe()
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}
