//go:build unix

package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/procpool/procpool"
	"github.com/procpool/procpool/bench/internal/measure"
)

// callers is the number of goroutines (threads in Python) that call Apply
// at once in apply-concurrent.
const callers = 64

// ---- apply-concurrent ----

// runApplyConcurrent times sz.asyncN synchronous calls of square made by
// callers goroutines at once, on a pool of workers processes: as many tasks
// as async-throughput, and the median of as many rounds, so that the two
// rates compare.
func runApplyConcurrent(sz sizes, py *python) []measurement {
	v, note, err := applyConcurrent(sz)
	out := []measurement{measured("apply-concurrent", "procpool", v, err)}
	out[0].note = note
	out = append(out, goPluginRun("apply-concurrent", sz.timeout, "n", sz.asyncN, "goroutines", callers, "workers", workers))
	return append(out, py.run("apply-concurrent", sz.timeout, "n", sz.asyncN, "threads", callers, "workers", workers)...)
}

// applyConcurrent returns the median rate of sz.rounds rounds on one pool,
// each sz.asyncN Apply calls made by callers goroutines that take the next
// index from a shared counter, from the first call to the last result; and
// a note that gives every round's rate.
func applyConcurrent(sz sizes) (rate float64, note string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), sz.timeout)
	defer cancel()
	p, err := newPool(ctx, procpool.WithProcesses(workers))
	if err != nil {
		return 0, "", err
	}
	defer measure.ClosePool(ctx, p, &err)
	rate, note, err = medianRate(sz.rounds, func() (float64, error) { return concurrentRound(ctx, p, sz.asyncN) })
	return rate, note, err
}

// concurrentRound makes n Apply calls on p from callers goroutines and
// returns their rate. A failed call (or a wrong result) stops the others.
func concurrentRound(ctx context.Context, p *procpool.Pool, n int) (float64, error) {
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	var (
		next  atomic.Int64
		once  sync.Once
		first error
		wg    sync.WaitGroup
	)
	fail := func(err error) {
		once.Do(func() { first = err })
		stop()
	}
	t0 := time.Now()
	for range callers {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				v, err := procpool.Apply(ctx, p, square, i)
				if err != nil {
					fail(err)
					return
				}
				if v != i*i {
					fail(fmt.Errorf("square(%d) = %d", i, v))
					return
				}
			}
		})
	}
	wg.Wait()
	dt := time.Since(t0)
	if first != nil {
		return 0, first
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	return float64(n) / dt.Seconds(), nil
}

// The targets of apply-concurrent, after the others.
func init() {
	targets = append(targets,
		target{
			name: "apply-concurrent: procpool ≥ 0.7× procpool's async-throughput",
			check: func(r *report) (bool, string, bool) {
				cv, ok1 := r.get("apply-concurrent", "procpool")
				av, ok2 := r.get("async-throughput", "procpool")
				if !ok1 || !ok2 {
					return false, "", false
				}
				limit := 0.7 * av
				return cv >= limit, fmt.Sprintf("apply-concurrent %s tasks/s, async-throughput %s tasks/s, bound %s tasks/s (apply-concurrent = %s async-throughput)",
					fmtValue(cv), fmtValue(av), fmtValue(limit), fmtRatio(cv/av)), true
			},
		},
		relTarget("apply-concurrent", "go-plugin", "≥", 3, "3×"),
	)
}
