package procpool

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/procpool/procpool/codec"
	"github.com/procpool/procpool/internal/wire"
)

// flushDelay bounds how long a finished task's result may wait in the
// worker's output buffer while the worker starts on the next task. Results
// are written in batches when tasks arrive back to back; the delay keeps a
// long next task from holding back the answer to a short one.
const flushDelay = 50 * time.Microsecond

// server is the worker side of the protocol: it reads task frames, runs
// them one at a time in order, and writes result frames.
type server struct {
	r     *wire.Reader
	avail func() int // bytes waiting in the transport beyond r's buffer
	codec codec.Codec
	ctx   context.Context
	ahead []pendingTask // tasks read ahead of the one running
	cur   uint64        // the id of the task about to run, 0 if none
	skip  bool          // a Cancel frame for cur arrived before it started
	max   int           // the frame size limit
	shm   []byte        // the shared-memory segment, read-only; nil if none
	out   outBuffer
	timer *time.Timer
	frame []byte // scratch for one result frame
}

type pendingTask struct {
	id      uint64
	kind    wire.Kind
	chunk   bool
	h       handler // nil if the function is unknown
	unknown string  // the unknown function's name
	payload []byte
	owned   bool // payload is a copy, not an alias of the reader's buffer
	skip    bool // a Cancel frame arrived for it before it started
}

// outBuffer collects result frames and writes them in one system call.
type outBuffer struct {
	mu  sync.Mutex
	w   io.Writer
	buf []byte
	err error
}

func (o *outBuffer) add(frame []byte) {
	o.mu.Lock()
	o.buf = append(o.buf, frame...)
	o.mu.Unlock()
}

func (o *outBuffer) flush() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.err == nil && len(o.buf) > 0 {
		_, o.err = o.w.Write(o.buf)
	}
	if cap(o.buf) > 1<<20 {
		o.buf = nil // do not keep a large result's memory for the worker's life
	}
	o.buf = o.buf[:0]
	return o.err
}

func newServer(ctx context.Context, r io.Reader, w io.Writer, avail func() int, c codec.Codec, maxFrame int) *server {
	s := &server{
		r:     wire.NewReader(r, 64<<10, maxFrame),
		avail: avail,
		codec: c,
		ctx:   ctx,
		max:   maxFrame,
	}
	s.out.w = w
	s.timer = time.AfterFunc(time.Hour, func() { _ = s.out.flush() })
	s.timer.Stop()
	return s
}

// hello writes the handshake frame.
func (s *server) hello(pid int) error {
	body, err := json.Marshal(wire.Hello{Protocol: wire.Version, Pid: pid, Codec: s.codec.Name(), Functions: registeredNames()})
	if err != nil {
		return err
	}
	frame := wire.AppendFrame(nil, wire.KindHello, 0, body)
	if n := wire.LengthOf(frame, 0); !wire.Fits(n, s.max) {
		return fmt.Errorf("the hello frame, which lists the %d registered functions, is %d bytes (length field %d), over the frame limit of %d set by WithMaxFrame", len(registeredNames()), len(frame), n, s.max)
	}
	s.out.add(frame)
	return s.out.flush()
}

// serve runs until the task stream ends (nil) or breaks (an error).
func (s *server) serve() error {
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
		// comes later is too late, and the parent drops the answer.
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
		s.run(t)
		s.cur = 0
		if len(s.ahead) == 0 && s.r.Buffered() == 0 && s.avail() == 0 {
			s.timer.Stop()
			if err := s.out.flush(); err != nil {
				return err
			}
		} else {
			s.timer.Reset(flushDelay)
		}
	}
}

// next returns the next task to run, reading frames as needed.
func (s *server) next() (pendingTask, error) {
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
func (s *server) accept(f wire.Frame, own bool) error {
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
		flags, fn, payload, err := wire.ParseTaskHeader(f.Body)
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
		t := pendingTask{id: f.ID, kind: f.Kind, chunk: flags&0x01 != 0, payload: payload, owned: own}
		if t.h = lookupBytes(fn); t.h == nil {
			t.unknown = string(fn)
		}
		s.ahead = append(s.ahead, t)
		return nil
	default:
		return errors.New("procpool: worker got an unexpected " + f.Kind.String() + " frame")
	}
}

