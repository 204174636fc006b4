// Command callback post-processes each task's result in the parent with
// procpool.Callback: Python's apply_async(..., callback=func), from a
// tutorial on multiprocessing.Pool, in Go.
//
//	go run ./examples/callback
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/procpool/procpool"
	"github.com/procpool/procpool/examples/internal/demo"
)

func main() {
	procpool.Main() // in a pool's worker process: serve tasks, then exit
	if err := demo.Callback(context.Background(), os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "callback:", err)
		os.Exit(1)
	}
}
