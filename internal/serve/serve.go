// Package serve is the worker side of the procpool protocol: the loop that
// reads task frames, runs each task's function one at a time, in order,
// with a context that carries its deadline and that the parent's stops
// cancel, and writes the answers (batched in the journal when there is
// one). The Go worker process (procpool.Main) and the in-process worker
// (WithInProcess) both run it; what differs between them — where the
// frames come from and go to, how the worker dies — is given to New.
//
// It knows nothing of the program's functions but what Functions tells:
// a Handler by name, their names and fingerprints for the hello, and how
// an error they return is reported.
package serve

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/procpool/procpool/codec"
	"github.com/procpool/procpool/internal/wire"
)

// flushDelay bounds how long a finished task's result may wait in the
// journal while the worker runs the next task. Results are written in
// batches when tasks arrive back to back; the delay keeps a long next task
// from holding back the answer to a short one.
const flushDelay = 50 * time.Microsecond

// Handler runs one function that a worker serves, on encoded input.
type Handler interface {
	// Name is the function's registered name.
	Name() string
	// Call decodes one argument, runs the function with ctx and appends
	// the encoded result to dst.
	Call(ctx context.Context, c codec.Codec, payload, dst []byte) ([]byte, error)
	// CallChunk decodes a list of arguments, runs the function on each in
	// order from index from on and appends the encoded list of their
	// results to dst; failed items get a zero result and an entry in the
	// returned failures, indexed from from. With rec, each item's outcome
	// is recorded as it ends (see wire.Journal). It returns
	// ErrItemsStopped when a stop ends the chunk between items (see
	// TaskContext).
	CallChunk(ctx context.Context, c codec.Codec, payload, dst []byte, from int, rec *wire.Journal) ([]byte, []ItemFailure, error)
}

// ItemFailure is the failure of one item of a chunk.
type ItemFailure struct {
	Index int
	Err   error
}

// Functions is what the serve loop needs of the program's functions.
type Functions interface {
	// Lookup returns the function registered under name, or nil. It is
	// called for each task (see Server's cache) and must not allocate.
	Lookup(name []byte) Handler
	// Names returns the registered names, for the hello.
	Names() []string
	// Fingerprints returns each function's fingerprint, for the hello.
	Fingerprints() map[string]string
	// Report turns an error that a Handler returned into the report an
	// Error frame carries.
	Report(err error) wire.ErrorBody
}

// The codes the serve loop puts in a report (wire.ErrorBody.Code); the
// procpool package exports them under the same values.
const (
	CodeUnknownFunc = "unknown_function" // the worker has no function of that name
	CodeEncode      = "encode"           // the result's frame is over the frame limit
	CodeInit        = "init"             // the initializer failed
	CodeDeadline    = "deadline"         // the function failed once its context's deadline had passed
)

// ErrItemsStopped is what CallChunk returns when a stop for the worker's
// memory or its SIGTERM ends a chunk between items (TaskContext says
// which): the worker then dies at once (Config.Die), its journal saying
// that no item runs, so that none is blamed and the rest run elsewhere.
var ErrItemsStopped = errors.New("procpool: chunk stopped between items")

// Config is what a Server is given besides its streams.
type Config struct {
	Functions Functions
	Codec     codec.Codec
	MaxFrame  int // the frame limit (wire.Fits)
	// HelloLimit bounds the hello's length field when it is over MaxFrame;
	// 0 means wire.HelloLimit.
	HelloLimit int
	// Available returns how many bytes wait in the task stream beyond what
	// the reader has buffered (a Cancel frame may be among them).
	Available func() int
	// Journal, if not nil, batches the answers and records the running
	// task and a chunk's items (a worker process's PROCPOOL_JOURNAL).
	Journal *wire.Journal
	// FreePages gives back the pages of a region of the journal; nil:
	// nothing is given back.
	FreePages func([]byte)
	// Shared is the shared-memory segment that FlagShared tasks refer to,
	// read-only; nil if none.
	Shared []byte
	// Control is true when the parent's Stop frames reach Stop (a control
	// pipe, or in-process calls): the hello says so.
	Control bool
	// Grace is how long a stopped task may take to return before the
	// worker dies.
	Grace time.Duration
	// Die ends the worker at once, because the parent stopped the task
	// that runs now: a worker process sweeps what its tasks started and
	// exits; an in-process worker cuts its pipes. It is called with the
	// server's run lock held and, in a process, does not return.
	Die func()
}

