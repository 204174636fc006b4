package cluster

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/procpool/procpool"
	"github.com/procpool/procpool/internal/backend"
	"github.com/procpool/procpool/internal/mempipe"
	"github.com/procpool/procpool/internal/wire"
)

// A slot is one of a remote pool's workers as its dispatcher sees it: room
// for one task on the hosts. What the pool writes to it is published to the
// stream; the answer the hosts publish for its task comes back through it.
// The pool keeps one task per slot, so a slot's answers come in order
// whichever hosts run its tasks. A slot ends when its task's worker died
// or its host was lost (the pool then retries the task, as for a local
// worker, and starts a new slot), when the pool kills it (a stop not
// answered within the kill grace, Terminate), or when the pool closes its
// input and its task has been answered.
type slot struct {
	c       *client
	n       int
	results *mempipe.Pipe // frames to the pool: the hello, then answers
	exited  chan struct{}
	ctx     context.Context // ends when the slot does: stops a publish that is being retried
	cancel  context.CancelFunc

	// mu guards the fields below; client.mu nests inside it.
	mu       sync.Mutex
	cur      uint64 // the task on the hosts, 0 for none; registered in client.slots while set
	send     uint64 // the number of cur's send (Procpool-Send)
	body     []byte // cur's frame body, to send it again if a host gives it back (kindReleased)
	seq      uint64 // cur's sequence in the stream once stored, 0 before
	stopped  bool   // cur's send was stopped: its message is deleted from the stream (slot.deleteSend), once stored if it is not yet
	closing  bool   // the pool closed the slot's input: it ends once cur is answered
	ended    bool
	exit     backend.Exit
	worker   string // the host's worker that ran the last task answered, "pid N"
	host     string
	kill     *time.Timer
	expire   *time.Timer // ends cur with ErrTimeout at the stream's MaxAge from its first store
	expireID uint64      // the task expire is armed for: a send again (kindReleased) keeps the first send's deadline
	expireAt time.Time   // when; a run of expire before it is one Reset came too late to cancel
	// early holds the stops, since the last task was handed over, of
	// tasks that were not the slot's current one. The pool stops a task
	// once it is the slot's, which may be before its writer hands it over,
	// and calls Stop after releasing its lock, so a stop may also come
	// late, for a task already answered. The slot has one task at a time:
	// the next task handed over is the only one an early stop can be for,
	// so frame skips it if early names it and then empties early; a late
	// stop, naming an answered task, never names the next one.
	early    []uint64
	answered uint64 // the send that ended the last task answered (a result may come from an earlier send than the current one)
	partial  []byte // the start of a frame whose rest the pool has not written yet (the pool's writer goroutine only)
}

func newSlot(c *client, n int) *slot {
	s := &slot{c: c, n: n, results: mempipe.New(), exited: make(chan struct{})}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	hello, _ := json.Marshal(wire.Hello{Protocol: wire.Version, Codec: c.codec, Control: true})
	_, _ = s.results.Write(wire.AppendFrame(nil, wire.KindHello, 0, hello))
	return s
}

func (s *slot) ID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.worker != "" {
		return s.worker
	}
	return "slot " + strconv.Itoa(s.n)
}

func (s *slot) Host() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.host
}

func (s *slot) Pid() int                             { return 0 }
func (s *slot) Tasks() io.WriteCloser                { return (*slotInput)(s) }
func (s *slot) Results() io.Reader                   { return s.results }
func (s *slot) Running() uint64                      { return 0 }
func (s *slot) Exited() <-chan struct{}              { return s.exited }
func (s *slot) Death() backend.Death                 { return backend.Death{Finished: -1} }
func (s *slot) Reap()                                { <-s.exited }
func (s *slot) Release()                             {}
func (s *slot) Features(wire.Hello) backend.Features { return backend.Features{Control: true} }

func (s *slot) Exit() backend.Exit {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.exit
}

// Stop asks the hosts to stop task id. It is not sure to be acted on (the
// host may be gone): the pool kills the slot if no answer comes within the
// kill grace.
func (s *slot) Stop(id uint64, why byte) bool {
	s.stopTask(id)
	return false
}

