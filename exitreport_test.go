//go:build unix

package procpool_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/procpool/procpool"
	"github.com/procpool/procpool/internal/crashtest"
)

var (
	// cgoSegfault crashes the worker in C code (see internal/crashtest).
	cgoSegfault = procpool.Register("cgoSegfault", func(_ context.Context, _ int) (int, error) {
		crashtest.Segfault()
		return 0, nil
	})

	// selfSignal sends the worker the given signal, then waits for it to
	// take effect.
	selfSignal = procpool.Register("selfSignal", func(_ context.Context, sig int) (int, error) {
		if err := syscall.Kill(os.Getpid(), syscall.Signal(sig)); err != nil {
			return 0, err
		}
		time.Sleep(time.Hour)
		return 0, nil
	})

	// markThenSleep creates the file at path, then sleeps for an hour: once
	// the file exists the task is running.
	markThenSleep = procpool.Register("markThenSleep", func(_ context.Context, path string) (int, error) {
		if err := os.WriteFile(path, nil, 0o600); err != nil {
			return 0, err
		}
		time.Sleep(time.Hour)
		return 0, nil
	})

	// printErr writes s to the worker's standard error as it is.
	printErr = procpool.Register("printErr", func(_ context.Context, s string) (int, error) {
		return os.Stderr.WriteString(s)
	})

	// heldStderr starts a grandchild that leaves the worker's group and
	// session and keeps the worker's standard error open, writes its pid to
	// path, then exits the worker with status 3.
	//
	// It exits only once the grandchild leads a session of its own: before
	// its setsid, the grandchild is still in the worker's group, and the
	// group kill that follows the worker's exit would take it too.
	heldStderr = procpool.Register("heldStderr", func(_ context.Context, path string) (int, error) {
		cmd := exec.Command("sh", "-c", "setsid sleep 1000 </dev/null >/dev/null & echo $!")
		cmd.Stderr = os.Stderr // the grandchild inherits it
		out, err := cmd.Output()
		if err != nil {
			return 0, err
		}
		pid := strings.TrimSpace(string(out))
		for !leadsSession(pid) {
			time.Sleep(time.Millisecond)
		}
		if err := os.WriteFile(path, []byte(pid), 0o600); err != nil {
			return 0, err
		}
		fmt.Fprintln(os.Stderr, "exiting with a grandchild holding stderr")
		os.Exit(3)
		return 0, nil
	})
)

// leadsSession reports whether the process pid (in decimal) leads a session,
// as /proc/PID/stat's session field says.
func leadsSession(pid string) bool {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return false
	}
	// After the command: state, ppid, pgrp, session.
	f := strings.Fields(string(b[i+1:]))
	return len(f) > 3 && f[3] == pid
}

// checkRuntimeSignal checks the error of a task whose worker the Go runtime
// ended with exit status 2 after a fatal SIGSEGV, and what the parent's
// standard error got.
func checkRuntimeSignal(t *testing.T, err error, parentStderr string, want ...string) {
	t.Helper()
	var we *procpool.WorkerExitError
	if !errors.As(err, &we) {
		t.Fatalf("task whose worker got SIGSEGV: %v", err)
	}
	if we.Reason != procpool.ReasonCrashed || we.ExitCode != 2 || we.Signal != syscall.SIGSEGV {
		t.Errorf("reason %q, exit code %d, signal %v; want %q, 2, SIGSEGV", we.Reason, we.ExitCode, we.Signal, procpool.ReasonCrashed)
	}
	if msg := err.Error(); !strings.Contains(msg, "crashed by SIGSEGV (reported by the Go runtime, exit status 2)") {
		t.Errorf("message %q does not say that the runtime reported a SIGSEGV", msg)
	}
	if len(we.Stderr) > 8<<10 {
		t.Errorf("Stderr holds %d bytes, want 8 KiB at most", len(we.Stderr))
	}
	for _, s := range want {
		if !strings.Contains(we.Stderr, s) {
			t.Errorf("Stderr lacks %q:\n%s", s, we.Stderr)
		}
		if !strings.Contains(parentStderr, s) {
			t.Errorf("the parent's stderr (WithStderr) lacks %q:\n%s", s, parentStderr)
		}
	}
}

