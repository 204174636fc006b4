//go:build unix

package cluster_test

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/procpool/procpool"
	"github.com/procpool/procpool/cluster"
)

// A Map of 10,000 items over two hosts, one of which is SIGKILLed in the
// middle: the result is complete and in order, and the only items that ran
// twice are those of the chunks the killed host had taken.
func TestMapSurvivesAKilledHost(t *testing.T) {
	e := newEnv(t)
	a := e.startHost("a", 2)
	e.startHost("b", 2)
	p := e.client(procpool.WithRetries(2))
	const n, chunk = 10000, 10
	xs := make([]int, n)
	for i := range xs {
		xs[i] = i
	}
	ctx := context.Background()
	fut, err := procpool.MapAsync(ctx, p, square, xs, procpool.ChunkSize(chunk))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "host a to run 1,000 items", func() bool {
		c := 0
		for _, hosts := range e.runs()["square"] {
			for _, h := range hosts {
				if h == "a" {
					c++
				}
			}
		}
		return c >= 1000
	})
	if err := a.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	out, err := fut.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range out {
		if v != i*i {
			t.Fatalf("out[%d] = %d, want %d", i, v, i*i)
		}
	}
	runs := e.runs()["square"]
	twice, perHost := 0, map[string]int{}
	for i := range n {
		hosts := runs[i]
		if len(hosts) == 0 {
			t.Fatalf("item %d never ran, yet has a result", i)
		}
		for _, h := range hosts {
			perHost[h]++
		}
		if len(hosts) > 1 {
			twice++
			if hosts[0] != "a" || len(hosts) > 2 {
				t.Errorf("item %d ran on %v: only an item of a chunk the killed host had may run again, once", i, hosts)
			}
		}
	}
	// Host a had at most 2 chunks (one per slot) when it died.
	if twice > 2*chunk {
		t.Errorf("%d items ran twice, more than the %d of the chunks host a had", twice, 2*chunk)
	}
	if perHost["a"] == 0 || perHost["b"] == 0 {
		t.Errorf("runs per host %v: both hosts should have run items", perHost)
	}
	t.Logf("runs per host %v; %d items ran twice", perHost, twice)
}

// With retries 0, a lost host's running tasks fail with ReasonHostLost,
// and no other task fails.
func TestLostHostFailsOnlyItsTasks(t *testing.T) {
	e := newEnv(t)
	a := e.startHost("a", 2)
	e.startHost("b", 2)
	p := e.client()
	release := filepath.Join(t.TempDir(), "release")
	ctx := context.Background()
	futs := make([]*procpool.Future[int], 4)
	for i := range futs {
		f, err := procpool.ApplyAsync(ctx, p, block, blockArg{X: i, Release: release})
		if err != nil {
			t.Fatal(err)
		}
		futs[i] = f
	}
	var onA map[int]bool
	waitFor(t, "the 4 tasks to start, 2 on each host", func() bool {
		onA = map[int]bool{}
		starts := e.runs()["start"]
		for x, hosts := range starts {
			if hosts[0] == "a" {
				onA[x] = true
			}
		}
		return len(starts) == 4
	})
	if len(onA) != 2 {
		t.Fatalf("host a runs %v, want 2 of the 4 tasks", onA)
	}
	if err := a.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = a.Wait()
	if err := os.WriteFile(release, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for i, f := range futs {
		v, err := f.Get(ctx)
		if !onA[i] {
			if err != nil || v != i {
				t.Errorf("task %d on host b: %d, %v; want %d, nil", i, v, err, i)
			}
			continue
		}
		var we *procpool.WorkerExitError
		if !errors.As(err, &we) || we.Reason != cluster.ReasonHostLost || !errors.Is(err, cluster.ErrHostLost) {
			t.Errorf("task %d on the lost host: %v; want a *WorkerExitError with reason %q", i, err, cluster.ReasonHostLost)
		}
	}
	for x, hosts := range e.runs()["start"] {
		if len(hosts) != 1 {
			t.Errorf("task %d started on %v: a lost task must not run again with retries 0", x, hosts)
		}
	}
}

// A task that kills every worker that runs it fails, after its retries,
// with a *WorkerExitError that names the host and the worker; the hosts
// and the other tasks carry on.
func TestPoisonTask(t *testing.T) {
	e := newEnv(t)
	e.startHost("a", 1)
	e.startHost("b", 1)
	p := e.client(procpool.WithRetries(2))
	ctx := context.Background()
	_, err := procpool.Apply(ctx, p, crash, 1)
	var we *procpool.WorkerExitError
	if !errors.As(err, &we) {
		t.Fatalf("Apply of a crashing task: %v, want a *WorkerExitError", err)
	}
	if we.Reason != procpool.ReasonCrashed || we.ExitCode != 7 || we.Host == "" || we.Worker == "" || we.Pid != 0 || we.Attempts != 3 {
		t.Errorf("%#v: want reason %q, exit code 7, a host and a worker named, pid 0, 3 attempts", we, procpool.ReasonCrashed)
	}
	if got := len(e.runs()["crash"][1]); got != 3 {
		t.Errorf("the poison task ran %d times, want 3 (retries 2)", got)
	}
	t.Log(err)
	for i := range 20 {
		if v, err := procpool.Apply(ctx, p, square, i); err != nil || v != i*i {
			t.Fatalf("square(%d) after the poison task: %d, %v", i, v, err)
		}
	}
}

// Cancelling a task that runs on a host cancels its context there; a
// timeout does too, and Terminate ends the remote tasks.
func TestStopsReachTheHost(t *testing.T) {
	e := newEnv(t)
	e.startHost("a", 2)
	p := e.client(procpool.WithKillGrace(5 * time.Second))
	never := filepath.Join(t.TempDir(), "never")

	ctx, cancel := context.WithCancel(context.Background())
	f, err := procpool.ApplyAsync(ctx, p, block, blockArg{X: 1, Release: never})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "task 1 to start", func() bool { return len(e.runs()["start"][1]) == 1 })
	cancel()
	if _, err := f.Get(context.Background()); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled task: %v, want context.Canceled", err)
	}
	waitFor(t, "the host to stop task 1", func() bool { return len(e.runs()["stopped"][1]) == 1 })

	_, err = procpool.Apply(context.Background(), p, block, blockArg{X: 2, Release: never}, procpool.Timeout(300*time.Millisecond))
	if !errors.Is(err, procpool.ErrTimeout) {
		t.Fatalf("task past its timeout: %v, want ErrTimeout", err)
	}
	waitFor(t, "the host to stop task 2", func() bool { return len(e.runs()["stopped"][2]) == 1 })

	f, err = procpool.ApplyAsync(context.Background(), p, block, blockArg{X: 3, Release: never})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "task 3 to start", func() bool { return len(e.runs()["start"][3]) == 1 })
	if err := p.Terminate(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Get(context.Background()); !errors.Is(err, procpool.ErrTerminated) {
		t.Fatalf("task at Terminate: %v, want ErrTerminated", err)
	}
	waitFor(t, "the host to stop task 3", func() bool { return len(e.runs()["stopped"][3]) == 1 })
}

