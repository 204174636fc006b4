// Command cluster runs a pool's tasks on two worker hosts through NATS
// JetStream, all on this machine: it starts an embedded broker and two
// host processes (this program run again), maps a function over 10,000
// items from a client pool, kills one host in the middle, and shows that
// every item still completed.
//
//	go run ./examples/cluster
//
// In real use the broker is a NATS server, and each host is a program of
// its own on another machine that calls cluster.Serve (docs/cluster.md).
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/procpool/procpool"
	"github.com/procpool/procpool/cluster"
	"github.com/procpool/procpool/cluster/broker"
)

// A host process is this program with envBroker set; envHost names it, in
// the host process and in its workers.
const (
	envBroker = "PROCPOOL_EXAMPLE_BROKER" // the broker's URL: run as a host
	envHost   = "PROCPOOL_EXAMPLE_HOST"   // the host's name
)

// Result is what square returns: the square, and which host computed it.
type Result struct {
	Square int
	Host   string
}

// square runs in the hosts' worker processes.
var square = procpool.Register("example.cluster.square", func(_ context.Context, x int) (Result, error) {
	return Result{Square: x * x, Host: os.Getenv(envHost)}, nil
})

// config is what the client and the hosts agree on. AckWait is short (the
// default is 30s) so that the broker takes the killed host's tasks for
// lost, and they are retried elsewhere, within 2 seconds.
var config = cluster.Config{Prefix: "example", AckWait: 2 * time.Second}

func main() {
	procpool.Main() // in a host's worker process: serve tasks, then exit
	if url := os.Getenv(envBroker); url != "" {
		os.Exit(host(url))
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "cluster example:", err)
		os.Exit(1)
	}
}

// host serves the pool's tasks with 2 local workers until SIGTERM (or
// until the program that started it dies and its standard input closes),
// then drains: it finishes the tasks it has and exits.
func host(url string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); stop() }()
	local, err := procpool.New(procpool.WithProcesses(2))
	if err != nil {
		fmt.Fprintln(os.Stderr, "host:", err)
		return 1
	}
	defer local.Close()
	nc, err := cluster.Connect(url)
	if err != nil {
		fmt.Fprintln(os.Stderr, "host:", err)
		return 1
	}
	defer nc.Close()
	if err := cluster.Serve(ctx, nc, local, config, cluster.WithName(os.Getenv(envHost))); err != nil {
		fmt.Fprintln(os.Stderr, "host:", err)
		return 1
	}
	return 0
}

// run is the client side: the broker, the two hosts, and the Map.
func run() error {
	ctx := context.Background()

	// The broker, with its store in a temporary directory that Close removes.
	b, err := broker.Start(ctx, broker.Config{})
	if err != nil {
		return err
	}
	defer b.Close()

	// The hosts: this program again, told the broker's URL and its name.
	// Any still running at the end is killed and waited for.
	hosts := map[string]*exec.Cmd{}
	for _, name := range []string{"host-a", "host-b"} {
		h, err := startHost(b.URL(), name)
		if err != nil {
			return err
		}
		hosts[name] = h
		defer func() { _ = h.Process.Kill(); _ = h.Wait() }()
	}

	// The client: a *procpool.Pool whose tasks run on the hosts. A task
	// lost with its host is run again, up to twice.
	nc, err := cluster.Connect(b.URL())
	if err != nil {
		return err
	}
	defer nc.Close()
	pool, err := cluster.New(ctx, nc, config, procpool.WithRetries(2))
	if err != nil {
		return err
	}
	defer pool.Close()

	// Map 10,000 items in chunks of 100; once a third of them are done,
	// kill host-a without warning.
	const n = 10_000
	xs := make([]int, n)
	for i := range xs {
		xs[i] = i
	}
	var kill sync.Once
	killer := procpool.OnProgress(func(p procpool.Progress) {
		if p.Done >= n/3 {
			kill.Do(func() {
				fmt.Printf("%d of %d items done: killing host-a (SIGKILL)\n", p.Done, p.Total)
				_ = hosts["host-a"].Process.Kill()
			})
		}
	}, 10*time.Millisecond)
	start := time.Now()
	out, err := procpool.Map(ctx, pool, square, xs, procpool.ChunkSize(100), killer)
	if err != nil {
		return fmt.Errorf("map: %w", err)
	}
	took := time.Since(start)

	// Every item has its square; count who computed it.
	perHost := map[string]int{}
	for i, r := range out {
		if r.Square != i*i || r.Host == "" {
			return fmt.Errorf("item %d: got %+v, want square %d from a host", i, r, i*i)
		}
		perHost[r.Host]++
	}
	names := make([]string, 0, len(perHost))
	for h := range perHost {
		names = append(names, h)
	}
	sort.Strings(names)
	fmt.Printf("all %d items completed in %v, every square right\n", n, took.Round(time.Millisecond))
	for _, h := range names {
		fmt.Printf("  %s computed %d\n", h, perHost[h])
	}
	fmt.Printf("chunks retried after host-a was lost: %d\n", pool.Stats().Retried)

	// Clean up: the client pool, then host-b drained with SIGTERM and
	// waited for, and host-a (killed) reaped; the deferred calls close the
	// connection and the broker.
	if err := pool.Close(); err != nil {
		return err
	}
	if err := hosts["host-b"].Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	if err := hosts["host-b"].Wait(); err != nil {
		return fmt.Errorf("host-b: %w", err)
	}
	fmt.Println("host-b drained and exited")
	return nil
}

// startHost starts this program as host name. Its standard input is a pipe
// this process holds open: the host stops when this process dies.
func startHost(url, name string) (*exec.Cmd, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	c := exec.Command(self)
	c.Env = append(os.Environ(), envBroker+"="+url, envHost+"="+name)
	c.Stdout, c.Stderr = os.Stdout, os.Stderr
	if _, err := c.StdinPipe(); err != nil {
		return nil, err
	}
	return c, c.Start()
}