// A SIGSEGV in C code: the Go runtime prints its report and a traceback of
// every goroutine, and exits with status 2. The task's error names the
// signal and carries the end of the worker's stderr, which still reaches
// the parent's.
func TestCgoSegfaultReported(t *testing.T) {
	if !crashtest.Available {
		t.Skip("needs cgo (CGO_ENABLED=0)")
	}
	ctx := testCtx(t)
	var stderr syncBuffer
	p := newPool(t, procpool.WithProcesses(1), procpool.WithStderr(&stderr))
	_, err := procpool.Apply(ctx, p, cgoSegfault, 0)
	checkRuntimeSignal(t, err, stderr.String(), "signal arrived during cgo execution", "crashtest")
	t.Logf("%v\nStderr starts:\n%.300s", err, err.(*procpool.WorkerExitError).Stderr)
	// The pool goes on with a new worker.
	if v, err := procpool.Apply(ctx, p, square, 3); err != nil || v != 9 {
		t.Fatalf("after the crash: %d, %v", v, err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
}

// A SIGSEGV sent by kill(2), which the Go runtime did not cause either: it
// handles the signal, reports it and exits with status 2, as for a crash
// in C code (the worker does not die by the signal).
func TestSentSIGSEGVReported(t *testing.T) {
	ctx := testCtx(t)
	var stderr syncBuffer
	p := newPool(t, procpool.WithProcesses(1), procpool.WithStderr(&stderr))
	_, err := procpool.Apply(ctx, p, selfSignal, int(syscall.SIGSEGV))
	checkRuntimeSignal(t, err, stderr.String(), "SIGSEGV: segmentation violation", "PC=")
}

// A SIGTERM from another process: the worker's handler exits with status
// 143, which is not the pool's doing, and is reported as such, for a task
// that was running and for an idle worker.
func TestSIGTERMFromOutside(t *testing.T) {
	ctx := testCtx(t)
	p := newPool(t, procpool.WithProcesses(1))
	mark := filepath.Join(t.TempDir(), "running")
	fut, err := procpool.ApplyAsync(ctx, p, markThenSleep, mark)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the task to start", func() bool { _, err := os.Stat(mark); return err == nil })
	victim := p.Stats().Workers[0].Pid
	if err := syscall.Kill(victim, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	_, err = fut.Get(ctx)
	var we *procpool.WorkerExitError
	if !errors.As(err, &we) || we.Reason != procpool.ReasonTerminatedOutside || we.Pid != victim ||
		we.ExitCode != 143 || we.Signal != syscall.SIGTERM {
		t.Fatalf("task on a worker SIGTERMed from outside: %#v", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "terminated by SIGTERM from outside the pool") || strings.Contains(msg, "killed") {
		t.Errorf("message: %q", msg)
	}

	// An idle worker: no task fails, the exit is counted as such.
	var idle int
	waitFor(t, "a replacement worker", func() bool {
		ws := p.Stats().Workers
		if len(ws) == 1 && ws[0].Pid != victim {
			idle = ws[0].Pid
			return true
		}
		return false
	})
	if err := syscall.Kill(idle, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the SIGTERMed idle worker's exit to be counted", func() bool {
		return p.Stats().WorkerExits[procpool.ReasonTerminatedOutside] == 2
	})
	if s := p.Stats(); s.WorkerExits[procpool.ReasonCrashed] != 0 || s.WorkerExits[procpool.ReasonSignal] != 0 {
		t.Errorf("exits: %v, want 2 terminated from outside and nothing else", s.WorkerExits)
	}
	if v, err := procpool.Apply(ctx, p, square, 5); err != nil || v != 25 {
		t.Fatalf("after the SIGTERMs: %d, %v", v, err)
	}
}

// A worker program that fails before the handshake, saying why on its
// stderr: the start error quotes it and gives the exit status, and does not
// blame a missing procpool.Main.
func TestStartErrorQuotesStderr(t *testing.T) {
	noOrphans(t)
	var stderr syncBuffer
	_, err := procpool.New(procpool.WithProcesses(1), procpool.WithCommand(os.Args[0]),
		procpool.WithEnv(envMode+"=stderr-exit-3"), procpool.WithStderr(&stderr))
	var se *procpool.StartError
	if !errors.As(err, &se) || !errors.Is(err, procpool.ErrHandshake) {
		t.Fatalf("New with a worker that exits 3: %v", err)
	}
	const said = "loading config.yaml: no such file or directory"
	msg := err.Error()
	if !strings.Contains(msg, "exited with status 3 before the handshake") || !strings.Contains(msg, said) ||
		strings.Contains(msg, "procpool.Main()") {
		t.Errorf("message:\n%s", msg)
	}
	if !strings.Contains(se.Stderr, said) || !strings.Contains(stderr.String(), said) {
		t.Errorf("Stderr %q, the parent's stderr %q; want both to hold %q", se.Stderr, stderr.String(), said)
	}

	// A panic: the message quotes the start of the runtime's report, which
	// says what happened, rather than the end of the traceback.
	_, err = procpool.New(procpool.WithProcesses(1), procpool.WithCommand(os.Args[0]),
		procpool.WithEnv(envMode+"=panic-at-start"), procpool.WithStderr(new(syncBuffer)))
	if !errors.As(err, &se) || se.Signal != 0 {
		t.Fatalf("New with a worker that panics: %v", err)
	}
	msg = err.Error()
	if !strings.Contains(msg, "exited with status 2 before the handshake") ||
		!strings.Contains(msg, "the Go runtime reported:\n\tpanic: no configuration for this host") ||
		strings.Contains(msg, "procpool.Main()") {
		t.Errorf("message:\n%s", msg)
	}
	t.Logf("a worker that panics before the handshake:\n%s", msg)
}

// The hint about procpool.Main comes only with a worker that timed out
// without a word on its stderr.
func TestStartTimeoutHint(t *testing.T) {
	noOrphans(t)
	for _, tc := range []struct {
		mode, said string
		hint       bool
	}{
		{"hang-without-main", "", true},
		{"stderr-hang", "waiting for the database at db:5432", false},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			_, err := procpool.New(procpool.WithProcesses(1), procpool.WithCommand(os.Args[0]),
				procpool.WithEnv(envMode+"="+tc.mode), procpool.WithStartTimeout(300*time.Millisecond),
				procpool.WithStderr(new(syncBuffer)))
			var se *procpool.StartError
			if !errors.As(err, &se) || !errors.Is(err, procpool.ErrHandshake) {
				t.Fatalf("New: %v", err)
			}
			msg := err.Error()
			if !strings.Contains(msg, "no handshake within") {
				t.Errorf("message: %s", msg)
			}
			if got := strings.Contains(msg, "does its main function call procpool.Main() first?"); got != tc.hint {
				t.Errorf("hint given: %v, want %v:\n%s", got, tc.hint, msg)
			}
			if !strings.Contains(se.Stderr, tc.said) || !strings.Contains(msg, tc.said) || tc.said == "" && se.Stderr != "" {
				t.Errorf("Stderr %q; want %q, quoted:\n%s", se.Stderr, tc.said, msg)
			}
		})
	}
}

// Workers get GORACE=atexit_sleep_ms=0 (each Close of a pool under -race
// would otherwise cost a second), unless GORACE is set.
func TestGORACEDefault(t *testing.T) {
	ctx := testCtx(t)
	t.Setenv("GORACE", "") // restored after the test
	os.Unsetenv("GORACE")
	p := newPool(t, procpool.WithProcesses(1))
	if got, err := procpool.Apply(ctx, p, workerEnv, "GORACE"); err != nil || got[1] != "atexit_sleep_ms=0" {
		t.Errorf("worker's GORACE with none set: %q, %v", got[1], err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	const mine = "atexit_sleep_ms=0 halt_on_error=1"
	p = newPool(t, procpool.WithProcesses(1), procpool.WithEnv("GORACE="+mine))
	if got, err := procpool.Apply(ctx, p, workerEnv, "GORACE"); err != nil || got[1] != mine {
		t.Errorf("worker's GORACE with WithEnv(GORACE=%s): %q, %v", mine, got[1], err)
	}
}

// WithOutputPrefix: each line of a worker's stdout and stderr starts with
// its pid, to a writer or to a file; a last line without an end is ended.
func TestOutputPrefix(t *testing.T) {
	ctx := testCtx(t)
	var stdout, stderr syncBuffer
	p := newPool(t, procpool.WithProcesses(1), procpool.WithOutputPrefix(),
		procpool.WithStdout(&stdout), procpool.WithStderr(&stderr))
	w, err := procpool.Apply(ctx, p, pid, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"one\ntw", "o\nthr", "ee"} {
		if _, err := procpool.Apply(ctx, p, printErr, s); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := procpool.Apply(ctx, p, printLine, "hello"); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	pre := "[worker " + strconv.Itoa(w) + "] "
	if got, want := stdout.String(), pre+"hello\n"; got != want {
		t.Errorf("stdout %q, want %q", got, want)
	}
	if got, want := stderr.String(), pre+"one\n"+pre+"two\n"+pre+"three\n"; got != want {
		t.Errorf("stderr %q, want %q", got, want)
	}

	// To a file: the worker's output goes through the pool too.
	r, wf, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	p = newPool(t, procpool.WithProcesses(1), procpool.WithOutputPrefix(), procpool.WithStdout(wf))
	w, err = procpool.Apply(ctx, p, pid, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := procpool.Apply(ctx, p, printLine, "to a file"); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	wf.Close()
	buf := make([]byte, 100)
	n, _ := r.Read(buf)
	if got, want := string(buf[:n]), "[worker "+strconv.Itoa(w)+"] to a file\n"; got != want {
		t.Errorf("stdout file got %q, want %q", got, want)
	}
}

// Without WithOutputPrefix the output is as the worker wrote it.
func TestOutputUnprefixed(t *testing.T) {
	ctx := testCtx(t)
	var stderr syncBuffer
	p := newPool(t, procpool.WithProcesses(1), procpool.WithStderr(&stderr))
	if _, err := procpool.Apply(ctx, p, printErr, "as is"); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if got := stderr.String(); got != "as is" {
		t.Errorf("stderr %q, want %q", got, "as is")
	}
}

// A process a task started that keeps the worker's stderr open (it left the
// worker's group and session, and the worker died without killing it) holds
// nothing up: the task gets its error with the stderr the worker wrote, and
// Close returns.
func TestGrandchildHoldingStderr(t *testing.T) {
	ctx := testCtx(t)
	path := filepath.Join(t.TempDir(), "grandchild")
	var stderr syncBuffer
	p := newPool(t, procpool.WithProcesses(1), procpool.WithStderr(&stderr))
	var err error
	within(t, "the task of a worker whose grandchild holds its stderr", func() {
		_, err = procpool.Apply(ctx, p, heldStderr, path)
	})
	b, rerr := os.ReadFile(path)
	g, _ := strconv.Atoi(string(b))
	if rerr != nil || g <= 0 {
		t.Fatalf("no grandchild pid: %q, %v", b, rerr)
	}
	defer func() {
		syscall.Kill(g, syscall.SIGKILL)
		waitFor(t, "the grandchild to die", func() bool { return !alive(g) })
	}()
	var we *procpool.WorkerExitError
	if !errors.As(err, &we) || we.ExitCode != 3 || !strings.Contains(we.Stderr, "exiting with a grandchild holding stderr") {
		t.Fatalf("task: %v (stderr %q)", err, func() string {
			if we != nil {
				return we.Stderr
			}
			return ""
		}())
	}
	if !alive(g) {
		t.Fatal("the grandchild is gone: the test tested nothing")
	}
	within(t, "Close", func() {
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	})
}
