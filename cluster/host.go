package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/procpool/procpool"
	"github.com/procpool/procpool/internal/hook"
	"github.com/procpool/procpool/internal/wire"
)

// A HostOption configures Serve.
type HostOption func(*host)

// WithName names the host in the answers it sends, and so in
// WorkerExitError.Host. Default: the machine's host name and this
// process's id, "name:pid".
func WithName(name string) HostOption { return func(h *host) { h.name = name } }

// WithSlots sets how many tasks the host runs at once, and so how many it
// pulls: one per free slot, never more (a task it takes starts at once).
// Default: the pool's number of workers.
func WithSlots(n int) HostOption { return func(h *host) { h.slots = n } }

// WithHostLogger logs what the host does (tasks taken, answers it could
// not send, a lost host reported) to l. Default: nothing.
func WithHostLogger(l *slog.Logger) HostOption { return func(h *host) { h.log = l } }

// Serve makes this program a host of cfg's pool: it pulls tasks from the
// stream, runs each on pool (the host's own local pool: its functions
// registered in Go, or served by WithCommand workers in another language,
// with the same codec as the clients), sends the answer to the client that
// sent the task, then acknowledges the task. It pulls only as many tasks
// as it has free slots, and tells the broker that a task is in progress
// every AckWait/2 while it runs.
//
// Serve blocks until ctx ends, then drains: it stops pulling, finishes the
// tasks it has (their contexts do not end with ctx; a client's stop still
// reaches them) and has their answers confirmed by their clients (waiting
// for a lost connection to come back), and returns nil. It returns early
// with an error, after the same drain, if the stream or consumer cannot
// be set up, if pool is closed or broken (the task that found it so is
// stored again for another host), if pool is terminated (its running
// tasks are reported lost to their clients, whose retries decide), or if
// nc is closed for good
// (nats.ErrConnectionClosed). The caller closes pool and nc after Serve
// returns.
func Serve(ctx context.Context, nc *nats.Conn, pool *procpool.Pool, cfg Config, opts ...HostOption) error {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return err
	}
	h := &host{nc: nc, pool: pool, cfg: cfg, running: make(map[taskKey]context.CancelFunc), stopped: make(map[taskKey]time.Time), gone: make(map[string]time.Time)}
	for _, o := range opts {
		o(h)
	}
	if h.name == "" {
		name, _ := os.Hostname()
		h.name = name + ":" + strconv.Itoa(os.Getpid())
	}
	if h.slots == 0 {
		// The pool's size, not its live workers: those retired for
		// idleness (WithIdleTimeout) or being replaced come back for work.
		h.slots = hook.Processes(pool)
	}
	if h.slots < 1 {
		return fmt.Errorf("%w: %d slots", ErrConfig, h.slots)
	}
	h.pending = make(chan struct{}, 8*h.slots)
	h.js, err = jetstream.New(nc)
	if err != nil {
		return err
	}
	if h.cfg, err = cfg.ensure(ctx, h.js); err != nil {
		return err
	}
	sub, err := nc.Subscribe(cfg.Prefix+".stop.*", h.onStop)
	if err != nil {
		return fmt.Errorf("cluster: subscribing to stops: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		return err
	}

	// Tasks run on a context that ctx's end does not cancel: a host that
	// drains finishes them.
	base, stopAll := context.WithCancel(context.WithoutCancel(ctx))
	defer stopAll()
	p, err := newPuller(h, base)
	if err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case <-p.failed:
	}
	err = p.drain()
	h.mu.Lock()
	h.answersDone = true // no answer starts from now on (addAnswer)
	h.mu.Unlock()
	h.answering.Wait() // the answers of the tasks it ran, and their acks
	return err
}

// addAnswer counts an answer about to be sent, for Serve to wait for; it
// reports false, counting nothing, once Serve waits (answersDone).
func (h *host) addAnswer() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.answersDone {
		return false
	}
	h.answering.Add(1)
	return true
}

// host is Serve's state.
type host struct {
	nc    *nats.Conn
	js    jetstream.JetStream
	pool  *procpool.Pool
	cfg   Config
	name  string
	slots int
	log   *slog.Logger

	// pending bounds the answers that wait for their clients (answer);
	// answering counts them, for the drain.
	pending   chan struct{}
	answering sync.WaitGroup

	// mu guards the fields below. running holds the tasks this host runs,
	// and how to stop each; stopped, stops for tasks it did not run then,
	// remembered for the stream's MaxAge so that it skips them should it
	// get them later. Both are keyed by send: a stop is for one send of a
	// task, never for the send that retries it. gone holds the clients
	// taken for gone (deliver), since when. answersDone is set once Serve
	// waits for answering: no answer is added after (addAnswer).
	mu          sync.Mutex
	running     map[taskKey]context.CancelFunc
	stopped     map[taskKey]time.Time
	gone        map[string]time.Time
	answersDone bool
}

