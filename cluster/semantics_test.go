//go:build unix

package cluster_test

// The promises a remote pool keeps at its edges: a host that cannot run
// a task, stops and retries of the same task, answers the server cannot
// carry, deadlines and the stream's limits. Bounds on waiting (eventually)
// only detect a hang; nothing here asserts how fast anything happens.

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/procpool/procpool"
	"github.com/procpool/procpool/cluster"
)

// zeros returns n zero bytes: a result larger than the test server carries.
var zeros = procpool.Register("ct.zeros", func(_ context.Context, n int) ([]byte, error) {
	return make([]byte, n), nil
})

// eventually polls cond until it holds or bound passes, and reports
// whether it held.
func eventually(bound time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(bound)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

func isDone(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// serveClosedPool runs Serve, with one slot, over a pool that is closed:
// it takes a task, gives it back, and returns ErrClosed.
func (e *env) serveClosedPool() {
	e.t.Helper()
	closed, err := procpool.New(procpool.WithInProcess(), procpool.WithProcesses(1))
	if err != nil {
		e.t.Fatal(err)
	}
	closed.Close()
	if err := cluster.Serve(context.Background(), e.connect(), closed, e.config(), cluster.WithSlots(1), cluster.WithName("closed")); !errors.Is(err, procpool.ErrClosed) {
		e.t.Fatalf("Serve over a closed pool: %v, want ErrClosed", err)
	}
}

// A host whose pool is closed gives back the task it took (a released
// answer), and its client sends it again, as a task no host has been
// given: the next host runs it (retries 0), rather than taking the second
// delivery for a lost host's.
func TestReleasedTaskRunsElsewhere(t *testing.T) {
	e := newEnv(t)
	p := e.client() // retries 0
	ctx := context.Background()
	f, err := procpool.ApplyAsync(ctx, p, square, 3)
	if err != nil {
		t.Fatal(err)
	}
	e.serveClosedPool()
	e.startHost("b", 1)
	v, err := f.Get(ctx)
	if err != nil || v != 9 {
		t.Fatalf("task released by a host whose pool was closed: %d, %v; want 9, nil", v, err)
	}
	if got := e.runs()["square"][3]; len(got) != 1 || got[0] != "b" {
		t.Fatalf("square(3) ran on %v, want once on b", got)
	}
}

// A task given back by a host whose pool is closed, then cancelled, runs
// on no host that starts later: the send its client stored again is the
// one its stop deletes. (A copy the host stored itself escaped the stop.)
func TestCancelledReleasedTaskRunsNowhere(t *testing.T) {
	e := newEnv(t)
	p := e.client() // retries 0
	ctx := context.Background()
	tctx, cancel := context.WithCancel(ctx)
	f, err := procpool.ApplyAsync(tctx, p, square, 3)
	if err != nil {
		t.Fatal(err)
	}
	e.serveClosedPool()
	cancel()
	if v, err := f.Get(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("the released task, cancelled: %d, %v; want context.Canceled", v, err)
	}
	e.startHost("b", 1)
	if v, err := procpool.Apply(ctx, p, square, 4); err != nil || v != 16 {
		t.Fatalf("a task after it, on b: %d, %v", v, err)
	}
	if got := e.runs()["square"]; len(got[3]) != 0 || len(got[4]) != 1 {
		t.Fatalf("runs %v: want square(3) on no host, square(4) once", got)
	}
}

// Serve with several slots returns as soon as one finds the pool closed,
// not when its ctx ends.
func TestServeOverClosedPoolReturns(t *testing.T) {
	e := newEnv(t)
	p := e.client()
	closed, err := procpool.New(procpool.WithInProcess(), procpool.WithProcesses(1))
	if err != nil {
		t.Fatal(err)
	}
	closed.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	nc := e.connect()
	go func() {
		served <- cluster.Serve(ctx, nc, closed, e.config(), cluster.WithSlots(2), cluster.WithName("closed"))
	}()
	f, err := procpool.ApplyAsync(context.Background(), p, square, 4)
	if err != nil {
		t.Fatal(err)
	}
	returned := eventually(20*time.Second, func() bool { return len(served) > 0 })
	cancel()
	if serr := <-served; !errors.Is(serr, procpool.ErrClosed) {
		t.Fatalf("Serve over a closed pool: %v, want ErrClosed", serr)
	}
	if !returned {
		t.Fatal("Serve over a closed pool with 2 slots returned only when its ctx ended")
	}
	e.startHost("b", 1)
	if v, err := f.Get(context.Background()); err != nil || v != 16 {
		t.Fatalf("the released task: %d, %v; want 16, nil", v, err)
	}
}

// A task that times out while it waits in the stream (the only host is
// busy) ends with ErrTimeout, as a local pool's task that times out in its
// queue: its stop deletes it from the stream, so no host runs it and no
// host's answer is waited for. Its slot is not killed (no retry, though
// retries are allowed), and the host, once free, runs the next task.
func TestTaskTimedOutInTheStreamNeverRuns(t *testing.T) {
	e := newEnv(t)
	e.startHost("a", 1)
	p := e.client(procpool.WithProcesses(2), procpool.WithRetries(1), procpool.WithKillGrace(50*time.Millisecond))
	release := filepath.Join(t.TempDir(), "release")
	ctx := context.Background()
	busy, err := procpool.ApplyAsync(ctx, p, block, blockArg{X: 1, Release: release})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the host to be busy", func() bool { return len(e.runs()["start"][1]) == 1 })
	f, err := procpool.ApplyAsync(ctx, p, square, 7, procpool.Timeout(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Get(ctx); !errors.Is(err, procpool.ErrTimeout) {
		t.Fatalf("a task that timed out in the stream: %v, want ErrTimeout", err)
	}
	if err := os.WriteFile(release, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := busy.Get(ctx); err != nil {
		t.Fatal(err)
	}
	if v, err := procpool.Apply(ctx, p, square, 8); err != nil || v != 64 {
		t.Fatalf("the next task: %d, %v", v, err)
	}
	if got := e.runs()["square"][7]; len(got) != 0 {
		t.Fatalf("square(7), timed out in the stream, ran on %v", got)
	}
	if s := p.Stats(); s.Retried != 0 || s.Restarts != 0 {
		t.Fatalf("retried %d, slots replaced %d; want 0, 0", s.Retried, s.Restarts)
	}
}

// An answer larger than the server carries is replaced by an error that
// says so: the task ends, with a RemoteError of CodeEncode.
func TestAnswerTooLargeForTheServer(t *testing.T) {
	e := newEnv(t)
	e.startHost("a", 1)
	p := e.client()
	f, err := procpool.ApplyAsync(context.Background(), p, zeros, 2<<20)
	if err != nil {
		t.Fatal(err)
	}
	if !eventually(60*time.Second, func() bool { return isDone(f.Done()) }) {
		t.Fatal("a task whose 2 MiB result the server cannot carry never ended")
	}
	_, err = f.Get(context.Background())
	var re *procpool.RemoteError
	if !errors.As(err, &re) || re.Code != procpool.CodeEncode || !strings.Contains(re.Message, "over the") {
		t.Fatalf("a 2 MiB result over a 1 MiB server: %v; want a RemoteError with CodeEncode", err)
	}
	if v, err := procpool.Apply(context.Background(), p, square, 5); err != nil || v != 25 {
		t.Fatalf("the next task: %d, %v", v, err)
	}
}

// skewed is a context whose deadline has passed by another machine's clock
// (the host's) but not by this one's: it is not done here.
type skewed struct {
	context.Context
	d time.Time
}

func (c skewed) Deadline() (time.Time, bool) { return c.d, true }

// A task whose deadline has passed by the host's clock when the host gets
// it ends with ErrTimeout, as on a local pool.
func TestDeadlinePassedOnTheHostIsATimeout(t *testing.T) {
	e := newEnv(t)
	e.startHost("a", 1)
	p := e.client()
	ctx := skewed{context.Background(), time.Now().Add(-time.Second)}
	_, err := procpool.Apply(ctx, p, sleepy, sleepArg{X: 1, D: time.Hour})
	if !errors.Is(err, procpool.ErrTimeout) {
		t.Fatalf("task past its deadline by the host's clock: %v (%T); want ErrTimeout", err, err)
	}
}

// TryApplyAsync never waits for room in the stream: with a free slot it
// takes the task, which is published when the stream has room.
func TestTryApplyAsyncDoesNotWaitForTheStream(t *testing.T) {
	e := newEnv(t)
	cfg := e.config()
	cfg.MaxMsgs = 1
	p, err := cluster.New(context.Background(), e.connect(), cfg, procpool.WithProcesses(3), procpool.WithKillGrace(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Terminate() })
	ctx := context.Background()
	first, err := procpool.TryApplyAsync(ctx, p, square, 1)
	if err != nil {
		t.Fatal(err)
	}
	returned := make(chan struct{})
	var second *procpool.Future[int]
	var serr error
	go func() {
		defer close(returned)
		second, serr = procpool.TryApplyAsync(ctx, p, square, 2)
	}()
	if !eventually(20*time.Second, func() bool { return isDone(returned) }) {
		t.Fatal("TryApplyAsync waited for room in the stream")
	}
	if serr != nil {
		t.Fatalf("TryApplyAsync with a free slot: %v", serr)
	}
	e.startHost("a", 1)
	for i, f := range []*procpool.Future[int]{first, second} {
		if v, err := f.Get(ctx); err != nil || v != (i+1)*(i+1) {
			t.Fatalf("task %d: %d, %v", i+1, v, err)
		}
	}
}

// A task that the server drops at the stream's MaxAge (no host came for
// that long) ends with ErrTimeout, and no host runs it later.
func TestTaskDroppedAtMaxAgeEnds(t *testing.T) {
	e := newEnv(t)
	cfg := e.config()
	cfg.MaxAge = time.Second
	p, err := cluster.New(context.Background(), e.connect(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Terminate() })
	ctx := context.Background()
	f, err := procpool.ApplyAsync(ctx, p, square, 5)
	if err != nil {
		t.Fatal(err)
	}
	stream := e.stream()
	waitFor(t, "the task to age out of the stream", func() bool {
		info, err := stream.Info(ctx)
		return err == nil && info.State.LastSeq >= 1 && info.State.Msgs == 0
	})
	if _, err := f.Get(ctx); !errors.Is(err, procpool.ErrTimeout) {
		t.Fatalf("a task dropped from the stream at MaxAge: %v; want ErrTimeout", err)
	}
	e.startHost("a", 1)
	if v, err := procpool.Apply(ctx, p, square, 6); err != nil || v != 36 {
		t.Fatalf("the next task: %d, %v", v, err)
	}
	if got := e.runs()["square"][5]; len(got) != 0 {
		t.Fatalf("the dropped task ran on %v", got)
	}
}

// The consumer's AckWait is set by whoever creates it; a later client with
// a shorter one does not change it under the hosts, which show life at the
// consumer's pace: a task longer than the new client's AckWait completes.
func TestClientCannotShortenTheHostsAckWait(t *testing.T) {
	e := newEnv(t)
	e.startHost("a", 2) // AckWait 1s: in progress every 500ms
	ctx := context.Background()
	if _, err := procpool.Apply(ctx, e.client(), square, 2); err != nil { // the host serves
		t.Fatal(err)
	}
	cfg := e.config()
	cfg.AckWait = 100 * time.Millisecond
	p, err := cluster.New(ctx, e.connect(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Terminate() })
	js, err := jetstream.New(e.connect())
	if err != nil {
		t.Fatal(err)
	}
	c, err := js.Consumer(ctx, streamName(e.prefix), "hosts")
	if err != nil {
		t.Fatal(err)
	}
	if info, err := c.Info(ctx); err != nil || info.Config.AckWait != e.config().AckWait {
		t.Fatalf("the consumer's AckWait after a client asked for 100ms: %v, %v; want %v", info.Config.AckWait, err, e.config().AckWait)
	}
	v, err := procpool.Apply(ctx, p, sleepy, sleepArg{X: 1, D: 3 * time.Second})
	if err != nil || v != 1 {
		t.Fatalf("a 3s task on a healthy host: %d, %v", v, err)
	}
}

// The host that reports a lost task is not the host that was lost; which
// one was is not known, so the error names no host.
func TestLostHostErrorNamesNoHost(t *testing.T) {
	e := newEnv(t)
	a := e.startHost("a", 1)
	p := e.client() // retries 0
	never := filepath.Join(t.TempDir(), "never")
	ctx := context.Background()
	f, err := procpool.ApplyAsync(ctx, p, block, blockArg{X: 1, Release: never})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the task to start on a", func() bool { return len(e.runs()["start"][1]) == 1 })
	if err := a.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = a.Wait()
	e.startHost("b", 1)
	_, err = f.Get(ctx)
	var we *procpool.WorkerExitError
	if !errors.As(err, &we) || we.Reason != cluster.ReasonHostLost || !errors.Is(err, cluster.ErrHostLost) {
		t.Fatalf("task on the killed host: %v; want a WorkerExitError with ReasonHostLost", err)
	}
	if we.Host != "" {
		t.Fatalf("the lost task's error names host %q, which only reported the loss", we.Host)
	}
}

// A host's requests out when the broker restarts are asked again after
// it: a host with 4 slots, 2 busy and 2 asking at the restart, takes 3 new
// tasks at once. (An orderly shutdown ends the requests with a status; a
// broker that dies forgets them, and the host takes them for lost after
// 4 s. The embedded broker here shuts down in order.) Had the 2 requests
// stayed counted, only 2 of the 3 would start.
func TestHostPullsAtFullWidthAfterABrokerRestart(t *testing.T) {
	e := newEnv(t)
	e.startHost("a", 4)
	// Retries: a restart longer than the tests' AckWait (1 s) makes a busy
	// task look lost, and it runs again.
	p := e.client(procpool.WithProcesses(8), procpool.WithRetries(1))
	ctx := context.Background()
	dir := t.TempDir()
	r1, r2, r3 := filepath.Join(dir, "r1"), filepath.Join(dir, "r2"), filepath.Join(dir, "r3")
	first, err := procpool.ApplyAsync(ctx, p, block, blockArg{X: 1, Release: r1})
	if err != nil {
		t.Fatal(err)
	}
	second, err := procpool.ApplyAsync(ctx, p, block, blockArg{X: 2, Release: r2})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "two tasks to start", func() bool {
		r := e.runs()["start"]
		return len(r[1]) == 1 && len(r[2]) == 1
	})
	// The host has 2 requests out; the restart forgets them.
	port := e.b.Port()
	if err := e.b.Close(); err != nil {
		t.Fatal(err)
	}
	e.startBroker(port)
	// Both busy tasks end (one may have run again, taken for lost by a
	// restart longer than AckWait): their slots' new requests are live.
	for _, r := range []string{r1, r2} {
		if err := os.WriteFile(r, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for i, f := range []*procpool.Future[int]{first, second} {
		if v, err := f.Get(ctx); err != nil || v != i+1 {
			t.Fatalf("task %d: %d, %v", i+1, v, err)
		}
	}
	var more []*procpool.Future[int]
	for x := 3; x <= 5; x++ {
		f, err := procpool.ApplyAsync(ctx, p, block, blockArg{X: x, Release: r3})
		if err != nil {
			t.Fatal(err)
		}
		more = append(more, f)
	}
	waitFor(t, "3 tasks to run at once", func() bool {
		r := e.runs()["start"]
		return len(r[3]) == 1 && len(r[4]) == 1 && len(r[5]) == 1
	})
	if err := os.WriteFile(r3, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for i, f := range more {
		if v, err := f.Get(ctx); err != nil || v != i+3 {
			t.Fatalf("task %d: %d, %v", i+3, v, err)
		}
	}
}
