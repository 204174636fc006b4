//go:build unix

package cluster

import (
	"context"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/procpool/procpool/internal/wire"
)

// A host whose pool is closed under a task gives the task back (a
// released answer): its client sends it again, as a send of its own that
// its stops reach. A copy stored by the host instead escaped them: a host
// that started after a stop ran a task its caller had cancelled.

// stored waits until the server has stored the slot's current send, and
// returns its number.
func stored(t *testing.T, s *slot) uint64 {
	t.Helper()
	for {
		s.mu.Lock()
		seq, send := s.seq, s.send
		s.mu.Unlock()
		if seq != 0 {
			return send
		}
		runtime.Gosched()
	}
}

// pullOne takes one task from the hosts' consumer as a host does: a pull
// request whose reply comes to a subscription of its own, so that the
// message can be acknowledged.
func pullOne(t *testing.T, c *client) *nats.Msg {
	t.Helper()
	inbox := nats.NewInbox()
	sub, err := c.nc.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	next := "$JS.API.CONSUMER.MSG.NEXT." + c.cfg.streamName() + "." + consumerName
	if err := c.nc.PublishRequest(next, inbox, []byte(`{"batch":1,"expires":30000000000}`)); err != nil {
		t.Fatal(err)
	}
	m, err := sub.NextMsg(time.Minute) // a hang guard: the task is stored already
	if err != nil {
		t.Fatal(err)
	}
	if m.Header.Get(hdrTask) == "" {
		t.Fatalf("pulled no task: %q %v", m.Data, m.Header)
	}
	return m
}