// Server is the worker side of the protocol: it reads task frames, runs
// them one at a time in order, and writes result frames. Serve runs the
// loop; Stop, Kill and Terminate may be called from other goroutines.
type Server struct {
	fns       Functions
	lastName  []byte  // the name of the last function looked up and found (a one-entry cache)
	lastFound Handler // that function
	r         *wire.Reader
	avail     func() int // bytes waiting in the transport beyond r's buffer
	codec     codec.Codec
	ctx       context.Context
	ahead     []pendingTask // tasks read ahead of the one running
	cur       uint64        // the id of the task about to run, 0 if none
	skip      bool          // a Cancel frame for cur arrived before it started
	max       int           // the frame size limit
	shm       []byte        // the shared-memory segment, read-only; nil if none
	out       outBuffer
	// timer flushes the answers batched in the journal flushDelay after
	// the first of them, if the loop has not flushed them by then. armed
	// says it is set: the loop sets it when it arms the timer, the timer
	// clears it before it flushes, so an answer added after the clear is
	// either flushed by that flush or arms the timer again.
	timer *time.Timer
	armed atomic.Bool
	frame []byte // scratch for one result frame

	die        func()       // Config.Die
	freePages  func([]byte) // Config.FreePages
	control    bool         // Config.Control
	helloLimit int          // Config.HelloLimit

	// runMu guards which task runs and the stop the parent asked for. The
	// serve loop takes it to start and to end each task; stop takes it to
	// decide whether its target is the task running. So a stop never hits
	// a task it was not aimed at: while stop holds runMu the loop cannot
	// move on to the next task.
	runMu      sync.Mutex
	running    uint64        // the id of the task running, 0 between tasks
	runCtx     *TaskCtx      // the running task's context
	ctxs       taskCtxs      // where begin takes runCtx from
	runEnded   chan struct{} // made by terminate: closed once the running task has answered
	graceTimer *time.Timer   // a stopped task's grace period
	stopFor    uint64        // a stop that came before its task started: skip that task
	dead       bool          // die was called (in-process): start nothing more; running stays what it was
	exiting    bool          // SIGTERM: start nothing more

	grace time.Duration // how long a stopped task may take to return before the worker dies
}

type pendingTask struct {
	id    uint64
	kind  wire.Kind
	chunk bool
	from  int // a chunk's first item to run
	// The caller's deadline (Unix nanoseconds) and the task's timeout from
	// its start (nanoseconds); 0 if none.
	deadline, timeout int64
	h                 Handler // nil if the function is unknown
	unknown           string  // the unknown function's name
	payload           []byte
	owned             bool // payload is a copy, not an alias of the reader's buffer
	skip              bool // a Cancel frame arrived for it before it started
}

// outBuffer holds the worker's answers until they are written to the result
// pipe. With a journal, answers are batched in it (shared memory that the
// parent reads if the worker dies, so an answer is never lost because a
// later task killed the worker); without one, each answer is written as it
// is produced, before the next task starts.
type outBuffer struct {
	mu  sync.Mutex
	w   io.Writer
	j   *wire.Journal // nil: write each answer at once
	err error
}

// add records an answer frame. Without a journal it writes the frame now.
func (o *outBuffer) add(frame []byte) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.j == nil {
		o.writeLocked(frame)
		return
	}
	if o.j.Append(frame) {
		return
	}
	o.flushLocked()
	if !o.j.Append(frame) {
		o.writeLocked(frame) // larger than the journal: written before the next task starts
	}
}

// batching reports whether answers may wait in the journal.
func (o *outBuffer) batching() bool { return o.j != nil }

func (o *outBuffer) writeLocked(b []byte) {
	if o.err == nil && len(b) > 0 {
		_, o.err = o.w.Write(b)
	}
}

func (o *outBuffer) flushLocked() {
	if o.j != nil && len(o.j.Pending()) > 0 {
		o.writeLocked(o.j.Pending())
		o.j.Reset()
	}
}

// flush writes the journalled answers to the pipe.
func (o *outBuffer) flush() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.flushLocked()
	return o.err
}

