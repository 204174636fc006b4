//go:build unix

package python_test

// These tests start real python3 workers (workers/python/procpool_worker.py
// serving tests/testing_worker.py) from Go pools and check every call, both
// codecs, the types of docs/protocol.md's table, errors and their identity,
// crashes, timeouts, stops, limits and shared memory. Each skips when
// python3 is missing.

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/procpool/procpool"
	"github.com/procpool/procpool/codec"
	"github.com/procpool/procpool/codec/msgpack"
	"github.com/procpool/procpool/internal/testenv"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	procpool.Main()
	goleak.VerifyTestMain(m)
}

// ErrNotFound is the sentinel that testing_worker.py maps NotFound to.
var ErrNotFound = procpool.RegisterError("procpool.test/python.ErrNotFound", errors.New("not found"))

// TooBigError is the Go type that testing_worker.py sends TooBig as.
type TooBigError struct{ Limit int }

func (e *TooBigError) Error() string { return "too big: " + strconv.Itoa(e.Limit) }

func init() { procpool.RegisterErrorType[*TooBigError]() }

// The functions the Python workers serve.
var (
	echo         = procpool.Declare[any, any]("conf.echo")
	fail         = procpool.Declare[string, int]("conf.fail")
	sleepMs      = procpool.Declare[int, int]("conf.sleep")
	exitWith     = procpool.Declare[int, int]("conf.exit")
	length       = procpool.Declare[any, int]("conf.len")
	pid          = procpool.Declare[int, int]("conf.pid")
	square       = procpool.Declare[int, int]("t.square")
	initPrefix   = procpool.Declare[string, any]("t.init")
	initFail     = procpool.Declare[string, any]("t.init_fail")
	prefixed     = procpool.Declare[string, string]("t.prefixed")
	types        = procpool.Declare[allTypes, typesReply]("t.types")
	now          = procpool.Declare[int, time.Time]("t.now")
	notFound     = procpool.Declare[string, int]("t.not_found")
	tooBig       = procpool.Declare[int, int]("t.too_big")
	missingFile  = procpool.Declare[string, int]("t.missing_file")
	touch        = procpool.Declare[string, int]("t.touch")
	touchExit    = procpool.Declare[string, int]("t.touch_then_exit")
	hang         = procpool.Declare[string, int]("t.hang")
	wait         = procpool.Declare[string, int]("t.wait")
	alloc        = procpool.Declare[int, int]("t.alloc")
	shared       = procpool.Declare[[]byte, sharedReply]("t.shared")
	item         = procpool.Declare[int, int]("t.item")
	itemLog      = procpool.Declare[logged, int]("t.item_log")
	printIt      = procpool.Declare[string, int]("t.print")
	child        = procpool.Declare[int, childReply]("t.child")
	deadline     = procpool.Declare[int, float64]("t.deadline")
	floats       = procpool.Declare[[]float64, []float64]("t.floats")
	rlimit       = procpool.Declare[int, []uint64]("t.rlimit")
	big          = procpool.Declare[int, string]("t.big")
	nobodyServes = procpool.Declare[int, int]("t.nobody_serves")
)

// served is every declared function that testing_worker.py serves: pools
// require them (WithRequire), which keeps nobodyServes out of the check.
var served = []procpool.AnyFunc{echo, fail, sleepMs, exitWith, length, pid, square, initPrefix, initFail, prefixed,
	types, now, notFound, tooBig, missingFile, touch, touchExit, hang, wait, alloc, shared, item, itemLog, printIt,
	child, deadline, floats, rlimit, big}

// allTypes holds one field of each type in docs/protocol.md's table.
type allTypes struct {
	Int     int
	Int64   int64
	Neg     int64
	Uint64  uint64
	Float64 float64
	Float32 float32
	Str     string
	Bytes   []byte
	Bool    bool
	Ints    []int
	Strs    []string
	Map     map[string]int
	Nested  inner
	Ptr     *int
	NilPtr  *int
	NilList []int
	Time    time.Time
	Array   [3]int
}

type inner struct {
	Name  string
	Score float64
}

type typesReply struct {
	Types map[string]any
	Value allTypes
}

type sharedReply struct {
	Len    int  `json:"len"`
	Shared bool `json:"shared"`
	Sum    int  `json:"sum"`
}

type logged struct {
	Path string
	X    int
}

type childReply struct {
	Pid int      `json:"pid"`
	Fds []int    `json:"fds"`
	Env []string `json:"env"`
}

// script returns the path of a Python worker script under tests/, or
// skips the test when python3 is missing.
func script(t *testing.T, name string) string {
	t.Helper()
	testenv.LookPath(t, "python3", "the Python worker")
	p, err := filepath.Abs(filepath.Join("tests", name))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// newPool starts a pool of Python workers serving testing_worker.py.
func newPool(t *testing.T, opts ...procpool.Option) *procpool.Pool {
	t.Helper()
	noOrphans(t)
	base := []procpool.Option{procpool.WithCommand("python3", script(t, "testing_worker.py")), procpool.WithRequire(served...)}
	p, err := procpool.New(append(base, opts...)...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = p.Terminate() })
	return p
}

