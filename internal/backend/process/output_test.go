package process

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// cgoReport is how the Go runtime reports a SIGSEGV in C code (abridged).
const cgoReport = `SIGSEGV: segmentation violation
PC=0x48b860 m=0 sigcode=1 addr=0x0
signal arrived during cgo execution

goroutine 1 gp=0x3ff26428a1e0 m=0 mp=0x55c440 [syscall]:
runtime.cgocall(0x48b840, 0x3ff264262f28)
`

// nilReport is how it reports a nil dereference in a goroutine (abridged).
const nilReport = `panic: runtime error: invalid memory address or nil pointer dereference
[signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x48b802]

goroutine 12 [running]:
main.main.func2()
`

// goroutines is a traceback of n goroutines, as the runtime appends to a
// report.
func goroutines(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "goroutine %d gp=0xc0000ba780 m=nil [select]:\nruntime.gopark(0x0?, 0x0?, 0x0?, 0x0?, 0x0?)\n\t/usr/local/go/src/runtime/proc.go:460 +0xce fp=0xc00003cf38\n\n", i+2)
	}
	return b.String()
}

// feed writes s to a new tail in pieces of n bytes.
func feed(s string, n int) *outputTail {
	t := newOutputTail()
	for len(s) > 0 {
		k := min(n, len(s))
		t.write([]byte(s[:k]))
		s = s[k:]
	}
	return t
}

func TestOutputTailSignals(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		sig        syscall.Signal
		report     string // what the text starts with where the report is said to start; "" for no report
	}{
		{"cgo", "some output\n" + cgoReport + goroutines(3), syscall.SIGSEGV, "SIGSEGV: segmentation violation\nPC="},
		{"nil dereference", nilReport, syscall.SIGSEGV, "panic: runtime error"},
		{"sent", "SIGABRT: abort\nPC=0x40816e m=0 sigcode=0\n\n" + goroutines(1), syscall.SIGABRT, "SIGABRT: abort\n"},
		{"fatal error", "fatal error: unexpected signal during runtime execution\n[signal SIGBUS: bus error code=0x2 addr=0x0 pc=0x0]\n", syscall.SIGBUS, "fatal error: "},
		{"a panic without a signal", "x\npanic: boom\n\ngoroutine 1 [running]:\n", 0, "panic: boom"},
		{"a signal name, not a report", "SIGSEGV: segmentation violation\nis what the C library said\n", 0, ""},
		{"a report, then a panic", cgoReport + "panic: later\n", 0, "SIGSEGV: "},
		{"a long traceback", cgoReport + goroutines(200), syscall.SIGSEGV, "SIGSEGV: segmentation violation\nPC="},
	} {
		for _, n := range []int{1, 7, 8 << 10} {
			text, sig, at := feed(tc.text, n).snapshot()
			if sig != tc.sig {
				t.Errorf("%s, in pieces of %d: signal %v, want %v", tc.name, n, sig, tc.sig)
			}
			if len(text) > stderrTailSize {
				t.Errorf("%s, in pieces of %d: %d bytes kept, want %d at most", tc.name, n, len(text), stderrTailSize)
			}
			switch {
			case tc.report == "" && at != -1:
				t.Errorf("%s, in pieces of %d: a report at %d, want none", tc.name, n, at)
			case tc.report != "" && (at < 0 || !strings.HasPrefix(text[at:], tc.report)):
				t.Errorf("%s, in pieces of %d: report at %d, want it to start with %q", tc.name, n, at, tc.report)
			}
		}
	}
}

// The start of a report stays at the start of the tail when the traceback
// after it is longer than the tail; the end of the traceback follows it.
func TestOutputTailKeepsReportStart(t *testing.T) {
	long := goroutines(200)
	for _, n := range []int{1, 100, 8 << 10, 1 << 20} {
		text, sig, at := feed("earlier output\n"+cgoReport+long, n).snapshot()
		if sig != syscall.SIGSEGV || at != 0 || !strings.HasPrefix(text, cgoReport) {
			t.Fatalf("pieces of %d: signal %v, report at %d, text starts %q", n, sig, at, text[:min(len(text), 80)])
		}
		if !strings.HasSuffix(text, long[len(long)-1000:]) || !strings.Contains(text, "\n...\n") {
			t.Fatalf("pieces of %d: the end is not there after a gap", n)
		}
		if len(text) > stderrTailSize {
			t.Fatalf("pieces of %d: %d bytes", n, len(text))
		}
	}
	// A report whose start is still in the tail: as it was written, and
	// where the report starts.
	text, _, at := feed("earlier output\n"+nilReport, 5).snapshot()
	if text != "earlier output\n"+nilReport || at != len("earlier output\n") {
		t.Fatalf("short report: %q at %d", text, at)
	}
}

