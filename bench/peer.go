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
	"strings"
	"time"
)

// A peer is a Go program of the harness's own, built into a temporary
// directory when the harness starts and run as a child once per workload;
// it prints its measurements as JSON objects, one per line. There are two:
// the go-plugin peer (bench/goplugin, a module of its own, so that procpool
// does not depend on go-plugin) and clusterbench (bench/clusterbench, a
// package of this module, so that the harness, whose re-executed copies are
// the workers of the other workloads, does not link NATS).
type peer struct {
	what string // what it is, for messages: "the go-plugin peer"
	bin  string // the built binary, "" if there is none
	why  string // why there is none
}

// peerBuildTimeout bounds a peer's build, module downloads included.
const peerBuildTimeout = 5 * time.Minute

// needs reports whether a run of the selected workloads (every workload when
// selected is empty) runs any of names.
func needs(selected map[string]bool, names []string) bool {
	if len(selected) == 0 {
		return true
	}
	for _, w := range names {
		if selected[w] {
			return true
		}
	}
	return false
}

// buildPeer builds the main package in directory rel of bench (beside this
// file's source when the harness was built from the repository, else under
// the current directory) with env added to the environment, and returns it
// with the function that removes the build. It blocks for the build
// (seconds from the build cache, minutes on a first build that downloads
// modules). A failure is not fatal: the peer's why says what it was, and
// its rows will say so, as the Python rows do when python3 is missing.
func buildPeer(what, rel string, env ...string) (*peer, func()) {
	fail := func(why string) (*peer, func()) {
		progress("%s: %s: its rows will say so", what, why)
		return &peer{what: what, why: why}, func() {}
	}
	src, err := peerSource(rel)
	if err != nil {
		return fail(err.Error())
	}
	gotool, err := exec.LookPath("go")
	if err != nil {
		return fail("no go command to build it: " + err.Error())
	}
	dir, err := os.MkdirTemp("", "procpool-bench-peer-")
	if err != nil {
		return fail("cannot make its build directory: " + err.Error())
	}
	progress("building %s (%s) ...", what, src)
	ctx, cancel := context.WithTimeout(context.Background(), peerBuildTimeout)
	defer cancel()
	bin := filepath.Join(dir, filepath.Base(rel))
	cmd := exec.CommandContext(ctx, gotool, "build", "-buildvcs=false", "-o", bin, ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		why := "go build failed: " + err.Error()
		if tail := lastLine(string(out)); tail != "" {
			why += ": " + tail
		}
		return fail(why)
	}
	return &peer{what: what, bin: bin}, func() { os.RemoveAll(dir) }
}

// peerSource returns the absolute path of directory rel of bench.
func peerSource(rel string) (string, error) {
	var tried []string
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		tried = append(tried, filepath.Join(filepath.Dir(file), rel))
	}
	tried = append(tried, filepath.Join("bench", rel))
	for _, d := range tried {
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			return filepath.Abs(d)
		}
	}
	return "", fmt.Errorf("its source is not at %s", strings.Join(tried, " or "))
}

// records runs the peer with args, bounded by timeout, and returns the JSON
// objects it printed (lines that are not one are skipped), or why there
// are none: no binary, a failed run (with the last line of its standard
// error) or a run past timeout.
func (g *peer) records(timeout time.Duration, args ...string) ([]map[string]any, string) {
	if g.bin == "" {
		return nil, g.why
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, g.bin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		why := g.what + " failed: " + err.Error()
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			why = fmt.Sprintf("%s took over %v", g.what, timeout)
		}
		if tail := lastLine(stderr.String()); tail != "" {
			why += ": " + tail
		}
		return nil, why
	}
	var recs []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var rec map[string]any
		if json.Unmarshal(sc.Bytes(), &rec) == nil {
			recs = append(recs, rec)
		}
	}
	return recs, ""
}
