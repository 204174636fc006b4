package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/procpool/procpool"
	"github.com/procpool/procpool/internal/backend"
	"github.com/procpool/procpool/internal/hook"
)

// ReasonHostLost is the WorkerExitError.Reason of a task whose host
// stopped answering (it died, or lost the broker for longer than AckWait)
// while the task ran: the broker delivered the task again and the host
// that got it reported the loss instead of running it.
const ReasonHostLost = "lost with its host"

// ErrHostLost is the WorkerExitError.Err of a task whose host was lost.
var ErrHostLost = errors.New("cluster: the host running the task stopped answering")

// New returns a pool whose tasks run on the hosts that serve cfg's prefix
// (Serve) through the NATS server nc is connected to, with JetStream. It
// has the whole API of a local pool (Apply, ApplyAsync, Map, Imap,
// Future, callbacks, Stats) and its error types; a task's worker exit is a
// *procpool.WorkerExitError whose Worker and Host name the host's worker.
//
// opts are procpool's options, as they apply to a remote pool:
//   - WithProcesses(n): how many tasks the client has on the hosts at once
//     (default 64); more wait in the client's queue.
//   - WithQueueSize, WithTaskTimeout, WithRetries (each time the task's
//     worker dies or its host is lost), WithKillGrace (how long a stopped
//     task may take to answer), WithCodec, WithMaxFrame (lowered to what
//     the server carries: nc.MaxPayload less 1 KiB for headers), WithLogger.
//   - Options about worker processes on this machine (WithCommand,
//     WithInProcess, WithInitializer, WithMaxWorkerMemory, WithRlimit,
//     WithIdleTimeout, WithMaxTasksPerWorker) are an *OptionError: set them
//     on the hosts' pools.
//
// New creates the stream and consumer if they do not exist (Config.ensure)
// and subscribes to the client's answers; it blocks for those round trips
// to the server, and fails with a *procpool.StartError wrapping the
// server's error. The pool does not own nc: close nc after the pool.
func New(ctx context.Context, nc *nats.Conn, cfg Config, opts ...procpool.Option) (*procpool.Pool, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	launch := func(hc *hook.Config) (backend.Launcher, error) {
		cfg, err := cfg.ensure(ctx, js)
		if err != nil {
			return nil, err
		}
		stream, err := js.Stream(ctx, cfg.streamName())
		if err != nil {
			return nil, fmt.Errorf("cluster: stream %s: %w", cfg.streamName(), err)
		}
		hc.MaxFrame = min(hc.MaxFrame, int(nc.MaxPayload())-1024)
		c := &client{nc: nc, js: js, stream: stream, cfg: cfg, id: nuid.Next(), codec: hc.Codec.Name(), grace: hc.KillGrace, maxFrame: hc.MaxFrame, slots: make(map[uint64]*slot)}
		sub, err := nc.Subscribe(cfg.resultSubject(c.id), c.onAnswer)
		if err != nil {
			return nil, fmt.Errorf("cluster: subscribing to answers: %w", err)
		}
		if err := sub.SetPendingLimits(-1, -1); err != nil {
			_ = sub.Unsubscribe()
			return nil, err
		}
		fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := nc.FlushWithContext(fctx); err != nil {
			_ = sub.Unsubscribe()
			return nil, fmt.Errorf("cluster: subscribing to answers: %w", err)
		}
		c.sub = sub
		return c, nil
	}
	all := append([]procpool.Option{procpool.WithProcesses(64)}, opts...)
	all = append(all, hook.WithLauncher(launch).(procpool.Option))
	return procpool.New(all...)
}

