//go:build unix

package cluster

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/procpool/procpool/internal/wire"
)

// A host whose pool is closed under a task gives the task back by storing
// a copy (host.release). A stop of that task must reach the copy, stored
// before or after the stop: else a host that starts later runs a task its
// caller has cancelled.

// storedTask has slot s publish task id and waits until the server has
// stored it.
func storedTask(t *testing.T, s *slot, id uint64) {
	t.Helper()
	if _, err := s.Tasks().Write(taskFrame(id)); err != nil {
		t.Fatal(err)
	}
	for {
		s.mu.Lock()
		stored := s.stored
		s.mu.Unlock()
		if stored {
			return
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

// wantSkipped checks that the slot answered its task skipped itself: the
// stop found the task in the stream and removed it.
func wantSkipped(t *testing.T, s *slot, id uint64) {
	t.Helper()
	if f := readFrame(t, s); f.Kind != wire.KindSkipped || f.ID != id {
		t.Fatalf("the slot answered %v for task %d, want skipped for task %d", f.Kind, f.ID, id)
	}
}

func TestStopReachesACopyStoredBeforeIt(t *testing.T) {
	c := testClient(t)
	s := newSlot(c, 1)
	readFrame(t, s)
	storedTask(t, s, 1)
	h := &host{nc: c.nc, js: c.js, cfg: c.cfg, name: "closing"}
	h.release(pullOne(t, c)) // the host's pool was closed: a copy is stored, the original acknowledged
	if n := streamMsgs(t, c); n != 1 {
		t.Fatalf("after the release the stream holds %d messages, want the copy", n)
	}
	s.stopTask(1)
	c.Close() // waits for the stop's purge
	if n := streamMsgs(t, c); n != 0 {
		t.Fatalf("the stopped task's copy is still in the stream (%d messages) for any host to run", n)
	}
	wantSkipped(t, s, 1)
}

func TestCopyIsNotStoredAfterAStop(t *testing.T) {
	c := testClient(t)
	s := newSlot(c, 1)
	readFrame(t, s)
	storedTask(t, s, 1)
	m := pullOne(t, c) // a host took it; its pool is being closed
	s.stopTask(1)
	c.Close()            // waits for the stop's purge, which removes the task the host holds
	wantSkipped(t, s, 1) // the client has ended it
	h := &host{nc: c.nc, js: c.js, cfg: c.cfg, name: "closing"}
	h.release(m)
	if n := streamMsgs(t, c); n != 0 {
		t.Fatalf("a host stored a stopped task again (%d messages): a host that starts later runs it", n)
	}
}

// A stream made by an earlier version (one subject for every task) would
// store none of this version's tasks: it is a config error saying what to
// do, not a publish that fails for ever.
func TestStreamOfAnEarlierVersion(t *testing.T) {
	c := testClient(t)
	cfg := c.cfg
	cfg.Prefix += "old"
	if _, err := c.js.CreateStream(context.Background(), jetstream.StreamConfig{Name: cfg.streamName(), Subjects: []string{cfg.Prefix + ".task"}, Retention: jetstream.WorkQueuePolicy}); err != nil {
		t.Fatal(err)
	}
	_, err := cfg.ensure(context.Background(), c.js)
	if !errors.Is(err, ErrConfig) {
		t.Fatalf("ensure over a stream of an earlier version: %v, want ErrConfig", err)
	}
	t.Log(err)
}
