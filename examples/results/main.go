// Command results collects the values tasks return, from procpool.ApplyAsync
// (Futures and Get) and from procpool.Map (in input order): the tutorial's
// examples on results of a multiprocessing.Pool, in Go.
//
//	go run ./examples/results [-sleep 200ms]
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
	sleep := flag.Duration("sleep", 200*time.Millisecond, "how long each task sleeps (Python's example: 1s)")
	flag.Parse()
	fmt.Printf("Each task sleeps %v where the Python original sleeps 1 s (set it with -sleep).\n", *sleep)
	if err := demo.Results(context.Background(), os.Stdout, *sleep); err != nil {
		fmt.Fprintln(os.Stderr, "results:", err)
		os.Exit(1)
	}
}
