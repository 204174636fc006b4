// Command progress shows a terminal progress bar for a Map: procpool's
// OnProgress feeds github.com/schollz/progressbar, a library this example
// uses and the procpool package does not.
//
//	go run ./examples/progress [-n 3000] [-work 2ms]
package main

import (
	"context"
	"flag"
	"fmt"
	"math"
	"os"
	"time"

	"github.com/procpool/procpool"
	"github.com/schollz/progressbar/v3"
)

// Simulate does about d of CPU work and returns a number that depends on x.
var Simulate = procpool.Register("simulate", func(_ context.Context, a [2]int64) (float64, error) {
	x, d := a[0], time.Duration(a[1])
	sum := 0.0
	for start := time.Now(); time.Since(start) < d; {
		for i := range 1000 {
			sum += math.Sqrt(float64(x*1000 + int64(i)))
		}
	}
	return sum, nil
})

func main() {
	procpool.Main() // in a pool's worker process: serve tasks, then exit
	n := flag.Int("n", 3000, "how many items")
	work := flag.Duration("work", 2*time.Millisecond, "CPU time per item")
	flag.Parse()

	ctx := context.Background()
	p, err := procpool.New()
	if err != nil {
		fmt.Fprintln(os.Stderr, "progress:", err)
		os.Exit(1)
	}
	defer p.Close()

	items := make([][2]int64, *n)
	for i := range items {
		items[i] = [2]int64{int64(i), int64(*work)}
	}
	bar := progressbar.Default(int64(*n), "simulating")
	failed := 0
	// OnProgress runs on the pool's callback goroutine, at most every
	// 50 ms and once at the end, before Map returns.
	_, err = procpool.Map(ctx, p, Simulate, items, procpool.ChunkSize(20),
		procpool.OnProgress(func(pr procpool.Progress) {
			_ = bar.Set(pr.Done)
			failed = pr.Failed
		}, 50*time.Millisecond))
	if err != nil {
		fmt.Fprintln(os.Stderr, "progress:", err)
		os.Exit(1)
	}
	fmt.Printf("%d items on %d workers, %d failed\n", *n, len(p.Stats().Workers), failed)
}
