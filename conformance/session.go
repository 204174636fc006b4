//go:build unix

package conformance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/procpool/procpool/codec"
	"github.com/procpool/procpool/internal/supervise"
	"github.com/procpool/procpool/internal/wire"
)

// The descriptors and variables of docs/protocol.md, "Starting a worker".
const (
	fdShared  = 5
	fdJournal = 6
	fdControl = 7

	defaultShm      = 16 << 20
	defaultMaxFrame = wire.DefaultMaxFrame
	defaultGrace    = 300 * time.Millisecond
)

// opts says how one worker is started: what the parent offers it.
type opts struct {
	codec    string
	maxFrame int    // PROCPOOL_MAX_FRAME
	rlimits  string // PROCPOOL_RLIMITS
	grace    time.Duration
	shm      bool // offer PROCPOOL_SHM and fd 5
	journal  bool // offer PROCPOOL_JOURNAL and fd 6
	control  bool // offer PROCPOOL_CONTROL and fd 7
}

// item is what the reader of the result pipe hands on: a frame (its body
// copied) or the error that ended the stream.
type item struct {
	f   wire.Frame
	err error
}

// session is one worker process, started the way a pool starts it, and the
// parent's side of its pipes.
type session struct {
	k    *kit
	o    opts
	cmd  *exec.Cmd
	pid  int
	c    codec.Codec // nil for a codec the kit does not know
	max  int
	tout time.Duration

	tasks   *os.File // write end of the task pipe (fd 3)
	results *os.File // read end of the result pipe (fd 4)
	ctl     *os.File // write end of the control pipe (fd 7), nil if not offered
	output  *os.File // read end of the worker's stdout and stderr
	frames  chan item
	quit    chan struct{} // closed by close: the readers stop handing on
	readers sync.WaitGroup

	shm     []byte // the parent's mapping of the segment, nil if not offered
	shmNext int    // where the next shared argument goes
	journal []byte // the parent's read-only mapping of the journal, nil if not offered
	jsize   int

	exited chan struct{} // closed once the process is reaped
	state  *os.ProcessState

	outDone chan struct{} // closed when readOutput has read the output pipe to its end
	outMu   sync.Mutex
	out     []byte // the tail of the worker's output

	hello      wire.Hello
	helloFrame []byte
	nextID     uint64
	pending    []uint64 // tasks sent and not answered, oldest first
	closed     atomic.Bool
	ended      bool // the result stream ended (an item with an error was read)
	endErr     error
}

// outputTail is how much of a worker's stdout and stderr a report quotes.
const outputTail = 2048

