//go:build unix

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
	"github.com/procpool/procpool/internal/wire"
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

// ImapUnordered's errors carry their item's index in the input, and so do
// Imap's; ImapUnorderedIndexed pairs every item's outcome with its index,
// exactly once.
func TestImapItemIndexes(t *testing.T) {
	ctx := testCtx(t)
	p := newPool(t, procpool.WithProcesses(2))
	const n, crash = 40, 22
	xs := probeInput(n, crash)
	for _, chunk := range []int{1, 3, 7} {
		for _, window := range []int{1, 4} {
			opts := []procpool.CallOption{procpool.ChunkSize(chunk), procpool.Window(window)}
			what := fmt.Sprintf("chunk %d, window %d", chunk, window)

			// ImapUnordered: each error names its item.
			failed := map[int]int{}
			var vals []int
			for v, err := range procpool.ImapUnordered(ctx, p, tenfold, slices.Values(xs), opts...) {
				if err == nil {
					vals = append(vals, v)
					continue
				}
				var ie *procpool.ItemError
				if !errors.As(err, &ie) {
					t.Fatalf("ImapUnordered, %s: %v, want an *ItemError", what, err)
				}
				checkItemErr(t, "ImapUnordered, "+what, err, ie.Index, crash)
				failed[ie.Index]++
			}
			checkFailedOnce(t, "ImapUnordered, "+what, failed, n, crash)
			if len(vals)+len(failed) != n {
				t.Fatalf("ImapUnordered, %s: %d results and %d errors for %d items", what, len(vals), len(failed), n)
			}

			// Imap: the index of an error is the item's position.
			i := 0
			for v, err := range procpool.Imap(ctx, p, tenfold, slices.Values(xs), opts...) {
				if err != nil {
					checkItemErr(t, "Imap, "+what, err, i, crash)
				} else if v != 10*i {
					t.Fatalf("Imap, %s: item %d: %d", what, i, v)
				}
				i++
			}
			if i != n {
				t.Fatalf("Imap, %s: %d outcomes for %d items", what, i, n)
			}

			// ImapUnorderedIndexed: each index once, with its own outcome.
			seen := make([]int, n)
			for r, err := range procpool.ImapUnorderedIndexed(ctx, p, tenfold, slices.Values(xs), opts...) {
				if r.Index < 0 || r.Index >= n {
					t.Fatalf("ImapUnorderedIndexed, %s: index %d (error %v)", what, r.Index, err)
				}
				seen[r.Index]++
				if err != nil {
					checkItemErr(t, "ImapUnorderedIndexed, "+what, err, r.Index, crash)
					if r.Value != 0 {
						t.Fatalf("ImapUnorderedIndexed, %s: item %d failed with value %d", what, r.Index, r.Value)
					}
				} else if r.Index%2 == 1 || r.Index == crash || r.Value != 10*r.Index {
					t.Fatalf("ImapUnorderedIndexed, %s: item %d gave %d", what, r.Index, r.Value)
				}
			}
			for i, k := range seen {
				if k != 1 {
					t.Fatalf("ImapUnorderedIndexed, %s: item %d yielded %d times", what, i, k)
				}
			}
		}
	}
}

func checkFailedOnce(t *testing.T, what string, failed map[int]int, n, crash int) {
	t.Helper()
	for i := range n {
		want := 0
		if i%2 == 1 || i == crash {
			want = 1
		}
		if failed[i] != want {
			t.Fatalf("%s: item %d failed %d times, want %d (%v)", what, i, failed[i], want, failed)
		}
	}
}