// taskKey names one send of a task: its client, its id, its send number.
type taskKey struct {
	client   string
	id, send uint64
}

// take reads task m's headers as it comes: it drops a message that is no
// task, acknowledges unrun a task of a client taken for gone, and answers
// lost a task delivered before (its host was lost). It returns how to
// answer m, and whether to go on with it.
func (h *host) take(m *nats.Msg) (reply, bool) {
	hdr := m.Header
	client := hdr.Get(hdrClient)
	id, err := strconv.ParseUint(hdr.Get(hdrTask), 10, 64)
	if err != nil || !subjectToken(client) {
		h.logf(slog.LevelWarn, "dropping a message that is no task", "reply", m.Reply)
		_ = m.Term()
		return reply{}, false
	}
	send, _ := strconv.ParseUint(hdr.Get(hdrSend), 10, 64)
	if h.isGone(client) {
		h.logf(slog.LevelDebug, "dropping a task of a gone client", "client", client, "task", id)
		_ = m.Ack()
		return reply{}, false
	}
	a := reply{h: h, m: m, key: taskKey{client, id, send}, subject: h.cfg.resultSubject(client), id: hdr.Get(hdrTask), send: hdr.Get(hdrSend)}
	md, err := m.Metadata()
	if err == nil && md.NumDelivered > 1 {
		// Delivered before and not acknowledged within AckWait: the host
		// that took it is gone. Report it; the client's pool retries it
		// (it may, by its WithRetries) as a new send.
		h.logf(slog.LevelWarn, "task's host lost", "client", client, "task", id, "deliveries", md.NumDelivered)
		a.answer(kindLost, exitNotice{Reason: ReasonHostLost, Code: -1, Message: ErrHostLost.Error(), Attempts: int(md.NumDelivered - 1)}.encode(), "")
		return reply{}, false
	}
	return a, true
}

// run runs task m and answers it, then acknowledges it. It returns an
// error only if the pool cannot run tasks: closed or broken (m is then
// answered released, for its client to send it again), or terminated (m is
// answered lost).
func (h *host) run(base context.Context, m *nats.Msg) error {
	a, ok := h.take(m)
	if !ok {
		return nil
	}
	key := a.key
	if codec := m.Header.Get(hdrCodec); codec != hook.CodecName(h.pool) {
		body, _ := json.Marshal(wire.ErrorBody{Code: procpool.CodeDecode, Type: "cluster.codecMismatch",
			Message: fmt.Sprintf("host %s: the task is encoded with codec %q, this host's pool uses %q", h.name, codec, hook.CodecName(h.pool))})
		a.answer(kindError, body, "")
		return nil
	}
	h.mu.Lock()
	if _, ok := h.stopped[key]; ok {
		delete(h.stopped, key)
		h.mu.Unlock()
		a.answer(kindSkipped, nil, "")
		return nil
	}
	tctx, cancel := context.WithCancel(base)
	h.running[key] = cancel
	h.mu.Unlock()

	a.alive = make(chan struct{})
	go h.keepAlive(m, a.alive)
	kind, body, err := hook.Run(tctx, h.pool, m.Data)
	h.mu.Lock()
	delete(h.running, key)
	h.mu.Unlock()
	cancel()

	h.logf(slog.LevelDebug, "task answered", "client", key.client, "task", key.id, "err", err)
	var wee *procpool.WorkerExitError
	switch {
	case err == nil:
		a.answer(kindName(kind), body, "")
	case errors.Is(err, procpool.ErrClosed) || errors.Is(err, procpool.ErrPoolBroken):
		// Not run: given back to its client, which stores it again as a
		// new send for another host (unless it stopped it meanwhile).
		// Storing it again here instead would make a copy that the
		// client's stops cannot reach (its sequence unknown to them), and
		// a Nak would make the next delivery look like a lost host's.
		a.answer(kindReleased, nil, "")
		return fmt.Errorf("cluster: host %s: %w", h.name, err)
	case errors.Is(err, procpool.ErrTerminated):
		// The pool was terminated under the task (Terminate, or Shutdown
		// past its context): stopped while it ran, as when a host dies.
		// Reported as lost, so that the client's retries decide whether
		// it runs again; then the host drains.
		a.answer(kindLost, exitNotice{Reason: ReasonHostLost, Code: -1, Message: err.Error()}.encode(), "")
		return fmt.Errorf("cluster: host %s: %w", h.name, err)
	case errors.Is(err, context.Canceled):
		// Stopped by its client (the only cancel a task gets here): the
		// client ends it as cancelled, as a local pool does.
		a.answer(kindSkipped, nil, "")
	case errors.Is(err, procpool.ErrTimeout) || errors.Is(err, context.DeadlineExceeded):
		// The task's deadline passed here (by this host's clock, before
		// or while it ran): a timeout, as on a local pool.
		body, _ := json.Marshal(wire.ErrorBody{Code: procpool.CodeDeadline, Type: "procpool.ErrTimeout", Message: err.Error()})
		a.answer(kindError, body, "")
	case errors.As(err, &wee):
		n := exitNotice{Reason: wee.Reason, Code: wee.ExitCode, Signal: int(wee.Signal), Stderr: wee.Stderr, Attempts: wee.Attempts}
		if wee.Err != nil {
			n.Message = wee.Err.Error()
		}
		a.answer(kindExit, n.encode(), wee.Worker)
	default:
		body, _ := json.Marshal(wire.ErrorBody{Type: fmt.Sprintf("%T", err), Message: fmt.Sprintf("host %s: %v", h.name, err)})
		a.answer(kindError, body, "")
	}
	return nil
}