// New returns a server that reads task frames from r and writes its
// answers to w. It allocates its buffers; nothing runs until Hello and
// Serve.
func New(r io.Reader, w io.Writer, cfg Config) *Server {
	s := &Server{
		fns:        cfg.Functions,
		r:          wire.NewReader(r, 64<<10, cfg.MaxFrame),
		avail:      cfg.Available,
		codec:      cfg.Codec,
		ctx:        context.Background(),
		max:        cfg.MaxFrame,
		shm:        cfg.Shared,
		die:        cfg.Die,
		freePages:  cfg.FreePages,
		control:    cfg.Control,
		grace:      cfg.Grace,
		helloLimit: cfg.HelloLimit,
	}
	if s.helloLimit == 0 {
		s.helloLimit = wire.HelloLimit
	}
	s.out.w = w
	s.out.j = cfg.Journal
	s.timer = time.AfterFunc(time.Hour, func() {
		s.armed.Store(false)
		_ = s.out.flush()
	})
	s.timer.Stop()
	return s
}

// begin marks task id as running, unless the parent has already asked to
// stop it: then it reports false and the task is skipped.
func (s *Server) begin(t *pendingTask, j *wire.Journal) bool {
	s.runMu.Lock()
	if s.exiting {
		// SIGTERM: the worker exits once the task it ran has ended (or
		// the grace period has passed); it starts nothing more.
		s.runMu.Unlock()
		select {}
	}
	defer s.runMu.Unlock()
	if s.dead {
		return false
	}
	if s.stopFor == t.id {
		s.stopFor = 0
		return false
	}
	// A stop for any other task is stale: the parent aims a stop only at
	// the oldest task it has no answer for, so a worker that starts
	// another one has finished that one.
	s.stopFor = 0
	s.running = t.id
	var deadline time.Time
	if t.deadline != 0 {
		deadline = time.Unix(0, t.deadline)
	}
	s.runCtx = s.ctxs.next(deadline, time.Duration(t.timeout))
	if j != nil {
		j.SetRunning(t.id)
	}
	return true
}

// answer records the answer to the task that ran (or was skipped) and, in
// the same step under runMu, marks that no task runs: a stop that comes
// once the answer is recorded finds its task ended, and one that comes
// before finds it running with no answer.
func (s *Server) answer(frame []byte) {
	s.runMu.Lock()
	defer s.runMu.Unlock()
	s.out.add(frame)
	if s.running != 0 && !s.dead { // once dead, the parent reads which task was running
		s.running = 0
		if s.out.j != nil {
			s.out.j.SetRunning(0)
		}
	}
	if s.runCtx != nil {
		s.runCtx.release()
		s.runCtx = nil
	}
	if s.runEnded != nil {
		close(s.runEnded)
		s.runEnded = nil
	}
	if s.graceTimer != nil {
		s.graceTimer.Stop()
		s.graceTimer = nil
	}
}

// Stop handles the parent's request to stop task id: if it is running, the
// worker dies (die); if it has not started, it will be skipped; if it has
// ended, nothing happens.
func (s *Server) Stop(id uint64, why byte) {
	s.runMu.Lock()
	defer s.runMu.Unlock()
	if id == 0 || s.dead {
		return
	}
	if s.running != id {
		s.stopFor = id
		return
	}
	if s.grace <= 0 {
		s.dead = true
		s.die()
		return
	}
	// Cancel the task's context: a task that honours it returns within
	// the grace period, its answer ends the grace timer, and the worker
	// lives on. One that does not is ended with its worker.
	s.runCtx.stop(why)
	if s.graceTimer == nil {
		s.graceTimer = time.AfterFunc(s.grace, func() {
			s.runMu.Lock()
			defer s.runMu.Unlock()
			if s.running == id && !s.dead {
				s.dead = true
				s.die()
			}
		})
	}
}

// StopTerm is the reason a task's context gives when SIGTERM from outside
// stopped it (next to the wire.Stop* reasons): see TaskContext.
const StopTerm byte = 255

// Running returns the id of the task that runs now, 0 between tasks; once
// the worker has died (Config.Die), the id of the task that ran then. The
// parent of an in-process worker reads it where a process's journal would
// say.
func (s *Server) Running() uint64 {
	s.runMu.Lock()
	defer s.runMu.Unlock()
	return s.running
}

// stopNow ends the worker at once, because a chunk stopped between items
// for a stop that sends its other items elsewhere (the memory limit,
// SIGTERM): the journal says no item runs, so none is blamed.
func (s *Server) stopNow() {
	s.runMu.Lock()
	defer s.runMu.Unlock()
	if !s.dead {
		s.dead = true
		s.die()
	}
}

