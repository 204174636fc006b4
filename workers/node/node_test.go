//go:build unix

package node_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/procpool/procpool"
	"github.com/procpool/procpool/codec"
	"github.com/procpool/procpool/internal/testenv"
	"go.uber.org/goleak"
)

// The functions of testdata/worker.js.
var (
	square    = procpool.Declare[int, int]("t.square")
	upper     = procpool.Declare[string, string]("t.upper")
	setPrefix = procpool.Declare[string, any]("t.init")
	double    = procpool.Declare[int, int]("t.double")
	echo      = procpool.Declare[any, any]("t.echo")
	pidOf     = procpool.Declare[int, int]("t.pid")
	fail      = procpool.Declare[failArg, int]("t.fail")
	failOdd   = procpool.Declare[int, int]("t.failOdd")
	exit      = procpool.Declare[int, int]("t.exit")
	spin      = procpool.Declare[int, int]("t.spin")
	alloc     = procpool.Declare[int, int]("t.alloc")
	waitAbort = procpool.Declare[abortArg, int]("t.waitAbort")
	sumBytes  = procpool.Declare[[]byte, byteSum]("t.bytes")
	sumB64    = procpool.Declare[[]byte, byteSum]("t.b64")
	logLine   = procpool.Declare[string, int]("t.log")
	child     = procpool.Declare[int, childReport]("t.child")
	orphan    = procpool.Declare[int, int]("t.orphan")
	mark      = procpool.Declare[markArg, int]("t.mark")
	gate      = procpool.Declare[gateArg, int]("t.gate")
	limits    = procpool.Declare[int, string]("t.limits")
	ignore    = procpool.Declare[gateArg, int]("t.ignore")
	typed     = procpool.Declare[record, record]("t.echo2")
)

// confEcho is served by test/conformance_worker.js only.
var confEcho = procpool.Declare[any, any]("conf.echo")

// The sentinels the worker's registerError keys stand for.
var (
	errQuota = procpool.RegisterError("example.com/app.ErrQuota", errors.New("quota exceeded"))
	errBusy  = procpool.RegisterError("example.com/app.ErrBusy", errors.New("busy"))
)

type failArg struct {
	Kind string `json:"kind" cbor:"kind"`
	Msg  string `json:"msg" cbor:"msg"`
}

type byteSum struct {
	N   int    `json:"n" cbor:"n"`
	Sum uint32 `json:"sum" cbor:"sum"`
}

type childReport struct {
	Mine     []string `json:"mine" cbor:"mine"`
	ChildFds []string `json:"childFds" cbor:"childFds"`
	ChildEnv []string `json:"childEnv" cbor:"childEnv"`
}

type abortArg struct {
	Started string `json:"started" cbor:"started"`
	Aborted string `json:"aborted" cbor:"aborted"`
}

type gateArg struct {
	Started string `json:"started" cbor:"started"`
	Gate    string `json:"gate" cbor:"gate"`
}

type markArg struct {
	File string `json:"file" cbor:"file"`
	Key  int    `json:"key" cbor:"key"`
}

type record struct {
	Name  string            `json:"name" cbor:"name"`
	Big   int64             `json:"big" cbor:"big"`
	Neg   int64             `json:"neg" cbor:"neg"`
	U     uint64            `json:"u" cbor:"u"`
	F     float64           `json:"f" cbor:"f"`
	Raw   []byte            `json:"raw" cbor:"raw"`
	List  []int             `json:"list" cbor:"list"`
	Map   map[string]string `json:"map" cbor:"map"`
	Ok    bool              `json:"ok" cbor:"ok"`
	Ptr   *int              `json:"ptr" cbor:"ptr"`
	When  time.Time         `json:"when" cbor:"when"`
	Runes string            `json:"runes" cbor:"runes"`
}

func TestMain(m *testing.M) {
	procpool.Main()
	goleak.VerifyTestMain(m)
}

// codecs are the codecs each behaviour is checked with.
var codecs = []codec.Codec{codec.CBOR, codec.JSON}

func nodePath(t *testing.T) string {
	t.Helper()
	return testenv.LookPath(t, "node", "the Node worker")
}