// client is a pool's launcher: it starts slots, publishes their tasks and
// routes the hosts' answers to them.
type client struct {
	nc       *nats.Conn
	js       jetstream.JetStream
	stream   jetstream.Stream // the tasks' stream: stopped sends are deleted from it (slot.stopSend)
	cfg      Config
	id       string // unique per pool: the subject of its answers, the start of its message ids
	codec    string
	grace    time.Duration
	maxFrame int // the pool's frame limit, lowered to what the server carries: a larger answer is an error (slot.answer)
	sub      *nats.Subscription
	sends    atomic.Uint64 // numbers each publish of a task (Procpool-Send)
	nslot    atomic.Int64

	// bgMu guards closed and the adding to bg, which counts the stops and
	// deletions that run off their callers' goroutines (background):
	// Close waits for them, and none starts after it.
	bgMu   sync.Mutex
	closed bool
	bg     sync.WaitGroup
	pubs   sync.WaitGroup // the slots' publishes under way; Close waits for them first, since their end may delete what they stored

	// mu guards slots: the slot that waits for each task's answer, by the
	// task's id. A slot adds its task when it publishes it and removes it
	// when the task's answer or its own end comes, under mu.
	mu    sync.Mutex
	slots map[uint64]*slot
}

func (c *client) Start(spec backend.Spec) (backend.Worker, error) {
	return newSlot(c, int(c.nslot.Add(1))), nil
}

// Close waits for the slots' publishes (they return at once, their slots
// having ended), then for the stops and deletions under way (background),
// then stops the answers' subscription; every slot has ended by now.
func (c *client) Close() {
	c.pubs.Wait()
	c.bgMu.Lock()
	c.closed = true
	c.bgMu.Unlock()
	c.bg.Wait()
	_ = c.sub.Unsubscribe()
}

// background runs f on a goroutine of its own, which Close waits for;
// after Close it does nothing. Stops and deletions go this way: their
// callers may hold the pool's lock (Kill, KillNow), and a publish may
// block on a full connection, an API request for its timeout.
func (c *client) background(f func()) {
	c.bgMu.Lock()
	defer c.bgMu.Unlock()
	if c.closed {
		return
	}
	c.bg.Add(1)
	go func() {
		defer c.bg.Done()
		f()
	}()
}

// onAnswer routes an answer to the slot that waits for its task; an answer
// nobody waits for (a duplicate, the answer of an earlier send after a
// retry was answered, a task already stopped) is dropped. It runs on the
// subscription's goroutine, one message at a time.
func (c *client) onAnswer(m *nats.Msg) {
	if m.Reply != "" {
		_ = m.Respond(nil) // the host acknowledges the task once it has this
	}
	id, err := strconv.ParseUint(m.Header.Get(hdrTask), 10, 64)
	if err != nil {
		return
	}
	send, _ := strconv.ParseUint(m.Header.Get(hdrSend), 10, 64)
	c.mu.Lock()
	s := c.slots[id]
	c.mu.Unlock()
	if s == nil {
		return
	}
	a := answer{id: id, send: send, kind: m.Header.Get(hdrKind), body: m.Data, host: m.Header.Get(hdrHost), worker: m.Header.Get(hdrWorker)}
	if a.kind == kindExit || a.kind == kindLost {
		var n exitNotice
		if json.Unmarshal(m.Data, &n) != nil {
			n = exitNotice{Reason: procpool.ReasonProtocol, Message: "undecodable exit notice from host " + a.host}
		}
		a.exit = exitOf(a.kind, n)
	}
	s.answer(a)
}

// exitOf is the backend.Exit of an exit or lost answer.
func exitOf(kind string, n exitNotice) backend.Exit {
	x := backend.Exit{Status: true, Code: n.Code, Signal: syscall.Signal(n.Signal), Stderr: n.Stderr, ReportAt: -1, Reason: n.Reason}
	if n.Message != "" {
		x.Err = errors.New(n.Message)
	}
	if kind == kindLost {
		x = backend.Exit{Code: -1, ReportAt: -1, Reason: ReasonHostLost, Err: ErrHostLost}
	}
	return x
}