// Kill ends an in-process worker (Terminate, a protocol error): it begins
// no further task (one already read ahead is skipped), and the running
// task's context is cancelled.
func (s *Server) Kill() {
	s.runMu.Lock()
	defer s.runMu.Unlock()
	s.dead = true
	if s.runCtx != nil {
		s.runCtx.cancel(context.Canceled)
	}
}

// Terminate handles SIGTERM from outside: the running task's context is
// cancelled and the task gets the grace period to return; then the worker
// exits (exit does). It starts no further task.
func (s *Server) Terminate(exit func()) {
	s.runMu.Lock()
	s.exiting = true
	var ended chan struct{}
	if s.runCtx != nil {
		if s.runEnded == nil {
			s.runEnded = make(chan struct{})
		}
		ended = s.runEnded
		s.runCtx.stop(StopTerm)
	}
	s.runMu.Unlock()
	if ended != nil && s.grace > 0 {
		t := time.NewTimer(s.grace)
		select {
		case <-ended:
		case <-t.C:
		}
		t.Stop()
	}
	_ = s.out.flush() // the answers journalled so far, to the parent
	exit()
}

// Hello writes the handshake frame, which may be as large as the frame
// limit or wire.HelloLimit, whichever is larger. It carries the functions'
// fingerprints unless the frame would then exceed that: the parent does not
// check a worker that sends none.
func (s *Server) Hello(pid int) error {
	h := wire.Hello{Protocol: wire.Version, Pid: pid, Codec: s.codec.Name(), Functions: s.fns.Names(), Journal: s.out.j != nil, Control: s.control, Fingerprints: s.fns.Fingerprints()}
	body, err := json.Marshal(h)
	if err != nil {
		return err
	}
	limit := max(s.max, s.helloLimit)
	frame := wire.AppendFrame(nil, wire.KindHello, 0, body)
	if n := wire.LengthOf(frame, 0); !wire.Fits(n, limit) {
		h.Fingerprints = nil
		body, _ = json.Marshal(h)
		frame = wire.AppendFrame(nil, wire.KindHello, 0, body)
	}
	if n := wire.LengthOf(frame, 0); !wire.Fits(n, limit) {
		return fmt.Errorf("the hello frame, which lists the %d registered functions, is %d bytes (length field %d), over its limit of %d", len(h.Functions), len(frame), n, limit)
	}
	s.out.mu.Lock()
	defer s.out.mu.Unlock()
	s.out.writeLocked(frame)
	return s.out.err
}

// Serve runs until the task stream ends (nil) or breaks (an error).
func (s *Server) Serve() error {
	defer s.timer.Stop()
	for {
		readAhead := len(s.ahead) > 0
		t, err := s.next()
		if err == io.EOF {
			return s.out.flush()
		}
		if err != nil {
			_ = s.out.flush()
			return err
		}
		// Read ahead what has already arrived, so that a Cancel frame for
		// this task or one behind it is seen before that task starts: what
		// is buffered, and, for a task that waited in the look-ahead queue
		// (a Cancel may have come while another task ran), what is in the
		// pipe. A task read just now skips that system call; a Cancel that
		// comes later is too late, and the parent drops the answer. (Looking
		// less often, at most once per 20 µs, saved a system call per task
		// but let a task whose Cancel had reached the pipe while a short
		// task ran before it run all the same: Future.Cancel promises that
		// a task waiting in a worker's pipe is skipped.)
		s.cur, s.skip = t.id, false
		if s.r.Buffered() > 0 || (readAhead && s.avail() > 0) {
			if !t.owned {
				t.payload = append([]byte(nil), t.payload...)
				t.owned = true
			}
			for s.r.Buffered() > 0 || s.avail() > 0 {
				f, err := s.r.Next()
				if err != nil {
					break // handled by the next call of next
				}
				if err := s.accept(f, true); err != nil {
					return err
				}
			}
		}
		t.skip = t.skip || s.skip
		var ctx context.Context = s.ctx
		if !t.skip && t.kind == wire.KindTask {
			t.skip = !s.begin(&t, s.out.j)
			if !t.skip {
				ctx = s.runCtx
			}
		}
		s.run(ctx, t)
		s.cur = 0
		if !s.out.batching() || len(s.ahead) == 0 && s.r.Buffered() == 0 && s.avail() == 0 {
			if s.armed.Load() {
				s.timer.Stop()
				s.armed.Store(false)
			}
			if err := s.out.flush(); err != nil {
				return err
			}
		} else if !s.armed.Load() {
			s.armed.Store(true)
			s.timer.Reset(flushDelay)
		}
	}
}