// run executes one task and queues its answer.
func (s *server) run(t pendingTask) {
	if t.skip {
		s.out.add(wire.AppendFrame(s.frame[:0], wire.KindSkipped, t.id, nil))
		return
	}
	h := t.h
	if h == nil {
		s.fail(t.id, &RemoteError{Func: t.unknown, Code: "unknown_function", Message: "no function registered as " + strconv.Quote(t.unknown) + " in worker " + strconv.Itoa(os.Getpid())})
		return
	}
	frame, start := wire.BeginFrame(s.frame[:0], wire.KindResult, t.id)
	var err error
	if t.chunk {
		var fails []itemFailure
		frame, _ = wire.AppendChunkResultHeader(frame, nil)
		frame, fails, err = h.callChunk(s.ctx, s.codec, t.payload, frame)
		if err == nil && len(fails) > 0 {
			frame, err = chunkWithErrors(frame, start, fails)
		}
	} else {
		frame, err = h.call(s.ctx, s.codec, t.payload, frame)
	}
	if n := wire.LengthOf(frame, start); err == nil && !wire.Fits(n, s.max) {
		err = &RemoteError{Func: h.name(), Code: "encode", Message: fmt.Sprintf("the result's frame is %d bytes (length field %d), over the frame limit of %d (WithMaxFrame)", len(frame)-start, n, s.max)}
	}
	if err == nil {
		err = wire.EndFrame(frame, start)
	}
	if err != nil {
		if t.kind == wire.KindInit {
			if re, ok := err.(*RemoteError); ok && re.Code == "" {
				re.Code = "init"
			}
		}
		s.fail(t.id, err)
		return
	}
	s.out.add(frame)
	if cap(frame) <= 64<<10 {
		s.frame = frame[:0]
	}
}

// chunkWithErrors rewrites a chunk's result frame, which has an empty error
// list, to carry its per-item errors ahead of the payload.
func chunkWithErrors(frame []byte, start int, fails []itemFailure) ([]byte, error) {
	payload := append([]byte(nil), frame[start+wire.HeaderSize+4:]...)
	errs := make([]wire.ItemError, len(fails))
	for i, f := range fails {
		errs[i] = wire.ItemError{Index: f.index, Err: errorBody(f.err)}
	}
	out, err := wire.AppendChunkResultHeader(frame[:start+wire.HeaderSize], errs)
	if err != nil {
		return frame, err
	}
	return append(out, payload...), nil
}

func (s *server) fail(id uint64, err error) {
	s.out.add(errorFrame(id, errorBody(err), s.max))
}

// errorFrame encodes an Error frame, shortening the stack, then the
// message, then the type name until the frame fits the frame limit: the
// parent would refuse a longer frame and kill the worker, and the task would
// lose its error to a *WorkerExitError. A field is cut to the longest
// prefix (on a character boundary) that fits, found by bisection: this runs
// only for errors of kilobytes, and the JSON encoding of a character may
// take up to six bytes.
func errorFrame(id uint64, eb wire.ErrorBody, maxFrame int) []byte {
	const mark = " [cut to fit the frame limit]"
	encode := func() ([]byte, bool) {
		body, _ := json.Marshal(eb)
		frame := wire.AppendFrame(nil, wire.KindError, id, body)
		return frame, wire.Fits(wire.LengthOf(frame, 0), maxFrame)
	}
	frame, ok := encode()
	for _, f := range []*string{&eb.Stack, &eb.Message, &eb.Type} {
		if ok {
			break
		}
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
		frame, ok = encode()
	}
	return frame
}

func errorBody(err error) wire.ErrorBody {
	var re *RemoteError
	if errors.As(err, &re) {
		return wire.ErrorBody{Message: re.Message, Type: re.Type, Stack: re.Stack, Panic: re.Panic, Code: re.Code}
	}
	return wire.ErrorBody{Message: err.Error(), Type: typeName(err)}
}

func stack() string { return string(debug.Stack()) }
