//go:build unix

package procpool_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/procpool/procpool"
)

// testCtx bounds a test so that a hang fails it instead of stalling CI.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newPool(t *testing.T, opts ...procpool.Option) *procpool.Pool {
	t.Helper()
	noOrphans(t)
	p, err := procpool.New(opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = p.Terminate() })
	return p
}

func TestReuse(t *testing.T) {
	ctx := testCtx(t)
	p := newPool(t, procpool.WithProcesses(2))
	pids := map[int]int{}
	for i := range 100 {
		got, err := procpool.Apply(ctx, p, squarePid, i)
		if err != nil {
			t.Fatalf("Apply(%d): %v", i, err)
		}
		if got[0] != i*i {
			t.Fatalf("Apply(%d) = %d, want %d", i, got[0], i*i)
		}
		pids[got[1]]++
	}
	if len(pids) > 2 {
		t.Errorf("100 tasks on 2 workers ran in %d processes: %v", len(pids), pids)
	}
	if _, ok := pids[os.Getpid()]; ok {
		t.Errorf("a task ran in the parent process %d", os.Getpid())
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if s := p.Stats(); s.Succeeded != 100 || s.Submitted != 100 {
		t.Errorf("stats: succeeded %d, submitted %d, want 100 and 100", s.Succeeded, s.Submitted)
	}
}

func TestMapOrder(t *testing.T) {
	ctx := testCtx(t)
	p := newPool(t, procpool.WithProcesses(2))
	for _, n := range []int{0, 1, 7, 10000} {
		xs := make([]int, n)
		for i := range xs {
			xs[i] = i
		}
		for _, chunk := range []int{0, 1, 3, 1000} {
			if n == 10000 && chunk == 1 {
				continue // 10,000 one-item tasks add time and nothing new
			}
			got, err := procpool.Map(ctx, p, square, xs, procpool.ChunkSize(chunk))
			if err != nil {
				t.Fatalf("Map(n=%d, chunk=%d): %v", n, chunk, err)
			}
			if len(got) != n {
				t.Fatalf("Map(n=%d, chunk=%d) returned %d results", n, chunk, len(got))
			}
			for i, v := range got {
				if v != i*i {
					t.Fatalf("Map(n=%d, chunk=%d)[%d] = %d, want %d", n, chunk, i, v, i*i)
				}
			}
			// Imap, in order, and ImapUnordered as a set.
			var ordered, unordered []int
			for v, err := range procpool.Imap(ctx, p, square, slices.Values(xs), procpool.ChunkSize(max(chunk, 1))) {
				if err != nil {
					t.Fatalf("Imap: %v", err)
				}
				ordered = append(ordered, v)
			}
			if !slices.Equal(ordered, got) {
				t.Fatalf("Imap(n=%d, chunk=%d) differs from Map", n, chunk)
			}
			for v, err := range procpool.ImapUnordered(ctx, p, square, slices.Values(xs), procpool.ChunkSize(max(chunk, 1))) {
				if err != nil {
					t.Fatalf("ImapUnordered: %v", err)
				}
				unordered = append(unordered, v)
			}
			slices.Sort(unordered)
			if !slices.Equal(unordered, got) {
				t.Fatalf("ImapUnordered(n=%d, chunk=%d) gave other values than Map", n, chunk)
			}
		}
	}
}

func TestMapAsyncAndCallbacks(t *testing.T) {
	ctx := testCtx(t)
	p := newPool(t, procpool.WithProcesses(2))
	var got []int // appended by callbacks without a lock: they run one at a time
	calls := 0
	fut, err := procpool.MapAsync(ctx, p, square, []int{1, 2, 3, 4, 5, 6}, procpool.Callback(func(v []int) {
		calls++
		got = append(got, v...)
	}))
	if err != nil {
		t.Fatal(err)
	}
	res, err := fut.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res, []int{1, 4, 9, 16, 25, 36}) || !slices.Equal(got, res) || calls != 1 {
		t.Fatalf("MapAsync = %v, callback saw %v in %d calls", res, got, calls)
	}
	if !fut.Ready() || !fut.Successful() {
		t.Fatal("a finished future is not Ready and Successful")
	}
}