// A host that drains (SIGTERM) finishes its running task, answers it and
// exits; it takes no more tasks.
func TestHostDrainsOnSIGTERM(t *testing.T) {
	e := newEnv(t)
	a := e.startHost("a", 1)
	p := e.client()
	release := filepath.Join(t.TempDir(), "release")
	ctx := context.Background()
	f, err := procpool.ApplyAsync(ctx, p, block, blockArg{X: 1, Release: release})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "task 1 to start", func() bool { return len(e.runs()["start"][1]) == 1 })
	if err := a.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(release, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if v, err := f.Get(ctx); err != nil || v != 1 {
		t.Fatalf("the draining host's task: %d, %v; want 1, nil", v, err)
	}
	if err := a.Wait(); err != nil {
		t.Fatalf("the drained host: %v, want exit status 0", err)
	}
	// A task sent now waits for a host, and runs when one comes.
	f, err = procpool.ApplyAsync(ctx, p, square, 5)
	if err != nil {
		t.Fatal(err)
	}
	e.startHost("b", 1)
	if v, err := f.Get(ctx); err != nil || v != 25 {
		t.Fatalf("task after the drain: %d, %v; want 25, nil", v, err)
	}
	if hosts := e.runs()["square"][5]; len(hosts) != 1 || hosts[0] != "b" {
		t.Errorf("the task after the drain ran on %v, want [b]", hosts)
	}
}

// A task larger than the server carries fails at submission with a
// *CodecError wrapping the frame limit; nothing is sent.
func TestTaskTooLargeForTheServer(t *testing.T) {
	e := newEnv(t)
	p := e.client()
	big := make([]byte, 2<<20) // the server's max payload is 1 MiB
	_, err := procpool.ApplyAsync(context.Background(), p, echo, big)
	var ce *procpool.CodecError
	if !errors.As(err, &ce) {
		t.Fatalf("ApplyAsync of 2 MiB: %v, want a *CodecError", err)
	}
	if s := p.Stats(); s.Submitted != 0 {
		t.Errorf("Stats.Submitted = %d after a refused task, want 0", s.Submitted)
	}
}

var echo = procpool.Register("ct.echo", func(_ context.Context, b []byte) ([]byte, error) { return b, nil })

