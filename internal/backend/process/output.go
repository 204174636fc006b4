package process

import (
	"bytes"
	"errors"
	"io"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/procpool/procpool/internal/supervise"
)

// stderrTailSize is how much of a worker's standard error the pool keeps,
// the most recent bytes, for the errors that report its death
// (WorkerExitError.Stderr, StartError.Stderr).
const stderrTailSize = 8 << 10

// maxPrefixedLine is the longest line a prefixed output stream holds back
// while it waits for the line's end (see WithOutputPrefix): a longer one is
// written in pieces.
const maxPrefixedLine = 4 << 10

// outputDrainLimit bounds what the pool reads from a worker's output pipe
// once the worker has been reaped: what the worker wrote is in the pipe by
// then (at most the pipe's capacity), and a process it left behind that
// keeps writing must not keep the pool reading.
const outputDrainLimit = 1 << 20

// outputDrainWait bounds how long a worker's end waits for its output to be
// handed on: a writer (WithStdout, WithStderr) that blocks delays the
// report of the worker's exit by this much at most.
const outputDrainWait = time.Second

// outputCopy carries one of a worker's output streams (its standard error,
// or its standard output when it needs carrying) from the pipe the worker
// writes to, to the pool's writer: prefixed with the worker's pid if
// WithOutputPrefix is on, and for standard error, through a tail that keeps
// the last bytes and notes the signals the Go runtime reports.
//
// The pool, not os/exec, reads the pipe, on a goroutine of its own: the
// end of the reading is the pool's to decide (end), so a process the worker
// started that holds the pipe cannot delay the reaping of the worker (as
// exec.Cmd.Wait would, up to its WaitDelay) nor the end of the reading.
// Nothing of it runs per task.
type outputCopy struct {
	r      *os.File  // the read end; the worker holds the write end
	dst    io.Writer // where the output goes; nil discards it (after a failed write too)
	prefix []byte    // "[worker PID] " before each line, or nil
	line   []byte    // with a prefix: the start of a line whose end has not come yet
	tail   *outputTail
	ending atomic.Bool   // the worker has been reaped: read what is left, then stop
	done   chan struct{} // closed when the copying is over
}

// newOutputCopy makes a pipe for one of a worker's output streams and the
// copier that reads it. The caller gives w to the worker and closes it
// once the worker has started, then starts run on a goroutine.
func newOutputCopy(dst io.Writer, prefix []byte, tail *outputTail) (c *outputCopy, w *os.File, err error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, nil, err
	}
	return &outputCopy{r: r, dst: dst, prefix: prefix, tail: tail, done: make(chan struct{})}, w, nil
}

// run copies until the pipe's end of file, or, once endOutputs has been
// called, until it has read what the pipe holds. It closes the read end.
func (c *outputCopy) run() {
	defer close(c.done)
	defer c.r.Close()
	buf := make([]byte, 8<<10)
	for {
		n, err := c.r.Read(buf)
		c.handle(buf[:n])
		if err == nil {
			continue
		}
		if errors.Is(err, os.ErrDeadlineExceeded) && c.ending.Load() {
			c.drain(buf)
		}
		break
	}
	if len(c.line) > 0 {
		// The last line, which did not end.
		c.emit(append(append(append([]byte(nil), c.prefix...), c.line...), '\n'))
		c.line = c.line[:0]
	}
}

// drain reads what the pipe holds now, without waiting: everything the
// reaped worker wrote, which is in the pipe before the worker's exit. What
// a process it left behind writes later is not read.
func (c *outputCopy) drain(buf []byte) {
	rc, err := c.r.SyscallConn()
	if err != nil {
		return
	}
	for total := 0; total < outputDrainLimit; {
		var n int
		var rerr error
		// Control, not Read: the deadline that woke the reader has passed.
		// The read end is the poller's, so non-blocking already; made sure
		// of, as a read that waited here could wait for ever.
		if err := rc.Control(func(fd uintptr) {
			n, rerr = supervise.ReadNonblock(fd, buf)
		}); err != nil {
			return
		}
		if rerr == syscall.EINTR {
			continue
		}
		if n <= 0 || rerr != nil {
			return // empty (EAGAIN), or every write end is closed
		}
		c.handle(buf[:n])
		total += n
	}
}

// endOutputs makes the copying of a reaped worker's output streams end,
// and waits for it, outputDrainWait at most (the pool's writer may block).
// It wakes each reader, which reads what its pipe holds and stops: a
// process the worker left behind that holds a pipe does not hold up the
// end. Such a process's later writes fail (EPIPE) once the read end is
// closed.
func endOutputs(cs []*outputCopy) {
	if len(cs) == 0 {
		return
	}
	for _, c := range cs {
		c.ending.Store(true)
		// os.Pipe's read end is always pollable; were it not, the reading
		// would end at end of file only.
		_ = c.r.SetReadDeadline(time.Now())
	}
	t := time.NewTimer(outputDrainWait)
	defer t.Stop()
	for _, c := range cs {
		select {
		case <-c.done:
		case <-t.C:
			return
		}
	}
}

