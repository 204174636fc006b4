//go:build unix

package main

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// goPlugin is the Go peer, hashicorp/go-plugin over net/rpc (a module of
// its own in bench/goplugin), as built by prepareGoPlugin. Each run prints
// JSON lines as bench/python/pool_bench.py does.
var goPlugin = &peer{what: "the go-plugin peer", why: "the go-plugin peer was not built"}

// goPluginWorkloads are the workloads that have a go-plugin row.
var goPluginWorkloads = []string{"apply-latency", "apply-concurrent", "startup"}

// prepareGoPlugin builds the peer if any selected workload (every workload
// when selected is empty) has a go-plugin row, and returns the function that
// removes the build. It blocks for the build (see buildPeer).
func prepareGoPlugin(selected map[string]bool) func() {
	if !needs(selected, goPluginWorkloads) {
		return func() {}
	}
	var cleanup func()
	goPlugin, cleanup = buildPeer("the go-plugin peer", "goplugin", "GOWORK=off")
	return cleanup
}

// goPluginRun runs one workload of the go-plugin peer with key=value
// arguments (alternating names and values in kv) and returns its one
// measurement, system go-plugin: a figure, or why there is none.
func goPluginRun(workload string, timeout time.Duration, kv ...any) measurement {
	const system = "go-plugin"
	none := func(why string) measurement {
		progress("%s %s: %s", workload, system, why)
		return measurement{workload: workload, system: system, unit: unitOf(workload), err: why}
	}
	args := []string{workload}
	for i := 0; i+1 < len(kv); i += 2 {
		args = append(args, fmt.Sprintf("%v=%v", kv[i], kv[i+1]))
	}
	recs, why := goPlugin.records(timeout, args...)
	if why != "" {
		return none(why)
	}
	for _, rec := range recs {
		value, isNum := rec["value"].(float64)
		if rec["system"] != system || !isNum {
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
	m := goPluginRun("apply-latency", sz.timeout, "n", sz.applyN, "workers", workers)
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
	return goPluginRun("startup", sz.timeout, "runs", sz.startupRuns, "workers", workers)
}
