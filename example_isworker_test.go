//go:build unix

package procpool_test

import (
	"context"
	"fmt"

	"github.com/procpool/procpool"
)

// parentOnly stands for a side effect that must happen once, in the parent:
// opening a log file, listening on a port. Init functions run in every
// worker too, so this one guards it with IsWorker.
var parentOnly bool

func init() {
	if !procpool.IsWorker() {
		parentOnly = true
	}
}

// sideEffectInWorker reports whether the worker that runs it did the
// parent-only side effect, and whether it is a worker.
var sideEffectInWorker = procpool.Register("example.sideEffectInWorker", func(_ context.Context, _ int) ([2]bool, error) {
	return [2]bool{parentOnly, procpool.IsWorker()}, nil
})

func ExampleIsWorker() {
	procpool.Main() // first in main; see ExampleMain

	ctx := context.Background()
	p, err := procpool.New(procpool.WithProcesses(1))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Close()

	w, err := procpool.Apply(ctx, p, sideEffectInWorker, 0)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("parent: side effect", parentOnly, "IsWorker", procpool.IsWorker())
	fmt.Println("worker: side effect", w[0], "IsWorker", w[1])
	// Output:
	// parent: side effect true IsWorker false
	// worker: side effect false IsWorker true
}
