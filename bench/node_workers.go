//go:build unix

package main

import (
	"bufio"
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/procpool/procpool"
	"github.com/procpool/procpool/bench/internal/measure"
	"github.com/procpool/procpool/codec"
)

// The node-* workloads: Go calling Node.js workers (workers/node, the
// procpool-worker library) against a Node parent calling Node children
// through child_process, without procpool. bench/node/pool_worker.js is
// the workers' script; bench/node/node_bench.js the plain-Node side. Both
// are embedded and written to a temporary directory; the library is found
// in the source tree (workers/node above the current directory) or at
// $PROCPOOL_BENCH_NODE_LIB.

//go:embed node/*.js
var nodeFiles embed.FS

// nodeSquare is served by bench/node/pool_worker.js.
var nodeSquare = procpool.Declare[int, int]("bench.node.square")

// envNodeLib names the directory of workers/node; the harness passes it to
// the workers' script.
const envNodeLib = "PROCPOOL_BENCH_NODE_LIB"

// nodeBench is one run's Node set-up; err says why there is none.
type nodeBench struct {
	node   string // the interpreter
	lib    string // workers/node
	dir    string // the embedded scripts, written out
	worker string // dir/pool_worker.js
	err    error
}

// newNodeBench finds node and the library and writes the scripts out. The
// returned function removes them.
func newNodeBench() (*nodeBench, func()) {
	nb := &nodeBench{}
	if nb.node, nb.err = exec.LookPath("node"); nb.err != nil {
		nb.err = fmt.Errorf("node not found: %w", nb.err)
		return nb, func() {}
	}
	if nb.lib, nb.err = findNodeLib(); nb.err != nil {
		return nb, func() {}
	}
	if nb.dir, nb.err = os.MkdirTemp("", "procpool-bench-node-"); nb.err != nil {
		return nb, func() {}
	}
	cleanup := func() { os.RemoveAll(nb.dir) }
	for _, name := range []string{"pool_worker.js", "node_bench.js"} {
		src, err := nodeFiles.ReadFile("node/" + name)
		if err == nil {
			err = os.WriteFile(filepath.Join(nb.dir, name), src, 0o644)
		}
		if err != nil {
			nb.err = fmt.Errorf("writing %s: %w", name, err)
			return nb, cleanup
		}
	}
	nb.worker = filepath.Join(nb.dir, "pool_worker.js")
	return nb, cleanup
}

// findNodeLib returns $PROCPOOL_BENCH_NODE_LIB, or workers/node in the
// current directory or one above it.
func findNodeLib() (string, error) {
	if dir := os.Getenv(envNodeLib); dir != "" {
		return filepath.Abs(dir)
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		lib := filepath.Join(dir, "workers", "node")
		if _, err := os.Stat(filepath.Join(lib, "index.js")); err == nil {
			return lib, nil
		}
		if filepath.Dir(dir) == dir {
			return "", fmt.Errorf("workers/node not found above %s (set %s)", wd, envNodeLib)
		}
	}
}

// pool starts a pool of Node workers with c, warmed with one call.
func (nb *nodeBench) pool(ctx context.Context, c codec.Codec) (*procpool.Pool, error) {
	p, err := procpool.New(procpool.WithCommand(nb.node, nb.worker), procpool.WithProcesses(workers),
		procpool.WithCodec(c), procpool.WithRequire(nodeSquare), procpool.WithEnv(envNodeLib+"="+nb.lib))
	if err != nil {
		return nil, err
	}
	if _, err := procpool.Apply(ctx, p, nodeSquare, 1); err != nil {
		p.Terminate()
		return nil, fmt.Errorf("warm-up: %w", err)
	}
	return p, nil
}