// handle passes b, bytes read from the worker, to the tail and the writer.
func (c *outputCopy) handle(b []byte) {
	if len(b) == 0 {
		return
	}
	if c.tail != nil {
		c.tail.write(b)
	}
	if c.dst == nil {
		return
	}
	if c.prefix == nil {
		c.emit(b)
		return
	}
	// Prefix each line, and write whole lines only, so that the lines of
	// workers writing at once are not cut into each other.
	var out []byte
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			c.line = append(c.line, b...)
			if len(c.line) >= maxPrefixedLine {
				out = append(append(out, c.prefix...), c.line...)
				out = append(out, '\n')
				c.line = c.line[:0]
			}
			break
		}
		out = append(append(append(out, c.prefix...), c.line...), b[:i+1]...)
		c.line = c.line[:0]
		b = b[i+1:]
	}
	if len(out) > 0 {
		c.emit(out)
	}
}

// emit writes b to the writer. After a failed write the output is
// discarded: the worker must not block on a pipe nobody reads.
func (c *outputCopy) emit(b []byte) {
	if c.dst == nil {
		return
	}
	if _, err := c.dst.Write(b); err != nil {
		c.dst = nil
	}
}

// outputPrefix is what WithOutputPrefix puts before each line of worker
// pid's output.
func outputPrefix(pid int) []byte {
	return []byte("[worker " + strconv.Itoa(pid) + "] ")
}

// outputTail keeps the end of a worker's standard error, stderrTailSize
// bytes at most, and follows the reports of the Go runtime there. The
// runtime ends a program with exit status 2 and a report on its standard
// error, so the signal, if any, is not in the exit status. Its report
// starts with
//
//	SIGSEGV: segmentation violation
//	PC=0x48b860 m=0 sigcode=1 addr=0x0
//
// for a signal outside Go code (cgo) or one sent by another process, or
// with a line such as "fatal error: unexpected signal during runtime
// execution" or "panic: runtime error: invalid memory address or nil
// pointer dereference" followed by
//
//	[signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x48b802]
//
// and goes on with a traceback, of every goroutine for a signal, then the
// registers: often more than the tail holds. Lines are scanned as they
// pass, so the signal is found however long the report; and the start of
// the last report (reportHeadSize bytes) is kept apart, so that the tail
// begins with it even when the rest of the report has pushed it out.
type outputTail struct {
	mu        sync.Mutex
	buf       []byte // the last bytes of the stream, at most stderrTailSize
	total     int64  // bytes written so far
	lineStart int64  // the offset of the current line's start
	head      []byte // the start of the current line, up to lineHead bytes
	cand      syscall.Signal
	candAt    int64          // the offset of the line that named cand
	sig       syscall.Signal // the signal the last report named, or 0
	reportAt  int64          // the offset of the last report's start, or -1
	report    []byte         // its first bytes, up to reportHeadSize
}

// lineHead is how much of each line the scan looks at.
const lineHead = 64

// reportHeadSize is how much of the start of the Go runtime's last report
// the tail keeps apart.
const reportHeadSize = 2 << 10

func newOutputTail() *outputTail { return &outputTail{reportAt: -1} }

func (t *outputTail) write(b []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	base := t.total
	for rest, off := b, base; len(rest) > 0; {
		i := bytes.IndexByte(rest, '\n')
		seg := rest
		if i >= 0 {
			seg = rest[:i]
		}
		if room := lineHead - len(t.head); room > 0 {
			t.head = append(t.head, seg[:min(room, len(seg))]...)
		}
		if i < 0 {
			break
		}
		t.scanLine(t.head)
		t.head = t.head[:0]
		off += int64(i + 1)
		t.lineStart = off
		rest = rest[i+1:]
	}
	// Keep the start of the last report, from what the tail holds and b.
	if t.reportAt >= 0 && len(t.report) < reportHeadSize {
		from := t.reportAt + int64(len(t.report))
		bufAt := base - int64(len(t.buf))
		for from < base+int64(len(b)) && len(t.report) < reportHeadSize {
			var src []byte
			switch {
			case from < bufAt:
				from = base + int64(len(b)) // lost: stop
				continue
			case from < base:
				src = t.buf[from-bufAt:]
			default:
				src = b[from-base:]
			}
			n := min(len(src), reportHeadSize-len(t.report))
			t.report = append(t.report, src[:n]...)
			from += int64(n)
		}
	}
	t.total += int64(len(b))
	if len(b) >= stderrTailSize {
		t.buf = append(t.buf[:0], b[len(b)-stderrTailSize:]...)
		return
	}
	if over := len(t.buf) + len(b) - stderrTailSize; over > 0 {
		t.buf = t.buf[:copy(t.buf, t.buf[over:])]
	}
	t.buf = append(t.buf, b...)
}