// newPool starts a pool of testdata/worker.js with c and opts, closed when
// the test ends.
func newPool(t *testing.T, c codec.Codec, opts ...procpool.Option) *procpool.Pool {
	t.Helper()
	p, err := procpool.New(append([]procpool.Option{
		procpool.WithCommand(nodePath(t), "testdata/worker.js"),
		procpool.WithCodec(c),
		procpool.WithProcesses(1),
		procpool.WithEnv("GORACE=atexit_sleep_ms=0"),
	}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return p
}

func forEachCodec(t *testing.T, f func(t *testing.T, c codec.Codec)) {
	for _, c := range codecs {
		t.Run(c.Name(), func(t *testing.T) { f(t, c) })
	}
}

func TestApply(t *testing.T) {
	forEachCodec(t, func(t *testing.T, c codec.Codec) {
		p := newPool(t, c)
		ctx := context.Background()
		for i := -3; i < 20; i++ {
			got, err := procpool.Apply(ctx, p, square, i)
			if err != nil || got != i*i {
				t.Fatalf("Apply(square, %d) = %d, %v; want %d", i, got, err, i*i)
			}
		}
		s, err := procpool.Apply(ctx, p, upper, "héllo")
		if err != nil || s != "HÉLLO" {
			t.Fatalf("Apply(upper) = %q, %v", s, err)
		}
		pid, err := procpool.Apply(ctx, p, pidOf, 0)
		if err != nil {
			t.Fatal(err)
		}
		if ws := p.Stats().Workers; len(ws) != 1 || ws[0].Pid != pid || pid == os.Getpid() {
			t.Fatalf("the task ran in process %d; the pool's workers are %+v", pid, ws)
		}
	})
}

func TestAsyncFunction(t *testing.T) {
	forEachCodec(t, func(t *testing.T, c codec.Codec) {
		p := newPool(t, c, procpool.WithProcesses(2))
		ctx := context.Background()
		got, err := procpool.Apply(ctx, p, double, 21)
		if err != nil || got != 42 {
			t.Fatalf("Apply(double, 21) = %d, %v", got, err)
		}
		// Pipelined: several tasks wait in each worker's pipe behind an
		// async one, and still answer in order.
		futs := make([]*procpool.Future[int], 200)
		for i := range futs {
			if futs[i], err = procpool.ApplyAsync(ctx, p, double, i); err != nil {
				t.Fatal(err)
			}
		}
		for i, f := range futs {
			if v, err := f.Get(ctx); err != nil || v != 2*i {
				t.Fatalf("double(%d) = %d, %v", i, v, err)
			}
		}
		// An async function in chunks.
		xs := make([]int, 1000)
		for i := range xs {
			xs[i] = i
		}
		ys, err := procpool.Map(ctx, p, double, xs, procpool.ChunkSize(64))
		if err != nil {
			t.Fatal(err)
		}
		for i, y := range ys {
			if y != 2*i {
				t.Fatalf("Map(double)[%d] = %d", i, y)
			}
		}
	})
}

func TestApplyAsyncCallbacks(t *testing.T) {
	forEachCodec(t, func(t *testing.T, c codec.Codec) {
		p := newPool(t, c, procpool.WithProcesses(2))
		ctx := context.Background()
		var mu sync.Mutex
		got := map[int]int{}
		var errs []error
		const n = 100
		futs := make([]*procpool.Future[int], 0, n+1)
		for i := range n {
			f, err := procpool.ApplyAsync(ctx, p, square, i, procpool.Callback(func(v int) {
				mu.Lock()
				got[i] = v
				mu.Unlock()
			}), procpool.ErrorCallback(func(err error) {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}))
			if err != nil {
				t.Fatal(err)
			}
			futs = append(futs, f)
		}
		bad, err := procpool.ApplyAsync(ctx, p, fail, failArg{"type", "callback"}, procpool.Callback(func(int) {
			t.Error("the success callback ran for a failed task")
		}), procpool.ErrorCallback(func(err error) {
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		}))
		if err != nil {
			t.Fatal(err)
		}
		futs = append(futs, bad)
		for _, f := range futs {
			<-f.Done()
		}
		// Callbacks run before Close returns.
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(got) != n {
			t.Fatalf("%d success callbacks, want %d", len(got), n)
		}
		for i := range n {
			if got[i] != i*i {
				t.Errorf("callback for %d got %d", i, got[i])
			}
		}
		var re *procpool.RemoteError
		if len(errs) != 1 || !errors.As(errs[0], &re) || re.Type != "TypeError" || re.Message != "callback" {
			t.Fatalf("error callbacks got %v; want one TypeError", errs)
		}
	})
}

func TestMap(t *testing.T) {
	forEachCodec(t, func(t *testing.T, c codec.Codec) {
		p := newPool(t, c, procpool.WithProcesses(2))
		ctx := context.Background()
		xs := make([]int, 5000)
		for i := range xs {
			xs[i] = i - 2500
		}
		for _, k := range []int{0, 1, 7, 5000} {
			ys, err := procpool.Map(ctx, p, square, xs, procpool.ChunkSize(k))
			if err != nil {
				t.Fatalf("ChunkSize(%d): %v", k, err)
			}
			for i, y := range ys {
				if y != xs[i]*xs[i] {
					t.Fatalf("ChunkSize(%d): square(%d) = %d", k, xs[i], y)
				}
			}
		}
		fut, err := procpool.MapAsync(ctx, p, upper, []string{"a", "b", "c"})
		if err != nil {
			t.Fatal(err)
		}
		if ss, err := fut.Get(ctx); err != nil || strings.Join(ss, "") != "ABC" {
			t.Fatalf("MapAsync(upper) = %q, %v", ss, err)
		}
	})
}

// TestMapItemErrors checks a chunk's per-item errors: each failed item
// gets its own *RemoteError with its index, the others their results.
func TestMapItemErrors(t *testing.T) {
	forEachCodec(t, func(t *testing.T, c codec.Codec) {
		p := newPool(t, c)
		ctx := context.Background()
		xs := []int{0, 1, 2, 3, 4, 5, 6}
		i := 0
		for v, err := range procpool.Imap(ctx, p, failOdd, slices.Values(xs), procpool.ChunkSize(4)) {
			if xs[i]%2 == 1 {
				var re *procpool.RemoteError
				var ie *procpool.ItemError
				if !errors.As(err, &re) || re.Type != "RangeError" || re.Message != fmt.Sprintf("odd %d", xs[i]) || !errors.As(err, &ie) || ie.Index != i {
					t.Fatalf("item %d: %v, %v; want a RangeError with its index", i, v, err)
				}
			} else if err != nil || v != 10*xs[i] {
				t.Fatalf("item %d: %d, %v", i, v, err)
			}
			i++
		}
		if i != len(xs) {
			t.Fatalf("Imap yielded %d items, want %d", i, len(xs))
		}
	})
}

func TestImap(t *testing.T) {
	forEachCodec(t, func(t *testing.T, c codec.Codec) {
		p := newPool(t, c, procpool.WithProcesses(2))
		ctx := context.Background()
		seq := func(yield func(int) bool) {
			for i := range 300 {
				if !yield(i) {
					return
				}
			}
		}
		i := 0
		for v, err := range procpool.Imap(ctx, p, square, seq, procpool.ChunkSize(16)) {
			if err != nil || v != i*i {
				t.Fatalf("Imap item %d: %d, %v", i, v, err)
			}
			i++
		}
		if i != 300 {
			t.Fatalf("Imap yielded %d items", i)
		}
		got := map[int]int{}
		for v, err := range procpool.ImapUnordered(ctx, p, double, seq, procpool.ChunkSize(10)) {
			if err != nil {
				t.Fatal(err)
			}
			got[v]++
		}
		if len(got) != 300 {
			t.Fatalf("ImapUnordered yielded %d distinct results, want 300", len(got))
		}
		for i := range 300 {
			if got[2*i] != 1 {
				t.Fatalf("ImapUnordered yielded double(%d) %d times", i, got[2*i])
			}
		}
	})
}

func TestThrownErrors(t *testing.T) {
	forEachCodec(t, func(t *testing.T, c codec.Codec) {
		p := newPool(t, c)
		ctx := context.Background()
		for _, tc := range []struct {
			kind, typ string
			stack     bool
		}{
			{"plain", "Error", true},
			{"type", "TypeError", true},
			{"range", "RangeError", true},
			{"async", "RangeError", true},
			{"string", "string", false},
		} {
			_, err := procpool.Apply(ctx, p, fail, failArg{tc.kind, "boom " + tc.kind})
			var re *procpool.RemoteError
			if !errors.As(err, &re) {
				t.Fatalf("%s: %v; want a *RemoteError", tc.kind, err)
			}
			if re.Type != tc.typ || re.Message != "boom "+tc.kind || re.Func != "t.fail" || re.Code != "" {
				t.Errorf("%s: %+v; want type %s, message %q", tc.kind, re, tc.typ, "boom "+tc.kind)
			}
			if tc.stack != strings.Contains(re.Stack, "worker.js") {
				t.Errorf("%s: stack %q", tc.kind, re.Stack)
			}
			if tc.stack && !strings.HasPrefix(re.Stack, tc.typ+": boom") {
				t.Errorf("%s: the stack %q should be err.stack", tc.kind, re.Stack)
			}
		}
		// The worker lives on after its tasks' errors.
		if v, err := procpool.Apply(ctx, p, square, 3); err != nil || v != 9 {
			t.Fatalf("after the errors: %d, %v", v, err)
		}
		if n := p.Stats().WorkersStarted; n != 1 {
			t.Errorf("%d workers started; errors must not end a worker", n)
		}
	})
}

func TestErrorIdentity(t *testing.T) {
	forEachCodec(t, func(t *testing.T, c codec.Codec) {
		p := newPool(t, c)
		ctx := context.Background()
		_, err := procpool.Apply(ctx, p, fail, failArg{"quota", "over quota"})
		var re *procpool.RemoteError
		if !errors.Is(err, errQuota) || !errors.As(err, &re) || errors.Is(err, errBusy) {
			t.Fatalf("an error caused by a QuotaError: %v; want it to match ErrQuota only", err)
		}
		if !slices.Equal(re.Chain, []string{"Error", "QuotaError"}) || re.Message != "wrapped" {
			t.Errorf("chain %q, message %q", re.Chain, re.Message)
		}
		_, err = procpool.Apply(ctx, p, fail, failArg{"code", "busy now"})
		if !errors.Is(err, errBusy) || errors.Is(err, errQuota) {
			t.Fatalf("an error with code EBUSYAPP: %v; want it to match ErrBusy only", err)
		}
		_, err = procpool.Apply(ctx, p, fail, failArg{"enoent", filepath.Join(t.TempDir(), "missing")})
		if !errors.Is(err, fs.ErrNotExist) || !errors.As(err, &re) || !strings.Contains(re.Message, "ENOENT") {
			t.Fatalf("reading a missing file: %v; want fs.ErrNotExist", err)
		}
		_, err = procpool.Apply(ctx, p, fail, failArg{"plain", "nothing"})
		if errors.Is(err, errQuota) || errors.Is(err, errBusy) || errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("a plain error matched a sentinel: %v", err)
		}
	})
}

// TestCrash checks that a worker that exits under a task fails that task
// alone with a *WorkerExitError, and that every other task runs exactly
// once.
func TestCrash(t *testing.T) {
	forEachCodec(t, func(t *testing.T, c codec.Codec) {
		p := newPool(t, c, procpool.WithProcesses(2))
		ctx := context.Background()
		file := filepath.Join(t.TempDir(), "marks")
		var futs []*procpool.Future[int]
		for i := range 40 {
			f, err := procpool.ApplyAsync(ctx, p, mark, markArg{file, i})
			if err != nil {
				t.Fatal(err)
			}
			futs = append(futs, f)
			if i == 10 {
				_, err := procpool.Apply(ctx, p, exit, 3)
				var we *procpool.WorkerExitError
				if !errors.As(err, &we) || we.ExitCode != 3 || we.Reason != procpool.ReasonCrashed {
					t.Fatalf("process.exit(3) in a task: %v; want a *WorkerExitError with exit code 3", err)
				}
			}
		}
		for i, f := range futs {
			if v, err := f.Get(ctx); err != nil || v != i {
				t.Fatalf("mark %d: %d, %v", i, v, err)
			}
		}
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		count := map[string]int{}
		for _, line := range strings.Fields(string(data)) {
			count[line]++
		}
		for i := range 40 {
			if n := count[strconv.Itoa(i)]; n != 1 {
				t.Errorf("task %d ran %d times, want 1", i, n)
			}
		}
		if n := p.Stats().WorkerExits[procpool.ReasonCrashed]; n != 1 {
			t.Errorf("%d crashed workers, want 1", n)
		}
	})
}

// TestHang checks that a task that never yields is ended at its timeout,
// with its worker, and that the pool goes on.
func TestHang(t *testing.T) {
	p := newPool(t, codec.CBOR, procpool.WithKillGrace(50*time.Millisecond))
	ctx := context.Background()
	before, err := procpool.Apply(ctx, p, pidOf, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = procpool.Apply(ctx, p, spin, 0, procpool.Timeout(200*time.Millisecond))
	var we *procpool.WorkerExitError
	if !errors.Is(err, procpool.ErrTimeout) || !errors.As(err, &we) || we.Reason != procpool.ReasonTimeout || we.Pid != before {
		t.Fatalf("a spinning task with a timeout: %v; want ErrTimeout and a *WorkerExitError for worker %d", err, before)
	}
	after, err := procpool.Apply(ctx, p, pidOf, 0)
	if err != nil || after == before {
		t.Fatalf("after the hang: pid %d (before %d), %v; want a new worker", after, before, err)
	}
}

// TestCancelReachesSignal cancels a running async task through its
// caller's context: the stop comes on the control pipe, the function's
// AbortSignal fires (it writes a file), and the worker lives on.
func TestCancelReachesSignal(t *testing.T) {
	forEachCodec(t, func(t *testing.T, c codec.Codec) {
		p := newPool(t, c, procpool.WithKillGrace(10*time.Second))
		before, err := procpool.Apply(context.Background(), p, pidOf, 0)
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		arg := abortArg{filepath.Join(dir, "started"), filepath.Join(dir, "aborted")}
		ctx, cancel := context.WithCancel(context.Background())
		fut, err := procpool.ApplyAsync(ctx, p, waitAbort, arg)
		if err != nil {
			t.Fatal(err)
		}
		// Cancel once the task runs.
		for !exists(arg.Started) {
			time.Sleep(time.Millisecond)
		}
		cancel()
		if _, err := fut.Get(context.Background()); !errors.Is(err, context.Canceled) {
			t.Fatalf("Get after cancel: %v; want context.Canceled", err)
		}
		// The stop may reach the worker only after the Future ended: wait
		// for the worker to answer the stopped task.
		for p.Stats().Workers[0].InFlight != 0 {
			time.Sleep(time.Millisecond)
		}
		data, err := os.ReadFile(arg.Aborted)
		if err != nil || string(data) != "AbortError" {
			t.Fatalf("the abort handler wrote %q, %v; want AbortError", data, err)
		}
		after, err := procpool.Apply(context.Background(), p, pidOf, 0)
		if err != nil || after != before {
			t.Fatalf("after the cancel: pid %d, %v; want the same worker %d", after, err, before)
		}
		if s := p.Stats(); s.StoppedClean != 1 || s.WorkersStarted != 1 {
			t.Errorf("StoppedClean %d, WorkersStarted %d; want 1 and 1", s.StoppedClean, s.WorkersStarted)
		}
	})
}

// TestDeadlineReachesSignal: a task's timeout aborts its signal with a
// TimeoutError; the task that fails with it ends with ErrTimeout, and its
// worker lives on.
func TestDeadlineReachesSignal(t *testing.T) {
	forEachCodec(t, func(t *testing.T, c codec.Codec) {
		p := newPool(t, c, procpool.WithKillGrace(10*time.Second))
		ctx := context.Background()
		before, err := procpool.Apply(ctx, p, pidOf, 0)
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		arg := abortArg{filepath.Join(dir, "started"), filepath.Join(dir, "aborted")}
		_, err = procpool.Apply(ctx, p, waitAbort, arg, procpool.Timeout(100*time.Millisecond))
		if !errors.Is(err, procpool.ErrTimeout) {
			t.Fatalf("a task that waits for its signal, with a timeout: %v; want ErrTimeout", err)
		}
		if data, err := os.ReadFile(arg.Aborted); err != nil || string(data) != "TimeoutError" {
			t.Fatalf("the abort handler wrote %q, %v; want TimeoutError", data, err)
		}
		after, err := procpool.Apply(ctx, p, pidOf, 0)
		if err != nil || after != before {
			t.Fatalf("after the timeout: pid %d, %v; want the same worker %d", after, err, before)
		}
	})
}

// TestStopIgnored: an async task that ignores its signal is ended with its
// worker, which exits by itself (status 143) once the kill grace has
// passed, before the pool would kill it (2 × grace + 50 ms).
func TestStopIgnored(t *testing.T) {
	p := newPool(t, codec.CBOR, procpool.WithKillGrace(500*time.Millisecond))
	ctx := context.Background()
	before, err := procpool.Apply(ctx, p, pidOf, 0)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	_, err = procpool.Apply(ctx, p, ignore, gateArg{Started: filepath.Join(dir, "started")}, procpool.Timeout(100*time.Millisecond))
	var we *procpool.WorkerExitError
	if !errors.Is(err, procpool.ErrTimeout) || !errors.As(err, &we) || we.Pid != before || we.ExitCode != 143 {
		t.Fatalf("a task that ignores its timeout: %v (%#v); want ErrTimeout and worker %d's exit with status 143", err, we, before)
	}
	if after, err := procpool.Apply(ctx, p, pidOf, 0); err != nil || after == before {
		t.Fatalf("after the stop: pid %d, %v; want a new worker", after, err)
	}
}

// TestSIGTERM: SIGTERM from outside aborts the running task's signal (its
// cleanup runs), and the worker exits with status 143.
func TestSIGTERM(t *testing.T) {
	p := newPool(t, codec.CBOR, procpool.WithKillGrace(10*time.Second))
	ctx := context.Background()
	pid, err := procpool.Apply(ctx, p, pidOf, 0)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	arg := abortArg{filepath.Join(dir, "started"), filepath.Join(dir, "aborted")}
	fut, err := procpool.ApplyAsync(ctx, p, waitAbort, arg)
	if err != nil {
		t.Fatal(err)
	}
	for !exists(arg.Started) {
		time.Sleep(time.Millisecond)
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	_, err = fut.Get(ctx)
	var we *procpool.WorkerExitError
	if !errors.As(err, &we) || we.Pid != pid || we.ExitCode != 143 {
		t.Fatalf("the task of a worker that got SIGTERM: %v; want worker %d's exit with status 143", err, pid)
	}
	if data, err := os.ReadFile(arg.Aborted); err != nil || string(data) != "AbortError" {
		t.Fatalf("the abort handler wrote %q, %v; want AbortError", data, err)
	}
}

// TestSignalsIgnored: SIGINT (Ctrl-C is the parent's) and a SIGWINCH
// while the parent lives (a terminal's resize) leave the worker serving.
func TestSignalsIgnored(t *testing.T) {
	p := newPool(t, codec.CBOR)
	ctx := context.Background()
	pid, err := procpool.Apply(ctx, p, pidOf, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGWINCH} {
		if err := syscall.Kill(pid, sig); err != nil {
			t.Fatal(err)
		}
		// A signal that killed the worker would have done so before it
		// read this task.
		if got, err := procpool.Apply(ctx, p, pidOf, 0); err != nil || got != pid {
			t.Fatalf("after %v: pid %d, %v; want worker %d serving", sig, got, err, pid)
		}
	}
}

// TestRlimit: WithRlimit reaches a Node worker (through prlimit(1)).
func TestRlimit(t *testing.T) {
	testenv.LookPath(t, "prlimit", "resource limits in a Node worker (it sets them with prlimit(1))")
	p := newPool(t, codec.CBOR, procpool.WithRlimit(syscall.RLIMIT_NOFILE, 123, 456))
	if got, err := procpool.Apply(context.Background(), p, limits, 0); err != nil || got != "123 456" {
		t.Fatalf("the worker's limits on open files: %q, %v; want 123 456", got, err)
	}
	_, err := procpool.New(procpool.WithCommand(nodePath(t), "testdata/worker.js"), procpool.WithProcesses(1),
		procpool.WithRlimit(syscall.RLIMIT_NOFILE, 1<<40, 1<<40), procpool.WithStderr(io.Discard))
	var se *procpool.StartError
	if !errors.As(err, &se) || !strings.Contains(se.Stderr, "cannot set resource limits") {
		t.Fatalf("New with a limit above the hard one: %v; want a *StartError with the worker's message", err)
	}
}

// TestCancelQueued: tasks cancelled while they wait in the worker's pipe
// are skipped (they never run); the others run exactly once.
func TestCancelQueued(t *testing.T) {
	forEachCodec(t, func(t *testing.T, c codec.Codec) {
		p := newPool(t, c)
		ctx := context.Background()
		dir := t.TempDir()
		g := gateArg{filepath.Join(dir, "started"), filepath.Join(dir, "gate")}
		blocker, err := procpool.ApplyAsync(ctx, p, gate, g)
		if err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(dir, "marks")
		var futs []*procpool.Future[int]
		for i := range 10 {
			f, err := procpool.ApplyAsync(ctx, p, mark, markArg{file, i})
			if err != nil {
				t.Fatal(err)
			}
			futs = append(futs, f)
		}
		for !exists(g.Started) {
			time.Sleep(time.Millisecond)
		}
		for i := 0; i < 10; i += 2 {
			futs[i].Cancel()
		}
		if err := os.WriteFile(g.Gate, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := blocker.Get(ctx); err != nil {
			t.Fatal(err)
		}
		for i, f := range futs {
			v, err := f.Get(ctx)
			if i%2 == 0 && !errors.Is(err, context.Canceled) || i%2 == 1 && (err != nil || v != i) {
				t.Fatalf("task %d: %d, %v", i, v, err)
			}
		}
		// The answers to the cancelled tasks come before the pool is idle.
		for p.Stats().Workers[0].InFlight != 0 {
			time.Sleep(time.Millisecond)
		}
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		count := map[string]int{}
		for _, line := range strings.Fields(string(data)) {
			count[line]++
		}
		for i := range 10 {
			if want := i % 2; count[strconv.Itoa(i)] != want {
				t.Errorf("task %d ran %d times, want %d", i, count[strconv.Itoa(i)], want)
			}
		}
	})
}

func TestInitializer(t *testing.T) {
	forEachCodec(t, func(t *testing.T, c codec.Codec) {
		p := newPool(t, c, procpool.WithProcesses(2), procpool.WithInitializer(setPrefix, "> "))
		got, err := procpool.Map(context.Background(), p, upper, []string{"a", "b", "c", "d"}, procpool.ChunkSize(1))
		if err != nil || strings.Join(got, ",") != "> A,> B,> C,> D" {
			t.Fatalf("Map(upper) after the initializer = %q, %v", got, err)
		}
	})
}

func TestMaxTasksPerWorker(t *testing.T) {
	p := newPool(t, codec.CBOR, procpool.WithMaxTasksPerWorker(3))
	count := map[int]int{}
	var order []int
	for range 9 {
		pid, err := procpool.Apply(context.Background(), p, pidOf, 0)
		if err != nil {
			t.Fatal(err)
		}
		if count[pid] == 0 {
			order = append(order, pid)
		}
		count[pid]++
	}
	if len(order) != 3 {
		t.Fatalf("9 tasks ran on %d workers %v; want 3", len(order), count)
	}
	for _, pid := range order {
		if count[pid] != 3 {
			t.Fatalf("worker %d ran %d tasks, want 3 (%v)", pid, count[pid], count)
		}
	}
}

// TestSharedMemory sends arguments of 64 KiB and more, which travel
// through the shared-memory segment, and checks every byte arrived.
// TestMemoryLimit: a task that holds more than WithMaxWorkerMemory ends
// with its worker, for the memory reason, and the next task runs on a new
// worker.
func TestMemoryLimit(t *testing.T) {
	ctx := context.Background()
	p := newPool(t, codec.CBOR, procpool.WithMaxWorkerMemory(200<<20))
	before, err := procpool.Apply(ctx, p, pidOf, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = procpool.Apply(ctx, p, alloc, 400)
	var we *procpool.WorkerExitError
	if !errors.As(err, &we) || we.Reason != procpool.ReasonMemory || we.Pid != before {
		t.Fatalf("t.alloc(400 MiB): %v; want a *WorkerExitError of worker %d for the memory limit", err, before)
	}
	after, err := procpool.Apply(ctx, p, pidOf, 0)
	if err != nil || after == before {
		t.Fatalf("the next task: pid %d, %v; want a new worker", after, err)
	}
	if s := p.Stats(); s.WorkerExits[procpool.ReasonMemory] != 1 {
		t.Errorf("exits %v, want one for memory", s.WorkerExits)
	}
}

func TestSharedMemory(t *testing.T) {
	forEachCodec(t, func(t *testing.T, c codec.Codec) {
		p := newPool(t, c)
		fn := sumBytes
		if c.Name() == "json" {
			fn = sumB64
		}
		for _, n := range []int{100, 64 << 10, 3 << 20} {
			b := make([]byte, n)
			var sum uint32
			for i := range b {
				b[i] = byte(i*7 + i>>8)
				sum += uint32(b[i])
			}
			got, err := procpool.Apply(context.Background(), p, fn, b)
			if err != nil || got.N != n || got.Sum != sum {
				t.Fatalf("%d bytes: %+v, %v; want n %d, sum %d", n, got, err, n, sum)
			}
		}
	})
}

func TestEcho(t *testing.T) {
	forEachCodec(t, func(t *testing.T, c codec.Codec) {
		p := newPool(t, c)
		seven := 7
		in := record{
			Name: "x", Big: math.MaxInt64, Neg: math.MinInt64, U: math.MaxUint64, F: 1.5,
			Raw: []byte{0, 1, 2, 255}, List: []int{1, -2, 3}, Map: map[string]string{"k": "v", "__proto__": "p"},
			Ok: true, Ptr: &seven, When: time.Date(2024, 5, 6, 7, 8, 9, 123000000, time.UTC), Runes: "a€😀",
		}
		out, err := procpool.Apply(context.Background(), p, typed, in)
		if err != nil {
			t.Fatal(err)
		}
		if out.Name != in.Name || out.Big != in.Big || out.Neg != in.Neg || out.U != in.U || out.F != in.F ||
			!bytes.Equal(out.Raw, in.Raw) || !slices.Equal(out.List, in.List) || len(out.Map) != 2 || out.Map["__proto__"] != "p" ||
			!out.Ok || out.Ptr == nil || *out.Ptr != 7 || !out.When.Equal(in.When) || out.Runes != in.Runes {
			t.Fatalf("echo of\n%+v\ngave\n%+v", in, out)
		}
		// Into any: a list of a string, a float and a map.
		v, err := procpool.Apply(context.Background(), p, echo, any([]any{"a", 1.5, map[string]any{"k": true}}))
		l, isList := v.([]any)
		if err != nil || !isList || len(l) != 3 || l[0] != "a" || l[1] != 1.5 || fmt.Sprint(l[2]) != "map[k:true]" {
			t.Fatalf("echo into any: %#v, %v", v, err)
		}
		// A scalar echoed goes back as it came: a float64 stays one.
		if v, err := procpool.Apply(context.Background(), p, echo, any(2.0)); err != nil || v != any(2.0) {
			t.Fatalf("echo of float64 2: %#v, %v", v, err)
		}
		if c.Name() == "cbor" {
			if v, err := procpool.Apply(context.Background(), p, echo, any("a\xffb")); err != nil || v != any("a\xffb") {
				t.Fatalf("echo of a string with invalid UTF-8: %q, %v", v, err)
			}
		}
		var empty record
		out, err = procpool.Apply(context.Background(), p, typed, empty)
		if err != nil || out.Ptr != nil || out.Raw != nil || out.List != nil || out.Big != 0 {
			t.Fatalf("echo of the zero record: %+v, %v", out, err)
		}
	})
}

func TestUnknownFunction(t *testing.T) {
	node := nodePath(t)
	p, err := procpool.New(procpool.WithCommand(node, "test/conformance_worker.js"), procpool.WithProcesses(1),
		procpool.WithRequire(confEcho))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	v, err := procpool.Apply(context.Background(), p, confEcho, any("x"))
	if err != nil || v != "x" {
		t.Fatalf("conf.echo: %v, %v", v, err)
	}
	_, err = procpool.Apply(context.Background(), p, square, 2)
	var re *procpool.RemoteError
	if !errors.Is(err, procpool.ErrUnknownFunc) || !errors.As(err, &re) || !strings.Contains(re.Message, `"t.square"`) {
		t.Fatalf("a function the worker lacks: %v; want ErrUnknownFunc", err)
	}
	if _, err := procpool.Apply(context.Background(), p, confEcho, any(1.5)); err != nil {
		t.Fatalf("after the unknown function: %v", err)
	}
}

func TestDeclaredMissing(t *testing.T) {
	node := nodePath(t)
	_, err := procpool.New(procpool.WithCommand(node, "test/conformance_worker.js"), procpool.WithProcesses(1))
	var se *procpool.StartError
	if !errors.As(err, &se) || !errors.Is(err, procpool.ErrHandshake) || !strings.Contains(err.Error(), `"t.square"`) {
		t.Fatalf("New with a worker that lacks declared functions: %v; want a *StartError naming them", err)
	}
}

// TestUnknownCodec: a worker that lacks the pool's codec answers the hello
// with an empty codec, and New says which codec it lacks.
func TestUnknownCodec(t *testing.T) {
	node := nodePath(t)
	_, err := procpool.New(procpool.WithCommand(node, "testdata/worker.js"), procpool.WithProcesses(1),
		procpool.WithCodec(fakeCodec{}), procpool.WithStderr(io.Discard))
	var se *procpool.StartError
	if !errors.As(err, &se) || !strings.Contains(err.Error(), "fake") {
		t.Fatalf("New with a codec the worker lacks: %v; want a *StartError naming it", err)
	}
}

type fakeCodec struct{}

func (fakeCodec) Name() string                             { return "fake" }
func (fakeCodec) Append(dst []byte, v any) ([]byte, error) { return codec.JSON.Append(dst, v) }
func (fakeCodec) Unmarshal(data []byte, v any) error       { return codec.JSON.Unmarshal(data, v) }

func init() { codec.Register(fakeCodec{}) }

// TestOutput: console.log in a task goes to the pool's stdout.
func TestOutput(t *testing.T) {
	var buf testenv.Buffer
	p := newPool(t, codec.CBOR, procpool.WithStdout(&buf))
	if n, err := procpool.Apply(context.Background(), p, logLine, "printed by a task"); err != nil || n != 17 {
		t.Fatalf("t.log: %d, %v", n, err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if got := buf.String(); got != "printed by a task\n" {
		t.Fatalf("the pool's stdout got %q", got)
	}
}

// TestChildInheritsNothing: a process a task starts gets neither the
// protocol's descriptors nor the PROCPOOL_ variables.
func TestChildInheritsNothing(t *testing.T) {
	if _, err := os.Stat("/proc/self/fd"); err != nil {
		t.Skip("no /proc: the test reads descriptors there")
	}
	p := newPool(t, codec.CBOR)
	r, err := procpool.Apply(context.Background(), p, child, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Mine) < 3 {
		t.Fatalf("the worker's protocol descriptors: %q; want at least fds 3, 4 and 5", r.Mine)
	}
	for _, fd := range r.ChildFds {
		if slices.Contains(r.Mine, fd) {
			t.Errorf("the child holds %s, one of the worker's protocol descriptors %q", fd, r.Mine)
		}
	}
	if len(r.ChildEnv) != 0 {
		t.Errorf("the child's environment has %q", r.ChildEnv)
	}
}

// TestSweep: a process a task leaves running dies with its worker.
func TestSweep(t *testing.T) {
	p := newPool(t, codec.CBOR)
	pid, err := procpool.Apply(context.Background(), p, orphan, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("the task's child %d is not running: %v", pid, err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	// Close has reaped the worker, whose sweep killed the child; its new
	// parent (init or a subreaper) reaps it soon after.
	deadline := time.Now().Add(10 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("the task's child %d outlived the pool", pid)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return syscall.Kill(pid, 0) == nil
	}
	s := string(data)
	rest := s[strings.LastIndexByte(s, ')')+2:]
	return !strings.HasPrefix(rest, "Z") && !strings.HasPrefix(rest, "X")
}

// TestJSUnitTests runs the JavaScript unit tests (the codecs) with node's
// test runner.
func TestJSUnitTests(t *testing.T) {
	node := nodePath(t)
	out, err := exec.Command(node, "--test", "test/").CombinedOutput()
	if err != nil {
		t.Fatalf("node --test test/: %v\n%s", err, out)
	}
	if !bytes.Contains(out, []byte("# fail 0")) {
		t.Fatalf("node --test test/ reports failures:\n%s", out)
	}
	t.Logf("%s", out[max(0, len(out)-300):])
}