// noOrphans fails the test if processes this one started outlive it (its
// pools' cleanups run first).
func noOrphans(t *testing.T) {
	t.Helper()
	t.Cleanup(func() {
		deadline := time.Now().Add(10 * time.Second)
		for {
			kids := children()
			if len(kids) == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("processes outlived the test: %v", kids)
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

// children lists this process's living children.
func children() []int {
	ents, _ := os.ReadDir("/proc")
	var kids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(b, ')')
		f := strings.Fields(string(b[i+1:]))
		if len(f) > 1 && f[0] != "Z" && f[1] == strconv.Itoa(os.Getpid()) {
			kids = append(kids, pid)
		}
	}
	return kids
}

func pids(p *procpool.Pool) []int {
	var out []int
	for _, w := range p.Stats().Workers {
		out = append(out, w.Pid)
	}
	slices.Sort(out)
	return out
}

// lines returns the lines written to path so far.
func lines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(b))
}

// waitLines polls path until it holds n lines (a task wrote them).
func waitLines(t *testing.T, path string, n int) []string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if ls := lines(t, path); len(ls) >= n {
			return ls
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never got %d lines", path, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

var codecs = []codec.Codec{codec.CBOR, codec.JSON}

func TestConformanceWorker(t *testing.T) {
	noOrphans(t)
	ctx := testCtx(t)
	conf := script(t, "conformance_worker.py")
	for _, c := range codecs {
		t.Run(c.Name(), func(t *testing.T) {
			p, err := procpool.New(procpool.WithCommand("python3", conf), procpool.WithProcesses(1), procpool.WithCodec(c),
				procpool.WithRequire(echo, fail, sleepMs, exitWith, length, pid))
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			if v, err := procpool.Apply(ctx, p, echo, any("hi")); err != nil || v != "hi" {
				t.Errorf("conf.echo(hi) = %v, %v", v, err)
			}
			if n, err := procpool.Apply(ctx, p, length, any("héllo")); err != nil || n != 5 {
				t.Errorf("conf.len(héllo) = %d, %v; want 5 code points", n, err)
			}
			if c == codec.CBOR {
				if n, err := procpool.Apply(ctx, p, length, any([]byte("héllo"))); err != nil || n != 6 {
					t.Errorf("conf.len([]byte héllo) = %d, %v; want 6 bytes", n, err)
				}
			}
			if ms, err := procpool.Apply(ctx, p, sleepMs, 10); err != nil || ms != 10 {
				t.Errorf("conf.sleep(10) = %d, %v", ms, err)
			}
			wpid, err := procpool.Apply(ctx, p, pid, 0)
			if err != nil || !slices.Equal(pids(p), []int{wpid}) {
				t.Errorf("conf.pid = %d, %v; workers %v", wpid, err, pids(p))
			}
			_, err = procpool.Apply(ctx, p, fail, "exactly this")
			var re *procpool.RemoteError
			if !errors.As(err, &re) || re.Message != "exactly this" || re.Type != "builtins.ValueError" {
				t.Errorf("conf.fail: %#v", err)
			}
			_, err = procpool.Apply(ctx, p, exitWith, 7)
			var we *procpool.WorkerExitError
			if !errors.As(err, &we) || we.ExitCode != 7 || we.Pid != wpid {
				t.Errorf("conf.exit(7): %v; want a *WorkerExitError with exit code 7 from %d", err, wpid)
			}
		})
	}
}

// Every way of calling a pool, with each codec.
func TestCalls(t *testing.T) {
	ctx := testCtx(t)
	for _, c := range codecs {
		t.Run(c.Name(), func(t *testing.T) {
			p := newPool(t, procpool.WithProcesses(2), procpool.WithCodec(c))
			if v, err := procpool.Apply(ctx, p, square, 12); err != nil || v != 144 {
				t.Fatalf("Apply = %d, %v", v, err)
			}

			var mu sync.Mutex
			var got []int
			var errs []error
			var futs []*procpool.Future[int]
			for i := range 20 {
				f, err := procpool.ApplyAsync(ctx, p, square, i,
					procpool.Callback(func(v int) { mu.Lock(); got = append(got, v); mu.Unlock() }),
					procpool.ErrorCallback(func(err error) { mu.Lock(); errs = append(errs, err); mu.Unlock() }))
				if err != nil {
					t.Fatal(err)
				}
				futs = append(futs, f)
			}
			fe, err := procpool.ApplyAsync(ctx, p, fail, "async boom",
				procpool.ErrorCallback(func(err error) { mu.Lock(); errs = append(errs, err); mu.Unlock() }))
			if err != nil {
				t.Fatal(err)
			}
			for i, f := range futs {
				if v, err := f.Get(ctx); err != nil || v != i*i {
					t.Errorf("future %d: %d, %v", i, v, err)
				}
			}
			if _, err := fe.Get(ctx); err == nil || fe.Successful() {
				t.Errorf("the failing future: %v", err)
			}
			if err := p.Close(); err != nil { // waits for the callbacks
				t.Fatal(err)
			}
			slices.Sort(got)
			want := make([]int, 20)
			for i := range want {
				want[i] = i * i
			}
			if !slices.Equal(got, want) || len(errs) != 1 || !strings.Contains(errs[0].Error(), "async boom") {
				t.Errorf("callbacks: %v, errors %v", got, errs)
			}

			p = newPool(t, procpool.WithProcesses(2), procpool.WithCodec(c))
			xs := make([]int, 1000)
			for i := range xs {
				xs[i] = i - 500
			}
			ys, err := procpool.Map(ctx, p, square, xs, procpool.ChunkSize(64))
			if err != nil || len(ys) != len(xs) {
				t.Fatalf("Map: %d results, %v", len(ys), err)
			}
			for i, y := range ys {
				if y != xs[i]*xs[i] {
					t.Fatalf("Map[%d] = %d", i, y)
				}
			}
			fm, err := procpool.MapAsync(ctx, p, square, xs[:10])
			if err != nil {
				t.Fatal(err)
			}
			if ys, err := fm.Get(ctx); err != nil || len(ys) != 10 || ys[9] != xs[9]*xs[9] {
				t.Errorf("MapAsync: %v, %v", ys, err)
			}
			seq := func(yield func(int) bool) {
				for i := 0; i < 300 && yield(i); i++ {
				}
			}
			i := 0
			for v, err := range procpool.Imap(ctx, p, square, seq, procpool.ChunkSize(7)) {
				if err != nil || v != i*i {
					t.Fatalf("Imap item %d: %d, %v", i, v, err)
				}
				i++
			}
			if i != 300 {
				t.Errorf("Imap yielded %d items", i)
			}
			sum := 0
			n := 0
			for v, err := range procpool.ImapUnordered(ctx, p, square, seq, procpool.ChunkSize(5)) {
				if err != nil {
					t.Fatal(err)
				}
				sum += v
				n++
			}
			if n != 300 || sum != 299*300*599/6 {
				t.Errorf("ImapUnordered: %d items, sum %d", n, sum)
			}
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// Per-item errors of a chunk: each failed item has its own *RemoteError,
// the others their results, whether the worker records the items in its
// journal or not.
func TestMapItemErrors(t *testing.T) {
	ctx := testCtx(t)
	for _, c := range codecs {
		for _, mode := range []string{"always", "never", "auto"} {
			t.Run(c.Name()+"/"+mode, func(t *testing.T) {
				p := newPool(t, procpool.WithProcesses(1), procpool.WithCodec(c), procpool.WithEnv("PROCPOOL_PYTHON_RECORD_ITEMS="+mode))
				for run := range 2 {
					ys, err := procpool.Map(ctx, p, item, []int{1, 2, 5, 7, 10, 11}, procpool.ChunkSize(6))
					var me *procpool.MapError
					if !errors.As(err, &me) || len(me.Errors) != 2 || me.Errors[0].Index != 2 || me.Errors[1].Index != 4 {
						t.Fatalf("Map %d: %v; want items 2 and 4 failed", run, err)
					}
					var re *procpool.RemoteError
					if !errors.As(me.Errors[1].Err, &re) || re.Message != "item 10" || re.Type != "builtins.ValueError" || !strings.Contains(re.Stack, "in item") {
						t.Errorf("Map %d: item 4's error: %#v", run, me.Errors[1].Err)
					}
					if !slices.Equal(ys, []int{10, 20, 0, 70, 0, 110}) {
						t.Errorf("Map %d: results %v", run, ys)
					}
				}
			})
		}
	}
}

func sampleTypes() allTypes {
	seven := 7
	return allTypes{
		Int: 42, Int64: math.MaxInt64, Neg: math.MinInt64, Uint64: math.MaxUint64,
		Float64: 3.25, Float32: 1.5, Str: "héllo, 世界", Bytes: []byte{0, 1, 2, 255}, Bool: true,
		Ints: []int{1, -2, 3}, Strs: []string{"a", ""}, Map: map[string]int{"x": 1, "y": -1},
		Nested: inner{Name: "n", Score: -0.5}, Ptr: &seven,
		Time:  time.Date(2024, 2, 29, 23, 59, 58, 123456000, time.FixedZone("", -5*3600)),
		Array: [3]int{4, 5, 6},
	}
}

// Each type of docs/protocol.md's table goes to Python and back unchanged,
// and arrives in Python as the type the table says.
func TestTypes(t *testing.T) {
	ctx := testCtx(t)
	want := map[string]map[string]any{
		"cbor": {"Int": "int", "Int64": "int", "Neg": "int", "Uint64": "int", "Float64": "float", "Float32": "float",
			"Str": "str", "Bytes": "bytes", "Bool": "bool", "Ints": []any{"int", "int", "int"}, "Strs": []any{"str", "str"},
			"Map": map[string]any{"x": "int", "y": "int"}, "Nested": map[string]any{"Name": "str", "Score": "float"},
			"Ptr": "int", "NilPtr": "NoneType", "NilList": "NoneType", "Time": "datetime", "Array": []any{"int", "int", "int"}},
		"json": {"Int": "int", "Int64": "int", "Neg": "int", "Uint64": "int", "Float64": "float", "Float32": "float",
			"Str": "str", "Bytes": "str", "Bool": "bool", "Ints": []any{"int", "int", "int"}, "Strs": []any{"str", "str"},
			"Map": map[string]any{"x": "int", "y": "int"}, "Nested": map[string]any{"Name": "str", "Score": "float"},
			"Ptr": "int", "NilPtr": "NoneType", "NilList": "NoneType", "Time": "str", "Array": []any{"int", "int", "int"}},
	}
	for _, c := range codecs {
		t.Run(c.Name(), func(t *testing.T) {
			p := newPool(t, procpool.WithProcesses(1), procpool.WithCodec(c))
			in := sampleTypes()
			got, err := procpool.Apply(ctx, p, types, in)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got.Types, want[c.Name()]) {
				t.Errorf("Python types:\n got %v\nwant %v", got.Types, want[c.Name()])
			}
			if !got.Value.Time.Equal(in.Time) {
				t.Errorf("time: %v, want %v", got.Value.Time, in.Time)
			}
			if _, off := got.Value.Time.Zone(); off != -5*3600 {
				t.Errorf("time's offset %d, want -5h", off)
			}
			got.Value.Time = in.Time
			if !reflect.DeepEqual(got.Value, in) {
				t.Errorf("round trip:\n got %+v\nwant %+v", got.Value, in)
			}

			// A datetime made in Python arrives as the same instant.
			tm, err := procpool.Apply(ctx, p, now, 0)
			if want := time.Date(2024, 3, 1, 4, 59, 58, 123456000, time.UTC); err != nil || !tm.Equal(want) {
				t.Errorf("Python's datetime: %v, %v; want %v", tm, err, want)
			}
			// The zero time is null: None in Python, the zero time back.
			z, err := procpool.Apply(ctx, p, types, allTypes{})
			if err != nil || !z.Value.Time.IsZero() {
				t.Errorf("the zero time: %v, %v", z.Value.Time, err)
			}
			if c == codec.CBOR {
				if z.Types["Time"] != "NoneType" {
					t.Errorf("the zero time arrived in Python as %v, want None", z.Types["Time"])
				}
				// Special floats are CBOR's, not JSON's.
				fs := []float64{math.Inf(1), math.Inf(-1), math.NaN(), math.Copysign(0, -1), math.SmallestNonzeroFloat64, math.MaxFloat64}
				got, err := procpool.Apply(ctx, p, floats, fs)
				if err != nil || len(got) != len(fs) || !math.IsInf(got[0], 1) || !math.IsInf(got[1], -1) || !math.IsNaN(got[2]) ||
					!math.Signbit(got[3]) || got[4] != fs[4] || got[5] != fs[5] {
					t.Errorf("special floats: %v, %v", got, err)
				}
				// Big integers beyond 64 bits travel as bignums.
				big, err := procpool.Apply(ctx, p, echo, any(uint64(math.MaxUint64)))
				if err != nil || big == nil {
					t.Errorf("uint64 max: %v, %v", big, err)
				}
			}
		})
	}
}

// A task's exception: its type's qualified name, message and traceback; a
// mapped class keeps its Go identity.
func TestExceptions(t *testing.T) {
	ctx := testCtx(t)
	for _, c := range codecs {
		t.Run(c.Name(), func(t *testing.T) {
			p := newPool(t, procpool.WithProcesses(1), procpool.WithCodec(c))
			_, err := procpool.Apply(ctx, p, fail, "boom")
			var re *procpool.RemoteError
			if !errors.As(err, &re) {
				t.Fatalf("conf.fail: %v", err)
			}
			if re.Type != "builtins.ValueError" || re.Message != "boom" || re.Func != "conf.fail" || re.Code != "" ||
				!strings.Contains(re.Stack, "Traceback (most recent call last)") || !strings.Contains(re.Stack, "raise ValueError(message)") ||
				!strings.Contains(re.Stack, "ValueError: boom") {
				t.Errorf("RemoteError %+v", re)
			}
			if re.Unwrap() != nil {
				t.Errorf("an unmapped exception unwraps to %v", re.Unwrap())
			}

			_, err = procpool.Apply(ctx, p, notFound, "/nonexistent/x")
			if !errors.Is(err, ErrNotFound) || !errors.As(err, &re) {
				t.Fatalf("t.not_found: %v; want errors.Is(err, ErrNotFound)", err)
			}
			if re.Type != "__main__.NotFound" || !slices.Equal(re.Chain, []string{"__main__.NotFound", "builtins.FileNotFoundError"}) {
				t.Errorf("type %q, chain %q", re.Type, re.Chain)
			}
			if !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("the FileNotFoundError it was raised from does not match fs.ErrNotExist")
			}
			if _, err := procpool.Apply(ctx, p, missingFile, "/nonexistent/y"); !errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrNotFound) {
				t.Errorf("t.missing_file: %v; want fs.ErrNotExist only", err)
			}

			_, err = procpool.Apply(ctx, p, tooBig, 10)
			var tb *TooBigError
			if !errors.As(err, &tb) || tb.Limit != 10 {
				t.Errorf("t.too_big: %v; want a *TooBigError with Limit 10", err)
			}
		})
	}
}

// A worker that exits under a task fails that task alone, with its exit
// status; the tasks around it succeed, each run exactly once.
func TestCrash(t *testing.T) {
	ctx := testCtx(t)
	dir := t.TempDir()
	p := newPool(t, procpool.WithProcesses(2))
	before := pids(p)
	var futs []*procpool.Future[int]
	for i := range 10 {
		f := touch
		if i == 4 {
			f = touchExit
		}
		fut, err := procpool.ApplyAsync(ctx, p, f, filepath.Join(dir, strconv.Itoa(i)))
		if err != nil {
			t.Fatal(err)
		}
		futs = append(futs, fut)
	}
	for i, f := range futs {
		_, err := f.Get(ctx)
		if i == 4 {
			var we *procpool.WorkerExitError
			if !errors.As(err, &we) || we.ExitCode != 3 || we.Reason != procpool.ReasonCrashed || !slices.Contains(before, we.Pid) {
				t.Errorf("the crashing task: %v; want a *WorkerExitError, exit code 3, from one of %v", err, before)
			}
		} else if err != nil {
			t.Errorf("task %d: %v", i, err)
		}
		if n := len(lines(t, filepath.Join(dir, strconv.Itoa(i)))); n != 1 {
			t.Errorf("task %d ran %d times", i, n)
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if s := p.Stats(); s.Succeeded != 9 || s.Failed != 1 || s.WorkerExits[procpool.ReasonCrashed] != 1 {
		t.Errorf("stats: %+v", s)
	}
}

// A worker that dies in the middle of a chunk: the items before keep their
// results, the running item gets the death, the items after run elsewhere;
// each item runs exactly once (the journal's item records and the "from"
// flag).
func TestCrashInChunk(t *testing.T) {
	ctx := testCtx(t)
	for _, c := range codecs {
		t.Run(c.Name(), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "log")
			p := newPool(t, procpool.WithProcesses(2), procpool.WithCodec(c))
			xs := []int{1, 2, 3, -1, 5, 6}
			in := make([]logged, len(xs))
			for i, x := range xs {
				in[i] = logged{path, x}
			}
			ys, err := procpool.Map(ctx, p, itemLog, in, procpool.ChunkSize(len(xs)))
			var me *procpool.MapError
			var we *procpool.WorkerExitError
			if !errors.As(err, &me) || len(me.Errors) != 1 || me.Errors[0].Index != 3 || !errors.As(err, &we) || we.ExitCode != 3 {
				t.Fatalf("Map: %v; want item 3 alone failed with the worker's exit", err)
			}
			if !slices.Equal(ys, []int{1, 2, 3, 0, 5, 6}) {
				t.Errorf("results %v", ys)
			}
			got := lines(t, path)
			slices.Sort(got)
			if want := []string{"-1", "1", "2", "3", "5", "6"}; !slices.Equal(got, want) {
				t.Errorf("items run: %v; want each once: %v", got, want)
			}
		})
	}
}

// A chunk whose items the worker does not record (with
// PROCPOOL_PYTHON_RECORD_ITEMS=never, as for a function whose items proved
// fast) fails as a whole when its worker crashes, as without a journal
// (README: "Crashes and Map").
func TestCrashInUnrecordedChunk(t *testing.T) {
	ctx := testCtx(t)
	p := newPool(t, procpool.WithProcesses(1), procpool.WithEnv("PROCPOOL_PYTHON_RECORD_ITEMS=never"))
	_, err := procpool.Map(ctx, p, item, []int{1, 2, -1, 4}, procpool.ChunkSize(4))
	var me *procpool.MapError
	if !errors.As(err, &me) || len(me.Errors) != 4 {
		t.Fatalf("Map: %v; want all 4 items failed", err)
	}
	for _, ie := range me.Errors {
		var we *procpool.WorkerExitError
		if !errors.As(ie.Err, &we) || we.ExitCode != 3 {
			t.Errorf("item %d: %v; want the worker's exit", ie.Index, ie.Err)
		}
	}
}

// A task that hangs past its timeout ends with ErrTimeout, and its worker
// (which ignores the stop) is replaced.
func TestTimeout(t *testing.T) {
	ctx := testCtx(t)
	path := filepath.Join(t.TempDir(), "hang")
	p := newPool(t, procpool.WithProcesses(1), procpool.WithKillGrace(100*time.Millisecond))
	before := pids(p)
	_, err := procpool.Apply(ctx, p, hang, path, procpool.Timeout(300*time.Millisecond))
	var we *procpool.WorkerExitError
	if !errors.Is(err, procpool.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) || !errors.As(err, &we) || we.Reason != procpool.ReasonTimeout {
		t.Fatalf("Apply(t.hang, 300ms): %v; want ErrTimeout with the worker's exit", err)
	}
	if v, err := procpool.Apply(ctx, p, square, 3); err != nil || v != 9 {
		t.Fatalf("the next task: %d, %v", v, err)
	}
	after := pids(p)
	if len(after) != 1 || after[0] == before[0] {
		t.Errorf("workers before %v, after %v: want a new one", before, after)
	}
	if n := len(lines(t, path)); n != 1 {
		t.Errorf("t.hang ran %d times", n)
	}

	// A task that honours the stop (lets TaskStopped propagate) ends with
	// ErrTimeout too, and keeps its worker.
	wpath := filepath.Join(t.TempDir(), "wait")
	_, err = procpool.Apply(ctx, p, wait, wpath, procpool.Timeout(200*time.Millisecond))
	var re *procpool.RemoteError
	if !errors.Is(err, procpool.ErrTimeout) || !errors.As(err, &re) || re.Type != "procpool_worker.TaskStopped" || re.Code != procpool.CodeDeadline {
		t.Fatalf("Apply(t.wait, 200ms): %v; want ErrTimeout wrapping the TaskStopped error", err)
	}
	if got := lines(t, wpath+".stop"); !slices.Equal(got, []string{"deadline"}) {
		t.Errorf("the task saw the stop as %v", got)
	}
	if got := pids(p); !slices.Equal(got, after) {
		t.Errorf("workers %v, want %v kept", got, after)
	}
	if s := p.Stats(); s.TimedOut != 2 || s.StoppedClean != 1 {
		t.Errorf("stats: timed out %d, stopped clean %d", s.TimedOut, s.StoppedClean)
	}
}

// Cancelling the caller's context stops the running task: TaskStopped is
// raised in it, it ends cleanly and its worker lives on.
func TestCancelRunning(t *testing.T) {
	ctx := testCtx(t)
	path := filepath.Join(t.TempDir(), "wait")
	p := newPool(t, procpool.WithProcesses(1))
	before := pids(p)
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := procpool.Apply(cctx, p, wait, path)
		done <- err
	}()
	waitLines(t, path, 1)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Apply after cancel: %v", err)
	}
	if got := waitLines(t, path+".stop", 1); !slices.Equal(got, []string{"cancel"}) {
		t.Errorf("the task saw %v", got)
	}
	if v, err := procpool.Apply(ctx, p, square, 4); err != nil || v != 16 {
		t.Fatalf("the next task: %d, %v", v, err)
	}
	if got := pids(p); !slices.Equal(got, before) {
		t.Errorf("workers %v, want %v kept", got, before)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if s := p.Stats(); s.Cancelled != 1 || s.StoppedClean != 1 || len(lines(t, path)) != 1 {
		t.Errorf("stats: cancelled %d, stopped clean %d; runs %d", s.Cancelled, s.StoppedClean, len(lines(t, path)))
	}
}

func TestInitializer(t *testing.T) {
	noOrphans(t)
	ctx := testCtx(t)
	p := newPool(t, procpool.WithProcesses(2), procpool.WithInitializer(initPrefix, "> "))
	outs, err := procpool.Map(ctx, p, prefixed, []string{"a", "b", "c", "d"}, procpool.ChunkSize(1))
	if err != nil || !slices.Equal(outs, []string{"> a", "> b", "> c", "> d"}) {
		t.Errorf("Map after the initializer: %q, %v", outs, err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}

	_, err = procpool.New(procpool.WithCommand("python3", script(t, "testing_worker.py")), procpool.WithRequire(served...),
		procpool.WithProcesses(1), procpool.WithInitializer(initFail, "no model"))
	var se *procpool.StartError
	var re *procpool.RemoteError
	if !errors.As(err, &se) || !errors.As(err, &re) || re.Message != "no model" || re.Type != "builtins.RuntimeError" || re.Code != procpool.CodeInit {
		t.Fatalf("New with a failing initializer: %v", err)
	}
}

// WithMaxTasksPerWorker: each worker runs exactly k tasks.
func TestMaxTasksPerWorker(t *testing.T) {
	ctx := testCtx(t)
	p := newPool(t, procpool.WithProcesses(1), procpool.WithMaxTasksPerWorker(2))
	count := map[int]int{}
	for range 6 {
		v, err := procpool.Apply(ctx, p, pid, 0)
		if err != nil {
			t.Fatal(err)
		}
		count[v]++
	}
	if len(count) != 3 {
		t.Errorf("6 tasks at 2 per worker ran in %d workers: %v", len(count), count)
	}
	for w, n := range count {
		if n != 2 {
			t.Errorf("worker %d ran %d tasks", w, n)
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if s := p.Stats(); s.WorkerExits[procpool.ReasonRecycled] < 2 {
		t.Errorf("exits %v", s.WorkerExits)
	}
}

// A task that allocates past WithMaxWorkerMemory is stopped with its
// worker, for the memory reason.
func TestMemoryLimit(t *testing.T) {
	ctx := testCtx(t)
	p := newPool(t, procpool.WithProcesses(1), procpool.WithMaxWorkerMemory(150<<20))
	_, err := procpool.Apply(ctx, p, alloc, 300)
	var we *procpool.WorkerExitError
	if !errors.As(err, &we) || we.Reason != procpool.ReasonMemory {
		t.Fatalf("t.alloc(300 MiB): %v; want a *WorkerExitError for the memory limit", err)
	}
	if v, err := procpool.Apply(ctx, p, square, 5); err != nil || v != 25 {
		t.Errorf("the next task: %d, %v", v, err)
	}
}

// An argument above the pipe threshold travels through shared memory.
func TestSharedMemory(t *testing.T) {
	ctx := testCtx(t)
	for _, c := range codecs {
		t.Run(c.Name(), func(t *testing.T) {
			p := newPool(t, procpool.WithProcesses(1), procpool.WithCodec(c))
			b := make([]byte, 3<<20)
			sum := 0
			for i := range b {
				b[i] = byte(i * 7)
				if i%4096 == 0 {
					sum += int(b[i])
				}
			}
			got, err := procpool.Apply(ctx, p, shared, b)
			if err != nil {
				t.Fatal(err)
			}
			wantLen := len(b)
			if c == codec.JSON { // []byte is a base64 string in JSON
				wantLen = (len(b) + 2) / 3 * 4
			}
			if got.Len != wantLen || !got.Shared {
				t.Errorf("t.shared: %+v; want length %d through shared memory", got, wantLen)
			}
			if c == codec.CBOR && got.Sum != sum {
				t.Errorf("sampled sum %d, want %d", got.Sum, sum)
			}
			small, err := procpool.Apply(ctx, p, shared, []byte("abc"))
			if err != nil || small.Shared {
				t.Errorf("a small argument: %+v, %v; want it through the pipe", small, err)
			}
		})
	}
}

func TestUnknownFunc(t *testing.T) {
	ctx := testCtx(t)
	p := newPool(t, procpool.WithProcesses(1))
	_, err := procpool.Apply(ctx, p, nobodyServes, 1)
	var re *procpool.RemoteError
	if !errors.Is(err, procpool.ErrUnknownFunc) || !errors.As(err, &re) || !strings.Contains(re.Message, `"t.nobody_serves"`) {
		t.Fatalf("Apply of a function the worker lacks: %v; want ErrUnknownFunc", err)
	}
	if _, err := procpool.Map(ctx, p, nobodyServes, []int{1, 2, 3}, procpool.ChunkSize(3)); !errors.Is(err, procpool.ErrUnknownFunc) {
		t.Errorf("Map of it: %v", err)
	}
}

func TestDeclaredMissingAtNew(t *testing.T) {
	noOrphans(t)
	_, err := procpool.New(procpool.WithCommand("python3", script(t, "testing_worker.py")), procpool.WithProcesses(1))
	var se *procpool.StartError
	if !errors.As(err, &se) || !errors.Is(err, procpool.ErrHandshake) || !strings.Contains(err.Error(), `"t.nobody_serves"`) {
		t.Fatalf("New without the declared t.nobody_serves: %v; want a *StartError naming it", err)
	}
	if strings.Contains(err.Error(), `"t.square"`) {
		t.Errorf("the error names a function the worker serves: %v", err)
	}
}

// A codec the Python worker does not know: its hello names no codec, and
// New says which.
func TestUnknownCodec(t *testing.T) {
	noOrphans(t)
	_, err := procpool.New(procpool.WithCommand("python3", script(t, "testing_worker.py")), procpool.WithRequire(served...),
		procpool.WithProcesses(1), procpool.WithCodec(msgpack.Codec))
	var se *procpool.StartError
	if !errors.As(err, &se) || !errors.Is(err, procpool.ErrHandshake) || !strings.Contains(err.Error(), `does not know codec "msgpack"`) {
		t.Fatalf("New with msgpack: %v", err)
	}
}

// print() in a task reaches the pool's stdout; a process a task starts
// inherits neither the protocol's descriptors nor its variables, and dies
// with the worker.
func TestOutputAndChildren(t *testing.T) {
	ctx := testCtx(t)
	var out testenv.Buffer
	p := newPool(t, procpool.WithProcesses(1), procpool.WithStdout(&out))
	if n, err := procpool.Apply(ctx, p, printIt, "hi there"); err != nil || n != 8 {
		t.Fatalf("t.print: %d, %v", n, err)
	}
	got, err := procpool.Apply(ctx, p, child, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Fds) != 0 || len(got.Env) != 0 {
		t.Errorf("the child inherited fds %v and variables %v", got.Fds, got.Env)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "from python: hi there\n") {
		t.Errorf("stdout: %q", out.String())
	}
	// The worker's sweep killed its child; the parent (this process) reaps
	// nothing of it, so poll until it is gone or a zombie of init's.
	deadline := time.Now().Add(10 * time.Second)
	for alive(got.Pid) {
		if time.Now().After(deadline) {
			t.Fatalf("the task's child %d outlived its worker", got.Pid)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return i >= 0 && i+2 < len(b) && b[i+2] != 'Z'
}

// WithRlimit reaches the Python worker (PROCPOOL_RLIMITS), and one it
// cannot set fails its start with the reason.
func TestRlimit(t *testing.T) {
	noOrphans(t)
	ctx := testCtx(t)
	p := newPool(t, procpool.WithProcesses(1), procpool.WithRlimit(syscall.RLIMIT_NOFILE, 100, 200))
	if got, err := procpool.Apply(ctx, p, rlimit, syscall.RLIMIT_NOFILE); err != nil || !slices.Equal(got, []uint64{100, 200}) {
		t.Errorf("RLIMIT_NOFILE in the worker: %v, %v", got, err)
	}
	// Above fs.nr_open, RLIMIT_NOFILE cannot be set, even by root.
	b, err := os.ReadFile("/proc/sys/fs/nr_open")
	if err != nil {
		t.Skip("no /proc/sys/fs/nr_open")
	}
	nrOpen, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	_, err = procpool.New(procpool.WithCommand("python3", script(t, "testing_worker.py")), procpool.WithRequire(served...),
		procpool.WithProcesses(1), procpool.WithRlimit(syscall.RLIMIT_NOFILE, nrOpen+1, nrOpen+1))
	var se *procpool.StartError
	if !errors.As(err, &se) || !strings.Contains(se.Stderr, "setrlimit") {
		t.Errorf("New with an rlimit above the hard limit: %v", err)
	}
}

// A result over the frame limit fails its task (code encode); the worker
// goes on.
func TestResultOverFrameLimit(t *testing.T) {
	ctx := testCtx(t)
	p := newPool(t, procpool.WithProcesses(1), procpool.WithMaxFrame(1<<20))
	_, err := procpool.Apply(ctx, p, big, 2<<20)
	var re *procpool.RemoteError
	if !errors.As(err, &re) || re.Code != procpool.CodeEncode || !strings.Contains(re.Message, "frame limit") {
		t.Fatalf("t.big(2 MiB) under a 1 MiB frame limit: %v", err)
	}
	if s, err := procpool.Apply(ctx, p, big, 10); err != nil || s != "xxxxxxxxxx" {
		t.Errorf("the next task: %q, %v", s, err)
	}
}

// The task's deadline is visible in Python.
func TestDeadlineVisible(t *testing.T) {
	ctx := testCtx(t)
	p := newPool(t, procpool.WithProcesses(1))
	left, err := procpool.Apply(ctx, p, deadline, 0, procpool.Timeout(5*time.Second))
	if err != nil || left <= 0 || left > 5 {
		t.Errorf("time left: %v, %v; want in (0, 5] s", left, err)
	}
	if left, err := procpool.Apply(context.Background(), p, deadline, 0); err != nil || left != -1 {
		t.Errorf("without a deadline: %v, %v", left, err)
	}
}

// Terminate stops a running task: SIGTERM, TaskStopped in the task, and
// the worker's exit.
func TestTerminate(t *testing.T) {
	ctx := testCtx(t)
	path := filepath.Join(t.TempDir(), "wait")
	p := newPool(t, procpool.WithProcesses(1))
	f, err := procpool.ApplyAsync(ctx, p, wait, path)
	if err != nil {
		t.Fatal(err)
	}
	waitLines(t, path, 1)
	if err := p.Terminate(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Get(ctx); !errors.Is(err, procpool.ErrTerminated) {
		t.Errorf("the running task: %v", err)
	}
	if got := lines(t, path+".stop"); !slices.Equal(got, []string{"terminate"}) {
		t.Errorf("the task saw %v", got)
	}
}

// The CBOR codec's own tests, in Python.
func TestPythonUnittest(t *testing.T) {
	dir := filepath.Dir(script(t, "conformance_worker.py"))
	cmd := exec.Command("python3", "-m", "unittest", "discover", "-s", dir, "-p", "test_*.py")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("python3 -m unittest: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "OK") {
		t.Errorf("unittest said:\n%s", out)
	}
	t.Logf("%s", out)
}

// pip installs the module from workers/python without a package index.
func TestPipInstall(t *testing.T) {
	script(t, "conformance_worker.py")
	if exec.Command("python3", "-m", "pip", "--version").Run() != nil {
		t.Skip("python3 has no pip")
	}
	dir := t.TempDir()
	out, err := exec.Command("python3", "-m", "pip", "install", "--no-index", "--no-cache-dir", "--disable-pip-version-check",
		"--target", dir, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("pip install: %v\n%s", err, out)
	}
	cmd := exec.Command("python3", "-c", "import procpool_worker as w; print(w.__file__, w.__version__)")
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "PYTHONPATH="+dir)
	got, err := cmd.Output()
	if err != nil || !strings.HasPrefix(string(got), filepath.Join(dir, "procpool_worker.py")+" ") {
		t.Errorf("import after pip install: %q, %v", got, err)
	}
}

// A signal sent to a worker by another process still ends it cleanly: it
// is the same as a crash for its task.
func TestKilledWorker(t *testing.T) {
	ctx := testCtx(t)
	path := filepath.Join(t.TempDir(), "wait")
	p := newPool(t, procpool.WithProcesses(1))
	f, err := procpool.ApplyAsync(ctx, p, wait, path)
	if err != nil {
		t.Fatal(err)
	}
	w, _ := strconv.Atoi(waitLines(t, path, 1)[0])
	if err := syscall.Kill(w, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_, err = f.Get(ctx)
	var we *procpool.WorkerExitError
	if !errors.As(err, &we) || we.Signal != syscall.SIGKILL || we.Pid != w {
		t.Errorf("the task of a killed worker: %v", err)
	}
}
