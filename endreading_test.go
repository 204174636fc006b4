//go:build linux

package procpool

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/procpool/procpool/internal/backend/process"
	"github.com/procpool/procpool/internal/wire"
)

// holdArg tells holdResults what to do.
type holdArg struct {
	Path string // where to write the grandchild's pid
	Cut  bool   // write the start of a frame that never ends before exiting
}

// holdResults hands the worker's result pipe to a grandchild in a session
// of its own, writes the grandchild's pid to a.Path, and exits the worker
// with status 3.
var holdResults = Register("internal.holdResults", func(_ context.Context, a holdArg) (int, error) {
	fd, err := syscall.Dup(process.FDResults)
	if err != nil {
		return 0, err
	}
	f := os.NewFile(uintptr(fd), "results")
	// The grandchild leaves the worker's process group before Start
	// returns (Setsid runs between fork and exec, and Start waits for the
	// exec), so the parent's kill of the worker's group cannot reach it.
	// A shell's "setsid cmd &" would race that kill.
	cmd := exec.Command("sleep", "1000")
	cmd.ExtraFiles = []*os.File{f}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	f.Close()
	if err != nil {
		return 0, err
	}
	if err := os.WriteFile(a.Path, []byte(strconv.Itoa(cmd.Process.Pid)), 0o600); err != nil {
		return 0, err
	}
	if a.Cut {
		// A result frame of 1000 bytes, of which only the header arrives.
		frame, _ := wire.BeginFrame(nil, wire.KindResult, 1)
		frame[0] = 0xe8
		frame[1] = 0x03
		syscall.Write(process.FDResults, frame)
	}
	os.Exit(3)
	return 0, nil
})

// running reports whether process pid exists and is not a zombie.
func running(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i < 0 || !strings.HasPrefix(string(b[i+1:]), " Z")
}

// The reading of a dead worker's result pipe ends even while a process that
// cannot be killed holds the pipe (here, one that the parent is told to
// leave alone): at the End frame, or, when the worker died in the middle of
// a frame, at the first read that finds the pipe empty.
func TestReadingEndsWhileHolderLives(t *testing.T) {
	for _, cut := range []bool{false, true} {
		t.Run(map[bool]string{false: "between frames", true: "inside a frame"}[cut], func(t *testing.T) {
			process.KillPipeHolders = false
			defer func() { process.KillPipeHolders = true }()
			ctx := hangCheck(t)
			path := filepath.Join(t.TempDir(), "pid")
			p, err := New(WithProcesses(1))
			if err != nil {
				t.Fatal(err)
			}
			defer p.Terminate()
			defer func() { // first: a failure must not leave the holder, nor Terminate waiting for it
				if b, _ := os.ReadFile(path); len(b) > 0 {
					g, _ := strconv.Atoi(string(b))
					syscall.Kill(g, syscall.SIGKILL)
				}
			}()
			done := make(chan error, 1)
			go func() {
				_, err := Apply(ctx, p, holdResults, holdArg{Path: path, Cut: cut})
				done <- err
			}()
			select {
			case err = <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("the task hangs")
			}
			b, _ := os.ReadFile(path)
			g, _ := strconv.Atoi(string(b))
			if g <= 0 {
				t.Fatalf("no grandchild pid: %q; task: %v", b, err)
			}
			var we *WorkerExitError
			if !errors.As(err, &we) || we.ExitCode != 3 {
				t.Fatalf("task whose worker exited with status 3: %v", err)
			}
			if !running(g) {
				t.Fatal("the grandchild holding the pipe is gone: this tested nothing")
			}
			if v, err := Apply(ctx, p, echoBytes, []byte("after")); err != nil || string(v) != "after" {
				t.Fatalf("task after the worker died: %q, %v", v, err)
			}
			closed := make(chan error, 1)
			go func() { closed <- p.Close() }()
			select {
			case <-closed:
			case <-time.After(30 * time.Second):
				t.Fatal("Close hangs")
			}
		})
	}
}
