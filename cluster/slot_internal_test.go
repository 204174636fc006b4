//go:build unix

package cluster

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/procpool/procpool/cluster/broker"
	"github.com/procpool/procpool/internal/wire"
)

// testClient is a client as New's launcher makes it, over a broker of its
// own, with no host.
func testClient(t *testing.T) *client {
	t.Helper()
	ctx := context.Background()
	b, err := broker.Start(ctx, broker.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(b.URL())
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Config{Prefix: "slot" + strconv.Itoa(int(time.Now().UnixNano()%1e6))}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if cfg, err = cfg.ensure(ctx, js); err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(ctx, cfg.streamName())
	if err != nil {
		t.Fatal(err)
	}
	c := &client{nc: nc, js: js, stream: stream, cfg: cfg, id: nuid.Next(), codec: "cbor", grace: time.Hour, maxFrame: 1 << 20, slots: make(map[uint64]*slot)}
	if c.sub, err = nc.Subscribe(cfg.resultSubject(c.id), c.onAnswer); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		nc.Close()
		b.Close()
	})
	return c
}

// readFrame reads one frame of s's results (there must be one).
func readFrame(t *testing.T, s *slot) wire.Frame {
	t.Helper()
	f, err := wire.NewReader(s.results, 64<<10, 0).Next()
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func taskFrame(id uint64) []byte { return wire.AppendFrame(nil, wire.KindTask, id, []byte("task")) }

// The pool decides to stop a task under its lock and calls Stop after
// releasing it, so a stop of task 1 decided just before task 1's answer
// was read can reach the slot after the pool has given it task 2 and
// stopped task 2 before its writer wrote it. Task 2 is still skipped, in
// either order of the two stops; the late stop names no later task.
func TestLateStopOfAnAnsweredTask(t *testing.T) {
	for _, lateFirst := range []bool{false, true} {
		c := testClient(t)
		s := newSlot(c, 1)
		if f := readFrame(t, s); f.Kind != wire.KindHello {
			t.Fatalf("first frame %v", f.Kind)
		}
		in := s.Tasks()
		if _, err := in.Write(taskFrame(1)); err != nil {
			t.Fatal(err)
		}
		s.mu.Lock()
		send := s.send
		s.mu.Unlock()
		s.answer(answer{id: 1, send: send, kind: kindResult, body: []byte("r")})
		if f := readFrame(t, s); f.Kind != wire.KindResult || f.ID != 1 {
			t.Fatalf("answer of task 1: %v %d", f.Kind, f.ID)
		}
		if lateFirst {
			s.Stop(1, wire.StopCancel)
			s.Stop(2, wire.StopCancel)
		} else {
			s.Stop(2, wire.StopCancel)
			s.Stop(1, wire.StopCancel)
		}
		if _, err := in.Write(taskFrame(2)); err != nil {
			t.Fatal(err)
		}
		if f := readFrame(t, s); f.Kind != wire.KindSkipped || f.ID != 2 {
			t.Fatalf("late stop first %v: task 2, stopped before it was handed over: %v %d, want skipped", lateFirst, f.Kind, f.ID)
		}
		// The late stop is forgotten with the hand-over: task 3 is sent.
		if _, err := in.Write(taskFrame(3)); err != nil {
			t.Fatal(err)
		}
		s.mu.Lock()
		cur := s.cur
		s.mu.Unlock()
		if cur != 3 {
			t.Fatalf("task 3 after the skip: the slot's task is %d, want 3", cur)
		}
		s.KillNow()
	}
}

// Every ending of a slot's task races every other: the pool sees at most
// one answer frame for the task, the slot ends, and the task is no longer
// tracked.
func TestSlotEndingsRace(t *testing.T) {
	c := testClient(t)
	c.grace = 0
	for i := range 300 {
		s := newSlot(c, i)
		readFrame(t, s)
		id := uint64(i + 1)
		if _, err := s.Tasks().Write(taskFrame(id)); err != nil {
			t.Fatal(err)
		}
		s.mu.Lock()
		send := s.send
		s.expireID, s.expireAt = id, time.Now().Add(-time.Second)
		s.mu.Unlock()
		var wg sync.WaitGroup
		ops := []func(){
			func() { s.answer(answer{id: id, send: send, kind: kindResult, body: []byte("r")}) },
			func() { s.answer(answer{id: id, send: send, kind: kindSkipped}) },
			func() { s.answer(answer{id: id, send: send, kind: kindReleased}) }, // a host gives it back: sent again
			func() { s.Stop(id, wire.StopCancel) },
			func() { s.Kill() },
			func() { _ = s.Tasks().Close() },
			func() { s.expired() },
		}
		if i%3 == 0 {
			ops = append(ops, s.KillNow)
		}
		for _, op := range ops {
			wg.Go(op)
		}
		wg.Wait()
		<-s.Exited()
		r := wire.NewReader(s.results, 64<<10, 0)
		n := 0
		for {
			f, err := r.Next()
			if err != nil {
				break
			}
			if f.ID != id {
				t.Fatalf("frame %v for task %d", f.Kind, f.ID)
			}
			n++
		}
		if n > 1 {
			t.Fatalf("iteration %d: %d answers for one task", i, n)
		}
		c.mu.Lock()
		left := len(c.slots)
		c.mu.Unlock()
		if left != 0 {
			t.Fatalf("iteration %d: %d tasks still tracked after the slot ended", i, left)
		}
	}
}

// ackLostJS stores the first publish, then withholds its acknowledgement
// until the caller's context ends: the server has the task, and the
// client never hears so (the ack still on its way when the slot ended).
type ackLostJS struct {
	jetstream.JetStream
	stored chan struct{}
	once   *sync.Once
}

func (j ackLostJS) PublishMsg(ctx context.Context, m *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	first := false
	j.once.Do(func() { first = true })
	if !first {
		return j.JetStream.PublishMsg(ctx, m, opts...)
	}
	if _, err := j.JetStream.PublishMsg(context.Background(), m, opts...); err != nil {
		return nil, err
	}
	close(j.stored)
	<-ctx.Done()
	return nil, ctx.Err()
}

// A task stored while its slot is killed (Terminate: Kill, then KillNow
// at the kill grace), its publish's acknowledgement not yet in, is deleted
// from the stream all the same, by the time the client's Close returns:
// no host that starts later runs it.
func TestKilledSlotDeletesATaskStoredUnacknowledged(t *testing.T) {
	c := testClient(t)
	stored := make(chan struct{})
	c.js = ackLostJS{JetStream: c.js, stored: stored, once: new(sync.Once)}
	s := newSlot(c, 1)
	readFrame(t, s)
	if _, err := s.Tasks().Write(taskFrame(1)); err != nil {
		t.Fatal(err)
	}
	<-stored
	s.Kill() // its sequence is not known yet: nothing to delete
	s.KillNow()
	<-s.Exited()
	c.Close()
	info, err := c.stream.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 0 {
		t.Fatalf("the killed slot's task is still in the stream (%d messages) for any host to run", info.State.Msgs)
	}
}
