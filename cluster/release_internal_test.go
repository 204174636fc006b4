//go:build unix

package cluster

import (
	"context"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

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

// A released task is stored again by its client, as a new send, with the
// same body; a stop then removes it from the stream and ends the task.
func TestReleasedTaskIsSentAgainAndStoppable(t *testing.T) {
	c := testClient(t)
	s := newSlot(c, 1)
	readFrame(t, s)
	if _, err := s.Tasks().Write(taskFrame(1)); err != nil {
		t.Fatal(err)
	}
	first := stored(t, s)
	m := pullOne(t, c)
	s.answer(released(m))
	if err := m.AckSync(); err != nil { // as the host does once the client has the answer
		t.Fatal(err)
	}
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
	s := newSlot(c, 1)
	readFrame(t, s)
	if _, err := s.Tasks().Write(taskFrame(1)); err != nil {
		t.Fatal(err)
	}
	first := stored(t, s)
	m := pullOne(t, c)
	s.mu.Lock()
	s.stopped = true // stopped; its stop and deletion still on their way
	s.mu.Unlock()
	s.answer(released(m))
	if err := m.AckSync(); err != nil {
		t.Fatal(err)
	}
	if f := readFrame(t, s); f.Kind != wire.KindSkipped || f.ID != 1 {
		t.Fatalf("the slot answered %v for task %d, want skipped for task 1", f.Kind, f.ID)
	}
	c.Close()
	if n, sends := streamMsgs(t, c), c.sends.Load(); n != 0 || sends != first {
		t.Fatalf("a task released after its stop: %d messages in the stream, %d sends, want 0 and %d", n, sends, first)
	}
}
