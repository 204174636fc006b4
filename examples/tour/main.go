// Command tour walks through procpool's ports of a tutorial on Python's
// multiprocessing.Pool, in the tutorial's order: a process per task versus
// a pool, Apply and ApplyAsync, Map and MapAsync, collecting results, and
// callbacks; it then points to the Ctrl-C example, which needs a keyboard.
// Each part is also a program of its own under examples/.
//
//	go run ./examples/tour [-sleep 200ms]
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
	demo.ChildMain() // in a one-off child of the first part: print, sleep, exit
	sleep := flag.Duration("sleep", 200*time.Millisecond, "how long each task sleeps (the Python originals: 1s or 3s)")
	flag.Parse()

	ctx := context.Background()
	w := os.Stdout
	fmt.Printf("A tour of procpool, after a tutorial on Python's multiprocessing.Pool.\n"+
		"Each line a task prints comes from its worker process, with that process's pid.\n"+
		"Tasks sleep %v where the Python originals sleep 1 s or 3 s (set it with -sleep).\n", *sleep)
	parts := []struct {
		title, dir string
		run        func() error
	}{
		{"One process per task, or a pool", "processes", func() error { return demo.Processes(ctx, w, *sleep) }},
		{"Apply and ApplyAsync", "apply", func() error { return demo.Apply(ctx, w, *sleep) }},
		{"Map and MapAsync", "mapasync", func() error { return demo.MapAsync(ctx, w, *sleep) }},
		{"Collecting results: Futures and Map", "results", func() error { return demo.Results(ctx, w, *sleep) }},
		{"Callbacks in the parent", "callback", func() error { return demo.Callback(ctx, w) }},
	}
	start := time.Now()
	for i, part := range parts {
		fmt.Printf("\n== %d. %s (go run ./examples/%s) ==\n", i+1, part.title, part.dir)
		if err := part.run(); err != nil {
			fmt.Fprintf(os.Stderr, "tour: %s: %v\n", part.dir, err)
			os.Exit(1)
		}
	}
	fmt.Printf("\n== 6. Ctrl-C (go run ./examples/signals) ==\n" +
		"Not run here, since it waits for you to press Ctrl-C. signal.NotifyContext turns Ctrl-C\n" +
		"into a cancelled context; the tasks submitted with it are cancelled (their workers stopped),\n" +
		"and the pool is shut down with Shutdown. Workers ignore SIGINT themselves: the parent decides.\n")
	fmt.Printf("\nThe tour took %v.\n", time.Since(start).Round(10*time.Millisecond))
}
