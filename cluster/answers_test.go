//go:build unix

package cluster_test

import (
	"context"
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/procpool/procpool"
	"github.com/procpool/procpool/cluster"
)

// proxy is a TCP relay to the broker that the test can cut (close every
// connection and refuse new ones) and restore.
type proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	cut    bool
	conns  []net.Conn
	wg     sync.WaitGroup
}

func newProxy(t *testing.T, brokerURL string) *proxy {
	t.Helper()
	u, err := url.Parse(brokerURL)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: u.Host}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		_ = ln.Close()
		p.setCut(true)
		p.wg.Wait()
	})
	return p
}

func (p *proxy) url() string { return "nats://" + p.ln.Addr().String() }

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			_ = c.Close()
			continue
		}
		d, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			_ = c.Close()
			continue
		}
		p.conns = append(p.conns, c, d)
		p.wg.Add(2)
		p.mu.Unlock()
		go func() { defer p.wg.Done(); _, _ = io.Copy(d, c); _ = d.Close(); _ = c.Close() }()
		go func() { defer p.wg.Done(); _, _ = io.Copy(c, d); _ = d.Close(); _ = c.Close() }()
	}
}

func (p *proxy) setCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if cut {
		for _, c := range p.conns {
			_ = c.Close()
		}
		p.conns = nil
	}
}

// A host whose connection is closed for good (nats gave up reconnecting,
// or it was closed) drops the answer it cannot send: Serve returns once
// its ctx ends.
func TestServeReturnsWhenItsConnectionCloses(t *testing.T) {
	e := newEnv(t)
	p := e.client()
	pool, err := procpool.New(procpool.WithInProcess(), procpool.WithProcesses(1))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	hostNC, err := connect(e.b.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer hostNC.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- cluster.Serve(ctx, hostNC, pool, e.config(), cluster.WithSlots(1)) }()
	_, err = procpool.ApplyAsync(context.Background(), p, sleepy, sleepArg{X: 1, D: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the task to run on the in-process host", func() bool { return pool.Stats().Running == 1 })
	hostNC.Close() // the connection is gone for good
	waitFor(t, "the host's task to end", func() bool { return pool.Stats().Running == 0 })
	cancel()
	if !eventually(20*time.Second, func() bool { return len(served) > 0 }) {
		t.Fatal("Serve did not return after its ctx ended, its connection closed")
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
}

// While a host sends again an answer its client has not confirmed (the
// client is cut off from the broker when the task ends), the task stays in
// progress: the broker does not deliver it again, and once the client is
// back it gets the task's result, from its one run. The sleeps only place
// the cut; nothing asserts on time.
func TestUnconfirmedAnswerKeepsItsTaskInProgress(t *testing.T) {
	e := newEnv(t)
	px := newProxy(t, e.b.URL())
	cnc, err := nats.Connect(px.url(), nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond), nats.ReconnectJitter(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cnc.Close)
	cfg := e.config()
	cfg.AckWait = 4 * time.Second                         // the client creates the consumer: the hosts use its AckWait
	p, err := cluster.New(context.Background(), cnc, cfg) // retries 0
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Terminate() })
	e.startHost("a", 2) // one slot runs the task, the other can take its redelivery
	ctx := context.Background()
	f, err := procpool.ApplyAsync(ctx, p, sleepy, sleepArg{X: 1, D: 3500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the task to start", func() bool { return len(e.runs()["sleepy"][1]) == 1 })
	start := time.Now()
	time.Sleep(time.Second)
	px.setCut(true) // the client is away when the task ends (at +3.5s)
	// In progress at +2s only: redelivered at about +6s. The host gives
	// the client up only after 4s of retries (about +7.5s or later).
	time.Sleep(time.Until(start.Add(6200 * time.Millisecond)))
	px.setCut(false)
	v, err := f.Get(ctx)
	if err != nil || v != 1 {
		t.Fatalf("a task that ran once and succeeded, its client away for less than AckWait: %d, %v (ran on %v)", v, err, e.runs()["sleepy"][1])
	}
	if got := e.runs()["sleepy"][1]; len(got) != 1 {
		t.Fatalf("the task ran on %v, want once", got)
	}
}
