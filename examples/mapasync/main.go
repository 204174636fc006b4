// Command mapasync compares procpool.Map (waits for every item) with
// procpool.MapAsync (returns a Future at once): Python's map and map_async,
// from a tutorial on multiprocessing.Pool, in Go.
//
//	go run ./examples/mapasync [-sleep 200ms]
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
	if err := demo.MapAsync(context.Background(), os.Stdout, *sleep); err != nil {
		fmt.Fprintln(os.Stderr, "mapasync:", err)
		os.Exit(1)
	}
}
