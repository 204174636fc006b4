//go:build unix

package cluster

import (
	"context"
	"errors"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// stopsOf returns the stops the client has sent for send send so far.
func stopsOf(t *testing.T, c *client, sub *nats.Subscription, id, send uint64) int {
	t.Helper()
	if err := c.nc.Flush(); err != nil { // the stops published are delivered before its PONG
		t.Fatal(err)
	}
	want := strconv.FormatUint(id, 10) + " " + strconv.FormatUint(send, 10)
	n := 0
	for {
		m, err := sub.NextMsg(0)
		if err != nil {
			return n
		}
		if string(m.Data) == want {
			n++
		}
	}
}

// expired ends the slot (answer, the slot closing) before it hands its
// stop to background; the pool, seeing the slot end, may close the
// launcher first, and background then refuses the stop: a host still
// running the expired task is never stopped. The test takes Close's lock
// early to fix that (permitted) order: nothing orders expired's
// background before the slot's end.
func TestExpiredTaskIsStoppedBeforeTheSlotEnds(t *testing.T) {
	c := testClient(t)
	c.cfg.MaxAge = time.Minute
	stops, err := c.nc.SubscribeSync(c.cfg.stopSubject(c.id))
	if err != nil {
		t.Fatal(err)
	}
	s := newSlot(c, 1)
	readFrame(t, s)
	s.mu.Lock()
	s.cur, s.send, s.closing = 1, 7, true // the pool closed the slot's input; task 1 runs on a host
	s.expireID, s.expireAt = 1, time.Now()
	c.mu.Lock()
	c.slots[1] = s
	c.mu.Unlock()
	s.mu.Unlock()

	c.bgMu.Lock() // Close's section (after its pubs.Wait, none here) ...
	done := make(chan struct{})
	go func() { s.expired(); close(done) }() // the expiry timer fires
	// Either the slot ends first (the pool then closes the launcher: Close's
	// section comes before expired's background), or expired waits for
	// background with the slot alive (then Close cannot have begun).
	for {
		select {
		case <-s.Exited():
			c.closed = true
		default:
			if !waitingInBackground("cluster.(*slot).expired") {
				runtime.Gosched()
				continue
			}
			select { // it may have ended the slot before it came to wait
			case <-s.Exited():
				c.closed = true
			default:
			}
		}
		break
	}
	c.bgMu.Unlock()
	<-done // expired has returned: what it handed to background is counted in bg
	c.bg.Wait()
	if n := stopsOf(t, c, stops, 1, 7); n == 0 {
		t.Fatal("the expired task's stop was never sent: a host running it is not stopped")
	}
}

// fullUntilEndJS refuses every publish (a full stream, DiscardNew) while
// its slot lives; once the slot has ended there is room. A message stored
// is pulled at once by a "host" waiting on the consumer, whose stops so
// far are checked.
type fullUntilEndJS struct {
	jetstream.JetStream
	s       *slot
	refused chan struct{}
	once    sync.Once
	pulled  chan string
}

func (j *fullUntilEndJS) PublishMsg(ctx context.Context, m *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	if j.s.ctx.Err() == nil {
		j.once.Do(func() { close(j.refused) })
		return nil, errors.New("nats: maximum messages exceeded")
	}
	ack, err := j.JetStream.PublishMsg(ctx, m, opts...)
	if err != nil {
		return nil, err
	}
	cons, err := j.JetStream.Consumer(ctx, j.s.c.cfg.streamName(), consumerName)
	if err == nil {
		if b, err := cons.FetchNoWait(1); err == nil {
			for msg := range b.Messages() {
				j.pulled <- msg.Headers().Get(hdrTask) + " " + msg.Headers().Get(hdrSend)
			}
		}
	}
	return ack, nil
}

// A send whose publish was refused until its task was answered by an
// earlier send's result (the pool retried the task on this slot), and
// whose slot then ended (the pool closing), was never stored and never
// stopped. dropUnacked stores it now, to delete it: a host that pulls it
// in between runs the task again, with no stop to skip it.
func TestCutShortPublishStopsBeforeItStoresAgain(t *testing.T) {
	c := testClient(t)
	stops, err := c.nc.SubscribeSync(c.cfg.stopSubject(c.id))
	if err != nil {
		t.Fatal(err)
	}
	s := newSlot(c, 1)
	j := &fullUntilEndJS{JetStream: c.js, s: s, refused: make(chan struct{}), pulled: make(chan string, 4)}
	c.js = j
	readFrame(t, s)
	c.sends.Add(1) // send 1 of task 1 went to a slot that has ended; the pool retried it here
	if _, err := s.Tasks().Write(taskFrame(1)); err != nil {
		t.Fatal(err)
	}
	<-j.refused
	s.mu.Lock()
	send := s.send
	s.mu.Unlock()
	if err := s.Tasks().Close(); err != nil { // the pool closes
		t.Fatal(err)
	}
	s.answer(answer{id: 1, send: send - 1, kind: kindResult, body: []byte("result")}) // send 1's late result
	<-s.Exited()
	if f := readFrame(t, s); string(f.Body) != "result" {
		t.Fatalf("answer %v %q", f.Kind, f.Body)
	}
	c.Close()
	close(j.pulled)
	for p := range j.pulled {
		if p == "1 "+strconv.FormatUint(send, 10) && stopsOf(t, c, stops, 1, send) == 0 {
			t.Fatalf("task 1, answered and never stored while its pool ran, was stored as the pool closed and a host got it (send %d), with no stop: it runs again", send)
		}
	}
}

// waitingInBackground says whether a goroutine that has caller in its
// stack waits for bgMu in client.background (goroutines of other tests
// in this process may wait there for their own clients).
func waitingInBackground(caller string) bool {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "sync.(*Mutex).Lock") && strings.Contains(g, "cluster.(*client).background") && strings.Contains(g, caller) {
			return true
		}
	}
	return false
}
