// Command goplugin is the go-plugin peer of procpool's benchmark harness
// (go run ./bench): the same trivial function, x·x, served by
// github.com/hashicorp/go-plugin over its net/rpc transport, one plugin
// process per worker.
//
// It is a module of its own, so that procpool never depends on go-plugin;
// the harness builds it into a temporary directory when it starts and runs
// it once per workload.
//
// Usage:
//
//	goplugin WORKLOAD [key=value ...]   the host: measure, print JSON lines
//	goplugin plugin                     a plugin process (the host starts it)
//
// Workloads, with their integer arguments:
//
//   - apply-latency n workers: n sequential calls from one goroutine, each
//     timed alone; the p50 in µs, with the mean, p90 and p99.
//   - apply-concurrent n goroutines workers: n calls made by that many
//     goroutines at once, each taking the next index from a shared counter;
//     tasks/s from the first call to the last result.
//   - startup runs workers: from the start of the plugin processes to the
//     first result, runs times; the median in ms.
//
// The host prints one JSON object per measurement on standard output, one a
// line, as bench/python/pool_bench.py does:
//
//	{"system": "go-plugin", "value": 123.4, "unit": "µs", "p99": 456.7}
//
// Each call goes to the plugin processes in turn (round robin over an
// atomic counter), whether or not that process is busy: go-plugin has no
// pool, and net/rpc multiplexes concurrent calls over one connection, so a
// caller does not wait for a free process but queues behind the process's
// other calls.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/rpc"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
)

// handshake is the handshake of host and plugin. go-plugin puts the cookie
// into the plugin's environment; the plugin refuses to serve without it.
var handshake = plugin.HandshakeConfig{
	ProtocolVersion:  1,
	MagicCookieKey:   "PROCPOOL_BENCH_GOPLUGIN",
	MagicCookieValue: "square",
}

// pluginName is the name of the one plugin the plugin process serves.
const pluginName = "square"

// Squarer is the plugin's interface.
type Squarer interface {
	Square(x int) (int, error)
}

// SquareServer is the net/rpc receiver in the plugin process.
type SquareServer struct{}

// Square sets *y to x·x.
func (SquareServer) Square(x int, y *int) error {
	*y = x * x
	return nil
}

// squareClient is the host's side of the plugin: one net/rpc client, safe
// for concurrent use.
type squareClient struct{ c *rpc.Client }

func (s squareClient) Square(x int) (int, error) {
	var y int
	err := s.c.Call("Plugin.Square", x, &y)
	return y, err
}

// squarePlugin joins both sides for go-plugin's net/rpc transport.
type squarePlugin struct{}

func (squarePlugin) Server(*plugin.MuxBroker) (any, error) { return SquareServer{}, nil }

func (squarePlugin) Client(_ *plugin.MuxBroker, c *rpc.Client) (any, error) {
	return squareClient{c}, nil
}

var plugins = map[string]plugin.Plugin{pluginName: squarePlugin{}}

func main() {
	if len(os.Args) == 2 && os.Args[1] == "plugin" {
		plugin.Serve(&plugin.ServeConfig{
			HandshakeConfig: handshake,
			Plugins:         plugins,
			Logger:          hclog.NewNullLogger(),
		})
		return
	}
	if err := host(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "goplugin: %v\n", err)
		os.Exit(1)
	}
}

var workloads = map[string]func(args map[string]int) error{
	"apply-latency":    applyLatency,
	"apply-concurrent": applyConcurrent,
	"startup":          startup,
}

func host(argv []string) error {
	if len(argv) == 0 || workloads[argv[0]] == nil {
		return errors.New("usage: goplugin {apply-latency|apply-concurrent|startup} [key=value ...]")
	}
	args := map[string]int{}
	for _, kv := range argv[1:] {
		k, v, _ := strings.Cut(kv, "=")
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("argument %q: %w", kv, err)
		}
		args[k] = n
	}
	return workloads[argv[0]](args)
}

// arg returns a positive argument, or an error naming it.
func arg(args map[string]int, name string) (int, error) {
	v, ok := args[name]
	if !ok || v <= 0 {
		return 0, fmt.Errorf("want a positive %s=N", name)
	}
	return v, nil
}

// A peer is the host's view of the plugin processes.
type peer struct {
	clients []*plugin.Client
	sq      []Squarer
	next    atomic.Uint64
}