// streamMsgs is how many messages the stream holds: tasks a host would run.
func streamMsgs(t *testing.T, c *client) uint64 {
	t.Helper()
	info, err := c.stream.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// released is the answer a host whose pool is closed gives for m.
func released(m *nats.Msg) answer {
	id, _ := strconv.ParseUint(m.Header.Get(hdrTask), 10, 64)
	send, _ := strconv.ParseUint(m.Header.Get(hdrSend), 10, 64)
	return answer{id: id, send: send, kind: kindReleased, host: "closing"}
}

// giveBack does what a host whose pool is closed does with task m, which
// it pulled: the slot gets the released answer, then m is acknowledged.
func giveBack(t *testing.T, s *slot, m *nats.Msg) {
	t.Helper()
	s.answer(released(m))
	if err := m.AckSync(); err != nil {
		t.Fatal(err)
	}
}

// slotWithTask returns a slot of c, past its hello, to which the pool has
// written task 1.
func slotWithTask(t *testing.T, c *client) *slot {
	t.Helper()
	s := newSlot(c, 1)
	readFrame(t, s)
	if _, err := s.Tasks().Write(taskFrame(1)); err != nil {
		t.Fatal(err)
	}
	return s
}

// A released task is stored again by its client, as a new send, with the
// same body; a stop then removes it from the stream and ends the task.
func TestReleasedTaskIsSentAgainAndStoppable(t *testing.T) {
	c := testClient(t)
	s := slotWithTask(t, c)
	first := stored(t, s)
	m := pullOne(t, c)
	giveBack(t, s, m)
	again := stored(t, s)
	if again == first {
		t.Fatalf("the released task was not sent again: send %d", again)
	}
	m2 := pullOne(t, c)
	if got := m2.Header.Get(hdrSend); got != strconv.FormatUint(again, 10) || string(m2.Data) != "task" || m2.Header.Get(hdrTask) != "1" {
		t.Fatalf("sent again as task %s send %s %q, want task 1 send %d %q", m2.Header.Get(hdrTask), got, m2.Data, again, "task")
	}
	if err := m2.Nak(); err != nil { // not run: back in the stream for a host that starts later
		t.Fatal(err)
	}
	s.stopTask(1)
	c.Close() // waits for the stop's deletion
	if n := streamMsgs(t, c); n != 0 {
		t.Fatalf("the stopped task is still in the stream (%d messages) for any host to run", n)
	}
	if f := readFrame(t, s); f.Kind != wire.KindSkipped || f.ID != 1 {
		t.Fatalf("the slot answered %v for task %d, want skipped for task 1", f.Kind, f.ID)
	}
}

// A task released after its stop (its deletion came too late: the host
// had it) is not sent again: it ends as skipped.
func TestReleasedAfterAStopIsNotSentAgain(t *testing.T) {
	c := testClient(t)
	s := slotWithTask(t, c)
	first := stored(t, s)
	m := pullOne(t, c)
	s.mu.Lock()
	s.stopped = true // stopped; its stop and deletion still on their way
	s.mu.Unlock()
	giveBack(t, s, m)
	if f := readFrame(t, s); f.Kind != wire.KindSkipped || f.ID != 1 {
		t.Fatalf("the slot answered %v for task %d, want skipped for task 1", f.Kind, f.ID)
	}
	c.Close()
	if n, sends := streamMsgs(t, c), c.sends.Load(); n != 0 || sends != first {
		t.Fatalf("a task released after its stop: %d messages in the stream, %d sends, want 0 and %d", n, sends, first)
	}
}

// A task sent again keeps the deadline of its first store: a task that
// hosts keep giving back still ends at MaxAge, with ErrTimeout, and its
// send again, younger than MaxAge, leaves the stream with it.
func TestReleasedTaskKeepsItsDeadline(t *testing.T) {
	c := testClient(t)
	c.cfg.MaxAge = time.Hour // the test makes the deadline come
	s := slotWithTask(t, c)
	stored(t, s)
	s.mu.Lock()
	deadline := s.expireAt
	s.mu.Unlock()
	m := pullOne(t, c)
	giveBack(t, s, m)
	stored(t, s)
	s.mu.Lock()
	if !s.expireAt.Equal(deadline) {
		s.mu.Unlock()
		t.Fatalf("sending the task again moved its deadline from %v to %v", deadline, s.expireAt)
	}
	s.expireAt = time.Now() // the deadline has come
	s.mu.Unlock()
	s.expired()
	f := readFrame(t, s)
	if f.Kind != wire.KindError || f.ID != 1 || !strings.Contains(string(f.Body), `"code":"deadline"`) {
		t.Fatalf("the expired task: %v %d %s, want a deadline error for task 1", f.Kind, f.ID, f.Body)
	}
	c.Close() // waits for the expiry's deletion
	if n := streamMsgs(t, c); n != 0 {
		t.Fatalf("the expired task's send again is still in the stream (%d messages) for any host to run", n)
	}
}

// A task that expires while its send again is being stored is deleted
// once stored: no host answered that send, so it is stored for nobody.
func TestTaskExpiringWhileSentAgain(t *testing.T) {
	c := testClient(t)
	c.cfg.MaxAge = time.Hour
	st, rel := make(chan struct{}), make(chan struct{})
	s := slotWithTask(t, c)
	stored(t, s)
	m := pullOne(t, c)
	c.js = firstTryJS{JetStream: c.js, stored: st, release: rel, once: new(sync.Once)}
	giveBack(t, s, m)
	<-st // the send again is stored; its ack is on its way
	s.mu.Lock()
	s.expireAt = time.Now()
	s.mu.Unlock()
	s.expired()
	if f := readFrame(t, s); f.Kind != wire.KindError {
		t.Fatalf("the expired task: %v, want a deadline error", f.Kind)
	}
	close(rel)
	c.Close() // waits for the publish, then the deletion
	if n := streamMsgs(t, c); n != 0 {
		t.Fatalf("the expired task's send again, stored after its expiry, is in the stream (%d messages) for any host to run", n)
	}
}

// firstTryJS stores the first publish made through it, signals stored,
// then holds its outcome until release: the acknowledgement (lost false)
// or an error (lost true: the server has the message, the client never
// hears so). Later publishes pass through.
type firstTryJS struct {
	jetstream.JetStream
	stored, release chan struct{}
	once            *sync.Once
	lost            bool
}

func (j firstTryJS) PublishMsg(ctx context.Context, m *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	first := false
	j.once.Do(func() { first = true })
	if !first {
		return j.JetStream.PublishMsg(ctx, m, opts...)
	}
	ack, err := j.JetStream.PublishMsg(context.Background(), m, opts...)
	close(j.stored)
	<-j.release
	if j.lost {
		return nil, context.DeadlineExceeded
	}
	return ack, err
}

// A task expires while its send again is being stored, and that try's
// acknowledgement is lost: the send, stored for nobody, is deleted all the
// same, though its slot lives on.
func TestExpiredTaskWhoseSendAgainLostItsAck(t *testing.T) {
	c := testClient(t)
	c.cfg.MaxAge = time.Hour
	s := slotWithTask(t, c)
	stored(t, s)
	m := pullOne(t, c)
	st, rel := make(chan struct{}), make(chan struct{})
	c.js = firstTryJS{JetStream: c.js, stored: st, release: rel, once: new(sync.Once), lost: true}
	giveBack(t, s, m)
	<-st // the send again is in the stream; its ack will be lost
	s.mu.Lock()
	s.expireAt = time.Now()
	s.mu.Unlock()
	s.expired()
	if f := readFrame(t, s); f.Kind != wire.KindError || !strings.Contains(string(f.Body), `"code":"deadline"`) {
		t.Fatalf("the expired task: %v %s, want a deadline error", f.Kind, f.Body)
	}
	close(rel)
	c.Close() // waits for the publish and the deletions
	if n := streamMsgs(t, c); n != 0 {
		t.Fatalf("the expired task's send again, stored with its ack lost, is still in the stream (%d messages) for any host to run", n)
	}
}

// The first send's acknowledgement comes after a host gave it back and the
// send again was stored: the task's deadline is still its first store's,
// earlier than the one the send again armed.
func TestDeadlineOfAFirstSendAckedLate(t *testing.T) {
	c := testClient(t)
	c.cfg.MaxAge = time.Hour
	st, rel := make(chan struct{}), make(chan struct{})
	c.js = firstTryJS{JetStream: c.js, stored: st, release: rel, once: new(sync.Once)}
	s := slotWithTask(t, c)
	<-st
	m := pullOne(t, c)
	giveBack(t, s, m)
	stored(t, s) // the send again, acknowledged first
	s.mu.Lock()
	again := s.expireAt
	s.mu.Unlock()
	close(rel) // the first send's ack comes
	c.pubs.Wait()
	s.mu.Lock()
	id, at := s.expireID, s.expireAt
	s.mu.Unlock()
	if id != 1 || !at.Before(again) {
		t.Fatalf("task %d's deadline %v, the send again's %v: want task 1's first store's, earlier", id, at, again)
	}
}

// The first send's acknowledgement is lost for good, after a host gave it
// back and the send again was stored: the task's deadline is still the
// first store's, though that publish ends without an acknowledgement.
func TestDeadlineOfAFirstSendWhoseAckIsLost(t *testing.T) {
	c := testClient(t)
	c.cfg.MaxAge = time.Hour
	st, rel := make(chan struct{}), make(chan struct{})
	c.js = firstTryJS{JetStream: c.js, stored: st, release: rel, once: new(sync.Once), lost: true}
	s := slotWithTask(t, c)
	<-st
	m := pullOne(t, c)
	giveBack(t, s, m)
	stored(t, s) // the send again, acknowledged
	s.mu.Lock()
	again := s.expireAt
	s.mu.Unlock()
	close(rel) // the first send's try fails: its ack is lost
	c.pubs.Wait()
	s.mu.Lock()
	id, at := s.expireID, s.expireAt
	s.mu.Unlock()
	if id != 1 || !at.Before(again) {
		t.Fatalf("task %d's deadline %v, the send again's %v: want task 1's first store's, earlier", id, at, again)
	}
}
