package procpool_test

import (
	"context"
	"testing"

	"github.com/procpool/procpool"
)

// Benchmarks of the hot paths, on a pool of 2 worker processes (the
// comparisons with Python and the machine's limits are in ./bench; see
// docs/benchmarks.md). Run them with
//
//	go test -run '^$' -bench . -benchtime 2s
var benchSquare = procpool.Register("benchSquare", func(_ context.Context, x int) (int, error) { return x * x, nil })

// benchPool starts a pool and warms it with one call; the pool is closed
// when the benchmark ends.
func benchPool(b *testing.B, opts ...procpool.Option) *procpool.Pool {
	b.Helper()
	p, err := procpool.New(append([]procpool.Option{procpool.WithProcesses(2)}, opts...)...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := p.Close(); err != nil {
			b.Errorf("Close: %v", err)
		}
	})
	if _, err := procpool.Apply(context.Background(), p, benchSquare, 1); err != nil {
		p.Terminate()
		b.Fatal(err)
	}
	return p
}

// benchApply measures one sequential round trip per op.
func benchApply(b *testing.B, p *procpool.Pool) {
	ctx := context.Background()
	i := 0
	for b.Loop() {
		v, err := procpool.Apply(ctx, p, benchSquare, i)
		if err != nil {
			b.Fatal(err)
		}
		if v != i*i {
			b.Fatalf("square(%d) = %d", i, v)
		}
		i++
	}
}

// BenchmarkApply is the latency of a synchronous Apply of a trivial task:
// one round trip to a worker process (ns/op).
func BenchmarkApply(b *testing.B) {
	benchApply(b, benchPool(b))
}

// BenchmarkApplyInProcess is BenchmarkApply with WithInProcess: the cost of
// the pool's machinery without processes and pipes.
func BenchmarkApplyInProcess(b *testing.B) {
	benchApply(b, benchPool(b, procpool.WithInProcess()))
}

// BenchmarkApplyAsync submits b.N trivial tasks with ApplyAsync, then waits
// for all of them: throughput in tasks/s.
func BenchmarkApplyAsync(b *testing.B) {
	p := benchPool(b)
	ctx := context.Background()
	futs := make([]*procpool.Future[int], b.N)
	b.ResetTimer()
	for i := range futs {
		f, err := procpool.ApplyAsync(ctx, p, benchSquare, i)
		if err != nil {
			b.Fatal(err)
		}
		futs[i] = f
	}
	for i, f := range futs {
		v, err := f.Get(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if v != i*i {
			b.Fatalf("square(%d) = %d", i, v)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tasks/s")
}

// BenchmarkMap maps a trivial task over 100,000 ints per op with the
// default chunk size: throughput in items/s.
func BenchmarkMap(b *testing.B) {
	const n = 100_000
	p := benchPool(b)
	ctx := context.Background()
	xs := make([]int, n)
	for i := range xs {
		xs[i] = i
	}
	ops := 0
	for b.Loop() {
		ys, err := procpool.Map(ctx, p, benchSquare, xs)
		if err != nil {
			b.Fatal(err)
		}
		if len(ys) != n || ys[n-1] != (n-1)*(n-1) {
			b.Fatalf("Map returned %d results, last %d", len(ys), ys[len(ys)-1])
		}
		ops++
	}
	b.ReportMetric(float64(ops*n)/b.Elapsed().Seconds(), "items/s")
}