// startPeer starts n plugin processes at once and returns when each has
// answered go-plugin's handshake and handed out its plugin.
func startPeer(n int) (*peer, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	p := &peer{clients: make([]*plugin.Client, n), sq: make([]Squarer, n)}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		p.clients[i] = plugin.NewClient(&plugin.ClientConfig{
			HandshakeConfig:  handshake,
			Plugins:          plugins,
			Cmd:              exec.Command(self, "plugin"),
			AllowedProtocols: []plugin.Protocol{plugin.ProtocolNetRPC},
			Logger:           hclog.NewNullLogger(),
		})
		wg.Add(1)
		go func() {
			defer wg.Done()
			rpcClient, err := p.clients[i].Client()
			if err != nil {
				errs[i] = err
				return
			}
			raw, err := rpcClient.Dispense(pluginName)
			if err != nil {
				errs[i] = err
				return
			}
			p.sq[i] = raw.(Squarer)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		p.close()
		return nil, err
	}
	return p, nil
}

// square calls the next plugin process in turn.
func (p *peer) square(x int) (int, error) {
	i := (p.next.Add(1) - 1) % uint64(len(p.sq))
	return p.sq[i].Square(x)
}

// warm calls each plugin process once.
func (p *peer) warm() error {
	for _, s := range p.sq {
		if v, err := s.Square(1); err != nil || v != 1 {
			return fmt.Errorf("warm-up: square(1) = %d, %v", v, err)
		}
	}
	return nil
}

// close stops the plugin processes (go-plugin asks each to exit, and kills
// it if it has not within two seconds) and waits for them.
func (p *peer) close() {
	var wg sync.WaitGroup
	for _, c := range p.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.Kill()
		}()
	}
	wg.Wait()
}

// emit prints one measurement.
func emit(value float64, unit string, extra map[string]float64) {
	rec := map[string]any{"system": "go-plugin", "value": value, "unit": unit}
	for k, v := range extra {
		rec[k] = v
	}
	b, err := json.Marshal(rec)
	if err != nil {
		panic(err) // only NaN or ±Inf fail, and the figures are finite
	}
	fmt.Println(string(b))
}

// percentile returns the nearest-rank q-th percentile of sorted ds.
func percentile(ds []time.Duration, q float64) time.Duration {
	k := int(math.Ceil(q/100*float64(len(ds)))) - 1
	return ds[max(0, min(len(ds)-1, k))]
}

func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func applyLatency(args map[string]int) (err error) {
	n, err := arg(args, "n")
	if err != nil {
		return err
	}
	workers, err := arg(args, "workers")
	if err != nil {
		return err
	}
	p, err := startPeer(workers)
	if err != nil {
		return err
	}
	defer p.close()
	if err := p.warm(); err != nil {
		return err
	}
	lat := make([]time.Duration, n)
	for i := range lat {
		t0 := time.Now()
		v, err := p.square(i)
		lat[i] = time.Since(t0)
		if err != nil {
			return err
		}
		if v != i*i {
			return fmt.Errorf("square(%d) = %d", i, v)
		}
	}
	var sum time.Duration
	for _, d := range lat {
		sum += d
	}
	slices.Sort(lat)
	emit(micros(percentile(lat, 50)), "µs", map[string]float64{
		"mean": micros(sum / time.Duration(n)),
		"p90":  micros(percentile(lat, 90)),
		"p99":  micros(percentile(lat, 99)),
	})
	return nil
}

func applyConcurrent(args map[string]int) error {
	n, err := arg(args, "n")
	if err != nil {
		return err
	}
	callers, err := arg(args, "goroutines")
	if err != nil {
		return err
	}
	workers, err := arg(args, "workers")
	if err != nil {
		return err
	}
	p, err := startPeer(workers)
	if err != nil {
		return err
	}
	defer p.close()
	if err := p.warm(); err != nil {
		return err
	}
	var (
		next    atomic.Int64
		failed  atomic.Bool
		errOnce sync.Once
		first   error
		wg      sync.WaitGroup
	)
	fail := func(err error) {
		errOnce.Do(func() { first = err })
		failed.Store(true)
	}
	t0 := time.Now()
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !failed.Load() {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				v, err := p.square(i)
				if err != nil {
					fail(err)
					return
				}
				if v != i*i {
					fail(fmt.Errorf("square(%d) = %d", i, v))
					return
				}
			}
		}()
	}
	wg.Wait()
	dt := time.Since(t0)
	if first != nil {
		return first
	}
	emit(float64(n)/dt.Seconds(), "tasks/s", map[string]float64{"goroutines": float64(callers)})
	return nil
}

func startup(args map[string]int) error {
	runs, err := arg(args, "runs")
	if err != nil {
		return err
	}
	workers, err := arg(args, "workers")
	if err != nil {
		return err
	}
	ts := make([]time.Duration, runs)
	for i := range ts {
		t0 := time.Now()
		p, err := startPeer(workers)
		if err != nil {
			return err
		}
		v, err := p.square(3)
		ts[i] = time.Since(t0)
		p.close()
		if err != nil {
			return err
		}
		if v != 9 {
			return fmt.Errorf("square(3) = %d", v)
		}
	}
	slices.Sort(ts)
	emit(float64(ts[len(ts)/2])/float64(time.Millisecond), "ms", nil)
	return nil
}
