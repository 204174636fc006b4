//go:build unix

package main

import (
	"fmt"
	"strconv"
)

// The cluster workloads run in clusterBench, a binary of their own (see
// bench/clusterbench and peer): a pool of package cluster over host
// processes through an embedded broker, against the same round trips on
// bare JetStream. This file runs them and holds their targets.

// clusterBench is the cluster workloads' binary, as built by
// prepareClusterBench.
var clusterBench = &peer{what: "clusterbench", why: "clusterbench was not built"}

// clusterWorkloads are the workloads clusterBench runs.
var clusterWorkloads = []string{"cluster-throughput", "cluster-apply-latency", "cluster-map"}

// prepareClusterBench builds clusterBench if any selected workload (every
// workload when selected is empty) is one of clusterWorkloads, and returns
// the function that removes the build. It blocks for the build (see
// buildPeer).
func prepareClusterBench(selected map[string]bool) func() {
	if !needs(selected, clusterWorkloads) {
		return func() {}
	}
	var cleanup func()
	clusterBench, cleanup = buildPeer("clusterbench", "clusterbench")
	return cleanup
}

func runClusterThroughput(sz sizes, _ *python) []measurement {
	return runCluster("cluster-throughput", sz.asyncN, sz, "procpool", "raw-jetstream")
}

func runClusterLatency(sz sizes, _ *python) []measurement {
	return runCluster("cluster-apply-latency", sz.applyN, sz, "procpool", "raw-jetstream")
}

func runClusterMap(sz sizes, _ *python) []measurement {
	return runCluster("cluster-map", sz.mapN, sz, "procpool", "procpool-host-killed")
}

// runCluster runs workload on clusterBench with n tasks or items and
// returns a measurement for each of its rows: those it printed, and for
// each of systems it printed no row of, one that says why.
func runCluster(workload string, n int, sz sizes, systems ...string) []measurement {
	// Every system of the workload gets sz.timeout, and starting and
	// stopping the processes some more.
	timeout := sz.timeout*2 + sz.timeout/2
	recs, why := clusterBench.records(timeout, "-n", strconv.Itoa(n), "-timeout", sz.timeout.String(), workload)
	return clusterMeasurements(workload, recs, why, systems)
}

// clusterMeasurements turns clusterBench's records of workload into
// measurements (rows of the workload and of its p99 companion, whatever
// workload a record names, are kept; others are dropped), and adds a failed
// row, saying why, for each of systems no record names. why, if not "", is
// why there are no records.
func clusterMeasurements(workload string, recs []map[string]any, why string, systems []string) []measurement {
	if why == "" && len(recs) == 0 {
		why = "no result from clusterbench"
	}
	var out []measurement
	seen := map[string]bool{}
	for _, rec := range recs {
		w, _ := rec["workload"].(string)
		system, _ := rec["system"].(string)
		if w != workload && w != workload+"-p99" || system == "" {
			continue
		}
		if w == workload {
			seen[system] = true
		}
		note, _ := rec["note"].(string)
		if e, _ := rec["error"].(string); e != "" {
			progress("%s %s: %s", w, system, e)
			out = append(out, measurement{workload: w, system: system, unit: unitOf(w), err: e})
			continue
		}
		v, isNum := rec["value"].(float64)
		if !isNum {
			why := fmt.Sprintf("clusterbench printed no value: %v", rec)
			progress("%s %s: %s", w, system, why)
			out = append(out, measurement{workload: w, system: system, unit: unitOf(w), err: why})
			continue
		}
		out = append(out, ok(w, system, v, note))
	}
	for _, system := range systems {
		if !seen[system] {
			why := why
			if why == "" {
				why = "clusterbench printed no row for it"
			}
			progress("%s %s: %s", workload, system, why)
			out = append(out, measurement{workload: workload, system: system, unit: unitOf(workload), err: why})
		}
	}
	return out
}

// The targets of the cluster workloads, after the others.
func init() {
	targets = append(targets,
		target{
			name: "cluster-throughput: procpool ≥ 20,000 tasks/s",
			check: func(r *report) (bool, string, bool) {
				v, ok := r.get("cluster-throughput", "procpool")
				if !ok {
					return false, "", false
				}
				return v >= 20_000, fmt.Sprintf("procpool %s tasks/s", fmtValue(v)), true
			},
		},
		relTarget("cluster-throughput", "raw-jetstream", "≥", 0.5, "0.5×"),
		relTarget("cluster-apply-latency", "raw-jetstream", "≤", 3, "3×"),
	)
}
