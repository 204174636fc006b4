package procpool_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"testing"

	"github.com/procpool/procpool"
)

// probeArg is an item of tenfold: X, and whether to crash the worker.
type probeArg struct {
	X     int
	Crash bool
}

// tenfold returns 10·x; for an odd x it returns an error (with a result
// that must not reach the caller), and a Crash item exits the worker with
// status 3.
var tenfold = procpool.Register("tenfold", func(_ context.Context, a probeArg) (int, error) {
	if a.Crash {
		os.Exit(3)
	}
	if a.X%2 == 1 {
		return 10 * a.X, errors.New("odd " + strconv.Itoa(a.X))
	}
	return 10 * a.X, nil
})

// probeInput is 0..n-1, with the worker crashing at crash (none if < 0).
func probeInput(n, crash int) []probeArg {
	xs := make([]probeArg, n)
	for i := range xs {
		xs[i] = probeArg{X: i, Crash: i == crash}
	}
	return xs
}

// checkItemErr checks that err is item i's failure: an *ItemError with
// Index i wrapping tenfold's error for an odd i, the worker's exit for the
// crashing one.
func checkItemErr(t *testing.T, what string, err error, i, crash int) {
	t.Helper()
	var ie *procpool.ItemError
	if !errors.As(err, &ie) || ie.Index != i {
		t.Fatalf("%s: item %d: %v, want an *ItemError with Index %d", what, i, err, i)
	}
	var re *procpool.RemoteError
	var we *procpool.WorkerExitError
	switch {
	case i == crash:
		if !errors.As(err, &we) || we.ExitCode != 3 {
			t.Fatalf("%s: item %d: %v, want its worker's exit", what, i, err)
		}
	case i%2 == 1:
		if !errors.As(err, &re) || re.Message != "odd "+strconv.Itoa(i) {
			t.Fatalf("%s: item %d: %v, want its own *RemoteError", what, i, err)
		}
	default:
		t.Fatalf("%s: item %d failed: %v", what, i, err)
	}
}

// checkMapOutcome checks a Map's partial results and its *MapError: every
// even item's result, zero for the others, and every odd index and the
// crashing one listed, in order, each with its own error, each seen by
// errors.Is and errors.As.
func checkMapOutcome(t *testing.T, what string, n, crash int, out []int, err error) {
	t.Helper()
	if len(out) != n {
		t.Fatalf("%s: %d results for %d items (error %v)", what, len(out), n, err)
	}
	var wantIdx []int
	for i := range n {
		want := 10 * i
		if i%2 == 1 || i == crash {
			want = 0
			wantIdx = append(wantIdx, i)
		}
		if out[i] != want {
			t.Fatalf("%s: result %d is %d, want %d", what, i, out[i], want)
		}
	}
	var me *procpool.MapError
	if !errors.As(err, &me) {
		t.Fatalf("%s: %v, want a *MapError", what, err)
	}
	var idx []int
	for _, ie := range me.Errors {
		idx = append(idx, ie.Index)
	}
	if !slices.Equal(idx, wantIdx) {
		t.Fatalf("%s: MapError lists items %v, want %v", what, idx, wantIdx)
	}
	if me.Index != wantIdx[0] || me.Err != me.Errors[0].Err {
		t.Fatalf("%s: MapError's Index %d and Err %v, want the lowest failed item's (%d)", what, me.Index, me.Err, wantIdx[0])
	}
	for k := range me.Errors {
		ie := &me.Errors[k]
		if !errors.Is(err, ie) {
			t.Fatalf("%s: errors.Is does not find item %d's error in the MapError", what, ie.Index)
		}
		checkItemErr(t, what, ie, ie.Index, crash)
	}
	// errors.As reaches each failure, not only the lowest: the crash is
	// not the first item to fail.
	var we *procpool.WorkerExitError
	if crash >= 0 && (!errors.As(err, &we) || we.ExitCode != 3) {
		t.Fatalf("%s: errors.As finds no *WorkerExitError in %v", what, err)
	}
	var re *procpool.RemoteError
	if !errors.As(err, &re) || re.Message != "odd 1" {
		t.Fatalf("%s: errors.As finds %v, want item 1's *RemoteError", what, re)
	}
}