// start runs the worker command with the environment and descriptors that
// o describes. It returns once the process runs; the hello is read by
// readHello.
func (k *kit) start(ctx context.Context, o opts) (*session, error) {
	if o.maxFrame == 0 {
		o.maxFrame = defaultMaxFrame
	}
	s := &session{k: k, o: o, max: o.maxFrame, tout: k.cfg.Timeout, frames: make(chan item, 4096), quit: make(chan struct{}), exited: make(chan struct{}), outDone: make(chan struct{}), nextID: 1}
	s.c, _ = codec.ByName(o.codec)
	var closeOnFail []*os.File
	fail := func(what string, err error) (*session, error) {
		for _, f := range closeOnFail {
			f.Close()
		}
		s.unmap()
		return nil, fmt.Errorf("conformance: %s: %w", what, err)
	}
	taskR, taskW, err := os.Pipe()
	if err != nil {
		return fail("creating the task pipe", err)
	}
	resR, resW, err := os.Pipe()
	if err != nil {
		taskR.Close()
		taskW.Close()
		return fail("creating the result pipe", err)
	}
	outR, outW, err := os.Pipe()
	closeOnFail = append(closeOnFail, taskR, taskW, resR, resW)
	if err != nil {
		return fail("creating the output pipe", err)
	}
	closeOnFail = append(closeOnFail, outR, outW)
	// The worker's ends become blocking when exec hands them over (Fd);
	// the kit's ends stay in Go's poller, so that deadlines and Close
	// bound every wait on them.
	_ = supervise.GrowPipe(taskR, 1<<20)
	_ = supervise.GrowPipe(resW, 1<<20)

	env := make([]string, 0, len(os.Environ())+len(k.cfg.Env)+10)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PROCPOOL_") {
			env = append(env, kv)
		}
	}
	env = append(env, k.cfg.Env...)
	env = append(env,
		"PROCPOOL_WORKER=1",
		"PROCPOOL_CODEC="+o.codec,
		"PROCPOOL_MAX_FRAME="+strconv.Itoa(o.maxFrame),
		"PROCPOOL_RLIMITS="+o.rlimits,
		"PROCPOOL_KILL_GRACE="+strconv.FormatInt(int64(o.grace), 10),
	)
	if !hasEnv(env, "GOMAXPROCS") {
		env = append(env, "GOMAXPROCS=1")
	}
	if !hasEnv(env, "GORACE") {
		env = append(env, "GORACE=atexit_sleep_ms=0")
	}
	extra := []*os.File{taskR, resW, nil, nil, nil}
	var shmF, jF, ctlR, ctlW *os.File
	if o.shm {
		f, mem, err := supervise.SharedMemory(k.cfg.SharedMemory)
		if err != nil {
			return fail("creating the shared-memory segment", err)
		}
		shmF, s.shm = f, mem
		closeOnFail = append(closeOnFail, f)
		extra[fdShared-3] = f
		env = append(env, "PROCPOOL_SHM="+strconv.Itoa(k.cfg.SharedMemory))
	}
	if o.journal {
		s.jsize = wire.JournalMin + max(o.maxFrame, 1<<20)
		f, err := supervise.MemFile("procpool-conformance-journal", s.jsize)
		if err != nil {
			return fail("creating the journal", err)
		}
		jF = f
		closeOnFail = append(closeOnFail, f)
		mem, err := syscall.Mmap(int(f.Fd()), 0, s.jsize, syscall.PROT_READ, syscall.MAP_SHARED)
		if err != nil {
			return fail("mapping the journal", os.NewSyscallError("mmap", err))
		}
		s.journal = mem
		extra[fdJournal-3] = f
		env = append(env, "PROCPOOL_JOURNAL="+strconv.Itoa(fdJournal)+":"+strconv.Itoa(s.jsize))
	}
	if o.control {
		ctlR, ctlW, err = os.Pipe()
		if err != nil {
			return fail("creating the control pipe", err)
		}
		closeOnFail = append(closeOnFail, ctlR, ctlW)
		extra[fdControl-3] = ctlR
		env = append(env, "PROCPOOL_CONTROL="+strconv.Itoa(fdControl))
	}
	cmd := exec.Command(k.cfg.Command[0], k.cfg.Command[1:]...)
	cmd.Env = env
	cmd.Dir = k.cfg.Dir
	cmd.Stdout, cmd.Stderr = outW, outW
	cmd.ExtraFiles = extra
	cmd.SysProcAttr = supervise.SysProcAttr()
	if err := k.spawner.Start(cmd); err != nil {
		return fail("starting "+k.cfg.Command[0], err)
	}
	for _, f := range []*os.File{taskR, resW, outW, shmF, jF, ctlR} {
		if f != nil {
			f.Close() // the worker's now
		}
	}
	s.cmd, s.pid = cmd, cmd.Process.Pid
	s.tasks, s.results, s.output, s.ctl = taskW, resR, outR, ctlW
	go func() {
		_ = cmd.Wait()
		s.state = cmd.ProcessState
		close(s.exited)
	}()
	s.readers.Add(2)
	go s.readResults()
	go s.readOutput()
	return s, nil
}

func hasEnv(env []string, key string) bool {
	for _, kv := range env {
		if strings.HasPrefix(kv, key+"=") {
			return true
		}
	}
	return false
}

// readResults reads frames from the result pipe until it ends: the hello
// under the hello's limit, the rest under PROCPOOL_MAX_FRAME.
func (s *session) readResults() {
	defer s.readers.Done()
	defer close(s.frames)
	r := wire.NewReader(s.results, 64<<10, max(s.max, wire.HelloLimit))
	first := true
	for {
		f, err := r.Next()
		it := item{f: f, err: err}
		if err == nil {
			if first {
				first = false
				r.SetMaxFrame(s.max)
			}
			it.f.Body = bytes.Clone(f.Body)
		}
		select {
		case s.frames <- it:
		case <-s.quit:
			return
		}
		if err != nil {
			return
		}
	}
}

