// Package measure holds what the bench harness and its cluster workloads'
// binary (bench/clusterbench) both use to time a pool: sequential Apply
// latencies, their percentiles, and closing a pool with the error kept.
package measure

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/procpool/procpool"
)

// Square is the function most workloads run: x·x, registered at package
// level under the same name in every binary that links this package, so
// that workers re-executed from any of them know it.
var Square = procpool.Register("bench.square", func(_ context.Context, x int) (int, error) { return x * x, nil })

// ApplyLatencies times n sequential Apply calls of f (which must square its
// argument) on p, checking each result, and returns the times sorted. It
// returns the first error of a call, or a wrong result, and stops there.
func ApplyLatencies(ctx context.Context, p *procpool.Pool, f procpool.Func[int, int], n int) ([]time.Duration, error) {
	lat := make([]time.Duration, n)
	for i := range lat {
		t0 := time.Now()
		v, err := procpool.Apply(ctx, p, f, i)
		lat[i] = time.Since(t0)
		if err != nil {
			return nil, err
		}
		if v != i*i {
			return nil, fmt.Errorf("square(%d) = %d", i, v)
		}
	}
	slices.Sort(lat)
	return lat, nil
}

// Percentile returns the nearest-rank q-th percentile of sorted ds, or 0 if
// ds is empty.
func Percentile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	k := int(float64(len(ds))*q/100+0.999999999) - 1
	return ds[max(0, min(len(ds)-1, k))]
}

// Micros is d in microseconds.
func Micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// ClosePool shuts p down, bounded by ctx, and stores what went wrong in
// *err unless *err already holds an error.
func ClosePool(ctx context.Context, p *procpool.Pool, err *error) {
	if cerr := p.Shutdown(ctx); cerr != nil && *err == nil {
		*err = fmt.Errorf("close: %w", cerr)
	}
}
