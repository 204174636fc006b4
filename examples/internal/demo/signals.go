package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/procpool/procpool"
)

// Signals is the Ctrl-C pattern. The caller passes a context that Ctrl-C
// cancels (signal.NotifyContext(ctx, os.Interrupt)). Signals submits the
// given number of tasks, each of which prints the worker's pid and its
// number, then sleeps, to a pool of 2 workers, all with that context.
// Workers ignore SIGINT: the parent decides. If the context is cancelled,
// the tasks still queued or running end with context.Canceled (a running
// task's worker is stopped and replaced). Either way the pool is then shut
// down with Shutdown, which waits for what is left for at most 5 seconds.
// An interruption is not an error: Signals reports how many tasks were done
// and how many cancelled, and returns nil.
func Signals(ctx context.Context, w io.Writer, sleep time.Duration, tasks int) error {
	out, workers := outputs(w)
	p, err := procpool.New(
		procpool.WithProcesses(2),
		procpool.WithStdout(workers),
		procpool.WithInitializer(setNap, sleep),
	)
	if err != nil {
		return err
	}
	defer p.Close()

	fmt.Fprintf(out, "%d tasks of %v on 2 workers; press Ctrl-C to cancel them\n", tasks, sleep)
	start := time.Now()
	var futures []*procpool.Future[struct{}]
	for i := range tasks {
		f, err := procpool.ApplyAsync(ctx, p, show, i)
		if err != nil {
			if ctx.Err() != nil {
				break // interrupted while submitting: nothing more to submit
			}
			return err
		}
		futures = append(futures, f)
	}
	done, cancelled := 0, tasks-len(futures)
	for _, f := range futures {
		<-f.Done() // every task ends: with its result, or cancelled with ctx
		_, err := f.Get(context.Background())
		switch {
		case err == nil:
			done++
		case errors.Is(err, context.Canceled):
			cancelled++
		default:
			return err
		}
	}
	ran := time.Since(start)
	if ctx.Err() != nil {
		fmt.Fprintf(out, "interrupted after %v (%v): %d tasks done, %d cancelled\n",
			round(ran), context.Cause(ctx), done, cancelled)
	} else {
		fmt.Fprintf(out, "not interrupted: %d tasks done in %v\n", done, round(ran))
	}

	// The parent's context may be cancelled already: Shutdown gets its own.
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start = time.Now()
	if err := p.Shutdown(sctx); err != nil {
		return err
	}
	fmt.Fprintf(out, "timings: tasks %v; Shutdown %v\n", round(ran), round(time.Since(start)))
	return nil
}
