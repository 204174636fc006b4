//go:build unix

package main

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
	"sort"
	"strconv"
	"strings"
	"time"
)

// goPluginPeer drives the Go peer, hashicorp/go-plugin over net/rpc: the
// separate module in bench/goplugin (its own go.mod, so that procpool does
// not depend on go-plugin), built into a temporary directory when the
// harness starts and run as a child once per workload; it prints JSON lines
// as bench/python/pool_bench.py does.
type goPluginPeer struct {
	bin string // the built binary, "" if there is none
	why string // why there is none
}

// goPlugin is the peer of this run, set by prepareGoPlugin.
var goPlugin = &goPluginPeer{why: "the go-plugin peer was not built"}

// goPluginWorkloads are the workloads that have a go-plugin row.
var goPluginWorkloads = []string{"apply-latency", "apply-concurrent", "startup"}

// goPluginBuildTimeout bounds the build, module downloads included.
const goPluginBuildTimeout = 5 * time.Minute

// prepareGoPlugin builds the peer if any selected workload (every workload
// when selected is empty) has a go-plugin row, and returns the function that
// removes the build. It blocks for the build (seconds from the build cache,
// minutes on a first build that downloads go-plugin and its dependencies).
// A failure is not fatal: the go-plugin rows say why, as the Python rows do
// when python3 is missing.
func prepareGoPlugin(selected map[string]bool) func() {
	need := len(selected) == 0
	for _, w := range goPluginWorkloads {
		need = need || selected[w]
	}
	if !need {
		return func() {}
	}
	fail := func(why string) func() {
		goPlugin = &goPluginPeer{why: why}
		progress("go-plugin peer: %s: the go-plugin rows will say so", why)
		return func() {}
	}
	src, err := goPluginSource()
	if err != nil {
		return fail(err.Error())
	}
	gotool, err := exec.LookPath("go")
	if err != nil {
		return fail("no go command to build it: " + err.Error())
	}
	dir, err := os.MkdirTemp("", "procpool-bench-goplugin-")
	if err != nil {
		return fail("cannot make its build directory: " + err.Error())
	}
	progress("building the go-plugin peer (%s) ...", src)
	ctx, cancel := context.WithTimeout(context.Background(), goPluginBuildTimeout)
	defer cancel()
	bin := filepath.Join(dir, "goplugin-peer")
	cmd := exec.CommandContext(ctx, gotool, "build", "-buildvcs=false", "-o", bin, ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		why := "go build failed: " + err.Error()
		if tail := lastLine(string(out)); tail != "" {
			why += ": " + tail
		}
		return fail(why)
	}
	goPlugin = &goPluginPeer{bin: bin}
	return func() { os.RemoveAll(dir) }
}

// goPluginSource returns the directory of the peer's module: bench/goplugin
// beside this file's source when the harness was built from the repository
// (go run ./bench), else bench/goplugin under the current directory.
func goPluginSource() (string, error) {
	var tried []string
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		tried = append(tried, filepath.Join(filepath.Dir(file), "goplugin"))
	}
	tried = append(tried, filepath.Join("bench", "goplugin"))
	for _, d := range tried {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return filepath.Abs(d)
		}
	}
	return "", fmt.Errorf("its source is not at %s", strings.Join(tried, " or "))
}

// run runs one workload of the peer with key=value arguments (alternating
// names and values in kv) and returns its one measurement, system
// go-plugin: a figure, or why there is none.
func (g *goPluginPeer) run(workload string, timeout time.Duration, kv ...any) measurement {
	const system = "go-plugin"
	none := func(why string) measurement {
		progress("%s %s: %s", workload, system, why)
		return measurement{workload: workload, system: system, unit: unitOf(workload), err: why}
	}
	if g.bin == "" {
		return measurement{workload: workload, system: system, unit: unitOf(workload), err: g.why}
	}
	args := []string{workload}
	for i := 0; i+1 < len(kv); i += 2 {
		args = append(args, fmt.Sprintf("%v=%v", kv[i], kv[i+1]))
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, g.bin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		why := "the go-plugin peer failed: " + err.Error()
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			why = fmt.Sprintf("the go-plugin peer took over %v", timeout)
		}
		if tail := lastLine(stderr.String()); tail != "" {
			why += ": " + tail
		}
		return none(why)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var rec map[string]any
		if json.Unmarshal(sc.Bytes(), &rec) != nil || rec["system"] != system {
			continue
		}
		value, isNum := rec["value"].(float64)
		if !isNum {
			continue
		}
		if unit, _ := rec["unit"].(string); unit != unitOf(workload) {
			return none(fmt.Sprintf("the peer reported %q, not %q", unit, unitOf(workload)))
		}
		m := ok(workload, system, value, "")
		var keys []string
		for k, v := range rec {
			if f, isNum := v.(float64); isNum && k != "value" {
				if m.extra == nil {
					m.extra = map[string]float64{}
				}
				m.extra[k] = f
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		var notes []string
		for _, k := range keys {
			notes = append(notes, k+"="+strconv.FormatFloat(m.extra[k], 'g', 4, 64))
		}
		m.note = strings.Join(notes, ", ")
		return m
	}
	return none("no result from the go-plugin peer")
}

// goPluginLatency runs apply-latency on the peer and returns its p50 and
// p99 rows, as runApplyLatency's own.
func goPluginLatency(sz sizes) []measurement {
	m := goPlugin.run("apply-latency", sz.timeout, "n", sz.applyN, "workers", workers)
	if m.err != "" {
		return []measurement{m, {workload: "apply-latency-p99", system: m.system, unit: unitOf("apply-latency-p99"), err: m.err}}
	}
	p99 := ok("apply-latency-p99", m.system, m.extra["p99"], "")
	m.note = fmt.Sprintf("mean %.1f µs, p90 %.1f µs", m.extra["mean"], m.extra["p90"])
	return []measurement{m, p99}
}

// goPluginStartup runs startup on the peer: from starting its 2 plugin
// processes at once to the first result, the median of sz.startupRuns.
func goPluginStartup(sz sizes) measurement {
	return goPlugin.run("startup", sz.timeout, "runs", sz.startupRuns, "workers", workers)
}
