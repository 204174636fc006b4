//go:build unix

package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/procpool/procpool"
	"github.com/procpool/procpool/bench/internal/measure"
)

// The functions the bench runs in workers. They are registered at package
// level, so that the re-executed bench binary knows them too.
var (
	square = measure.Square
	length = procpool.Register("bench.len", func(_ context.Context, b []byte) (int, error) { return len(b), nil })
	burnFn = procpool.Register("bench.burn", func(_ context.Context, n int) (int, error) { return burn(n), nil })
)

// burnSink keeps the calibration's results alive, so that the compiler
// cannot drop the loop.
var burnSink atomic.Int64

// burn is a CPU-bound loop of n steps: the same linear congruential
// generator as burn in bench/python/pool_bench.py.
func burn(n int) int {
	x := uint32(1)
	for range n {
		x = (x*1103515245 + 12345) & 0x7fffffff
	}
	return int(x)
}

// calibrateBurn returns the number of burn steps that take about d in this
// process (the workers run the same code on the same machine).
func calibrateBurn(d time.Duration) int {
	n := 1000
	var dt time.Duration
	for {
		t0 := time.Now()
		burnSink.Add(int64(burn(n)))
		dt = time.Since(t0)
		if dt > 50*time.Millisecond {
			break
		}
		n *= 2
	}
	n = max(1, int(float64(n)*float64(d)/float64(dt)))
	best := time.Duration(1<<63 - 1)
	for range 5 {
		t0 := time.Now()
		burnSink.Add(int64(burn(n)))
		best = min(best, time.Since(t0))
	}
	return max(1, int(float64(n)*float64(d)/float64(best)))
}

// A measurement is one figure of one system on one workload, or the reason
// there is none (err).
type measurement struct {
	workload string
	system   string
	value    float64
	unit     string
	err      string             // why there is no value: the system failed, or is missing
	note     string             // details shown with -markdown (not part of -json)
	extra    map[string]float64 // more figures from the Python script
}

// A workload is one row group of the table.
type workload struct {
	name    string
	what    string
	unit    string
	higher  bool     // whether a higher figure is better
	systems []string // in the order of the table
	run     func(sizes, *python) []measurement
}

