//go:build unix

// Command clusterbench runs the bench harness's cluster workloads (see
// docs/benchmarks.md): a pool of package cluster over host processes
// through an embedded broker, and the same round trips on bare JetStream.
// The harness (go run ./bench) builds it and runs it once per workload; it
// is a binary of its own so that the harness, whose re-executed copies are
// the workers of every other workload, does not link the NATS server and
// client: their package initialisation and the larger executable would add
// to every worker's start.
//
// Usage:
//
//	clusterbench -n N [-timeout D] cluster-throughput|cluster-apply-latency|cluster-map
//
// It prints one JSON object per measurement on standard output:
// {"workload", "system", "value", "note"} or {"workload", "system",
// "error"}; progress and the children's messages go to standard error. It
// exits 0 when it printed a line for every system, whatever they hold, and
// 2 on a usage error.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/procpool/procpool"
)

// envChild selects one of the binary's child modes (see runChild). It is set
// only in the environment of the children this binary starts itself.
const envChild = "PROCPOOL_CLUSTERBENCH_CHILD"

// workers is the number of worker processes of each host's local pool, and
// of each bare consumer's pulling goroutines: the harness's pools' size.
const workers = 2

// record is one line of output.
type record struct {
	Workload string  `json:"workload"`
	System   string  `json:"system"`
	Value    float64 `json:"value"` // printed even when 0, so that a zero figure is not read as none
	Note     string  `json:"note,omitempty"`
	Error    string  `json:"error,omitempty"`
}

func ok(workload, system string, v float64, note string) record {
	return record{Workload: workload, System: system, Value: v, Note: note}
}

// measured is ok, or a record of err when err is not nil.
func measured(workload, system string, v float64, err error) record {
	if err != nil {
		return failed(workload, system, err)
	}
	return ok(workload, system, v, "")
}

func failed(workload, system string, err error) record {
	progress("%s %s: %v", workload, system, err)
	return record{Workload: workload, System: system, Error: err.Error()}
}

func main() {
	procpool.Main()
	if mode := os.Getenv(envChild); mode != "" {
		os.Exit(runChild(mode))
	}
	n := flag.Int("n", 0, "tasks (throughput, apply-latency) or items (map) `N`")
	timeout := flag.Duration("timeout", 3*time.Minute, "the limit for one system's run")
	flag.Parse()
	run := map[string]func(size) []record{
		"cluster-throughput":    runThroughput,
		"cluster-apply-latency": runLatency,
		"cluster-map":           runMap,
	}[flag.Arg(0)]
	if flag.NArg() != 1 || run == nil || *n <= 0 {
		fmt.Fprintln(os.Stderr, "usage: clusterbench -n N [-timeout D] cluster-throughput|cluster-apply-latency|cluster-map")
		os.Exit(2)
	}
	enc := json.NewEncoder(os.Stdout)
	for _, r := range run(size{n: *n, timeout: *timeout}) {
		if err := enc.Encode(r); err != nil {
			fmt.Fprintf(os.Stderr, "clusterbench: %v\n", err)
			os.Exit(1)
		}
	}
}

// progress reports what the binary is doing on standard error.
func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "clusterbench: "+format+"\n", args...)
}
