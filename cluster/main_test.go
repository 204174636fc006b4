//go:build unix

package cluster_test

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/procpool/procpool"
	"github.com/procpool/procpool/cluster"
	"github.com/procpool/procpool/cluster/broker"
)

// The test binary is also a host (envHost set: see runHost) and the
// worker program of the hosts' pools (procpool.Main).
const (
	envHost    = "CLUSTER_TEST_HOST"    // the broker's URL: run as a host
	envClient  = "CLUSTER_TEST_CLIENT"  // the broker's URL: run as a client that submits tasks and waits to be killed
	envName    = "CLUSTER_TEST_NAME"    // the host's name
	envWorkers = "CLUSTER_TEST_WORKERS" // the host pool's workers
	envAckWait = "CLUSTER_TEST_ACKWAIT" // Config.AckWait
	envPrefix  = "CLUSTER_TEST_PREFIX"  // Config.Prefix
	envRunLog  = "CLUSTER_TEST_RUNLOG"  // the file every run of a task is recorded in
	envHostLog = "CLUSTER_TEST_HOSTLOG" // the host's log (Debug level)
)

func TestMain(m *testing.M) {
	procpool.Main()
	switch {
	case os.Getenv(envHost) != "":
		os.Exit(runHost())
	case os.Getenv(envClient) != "":
		os.Exit(runClient())
	}
	goleak.VerifyTestMain(m)
}

// testConfig is the pool's Config in the tests and in the processes they
// start: a short AckWait, so that a lost host is noticed in a second.
func testConfig() cluster.Config {
	ack, _ := time.ParseDuration(os.Getenv(envAckWait))
	if ack == 0 {
		ack = time.Second
	}
	return cluster.Config{Prefix: os.Getenv(envPrefix), AckWait: ack}
}

func connect(url string) (*nats.Conn, error) {
	return cluster.Connect(url, nats.ReconnectWait(50*time.Millisecond))
}