// publish sends a task until the server has it or ctx ends: a refused or
// unanswered publish is sent again under the same message id, which the
// stream's duplicate window makes one message. A full stream (DiscardNew)
// is refused until there is room: the task waits here, and the pool's
// queue behind it.
//
// state says whether the send is still waited for: a publish whose ack
// was lost but whose task was answered meanwhile is not sent again, and if
// the answer was not this send's own (an earlier send's result, the
// client's MaxAge expiry), this try may have been stored for nobody: it is
// stopped and deleted (dropUnacked).
//
// It returns the message's sequence in the stream (the first store's, for
// a send stored twice under its id), and, with or without an error, when
// the earliest try that may have stored the send began (zero if none
// may have): the server stored it after that, if at all.
func (c *client) publish(ctx context.Context, id, send uint64, body []byte, state func() sendState) (seq uint64, first time.Time, err error) {
	m := nats.NewMsg(c.cfg.taskSubject())
	m.Data = body
	m.Header.Set(hdrClient, c.id)
	m.Header.Set(hdrTask, strconv.FormatUint(id, 10))
	m.Header.Set(hdrSend, strconv.FormatUint(send, 10))
	m.Header.Set(hdrCodec, c.codec)
	msgID := c.id + "." + strconv.FormatUint(send, 10)
	backoff := time.Millisecond
	for {
		if first.IsZero() {
			first = time.Now()
		}
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ack, err := c.js.PublishMsg(pctx, m, jetstream.WithMsgID(msgID))
		cancel()
		if err == nil {
			return ack.Sequence, first, nil
		}
		var refused *jetstream.APIError
		if errors.As(err, &refused) {
			// The stream refused it (full): nothing is stored, for a try
			// stored before would have been answered as a duplicate.
			first = time.Time{}
		}
		if st := state(); st != sendWanted {
			if st == sendForNobody || ctx.Err() != nil {
				c.dropUnacked(id, send, m, msgID) // this try may have been stored
			}
			return 0, first, errNotWanted
		}
		select {
		case <-ctx.Done():
			c.dropUnacked(id, send, m, msgID)
			return 0, first, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

// sendState is what a publish's state says of its send.
type sendState int

const (
	sendWanted    sendState = iota // its task waits for it
	sendAnswered                   // its host answered it, so it was stored, and is acknowledged
	sendForNobody                  // its task has ended otherwise, or its slot has
)

// errNotWanted ends the publish of a send that is no longer waited for.
var errNotWanted = errors.New("cluster: the send is no longer waited for")

// stop asks the hosts to stop send send of task id; a host that runs it
// cancels it, a host that heard the stop and gets the task later (before
// its message is deleted) skips it. A later send of the task (a retry) is
// not stopped. It may block on the connection: run it in background.
func (c *client) stop(id, send uint64) {
	b := strconv.AppendUint(nil, id, 10)
	b = append(b, ' ')
	b = strconv.AppendUint(b, send, 10)
	_ = c.nc.Publish(c.cfg.stopSubject(c.id), b)
}

// deleteMsg deletes message seq from the stream, waiting for the server;
// it reports whether the message was there to delete (not yet acked by a
// host, nor dropped at MaxAge). Run it in background.
func (c *client) deleteMsg(seq uint64) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return c.stream.DeleteMsg(ctx, seq) == nil
}

// dropUnacked deletes a send whose publish its slot's end cut short
// (KillNow, so a stop), in background: the server may have stored it
// without the acknowledgement arriving, and its sequence is not known.
// Publishing it again under its message id stores nothing new within the
// duplicate window and answers with the stored message's sequence, which
// is then deleted; if the first try was not stored, this one is, and is
// deleted at once (the hosts listening have the stop and would skip it).
func (c *client) dropUnacked(id, send uint64, m *nats.Msg, msgID string) {
	c.background(func() {
		c.stop(id, send) // first: a host that gets a copy stored now skips it
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		ack, err := c.js.PublishMsg(ctx, m, jetstream.WithMsgID(msgID))
		cancel()
		if err == nil {
			c.deleteMsg(ack.Sequence) // with time of its own, however long the publish took
		}
	})
}