// Map and MapAsync keep the results of the items that succeeded, and their
// *MapError lists every failed item with its own error, whatever the chunk
// size, and whichever chunk ends first.
func TestMapKeepsResultsAndListsEveryFailure(t *testing.T) {
	ctx := testCtx(t)
	p := newPool(t, procpool.WithProcesses(2))
	const n, crash = 40, 22
	for _, chunk := range []int{1, 3, 7, n} {
		xs := probeInput(n, crash)
		what := fmt.Sprintf("Map, chunk %d", chunk)
		out, err := procpool.Map(ctx, p, tenfold, xs, procpool.ChunkSize(chunk))
		checkMapOutcome(t, what, n, crash, out, err)

		what = fmt.Sprintf("MapAsync, chunk %d", chunk)
		var cbErr error
		fut, err := procpool.MapAsync(ctx, p, tenfold, xs, procpool.ChunkSize(chunk),
			procpool.Callback(func([]int) { t.Errorf("%s: Callback called despite failures", what) }),
			procpool.ErrorCallback(func(err error) { cbErr = err }))
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		out, err = fut.Get(ctx)
		checkMapOutcome(t, what, n, crash, out, err)
		if cbErr != err { // the callback has run: Get returns after it
			t.Fatalf("%s: ErrorCallback got %v, Get %v", what, cbErr, err)
		}
		if fut.Successful() {
			t.Fatalf("%s: Successful after failures", what)
		}
	}
	// Without failures, no error.
	xs := make([]probeArg, 10)
	for i := range xs {
		xs[i].X = 2 * i
	}
	out, err := procpool.Map(ctx, p, tenfold, xs, procpool.ChunkSize(3))
	if err != nil || len(out) != 10 || out[9] != 180 {
		t.Fatalf("Map without failures: %v, %v", out, err)
	}
}

// The MapError of a Map in which every item fails lists each once, and
// reads well.
func TestMapErrorAllFail(t *testing.T) {
	ctx := testCtx(t)
	p := newPool(t, procpool.WithProcesses(2), procpool.WithInProcess())
	xs := make([]probeArg, 1000)
	for i := range xs {
		xs[i].X = 2*i + 1
	}
	out, err := procpool.Map(ctx, p, tenfold, xs, procpool.ChunkSize(9))
	var me *procpool.MapError
	if !errors.As(err, &me) || len(me.Errors) != len(xs) || len(out) != len(xs) {
		t.Fatalf("Map: %d results, %v", len(out), err)
	}
	for i, ie := range me.Errors {
		if ie.Index != i || out[i] != 0 {
			t.Fatalf("item %d: listed as %d, result %d", i, ie.Index, out[i])
		}
	}
	if want := "procpool: item 0: procpool: tenfold: odd 1 (*errors.errorString) (and 999 more failed items)"; err.Error() != want {
		t.Fatalf("Error() = %q, want %q", err.Error(), want)
	}
}

// A cancelled Map keeps the results of the chunks that had ended, and lists
// the others' items with the context's cause.
func TestMapCancelledKeepsFinishedChunks(t *testing.T) {
	ctx := testCtx(t)
	p := newPool(t, procpool.WithProcesses(1))
	cctx, cancel := context.WithCancel(ctx)
	// Chunk 0 ends; chunk 1 sleeps until it is cancelled.
	xs := []int{0, 0, 60_000, 0}
	fut, err := procpool.MapAsync(cctx, p, sleepMs, xs, procpool.ChunkSize(2))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "chunk 0 to end", func() bool { return p.Stats().Succeeded == 1 })
	cancel()
	out, err := fut.Get(ctx)
	var me *procpool.MapError
	if !errors.As(err, &me) || !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Map: %v, want a *MapError matching context.Canceled", err)
	}
	var idx []int
	for _, ie := range me.Errors {
		idx = append(idx, ie.Index)
	}
	if !slices.Equal(idx, []int{2, 3}) || !slices.Equal(out, []int{0, 0, 0, 0}) {
		t.Fatalf("cancelled Map: results %v, failed %v; want items 2 and 3 failed", out, idx)
	}
}