// workloads in the order they run and print. apply-latency's run also
// yields the apply-latency-p99 figures.
var workloads = []*workload{
	{
		name: "apply-latency", what: "sequential Apply of x·x: p50", unit: "µs",
		systems: []string{"procpool", "go-plugin", "python-pool", "pipe-limit", "in-process"},
		run:     runApplyLatency,
	},
	{
		name: "apply-latency-p99", what: "sequential Apply of x·x: p99", unit: "µs",
		systems: []string{"procpool", "go-plugin", "python-pool", "pipe-limit", "in-process"},
		run:     nil, // measured by apply-latency
	},
	{
		name: "async-throughput", what: "ApplyAsync of x·x, then wait for all", unit: "tasks/s", higher: true,
		systems: []string{"procpool", "python-pool", "python-ppe", "in-process"},
		run:     runAsyncThroughput,
	},
	{
		name: "apply-concurrent", what: "Apply of x·x from 64 goroutines at once", unit: "tasks/s", higher: true,
		systems: []string{"procpool", "go-plugin", "python-pool"},
		run:     runApplyConcurrent,
	},
	{
		name: "map-throughput", what: "Map of x·x over ints, default chunk size", unit: "items/s", higher: true,
		systems: []string{"procpool", "python-pool", "python-ppe"},
		run:     runMapThroughput,
	},
	{
		name: "payload-throughput", what: "Apply with a 1 MiB []byte, returns its length", unit: "MiB/s", higher: true,
		systems: []string{"procpool", "python-pool"},
		run:     runPayloadThroughput,
	},
	{
		name: "startup", what: "from New (2 workers) to the first result, median", unit: "ms",
		systems: []string{"procpool", "go-plugin", "python-pool", "python-pool-spawn"},
		run:     runStartup,
	},
	{
		name: "process-per-task", what: "cost per trivial task", unit: "ms",
		systems: []string{"procpool", "exec-per-task"},
		run:     runProcessPerTask,
	},
	{
		name: "cpu-scaling", what: "~2 ms CPU-bound tasks: time on 1 worker / time on N", unit: "x", higher: true,
		systems: []string{"procpool", "python-pool"},
		run:     runCPUScaling,
	},
	{
		name: "node-apply-latency", what: "sequential Apply of x·x on Node.js workers: p50", unit: "µs",
		systems: []string{"procpool", "procpool-json", "node-fork-ipc", "node-stdio-pipe"},
		run:     runNodeApplyLatency,
	},
	{
		name: "node-map-throughput", what: "Map of x·x over ints on Node.js workers, default chunk size", unit: "items/s", higher: true,
		systems: []string{"procpool", "procpool-json", "node-fork-ipc"},
		run:     runNodeMapThroughput,
	},
	{
		name: "stream-memory", what: "Imap over ints, chunk size 1000: parent's peak RSS", unit: "MB",
		systems: []string{"procpool", "python-pool"},
		run:     runStreamMemory,
	},
	{
		name: "py-apply-latency", what: "sequential Apply of x·x on Python workers (procpool_worker.py) vs Pool.apply: p50", unit: "µs",
		systems: []string{"procpool", "python-pool"},
		run:     runPyApplyLatency,
	},
	{
		name: "py-map-throughput", what: "Map of x·x over ints on Python workers vs Pool.map, same chunk size", unit: "items/s", higher: true,
		systems: []string{"procpool", "python-pool"},
		run:     runPyMapThroughput,
	},
	{
		name: "cluster-throughput", what: "ApplyAsync of x·x on a cluster pool: 2 host processes × 2 workers, embedded broker (file store)", unit: "tasks/s", higher: true,
		systems: []string{"procpool", "raw-jetstream"},
		run:     runClusterThroughput,
	},
	{
		name: "cluster-apply-latency", what: "sequential Apply of x·x on a cluster pool: p50", unit: "µs",
		systems: []string{"procpool", "raw-jetstream"},
		run:     runClusterLatency,
	},
	{
		name: "cluster-apply-latency-p99", what: "sequential Apply of x·x on a cluster pool: p99", unit: "µs",
		systems: []string{"procpool", "raw-jetstream"},
		run:     nil, // measured by cluster-apply-latency
	},
	{
		name: "cluster-map", what: "Map of x·x over ints in chunks of 1000 on a cluster pool: completion time", unit: "s",
		systems: []string{"procpool", "procpool-host-killed"},
		run:     runClusterMap,
	},
}

func findWorkload(name string) *workload {
	for _, w := range workloads {
		if w.name == name && w.run != nil {
			return w
		}
	}
	return nil
}

func workloadNames() []string {
	var names []string
	for _, w := range workloads {
		if w.run != nil {
			names = append(names, w.name)
		}
	}
	return names
}

// units maps each workload to its unit. It is filled from workloads at
// start-up (the runs refer to it, so workloads cannot be read from them).
var units = map[string]string{}

func init() {
	for _, w := range workloads {
		units[w.name] = w.unit
	}
}

func unitOf(workload string) string { return units[workload] }

func ok(workload, system string, v float64, note string) measurement {
	return measurement{workload: workload, system: system, value: v, unit: unitOf(workload), note: note}
}

// measured is ok or failed, by err.
func measured(workload, system string, v float64, err error) measurement {
	if err != nil {
		return failed(workload, system, err)
	}
	return ok(workload, system, v, "")
}

func failed(workload, system string, err error) measurement {
	progress("%s %s: %v", workload, system, err)
	return measurement{workload: workload, system: system, unit: unitOf(workload), err: err.Error()}
}

// newPool starts a pool and warms it with one call, as every system is
// warmed before it is timed.
func newPool(ctx context.Context, opts ...procpool.Option) (*procpool.Pool, error) {
	p, err := procpool.New(opts...)
	if err != nil {
		return nil, err
	}
	if _, err := procpool.Apply(ctx, p, square, 1); err != nil {
		p.Terminate()
		return nil, fmt.Errorf("warm-up: %w", err)
	}
	return p, nil
}

func millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// ---- apply-latency ----

