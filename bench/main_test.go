//go:build unix

package main

import (
	"os"
	"testing"

	"github.com/procpool/procpool"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	procpool.Main() // the pools re-run this test binary as their workers
	if os.Getenv("GORACE") == "" {
		// Under -race a Go program sleeps a second at exit by default.
		os.Setenv("GORACE", "atexit_sleep_ms=0")
	}
	goleak.VerifyTestMain(m)
}
