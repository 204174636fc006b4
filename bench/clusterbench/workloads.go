//go:build unix

package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/procpool/procpool"
	"github.com/procpool/procpool/bench/internal/measure"
	"github.com/procpool/procpool/cluster"
	"github.com/procpool/procpool/cluster/broker"
)

// The cluster workloads run a pool of package cluster over host processes
// (this binary in its cluster-host child mode) through an embedded broker
// with a file store, in this process; and, as the baseline, the same round
// trips on bare JetStream: a publisher in this process, consumer processes
// (the cluster-raw child mode) that pull each message, reply over core NATS
// and acknowledge it. Every system's run gets a broker, processes and
// connections of its own, all torn down before the next.
const (
	clusterHosts    = 2               // host (or bare consumer) processes, each with `workers` slots
	clusterInFlight = 64              // tasks on the hosts at once: cluster.New's default WithProcesses, and the raw publisher's window
	clusterChunk    = 1000            // cluster-map's ChunkSize
	clusterWarmUp   = 1000            // round trips before a system is timed
	clusterAckWait  = 2 * time.Second // short, so that cluster-map's killed host's chunks come back within 2 s

	// The bare JetStream baseline's stream, durable consumer and subjects,
	// configured as package cluster configures its own (Config.ensure).
	rawStream   = "RAWBENCH_TASKS"
	rawConsumer = "hosts"
	rawTask     = "rawbench.task"
	rawReply    = "rawbench.reply"

	// envProfile, when set to a directory, makes the cluster workloads
	// write CPU profiles there: this process's (client and broker) over each
	// timed section, and each child's over its life (go tool pprof FILE).
	envProfile = "PROCPOOL_BENCH_PROFILE"
)

// clusterConfig is the Config of the workloads' cluster pools and of their
// hosts. The stream it makes is BENCH_TASKS (docs/cluster.md).
func clusterConfig() cluster.Config {
	return cluster.Config{Prefix: "bench", AckWait: clusterAckWait}
}

// ---- the measuring side ----

// runThroughput times sz.n tiny tasks through the cluster pool
// (ApplyAsync of all, then a Get of each) and the same number of raw round
// trips with the same number in flight.
func runThroughput(sz size) []record {
	note := fmt.Sprintf("%d tasks, %d in flight, %d processes × %d slots", sz.n, clusterInFlight, clusterHosts, workers)
	v, err := clusterThroughput(sz)
	out := []record{measured("cluster-throughput", "procpool", v, err)}
	if err == nil {
		out[0].Note = note
	}
	v, err = rawThroughput(sz)
	out = append(out, measured("cluster-throughput", "raw-jetstream", v, err))
	if err == nil {
		out[1].Note = note
	}
	return out
}

// runLatency times sz.n sequential remote Apply calls, and as
// many sequential raw round trips.
func runLatency(sz size) []record {
	var out []record
	add := func(system string, lat []time.Duration, err error) {
		if err != nil {
			out = append(out, failed("cluster-apply-latency", system, err), failed("cluster-apply-latency-p99", system, err))
			return
		}
		out = append(out,
			ok("cluster-apply-latency", system, measure.Micros(measure.Percentile(lat, 50)), fmt.Sprintf("p90 %.1f µs", measure.Micros(measure.Percentile(lat, 90)))),
			ok("cluster-apply-latency-p99", system, measure.Micros(measure.Percentile(lat, 99)), ""))
	}
	lat, err := clusterLatency(sz)
	add("procpool", lat, err)
	lat, err = rawLatency(sz)
	add("raw-jetstream", lat, err)
	return out
}

// runMap times a Map of sz.n items in chunks of clusterChunk,
// then the same with one host SIGKILLed once half of the items are done.
func runMap(sz size) []record {
	var out []record
	for _, kill := range []bool{false, true} {
		system := "procpool"
		if kill {
			system = "procpool-host-killed"
		}
		v, note, err := clusterMap(sz, kill)
		m := measured("cluster-map", system, v, err)
		if err == nil {
			m.Note = note
		}
		out = append(out, m)
	}
	return out
}

