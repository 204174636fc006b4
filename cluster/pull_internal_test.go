//go:build unix

package cluster

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/procpool/procpool/cluster/broker"
)

// The puller's counts under racing onMsg (statuses and tasks, as the
// broker sends them), runs and drain: free+out+running stays the slots,
// idle closes once, and drain returns with nothing running. The pull
// requests go to a subscriber that answers none: only the messages the
// test makes end them.
func TestPullerCountsUnderRacingDrain(t *testing.T) {
	b, err := broker.Start(context.Background(), broker.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	nc, err := nats.Connect(b.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Config{Prefix: "pullcounts"}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	absorb, err := nc.Subscribe("$JS.API.CONSUMER.MSG.NEXT.>", func(*nats.Msg) {})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = absorb.Unsubscribe() }()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	check := func(p *puller, slots int) {
		t.Helper()
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.free+len(p.out)+p.running != slots || p.running < 0 {
			t.Fatalf("free %d + out %d + running %d, want %d slots", p.free, len(p.out), p.running, slots)
		}
	}
	for iter := range 100 {
		slots := 1 + iter%4
		h := &host{nc: nc, js: js, cfg: cfg, name: "counts", slots: slots, running: map[taskKey]context.CancelFunc{}, stopped: map[taskKey]time.Time{}, gone: map[string]time.Time{}}
		h.pending = make(chan struct{}, 8*slots)
		p, err := newPuller(h, context.Background())
		if err != nil {
			t.Fatal(err)
		}
		drained := make(chan error, 1)
		drainAt := rand.IntN(20)
		for i := 0; ; i++ {
			if i == drainAt {
				go func() { drained <- p.drain() }()
			}
			if i > drainAt && isClosed(p.idle) {
				break
			}
			if i > 100_000 {
				t.Fatal("idle never closed")
			}
			var m *nats.Msg
			switch rand.IntN(4) {
			case 0:
				m = &nats.Msg{Subject: p.inbox, Header: nats.Header{"Status": []string{"408"}}}
			case 1:
				m = &nats.Msg{Subject: p.inbox, Header: nats.Header{"Status": []string{"409"}, "Description": []string{"Leadership Change"}}}
			default:
				m = &nats.Msg{Subject: cfg.taskSubject(), Data: []byte("x"), Header: nats.Header{}} // no task: run drops it at once
			}
			p.onMsg(m)
			check(p, slots)
		}
		if err := <-drained; err != nil {
			t.Fatalf("drain: %v", err)
		}
		check(p, slots)
		p.mu.Lock()
		running, closed := p.running, p.closed
		p.mu.Unlock()
		if running != 0 || !closed {
			t.Fatalf("after drain: running %d, closed %v", running, closed)
		}
	}
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
