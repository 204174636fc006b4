// Package demo holds the programs behind procpool's examples: Go ports of
// the examples of a tutorial on Python's multiprocessing.Pool. Each example's
// main function and the tour (examples/tour) call the same functions here.
//
// Every function writes what the Python original prints to w, with the pid
// of the process that did the work beside each value. Lines printed by a
// task come from the worker process itself, through its standard output,
// just as Python's print does in a pool worker.
//
// The tasks are registered at package level, so a program that imports this
// package and calls procpool.Main first can serve them as a worker.
package demo

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/procpool/procpool"
)

// nap is how long each task sleeps in this worker process. The pool's
// initializer sets it (see setNap); it stays 0 in the parent and in workers
// of pools without the initializer.
var nap time.Duration

// The functions the demos run on workers. The names only need to be unique
// within the program.
var (
	// setNap is the pools' initializer: it runs once in each worker before
	// its first task, like Python's initializer=... with initargs=(...).
	setNap = procpool.Register("demo.setNap", func(_ context.Context, d time.Duration) (struct{}, error) {
		nap = d
		return struct{}{}, nil
	})

	// show is the tutorial's test(p): it prints the worker's pid and its
	// argument, then sleeps. Like the Python original, it returns nothing.
	show = procpool.Register("demo.show", func(ctx context.Context, i int) (struct{}, error) {
		fmt.Printf("worker %d: %d\n", os.Getpid(), i)
		return struct{}{}, sleep(ctx, nap)
	})

	// square is the tutorial's test(i) from the Map example: it prints,
	// sleeps and returns i*i.
	square = procpool.Register("demo.square", func(ctx context.Context, i int) (int, error) {
		fmt.Printf("worker %d: %d\n", os.Getpid(), i)
		return i * i, sleep(ctx, nap)
	})

	// squarePid is the tutorial's test(p) from the ApplyAsync example and
	// subp(i) from the callback example: it sleeps and returns i*i, with the
	// worker's pid beside it.
	squarePid = procpool.Register("demo.squarePid", func(ctx context.Context, i int) (squared, error) {
		return squared{Pid: os.Getpid(), Value: i * i}, sleep(ctx, nap)
	})
)

// squared is a result with the pid of the worker that computed it.
type squared struct {
	Pid   int
	Value int
}

// sleep waits for d, or less if ctx ends first.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// syncWriter serializes writes: the parent's own lines, the callbacks and
// the goroutines that copy the workers' output may write at the same time.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(b)
}

// outputs returns the writer for the parent's lines and the one to give
// worker processes as their standard output. When w is a file (the
// terminal), the workers write to it directly, so their lines appear exactly
// when they print them; otherwise the pool copies their output into w.
func outputs(w io.Writer) (parent, workers io.Writer) {
	sw := &syncWriter{w: w}
	if f, ok := w.(*os.File); ok {
		return sw, f
	}
	return sw, sw
}

// round shortens a duration for printing.
func round(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(10 * time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(100 * time.Microsecond)
	default:
		return d.Round(time.Microsecond)
	}
}