// size is one run's size: tasks or items, and the limit for each system's
// run.
type size struct {
	n       int
	timeout time.Duration
}

// clusterEnv is one system's run: a broker with a temporary file store, a
// connection to it, and the child processes.
type clusterEnv struct {
	b      *broker.Broker
	nc     *nats.Conn
	js     jetstream.JetStream
	procs  []*exec.Cmd
	killed map[*exec.Cmd]bool // SIGKILLed on purpose: their exit is no error
}

func newClusterEnv(ctx context.Context) (*clusterEnv, error) {
	b, err := broker.Start(ctx, broker.Config{})
	if err != nil {
		return nil, err
	}
	nc, err := nats.Connect(b.URL())
	if err != nil {
		b.Close()
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		b.Close()
		return nil, err
	}
	return &clusterEnv{b: b, nc: nc, js: js, killed: map[*exec.Cmd]bool{}}, nil
}

// startChildren starts clusterHosts children in mode (cluster-host or
// cluster-raw), named host-0, host-1..., and waits until each of their
// slots has a pull request waiting on the consumer of stream.
func (e *clusterEnv) startChildren(ctx context.Context, mode, stream string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	for i := range clusterHosts {
		c := exec.Command(self, e.b.URL(), fmt.Sprintf("host-%d", i))
		c.Env = append(os.Environ(), envChild+"="+mode)
		c.Stdout, c.Stderr = os.Stderr, os.Stderr
		// The child stops when its standard input closes: when this
		// process dies, should it die before stopping the child.
		if _, err := c.StdinPipe(); err != nil {
			return err
		}
		if err := c.Start(); err != nil {
			return err
		}
		e.procs = append(e.procs, c)
	}
	cons, err := e.js.Consumer(ctx, stream, rawConsumer)
	if err != nil {
		return err
	}
	for {
		info, err := cons.Info(ctx)
		if err != nil {
			return err
		}
		// A bare consumer waits with a fetch per slot; a cluster host
		// with one request for all its free slots.
		want := clusterHosts
		if mode == "cluster-raw" {
			want = clusterHosts * workers
		}
		if info.NumWaiting >= want {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the %s children to pull: %w", mode, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// kill SIGKILLs child i.
func (e *clusterEnv) kill(i int) {
	e.killed[e.procs[i]] = true
	_ = e.procs[i].Process.Kill()
}

// close stops the children with SIGTERM (they drain) and waits for them,
// killing any that takes over 15 s, then closes the connection and the
// broker, which removes its store. It returns what went wrong.
func (e *clusterEnv) close() error {
	var errs []error
	for _, c := range e.procs {
		_ = c.Process.Signal(syscall.SIGTERM)
	}
	for _, c := range e.procs {
		done := make(chan error, 1)
		go func() { done <- c.Wait() }()
		select {
		case err := <-done:
			if err != nil && !e.killed[c] {
				errs = append(errs, fmt.Errorf("child %s: %w", c.Args[2], err))
			}
		case <-time.After(15 * time.Second):
			_ = c.Process.Kill()
			<-done
			errs = append(errs, fmt.Errorf("child %s did not drain within 15 s", c.Args[2]))
		}
	}
	e.nc.Close()
	e.b.Close()
	return errors.Join(errs...)
}

// closeEnv closes e, reporting what went wrong in *err if nothing did before.
func closeEnv(e *clusterEnv, err *error) {
	if cerr := e.close(); cerr != nil && *err == nil {
		*err = cerr
	}
}

// withCluster runs f on a cluster pool (opts added) served by clusterHosts
// host processes of workers workers each, warmed up, then tears it all down.
func withCluster(sz size, f func(ctx context.Context, e *clusterEnv, p *procpool.Pool) error, opts ...procpool.Option) (err error) {
	ctx, cancel := context.WithTimeout(context.Background(), sz.timeout)
	defer cancel()
	e, err := newClusterEnv(ctx)
	if err != nil {
		return err
	}
	defer closeEnv(e, &err)
	p, err := cluster.New(ctx, e.nc, clusterConfig(), opts...)
	if err != nil {
		return err
	}
	defer measure.ClosePool(ctx, p, &err)
	if err := e.startChildren(ctx, "cluster-host", "BENCH_TASKS"); err != nil {
		return err
	}
	if err := applyAll(ctx, p, clusterWarmUp); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	return f(ctx, e, p)
}

// applyAll submits n tasks square(i) with ApplyAsync, then waits for each
// and checks its result.
func applyAll(ctx context.Context, p *procpool.Pool, n int) error {
	futs := make([]*procpool.Future[int], n)
	for i := range futs {
		f, err := procpool.ApplyAsync(ctx, p, measure.Square, i)
		if err != nil {
			return err
		}
		futs[i] = f
	}
	for i, f := range futs {
		v, err := f.Get(ctx)
		if err != nil {
			return err
		}
		if v != i*i {
			return fmt.Errorf("square(%d) = %d", i, v)
		}
	}
	return nil
}

func clusterThroughput(sz size) (rate float64, err error) {
	err = withCluster(sz, func(ctx context.Context, _ *clusterEnv, p *procpool.Pool) error {
		defer startProfile("cluster-throughput-procpool")()
		t0 := time.Now()
		if err := applyAll(ctx, p, sz.n); err != nil {
			return err
		}
		rate = float64(sz.n) / time.Since(t0).Seconds()
		return nil
	}, procpool.WithProcesses(clusterInFlight))
	return rate, err
}

func clusterLatency(sz size) (lat []time.Duration, err error) {
	err = withCluster(sz, func(ctx context.Context, _ *clusterEnv, p *procpool.Pool) error {
		defer startProfile("cluster-apply-latency-procpool")()
		lat, err = measure.ApplyLatencies(ctx, p, measure.Square, sz.n)
		return err
	})
	return lat, err
}

// clusterMap returns the seconds a Map of sz.n items takes, with one of
// the hosts SIGKILLed once half of the items are done if kill; the note
// says how many chunks were retried.
func clusterMap(sz size, kill bool) (secs float64, note string, err error) {
	err = withCluster(sz, func(ctx context.Context, e *clusterEnv, p *procpool.Pool) error {
		n := sz.n
		xs := make([]int, n)
		for i := range xs {
			xs[i] = i
		}
		var killedAt atomic.Int64
		opts := []procpool.CallOption{procpool.ChunkSize(clusterChunk)}
		if kill {
			var once sync.Once
			opts = append(opts, procpool.OnProgress(func(pr procpool.Progress) {
				if pr.Done >= n/2 {
					once.Do(func() { killedAt.Store(int64(pr.Done)); e.kill(0) })
				}
			}, 10*time.Millisecond))
		}
		t0 := time.Now()
		ys, err := procpool.Map(ctx, p, measure.Square, xs, opts...)
		secs = time.Since(t0).Seconds()
		if err != nil {
			return err
		}
		for i, y := range ys {
			if y != i*i {
				return fmt.Errorf("square(%d) = %d", i, y)
			}
		}
		note = fmt.Sprintf("%d items in chunks of %d, %d chunks retried", n, clusterChunk, p.Stats().Retried)
		if kill {
			note += fmt.Sprintf("; host-0 killed at %d items done, AckWait %v", killedAt.Load(), clusterAckWait)
		}
		return nil
	}, procpool.WithRetries(2))
	return secs, note, err
}

// withRaw runs f on a broker with the bare stream and consumer and
// clusterHosts consumer processes, warmed up, then tears it all down.
func withRaw(sz size, f func(ctx context.Context, e *clusterEnv) error) (err error) {
	ctx, cancel := context.WithTimeout(context.Background(), sz.timeout)
	defer cancel()
	e, err := newClusterEnv(ctx)
	if err != nil {
		return err
	}
	defer closeEnv(e, &err)
	s, err := e.js.CreateStream(ctx, jetstream.StreamConfig{
		Name:      rawStream,
		Subjects:  []string{rawTask},
		Retention: jetstream.WorkQueuePolicy,
		Storage:   jetstream.FileStorage,
		Discard:   jetstream.DiscardNew,
		MaxMsgs:   cluster.DefaultMaxMsgs,
		MaxBytes:  cluster.DefaultMaxBytes,
		MaxAge:    cluster.DefaultMaxAge,
	})
	if err != nil {
		return err
	}
	if _, err := s.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:       rawConsumer,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       clusterAckWait,
		MaxDeliver:    -1,
		MaxAckPending: -1,
		FilterSubject: rawTask,
	}); err != nil {
		return err
	}
	if err := e.startChildren(ctx, "cluster-raw", rawStream); err != nil {
		return err
	}
	if _, err := rawRoundTrips(ctx, e, clusterWarmUp, clusterInFlight); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	return f(ctx, e)
}

func rawThroughput(sz size) (rate float64, err error) {
	err = withRaw(sz, func(ctx context.Context, e *clusterEnv) error {
		defer startProfile("cluster-throughput-raw")()
		t0 := time.Now()
		if _, err := rawRoundTrips(ctx, e, sz.n, clusterInFlight); err != nil {
			return err
		}
		rate = float64(sz.n) / time.Since(t0).Seconds()
		return nil
	})
	return rate, err
}

func rawLatency(sz size) (lat []time.Duration, err error) {
	err = withRaw(sz, func(ctx context.Context, e *clusterEnv) error {
		defer startProfile("cluster-apply-latency-raw")()
		lat, err = rawRoundTrips(ctx, e, sz.n, 1)
		return err
	})
	return lat, err
}

// rawRoundTrips makes n round trips from senders goroutines: each sends
// request i (its own number and i, 16 bytes) to the stream, waits for the
// server's acknowledgement, then for the reply (its number and i·i), and
// checks it. It returns the round trips' times, sorted.
func rawRoundTrips(ctx context.Context, e *clusterEnv, n, senders int) ([]time.Duration, error) {
	replies := make([]chan uint64, senders)
	for g := range replies {
		replies[g] = make(chan uint64, 1)
	}
	sub, err := e.nc.Subscribe(rawReply, func(m *nats.Msg) {
		if len(m.Data) != 16 {
			return
		}
		g := binary.LittleEndian.Uint64(m.Data)
		if g < uint64(senders) {
			select {
			case replies[g] <- binary.LittleEndian.Uint64(m.Data[8:]):
			default: // a duplicate: its sender will see a wrong value
			}
		}
	})
	if err != nil {
		return nil, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		return nil, err
	}
	if err := e.nc.FlushWithContext(ctx); err != nil {
		return nil, err
	}

	ctx, stop := context.WithCancel(ctx)
	defer stop()
	var (
		next  atomic.Int64
		once  sync.Once
		first error
		wg    sync.WaitGroup
	)
	lat := make([]time.Duration, n)
	for g := range senders {
		wg.Go(func() {
			body := make([]byte, 16)
			binary.LittleEndian.PutUint64(body, uint64(g))
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				binary.LittleEndian.PutUint64(body[8:], uint64(i))
				t0 := time.Now()
				_, err := e.js.Publish(ctx, rawTask, body)
				var v uint64
				if err == nil {
					select {
					case v = <-replies[g]:
					case <-ctx.Done():
						err = ctx.Err()
					}
				}
				lat[i] = time.Since(t0)
				if err == nil && v != uint64(i*i) {
					err = fmt.Errorf("raw square(%d) = %d", i, v)
				}
				if err != nil {
					once.Do(func() { first = err })
					stop()
					return
				}
			}
		})
	}
	wg.Wait()
	if first != nil {
		return nil, first
	}
	slices.Sort(lat)
	return lat, nil
}

// startProfile starts a CPU profile in envProfile's directory, if set,
// named name.pprof, and returns the function that stops it.
func startProfile(name string) func() {
	dir := os.Getenv(envProfile)
	if dir == "" {
		return func() {}
	}
	f, err := os.Create(filepath.Join(dir, name+".pprof"))
	if err != nil {
		progress("profile: %v", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		progress("profile: %v", err)
		f.Close()
		return func() {}
	}
	return func() { pprof.StopCPUProfile(); f.Close() }
}