func TestApplyAsyncCallbacks(t *testing.T) {
	ctx := testCtx(t)
	p := newPool(t, procpool.WithProcesses(2))
	parent := os.Getpid()
	var seen []int
	var errs []error
	callbackPids := map[int]bool{}
	var futs []*procpool.Future[int]
	for i := range 20 {
		f := failing
		fut, err := procpool.ApplyAsync(ctx, p, f, i,
			procpool.Callback(func(v int) { seen = append(seen, v); callbackPids[os.Getpid()] = true }),
			procpool.ErrorCallback(func(err error) { errs = append(errs, err) }))
		if err != nil {
			t.Fatal(err)
		}
		futs = append(futs, fut)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	// Close waited for every task and callback.
	for i, fut := range futs {
		if !fut.Ready() {
			t.Fatalf("future %d not ready after Close", i)
		}
	}
	if len(seen)+len(errs) != 20 {
		t.Fatalf("callbacks ran %d + %d times, want 20 in all", len(seen), len(errs))
	}
	if len(errs) != 7 { // 0, 3, 6, ..., 18
		t.Fatalf("error callbacks: %d, want 7", len(errs))
	}
	if len(callbackPids) != 1 || !callbackPids[parent] {
		t.Fatalf("callbacks ran in %v, want only the parent %d", callbackPids, parent)
	}
	var re *procpool.RemoteError
	if !errors.As(errs[0], &re) || re.Type != "*fs.PathError" || re.Func != "failing" {
		t.Fatalf("error callback got %#v, want a *RemoteError from failing with type *fs.PathError", errs[0])
	}
}

func TestCallbackPanicDoesNotBreakPool(t *testing.T) {
	ctx := testCtx(t)
	p := newPool(t, procpool.WithProcesses(1))
	fut, err := procpool.ApplyAsync(ctx, p, square, 3, procpool.Callback(func(int) { panic("callback bug") }))
	if err != nil {
		t.Fatal(err)
	}
	if v, err := fut.Get(ctx); err != nil || v != 9 {
		t.Fatalf("future of a task whose callback panicked = %v, %v; want 9, nil", v, err)
	}
	if v, err := procpool.Apply(ctx, p, square, 4); err != nil || v != 16 {
		t.Fatalf("after a callback panic: %v, %v", v, err)
	}
	if n := p.Stats().CallbackPanics; n != 1 {
		t.Fatalf("CallbackPanics = %d, want 1", n)
	}
}

func TestCallbackTypeMismatch(t *testing.T) {
	p := newPool(t, procpool.WithProcesses(1), procpool.WithInProcess())
	_, err := procpool.ApplyAsync(testCtx(t), p, square, 3, procpool.Callback(func(string) {}))
	if err == nil {
		t.Fatal("a Callback of the wrong type was accepted")
	}
}

func TestTaskErrors(t *testing.T) {
	ctx := testCtx(t)
	p := newPool(t, procpool.WithProcesses(2))

	_, err := procpool.Apply(ctx, p, failing, 3)
	var re *procpool.RemoteError
	if !errors.As(err, &re) || re.Panic || re.Message != "open /nope/3: file does not exist" {
		t.Fatalf("error task: %v", err)
	}

	_, err = procpool.Apply(ctx, p, panicking, "boom")
	if !errors.As(err, &re) || !re.Panic || re.Message != "boom" || re.Stack == "" {
		t.Fatalf("panicking task: %#v", err)
	}

	pidBefore, _ := procpool.Apply(ctx, p, pid, 0)
	_, err = procpool.Apply(ctx, p, exitWith, 3)
	var we *procpool.WorkerExitError
	if !errors.As(err, &we) || we.ExitCode != 3 || we.Reason != procpool.ReasonCrashed || we.Pid == 0 {
		t.Fatalf("os.Exit(3) task: %#v", err)
	}

	// The pool goes on after all of these.
	for i := range 10 {
		if v, err := procpool.Apply(ctx, p, square, i); err != nil || v != i*i {
			t.Fatalf("after failures: Apply(%d) = %d, %v", i, v, err)
		}
	}
	_ = pidBefore
}

func TestKilledWorker(t *testing.T) {
	ctx := testCtx(t)
	p := newPool(t, procpool.WithProcesses(1))
	victim, err := procpool.Apply(ctx, p, pid, 0)
	if err != nil {
		t.Fatal(err)
	}
	fut, err := procpool.ApplyAsync(ctx, p, sleepMs, 10_000)
	if err != nil {
		t.Fatal(err)
	}
	// Queue more behind it: they never start on the victim and must run on
	// its replacement.
	var behind []*procpool.Future[int]
	for i := range 5 {
		f, err := procpool.ApplyAsync(ctx, p, square, i)
		if err != nil {
			t.Fatal(err)
		}
		behind = append(behind, f)
	}
	waitRunning(t, p)
	name := "pid " + strconv.Itoa(victim)
	if ws := p.Stats().Workers; len(ws) != 1 || ws[0].Pid != victim || ws[0].Worker != name || ws[0].Host != "" {
		t.Fatalf("Stats().Workers = %+v, want pid %d named %q on this host", ws, victim, name)
	}
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_, err = fut.Get(ctx)
	var we *procpool.WorkerExitError
	if !errors.As(err, &we) || we.Signal != syscall.SIGKILL || we.Pid != victim || we.Reason != procpool.ReasonSignal {
		t.Fatalf("task on a SIGKILLed worker: %v", err)
	}
	if we.Worker != name || we.Host != "" {
		t.Fatalf("WorkerExitError names worker %q on host %q, want %q on this host", we.Worker, we.Host, name)
	}
	for i, f := range behind {
		if v, err := f.Get(ctx); err != nil || v != i*i {
			t.Fatalf("task %d queued behind the crash: %d, %v", i, v, err)
		}
	}
	now, err := procpool.Apply(ctx, p, pid, 0)
	if err != nil || now == victim {
		t.Fatalf("replacement worker: pid %d (victim %d), %v", now, victim, err)
	}
	if s := p.Stats(); s.WorkerExits[procpool.ReasonSignal] != 1 {
		t.Fatalf("stats: exits %v, want one killed by signal", s.WorkerExits)
	}
}

// waitRunning waits until the pool reports a task in flight.
func waitRunning(t *testing.T, p *procpool.Pool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for p.Stats().Running == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no task started")
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // let the worker read it
}

func TestMaxTasksPerWorker(t *testing.T) {
	ctx := testCtx(t)
	p := newPool(t, procpool.WithProcesses(1), procpool.WithMaxTasksPerWorker(2))
	var pids []int
	for range 6 {
		v, err := procpool.Apply(ctx, p, pid, 0)
		if err != nil {
			t.Fatal(err)
		}
		pids = append(pids, v)
	}
	for i := 0; i < 6; i += 2 {
		if pids[i] != pids[i+1] {
			t.Fatalf("tasks %d and %d ran in %d and %d, want one worker per two tasks: %v", i, i+1, pids[i], pids[i+1], pids)
		}
		if i > 0 && pids[i] == pids[i-1] {
			t.Fatalf("worker %d ran more than 2 tasks: %v", pids[i], pids)
		}
	}
	if n := p.Stats().WorkersStarted; n < 3 {
		t.Fatalf("WorkersStarted = %d, want at least 3", n)
	}
}

func TestInitializer(t *testing.T) {
	ctx := testCtx(t)
	p := newPool(t, procpool.WithProcesses(2), procpool.WithInitializer(setState, "ready"))
	for i := range 10 {
		s, err := procpool.Apply(ctx, p, getState, i)
		if err != nil || s != "ready" {
			t.Fatalf("task saw initializer state %q, %v", s, err)
		}
	}
}

func TestFailingInitializer(t *testing.T) {
	noOrphans(t)
	_, err := procpool.New(procpool.WithProcesses(2), procpool.WithInitializer(failInit, 0))
	var se *procpool.StartError
	var re *procpool.RemoteError
	if !errors.As(err, &se) || !errors.As(err, &re) || re.Message != "no database" {
		t.Fatalf("New with a failing initializer: %v", err)
	}
	_, err = procpool.New(procpool.WithProcesses(2), procpool.WithInitializer(exitInit, 0))
	if !errors.As(err, &se) || !errors.Is(err, procpool.ErrHandshake) {
		t.Fatalf("New with an initializer that exits: %v", err)
	}
}

func TestCloseWhileSubmitting(t *testing.T) {
	ctx := testCtx(t)
	p := newPool(t, procpool.WithProcesses(2))
	var wg sync.WaitGroup
	var mu sync.Mutex
	accepted, refused := 0, 0
	var futs []*procpool.Future[int]
	start := make(chan struct{})
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for i := range 200 {
				f, err := procpool.ApplyAsync(ctx, p, square, g*1000+i)
				mu.Lock()
				if err != nil {
					if !errors.Is(err, procpool.ErrClosed) {
						t.Errorf("submit: %v, want ErrClosed", err)
					}
					refused++
				} else {
					accepted++
					futs = append(futs, f)
				}
				mu.Unlock()
			}
		}()
	}
	close(start)
	time.Sleep(5 * time.Millisecond)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if accepted+refused != 1600 {
		t.Fatalf("accepted %d + refused %d != 1600", accepted, refused)
	}
	for _, f := range futs {
		if !f.Ready() {
			t.Fatal("an accepted task is still pending after Close")
		}
		if _, err := f.Get(ctx); err != nil {
			t.Fatalf("accepted task failed: %v", err)
		}
	}
	if _, err := procpool.Apply(ctx, p, square, 1); !errors.Is(err, procpool.ErrClosed) {
		t.Fatalf("Apply after Close: %v, want ErrClosed", err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestTerminate(t *testing.T) {
	ctx := testCtx(t)
	p := newPool(t, procpool.WithProcesses(2))
	var futs []*procpool.Future[int]
	for range 10 {
		f, err := procpool.ApplyAsync(ctx, p, sleepMs, 60_000)
		if err != nil {
			t.Fatal(err)
		}
		futs = append(futs, f)
	}
	waitRunning(t, p)
	done := make(chan struct{})
	go func() { _ = p.Terminate(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Terminate hangs")
	}
	for i, f := range futs {
		if !f.Ready() {
			t.Fatalf("future %d pending after Terminate", i)
		}
		if _, err := f.Get(ctx); !errors.Is(err, procpool.ErrTerminated) {
			t.Fatalf("future %d: %v, want ErrTerminated", i, err)
		}
	}
	if len(children()) != 0 {
		t.Fatalf("workers alive after Terminate: %v", children())
	}
}

func TestUnencodable(t *testing.T) {
	ctx := testCtx(t)
	p := newPool(t, procpool.WithProcesses(1))
	_, err := procpool.Apply(ctx, p, chanArg, make(chan int))
	var ce *procpool.CodecError
	if !errors.As(err, &ce) {
		t.Fatalf("unencodable argument: %v, want *CodecError", err)
	}
	_, err = procpool.Apply(ctx, p, unencodable, 1)
	var re *procpool.RemoteError
	if !errors.As(err, &re) || re.Code != "encode" {
		t.Fatalf("unencodable result: %v, want a *RemoteError with Code encode", err)
	}
	if v, err := procpool.Apply(ctx, p, square, 5); err != nil || v != 25 {
		t.Fatalf("after codec errors: %d, %v", v, err)
	}
}

func TestMapError(t *testing.T) {
	ctx := testCtx(t)
	p := newPool(t, procpool.WithProcesses(2))
	xs := []int{1, 2, 4, 5, 7, 9, 10, 12}
	_, err := procpool.Map(ctx, p, failing, xs, procpool.ChunkSize(3))
	var me *procpool.MapError
	if !errors.As(err, &me) || me.Index != 5 {
		t.Fatalf("Map error: %v, want *MapError at index 5", err)
	}
	var re *procpool.RemoteError
	if !errors.As(err, &re) || re.Message != "open /nope/9: file does not exist" {
		t.Fatalf("Map error cause: %v", err)
	}
	// Imap yields each item's own outcome.
	var vals []int
	nerr := 0
	for v, err := range procpool.Imap(ctx, p, failing, slices.Values(xs), procpool.ChunkSize(3)) {
		if err != nil {
			nerr++
			continue
		}
		vals = append(vals, v)
	}
	if nerr != 2 || !slices.Equal(vals, []int{1, 2, 4, 5, 7, 10}) {
		t.Fatalf("Imap over failures: %v and %d errors", vals, nerr)
	}
}

func TestImapBreakCancelsRest(t *testing.T) {
	ctx := testCtx(t)
	p := newPool(t, procpool.WithProcesses(2))
	read := 0
	seq := func(yield func(int) bool) {
		for i := 0; ; i++ {
			read++
			if !yield(i) {
				return
			}
		}
	}
	n := 0
	for v, err := range procpool.Imap(ctx, p, square, seq, procpool.Window(4)) {
		if err != nil || v != n*n {
			t.Fatalf("item %d: %d, %v", n, v, err)
		}
		n++
		if n == 50 {
			break
		}
	}
	if read > 50+4+1 {
		t.Fatalf("Imap read %d items of an endless input for 50 results with a window of 4", read)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestWorkerOutputReachesParent(t *testing.T) {
	ctx := testCtx(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	p := newPool(t, procpool.WithProcesses(1), procpool.WithStdout(w))
	if _, err := procpool.Apply(ctx, p, printLine, "hello from a task"); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	buf := make([]byte, 100)
	n, _ := r.Read(buf)
	if string(buf[:n]) != "hello from a task\n" {
		t.Fatalf("worker stdout: %q", buf[:n])
	}
}

func TestInProcess(t *testing.T) {
	ctx := testCtx(t)
	p := newPool(t, procpool.WithProcesses(2), procpool.WithInProcess())
	got, err := procpool.Apply(ctx, p, pid, 0)
	if err != nil || got != os.Getpid() {
		t.Fatalf("in-process task ran in %d (%v), want %d", got, err, os.Getpid())
	}
	res, err := procpool.Map(ctx, p, square, []int{1, 2, 3})
	if err != nil || !slices.Equal(res, []int{1, 4, 9}) {
		t.Fatalf("in-process Map: %v, %v", res, err)
	}
	if _, err := procpool.Apply(ctx, p, panicking, "x"); err == nil {
		t.Fatal("in-process panic was not reported")
	}
	self := "pid " + strconv.Itoa(os.Getpid())
	for _, w := range p.Stats().Workers {
		if w.Pid != os.Getpid() || w.Worker != self || w.Host != "" {
			t.Errorf("in-process worker %+v, want the parent's pid, named %q", w, self)
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestRegisterMisuse(t *testing.T) {
	mustPanic := func(what string, f func()) {
		t.Helper()
		defer func() {
			if recover() == nil {
				t.Errorf("%s did not panic", what)
			}
		}()
		f()
	}
	// TestMain has called procpool.Main: registering now would give
	// workers a function they do not know.
	mustPanic("Register after Main", func() {
		procpool.Register("late", func(context.Context, int) (int, error) { return 0, nil })
	})
	mustPanic("Register with a taken name", func() {
		procpool.Register("square", func(context.Context, int) (int, error) { return 0, nil })
	})
}

func TestWithDirAndEnv(t *testing.T) {
	ctx := testCtx(t)
	dir := t.TempDir()
	p := newPool(t, procpool.WithProcesses(1), procpool.WithDir(dir), procpool.WithEnv("PROCPOOL_TEST_GREETING=hi"))
	got, err := procpool.Apply(ctx, p, workerEnv, "PROCPOOL_TEST_GREETING")
	if err != nil {
		t.Fatal(err)
	}
	if got[0] != dir || got[1] != "hi" || got[2] != "" {
		t.Fatalf("worker cwd %q, env %q, marker %q; want %q, \"hi\" and no marker", got[0], got[1], got[2], dir)
	}
}

func TestShutdown(t *testing.T) {
	ctx := testCtx(t)
	p := newPool(t, procpool.WithProcesses(1))
	quick, _ := procpool.ApplyAsync(ctx, p, square, 3)
	slow, _ := procpool.ApplyAsync(ctx, p, sleepMs, 3_600_000)
	sctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if err := p.Shutdown(sctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown past its deadline: %v", err)
	}
	if v, err := quick.Get(ctx); err != nil || v != 9 {
		t.Fatalf("task done before the deadline: %d, %v", v, err)
	}
	if _, err := slow.Get(ctx); !errors.Is(err, procpool.ErrTerminated) {
		t.Fatalf("task cut off by Shutdown: %v", err)
	}
	// A Shutdown that has time finishes the work.
	p2 := newPool(t, procpool.WithProcesses(1))
	f, _ := procpool.ApplyAsync(ctx, p2, sleepMs, 50)
	if err := p2.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if v, err := f.Get(ctx); err != nil || v != 50 {
		t.Fatalf("task under a roomy Shutdown: %d, %v", v, err)
	}
}

func TestTerminateDuringStart(t *testing.T) {
	ctx := testCtx(t)
	marker := filepath.Join(t.TempDir(), "hang-now")
	p := newPool(t, procpool.WithProcesses(1), procpool.WithInitializer(initHangIfFile, marker),
		procpool.WithStartTimeout(time.Hour))
	os.WriteFile(marker, nil, 0o600)
	// The worker dies; its replacement hangs in the initializer.
	if _, err := procpool.Apply(ctx, p, exitWith, 1); err == nil {
		t.Fatal("task that exits succeeded")
	}
	f, err := procpool.ApplyAsync(ctx, p, square, 2)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { p.Terminate(); close(done) }()
	select {
	case <-done: // it killed the starting worker instead of waiting an hour
	case <-ctx.Done():
		t.Fatal("Terminate waits for a worker stuck in its start")
	}
	if _, err := f.Get(ctx); !errors.Is(err, procpool.ErrTerminated) {
		t.Fatalf("queued task: %v", err)
	}
}

// Large arguments travel in the worker's shared memory when they fit, down
// the pipe when they do not or when shared memory is off; either way they
// arrive intact, also many at once (the segment fills and wraps around).
func TestLargeArguments(t *testing.T) {
	for _, shm := range []int{16 << 20, 3 << 20, 0} {
		t.Run(fmt.Sprintf("shared=%dMiB", shm>>20), func(t *testing.T) {
			ctx := testCtx(t)
			p := newPool(t, procpool.WithProcesses(2), procpool.WithSharedMemory(shm))
			rng := rand.New(rand.NewPCG(1, uint64(shm)))
			payload := func(n int) []byte {
				b := make([]byte, n)
				for i := range b {
					b[i] = byte(rng.Uint32())
				}
				return b
			}
			for _, n := range []int{64<<10 - 1, 64 << 10, 1 << 20, 5 << 20, 20 << 20} {
				b := payload(n)
				got, err := procpool.Apply(ctx, p, digest, b)
				if err != nil || got != sha256.Sum256(b) {
					t.Fatalf("%d bytes: digest mismatch or %v", n, err)
				}
			}
			var bufs [][]byte
			var futs []*procpool.Future[[32]byte]
			for i := range 40 {
				b := payload(1<<20 + i)
				f, err := procpool.ApplyAsync(ctx, p, digest, b)
				if err != nil {
					t.Fatal(err)
				}
				bufs, futs = append(bufs, b), append(futs, f)
			}
			for i, f := range futs {
				if got, err := f.Get(ctx); err != nil || got != sha256.Sum256(bufs[i]) {
					t.Fatalf("async %d: digest mismatch or %v", i, err)
				}
			}
		})
	}
}

// An Apply with callbacks whose task goes to an idle worker returns: the
// caller reads its own answer, and its future is completed later, by the
// callback goroutine.
func TestApplyWithCallbackOnIdleWorker(t *testing.T) {
	ctx := testCtx(t)
	p := newPool(t, procpool.WithProcesses(1))
	ran := 0
	for i := range 5 {
		v, err := procpool.Apply(ctx, p, square, i, procpool.Callback(func(int) { ran++ }))
		if err != nil || v != i*i {
			t.Fatalf("Apply(%d) with a callback: %d, %v", i, v, err)
		}
	}
	if ran != 5 {
		t.Fatalf("callbacks ran %d times, want 5", ran)
	}
}