// plain runs node_bench.js in mode with key=value arguments and returns its
// measurements of the given systems.
func (nb *nodeBench) plain(workload, mode string, timeout time.Duration, systems []string, kv ...any) []measurement {
	args := []string{filepath.Join(nb.dir, "node_bench.js"), mode}
	for i := 0; i+1 < len(kv); i += 2 {
		args = append(args, fmt.Sprintf("%v=%v", kv[i], kv[i+1]))
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, nb.node, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	got := map[string]measurement{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var rec struct {
			System string  `json:"system"`
			Value  float64 `json:"value"`
			Unit   string  `json:"unit"`
			Mean   float64 `json:"mean"`
			P90    float64 `json:"p90"`
			P99    float64 `json:"p99"`
			Chunk  int     `json:"chunk"`
		}
		if json.Unmarshal(sc.Bytes(), &rec) != nil || rec.System == "" {
			continue
		}
		var note string
		switch {
		case rec.Unit == "µs":
			note = fmt.Sprintf("mean %.1f µs, p90 %.1f µs, p99 %.1f µs", rec.Mean, rec.P90, rec.P99)
		case rec.Chunk > 0:
			note = fmt.Sprintf("batches of %d", rec.Chunk)
		}
		got[rec.System] = ok(workload, rec.System, rec.Value, note)
	}
	var ms []measurement
	for _, s := range systems {
		m, found := got[s]
		if !found {
			why := errors.New("no result from node_bench.js")
			if err != nil {
				why = fmt.Errorf("node_bench.js: %w: %s", err, lastLine(stderr.String()))
			}
			m = failed(workload, s, why)
		}
		ms = append(ms, m)
	}
	return ms
}

// ---- node-apply-latency ----

func runNodeApplyLatency(sz sizes, _ *python) []measurement {
	const w = "node-apply-latency"
	plainSystems := []string{"node-fork-ipc", "node-stdio-pipe"}
	nb, cleanup := newNodeBench()
	defer cleanup()
	if nb.err != nil {
		var ms []measurement
		for _, s := range append([]string{"procpool", "procpool-json"}, plainSystems...) {
			ms = append(ms, failed(w, s, nb.err))
		}
		return ms
	}
	var out []measurement
	for _, c := range []struct {
		system string
		codec  codec.Codec
	}{{"procpool", codec.CBOR}, {"procpool-json", codec.JSON}} {
		lat, err := nb.latency(sz, c.codec)
		if err != nil {
			out = append(out, failed(w, c.system, err))
			continue
		}
		var sum time.Duration
		for _, d := range lat {
			sum += d
		}
		note := fmt.Sprintf("mean %.1f µs, p90 %.1f µs, p99 %.1f µs", measure.Micros(sum/time.Duration(len(lat))),
			measure.Micros(measure.Percentile(lat, 90)), measure.Micros(measure.Percentile(lat, 99)))
		out = append(out, ok(w, c.system, measure.Micros(measure.Percentile(lat, 50)), note))
	}
	return append(out, nb.plain(w, "latency", sz.timeout, plainSystems, "n", sz.applyN)...)
}

// latency returns the sorted latencies of sz.applyN sequential Apply calls
// on a warm pool of Node workers.
func (nb *nodeBench) latency(sz sizes, c codec.Codec) (lat []time.Duration, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), sz.timeout)
	defer cancel()
	p, err := nb.pool(ctx, c)
	if err != nil {
		return nil, err
	}
	defer measure.ClosePool(ctx, p, &err)
	return measure.ApplyLatencies(ctx, p, nodeSquare, sz.applyN)
}

// ---- node-map-throughput ----

func runNodeMapThroughput(sz sizes, _ *python) []measurement {
	const w = "node-map-throughput"
	nb, cleanup := newNodeBench()
	defer cleanup()
	if nb.err != nil {
		var ms []measurement
		for _, s := range []string{"procpool", "procpool-json", "node-fork-ipc"} {
			ms = append(ms, failed(w, s, nb.err))
		}
		return ms
	}
	// Map's default chunk size, which the plain-Node side uses too.
	chunk := max(1, sz.mapN/(4*workers))
	var out []measurement
	for _, c := range []struct {
		system string
		codec  codec.Codec
	}{{"procpool", codec.CBOR}, {"procpool-json", codec.JSON}} {
		v, err := nb.mapThroughput(sz, c.codec, chunk)
		if err != nil {
			out = append(out, failed(w, c.system, err))
			continue
		}
		out = append(out, ok(w, c.system, v, "chunks of "+strconv.Itoa(chunk)))
	}
	return append(out, nb.plain(w, "map", sz.timeout, []string{"node-fork-ipc"}, "n", sz.mapN, "workers", workers, "chunk", chunk)...)
}

func (nb *nodeBench) mapThroughput(sz sizes, c codec.Codec, chunk int) (rate float64, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), sz.timeout)
	defer cancel()
	p, err := nb.pool(ctx, c)
	if err != nil {
		return 0, err
	}
	defer measure.ClosePool(ctx, p, &err)
	xs := make([]int, sz.mapN)
	for i := range xs {
		xs[i] = i
	}
	t0 := time.Now()
	ys, err := procpool.Map(ctx, p, nodeSquare, xs, procpool.ChunkSize(chunk))
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
