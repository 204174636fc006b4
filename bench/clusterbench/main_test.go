//go:build unix

package main

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/procpool/procpool"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	procpool.Main() // the hosts' pools re-run this test binary as their workers
	if mode := os.Getenv(envChild); mode != "" {
		os.Exit(runChild(mode)) // the hosts and bare consumers are this test binary too
	}
	if os.Getenv("GORACE") == "" {
		// Under -race a Go program sleeps a second at exit by default.
		os.Setenv("GORACE", "atexit_sleep_ms=0")
	}
	goleak.VerifyTestMain(m)
}

// TestWorkloads runs each workload at a small size, hosts and bare
// consumers as separate processes, and checks that it printed a figure for
// every system: the timed code checks every result it gets (square(i) =
// i·i) and reports an error row otherwise.
func TestWorkloads(t *testing.T) {
	for _, tc := range []struct {
		workload string
		run      func(size) []record
		n        int
		rows     []string // workload/system
	}{
		{"cluster-throughput", runThroughput, 2000, []string{
			"cluster-throughput/procpool", "cluster-throughput/raw-jetstream"}},
		{"cluster-apply-latency", runLatency, 100, []string{
			"cluster-apply-latency/procpool", "cluster-apply-latency-p99/procpool",
			"cluster-apply-latency/raw-jetstream", "cluster-apply-latency-p99/raw-jetstream"}},
		{"cluster-map", runMap, 20 * clusterChunk, []string{
			"cluster-map/procpool", "cluster-map/procpool-host-killed"}},
	} {
		t.Run(tc.workload, func(t *testing.T) {
			recs := tc.run(size{n: tc.n, timeout: 2 * time.Minute})
			var got []string
			for _, r := range recs {
				got = append(got, r.Workload+"/"+r.System)
				if r.Error != "" || !(r.Value > 0) {
					t.Errorf("%s %s: value %v, error %q", r.Workload, r.System, r.Value, r.Error)
				}
			}
			if strings.Join(got, " ") != strings.Join(tc.rows, " ") {
				t.Fatalf("rows %q, want %q", got, tc.rows)
			}
			if tc.workload == "cluster-map" && !strings.Contains(recs[1].Note, "host-0 killed at") {
				t.Errorf("the killed run's note is %q: no host was killed", recs[1].Note)
			}
		})
	}
}
