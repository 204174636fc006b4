package demo

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/procpool/procpool"
)

// Results runs the tutorial's two examples of collecting return values, each
// on a pool of 2 workers. First ApplyAsync: 10 tasks return i*i; the parent
// keeps the Futures, closes the pool (Python's close and join) and then
// prints each Future's value, in the order it submitted them, with the pid
// of the worker that computed it. Then Map over [1, 2, 3, 4, 5, 6], whose
// tasks print their pid and item and return i*i: the results come back in
// input order. Python sleeps 1 s in each task; here each sleeps sleep.
func Results(ctx context.Context, w io.Writer, sleep time.Duration) error {
	out, workers := outputs(w)

	fmt.Fprintf(out, "ApplyAsync: 10 tasks return i*i (each sleeps %v); Get collects them in order\n", sleep)
	start := time.Now()
	p, err := procpool.New(
		procpool.WithProcesses(2),
		procpool.WithStdout(workers),
		procpool.WithInitializer(setNap, sleep),
	)
	if err != nil {
		return err
	}
	defer p.Close()
	var futures []*procpool.Future[squared]
	for i := range 10 {
		f, err := procpool.ApplyAsync(ctx, p, squarePid, i)
		if err != nil {
			return err
		}
		futures = append(futures, f)
	}
	if err := p.Close(); err != nil { // Python's pool.close(); pool.join()
		return err
	}
	for _, f := range futures {
		r, err := f.Get(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "%d\t(worker %d)\n", r.Value, r.Pid)
	}
	async := time.Since(start)

	items := []int{1, 2, 3, 4, 5, 6}
	fmt.Fprintf(out, "Map over %v: tasks return i*i, the results come in input order\n", items)
	start = time.Now()
	p2, err := procpool.New(
		procpool.WithProcesses(2),
		procpool.WithStdout(workers),
		procpool.WithInitializer(setNap, sleep),
	)
	if err != nil {
		return err
	}
	defer p2.Close()
	res, err := procpool.Map(ctx, p2, square, items)
	if err != nil {
		return err
	}
	fmt.Fprintln(out, res)
	if err := p2.Close(); err != nil {
		return err
	}
	mapped := time.Since(start)

	fmt.Fprintf(out, "timings: ApplyAsync and Get %v; Map %v (pool starts included)\n", round(async), round(mapped))
	return nil
}