// keepAlive tells the broker that m is in progress every AckWait/2 until
// done is closed.
func (h *host) keepAlive(m *nats.Msg, done <-chan struct{}) {
	every := h.cfg.AckWait / 2
	if every <= 0 {
		every = DefaultAckWait / 2
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			_ = m.InProgress()
		}
	}
}

func kindName(k wire.Kind) string {
	switch k {
	case wire.KindResult:
		return kindResult
	case wire.KindError:
		return kindError
	default:
		return kindSkipped
	}
}

// reply answers one task.
type reply struct {
	h                 *host
	m                 *nats.Msg     // the task: acknowledged once its client has the answer
	alive             chan struct{} // closed to stop the task's keepAlive; nil if none runs yet
	key               taskKey       // the task's client, id and send
	subject, id, send string        // the answer's subject, and the task's id and send as its headers carry them
}

// giveBack answers released a task this host took but will not run (it
// is draining: a pull request taken for lost brought it), for its client
// to send it again.
func (h *host) giveBack(m *nats.Msg) {
	if a, ok := h.take(m); ok {
		a.answer(kindReleased, nil, "")
	}
}

// answer sends the task's answer, then acknowledges the task, on a
// goroutine of its own: the task's slot is free for the next task while
// the client confirms the answer, and the broker hears that the task is
// in progress until then. At most cap(h.pending) answers wait for their
// clients at once; beyond that, answer waits, and so the slot.
func (r reply) answer(kind string, body []byte, worker string) {
	m := r.message(kind, body, worker)
	alive := r.alive
	if alive == nil { // kept in progress while it waits for room, too
		alive = make(chan struct{})
		go r.h.keepAlive(r.m, alive)
	}
	r.h.pending <- struct{}{}
	if !r.h.addAnswer() {
		// Serve is past waiting for answers (a task that came while it
		// drained): given back to the broker, whose next delivery of it is
		// then reported lost.
		close(alive)
		<-r.h.pending
		_ = r.m.Nak()
		return
	}
	go func() {
		defer r.h.answering.Done()
		r.h.deliver(m, r.key.client)
		close(alive)
		_ = r.m.Ack()
		<-r.h.pending
	}()
}

// message is the answer as it travels.
func (r reply) message(kind string, body []byte, worker string) *nats.Msg {
	m := nats.NewMsg(r.subject)
	m.Header.Set(hdrTask, r.id)
	m.Header.Set(hdrSend, r.send)
	m.Header.Set(hdrKind, kind)
	m.Header.Set(hdrHost, r.h.name)
	if worker != "" {
		m.Header.Set(hdrWorker, worker)
	}
	m.Data = body
	if limit := int(r.h.nc.MaxPayload()) - 1024; len(body) > limit {
		// The server would refuse it, and the client never hear of its
		// task: send that instead.
		m.Header.Set(hdrKind, kindError)
		m.Data, _ = json.Marshal(wire.ErrorBody{Code: procpool.CodeEncode, Type: "cluster.answerTooLarge",
			Message: fmt.Sprintf("host %s: the %s answer is %d bytes, over the %d the server carries", r.h.name, kind, len(body), limit)})
	}
	return m
}

