//go:build unix

package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

// report formats the measurements of one run.
type report struct {
	ms      []measurement
	quick   bool
	elapsed time.Duration
	py      *python
	chart   string    // the chart's path, "" if none
	args    []string  // the command-line flags of the run
	load    [2]string // the 1-minute load average at the start and the end
	others  float64   // the share of the CPUs that other processes used during the run, -1 if unknown
}

// cpuMeter tells how much CPU time processes other than the harness and
// its children used while it ran: the machine's busy time from /proc/stat
// less the harness's own (its children, pool workers and Python
// interpreters included, as every one of them has been waited for).
type cpuMeter struct {
	busy, own time.Duration
	ok        bool
}

func readCPU() cpuMeter {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuMeter{}
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return cpuMeter{}
	}
	var busy int64
	for i, v := range f[1:] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return cpuMeter{}
		}
		// user nice system idle iowait irq softirq steal ...: all but
		// idle and iowait are busy; guest time is already in user.
		if i != 3 && i != 4 && i < 8 {
			busy += n
		}
	}
	var self, kids syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &self) != nil || syscall.Getrusage(syscall.RUSAGE_CHILDREN, &kids) != nil {
		return cpuMeter{}
	}
	tv := func(t syscall.Timeval) time.Duration { return time.Duration(t.Nano()) }
	own := tv(self.Utime) + tv(self.Stime) + tv(kids.Utime) + tv(kids.Stime)
	return cpuMeter{busy: time.Duration(busy) * time.Second / userHz, own: own, ok: true}
}

// userHz is the unit of /proc/stat: USER_HZ, 100 on Linux.
const userHz = 100

// othersShare returns the share of the machine's CPU time, in [0, 1], that
// went to other processes between a and b, over wall time d; -1 if unknown.
func othersShare(a, b cpuMeter, d time.Duration) float64 {
	if !a.ok || !b.ok || d <= 0 {
		return -1
	}
	other := (b.busy - a.busy) - (b.own - a.own)
	return max(0, float64(other)/(float64(d)*float64(runtime.NumCPU())))
}

// quietness describes how quiet the machine was, for the reader of the
// results.
func (r *report) quietness() string {
	s := fmt.Sprintf("1-minute load average %s at the start, %s at the end", r.load[0], r.load[1])
	if r.others >= 0 {
		s += fmt.Sprintf("; other processes used %.0f%% of the CPUs during the run", 100*r.others)
	}
	return s
}

// loadAverage returns the 1-minute load average, "" if unknown.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return ""
	}
	return f[0]
}

// revision describes the procpool source the run measured: the Git commit
// of the current directory, "-dirty" if the tree has changes.
func revision() string {
	out, err := exec.Command("git", "describe", "--always", "--dirty", "--abbrev=12").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

// get returns the value of system on workload, if it was measured.
func (r *report) get(workload, system string) (float64, bool) {
	for _, m := range r.ms {
		if m.workload == workload && m.system == system && m.err == "" {
			return m.value, true
		}
	}
	return 0, false
}

// ratio returns m's value divided by procpool's on the same workload.
func (r *report) ratio(m measurement) (float64, bool) {
	if m.err != "" {
		return 0, false
	}
	base, ok := r.get(m.workload, "procpool")
	if !ok || base == 0 {
		return 0, false
	}
	return m.value / base, true
}

func fmtValue(v float64) string {
	switch a := math.Abs(v); {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return strconv.FormatFloat(v, 'g', -1, 64)
	case a >= 1000:
		return thousands(int64(math.Round(v)))
	case a >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case a >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	default:
		return strconv.FormatFloat(v, 'g', 3, 64)
	}
}

func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func fmtRatio(r float64) string {
	switch {
	case r >= 100:
		return strconv.FormatFloat(r, 'f', 0, 64) + "×"
	case r >= 0.1:
		return strconv.FormatFloat(r, 'f', 2, 64) + "×"
	default:
		return strconv.FormatFloat(r, 'g', 2, 64) + "×"
	}
}

// rows returns the table's rows: workload, system, figure, unit, ratio.
func (r *report) rows() [][5]string {
	var rows [][5]string
	for _, w := range workloads {
		for _, s := range w.systems {
			for _, m := range r.ms {
				if m.workload != w.name || m.system != s {
					continue
				}
				row := [5]string{m.workload, m.system, "", m.unit, "—"}
				if m.err != "" {
					row[2] = "n/a: " + m.err
				} else {
					row[2] = fmtValue(m.value)
				}
				if q, ok := r.ratio(m); ok {
					row[4] = fmtRatio(q)
				}
				rows = append(rows, row)
			}
		}
	}
	return rows
}

func (r *report) writeTable(out io.Writer) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "workload\tsystem\tfigure\tunit\t× procpool\t")
	for _, row := range r.rows() {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t\n", row[0], row[1], row[2], row[3], row[4])
	}
	tw.Flush()
	fmt.Fprintln(out, "(lower is better for µs, ms, s and MB; higher for /s and x)")
}

