package demo

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/procpool/procpool"
)

// MapAsync runs the tutorial's map versus map_async example on a pool of 2
// workers: each item of [1, 2, 3, 4, 5, 6] goes to a task that prints the
// worker's pid and the item, then sleeps. procpool.Map blocks until every
// item is done; procpool.MapAsync returns at once with a Future of the
// whole result. Python sleeps 3 s in each task; here each sleeps sleep.
func MapAsync(ctx context.Context, w io.Writer, sleep time.Duration) error {
	out, workers := outputs(w)
	items := []int{1, 2, 3, 4, 5, 6}
	p, err := procpool.New(
		procpool.WithProcesses(2),
		procpool.WithStdout(workers),
		procpool.WithInitializer(setNap, sleep), // each task sleeps this long
	)
	if err != nil {
		return err
	}
	defer p.Close()

	fmt.Fprintf(out, "Map over %v: waits until every item is done (each sleeps %v)\n", items, sleep)
	start := time.Now()
	if _, err := procpool.Map(ctx, p, show, items); err != nil {
		return err
	}
	mapped := time.Since(start)

	fmt.Fprintf(out, "MapAsync over %v: returns a Future at once\n", items)
	start = time.Now()
	f, err := procpool.MapAsync(ctx, p, show, items)
	if err != nil {
		return err
	}
	returned := time.Since(start)
	fmt.Fprintf(out, "parent: MapAsync returned after %v; the parent is free while the workers run\n", round(returned))
	// Python's pool.close() and pool.join(); then the Future holds the result.
	if err := p.Close(); err != nil {
		return err
	}
	if _, err := f.Get(ctx); err != nil {
		return err
	}
	async := time.Since(start)

	fmt.Fprintf(out, "timings: Map %v; MapAsync returned after %v, done after %v\n",
		round(mapped), round(returned), round(async))
	return nil
}
