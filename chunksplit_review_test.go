//go:build unix

package procpool_test

// Attack tests from the second adversarial review of the chunk split
// (df076ba) and the worker-side task context (4f36d93). Each test asserts
// outcomes only; a sleep or a bounded wait appears only to widen a window or
// to keep a correct implementation from waiting for ever.

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/procpool/procpool"
)

// ---------------------------------------------------------------------------
// Imap: a piece of a chunk and the rest of the chunk settle concurrently.

// gatedOut is a result whose decoding, in the parent, waits at the gate for
// the value gateValue (at most gateMax, so a correct pool is only slowed).
type gatedOut struct{ V int }

const gateValue = 1000
const gateMax = 5 * time.Second

var (
	gateMu sync.Mutex
	gate   chan struct{} // closed by the test to open the gate; nil: no gate
)

func (g *gatedOut) UnmarshalCBOR(b []byte) error {
	type plain gatedOut
	var v plain
	if err := cbor.Unmarshal(b, &v); err != nil {
		return err
	}
	if v.V == gateValue {
		gateMu.Lock()
		c := gate
		gateMu.Unlock()
		if c != nil {
			select {
			case <-c:
			case <-time.After(gateMax):
			}
		}
	}
	*g = gatedOut(v)
	return nil
}

type gatedArg struct {
	X     int
	Crash bool // exit the worker (status 3)
	Nap   int  // ms to sleep before answering
}

var gatedFn = procpool.Register("r2Gated", func(_ context.Context, a gatedArg) (gatedOut, error) {
	if a.Crash {
		os.Exit(3)
	}
	time.Sleep(time.Duration(a.Nap) * time.Millisecond)
	return gatedOut{V: a.X}, nil
})

// TestR2ImapPieceRace: a chunk [1000, crash, 7]. The worker dies at item 1;
// the parent settles items 0-1 from the journal (a piece, decoded in
// chunkPiece.deliver) while item 2 runs elsewhere and settles through the
// task's own result. imapChunk decides "last" when it claims its items, not
// when it has written them: the call that claims last ends the chunk while
// the other is still decoding, and the consumer reads item 0's value and
// item 1's error before they are written.
func TestR2ImapPieceRace(t *testing.T) {
	for _, ordered := range []bool{true, false} {
		name := "ordered"
		if !ordered {
			name = "unordered"
		}
		t.Run(name, func(t *testing.T) {
			ctx := testCtx(t)
			p := newPool(t, procpool.WithProcesses(2))
			c := make(chan struct{})
			gateMu.Lock()
			gate = c
			gateMu.Unlock()
			var once sync.Once
			open := func() { once.Do(func() { close(c) }) }
			t.Cleanup(func() {
				open()
				gateMu.Lock()
				gate = nil
				gateMu.Unlock()
			})
			in := []gatedArg{{X: gateValue}, {X: 1, Crash: true}, {X: 7, Nap: 100}}
			seq := func(yield func(gatedArg) bool) {
				for _, a := range in {
					if !yield(a) {
						return
					}
				}
			}
			type got struct {
				v   int
				err error
			}
			var out []got
			it := procpool.Imap(ctx, p, gatedFn, seq, procpool.ChunkSize(3))
			if !ordered {
				it = procpool.ImapUnordered(ctx, p, gatedFn, seq, procpool.ChunkSize(3))
			}
			for v, err := range it {
				out = append(out, got{v.V, err})
				open() // the consumer has an item: let the piece's decoding go on
			}
			if len(out) != 3 {
				t.Fatalf("yielded %d items, want 3", len(out))
			}
			var we *procpool.WorkerExitError
			if out[0].err != nil || out[0].v != gateValue {
				t.Errorf("item 0 (finished before the crash): %d, %v; want %d, nil", out[0].v, out[0].err, gateValue)
			}
			if !errors.As(out[1].err, &we) {
				t.Errorf("item 1 (running at the crash): %d, %v; want a *WorkerExitError", out[1].v, out[1].err)
			}
			if out[2].err != nil || out[2].v != 7 {
				t.Errorf("item 2: %d, %v; want 7, nil", out[2].v, out[2].err)
			}
		})
	}
}