// answerTry is how long a host waits for a client to confirm one sending
// of an answer before it sends it again.
const answerTry = 2 * time.Second

// deliver sends answer m to client as a request, and returns once the
// client has confirmed it (an empty reply): the task is acknowledged only
// then, so an answer lost on the way (the broker restarting, the client
// not yet subscribed again after a reconnect) is sent again rather than
// lost with its task. Time while this host is not connected does not
// count; a client that has not confirmed an answer within AckWait of
// connected time is taken for gone: the answer is dropped, and so are the
// client's tasks that this host gets later, unrun, for MaxAge.
func (h *host) deliver(m *nats.Msg, client string) {
	waited := time.Duration(0)
	backoff := 10 * time.Millisecond
	for {
		if h.isGone(client) {
			return
		}
		if h.nc.IsClosed() { // for good: nothing more can be sent, nor acked
			h.logf(slog.LevelWarn, "dropping an answer: the connection is closed", "client", client)
			return
		}
		if !h.nc.IsConnected() {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		start := time.Now()
		_, err := h.nc.RequestMsg(m, min(answerTry, h.cfg.AckWait/4))
		if err == nil {
			return
		}
		if !errors.Is(err, nats.ErrTimeout) {
			// Failed at once (nobody subscribed, the connection going
			// down): try again a little later, not in a busy loop.
			time.Sleep(backoff)
			backoff = min(2*backoff, time.Second)
		}
		if h.nc.IsConnected() {
			waited += time.Since(start)
		}
		if waited >= h.cfg.AckWait {
			h.logf(slog.LevelWarn, "client gone: dropping its answers and tasks", "client", client, "err", err)
			h.markGone(client)
			return
		}
	}
}

// isGone reports whether client was taken for gone, less than
// remember() ago.
func (h *host) isGone(client string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	at, ok := h.gone[client]
	if ok && time.Since(at) > h.remember() {
		delete(h.gone, client)
		return false
	}
	return ok
}

func (h *host) markGone(client string) {
	now := time.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.gone[client] = now
	for c, at := range h.gone {
		if now.Sub(at) > h.remember() {
			delete(h.gone, c)
		}
	}
}

// onStop stops a task this host runs, or remembers the stop should the
// host get the task later.
func (h *host) onStop(m *nats.Msg) {
	client := m.Subject[strings.LastIndexByte(m.Subject, '.')+1:]
	idText, sendText, _ := strings.Cut(string(m.Data), " ")
	id, err1 := strconv.ParseUint(idText, 10, 64)
	send, err2 := strconv.ParseUint(sendText, 10, 64)
	if err1 != nil || err2 != nil {
		return
	}
	key := taskKey{client, id, send}
	now := time.Now()
	h.mu.Lock()
	delete(h.gone, client) // it sends stops: it is there
	cancel := h.running[key]
	if cancel == nil {
		h.stopped[key] = now
		if len(h.stopped) > maxStops {
			h.pruneStopsLocked(now)
		}
	}
	h.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// maxStops bounds the stops a host remembers for tasks it does not run:
// beyond it, those older than MaxAge go, then if need be any half. A
// stopped task that a host gets after its stop was forgotten runs, and its
// client drops the answer.
const maxStops = 1 << 16

func (h *host) pruneStopsLocked(now time.Time) {
	for k, at := range h.stopped {
		if now.Sub(at) > h.remember() {
			delete(h.stopped, k)
		}
	}
	for k := range h.stopped {
		if len(h.stopped) <= maxStops/2 {
			break
		}
		delete(h.stopped, k)
	}
}

// remember is how long the host remembers a stop or a gone client: the
// stream's MaxAge, after which no task of theirs is left; DefaultMaxAge if
// the stream has none.
func (h *host) remember() time.Duration {
	if h.cfg.MaxAge > 0 {
		return h.cfg.MaxAge
	}
	return DefaultMaxAge
}

func (h *host) logf(level slog.Level, msg string, args ...any) {
	if h.log != nil {
		h.log.Log(context.Background(), level, msg, append(args, "host", h.name)...)
	}
}

// subjectToken reports whether s can be one token of a NATS subject, as a
// client's id must be to name its answers' subject: not empty, and no
// wildcard, separator, space or control character.
func subjectToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == '.' || c == '*' || c == '>' || c == 0x7f {
			return false
		}
	}
	return true
}