// stopTask asks the hosts to stop the slot's send of task id, if the slot
// has it.
func (s *slot) stopTask(id uint64) {
	s.mu.Lock()
	cur, send, seq := s.cur, s.send, s.seq
	mine := cur == id && cur != 0
	if mine {
		s.stopped = true
	} else if !slices.Contains(s.early, id) {
		s.early = append(s.early, id) // not handed over yet, or a late stop (see early)
	}
	s.mu.Unlock()
	if mine {
		s.stopSend(cur, send, seq)
	}
}

// Kill stops the slot's task on its host and ends the slot once the task
// is answered or the kill grace has passed, or at once with KillNow. An
// answer that comes meanwhile still reaches the pool.
func (s *slot) Kill() {
	s.mu.Lock()
	if s.ended || s.kill != nil {
		s.mu.Unlock()
		return
	}
	cur, send := s.cur, s.send
	if cur == 0 {
		s.endLocked(backend.Exit{Code: -1, ReportAt: -1})
		s.mu.Unlock()
		return
	}
	s.kill = time.AfterFunc(s.c.grace, s.killNow)
	s.stopped = true
	seq := s.seq
	s.mu.Unlock()
	s.stopSend(cur, send, seq)
}

func (s *slot) KillNow() {
	s.mu.Lock()
	cur, send, seq := s.cur, s.send, s.seq
	if cur != 0 && !s.ended {
		s.stopSend(cur, send, seq) // before the slot ends: Close, which may follow its end, would refuse it
	}
	s.endLocked(backend.Exit{Code: -1, ReportAt: -1})
	s.mu.Unlock()
}

func (s *slot) killNow() { s.KillNow() }

// stopSend asks the hosts to stop send send of task id, then deletes its
// message from the stream if it is stored (seq), in background (see
// client.background): a stop reaches only the hosts listening when it is
// sent, and one that starts later would otherwise pull the task and run it.
func (s *slot) stopSend(id, send, seq uint64) {
	s.c.background(func() {
		s.c.stop(id, send)
		s.deleteSend(id, send, seq)
	})
}

// deleteSend deletes stopped send send of task id, stored as message seq
// (0: not stored yet, nothing to do), from the stream. Once deleted, no
// host will answer it unless one runs it already (it has the stop): the
// slot answers it skipped itself, as a host that got it would have; a
// host's answer that comes as well is a duplicate, dropped. It blocks on
// the server: run it in background.
func (s *slot) deleteSend(id, send, seq uint64) {
	if seq != 0 && s.c.deleteMsg(seq) {
		s.answer(answer{id: id, send: send, kind: kindSkipped})
	}
}

// endLocked ends the slot as x says: its task is no longer waited for,
// its publishing stops, and the pool reads what is left of its answers,
// then the end.
func (s *slot) endLocked(x backend.Exit) {
	if s.ended {
		return
	}
	s.ended, s.exit = true, x
	s.untrackLocked()
	if s.kill != nil {
		s.kill.Stop()
	}
	if s.expire != nil {
		s.expire.Stop()
	}
	s.cancel()
	_ = s.results.Close()
	close(s.exited)
}

// untrackLocked forgets the slot's task: its answers are dropped from now on.
func (s *slot) untrackLocked() {
	if s.cur == 0 {
		return
	}
	s.c.mu.Lock()
	if s.c.slots[s.cur] == s {
		delete(s.c.slots, s.cur)
	}
	s.c.mu.Unlock()
	s.cur, s.seq, s.stopped, s.body = 0, 0, false, nil
}

// answer is a host's answer to a task, as client.onAnswer decoded it.
type answer struct {
	id, send     uint64
	kind         string
	body         []byte
	host, worker string
	exit         backend.Exit // kindExit, kindLost
}

// answer hands a host's answer for the slot's task to the pool. The first
// answer ends the task; any later one is dropped. An answer of an earlier
// send of the task (one the pool gave up on and sent again) ends it only
// if it is a result: its error, skip or death may be the stop that ended
// that send, and is no answer for this one.
func (s *slot) answer(a answer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.answerLocked(a)
}