// writeJSON prints one object per measurement. Measurements that failed
// have no value and go to standard error instead.
func (r *report) writeJSON(out io.Writer) {
	type rec struct {
		Workload string  `json:"workload"`
		System   string  `json:"system"`
		Value    float64 `json:"value"`
		Unit     string  `json:"unit"`
	}
	enc := json.NewEncoder(out)
	enc.SetEscapeHTML(false)
	for _, w := range workloads {
		for _, s := range w.systems {
			for _, m := range r.ms {
				if m.workload != w.name || m.system != s {
					continue
				}
				if m.err != "" {
					progress("no figure for %s %s: %s", m.workload, m.system, m.err)
					continue
				}
				enc.Encode(rec{m.workload, m.system, m.value, m.unit})
			}
		}
	}
}

// A target is one of the performance goals the harness checks.
type target struct {
	name string
	// check returns whether the goal is met and the figures that say so;
	// ok is false when a figure it needs is missing.
	check func(r *report) (pass bool, detail string, ok bool)
}

// relTarget is "procpool's figure on workload <op> factor × system's".
func relTarget(workload, system, op string, factor float64, label string) target {
	return target{
		name: fmt.Sprintf("%s: procpool %s %s %s", workload, op, label, system),
		check: func(r *report) (bool, string, bool) {
			pv, ok1 := r.get(workload, "procpool")
			sv, ok2 := r.get(workload, system)
			if !ok1 || !ok2 {
				return false, "", false
			}
			limit := factor * sv
			unit := unitOf(workload)
			pass := pv <= limit
			if op == "≥" {
				pass = pv >= limit
			}
			return pass, fmt.Sprintf("procpool %s %s, %s %s %s, bound %s %s (procpool = %s %s)",
				fmtValue(pv), unit, system, fmtValue(sv), unit, fmtValue(limit), unit, fmtRatio(pv/sv), system), true
		},
	}
}

var targets = []target{
	relTarget("apply-latency", "pipe-limit", "≤", 2.5, "2.5×"),
	relTarget("apply-latency", "python-pool", "≤", 0.25, "¼ ×"),
	relTarget("async-throughput", "python-pool", "≥", 10, "10×"),
	relTarget("map-throughput", "python-pool", "≥", 3, "3×"),
	relTarget("payload-throughput", "python-pool", "≥", 3, "3×"),
	relTarget("startup", "python-pool", "≤", 1, "1×"),
	relTarget("process-per-task", "exec-per-task", "≤", 1.0/50, "1/50 ×"),
	{
		name: "cpu-scaling: procpool speedup ≥ 0.85 × N",
		check: func(r *report) (bool, string, bool) {
			v, ok := r.get("cpu-scaling", "procpool")
			if !ok {
				return false, "", false
			}
			n := runtime.NumCPU()
			limit := 0.85 * float64(n)
			return v >= limit, fmt.Sprintf("speedup %.2f x on N = %d, bound %.2f x", v, n, limit), true
		},
	},
	{
		name: "stream-memory: procpool parent's peak RSS < 64 MB",
		check: func(r *report) (bool, string, bool) {
			v, ok := r.get("stream-memory", "procpool")
			if !ok {
				return false, "", false
			}
			return v < 64, fmt.Sprintf("peak %s MB", fmtValue(v)), true
		},
	},
}