// runHost is a host process: a local pool of envWorkers workers served
// until SIGTERM, then drained.
func runHost() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	n, _ := strconv.Atoi(os.Getenv(envWorkers))
	pool, err := procpool.New(procpool.WithProcesses(max(n, 1)), procpool.WithKillGrace(200*time.Millisecond))
	if err != nil {
		fmt.Fprintln(os.Stderr, "host:", err)
		return 1
	}
	defer pool.Close()
	nc, err := connect(os.Getenv(envHost))
	if err != nil {
		fmt.Fprintln(os.Stderr, "host:", err)
		return 1
	}
	defer nc.Close()
	opts := []cluster.HostOption{cluster.WithName(os.Getenv(envName))}
	if path := os.Getenv(envHostLog); path != "" {
		f, err := os.Create(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, "host:", err)
			return 1
		}
		defer f.Close()
		opts = append(opts, cluster.WithHostLogger(slog.New(slog.NewTextHandler(f, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	}
	if err := cluster.Serve(ctx, nc, pool, testConfig(), opts...); err != nil {
		fmt.Fprintln(os.Stderr, "host:", err)
		return 1
	}
	fmt.Println("drained")
	return 0
}

// runClient is a client process that submits 200 slow tasks, says so on
// its standard output, and waits to be killed.
func runClient() int {
	ctx := context.Background()
	nc, err := connect(os.Getenv(envClient))
	if err != nil {
		fmt.Fprintln(os.Stderr, "client:", err)
		return 1
	}
	p, err := cluster.New(ctx, nc, testConfig(), procpool.WithProcesses(200))
	if err != nil {
		fmt.Fprintln(os.Stderr, "client:", err)
		return 1
	}
	for i := range 200 {
		if _, err := procpool.ApplyAsync(ctx, p, sleepy, sleepArg{X: i, D: 5 * time.Millisecond}); err != nil {
			fmt.Fprintln(os.Stderr, "client:", err)
			return 1
		}
	}
	for p.Stats().Queued > 0 {
		time.Sleep(time.Millisecond)
	}
	fmt.Println("submitted")
	select {}
}

// record appends a line to the run log, if there is one: "WHAT ARG HOST".
func record(what string, arg int) {
	path := os.Getenv(envRunLog)
	if path == "" {
		return
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		panic(err)
	}
	defer f.Close()
	fmt.Fprintf(f, "%s %d %s\n", what, arg, os.Getenv(envName))
}

var square = procpool.Register("ct.square", func(_ context.Context, x int) (int, error) {
	record("square", x)
	return x * x, nil
})

type sleepArg struct {
	X int
	D time.Duration
}

var sleepy = procpool.Register("ct.sleepy", func(ctx context.Context, a sleepArg) (int, error) {
	record("sleepy", a.X)
	select {
	case <-time.After(a.D):
		return a.X, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
})

// blockArg names a task that blocks until Release exists or its context
// ends (then it records "stopped").
type blockArg struct {
	X       int
	Release string
}

var block = procpool.Register("ct.block", func(ctx context.Context, a blockArg) (int, error) {
	record("start", a.X)
	for {
		if _, err := os.Stat(a.Release); err == nil {
			return a.X, nil
		}
		select {
		case <-ctx.Done():
			record("stopped", a.X)
			return 0, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
})

var crash = procpool.Register("ct.crash", func(_ context.Context, x int) (int, error) {
	record("crash", x)
	os.Exit(7)
	return 0, nil
})

// env is one test's broker, prefix, run log and host processes.
type env struct {
	t      *testing.T
	b      *broker.Broker
	dir    string // the broker's store
	prefix string
	runLog string

	mu    sync.Mutex
	hosts map[string]*exec.Cmd
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir(), prefix: "t" + strconv.Itoa(os.Getpid()) + strings.ToLower(strings.ReplaceAll(t.Name(), "/", "_")), hosts: map[string]*exec.Cmd{}}
	e.runLog = filepath.Join(t.TempDir(), "runs")
	e.startBroker(0)
	t.Cleanup(func() {
		e.mu.Lock()
		defer e.mu.Unlock()
		for _, c := range e.hosts {
			_ = c.Process.Kill()
			_ = c.Wait()
		}
		e.b.Close()
	})
	return e
}

func (e *env) startBroker(port int) {
	e.t.Helper()
	b, err := broker.Start(context.Background(), broker.Config{Dir: e.dir, Port: port})
	if err != nil {
		e.t.Fatal(err)
	}
	e.b = b
}

func (e *env) config() cluster.Config {
	c := testConfig()
	c.Prefix = e.prefix
	return c
}

// connect connects to the broker; the connection is closed at the end of
// the test.
func (e *env) connect() *nats.Conn {
	e.t.Helper()
	nc, err := connect(e.b.URL())
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(nc.Close)
	return nc
}

// stream returns the pool's stream, for a test to look at its messages.
func (e *env) stream() jetstream.Stream {
	e.t.Helper()
	js, err := jetstream.New(e.connect())
	if err != nil {
		e.t.Fatal(err)
	}
	s, err := js.Stream(context.Background(), streamName(e.prefix))
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

// client returns a cluster pool, closed (or terminated) at the end of the
// test.
func (e *env) client(opts ...procpool.Option) *procpool.Pool {
	e.t.Helper()
	p, err := cluster.New(context.Background(), e.connect(), e.config(), opts...)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { p.Terminate() })
	return p
}

// startHost starts a host process named name with n workers.
func (e *env) startHost(name string, n int) *exec.Cmd {
	e.t.Helper()
	c := exec.Command(os.Args[0], "-test.run=^$")
	c.Env = append(os.Environ(), envHost+"="+e.b.URL(), envName+"="+name, envWorkers+"="+strconv.Itoa(n),
		envPrefix+"="+e.prefix, envRunLog+"="+e.runLog, envAckWait+"="+e.config().AckWait.String(), envHostLog+"="+e.hostLog(name))
	c.Stderr = os.Stderr
	if err := c.Start(); err != nil {
		e.t.Fatal(err)
	}
	e.mu.Lock()
	e.hosts[name] = c
	e.mu.Unlock()
	return c
}

// hostLog is where host name logs.
func (e *env) hostLog(name string) string { return e.runLog + ".host-" + name }

// hostLogged reports whether host name's log has a line with each of
// words.
func (e *env) hostLogged(name string, words ...string) bool {
	b, _ := os.ReadFile(e.hostLog(name))
	for _, line := range strings.Split(string(b), "\n") {
		all := true
		for _, w := range words {
			all = all && strings.Contains(line, w)
		}
		if all {
			return true
		}
	}
	return false
}

// runs reads the run log: how many times each (what, arg) ran, and on
// which hosts.
func (e *env) runs() map[string]map[int][]string {
	out := map[string]map[int][]string{}
	f, err := os.Open(e.runLog)
	if err != nil {
		return out
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		var what, host string
		var arg int
		if n, _ := fmt.Sscanf(s.Text(), "%s %d %s", &what, &arg, &host); n != 3 {
			continue // a line cut by a kill
		}
		if out[what] == nil {
			out[what] = map[int][]string{}
		}
		out[what][arg] = append(out[what][arg], host)
	}
	return out
}

// waitFor polls cond until it holds; the test fails if it never does
// within a minute (a hang, not a slow machine).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: it never happened", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