func (s *slot) answerLocked(a answer) {
	if s.ended || a.id != s.cur {
		return
	}
	if a.send != s.send && a.kind != kindResult {
		return
	}
	var kind wire.Kind
	switch a.kind {
	case kindResult:
		kind = wire.KindResult
	case kindError:
		kind = wire.KindError
	case kindSkipped:
		kind = wire.KindSkipped
	case kindExit:
		s.worker, s.host = a.worker, a.host
		s.endLocked(a.exit)
		return
	case kindLost:
		// a.host only reported the loss; which host was lost is not known.
		s.worker, s.host = "", ""
		s.endLocked(a.exit)
		return
	case kindReleased:
		// Its host's pool could not run it (closed or broken), and it
		// did not run: sent again, as a new send that another host may
		// take and that the slot's stops reach; or, stopped meanwhile
		// (its message then acknowledged or deleted), ended as skipped.
		if !s.stopped {
			s.sendLocked(a.id, s.body)
			return
		}
		kind = wire.KindSkipped
	default:
		return
	}
	s.worker, s.host, s.answered = a.worker, a.host, a.send
	if !wire.Fits(uint64(wire.HeaderSize-4+len(a.body)), s.c.maxFrame) {
		// The host checks only what the server carries; the pool's reader
		// would take a frame over its own limit (WithMaxFrame) for a
		// protocol error. As a local worker does with such a result:
		// (the host's name cut short: the replacement must fit too).
		kind = wire.KindError
		a.body, _ = json.Marshal(wire.ErrorBody{Code: procpool.CodeEncode, Type: "cluster.answerTooLarge",
			Message: fmt.Sprintf("host %.64s: the %.16s answer is %d bytes, over this pool's frame limit of %d (WithMaxFrame, or the server's max payload)", a.host, a.kind, len(a.body), s.c.maxFrame)})
	}
	s.untrackLocked()
	if s.expire != nil {
		s.expire.Stop()
	}
	_, _ = s.results.Write(wire.AppendFrame(nil, kind, a.id, a.body))
	if s.closing || s.kill != nil {
		// Its input is closed, or it is being killed: its task, answered,
		// was all it waited for.
		s.endLocked(backend.Exit{ReportAt: -1})
	}
}

// slotInput is the slot's Tasks: it cuts what the pool writes into frames
// and publishes each task.
type slotInput slot

// Write takes frames from the pool's writer, which may split them. It
// blocks while a task is being published (until the server has it, or the
// slot ends).
func (in *slotInput) Write(b []byte) (int, error) {
	s := (*slot)(in)
	n := len(b)
	if len(s.partial) > 0 {
		b = append(s.partial, b...)
		s.partial = nil
	}
	for len(b) >= wire.HeaderSize {
		size := 4 + int(binary.LittleEndian.Uint32(b))
		if len(b) < size {
			break
		}
		if err := s.frame(wire.Kind(b[4]), binary.LittleEndian.Uint64(b[5:]), b[wire.HeaderSize:size]); err != nil {
			return 0, err
		}
		b = b[size:]
	}
	if len(b) > 0 {
		s.partial = append([]byte(nil), b...)
	}
	return n, nil
}

func (s *slot) frame(kind wire.Kind, id uint64, body []byte) error {
	switch kind {
	case wire.KindTask:
		s.mu.Lock()
		if s.ended {
			s.mu.Unlock()
			return io.ErrClosedPipe
		}
		early := slices.Contains(s.early, id)
		s.early = s.early[:0] // any other stop in it was a late one
		if early {
			// Stopped before it came: answered as skipped, never sent.
			_, _ = s.results.Write(wire.AppendFrame(nil, wire.KindSkipped, id, nil))
			if s.closing || s.kill != nil {
				s.endLocked(backend.Exit{ReportAt: -1})
			}
			s.mu.Unlock()
			return nil
		}
		s.cur = id
		s.c.mu.Lock()
		s.c.slots[id] = s
		s.c.mu.Unlock()
		s.sendLocked(id, append([]byte(nil), body...))
		s.mu.Unlock()
	case wire.KindCancel:
		s.stopTask(id)
	}
	return nil
}