func runApplyLatency(sz sizes, py *python) []measurement {
	var out []measurement
	// add records the p50 and p99 of sorted latencies, with the mean and
	// the p90 as details.
	add := func(system string, lat []time.Duration, err error) {
		if err != nil {
			out = append(out, failed("apply-latency", system, err), failed("apply-latency-p99", system, err))
			return
		}
		var sum time.Duration
		for _, d := range lat {
			sum += d
		}
		note := fmt.Sprintf("mean %.1f µs, p90 %.1f µs", measure.Micros(sum/time.Duration(len(lat))), measure.Micros(measure.Percentile(lat, 90)))
		out = append(out,
			ok("apply-latency", system, measure.Micros(measure.Percentile(lat, 50)), note),
			ok("apply-latency-p99", system, measure.Micros(measure.Percentile(lat, 99)), ""))
	}

	lat, err := poolLatency(sz)
	add("procpool", lat, err)

	for _, m := range py.run("apply-latency", sz.timeout, "n", sz.applyN, "workers", workers) {
		out = append(out, m)
		if m.err != "" {
			out = append(out, measurement{workload: "apply-latency-p99", system: m.system, unit: m.unit, err: m.err})
		} else {
			m.note = fmt.Sprintf("mean %.1f µs, p90 %.1f µs", m.extra["mean"], m.extra["p90"])
			out[len(out)-1] = m
			out = append(out, ok("apply-latency-p99", m.system, m.extra["p99"], ""))
		}
	}

	out = append(out, goPluginLatency(sz)...)

	lat, err = pipeLatency(sz)
	add("pipe-limit", lat, err)

	lat, err = poolLatency(sz, procpool.WithInProcess())
	add("in-process", lat, err)
	return out
}

// poolLatency returns the sorted latencies of sz.applyN sequential Apply
// calls on a warm pool.
func poolLatency(sz sizes, opts ...procpool.Option) (lat []time.Duration, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), sz.timeout)
	defer cancel()
	p, err := newPool(ctx, append([]procpool.Option{procpool.WithProcesses(workers)}, opts...)...)
	if err != nil {
		return nil, err
	}
	defer measure.ClosePool(ctx, p, &err)
	return measure.ApplyLatencies(ctx, p, square, sz.applyN)
}

// ---- async-throughput ----

func runAsyncThroughput(sz sizes, py *python) []measurement {
	var out []measurement
	add := func(system string, v float64, note string, err error) {
		if err != nil {
			out = append(out, failed("async-throughput", system, err))
		} else {
			out = append(out, ok("async-throughput", system, v, note))
		}
	}
	v, note, err := asyncThroughput(sz)
	add("procpool", v, note, err)
	out = append(out, py.run("async-throughput", sz.timeout, "n", sz.asyncN, "workers", workers)...)
	v, note, err = asyncThroughput(sz, procpool.WithInProcess())
	add("in-process", v, note, err)
	return out
}

// asyncThroughput returns the median rate of sz.rounds rounds on one pool,
// each sz.asyncN ApplyAsync calls and then a Get of each, and a note that
// gives every round's rate.
func asyncThroughput(sz sizes, opts ...procpool.Option) (rate float64, note string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), sz.timeout)
	defer cancel()
	p, err := newPool(ctx, append([]procpool.Option{procpool.WithProcesses(workers)}, opts...)...)
	if err != nil {
		return 0, "", err
	}
	defer measure.ClosePool(ctx, p, &err)
	futs := make([]*procpool.Future[int], sz.asyncN)
	rate, note, err = medianRate(sz.rounds, func() (float64, error) {
		t0 := time.Now()
		for i := range futs {
			f, err := procpool.ApplyAsync(ctx, p, square, i)
			if err != nil {
				return 0, err
			}
			futs[i] = f
		}
		for i, f := range futs {
			v, err := f.Get(ctx)
			if err != nil {
				return 0, err
			}
			if v != i*i {
				return 0, fmt.Errorf("square(%d) = %d", i, v)
			}
		}
		return float64(sz.asyncN) / time.Since(t0).Seconds(), nil
	})
	return rate, note, err
}