// readOutput keeps the tail of what the worker writes on fds 1 and 2, and
// copies it to Config.Output.
func (s *session) readOutput() {
	defer s.readers.Done()
	defer close(s.outDone)
	buf := make([]byte, 4096)
	for {
		n, err := s.output.Read(buf)
		if n > 0 {
			if s.k.cfg.Output != nil {
				_, _ = s.k.cfg.Output.Write(buf[:n])
			}
			s.outMu.Lock()
			s.out = append(s.out, buf[:n]...)
			if len(s.out) > 2*outputTail {
				s.out = append(s.out[:0], s.out[len(s.out)-outputTail:]...)
			}
			s.outMu.Unlock()
		}
		if err != nil {
			return
		}
	}
}

// stderr returns the tail of the worker's output, trimmed. Once the worker
// has exited, it first waits for the end of the output pipe, up to the
// kit's timeout (a process the worker left may hold the pipe): what the
// worker wrote just before it exited may not have been read yet.
func (s *session) stderr() string {
	if s.exitedNow() {
		t := time.NewTimer(s.tout)
		select {
		case <-s.outDone:
		case <-t.C:
		}
		t.Stop()
	}
	s.outMu.Lock()
	defer s.outMu.Unlock()
	out := s.out
	if len(out) > outputTail {
		out = out[len(out)-outputTail:]
	}
	return strings.TrimSpace(string(out))
}

// close ends the session: it closes the parent's ends of the pipes, kills
// the worker's process group (SIGKILL) unless the worker has already
// exited, reaps it, and waits for the readers. It never waits longer than
// the time the readers need to see the ends of pipes that only the killed
// group held.
func (s *session) close() {
	if !s.closed.CompareAndSwap(false, true) {
		return
	}
	s.tasks.Close()
	if s.ctl != nil {
		s.ctl.Close()
	}
	if s.exitedNow() {
		// Sweep what it may have left in its group.
		_ = supervise.KillGroup(s.pid, syscall.SIGKILL)
	} else {
		_ = supervise.KillGroup(s.pid, syscall.SIGKILL)
		<-s.exited
		_ = supervise.KillGroup(s.pid, syscall.SIGKILL)
	}
	// A process that left the group may still hold the pipes: closing our
	// ends ends the readers whatever it does.
	close(s.quit)
	done := make(chan struct{})
	go func() {
		s.readers.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(time.Second):
		s.results.Close()
		s.output.Close()
		<-done
	}
	s.results.Close()
	s.output.Close()
	s.unmap()
}

func (s *session) unmap() {
	if s.shm != nil {
		_ = syscall.Munmap(s.shm)
		s.shm = nil
	}
	if s.journal != nil {
		_ = syscall.Munmap(s.journal)
		s.journal = nil
	}
}

func (s *session) exitedNow() bool {
	select {
	case <-s.exited:
		return true
	default:
		return false
	}
}

// exitText describes how the reaped worker ended.
func (s *session) exitText() string {
	if !s.exitedNow() {
		return "is still running"
	}
	if ws, ok := s.state.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return "was killed by signal " + ws.Signal().String()
	}
	return "exited with status " + strconv.Itoa(s.state.ExitCode())
}

// exitCode returns the exit status, or -1 for a worker killed by a signal
// or not reaped.
func (s *session) exitCode() int {
	if !s.exitedNow() {
		return -1
	}
	return s.state.ExitCode()
}

// waitExit waits up to the kit's timeout for the worker to exit. It
// reports false if the worker is still running then.
func (s *session) waitExit(ctx context.Context) bool {
	t := time.NewTimer(s.tout)
	defer t.Stop()
	select {
	case <-s.exited:
		return true
	case <-t.C:
		return false
	case <-ctx.Done():
		return false
	}
}

// signal sends sig to the worker process (not its group).
func (s *session) signal(sig syscall.Signal) error { return syscall.Kill(s.pid, sig) }

// signalDelivered sends sig and waits until the worker has taken it (or
// ignored it, or died): see awaitDelivered.
func (s *session) signalDelivered(ctx context.Context, sig syscall.Signal) error {
	if err := s.signal(sig); err != nil {
		return err
	}
	return awaitDelivered(ctx, s.pid, sig)
}

// errNoFrame is returned by next when no frame came within the timeout.
var errNoFrame = errors.New("no frame")

