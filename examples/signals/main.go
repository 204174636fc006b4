// Command signals shows the Ctrl-C pattern for a pool: Ctrl-C cancels a
// context, the context cancels the tasks submitted with it, and the pool is
// shut down with Shutdown. The workers ignore SIGINT: the parent decides.
// Without Ctrl-C it runs a few tasks and ends by itself.
//
//	go run ./examples/signals [-sleep 1s] [-tasks 6]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"time"

	"github.com/procpool/procpool"
	"github.com/procpool/procpool/examples/internal/demo"
)

func main() {
	procpool.Main() // in a pool's worker process: serve tasks, then exit
	sleep := flag.Duration("sleep", time.Second, "how long each task sleeps")
	tasks := flag.Int("tasks", 6, "how many tasks to run")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	// After the first Ctrl-C, give SIGINT its default action back: a second
	// one ends the program at once (the workers follow their parent).
	context.AfterFunc(ctx, stop)

	if err := demo.Signals(ctx, os.Stdout, *sleep, *tasks); err != nil {
		fmt.Fprintln(os.Stderr, "signals:", err)
		os.Exit(1)
	}
}