// scanLine follows the Go runtime's reports, line by line (see
// outputTail). l is the start of the line that began at t.lineStart.
func (t *outputTail) scanLine(l []byte) {
	cand, candAt := t.cand, t.candAt
	t.cand = 0
	switch {
	case cand != 0 && bytes.HasPrefix(l, []byte("PC=")):
		t.sig = cand
		t.startReport(candAt)
	case bytes.HasPrefix(l, []byte("[signal ")):
		if s := signalAt(l[len("[signal "):]); s != 0 {
			t.sig = s
		}
	case bytes.HasPrefix(l, []byte("panic: ")), bytes.HasPrefix(l, []byte("fatal error: ")):
		t.sig = 0 // a new report; a signal, if any, is on the next line
		t.startReport(t.lineStart)
	default:
		t.cand, t.candAt = signalAt(l), t.lineStart
	}
}

// startReport notes that a report of the Go runtime starts at offset at.
// A report that goes on ("panic: ... [recovered]", then the panic it
// caused) keeps its first start.
func (t *outputTail) startReport(at int64) {
	if t.reportAt >= 0 && at-t.reportAt < reportHeadSize && at >= t.reportAt {
		return // within the report being kept
	}
	t.reportAt, t.report = at, t.report[:0]
}

// signalAt returns the signal whose name starts b and is followed by ": "
// ("SIGSEGV: segmentation violation"), or 0.
func signalAt(b []byte) syscall.Signal {
	name, _, ok := bytes.Cut(b, []byte(": "))
	if !ok || !bytes.HasPrefix(name, []byte("SIG")) {
		return 0
	}
	return signalByName[string(name)]
}

// SignalName returns the conventional name of sig ("SIGKILL"), or "signal
// N" for one without a name here. (syscall.Signal's String is a
// description, "killed", which does not read well after "killed by".)
func SignalName(sig syscall.Signal) string {
	if n, ok := signalNames[sig]; ok {
		return n
	}
	return "signal " + strconv.Itoa(int(sig))
}

// signalByName maps the names in signalNames back to their signals.
var signalByName = func() map[string]syscall.Signal {
	m := make(map[string]syscall.Signal, len(signalNames))
	for s, n := range signalNames {
		m[n] = s
	}
	return m
}()

// snapshot returns the end of the stream, stderrTailSize bytes at most,
// from the start of a line where it was cut; the signal the Go runtime's
// last report named (or 0); and where that report starts in the text
// returned (-1 if there is none). If the report started before the end
// that fits, the text is the report's start, "...", and as much of the end
// as fits after it.
func (t *outputTail) snapshot() (text string, sig syscall.Signal, report int) {
	if t == nil {
		return "", 0, -1
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	bufAt := t.total - int64(len(t.buf))
	if t.reportAt < 0 || t.reportAt >= bufAt || len(t.report) == 0 {
		b := fromLine(t.buf, bufAt > 0)
		report = -1
		if at := t.reportAt - (t.total - int64(len(b))); t.reportAt >= 0 && at >= 0 {
			report = int(at)
		}
		return string(b), t.sig, report
	}
	// The report's start is gone from the tail: put what was kept of it
	// before the last bytes.
	const gap = "\n...\n"
	keep := stderrTailSize - len(t.report) - len(gap)
	endAt := t.total - int64(keep)
	head := t.report
	if reportEnd := t.reportAt + int64(len(head)); reportEnd >= endAt {
		// Contiguous: no gap.
		return string(head[:endAt-t.reportAt]) + string(t.buf[len(t.buf)-keep:]), t.sig, 0
	}
	if i := bytes.LastIndexByte(head, '\n'); i > 0 {
		head = head[:i] // whole lines
	}
	return string(head) + gap + string(fromLine(t.buf[len(t.buf)-keep:], true)), t.sig, 0
}

// fromLine returns b from the start of its first whole line if cut says
// that b starts in the middle of one and a line starts in b's first KiB,
// else b.
func fromLine(b []byte, cut bool) []byte {
	if cut {
		if i := bytes.IndexByte(b[:min(len(b), 1<<10)], '\n'); i >= 0 && i+1 < len(b) {
			return b[i+1:]
		}
	}
	return b
}
