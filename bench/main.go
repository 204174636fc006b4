//go:build unix

// Command bench measures procpool against Python's multiprocessing and
// against the limits of the machine, and checks the project's performance
// targets.
//
// Usage:
//
//	go run ./bench [-quick] [-json | -markdown] [-chart FILE] [-only LIST] [-python PATH]
//
// It runs every workload against every system listed for it, one at a time,
// in one process run, and prints a table (or JSON lines with -json, or a
// Markdown section with -markdown), then one PASS or FAIL line per target.
// The Python side runs the standard-library script in bench/python, which
// is embedded in this binary. See docs/benchmarks.md.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/procpool/procpool"
)

// envChild selects one of the bench binary's child modes (see runChild).
// The harness sets it only in the environment of the children it starts
// itself, never in its own.
const envChild = "PROCPOOL_BENCH_CHILD"

// sizes are the sizes of the workloads for one run.
type sizes struct {
	applyN      int           // sequential Apply calls
	asyncN      int           // ApplyAsync calls (and Apply calls of apply-concurrent) in one round
	rounds      int           // rounds of async-throughput and apply-concurrent on one pool (the median is reported)
	mapN        int           // items given to Map
	payloadN    int           // Apply calls with a payload
	payloadSize int           // bytes in the payload
	startupRuns int           // pool starts (the median is reported)
	perTaskN    int           // tasks of process-per-task
	cpuTasks    int           // tasks of cpu-scaling
	cpuTaskMs   int           // the length of one cpu-scaling task
	streamN     int           // items streamed by Imap
	timeout     time.Duration // the limit for one system's run of one workload
}

var (
	fullSizes = sizes{
		applyN: 20_000, asyncN: 100_000, rounds: 3, mapN: 1_000_000, payloadN: 500, payloadSize: 1 << 20,
		startupRuns: 5, perTaskN: 200, cpuTasks: 400, cpuTaskMs: 2, streamN: 10_000_000,
		timeout: 3 * time.Minute,
	}
	quickSizes = sizes{
		applyN: 2_000, asyncN: 10_000, rounds: 3, mapN: 100_000, payloadN: 50, payloadSize: 1 << 20,
		startupRuns: 3, perTaskN: 20, cpuTasks: 100, cpuTaskMs: 2, streamN: 1_000_000,
		timeout: 30 * time.Second,
	}
)

// workers is the number of worker processes of every pool, in every system,
// except where a workload says otherwise (cpu-scaling).
const workers = 2

func main() {
	procpool.Main()
	if mode := os.Getenv(envChild); mode != "" {
		os.Exit(runChild(mode))
	}

	quick := flag.Bool("quick", false, "run a reduced size of every workload (under a minute)")
	jsonOut := flag.Bool("json", false, "print one JSON object per measurement instead of a table")
	mdOut := flag.Bool("markdown", false, "print the results as a Markdown section for docs/benchmarks.md")
	chart := flag.String("chart", "", "write an SVG chart of the results to `FILE`")
	only := flag.String("only", "", "run only these workloads (comma-separated names)")
	python := flag.String("python", "python3", "the Python interpreter")
	flag.Parse()
	if *jsonOut && *mdOut {
		fmt.Fprintln(os.Stderr, "bench: -json and -markdown exclude each other")
		os.Exit(2)
	}
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "bench: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}

	sz := fullSizes
	if *quick {
		sz = quickSizes
	}
	selected := map[string]bool{}
	if *only != "" {
		for _, name := range strings.Split(*only, ",") {
			name = strings.TrimSpace(name)
			if findWorkload(name) == nil {
				fmt.Fprintf(os.Stderr, "bench: unknown workload %q (known: %s)\n", name, strings.Join(workloadNames(), ", "))
				os.Exit(2)
			}
			selected[name] = true
		}
	}

	py, cleanup := newPython(*python)
	defer cleanup()
	defer prepareGoPlugin(selected)()
	defer prepareClusterBench(selected)()

	load0 := loadAverage()
	before := readCPU()
	time.Sleep(time.Second)
	if q := othersShare(before, readCPU(), time.Second); q > 0.1 {
		progress("warning: other processes are using %.0f%% of the %d CPUs: they will disturb the figures", 100*q, runtime.NumCPU())
	}
	start := time.Now()
	cpu0 := readCPU()
	var ms []measurement
	for _, w := range workloads {
		if w.run == nil || len(selected) > 0 && !selected[w.name] {
			continue
		}
		progress("%s ...", w.name)
		t0 := time.Now()
		got := w.run(sz, py)
		progress("%s done in %.1fs", w.name, time.Since(t0).Seconds())
		ms = append(ms, got...)
	}
	elapsed := time.Since(start)
	others := othersShare(cpu0, readCPU(), elapsed)
	progress("all done in %.1fs", elapsed.Seconds())

	rep := &report{ms: ms, quick: *quick, elapsed: elapsed, py: py, chart: *chart, args: os.Args[1:],
		load: [2]string{load0, loadAverage()}, others: others}
	progress("%s", rep.quietness())
	if others > 0.1 {
		progress("warning: other processes used %.0f%% of the CPUs during the run: the figures are disturbed", 100*others)
	}
	switch {
	case *jsonOut:
		rep.writeJSON(os.Stdout)
		rep.writeTargets(os.Stderr)
	case *mdOut:
		rep.writeMarkdown(os.Stdout)
	default:
		rep.writeTable(os.Stdout)
		fmt.Println()
		rep.writeTargets(os.Stdout)
	}
	if *chart != "" {
		if err := writeChart(*chart, rep); err != nil {
			fmt.Fprintf(os.Stderr, "bench: chart: %v\n", err)
			os.Exit(1)
		}
		progress("wrote %s", *chart)
	}
}

// progress reports what the harness is doing on standard error.
func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}
