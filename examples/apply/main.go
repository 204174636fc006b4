// Command apply compares procpool.Apply (one task at a time) with
// procpool.ApplyAsync (all the workers at once): Python's apply and
// apply_async, from a tutorial on multiprocessing.Pool, in Go.
//
//	go run ./examples/apply [-sleep 200ms]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/procpool/procpool"
	"github.com/procpool/procpool/examples/internal/demo"
)

func main() {
	procpool.Main() // in a pool's worker process: serve tasks, then exit
	sleep := flag.Duration("sleep", 200*time.Millisecond, "how long each task sleeps (Python's example: 3s)")
	flag.Parse()
	fmt.Printf("Each task sleeps %v where the Python original sleeps 3 s (set it with -sleep).\n", *sleep)
	if err := demo.Apply(context.Background(), os.Stdout, *sleep); err != nil {
		fmt.Fprintln(os.Stderr, "apply:", err)
		os.Exit(1)
	}
}