// next returns the next frame the worker wrote, waiting up to the kit's
// timeout. At the end of the stream it returns the error that ended it
// (io.EOF for a clean end), then the same error for ever; errNoFrame if
// nothing came in time.
func (s *session) next(ctx context.Context) (wire.Frame, error) {
	if s.ended {
		return wire.Frame{}, s.endErr
	}
	t := time.NewTimer(s.tout)
	defer t.Stop()
	select {
	case it, ok := <-s.frames:
		if !ok {
			s.ended, s.endErr = true, io.EOF
			return wire.Frame{}, io.EOF
		}
		if it.err != nil {
			s.ended, s.endErr = true, it.err
			return wire.Frame{}, it.err
		}
		return it.f, nil
	case <-t.C:
		return wire.Frame{}, errNoFrame
	case <-ctx.Done():
		return wire.Frame{}, ctx.Err()
	}
}

// write writes b to the task pipe, giving up after the kit's timeout.
func (s *session) write(b []byte) error {
	_ = s.tasks.SetWriteDeadline(time.Now().Add(s.tout))
	_, err := s.tasks.Write(b)
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return fmt.Errorf("the worker read nothing from its task pipe for %v (fd 3 full)", s.tout)
		}
		if errors.Is(err, syscall.EPIPE) {
			return fmt.Errorf("the worker has closed its task pipe (fd 3): %s", s.exitAfterEnd())
		}
		return fmt.Errorf("writing to the task pipe: %w", err)
	}
	return nil
}

// writeControl writes b to the control pipe.
func (s *session) writeControl(b []byte) error {
	_ = s.ctl.SetWriteDeadline(time.Now().Add(s.tout))
	if _, err := s.ctl.Write(b); err != nil {
		return fmt.Errorf("writing to the control pipe: %w", err)
	}
	return nil
}

// exitAfterEnd waits briefly for the worker's exit status once its pipes
// have ended, and describes it.
func (s *session) exitAfterEnd() string {
	t := time.NewTimer(s.tout)
	defer t.Stop()
	select {
	case <-s.exited:
	case <-t.C:
	}
	return "the worker " + s.exitText()
}

// describe turns an error from next into words.
func (s *session) describe(err error, waitingFor string) string {
	switch {
	case err == errNoFrame:
		return fmt.Sprintf("no frame within %v while waiting for %s (the worker %s)", s.tout, waitingFor, s.runningText())
	case err == io.EOF:
		return fmt.Sprintf("the result pipe (fd 4) ended while waiting for %s: %s", waitingFor, s.exitAfterEnd())
	case err == io.ErrUnexpectedEOF:
		return fmt.Sprintf("the result pipe (fd 4) ended inside a frame while waiting for %s: %s", waitingFor, s.exitAfterEnd())
	case errors.Is(err, wire.ErrFrameTooLarge):
		return fmt.Sprintf("the worker wrote a frame over PROCPOOL_MAX_FRAME=%d while the kit waited for %s: %v (protocol.md, Frames: neither side ever writes a frame whose length exceeds the limit)", s.max, waitingFor, err)
	case errors.Is(err, wire.ErrMalformed):
		return fmt.Sprintf("the worker wrote bytes that are not a frame while the kit waited for %s: %v", waitingFor, err)
	}
	return fmt.Sprintf("reading the result pipe while waiting for %s: %v", waitingFor, err)
}

func (s *session) runningText() string {
	if s.exitedNow() {
		return s.exitText()
	}
	return "is still running"
}

// withOutput appends the tail of the worker's output to a failure detail.
func (s *session) withOutput(detail string) string {
	if out := s.stderr(); out != "" {
		return detail + "\nworker output:\n" + indent(out)
	}
	return detail
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}

// The journal, read by the parent (docs/protocol.md, "Journal").
type journalView struct {
	running, answers, items, errors, finished uint64
}

func (s *session) readJournal() journalView {
	load := func(off int) uint64 {
		return atomic.LoadUint64((*uint64)(unsafe.Pointer(&s.journal[off])))
	}
	return journalView{load(0), load(8), load(16), load(24), load(32)}
}