// next returns the next task to run, reading frames as needed.
func (s *Server) next() (pendingTask, error) {
	for len(s.ahead) == 0 {
		f, err := s.r.Next()
		if err != nil {
			return pendingTask{}, err
		}
		if err := s.accept(f, false); err != nil {
			return pendingTask{}, err
		}
	}
	t := s.ahead[0]
	s.ahead[0] = pendingTask{}
	s.ahead = s.ahead[1:]
	return t, nil
}

// accept files one frame: a task goes to the look-ahead queue, a cancel
// marks its task.
func (s *Server) accept(f wire.Frame, own bool) error {
	switch f.Kind {
	case wire.KindCancel:
		// A cancel for a task that already ran (or is unknown) is ignored.
		if s.cur == f.ID {
			s.skip = true
		}
		for i := range s.ahead {
			if s.ahead[i].id == f.ID {
				s.ahead[i].skip = true
			}
		}
		return nil
	case wire.KindTask, wire.KindInit:
		hdr, payload, err := wire.ParseTaskHeader(f.Body)
		flags, fn := hdr.Flags, hdr.Fn
		if err != nil {
			return err
		}
		switch {
		case flags&wire.FlagShared != 0:
			// The payload is in shared memory, where the parent leaves it
			// until this task is answered: no copy needed.
			off, n, err := wire.ParseSharedRef(payload, len(s.shm))
			if err != nil {
				return err
			}
			payload, own = s.shm[off:off+n:off+n], true
		case own:
			payload = append([]byte(nil), payload...)
		}
		t := pendingTask{id: f.ID, kind: f.Kind, chunk: hdr.Chunk(), from: hdr.From, deadline: hdr.Deadline, timeout: hdr.Timeout, payload: payload, owned: own}
		if t.h = s.lookup(fn); t.h == nil {
			t.unknown = string(fn)
		}
		s.ahead = append(s.ahead, t)
		return nil
	default:
		return errors.New("procpool: worker got an unexpected " + f.Kind.String() + " frame")
	}
}

// lookup finds a function by name, through a one-entry cache: a worker
// mostly runs one function after another, and a name once found keeps its
// function (nothing is unregistered). It does not allocate.
func (s *Server) lookup(name []byte) Handler {
	if s.lastFound != nil && string(name) == string(s.lastName) {
		return s.lastFound
	}
	h := s.fns.Lookup(name)
	if h != nil {
		s.lastName, s.lastFound = append(s.lastName[:0], name...), h
	}
	return h
}

// run executes one task and queues its answer.
func (s *Server) run(ctx context.Context, t pendingTask) {
	if t.skip {
		s.answer(wire.AppendFrame(s.frame[:0], wire.KindSkipped, t.id, nil))
		return
	}
	h := t.h
	if h == nil {
		s.fail(t.id, wire.ErrorBody{Code: CodeUnknownFunc, Message: "no function registered as " + strconv.Quote(t.unknown) + " in worker " + strconv.Itoa(os.Getpid())})
		return
	}
	frame, start := wire.BeginFrame(s.frame[:0], wire.KindResult, t.id)
	var err error
	pastDeadline := false
	if t.chunk {
		var fails []ItemFailure
		frame, _ = wire.AppendChunkResultHeader(frame, nil)
		frame, fails, err = h.CallChunk(ctx, s.codec, t.payload, frame, t.from, s.items())
		if err == ErrItemsStopped {
			s.stopNow() // a worker process does not return from it
			return
		}
		if err == nil && len(fails) > 0 {
			if frame, err = wire.SetChunkErrors(frame, start, s.itemErrors(fails)); err != nil {
				s.fail(t.id, wire.ErrorBody{Message: err.Error(), Type: typeName(err)})
				return
			}
		}
		s.releaseRecords()
	} else {
		frame, err = h.Call(ctx, s.codec, t.payload, frame)
		// Its deadline is why it failed: the parent ends it with
		// ErrTimeout, whichever clock ran out first (see below).
		pastDeadline = err != nil && ctx.Err() == context.DeadlineExceeded
		if tc, ok := ctx.(*TaskCtx); ok {
			if why := tc.StoppedFor(); why == wire.StopMemory || why == StopTerm {
				// Stopped for its worker's memory or the worker's
				// SIGTERM: its cleanup has run, but its answer is not its
				// own outcome. The worker exits with it running, so the
				// parent treats it as after any stop of its worker (it
				// fails with the worker's exit, or runs again if retries
				// allow).
				s.stopNow()
				return
			}
		}
	}
	if err != nil {
		// The function's own failure (or its argument's or result's).
		eb := s.fns.Report(err)
		if eb.Code == "" && pastDeadline {
			eb.Code = CodeDeadline
		}
		if eb.Code == "" && t.kind == wire.KindInit {
			eb.Code = CodeInit
		}
		s.fail(t.id, eb)
		return
	}
	if n := wire.LengthOf(frame, start); !wire.Fits(n, s.max) {
		s.fail(t.id, wire.ErrorBody{Code: CodeEncode, Message: fmt.Sprintf("the result's frame is %d bytes (length field %d), over the frame limit of %d (WithMaxFrame)", len(frame)-start, n, s.max)})
		return
	}
	if err := wire.EndFrame(frame, start); err != nil {
		s.fail(t.id, wire.ErrorBody{Message: err.Error(), Type: typeName(err)})
		return
	}
	s.answer(frame)
	if cap(frame) <= 64<<10 {
		s.frame = frame[:0]
	}
}

