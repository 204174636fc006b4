package cluster

import (
	"context"
	"encoding/json"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// A puller asks the broker for tasks with pull requests sized to the
// host's free slots, so that the tasks it has been given (delivered, then
// started at once) and those it has asked for never exceed its slots.
//
// One request is open at a time. The broker delivers a request's tasks
// with their own subjects, not the request's, so a task cannot say which
// request it answers; with one request open it is that one's. The request
// ends when it has brought all it asked for, or with a status message to
// its reply subject (408 when it expired). One subscription takes every
// request's messages, where a fetch per request would subscribe and
// unsubscribe each time.
type puller struct {
	h       *host
	base    context.Context // the tasks' context (not the host's: a drain finishes them)
	subject string          // $JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>
	inbox   string
	sub     *nats.Subscription
	failed  chan struct{} // closed when a task found the pool closed or broken (err)

	// mu guards the fields below. Every slot is free, asked for (left)
	// or running: free+left+running == slots, except for a moment after
	// a request given up on (its end never came) brings a task all the
	// same: the task runs, and free goes below 0 until it ends.
	mu       sync.Mutex
	free     int
	left     int         // tasks the open request may still bring
	open     uint64      // the open request's number, 0 for none
	timer    *time.Timer // gives the open request up should its end never come (a broker restart loses it)
	next     uint64
	running  int
	draining bool
	err      error
	idle     chan struct{} // closed once draining with no request open and nothing running
}

// pullExpires is how long a pull request waits on the broker for tasks; a
// host that drains waits at most about this long for its request to end.
const pullExpires = 2 * time.Second

func newPuller(h *host, base context.Context) (*puller, error) {
	p := &puller{
		h: h, base: base,
		subject: "$JS.API.CONSUMER.MSG.NEXT." + h.cfg.streamName() + "." + consumerName,
		inbox:   nats.NewInbox(),
		failed:  make(chan struct{}),
		free:    h.slots,
		idle:    make(chan struct{}),
	}
	sub, err := h.nc.Subscribe(p.inbox+".*", p.onMsg)
	if err != nil {
		return nil, err
	}
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		_ = sub.Unsubscribe()
		return nil, err
	}
	p.sub = sub
	p.mu.Lock()
	p.requestLocked()
	p.mu.Unlock()
	return p, nil
}

// requestLocked asks for as many tasks as there are free slots, unless a
// request is open (it asks again when that one ends).
func (p *puller) requestLocked() {
	if p.draining || p.open != 0 || p.free <= 0 {
		return
	}
	p.next++
	id := p.next
	p.open, p.left, p.free = id, p.free, 0
	p.timer = time.AfterFunc(pullExpires+2*time.Second, func() {
		p.mu.Lock()
		if p.open == id {
			p.h.logf(slog.LevelWarn, "giving up a pull request the broker never ended")
			p.endLocked()
			p.requestLocked()
		}
		p.mu.Unlock()
	})
	body, _ := json.Marshal(struct {
		Batch   int           `json:"batch"`
		Expires time.Duration `json:"expires"`
	}{p.left, pullExpires})
	if err := p.h.nc.PublishRequest(p.subject, p.inbox+"."+strconv.FormatUint(id, 10), body); err != nil {
		p.h.logf(slog.LevelWarn, "requesting tasks", "err", err)
		// The timer gives the slots back.
	}
}

// endLocked ends the open request: the tasks it did not bring free their
// slots.
func (p *puller) endLocked() {
	p.timer.Stop()
	p.open = 0
	p.free += p.left
	p.left = 0
	p.checkIdleLocked()
}

// onMsg takes what the broker sends: a task, or a request's end (a status
// message to the request's reply subject: 408 when it expired, 409 when
// the broker cut it short).
func (p *puller) onMsg(m *nats.Msg) {
	status := ""
	if len(m.Data) == 0 && m.Header != nil {
		status = m.Header.Get("Status")
	}
	if status == "100" { // an idle heartbeat: the request goes on
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if status != "" {
		id, _ := strconv.ParseUint(m.Subject[strings.LastIndexByte(m.Subject, '.')+1:], 10, 64)
		if id != p.open {
			return // the end of a request given up on
		}
		p.endLocked()
		if status == "408" || status == "404" {
			p.requestLocked()
			return
		}
		// Cut short (too many waiting requests, a new leader): ask again a
		// little later rather than at once.
		p.h.logf(slog.LevelDebug, "pull request ended", "status", status, "description", m.Header.Get("Description"))
		time.AfterFunc(100*time.Millisecond, func() {
			p.mu.Lock()
			p.requestLocked()
			p.mu.Unlock()
		})
		return
	}
	if p.open != 0 {
		p.left--
		if p.left == 0 {
			p.timer.Stop()
			p.open = 0
		}
	} else {
		p.free-- // a request given up on brought it after all
	}
	p.running++
	go p.run(m)
}

// run runs a task and frees its slot.
func (p *puller) run(m *nats.Msg) {
	err := p.h.run(p.base, m)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.running--
	p.free++
	if err != nil && p.err == nil {
		p.err = err
		p.draining = true
		close(p.failed)
	}
	p.requestLocked()
	p.checkIdleLocked()
}

func (p *puller) checkIdleLocked() {
	if p.draining && p.running == 0 && p.open == 0 {
		select {
		case <-p.idle:
		default:
			close(p.idle)
		}
	}
}

// drain stops asking for tasks, waits until the open request has ended (a
// task it brings meanwhile is run) and the running tasks have, and returns
// what stopped the host early, if anything.
func (p *puller) drain() error {
	p.mu.Lock()
	p.draining = true
	p.checkIdleLocked()
	p.mu.Unlock()
	<-p.idle
	_ = p.sub.Unsubscribe()
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}