// journalAnswers returns the answer area's bytes as the header says.
func (s *session) journalAnswers() ([]byte, error) {
	v := s.readJournal()
	if v.answers > wire.JournalAnswers {
		return nil, fmt.Errorf("journal field answers is %d, over the answer area's %d bytes", v.answers, wire.JournalAnswers)
	}
	return bytes.Clone(s.journal[wire.JournalHeader : wire.JournalHeader+int(v.answers)]), nil
}

// pollJournal polls the journal until cond holds, a frame arrives (it is
// kept for next), the worker exits, or the timeout passes. It reports
// whether cond held.
func (s *session) pollJournal(ctx context.Context, cond func(journalView) bool) bool {
	deadline := time.Now().Add(s.tout)
	for {
		if cond(s.readJournal()) {
			return true
		}
		if len(s.frames) > 0 || s.exitedNow() || time.Now().After(deadline) || ctx.Err() != nil {
			return cond(s.readJournal())
		}
		time.Sleep(200 * time.Microsecond)
	}
}

// putShared copies b into the shared-memory segment and returns its
// reference. It places arguments one after another, from offset 1 (an
// unaligned start on purpose), and wraps around at the end.
func (s *session) putShared(b []byte) []byte {
	if s.shmNext == 0 || s.shmNext+len(b) > len(s.shm) {
		s.shmNext = 1
	}
	off := s.shmNext
	copy(s.shm[off:], b)
	s.shmNext += len(b) + 7
	return wire.AppendSharedRef(nil, uint64(off), uint64(len(b)))
}

// taskFrame builds a task frame.
type taskSpec struct {
	kind     wire.Kind // KindTask (default) or KindInit
	id       uint64    // 0: the next id
	fn       string
	payload  []byte
	chunk    bool
	from     int // > 0: FlagFrom
	deadline int64
	timeout  int64
	shared   bool
}

func (s *session) frame(t taskSpec) (id uint64, frame []byte) {
	if t.kind == 0 {
		t.kind = wire.KindTask
	}
	if t.kind == wire.KindTask {
		id = t.id
		if id == 0 {
			id = s.nextID
			s.nextID++
		}
	}
	body := wire.AppendTaskHeaderExt(nil, t.chunk, t.fn, t.from, t.deadline, t.timeout)
	if t.shared {
		body[0] |= wire.FlagShared
		body = append(body, s.putShared(t.payload)...)
	} else {
		body = append(body, t.payload...)
	}
	return id, wire.AppendFrame(nil, t.kind, id, body)
}

// send writes the tasks, in one write, and records them as pending.
func (s *session) send(ts ...taskSpec) ([]uint64, error) {
	var buf []byte
	ids := make([]uint64, len(ts))
	for i, t := range ts {
		id, f := s.frame(t)
		ids[i] = id
		buf = append(buf, f...)
	}
	if err := s.write(buf); err != nil {
		return nil, err
	}
	for i, t := range ts {
		if t.kind != wire.KindInit {
			s.pending = append(s.pending, ids[i])
		}
	}
	return ids, nil
}

// sendRaw writes bytes as they are.
func (s *session) sendRaw(b []byte) error { return s.write(b) }

// cancel writes a cancel frame for id.
func (s *session) cancel(id uint64) error {
	return s.write(wire.AppendFrame(nil, wire.KindCancel, id, nil))
}

// encode encodes v with the session's codec.
func (s *session) encode(v any) []byte {
	b, err := s.c.Append(nil, v)
	if err != nil {
		panic(fmt.Sprintf("conformance: encoding %#v with %s: %v", v, s.c.Name(), err))
	}
	return b
}

// answer reads the next frame and checks that it answers the oldest
// pending task: a result, error or skipped frame with its id. It returns a
// failure detail (not an error) for anything else.
func (s *session) answer(ctx context.Context) (wire.Frame, error) {
	if len(s.pending) == 0 {
		return wire.Frame{}, errors.New("conformance: answer with no task pending")
	}
	want := s.pending[0]
	f, err := s.next(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return wire.Frame{}, ctx.Err()
		}
		return wire.Frame{}, failf("%s", s.describe(err, "the answer to task "+strconv.FormatUint(want, 10)))
	}
	if err := s.checkAnswerFrame(f, want); err != nil {
		return f, err
	}
	s.pending = s.pending[1:]
	return f, nil
}