// ---------------------------------------------------------------------------
// The caller's deadline is enforced once: work requeued after it runs with
// no bound.

type hangArg struct {
	Log     string
	X       int
	Release string // the task ignores its context and waits for this file
}

var hangUntil = procpool.Register("r2HangUntil", func(_ context.Context, a hangArg) (int, error) {
	logRun(a.Log, a.X)
	for {
		if _, err := os.Stat(a.Release); err == nil {
			return a.X, nil
		}
		time.Sleep(5 * time.Millisecond)
	}
})

// TestR2DeadlineChunkRestRunsAfterDeadline: Map with a context deadline over
// one chunk of three items that ignore their context. At the deadline the
// running item 0 is stopped and its worker dies after the grace; the split
// fails item 0 with ErrTimeout and requeues items 1-2 with expired cleared.
// The context's watch has fired already and the task has no timeout, so
// nothing stops them again: they start after the caller's deadline, and Map
// waits for them for as long as they run (here: until the test releases
// them; in real life, for ever).
func TestR2DeadlineChunkRestRunsAfterDeadline(t *testing.T) {
	p := newPool(t, procpool.WithProcesses(2), procpool.WithKillGrace(50*time.Millisecond))
	dir := t.TempDir()
	log := runLog(filepath.Join(dir, "runs"))
	release := filepath.Join(dir, "release")
	in := []hangArg{{string(log), 0, release}, {string(log), 1, release}, {string(log), 2, release}}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	type res struct {
		out []int
		err error
	}
	done := make(chan res, 1)
	go func() {
		out, err := procpool.Map(ctx, p, hangUntil, in, procpool.ChunkSize(3))
		done <- res{out, err}
	}()
	var r res
	ranLate := false
	waitFor(t, "Map to return, or item 1 to start after the deadline", func() bool {
		select {
		case r = <-done:
			return true
		default:
		}
		if log.counts(t)[1] > 0 {
			ranLate = true
			return true
		}
		return false
	})
	if ranLate {
		// Show that Map is held by the requeued items: release them.
		if err := os.WriteFile(release, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		r = <-done
		t.Errorf("item 1 started after the caller's deadline (Map then waited for it): Map returned %v, %v", r.out, r.err)
	}
	var me *procpool.MapError
	if !errors.As(r.err, &me) || len(me.Errors) != 3 {
		t.Errorf("Map: %v, %v; want a *MapError with all 3 items failed (deadline)", r.out, r.err)
	}
	for _, ie := range me.Errors {
		if !errors.Is(ie.Err, procpool.ErrTimeout) && !errors.Is(ie.Err, context.DeadlineExceeded) {
			t.Errorf("item %d: %v, want the deadline", ie.Index, ie.Err)
		}
	}
	if _, err := os.Stat(release); err != nil {
		_ = os.WriteFile(release, nil, 0o600) // free any worker still waiting
	}
}

// TestR2DeadlineRetryRunsAfterDeadline: the same for a single task with
// Retries(1): the worker dies after the grace, workerExited retries the
// expired task (expired cleared, no watch left, no timeout), and it runs
// again on a fresh worker after its caller's deadline, unbounded.
func TestR2DeadlineRetryRunsAfterDeadline(t *testing.T) {
	p := newPool(t, procpool.WithProcesses(1), procpool.WithKillGrace(50*time.Millisecond))
	dir := t.TempDir()
	log := runLog(filepath.Join(dir, "runs"))
	release := filepath.Join(dir, "release")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	f, err := procpool.ApplyAsync(ctx, p, hangUntil, hangArg{string(log), 5, release}, procpool.Retries(1))
	if err != nil {
		t.Fatal(err)
	}
	ranTwice := false
	waitFor(t, "the task to end, or to run a second time", func() bool {
		if f.Ready() {
			return true
		}
		if log.counts(t)[5] > 1 {
			ranTwice = true
			return true
		}
		return false
	})
	if ranTwice {
		_ = os.WriteFile(release, nil, 0o600)
		v, err := f.Get(testCtx(t))
		t.Errorf("the task ran again after its caller's deadline had passed, and its Future waited for it: %d, %v", v, err)
		return
	}
	if _, err := f.Get(testCtx(t)); !errors.Is(err, procpool.ErrTimeout) {
		t.Errorf("task: %v, want ErrTimeout", err)
	}
	_ = os.WriteFile(release, nil, 0o600)
}

// ---------------------------------------------------------------------------
// SIGTERM from outside.

// TestR2OutsideSIGTERMBlamesTask: a SIGTERM from outside the pool (systemd,
// an operator, the OOM policy of a supervisor) makes the worker cancel the
// running task's context. A task that honours it returns context.Canceled,
// and the worker answers that as the task's own error: the caller, who
// cancelled nothing, gets a *RemoteError that matches context.Canceled, and
// Retries does not apply. A task that ignores its context is better off: it
// gets the worker's exit and is retried.
func TestR2OutsideSIGTERMBlamesTask(t *testing.T) {
	ctx := testCtx(t)
	p := newPool(t, procpool.WithProcesses(1), procpool.WithKillGrace(10*time.Second))
	a := waitArgs(t, true)
	f, err := procpool.ApplyAsync(ctx, p, waitCtx, a, procpool.Retries(1))
	if err != nil {
		t.Fatal(err)
	}
	w := started(t, a)
	if err := syscall.Kill(w, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Retried, the task blocks again (it waits for its context): end it.
	retried := false
	waitFor(t, "the task to end or to start again", func() bool {
		if f.Ready() {
			return true
		}
		if b, err := os.ReadFile(a.Marker); err == nil && string(b) != "" && string(b) != itoa(w) {
			retried = true
			return true
		}
		return false
	})
	if retried {
		f.Cancel()
		return
	}
	_, err = f.Get(ctx)
	var re *procpool.RemoteError
	if errors.As(err, &re) && errors.Is(err, context.Canceled) {
		t.Errorf("SIGTERM from outside: the task failed with its own context.Canceled (%v): the caller cancelled nothing, and Retries(1) was not applied", err)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// ---------------------------------------------------------------------------
// The memory limit's stop, honoured.

type allocArg struct {
	MB   int  // allocate and touch this much
	Wait bool // then wait for the context; else return at once (after checking it)
}

var allocWait = procpool.Register("r2AllocWait", func(ctx context.Context, a allocArg) (int, error) {
	b := make([]byte, a.MB<<20)
	for i := 0; i < len(b); i += 4096 {
		b[i] = 1
	}
	if a.Wait {
		<-ctx.Done()
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	return len(b), nil
})

// TestR2MemoryStopHonouredBlamesTask: a task over the worker memory limit is
// stopped with StopMemory, which the worker turns into context.Canceled. A
// task that honours its context returns that, and the parent ends it with
// the task's own *RemoteError "context canceled" (failed, no retry): the
// caller cancelled nothing and the limit is not named. The same task that
// ignores its context gets *WorkerExitError{Reason: memory}
// (TestMemoryLimitStopsTask). In a chunk it is worse: the items after the
// stopped one, which never ran, see the cancelled context and fail too,
// where a crash would have run them again elsewhere.
func TestR2MemoryStopHonouredBlamesTask(t *testing.T) {
	t.Run("apply", func(t *testing.T) {
		ctx := testCtx(t)
		p := newPool(t, procpool.WithProcesses(1), procpool.WithMaxWorkerMemory(150<<20), procpool.WithKillGrace(10*time.Second))
		_, err := procpool.Apply(ctx, p, allocWait, allocArg{MB: 300, Wait: true}, procpool.Retries(1))
		var we *procpool.WorkerExitError
		if !errors.As(err, &we) || we.Reason != procpool.ReasonMemory {
			t.Errorf("task over the memory limit that honours its context: %v (matches context.Canceled: %v); want the memory limit's *WorkerExitError, as for a task that ignores it", err, errors.Is(err, context.Canceled))
		}
	})
	t.Run("chunk", func(t *testing.T) {
		ctx := testCtx(t)
		p := newPool(t, procpool.WithProcesses(1), procpool.WithMaxWorkerMemory(150<<20), procpool.WithKillGrace(10*time.Second))
		in := []allocArg{{MB: 300, Wait: true}, {MB: 1}, {MB: 1}, {MB: 1}}
		_, err := procpool.Map(ctx, p, allocWait, in, procpool.ChunkSize(4))
		var me *procpool.MapError
		if !errors.As(err, &me) {
			t.Fatalf("Map: %v", err)
		}
		for _, ie := range me.Errors {
			if ie.Index > 0 {
				t.Errorf("item %d, which never started before the memory stop, failed: %v", ie.Index, ie.Err)
			}
		}
	})
}

// ---------------------------------------------------------------------------
// Several crashes in one chunk; the rest re-sent through shared memory.

type onceArg struct {
	Log   string
	Dir   string // crash marks live here
	X     int
	Crash bool   // crash the worker the first time this item runs
	Pad   []byte // makes the chunk's payload travel in shared memory
}

var crashOnce = procpool.Register("r2CrashOnce", func(_ context.Context, a onceArg) (int, error) {
	logRun(a.Log, a.X)
	if a.Crash {
		mark := filepath.Join(a.Dir, "crashed-"+strconv.Itoa(a.X))
		if _, err := os.Stat(mark); err != nil {
			_ = os.WriteFile(mark, nil, 0o600)
			os.Exit(3)
		}
	}
	return 2*a.X + len(a.Pad)*0, nil
})

func onceArgs(t *testing.T, n, pad int, crash ...int) ([]onceArg, runLog) {
	dir := t.TempDir()
	log := runLog(filepath.Join(dir, "runs"))
	in := make([]onceArg, n)
	for i := range in {
		in[i] = onceArg{Log: string(log), Dir: dir, X: i, Pad: make([]byte, pad)}
	}
	for _, c := range crash {
		in[c].Crash = true
	}
	return in, log
}

// TestR2ChunkCrashesRetriedShared: a chunk of 6 whose items 1 and 3 each
// crash their worker once, with Retries(2), with and without the chunk's
// argument in shared memory (120 KiB): every item succeeds, items 1 and 3
// ran twice, the others once.
func TestR2ChunkCrashesRetriedShared(t *testing.T) {
	for _, pad := range []int{0, 20 << 10} {
		t.Run(strconv.Itoa(pad), func(t *testing.T) {
			ctx := testCtx(t)
			p := newPool(t, procpool.WithProcesses(2), procpool.WithSharedMemory(4<<20))
			in, log := onceArgs(t, 6, pad, 1, 3)
			out, err := procpool.Map(ctx, p, crashOnce, in, procpool.ChunkSize(6), procpool.Retries(2))
			if err != nil {
				t.Fatalf("Map: %v", err)
			}
			for i, v := range out {
				if v != 2*i {
					t.Errorf("item %d: %d, want %d", i, v, 2*i)
				}
			}
			for x, n := range log.counts(t) {
				want := 1
				if x == 1 || x == 3 {
					want = 2
				}
				if n != want {
					t.Errorf("item %d ran %d times, want %d", x, n, want)
				}
			}
		})
	}
}

// TestR2ChunkSecondCrashAttempts: a chunk of 4 whose items 1 and 3 each
// crash once, with Retries(1). Item 1's crash spends the chunk's retry; item
// 3 then fails at its first run, and its *WorkerExitError says Attempts 2
// (t.attempts is not reset once the retried item has finished).
func TestR2ChunkSecondCrashAttempts(t *testing.T) {
	ctx := testCtx(t)
	p := newPool(t, procpool.WithProcesses(2))
	in, log := onceArgs(t, 4, 0, 1, 3)
	_, err := procpool.Map(ctx, p, crashOnce, in, procpool.ChunkSize(4), procpool.Retries(1))
	var me *procpool.MapError
	if !errors.As(err, &me) || len(me.Errors) != 1 || me.Index != 3 {
		t.Fatalf("Map: %v; want item 3 alone failed", err)
	}
	var we *procpool.WorkerExitError
	if !errors.As(me.Errors[0].Err, &we) {
		t.Fatalf("item 3: %v", me.Errors[0].Err)
	}
	if n := log.counts(t)[3]; we.Attempts != n {
		t.Errorf("item 3 ran %d time(s) but its error says Attempts %d: %v", n, we.Attempts, we)
	}
}

// ---------------------------------------------------------------------------
// In-process Terminate between two tasks.

// TestR2InProcessTerminateBeforeBegin: in process, Terminate cancels the
// running task's context (cancelRunning) and cuts the pipes, but marks
// nothing in the server: a task whose frame the server has already read
// (the reader's buffer, or the look-ahead queue) and that begins after the
// cancel gets a fresh, live context. A task that returns only when its
// context is done then never returns, and Terminate waits for it for ever
// (release's wg.Wait).
func TestR2InProcessTerminateBeforeBegin(t *testing.T) {
	noOrphans(t)
	for round := range 300 {
		p, err := procpool.New(procpool.WithProcesses(1), procpool.WithInProcess(), procpool.WithKillGrace(10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		a := waitArgs(t, true)
		f, err := procpool.ApplyAsync(context.Background(), p, waitCtx, a)
		if err != nil {
			t.Fatal(err)
		}
		// A short, varying delay so that Terminate lands at every point of
		// the worker's reading and beginning of the task.
		for i := 0; i < round%40*50; i++ {
			_ = i * i
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = p.Terminate()
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			// Free it: the task waits for its context, which nothing will
			// cancel; its Done file shows whether it began.
			t.Errorf("round %d: Terminate hangs: the task began after Terminate's cancel with a live context (began: %v); future ready: %v", round, fileExists(a.Marker), f.Ready())
			return // the pool's goroutines stay blocked: goleak will also report them
		}
		if _, err := f.Get(context.Background()); !errors.Is(err, procpool.ErrTerminated) {
			t.Fatalf("round %d: %v", round, err)
		}
	}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// ---------------------------------------------------------------------------
// A chunk stopped at its deadline that honours its context.

// TestR2ChunkTimeoutHonouredNotErrTimeout: the same function and Timeout
// end with ErrTimeout through Apply (TestContextTimeoutKeepsWorker) but,
// through Map, the items of a chunk that honours its context get only their
// own *RemoteError (context deadline exceeded): onFrame wraps a timed-out
// task's Error answer in ErrTimeout, but a chunk answers with a Result whose
// item errors are not wrapped.
func TestR2ChunkTimeoutHonouredNotErrTimeout(t *testing.T) {
	ctx := testCtx(t)
	p := newPool(t, procpool.WithProcesses(1), procpool.WithKillGrace(10*time.Second))
	a := waitArgs(t, true)
	_, err := procpool.Apply(ctx, p, waitCtx, a, procpool.Timeout(100*time.Millisecond))
	if !errors.Is(err, procpool.ErrTimeout) {
		t.Fatalf("Apply: %v, want ErrTimeout", err)
	}
	_, err = procpool.Map(ctx, p, waitCtx, []waitArg{a, a}, procpool.ChunkSize(2), procpool.Timeout(100*time.Millisecond))
	var me *procpool.MapError
	if !errors.As(err, &me) {
		t.Fatalf("Map: %v", err)
	}
	for _, ie := range me.Errors {
		if !errors.Is(ie.Err, procpool.ErrTimeout) {
			t.Errorf("Map item %d: %v; want ErrTimeout, as Apply gives", ie.Index, ie.Err)
		}
	}
}

// TestR2WorkerDeadlineBeatsParentTimer: the worker counts a task's Timeout
// from its own start, the parent from the moment it has read the answer
// before it. A pipelined task starts in the worker well before the parent
// arms its timer (here: the parent's reader is held up decoding an earlier
// result). The task honours its context, returns DeadlineExceeded at its
// worker-side deadline, and the parent, whose timer has not fired, ends it
// as a plain failure: no ErrTimeout, counted Failed, not TimedOut.
func TestR2WorkerDeadlineBeatsParentTimer(t *testing.T) {
	ctx := testCtx(t)
	p := newPool(t, procpool.WithProcesses(1), procpool.WithKillGrace(10*time.Second))
	warm(t, p)
	c := make(chan struct{})
	gateMu.Lock()
	gate = c
	gateMu.Unlock()
	t.Cleanup(func() {
		close(c)
		gateMu.Lock()
		gate = nil
		gateMu.Unlock()
	})
	// The worker is busy for 50 ms, so that the next three tasks wait in its
	// pipe (its recent tasks were short: they are pipelined).
	if _, err := procpool.ApplyAsync(ctx, p, sleepMs, 50); err != nil {
		t.Fatal(err)
	}
	z, err := procpool.ApplyAsync(ctx, p, gatedFn, gatedArg{X: gateValue}) // its decoding holds the reader
	if err != nil {
		t.Fatal(err)
	}
	if _, err := procpool.ApplyAsync(ctx, p, square, 3); err != nil { // its answer waits behind z's in the reader
		t.Fatal(err)
	}
	a := waitArgs(t, true)
	b, err := procpool.ApplyAsync(ctx, p, waitCtx, a, procpool.Timeout(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if ws := p.Stats().Workers; len(ws) != 1 || ws[0].InFlight != 4 {
		t.Skipf("not pipelined: %+v", ws)
	}
	_, err = b.Get(ctx)
	if !errors.Is(err, procpool.ErrTimeout) {
		t.Errorf("task past its Timeout (worker's clock): %v; want ErrTimeout; stats %+v", err, p.Stats())
	}
	_, _ = z.Get(ctx)
}

// ---------------------------------------------------------------------------
// Terminate and Cancel racing the pieces of crashed chunks.

// TestR2PiecesRaceEndings: MapAsync over chunks whose items crash their
// workers, ended at varying moments by Terminate or by Cancel. The future
// completes exactly once (one callback), every item has an outcome, and
// Terminate returns.
func TestR2PiecesRaceEndings(t *testing.T) {
	noOrphans(t)
	for round := range 30 {
		p, err := procpool.New(procpool.WithProcesses(2), procpool.WithKillGrace(20*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		log := runLog(filepath.Join(dir, "runs"))
		in := make([]crashArg, 60)
		for i := range in {
			in[i] = crashArg{Log: string(log), X: i, Crash: -1, Fail: -1}
			if i%7 == 3 {
				in[i].Crash = i
			}
		}
		var calls sync.WaitGroup
		var n int32
		var mu sync.Mutex
		calls.Add(1)
		f, err := procpool.MapAsync(context.Background(), p, doubleOrCrash, in, procpool.ChunkSize(5), procpool.Retries(round%2),
			procpool.Callback(func([]int) { mu.Lock(); n++; mu.Unlock(); calls.Done() }),
			procpool.ErrorCallback(func(error) { mu.Lock(); n++; mu.Unlock(); calls.Done() }))
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, "some crashes", func() bool { return len(log.counts(t)) >= round%20 })
		within(t, "ending", func() {
			if round%3 == 0 {
				f.Cancel()
				<-f.Done()
				_ = p.Close()
			} else {
				_ = p.Terminate()
			}
		})
		if !f.Ready() {
			t.Fatalf("round %d: the MapAsync future is pending after the pool ended", round)
		}
		calls.Wait()
		mu.Lock()
		if n != 1 {
			t.Fatalf("round %d: %d callbacks", round, n)
		}
		mu.Unlock()
		out, err := f.Get(context.Background())
		var me *procpool.MapError
		if err != nil && !errors.As(err, &me) {
			t.Fatalf("round %d: %v", round, err)
		}
		if len(out) != len(in) {
			t.Fatalf("round %d: %d results", round, len(out))
		}
		for x, c := range log.counts(t) {
			if c > 1 && in[x].Crash != x {
				t.Fatalf("round %d: item %d ran %d times", round, x, c)
			}
		}
	}
}