// items returns where a chunk records its finished items: the journal of a
// worker process, nil without one (an in-process worker cannot die in the
// middle of a chunk but by a stop, and then nothing of it counts).
func (s *Server) items() *wire.Journal { return s.out.j }

// releaseRecords gives back the memory of a large chunk's results in the
// journal, beyond the first MiB.
func (s *Server) releaseRecords() {
	if s.out.j != nil && s.freePages != nil {
		if used := s.out.j.ListUsed(); len(used) > 1<<20 {
			s.freePages(used[1<<20:])
		}
	}
}

// itemErrors reports a chunk's failed items for its result frame.
func (s *Server) itemErrors(fails []ItemFailure) []wire.ItemError {
	errs := make([]wire.ItemError, len(fails))
	for i, f := range fails {
		errs[i] = wire.ItemError{Index: f.Index, Err: s.fns.Report(f.Err)}
	}
	return errs
}

// fail answers task id with an Error frame.
func (s *Server) fail(id uint64, eb wire.ErrorBody) {
	s.answer(errorFrame(id, eb, s.max))
}

// typeName is the name of v's type, as a report gives it.
func typeName(v any) string {
	if v == nil {
		return ""
	}
	return reflect.TypeOf(v).String()
}

// errorFrame encodes an Error frame, shortening it until it fits the frame
// limit: it cuts the stack, drops the encoded typed errors, then the chain
// of types, cuts the message, then the type name, and last drops the
// sentinels' names. The parent would refuse a longer frame and kill the
// worker, and the task would lose its error to a *WorkerExitError. A
// string is cut to the longest prefix (on a character boundary) that
// fits, found by bisection: this runs only for errors of kilobytes, and
// the JSON encoding of a character may take up to six bytes.
func errorFrame(id uint64, eb wire.ErrorBody, maxFrame int) []byte {
	const mark = " [cut to fit the frame limit]"
	encode := func() ([]byte, bool) {
		body, _ := json.Marshal(eb)
		frame := wire.AppendFrame(nil, wire.KindError, id, body)
		return frame, wire.Fits(wire.LengthOf(frame, 0), maxFrame)
	}
	cut := func(f *string) {
		full, best := *f, -1
		for lo, hi := 0, len(full)-1; lo <= hi; {
			mid := (lo + hi) / 2
			n := mid
			for n > 0 && !utf8.RuneStart(full[n]) {
				n--
			}
			*f = full[:n] + mark
			if _, fits := encode(); fits {
				best, lo = n, mid+1
			} else {
				hi = n - 1
			}
		}
		if best < 0 {
			*f = ""
		} else {
			*f = full[:best] + mark
		}
	}
	frame, ok := encode()
	for _, shorten := range []func(){
		func() { cut(&eb.Stack) },
		func() { eb.Values = nil },
		func() { eb.Chain = nil },
		func() { cut(&eb.Message) },
		func() { cut(&eb.Type) },
		func() { eb.Sentinels = nil },
	} {
		if ok {
			break
		}
		shorten()
		frame, ok = encode()
	}
	return frame
}
