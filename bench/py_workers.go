//go:build unix

package main

// The Python-worker workloads: a Go pool whose workers are python3 processes
// running workers/python/procpool_worker.py, against Python's own
// multiprocessing.Pool running the same function.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"time"

	"github.com/procpool/procpool"
	"github.com/procpool/procpool/bench/internal/measure"
)

// pySquare is bench/python/bench_worker.py's square, declared: no Go body.
var pySquare = procpool.Declare[int, int]("bench.py.square")

// pyChunk is the chunk size of py-map-throughput on both sides: Python's
// own default for 1M items on 2 workers (len / (4 × workers)), which is
// procpool's default too.
func pyChunk(n int) int { return (n + 4*workers - 1) / (4 * workers) }

func init() {
	targets = append(targets,
		relTarget("py-apply-latency", "python-pool", "≤", 0.5, "½ ×"),
		relTarget("py-map-throughput", "python-pool", "≥", 1, "1×"),
	)
}

// pyWorkerModule finds workers/python/procpool_worker.py: beside this
// source file's directory (go run ./bench from a clone), else above the
// working directory.
func pyWorkerModule() (string, error) {
	var roots []string
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		roots = append(roots, filepath.Dir(filepath.Dir(file)))
	}
	if wd, err := os.Getwd(); err == nil {
		for d := wd; ; d = filepath.Dir(d) {
			roots = append(roots, d)
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	for _, r := range roots {
		p := filepath.Join(r, "workers", "python", "procpool_worker.py")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New("workers/python/procpool_worker.py not found: run the bench from the repository")
}

// pyWorkerScript writes bench_worker.py next to the harness's Python script
// and returns the worker command's arguments.
func pyWorkerScript(py *python) ([]string, error) {
	if py.path == "" {
		return nil, errors.New(py.version)
	}
	mod, err := pyWorkerModule()
	if err != nil {
		return nil, err
	}
	src, err := pythonFiles.ReadFile("python/bench_worker.py")
	if err != nil {
		return nil, err
	}
	script := filepath.Join(filepath.Dir(py.script), "bench_worker.py")
	if err := os.WriteFile(script, src, 0o644); err != nil {
		return nil, err
	}
	// procpool_worker.py SCRIPT: imports the script, then serves.
	return []string{mod, script}, nil
}

func newPyPool(ctx context.Context, py *python) (*procpool.Pool, error) {
	args, err := pyWorkerScript(py)
	if err != nil {
		return nil, err
	}
	p, err := procpool.New(procpool.WithCommand(py.path, args...), procpool.WithProcesses(workers), procpool.WithRequire(pySquare))
	if err != nil {
		return nil, err
	}
	// Warm every worker: a Python worker records the items of a chunk in
	// its journal one by one (a crash then fails only the item that was
	// running) until it has timed the function and found its items fast.
	// Tasks of one item each go to the idle workers first.
	xs := make([]int, 4*workers)
	for i := range xs {
		xs[i] = i
	}
	if ys, err := procpool.Map(ctx, p, pySquare, xs, procpool.ChunkSize(1)); err != nil || ys[3] != 9 {
		p.Terminate()
		return nil, fmt.Errorf("warm-up: %v, %w", ys, err)
	}
	return p, nil
}

// pyBench runs bench/python/py_bench.py for one workload and returns the
// figures it printed, by name.
func pyBench(py *python, timeout time.Duration, args ...string) (map[string]float64, error) {
	if py.path == "" {
		return nil, errors.New(py.version)
	}
	src, err := pythonFiles.ReadFile("python/py_bench.py")
	if err != nil {
		return nil, err
	}
	script := filepath.Join(filepath.Dir(py.script), "py_bench.py")
	if err := os.WriteFile(script, src, 0o644); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, py.path, append([]string{"-u", script}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("python3 failed: %v: %s", err, lastLine(stderr.String()))
	}
	got := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var rec map[string]float64
		if json.Unmarshal(sc.Bytes(), &rec) == nil {
			for k, v := range rec {
				got[k] = v
			}
		}
	}
	return got, nil
}

// ---- py-apply-latency ----

func runPyApplyLatency(sz sizes, py *python) []measurement {
	const w = "py-apply-latency"
	var out []measurement
	lat, err := pyPoolLatency(sz, py)
	if err != nil {
		out = append(out, failed(w, "procpool", err))
	} else {
		out = append(out, ok(w, "procpool", measure.Micros(measure.Percentile(lat, 50)),
			fmt.Sprintf("p90 %.1f µs, p99 %.1f µs", measure.Micros(measure.Percentile(lat, 90)), measure.Micros(measure.Percentile(lat, 99)))))
	}
	got, err := pyBench(py, sz.timeout, "apply", fmt.Sprint(sz.applyN), fmt.Sprint(workers))
	if err != nil {
		out = append(out, failed(w, "python-pool", err))
	} else {
		out = append(out, ok(w, "python-pool", got["p50"], fmt.Sprintf("p90 %.1f µs, p99 %.1f µs", got["p90"], got["p99"])))
	}
	return out
}

func pyPoolLatency(sz sizes, py *python) (lat []time.Duration, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), sz.timeout)
	defer cancel()
	p, err := newPyPool(ctx, py)
	if err != nil {
		return nil, err
	}
	defer measure.ClosePool(ctx, p, &err)
	return measure.ApplyLatencies(ctx, p, pySquare, sz.applyN)
}

// ---- py-map-throughput ----

func runPyMapThroughput(sz sizes, py *python) []measurement {
	const w = "py-map-throughput"
	chunk := pyChunk(sz.mapN)
	var out []measurement
	v, err := pyMapThroughput(sz, py, chunk)
	if err != nil {
		out = append(out, failed(w, "procpool", err))
	} else {
		out = append(out, ok(w, "procpool", v, fmt.Sprintf("chunk size %d", chunk)))
	}
	got, err := pyBench(py, sz.timeout, "map", fmt.Sprint(sz.mapN), fmt.Sprint(workers), fmt.Sprint(chunk))
	if err != nil {
		out = append(out, failed(w, "python-pool", err))
	} else {
		out = append(out, ok(w, "python-pool", got["rate"], fmt.Sprintf("chunk size %d", chunk)))
	}
	return out
}

func pyMapThroughput(sz sizes, py *python, chunk int) (rate float64, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), sz.timeout)
	defer cancel()
	p, err := newPyPool(ctx, py)
	if err != nil {
		return 0, err
	}
	defer measure.ClosePool(ctx, p, &err)
	xs := make([]int, sz.mapN)
	for i := range xs {
		xs[i] = i
	}
	t0 := time.Now()
	ys, err := procpool.Map(ctx, p, pySquare, xs, procpool.ChunkSize(chunk))
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