// medianRate runs round rounds times (at least once) and returns the median
// of the rates it returned, and a note that lists them in order; or the
// first error, at once.
func medianRate(rounds int, round func() (float64, error)) (float64, string, error) {
	rates := make([]float64, max(1, rounds))
	var each []string
	for i := range rates {
		r, err := round()
		if err != nil {
			return 0, "", err
		}
		rates[i] = r
		each = append(each, fmtValue(r))
	}
	note := ""
	if len(rates) > 1 {
		note = fmt.Sprintf("median of %d rounds: %s", len(rates), strings.Join(each, ", "))
	}
	slices.Sort(rates)
	return rates[len(rates)/2], note, nil
}

// ---- map-throughput ----

func runMapThroughput(sz sizes, py *python) []measurement {
	var out []measurement
	v, err := mapThroughput(sz)
	out = append(out, measured("map-throughput", "procpool", v, err))
	return append(out, py.run("map-throughput", sz.timeout, "n", sz.mapN, "workers", workers)...)
}

func mapThroughput(sz sizes) (rate float64, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), sz.timeout)
	defer cancel()
	p, err := newPool(ctx, procpool.WithProcesses(workers))
	if err != nil {
		return 0, err
	}
	defer measure.ClosePool(ctx, p, &err)
	xs := make([]int, sz.mapN)
	for i := range xs {
		xs[i] = i
	}
	t0 := time.Now()
	ys, err := procpool.Map(ctx, p, square, xs)
	dt := time.Since(t0)
	if err != nil {
		return 0, err
	}
	for i, y := range ys {
		if y != i*i {
			return 0, fmt.Errorf("square(%d) = %d", i, y)
		}
	}
	return float64(sz.mapN) / dt.Seconds(), nil
}

// ---- payload-throughput ----

func runPayloadThroughput(sz sizes, py *python) []measurement {
	var out []measurement
	v, err := payloadThroughput(sz)
	out = append(out, measured("payload-throughput", "procpool", v, err))
	return append(out, py.run("payload-throughput", sz.timeout, "n", sz.payloadN, "workers", workers, "size", sz.payloadSize)...)
}

func payloadThroughput(sz sizes) (rate float64, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), sz.timeout)
	defer cancel()
	p, err := procpool.New(procpool.WithProcesses(workers))
	if err != nil {
		return 0, err
	}
	defer measure.ClosePool(ctx, p, &err)
	payload := make([]byte, sz.payloadSize)
	r := rand.NewChaCha8([32]byte{1})
	r.Read(payload)
	// Warm up with the same call that is timed, as the Python side does.
	if _, err := procpool.Apply(ctx, p, length, payload); err != nil {
		return 0, fmt.Errorf("warm-up: %w", err)
	}
	t0 := time.Now()
	for range sz.payloadN {
		n, err := procpool.Apply(ctx, p, length, payload)
		if err != nil {
			return 0, err
		}
		if n != len(payload) {
			return 0, fmt.Errorf("len = %d, want %d", n, len(payload))
		}
	}
	dt := time.Since(t0)
	return float64(sz.payloadN) * float64(sz.payloadSize) / (1 << 20) / dt.Seconds(), nil
}

// ---- startup ----

func runStartup(sz sizes, py *python) []measurement {
	var out []measurement
	v, err := startup(sz)
	out = append(out, measured("startup", "procpool", millis(v), err), goPluginStartup(sz))
	return append(out, py.run("startup", sz.timeout, "runs", sz.startupRuns, "workers", workers)...)
}

func startup(sz sizes) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), sz.timeout)
	defer cancel()
	ts := make([]time.Duration, sz.startupRuns)
	for i := range ts {
		t0 := time.Now()
		p, err := procpool.New(procpool.WithProcesses(workers))
		if err != nil {
			return 0, err
		}
		v, err := procpool.Apply(ctx, p, square, 3)
		ts[i] = time.Since(t0)
		if cerr := p.Shutdown(ctx); err == nil && cerr != nil {
			err = fmt.Errorf("close: %w", cerr)
		}
		if err != nil {
			return 0, err
		}
		if v != 9 {
			return 0, fmt.Errorf("square(3) = %d", v)
		}
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i] < ts[j] })
	return ts[len(ts)/2], nil
}

