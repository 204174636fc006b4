//go:build unix

package main

import (
	"bufio"
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

//go:embed python/*.py
var pythonFiles embed.FS

// python runs the Python side of the benchmarks: bench/python/pool_bench.py,
// written from the binary into a temporary directory so that the harness
// runs from any directory.
type python struct {
	path    string // the interpreter, "" if missing
	version string // its version line, or why it is missing
	script  string // the script's path
}

// newPython finds the interpreter and writes the script out. The returned
// function removes the script.
func newPython(interp string) (*python, func()) {
	py := &python{}
	path, err := exec.LookPath(interp)
	if err != nil {
		py.version = interp + " not found"
		progress("%s not found: the Python rows will say so", interp)
		return py, func() {}
	}
	out, err := exec.Command(path, "--version").CombinedOutput()
	if err != nil {
		py.version = fmt.Sprintf("%s does not run: %v", interp, err)
		progress("%s", py.version)
		return py, func() {}
	}
	dir, err := os.MkdirTemp("", "procpool-bench-")
	if err != nil {
		py.version = fmt.Sprintf("cannot write the Python script: %v", err)
		progress("%s", py.version)
		return py, func() {}
	}
	src, err := pythonFiles.ReadFile("python/pool_bench.py")
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, "pool_bench.py"), src, 0o644)
	}
	if err != nil {
		os.RemoveAll(dir)
		py.version = fmt.Sprintf("cannot write the Python script: %v", err)
		progress("%s", py.version)
		return py, func() {}
	}
	py.path = path
	py.version = strings.TrimSpace(string(out))
	py.script = filepath.Join(dir, "pool_bench.py")
	return py, func() { os.RemoveAll(dir) }
}

// pythonSystems lists the systems that each workload's Python run reports,
// so that a missing or failed interpreter still yields a row for each.
var pythonSystems = map[string][]string{
	"apply-latency":      {"python-pool"},
	"async-throughput":   {"python-pool", "python-ppe"},
	"apply-concurrent":   {"python-pool"},
	"map-throughput":     {"python-pool", "python-ppe"},
	"payload-throughput": {"python-pool"},
	"startup":            {"python-pool", "python-pool-spawn"},
	"cpu-scaling":        {"python-pool"},
	"stream-memory":      {"python-pool"},
}

// run runs one workload of the script with key=value arguments
// (alternating names and values in kv) and returns its measurements.
func (py *python) run(workload string, timeout time.Duration, kv ...any) []measurement {
	systems := pythonSystems[workload]
	all := func(why string) []measurement {
		var ms []measurement
		for _, s := range systems {
			ms = append(ms, measurement{workload: workload, system: s, unit: unitOf(workload), err: why})
		}
		return ms
	}
	if py.path == "" {
		return all(py.version)
	}
	args := []string{"-u", py.script, workload}
	for i := 0; i+1 < len(kv); i += 2 {
		args = append(args, fmt.Sprintf("%v=%v", kv[i], kv[i+1]))
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, py.path, args...)
	cmd.Dir = filepath.Dir(py.script)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()

	got := map[string]measurement{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var rec map[string]any
		if json.Unmarshal(sc.Bytes(), &rec) != nil {
			continue
		}
		system, _ := rec["system"].(string)
		value, okv := rec["value"].(float64)
		if system == "" || !okv {
			continue
		}
		m := ok(workload, system, value, "")
		if unit, _ := rec["unit"].(string); unit != m.unit {
			m = measurement{workload: workload, system: system, unit: m.unit,
				err: fmt.Sprintf("the script reported %q, not %q", unit, m.unit)}
		}
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
		got[system] = m
	}

	var ms []measurement
	for _, s := range systems {
		m, found := got[s]
		if !found {
			why := "no result from the Python script"
			if err != nil {
				why = fmt.Sprintf("python3 failed: %v", err)
				if tail := lastLine(stderr.String()); tail != "" {
					why += ": " + tail
				}
			}
			m = measurement{workload: workload, system: s, unit: unitOf(workload), err: why}
			progress("%s %s: %s", workload, s, why)
		}
		ms = append(ms, m)
	}
	return ms
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}