// sendLocked publishes task id, the slot's current one, as a new send.
func (s *slot) sendLocked(id uint64, body []byte) {
	s.send, s.seq, s.body = s.c.sends.Add(1), 0, body
	send := s.send
	// Counted before the slot can end (under mu), so before the client's
	// Close, which waits for the publishes.
	s.c.pubs.Add(1)
	// Published on a goroutine of its own: the pool's writer may be a
	// caller's (TryApplyAsync never waits), and a full stream makes a
	// publish wait for room.
	go func() {
		defer s.c.pubs.Done()
		s.publish(id, send, body)
	}()
}

// publish stores send send of task id in the stream and keeps its
// sequence, for a stop to delete it (stopSend), deleting it at once if it
// was stopped meanwhile. The task's first store arms the slot's expiry
// (armExpiryLocked): the stream drops the task at MaxAge, so no host would
// answer it after that.
func (s *slot) publish(id, send uint64, body []byte) {
	state := func() sendState {
		s.mu.Lock()
		defer s.mu.Unlock()
		switch {
		case !s.ended && s.cur == id && s.send == send:
			return sendWanted
		case s.cur != id && s.answered == send:
			return sendAnswered
		}
		return sendForNobody
	}
	seq, first, err := s.c.publish(s.ctx, id, send, body, state)
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.ended && s.cur == id && !first.IsZero() {
		// The task's first store sets its deadline, whichever send's
		// publish returns first (a send again's may return before the
		// first send's, whose ack is late or lost).
		s.armExpiryLocked(id, first)
	}
	if err != nil {
		return // the slot ended, or the send was answered
	}
	if s.ended || s.cur != id || s.send != send {
		if s.answered != send {
			// Stored for nobody: the slot ended (KillNow) or the task was
			// answered by an earlier send's result while this one was
			// being stored, and a host would run it.
			s.c.background(func() {
				s.c.stop(id, send)
				s.c.deleteMsg(seq)
			})
		}
		return // else answered by this send: its host acknowledges it
	}
	s.seq = seq
	if s.stopped {
		s.c.background(func() { s.deleteSend(id, send, seq) }) // stored after its stop
	}
}

// armExpiryLocked arms the slot's expiry for task id at the stream's
// MaxAge from stored (a time before the server stored one of its sends,
// if it did: the start of the earliest try that may have stored it), or
// moves it there if it is armed for id at a later time: the task's
// deadline is its first store's at the latest, whichever send's publish
// returns first.
func (s *slot) armExpiryLocked(id uint64, stored time.Time) {
	maxAge := s.c.cfg.MaxAge
	at := stored.Add(maxAge)
	if maxAge <= 0 || s.expireID == id && !at.Before(s.expireAt) {
		return
	}
	s.expireID, s.expireAt = id, at
	if s.expire == nil {
		s.expire = time.AfterFunc(time.Until(at), s.expired)
	} else {
		s.expire.Reset(time.Until(at))
	}
}

// expired ends the slot's task, unanswered at the stream's MaxAge from
// its first store, with ErrTimeout, and stops it: on a host that may run
// it still, and in the stream, where a send again (kindReleased) is younger
// than MaxAge (deleted now, or once stored if its publish is under way).
func (s *slot) expired() {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, send, seq := s.cur, s.send, s.seq
	if s.ended || id == 0 || id != s.expireID || time.Now().Before(s.expireAt) {
		return
	}
	body, _ := json.Marshal(wire.ErrorBody{Code: procpool.CodeDeadline, Type: "cluster.expired",
		Message: fmt.Sprintf("cluster: no answer within the stream's MaxAge (%v) of the task's first store: the task is no longer in the stream", s.c.cfg.MaxAge)})
	s.stopped = true
	s.stopSend(id, send, seq) // before the answer can end the slot, and Close refuse it
	s.answerLocked(answer{id: id, send: send, kind: kindError, body: body})
	s.answered = 0 // no host answered this send: stored after this, it is stored for nobody (publish)
}

// Close ends the slot once its task is answered.
func (in *slotInput) Close() error {
	s := (*slot)(in)
	s.mu.Lock()
	s.closing = true
	if s.cur == 0 {
		s.endLocked(backend.Exit{ReportAt: -1})
	}
	s.mu.Unlock()
	return nil
}
