//go:build unix

package main

import (
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// tinySizes are the sizes the tests give the workloads.
var tinySizes = sizes{applyN: 200, asyncN: 2000, rounds: 2, startupRuns: 1, timeout: time.Minute}

func TestApplyConcurrent(t *testing.T) {
	// applyConcurrent checks every result (square(i) = i·i) and fails
	// unless all sz.asyncN calls returned.
	rate, _, err := applyConcurrent(tinySizes)
	if err != nil {
		t.Fatalf("applyConcurrent: %v", err)
	}
	if !(rate > 0) {
		t.Fatalf("rate = %v, want > 0", rate)
	}
}

func TestApplyConcurrentTargets(t *testing.T) {
	r := &report{ms: []measurement{
		ok("async-throughput", "procpool", 1000, ""),
		ok("apply-concurrent", "procpool", 690, ""),
		ok("apply-concurrent", "go-plugin", 200, ""),
	}}
	got := strings.Join(r.targetLines(), "\n")
	for _, want := range []string{
		"FAIL apply-concurrent: procpool ≥ 0.7× procpool's async-throughput: apply-concurrent 690 tasks/s, async-throughput 1,000 tasks/s, bound 700 tasks/s (apply-concurrent = 0.69× async-throughput)",
		"PASS apply-concurrent: procpool ≥ 3× go-plugin: procpool 690 tasks/s, go-plugin 200 tasks/s, bound 600 tasks/s (procpool = 3.45× go-plugin)",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("target lines lack %q; got:\n%s", want, got)
		}
	}

	// Without async-throughput's figure the ratio cannot be checked.
	r.ms = r.ms[1:]
	got = strings.Join(r.targetLines(), "\n")
	if want := "SKIP apply-concurrent: procpool ≥ 0.7× procpool's async-throughput (a figure is missing)"; !strings.Contains(got, want) {
		t.Errorf("target lines lack %q; got:\n%s", want, got)
	}
}

func TestGoPluginPeerNotBuilt(t *testing.T) {
	saved := goPlugin
	defer func() { goPlugin = saved }()
	goPlugin = &peer{what: "the go-plugin peer", why: "no go command to build it"}
	m := goPluginRun("startup", time.Minute, "runs", 1, "workers", 2)
	if m.system != "go-plugin" || m.workload != "startup" || m.err != "no go command to build it" || m.unit != "ms" {
		t.Fatalf("run without a binary = %+v", m)
	}
	if cleanup := prepareGoPlugin(map[string]bool{"map-throughput": true}); cleanup == nil {
		t.Fatal("prepareGoPlugin returned no cleanup")
	}
	if goPlugin.bin != "" {
		t.Fatalf("the peer was built for map-throughput alone: %+v", goPlugin)
	}
}

// TestGoPluginPeer builds the peer (bench/goplugin, a module of its own)
// as the harness does and runs each of its workloads at a tiny size.
func TestGoPluginPeer(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command on PATH to build the go-plugin peer")
	}
	saved := goPlugin
	defer func() { goPlugin = saved }()
	cleanup := prepareGoPlugin(map[string]bool{"startup": true})
	defer cleanup()
	if goPlugin.bin == "" {
		t.Fatalf("the peer did not build: %s", goPlugin.why)
	}

	lat := goPluginLatency(tinySizes)
	if len(lat) != 2 || lat[0].err != "" || lat[1].err != "" {
		t.Fatalf("apply-latency: %+v", lat)
	}
	if lat[0].workload != "apply-latency" || lat[1].workload != "apply-latency-p99" ||
		lat[0].unit != "µs" || !(lat[0].value > 0) || lat[1].value < lat[0].value {
		t.Fatalf("apply-latency: p50 %+v, p99 %+v", lat[0], lat[1])
	}

	m := goPluginRun("apply-concurrent", time.Minute, "n", 2000, "goroutines", callers, "workers", workers)
	if m.err != "" || m.unit != "tasks/s" || !(m.value > 0) || m.extra["goroutines"] != callers {
		t.Fatalf("apply-concurrent: %+v", m)
	}

	m = goPluginStartup(tinySizes)
	if m.err != "" || m.unit != "ms" || !(m.value > 0) {
		t.Fatalf("startup: %+v", m)
	}

	// A workload the peer does not know: the row says why.
	m = goPluginRun("map-throughput", time.Minute, "n", 10)
	if m.err == "" || !strings.Contains(m.err, "usage: goplugin") {
		t.Fatalf("unknown workload: %+v", m)
	}
}

func TestClusterMeasurements(t *testing.T) {
	recs := []map[string]any{
		{"workload": "cluster-apply-latency", "system": "procpool", "value": 500.0, "note": "p90 600 µs"},
		{"workload": "cluster-apply-latency-p99", "system": "procpool", "value": 900.0},
		{"workload": "cluster-apply-latency", "system": "raw-jetstream", "error": "broker gone"},
		{"workload": "cluster-map", "system": "procpool", "value": 1.0}, // another workload's: dropped
	}
	got := clusterMeasurements("cluster-apply-latency", recs, "", []string{"procpool", "raw-jetstream", "third"})
	want := []measurement{
		{workload: "cluster-apply-latency", system: "procpool", value: 500, unit: "µs", note: "p90 600 µs"},
		{workload: "cluster-apply-latency-p99", system: "procpool", value: 900, unit: "µs"},
		{workload: "cluster-apply-latency", system: "raw-jetstream", unit: "µs", err: "broker gone"},
		{workload: "cluster-apply-latency", system: "third", unit: "µs", err: "clusterbench printed no row for it"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("measurements\n%+v\nwant\n%+v", got, want)
	}

	// No records: a row for each system, saying why.
	got = clusterMeasurements("cluster-throughput", nil, "clusterbench failed: exit status 1", []string{"procpool", "raw-jetstream"})
	if len(got) != 2 || got[0].err != "clusterbench failed: exit status 1" || got[1].system != "raw-jetstream" || got[1].unit != "tasks/s" {
		t.Fatalf("without records: %+v", got)
	}
}

func TestMedianRate(t *testing.T) {
	rates := []float64{300, 100, 200}
	i := 0
	v, note, err := medianRate(3, func() (float64, error) { i++; return rates[i-1], nil })
	if err != nil || v != 200 || note != "median of 3 rounds: 300, 100, 200" || i != 3 {
		t.Fatalf("medianRate = %v, %q, %v after %d rounds", v, note, err, i)
	}
	boom := errors.New("boom")
	i = 0
	if _, _, err := medianRate(3, func() (float64, error) { i++; return 0, boom }); err != boom || i != 1 {
		t.Fatalf("a failed round: err %v after %d rounds, want boom after 1", err, i)
	}
	if v, note, err := medianRate(0, func() (float64, error) { return 7, nil }); v != 7 || note != "" || err != nil {
		t.Fatalf("no rounds asked: %v, %q, %v; want one round", v, note, err)
	}
}