// Queued and running tasks survive a restart of the broker (file
// storage): they complete once clients and hosts have reconnected.
func TestBrokerRestart(t *testing.T) {
	e := newEnv(t)
	e.startHost("a", 2)
	e.startHost("b", 2)
	p := e.client(procpool.WithProcesses(300), procpool.WithRetries(1))
	ctx := context.Background()
	const n = 300
	futs := make([]*procpool.Future[int], n)
	for i := range futs {
		f, err := procpool.ApplyAsync(ctx, p, sleepy, sleepArg{X: i, D: 10 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		futs[i] = f
	}
	waitFor(t, "50 tasks to run", func() bool { return len(e.runs()["sleepy"]) >= 50 })
	port := e.b.Port()
	if err := e.b.Close(); err != nil {
		t.Fatal(err)
	}
	e.startBroker(port)
	// A hang shows as a task not answered within the bound (its runs say
	// whether it ran and its answer was lost, or it never ran).
	gctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for i, f := range futs {
		if v, err := f.Get(gctx); err != nil || v != i {
			t.Errorf("task %d: %d, %v; want %d, nil (it ran on %v)", i, v, err, i, e.runs()["sleepy"][i])
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	again := 0
	for x, hosts := range e.runs()["sleepy"] {
		if len(hosts) > 1 {
			again++
			t.Logf("task %d ran on %v", x, hosts)
		}
	}
	t.Logf("%d of %d tasks ran twice", again, n)
}

// An answer that comes twice (from a host that was taken for lost, and
// then went on) reaches the caller once, and does not touch the next task
// of the slot it came back to.
func TestDuplicateAnswerDroppedOnce(t *testing.T) {
	e := newEnv(t)
	hosts := map[string]*os.Process{"a": e.startHost("a", 1).Process, "b": e.startHost("b", 1).Process}
	p := e.client(procpool.WithProcesses(1), procpool.WithRetries(1))
	dir := t.TempDir()
	release1, release2 := filepath.Join(dir, "1"), filepath.Join(dir, "2")
	ctx := context.Background()
	f, err := procpool.ApplyAsync(ctx, p, block, blockArg{X: 1, Release: release1})
	if err != nil {
		t.Fatal(err)
	}
	var first string
	waitFor(t, "task 1 to start", func() bool {
		h := e.runs()["start"][1]
		if len(h) > 0 {
			first = h[0]
		}
		return first != ""
	})
	other := map[string]string{"a": "b", "b": "a"}[first]
	// The host stalls past AckWait: the other host gets the task again,
	// reports the first lost, and runs the retry.
	if err := hosts[first].Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the retry to start on the other host", func() bool {
		h := e.runs()["start"][1]
		return len(h) == 2 && h[1] == other
	})
	if err := os.WriteFile(release1, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if v, err := f.Get(ctx); err != nil || v != 1 {
		t.Fatalf("task 1: %d, %v; want 1, nil", v, err)
	}
	// Task 2 goes to the client's only slot; the stalled host resumes and
	// answers task 1 again meanwhile.
	f2, err := procpool.ApplyAsync(ctx, p, block, blockArg{X: 2, Release: release2})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "task 2 to start", func() bool { return len(e.runs()["start"][2]) == 1 })
	if err := hosts[first].Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the stalled host to answer task 1", func() bool { return e.hostLogged(first, "task answered", "task=1") })
	if err := os.WriteFile(release2, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if v, err := f2.Get(ctx); err != nil || v != 2 {
		t.Fatalf("task 2: %d, %v; want 2, nil", v, err)
	}
	if s := p.Stats(); s.Succeeded != 2 || s.Failed != 0 || s.Retried != 1 {
		t.Errorf("stats %+v: want 2 succeeded, 0 failed, 1 retried", s)
	}
}

// A client that dies leaves its tasks in the stream. The hosts run the
// ones they take before they find it gone (no task more than once): the
// first answer nobody confirms for AckWait marks the client gone, and the
// hosts drop its other tasks unrun. The stream ends empty, and the hosts
// serve on.
func TestClientDisappears(t *testing.T) {
	e := newEnv(t)
	e.startHost("a", 2)
	e.startHost("b", 2)
	client := exec.Command(os.Args[0], "-test.run=^$")
	client.Env = append(os.Environ(), envClient+"="+e.b.URL(), envPrefix+"="+e.prefix)
	client.Stderr = os.Stderr
	out, err := client.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := client.Start(); err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(e.connect())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var stream jetstream.Stream
	waitFor(t, "the client's 200 tasks in the stream", func() bool {
		if stream == nil {
			stream, _ = js.Stream(ctx, streamName(e.prefix))
		}
		if stream == nil {
			return false
		}
		info, err := stream.Info(ctx)
		return err == nil && info.State.LastSeq >= 200
	})
	if err := client.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = client.Wait()
	_, _ = io.Copy(io.Discard, out)
	waitFor(t, "the stream to empty", func() bool {
		info, err := stream.Info(ctx)
		return err == nil && info.State.Msgs == 0
	})
	runs := e.runs()["sleepy"]
	ran := 0
	for x := range 200 {
		if len(runs[x]) > 1 {
			t.Errorf("task %d of the dead client ran on %v, want at most once", x, runs[x])
		}
		ran += len(runs[x])
	}
	if !e.hostLogged("a", "client gone") && !e.hostLogged("b", "client gone") {
		t.Error("no host took the dead client for gone")
	}
	t.Logf("%d of the dead client's 200 tasks ran", ran)
	// The hosts serve on.
	p := e.client()
	if v, err := procpool.Apply(ctx, p, square, 9); err != nil || v != 81 {
		t.Fatalf("a new client's task: %d, %v", v, err)
	}
}

// streamName is the stream's name for prefix (Config.streamName).
func streamName(prefix string) string {
	return strings.ToUpper(strings.ReplaceAll(prefix, ".", "_")) + "_TASKS"
}
