// Command processes compares starting one process per task with a pool of
// reusable worker processes: the first example of a tutorial on Python's
// multiprocessing.Pool, in Go.
//
//	go run ./examples/processes [-sleep 200ms]
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
	procpool.Main()  // in a pool's worker process: serve tasks, then exit
	demo.ChildMain() // in a one-off child of the loop: print, sleep, exit
	sleep := flag.Duration("sleep", 200*time.Millisecond, "how long each task sleeps (Python's example: 1s)")
	flag.Parse()
	fmt.Printf("Each task sleeps %v where the Python original sleeps 1 s (set it with -sleep).\n", *sleep)
	if err := demo.Processes(context.Background(), os.Stdout, *sleep); err != nil {
		fmt.Fprintln(os.Stderr, "processes:", err)
		os.Exit(1)
	}
}
