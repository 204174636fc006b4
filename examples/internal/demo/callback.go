package demo

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/procpool/procpool"
)

// Callback runs the tutorial's callback example: 7 tasks on a pool of 2
// workers return i*i, and a callback post-processes each result in the
// parent, printing it divided by 10 (Python's callback=func). Callbacks run
// one at a time, in the order the tasks complete, before their Futures are
// ready, so this callback appends to a slice without a lock, and the slice
// is complete once Close has returned.
func Callback(ctx context.Context, w io.Writer) error {
	out, workers := outputs(w)
	start := time.Now()
	p, err := procpool.New(procpool.WithProcesses(2), procpool.WithStdout(workers))
	if err != nil {
		return err
	}
	defer p.Close()

	var seen []float64 // only the callbacks touch it
	post := func(r squared) {
		v := float64(r.Value) / 10
		seen = append(seen, v)
		fmt.Fprintf(out, "callback in parent %d: result of worker %d post-processed: %.1f\n", os.Getpid(), r.Pid, v)
	}
	for i := range 7 {
		if _, err := procpool.ApplyAsync(ctx, p, squarePid, i, procpool.Callback(post)); err != nil {
			return err
		}
	}
	if err := p.Close(); err != nil { // Python's pool.close(); pool.join()
		return err
	}
	slices.Sort(seen)
	fmt.Fprint(out, "all callbacks ran:")
	for _, v := range seen {
		fmt.Fprintf(out, " %.1f", v)
	}
	fmt.Fprintln(out)
	fmt.Fprintf(out, "timings: 7 tasks with callbacks %v (pool start included)\n", round(time.Since(start)))
	return nil
}