// ---- process-per-task ----

// settle pauses before a short timed section (200 calls take a few
// milliseconds) so that processes the previous workload left exiting do not
// land in it; both systems of the workload get it alike.
func settle() { time.Sleep(100 * time.Millisecond) }

func runProcessPerTask(sz sizes, _ *python) []measurement {
	var out []measurement
	v, err := perTaskPool(sz)
	out = append(out, measured("process-per-task", "procpool", millis(v), err))
	v, err = perTaskExec(sz)
	out = append(out, measured("process-per-task", "exec-per-task", millis(v), err))
	return out
}

func perTaskPool(sz sizes) (per time.Duration, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), sz.timeout)
	defer cancel()
	p, err := newPool(ctx, procpool.WithProcesses(workers))
	if err != nil {
		return 0, err
	}
	defer measure.ClosePool(ctx, p, &err)
	settle()
	t0 := time.Now()
	for i := range sz.perTaskN {
		v, err := procpool.Apply(ctx, p, square, i)
		if err != nil {
			return 0, err
		}
		if v != i*i {
			return 0, fmt.Errorf("square(%d) = %d", i, v)
		}
	}
	return time.Since(t0) / time.Duration(sz.perTaskN), nil
}

// ---- cpu-scaling ----

func runCPUScaling(sz sizes, py *python) []measurement {
	var out []measurement
	n := runtime.NumCPU()
	if v, note, err := cpuScaling(sz, n); err != nil {
		out = append(out, failed("cpu-scaling", "procpool", err))
	} else {
		out = append(out, ok("cpu-scaling", "procpool", v, note))
	}
	out = append(out, py.run("cpu-scaling", sz.timeout, "tasks", sz.cpuTasks, "cores", n, "task_ms", sz.cpuTaskMs)...)
	for i := range out {
		out[i] = checkSpeedup(out[i], n)
	}
	return out
}

func cpuScaling(sz sizes, n int) (speedup float64, note string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), sz.timeout)
	defer cancel()
	steps := calibrateBurn(time.Duration(sz.cpuTaskMs) * time.Millisecond)
	xs := make([]int, sz.cpuTasks)
	for i := range xs {
		xs[i] = steps
	}
	want := burn(steps)
	elapsed := map[int]time.Duration{}
	for _, w := range []int{1, n} {
		if err := func() (err error) {
			p, err := procpool.New(procpool.WithProcesses(w))
			if err != nil {
				return err
			}
			defer measure.ClosePool(ctx, p, &err)
			if _, err := procpool.Apply(ctx, p, burnFn, 1); err != nil {
				return fmt.Errorf("warm-up: %w", err)
			}
			t0 := time.Now()
			ys, err := procpool.Map(ctx, p, burnFn, xs, procpool.ChunkSize(1))
			elapsed[w] = time.Since(t0)
			if err != nil {
				return err
			}
			for _, y := range ys {
				if y != want {
					return fmt.Errorf("burn = %d, want %d", y, want)
				}
			}
			return nil
		}(); err != nil {
			return 0, "", err
		}
	}
	note = fmt.Sprintf("1 worker %.2fs, %d workers %.2fs", elapsed[1].Seconds(), n, elapsed[n].Seconds())
	return elapsed[1].Seconds() / elapsed[n].Seconds(), note, nil
}

// checkSpeedup warns about a speedup well above the number of cores: only
// other work slowing down the run on 1 worker explains it.
func checkSpeedup(m measurement, n int) measurement {
	if m.err == "" && m.value > 1.1*float64(n) {
		progress("warning: %s %s: a speedup of %.2f on %d cores means the machine was busy during the run", m.workload, m.system, m.value, n)
		m.note = strings.TrimPrefix(m.note+"; a speedup above N: the run was disturbed", "; ")
	}
	return m
}

// ---- stream-memory ----

func runStreamMemory(sz sizes, py *python) []measurement {
	var out []measurement
	v, err := streamMemory(sz)
	out = append(out, measured("stream-memory", "procpool", v, err))
	return append(out, py.run("stream-memory", sz.timeout, "n", sz.streamN, "workers", workers)...)
}