// Items that cannot be encoded, and a chunk that cannot be submitted, keep
// their indexes too; an error that belongs to no item has index -1 and is
// no *ItemError.
func TestImapIndexesOfItemsNotRun(t *testing.T) {
	ctx := testCtx(t)
	p := newPool(t, procpool.WithProcesses(2))
	bad := make(chan int) // CBOR cannot encode a chan
	in := []any{bad, 1, 2, bad, 4, 5, 6, bad}
	seq := func(yield func(anyItem) bool) {
		for _, x := range in {
			if !yield(anyItem{Path: os.DevNull, X: x}) {
				return
			}
		}
	}
	seen := map[int]bool{}
	for r, err := range procpool.ImapUnorderedIndexed(ctx, p, squareAnyCounted, seq, procpool.ChunkSize(3)) {
		if seen[r.Index] {
			t.Fatalf("index %d yielded twice", r.Index)
		}
		seen[r.Index] = true
		x, ok := in[r.Index].(int)
		var ie *procpool.ItemError
		var ce *procpool.CodecError
		switch {
		case !ok:
			if !errors.As(err, &ie) || ie.Index != r.Index || !errors.As(err, &ce) {
				t.Fatalf("item %d: %v, want an *ItemError with its index wrapping a *CodecError", r.Index, err)
			}
		case err != nil || r.Value != x*x:
			t.Fatalf("item %d: %d, %v; want %d", r.Index, r.Value, err, x*x)
		}
	}
	if len(seen) != len(in) {
		t.Fatalf("%d items yielded, want %d", len(seen), len(in))
	}

	// A closed pool: each item of the chunk that could not be submitted
	// has its index.
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	var got []int
	for r, err := range procpool.ImapUnorderedIndexed(ctx, p, square, slices.Values([]int{7, 8, 9}), procpool.ChunkSize(2)) {
		var ie *procpool.ItemError
		if !errors.Is(err, procpool.ErrClosed) || !errors.As(err, &ie) || ie.Index != r.Index {
			t.Fatalf("closed pool: %+v, %v; want ErrClosed in an *ItemError", r, err)
		}
		got = append(got, r.Index)
	}
	if !slices.Equal(got, []int{0, 1}) {
		t.Fatalf("closed pool: items %v yielded, want 0 and 1 (Imap stops at the chunk that failed)", got)
	}

	// A context that has ended before the first chunk is read: one error,
	// no item's.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	p2 := newPool(t, procpool.WithProcesses(1), procpool.WithInProcess())
	n := 0
	for r, err := range procpool.ImapUnorderedIndexed(cctx, p2, square, slices.Values([]int{1, 2})) {
		n++
		var ie *procpool.ItemError
		if r.Index != -1 || !errors.Is(err, context.Canceled) || errors.As(err, &ie) {
			t.Fatalf("ended context: %+v, %v; want index -1 and context.Canceled, not an *ItemError", r, err)
		}
	}
	if n != 1 {
		t.Fatalf("ended context: %d outcomes, want 1", n)
	}
}

// A chunk result with an error for an item the chunk does not have fails
// the chunk's items with a *CodecError (ErrMalformed), for Map and Imap
// alike; it does not take the parent down.
func TestChunkItemErrorOutOfRange(t *testing.T) {
	ctx := testCtx(t)
	p := newPool(t, procpool.WithProcesses(1), procpool.WithCommand(os.Args[0]),
		procpool.WithEnv(envMode+"=item-out-of-range"))
	out, err := procpool.Map(ctx, p, square, []int{1, 2, 3}, procpool.ChunkSize(3))
	var me *procpool.MapError
	if !errors.As(err, &me) || len(me.Errors) != 3 || len(out) != 3 {
		t.Fatalf("Map: %v, %v; want the 3 items failed", out, err)
	}
	for _, ie := range me.Errors {
		var ce *procpool.CodecError
		if !errors.As(ie.Err, &ce) || !errors.Is(ie.Err, wire.ErrMalformed) {
			t.Fatalf("Map: item %d: %v, want a *CodecError matching wire.ErrMalformed", ie.Index, ie.Err)
		}
	}
	n := 0
	for _, err := range procpool.Imap(ctx, p, square, slices.Values([]int{1, 2, 3}), procpool.ChunkSize(3)) {
		var ce *procpool.CodecError
		if !errors.As(err, &ce) || !errors.Is(err, wire.ErrMalformed) {
			t.Fatalf("Imap: %v, want a *CodecError matching wire.ErrMalformed", err)
		}
		n++
	}
	if n != 3 {
		t.Fatalf("Imap: %d outcomes for 3 items", n)
	}
}
