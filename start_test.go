//go:build unix

package procpool_test

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/procpool/procpool"
)

// Workers killed from outside while they start (the OOM killer, a chaos
// tool) are replaced without spending the restart budget: more kills than
// the budget allows leave the pool working, and the log says what happened.
func TestKilledDuringStartIsReplaced(t *testing.T) {
	ctx := testCtx(t)
	marker := filepath.Join(t.TempDir(), "hang")
	var log syncBuffer
	const budget = 1
	p := newPool(t, procpool.WithProcesses(1), procpool.WithInitializer(initHangIfFile, marker),
		procpool.WithRestartLimit(budget, time.Minute), procpool.WithLogger(slog.New(slog.NewTextHandler(&log, nil))))
	if v, err := procpool.Apply(ctx, p, square, 2); err != nil || v != 4 {
		t.Fatalf("before: %d, %v", v, err)
	}
	// From now on a new worker hangs in its initializer until killed.
	if err := os.WriteFile(marker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	killed := []int{p.Stats().Workers[0].Pid}
	syscall.Kill(killed[0], syscall.SIGKILL)
	waitFor(t, "the killed worker to leave service", func() bool { return len(p.Stats().Workers) == 0 })
	// A task that waits in the queue through the kills: it fails at once if
	// the pool breaks.
	queued, err := procpool.ApplyAsync(ctx, p, square, 3)
	if err != nil {
		t.Fatal(err)
	}
	const startKills = budget + 3
	for len(killed) <= startKills {
		var pid int
		waitFor(t, "a replacement worker", func() bool {
			if queued.Ready() {
				_, err := queued.Get(ctx)
				t.Fatalf("after %d kills in start-up, the queued task ended: %v", len(killed)-1, err)
			}
			for _, k := range children() {
				if !slices.Contains(killed, k) {
					pid = k
					return true
				}
			}
			return false
		})
		if len(killed) == startKills {
			os.Remove(marker) // the next one starts
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatalf("kill %d: %v", pid, err)
		}
		killed = append(killed, pid)
	}
	if v, err := queued.Get(ctx); err != nil || v != 9 {
		t.Fatalf("the task queued while %d workers were killed in their start: %d, %v", startKills, v, err)
	}
	if v, err := procpool.Apply(ctx, p, square, 4); err != nil || v != 16 {
		t.Fatalf("after %d workers were killed in their start: %d, %v; want the pool working", startKills, v, err)
	}
	if s := p.Stats(); s.WorkerExits[procpool.ReasonStart] != startKills {
		t.Errorf("stats: exits %v, want %d failed starts", s.WorkerExits, startKills)
	}
	out := log.String()
	if n := strings.Count(out, "killed by signal SIGKILL during start-up"); n != startKills {
		t.Errorf("the log says %d times that a worker was killed during start-up, want %d:\n%s", n, startKills, out)
	}
	if strings.Contains(out, "procpool.Main()") || strings.Contains(out, "killed by killed") {
		t.Errorf("the log blames the program:\n%s", out)
	}
}

// A worker that cannot set itself up exits with a status and a message on
// its stderr; the start error says so, without blaming a missing
// procpool.Main. A clean exit before the handshake does get the hint (see
// TestProgramWithoutMain).
func TestStartFailureMessages(t *testing.T) {
	noOrphans(t)
	var stderr syncBuffer
	// 64 MiB of address space is far too little for a Go worker.
	_, err := procpool.New(procpool.WithProcesses(1), procpool.WithRlimit(syscall.RLIMIT_AS, 64<<20, 64<<20),
		procpool.WithStderr(&stderr))
	var se *procpool.StartError
	// Under -race the worker carries the race detector's runtime, which
	// maps memory for each thread: when the Go runtime starts a thread
	// between the rlimit and the worker's exit (strace shows one), that
	// runtime dies of the limit first, with status 66 ("ThreadSanitizer:
	// out of memory"). Whether it does varies with the build of the test
	// binary: most runs of some builds, no run of others. The same binary
	// is linked with cgo, so the thread may instead fail in
	// pthread_create, which aborts: the Go runtime reports SIGABRT and
	// exits with status 2 (seen once in CI, in a few thousand runs).
	if !errors.As(err, &se) || !errors.Is(err, procpool.ErrHandshake) || strings.Contains(err.Error(), "procpool.Main()") {
		t.Fatalf("a worker with too little address space: %v", err)
	}
	msg := err.Error()
	switch {
	case se.Signal == 0 && strings.Contains(msg, "exited with status 2 before the handshake"):
	case raceDetector && se.Signal == 0 && strings.Contains(msg, "exited with status 66 before the handshake"):
	case raceDetector && se.Signal == syscall.SIGABRT && strings.Contains(stderr.String(), "runtime/cgo: pthread_create failed") &&
		strings.Contains(msg, "crashed by SIGABRT before the handshake (reported by the Go runtime, exit status 2)"):
	default:
		t.Fatalf("a worker with too little address space: %v", err)
	}
	if stderr.String() == "" {
		t.Error("the worker said nothing on its stderr")
	}
}
