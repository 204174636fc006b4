package demo

import (
	"bytes"
	"context"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/procpool/procpool"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	procpool.Main() // the pools re-run this test binary as their workers
	ChildMain()     // and Processes runs it as its one-off children
	if os.Getenv("GORACE") == "" {
		// Under -race a Go program sleeps a second at exit by default.
		os.Setenv("GORACE", "atexit_sleep_ms=0")
	}
	goleak.VerifyTestMain(m)
}

// tiny is the sleep the tests give the demos: long enough for the workers'
// lines to be copied, short enough to keep the tests quick.
const tiny = time.Millisecond

var (
	workerLine  = regexp.MustCompile(`^worker (\d+): (\d+)$`)
	processLine = regexp.MustCompile(`^process (\d+): task (\d+)$`)
	resultLine  = regexp.MustCompile(`^(\d+)\t\(worker (\d+)\)$`)
	callbackRe  = regexp.MustCompile(`^callback in parent (\d+): result of worker (\d+) post-processed: (\d+\.\d)$`)
)

// pidArg is one line a task printed: the pid of its process and a number.
type pidArg struct{ pid, n int }

// matches returns the two numbers on each line of out that matches re, in
// the order they appear on the line.
func matches(out string, re *regexp.Regexp) []pidArg {
	var got []pidArg
	for _, line := range strings.Split(out, "\n") {
		m := re.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		a, _ := strconv.Atoi(m[1])
		b, _ := strconv.Atoi(m[2])
		got = append(got, pidArg{a, b})
	}
	return got
}

// checkWorkers checks that the task lines came from at most max processes,
// none of them this one, and that their numbers are want, in any order.
func checkWorkers(t *testing.T, what string, lines []pidArg, max int, want []int) map[int]bool {
	t.Helper()
	pids := map[int]bool{}
	var ns []int
	for _, l := range lines {
		if l.pid == os.Getpid() {
			t.Errorf("%s: a task ran in the parent (pid %d)", what, l.pid)
		}
		pids[l.pid] = true
		ns = append(ns, l.n)
	}
	if len(pids) == 0 || len(pids) > max {
		t.Errorf("%s: %d distinct pids %v, want 1 to %d", what, len(pids), pids, max)
	}
	slices.Sort(ns)
	want = slices.Sorted(slices.Values(want))
	if !slices.Equal(ns, want) {
		t.Errorf("%s: numbers printed %v, want %v", what, ns, want)
	}
	return pids
}

func span(from, to int) []int {
	var s []int
	for i := from; i <= to; i++ {
		s = append(s, i)
	}
	return s
}

func mustContain(t *testing.T, out string, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if !strings.Contains(out, p) {
			t.Errorf("output lacks %q:\n%s", p, out)
		}
	}
}

func TestProcesses(t *testing.T) {
	var buf bytes.Buffer
	if err := Processes(context.Background(), &buf, tiny); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	children := checkWorkers(t, "one process per task", matches(out, processLine), 10, span(0, 9))
	if len(children) != 10 {
		t.Errorf("the loop used %d distinct processes for 10 tasks, want 10", len(children))
	}
	pooled := checkWorkers(t, "pool", matches(out, workerLine), 2, span(0, 9))
	for pid := range pooled {
		if children[pid] {
			t.Errorf("pid %d is both a one-off child and a pool worker", pid)
		}
	}
	mustContain(t, out, "started 10 processes", "timings: one process per task:", "pool of 2:")
}

func TestApply(t *testing.T) {
	var buf bytes.Buffer
	if err := Apply(context.Background(), &buf, tiny); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	checkWorkers(t, "Apply and ApplyAsync", matches(out, workerLine), 2, append(span(0, 9), span(0, 9)...))
	mustContain(t, out, "Apply: 10 tasks", "ApplyAsync: 10 tasks", "timings: Apply ")
	if strings.Index(out, "Apply: 10") > strings.Index(out, "ApplyAsync: 10") {
		t.Errorf("ApplyAsync's part came before Apply's:\n%s", out)
	}
}

func TestMapAsync(t *testing.T) {
	var buf bytes.Buffer
	if err := MapAsync(context.Background(), &buf, tiny); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	checkWorkers(t, "Map and MapAsync", matches(out, workerLine), 2, append(span(1, 6), span(1, 6)...))
	mustContain(t, out, "Map over [1 2 3 4 5 6]", "MapAsync over [1 2 3 4 5 6]", "parent: MapAsync returned after", "timings: Map ")
}

func TestResults(t *testing.T) {
	var buf bytes.Buffer
	if err := Results(context.Background(), &buf, tiny); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	// ApplyAsync's results: i*i for i in 0..9, in submission order, each
	// from a worker.
	var values []int
	pids := map[int]bool{}
	for _, r := range matches(out, resultLine) { // value, then pid
		values = append(values, r.pid)
		if r.n == os.Getpid() {
			t.Errorf("result %d was computed in the parent", r.pid)
		}
		pids[r.n] = true
	}
	if want := []int{0, 1, 4, 9, 16, 25, 36, 49, 64, 81}; !slices.Equal(values, want) {
		t.Errorf("ApplyAsync results %v, want %v in this order:\n%s", values, want, out)
	}
	if len(pids) > 2 {
		t.Errorf("results from %d workers on a pool of 2", len(pids))
	}
	// Map: the tasks print their items; the results come in input order.
	checkWorkers(t, "Map", matches(out, workerLine), 2, span(1, 6))
	mustContain(t, out, "\n[1 4 9 16 25 36]\n", "timings: ")
}

func TestCallback(t *testing.T) {
	var buf bytes.Buffer
	if err := Callback(context.Background(), &buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	var got []string
	for _, line := range strings.Split(out, "\n") {
		m := callbackRe.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		if m[1] != strconv.Itoa(os.Getpid()) {
			t.Errorf("a callback ran in %s, not in the parent %d", m[1], os.Getpid())
		}
		if m[2] == strconv.Itoa(os.Getpid()) {
			t.Errorf("a task ran in the parent")
		}
		got = append(got, m[3])
	}
	slices.Sort(got)
	if want := []string{"0.0", "0.1", "0.4", "0.9", "1.6", "2.5", "3.6"}; !slices.Equal(got, want) {
		t.Errorf("callbacks printed %v, want %v (in any order):\n%s", got, want, out)
	}
	mustContain(t, out, "all callbacks ran: 0.0 0.1 0.4 0.9 1.6 2.5 3.6\n")
}

func TestSignalsNotInterrupted(t *testing.T) {
	var buf bytes.Buffer
	if err := Signals(context.Background(), &buf, tiny, 4); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	checkWorkers(t, "Signals", matches(out, workerLine), 2, span(0, 3))
	mustContain(t, out, "not interrupted: 4 tasks done", "Shutdown")
}

// interrupter is the test's Ctrl-C: it cancels the context as soon as a
// task has printed its line, that is while the tasks are running.
type interrupter struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	cancel context.CancelFunc
}

func (w *interrupter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if bytes.Contains(b, []byte("worker ")) {
		w.cancel()
	}
	return w.buf.Write(b)
}

func TestSignalsInterrupted(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := &interrupter{cancel: cancel}
	// Tasks far longer than any test: only the cancellation ends them.
	if err := Signals(ctx, w, time.Hour, 6); err != nil {
		t.Fatal(err)
	}
	out := w.buf.String()
	mustContain(t, out, "interrupted after", "0 tasks done, 6 cancelled", "Shutdown")
	if strings.Contains(out, "not interrupted") {
		t.Errorf("Signals did not notice the interruption:\n%s", out)
	}
}