// targetLines returns one PASS, FAIL or SKIP line per target whose
// workload ran.
func (r *report) targetLines() []string {
	var lines []string
	ran := map[string]bool{}
	for _, m := range r.ms {
		ran[m.workload] = true
	}
	for _, t := range targets {
		if !ran[strings.SplitN(t.name, ":", 2)[0]] {
			continue
		}
		pass, detail, ok := t.check(r)
		switch {
		case !ok:
			lines = append(lines, "SKIP "+t.name+" (a figure is missing)")
		case pass:
			lines = append(lines, "PASS "+t.name+": "+detail)
		default:
			lines = append(lines, "FAIL "+t.name+": "+detail)
		}
	}
	return lines
}

func (r *report) writeTargets(out io.Writer) {
	for _, l := range r.targetLines() {
		fmt.Fprintln(out, l)
	}
}

// machine describes the machine the run measured.
func (r *report) machine() string {
	model := "unknown CPU"
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	kernel := runtime.GOOS
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel += " " + strings.TrimSpace(string(b))
	}
	return fmt.Sprintf("%d CPUs (nproc), %s, %s/%s, %s, %s",
		runtime.NumCPU(), model, kernel, runtime.GOARCH, runtime.Version(), r.py.version)
}

// writeMarkdown prints the body of the "## Results" section of
// docs/benchmarks.md.
func (r *report) writeMarkdown(out io.Writer) {
	size := "full"
	if r.quick {
		size = "quick (-quick)"
	}
	fmt.Fprintf(out, "Machine: %s.\n\n", r.machine())
	fmt.Fprintf(out, "Run on %s at commit %s, %s size, %.0f s in all; %s.\n\n",
		time.Now().UTC().Format("2006-01-02"), revision(), size, r.elapsed.Seconds(), r.quietness())
	fmt.Fprintf(out, "Command: `go run ./bench %s`\n\n", strings.Join(r.args, " "))
	fmt.Fprintln(out, "| workload | system | figure | unit | × procpool |")
	fmt.Fprintln(out, "|---|---|--:|---|--:|")
	for _, row := range r.rows() {
		fmt.Fprintf(out, "| %s | %s | %s | %s | %s |\n", row[0], row[1], strings.ReplaceAll(row[2], "|", `\|`), row[3], row[4])
	}
	fmt.Fprintln(out)
	fmt.Fprintln(out, "Targets (figures from the same run):")
	fmt.Fprintln(out)
	fmt.Fprintln(out, "```")
	r.writeTargets(out)
	fmt.Fprintln(out, "```")
	var notes []string
	for _, m := range r.ms {
		if m.note != "" && m.err == "" {
			notes = append(notes, fmt.Sprintf("- %s %s: %s", m.workload, m.system, m.note))
		}
	}
	if len(notes) > 0 {
		fmt.Fprintln(out)
		fmt.Fprintln(out, "Details:")
		fmt.Fprintln(out)
		for _, n := range notes {
			fmt.Fprintln(out, n)
		}
	}
	if r.chart != "" {
		src := r.chart
		if filepath.Base(filepath.Dir(src)) == "docs" {
			src = filepath.Base(src)
		}
		fmt.Fprintln(out)
		fmt.Fprintf(out, "![procpool benchmarks: one panel per workload, procpool highlighted](%s)\n", src)
	}
}
