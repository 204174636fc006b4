// Package testenv finds the programs that tests of foreign workers need
// (python3, node, prlimit). A test that lacks one skips, saying why; under
// REQUIRE_WORKER_TOOLS=1, which .ci/run sets after installing them, it
// fails instead, so that CI cannot pass by skipping.
package testenv

import (
	"bytes"
	"os"
	"os/exec"
	"sync"
	"testing"
)

// RequireEnv is the variable that turns a missing program into a failure.
// It has no PROCPOOL_ prefix: workers strip those from what their tasks
// start, and tests check that they do.
const RequireEnv = "REQUIRE_WORKER_TOOLS"

// LookPath returns the path of program name, or ends the test: a skip
// that says what is not tested, or a failure under RequireEnv=1.
func LookPath(t testing.TB, name, what string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if os.Getenv(RequireEnv) == "1" {
		t.Fatalf("%s is not installed (%v), and %s=1 requires it: %s", name, err, RequireEnv, what)
	}
	t.Skipf("%s is not installed: %s is not tested (%v)", name, what, err)
	return ""
}

// Buffer is a bytes.Buffer safe for concurrent use: a pool's stdout or
// stderr in a test, written by the pool's copying goroutines and read by
// the test.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written so far.
func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
