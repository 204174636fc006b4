//go:build unix

package procpool_test

import (
	"context"
	"os"
	"testing"

	"github.com/procpool/procpool"
)

// isWorkerAtInit is computed in every process of the test binary before
// TestMain calls procpool.Main: in a worker, while the marker is still in
// the environment.
var isWorkerAtInit = procpool.IsWorker()

// isWorker returns what procpool.IsWorker said in the process that runs
// it, at package initialization and now (after Main).
var isWorker = procpool.Register("isWorker", func(_ context.Context, _ int) ([2]bool, error) {
	return [2]bool{isWorkerAtInit, procpool.IsWorker()}, nil
})

func TestIsWorker(t *testing.T) {
	if isWorkerAtInit || procpool.IsWorker() {
		t.Fatalf("in the parent: IsWorker at init %v, now %v; want false, false", isWorkerAtInit, procpool.IsWorker())
	}
	ctx := testCtx(t)

	p := newPool(t, procpool.WithProcesses(1))
	got, err := procpool.Apply(ctx, p, isWorker, 0)
	if err != nil || got != [2]bool{true, true} {
		t.Fatalf("in a worker: IsWorker at init, after Main = %v, %v; want [true true]", got, err)
	}
	p.Close()

	// A worker started by WithCommand is a worker too.
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	pc := newPool(t, procpool.WithProcesses(1), procpool.WithCommand(exe))
	got, err = procpool.Apply(ctx, pc, isWorker, 0)
	if err != nil || got != [2]bool{true, true} {
		t.Fatalf("in a WithCommand worker: IsWorker at init, after Main = %v, %v; want [true true]", got, err)
	}
	pc.Close()

	// In-process workers are goroutines of the parent.
	pi := newPool(t, procpool.WithProcesses(1), procpool.WithInProcess())
	got, err = procpool.Apply(ctx, pi, isWorker, 0)
	if err != nil || got != [2]bool{false, false} {
		t.Fatalf("in an in-process worker: IsWorker at init, after Main = %v, %v; want [false false]", got, err)
	}
}
