package demo

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/procpool/procpool"
)

// Apply runs the tutorial's apply versus apply_async example on a pool of 2
// workers: 10 tasks that each print the worker's pid and their argument,
// then sleep. procpool.Apply blocks until its task is done, so the tasks run
// one at a time; procpool.ApplyAsync returns at once with a Future, so both
// workers are busy. Python sleeps 3 s in each task; here each sleeps sleep.
func Apply(ctx context.Context, w io.Writer, sleep time.Duration) error {
	const tasks = 10
	out, workers := outputs(w)
	p, err := procpool.New(
		procpool.WithProcesses(2),
		procpool.WithStdout(workers),
		procpool.WithInitializer(setNap, sleep), // each task sleeps this long
	)
	if err != nil {
		return err
	}
	defer p.Close()

	fmt.Fprintf(out, "Apply: %d tasks of %v, each call waits for its task (one worker busy at a time)\n", tasks, sleep)
	start := time.Now()
	for i := range tasks {
		if _, err := procpool.Apply(ctx, p, show, i); err != nil {
			return err
		}
	}
	oneByOne := time.Since(start)

	fmt.Fprintf(out, "ApplyAsync: %d tasks of %v, submitted at once (both workers busy)\n", tasks, sleep)
	start = time.Now()
	var futures []*procpool.Future[struct{}]
	for i := range tasks {
		f, err := procpool.ApplyAsync(ctx, p, show, i)
		if err != nil {
			return err
		}
		futures = append(futures, f)
	}
	submitted := time.Since(start)
	// Python's pool.close() followed by pool.join(): stop taking tasks and
	// wait for the ones submitted.
	if err := p.Close(); err != nil {
		return err
	}
	async := time.Since(start)
	for _, f := range futures {
		if _, err := f.Get(ctx); err != nil {
			return err
		}
	}

	fmt.Fprintf(out, "timings: Apply %v; ApplyAsync returned after %v, all %d tasks done after %v\n",
		round(oneByOne), round(submitted), tasks, round(async))
	return nil
}