// checkAnswerFrame checks a frame read where the answer to task want
// should be.
func (s *session) checkAnswerFrame(f wire.Frame, want uint64) error {
	switch f.Kind {
	case wire.KindResult, wire.KindError, wire.KindSkipped:
	case wire.KindHello:
		return failf("a second hello frame where the answer to task %d was due (protocol.md, Session: a second hello is a protocol error)", want)
	default:
		return failf("%s frame (kind %d) where the answer to task %d was due: only the parent sends %s frames (protocol.md, Kinds)", an(f.Kind), uint8(f.Kind), want, f.Kind)
	}
	if f.ID != want {
		for _, id := range s.pending[1:] {
			if id == f.ID {
				return failf("the answer to task %d came before task %d's (protocol.md, Session: a worker answers the tasks in the order it received them)", f.ID, want)
			}
		}
		return failf("%s frame for task %d, which the kit never sent or which was answered already, where the answer to task %d was due (protocol.md, Session)", an(f.Kind), f.ID, want)
	}
	if f.Kind == wire.KindSkipped && len(f.Body) != 0 {
		return failf("the skipped frame for task %d has a body of %d bytes; it must be empty (protocol.md, skipped)", f.ID, len(f.Body))
	}
	return nil
}

// call sends one task and returns its answer.
func (s *session) call(ctx context.Context, t taskSpec) (wire.Frame, error) {
	if _, err := s.send(t); err != nil {
		return wire.Frame{}, failf("%v", err)
	}
	return s.answer(ctx)
}

// result decodes a result frame's payload into v; anything else is a
// failure naming what the task was.
func (s *session) result(f wire.Frame, what string, v any) error {
	switch f.Kind {
	case wire.KindResult:
	case wire.KindError:
		return failf("%s was answered with an error: %s", what, errorText(f.Body))
	default:
		return failf("%s was answered with %s frame, want a result", what, an(f.Kind))
	}
	if err := s.c.Unmarshal(f.Body, v); err != nil {
		return failf("%s: the result does not decode with %s: %v (payload % x)", what, s.c.Name(), err, clip(f.Body))
	}
	return nil
}

// errorText renders an error frame's body for a message.
func errorText(body []byte) string {
	eb, err := wire.ParseError(body)
	if err != nil {
		return fmt.Sprintf("(unparsable body %q)", clip(body))
	}
	if eb.Code != "" {
		return fmt.Sprintf("%q (type %q, code %q)", eb.Message, eb.Type, eb.Code)
	}
	return fmt.Sprintf("%q (type %q)", eb.Message, eb.Type)
}

func clip(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}

// readHello reads and checks the first frame. It returns the problems
// found (empty when the hello is right), or a failure for no hello at
// all. unknown is true when the hello says the codec is not known.
func (s *session) readHello(ctx context.Context) (problems []string, unknown bool, err error) {
	f, err := s.next(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil, false, ctx.Err()
		}
		return nil, false, failf("no hello: %s", s.describe(err, "the hello"))
	}
	s.helloFrame = f.Body
	if f.Kind != wire.KindHello {
		return nil, false, failf("the first frame is %s frame (kind %d), not a hello (protocol.md, hello: the first frame the worker writes)", an(f.Kind), uint8(f.Kind))
	}
	problems, h := checkHello(f, s.o.codec)
	s.hello = h
	return problems, h.Codec == "" && s.o.codec != "", nil
}

// open starts a worker and reads its hello, which must be right and name
// the session's codec. The caller closes the session, also on error.
func (k *kit) open(ctx context.Context, o opts) (*session, error) {
	s, err := k.start(ctx, o)
	if err != nil {
		return nil, err
	}
	problems, unknown, err := s.readHello(ctx)
	if err == nil && unknown {
		err = failf("the worker does not know codec %q (its hello names no codec), although an earlier worker did", o.codec)
	}
	if err == nil && len(problems) > 0 {
		err = failf("hello: %s", strings.Join(problems, "; "))
	}
	if err != nil {
		if o, ok := err.(*outcome); ok {
			o.detail = s.withOutput(o.detail)
		}
		return s, err
	}
	return s, nil
}

// an names a frame kind with its article: "a result", "an error".
func an(k wire.Kind) string {
	s := k.String()
	if strings.IndexByte("aeiou", s[0]) >= 0 {
		return "an " + s
	}
	return "a " + s
}