// Without a report, the tail is the last bytes, from a line's start.
func TestOutputTailEnd(t *testing.T) {
	var b strings.Builder
	for i := range 2000 {
		fmt.Fprintf(&b, "line %d\n", i)
	}
	text, sig, at := feed(b.String(), 333).snapshot()
	if sig != 0 || at != -1 || len(text) > stderrTailSize || !strings.HasPrefix(text, "line ") || !strings.HasSuffix(text, "line 1999\n") {
		t.Fatalf("tail: %d bytes, signal %v, report %d, starts %q", len(text), sig, at, text[:20])
	}
	if text, _, _ := feed("short", 2).snapshot(); text != "short" {
		t.Fatalf("short: %q", text)
	}
	if text, sig, at := (*outputTail)(nil).snapshot(); text != "" || sig != 0 || at != -1 {
		t.Fatal("nil tail")
	}
}

// lockedBuilder is a writer safe for the copier and the test at once.
type lockedBuilder struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuilder) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuilder) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// An output copy ends, once asked, with what its pipe holds, even while
// another process (here: the test's own write end) keeps the pipe open.
func TestOutputCopyEndsWithPipeHeld(t *testing.T) {
	var dst lockedBuilder
	tail := newOutputTail()
	c, w, err := newOutputCopy(&dst, []byte("[w] "), tail)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close() // held all along: no end of file
	go c.run()
	// A long line that comes whole is written whole; one that has no end
	// yet is written once it is longer than maxPrefixedLine, and goes on
	// on a line of its own. The text is all there, each line prefixed.
	long := strings.Repeat("x", maxPrefixedLine+10)
	in := "one\ntwo\n" + long + "\n" + long + long + "\nunended"
	if _, err := w.WriteString(in); err != nil {
		t.Fatal(err)
	}
	endOutputs([]*outputCopy{c})
	<-c.done
	got := dst.String()
	if !strings.HasPrefix(got, "[w] one\n[w] two\n[w] "+long+"\n[w] ") || !strings.HasSuffix(got, "\n[w] unended\n") {
		t.Fatalf("copied %.100q ... %.100q", got, got[max(0, len(got)-100):])
	}
	var text strings.Builder
	for _, l := range strings.Split(strings.TrimSuffix(got, "\n"), "\n") {
		s, ok := strings.CutPrefix(l, "[w] ")
		if !ok {
			t.Fatalf("a line without the prefix: %.50q", l)
		}
		text.WriteString(s)
	}
	if want := strings.ReplaceAll(in, "\n", ""); text.String() != want {
		t.Fatalf("copied text differs: %d bytes, want %d", text.Len(), len(want))
	}
	if text, _, _ := tail.snapshot(); !strings.HasSuffix(text, "x\nunended") || len(text) != stderrTailSize {
		t.Fatalf("tail: %q", text)
	}
	if _, err := w.WriteString("later"); err == nil {
		t.Fatal("a write after the end succeeded: the read end is open")
	}
}

// A writer that fails is dropped; the copy goes on reading (the worker must
// not block), and the tail still gets everything.
func TestOutputCopyFailingWriter(t *testing.T) {
	tail := newOutputTail()
	c, w, err := newOutputCopy(failingWriter{}, nil, tail)
	if err != nil {
		t.Fatal(err)
	}
	go c.run()
	w.WriteString("a\n")
	w.WriteString("b\n")
	w.Close()
	<-c.done
	if text, _, _ := tail.snapshot(); text != "a\nb\n" {
		t.Fatalf("tail: %q", text)
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, os.ErrClosed }
