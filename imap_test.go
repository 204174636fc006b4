//go:build unix

package procpool_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/procpool/procpool"
)

// anyItem carries an item of any type, so that some items of one input can
// be unencodable (a chan), and the file that squareAnyCounted counts runs in.
type anyItem struct {
	Path string
	X    any
}

// squareAnyCounted appends its number to the file at Path (to count how
// often each item ran) and returns its square.
var squareAnyCounted = procpool.Register("squareAnyCounted", func(_ context.Context, a anyItem) (int, error) {
	var x int
	switch v := a.X.(type) {
	case int64:
		x = int(v)
	case uint64:
		x = int(v)
	default:
		return 0, fmt.Errorf("not a number: %T", a.X)
	}
	f, err := os.OpenFile(a.Path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return 0, err
	}
	_, err = f.WriteString(strconv.Itoa(x) + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return x * x, err
})

// runCounts reads the runs squareAnyCounted recorded in path.
func runCounts(t *testing.T, path string) map[int]int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	runs := map[int]int{}
	for _, line := range strings.Fields(string(b)) {
		x, err := strconv.Atoi(line)
		if err != nil {
			t.Fatalf("run file: %q", line)
		}
		runs[x]++
	}
	return runs
}

type outcome struct {
	v   int
	err error
}

func (o outcome) String() string {
	if o.err != nil {
		return "error(" + o.err.Error() + ")"
	}
	return strconv.Itoa(o.v)
}

// An item the codec cannot encode yields its own *CodecError in its place,
// after the results of the items before it; every other item runs exactly
// once and yields its result, whatever the window and chunk size (issue 7,
// item 10: Imap yielded the error alone, cancelling the earlier chunks).
func TestImapUnencodableItemTakesItsPlace(t *testing.T) {
	ctx := testCtx(t)
	p := newPool(t, procpool.WithProcesses(2))
	bad := make(chan int) // CBOR cannot encode a chan
	inputs := map[string][]any{
		// The example: Python's imap yields 0, 1, 4, then the error.
		"issue": {0, 1, 2, bad},
		// Bad items at the start, in the middle and at the end of a chunk
		// of 3, and good items after them.
		"spread": {bad, 1, 2, 3, bad, 5, 6, 7, bad, 9, 10},
		"all":    {bad, bad, bad, bad},
	}
	for name, xs := range inputs {
		for _, ordered := range []bool{true, false} {
			for _, window := range []int{1, 4} {
				for _, chunk := range []int{1, 3} {
					t.Run(fmt.Sprintf("%s/ordered=%v/window=%d/chunk=%d", name, ordered, window, chunk), func(t *testing.T) {
						path := filepath.Join(t.TempDir(), "runs")
						seq := func(yield func(anyItem) bool) {
							for _, x := range xs {
								if !yield(anyItem{Path: path, X: x}) {
									return
								}
							}
						}
						imap := procpool.Imap[anyItem, int]
						if !ordered {
							imap = procpool.ImapUnordered[anyItem, int]
						}
						var got []outcome
						for v, err := range imap(ctx, p, squareAnyCounted, seq, procpool.Window(window), procpool.ChunkSize(chunk)) {
							got = append(got, outcome{v, err})
						}
						var want []outcome
						wantRuns := map[int]int{}
						for _, x := range xs {
							if n, ok := x.(int); ok {
								want = append(want, outcome{v: n * n})
								wantRuns[n] = 1
							} else {
								want = append(want, outcome{err: &procpool.CodecError{}})
							}
						}
						if len(got) != len(want) {
							t.Fatalf("got %d outcomes %v, want %d", len(got), got, len(want))
						}
						for i, o := range got {
							var ce *procpool.CodecError
							if o.err != nil && !errors.As(o.err, &ce) {
								t.Fatalf("outcome %d: %v, want a *CodecError or a result", i, o.err)
							}
						}
						if !ordered {
							key := func(o outcome) string {
								if o.err != nil {
									return "error"
								}
								return strconv.Itoa(o.v)
							}
							sortOut := func(os []outcome) []string {
								s := make([]string, len(os))
								for i, o := range os {
									s[i] = key(o)
								}
								slices.Sort(s)
								return s
							}
							if g, w := sortOut(got), sortOut(want); !slices.Equal(g, w) {
								t.Fatalf("got %v, want %v in any order", got, want)
							}
						} else {
							for i := range want {
								if (got[i].err != nil) != (want[i].err != nil) || got[i].v != want[i].v {
									t.Fatalf("got %v, want %v", got, want)
								}
							}
						}
						if runs := runCounts(t, path); !mapsEqual(runs, wantRuns) {
							t.Fatalf("runs per item %v, want each item once: %v", runs, wantRuns)
						}
					})
				}
			}
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
}

func mapsEqual(a, b map[int]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// A chunk that cannot be submitted takes its place too: the items before it
// yield their results, its items yield the submission error (here
// ErrClosed), and Imap reads no more input.
func TestImapSubmitErrorTakesItsPlace(t *testing.T) {
	for _, ordered := range []bool{true, false} {
		for _, window := range []int{1, 4} {
			t.Run(fmt.Sprintf("ordered=%v/window=%d", ordered, window), func(t *testing.T) {
				ctx := testCtx(t)
				p := newPool(t, procpool.WithProcesses(2))
				closed := make(chan struct{})
				defer func() { <-closed }()
				read := 0
				seq := func(yield func(int) bool) {
					for i := 0; ; i++ {
						if i == 3 {
							// Close the pool's intake before item 3 is
							// submitted. Close waits for the tasks in
							// flight, which do not need this input.
							go func() {
								defer close(closed)
								_ = p.Close()
							}()
							// Polled (bounded by ctx), not waitFor: this
							// runs in iter.Pull's coroutine, where
							// t.Fatal must not be called.
							for {
								if _, err := procpool.TryApplyAsync(ctx, p, square, 0); errors.Is(err, procpool.ErrClosed) {
									break
								}
								if ctx.Err() != nil {
									t.Error("the pool did not close")
									return
								}
								time.Sleep(time.Millisecond)
							}
						}
						read++
						if !yield(i) {
							return
						}
					}
				}
				imap := procpool.Imap[int, int]
				if !ordered {
					imap = procpool.ImapUnordered[int, int]
				}
				var got []outcome
				for v, err := range imap(ctx, p, square, seq, procpool.Window(window)) {
					got = append(got, outcome{v, err})
				}
				if read != 4 {
					t.Errorf("Imap read %d items, want 4 (it must stop at the failed chunk)", read)
				}
				if len(got) != 4 {
					t.Fatalf("got %v, want the results of items 0-2 and ErrClosed", got)
				}
				var vals []int
				nclosed := 0
				for i, o := range got {
					switch {
					case errors.Is(o.err, procpool.ErrClosed):
						nclosed++
						if ordered && i != 3 {
							t.Fatalf("got %v: ErrClosed before the earlier items' results", got)
						}
					case o.err != nil:
						t.Fatalf("got %v: unexpected error", got)
					default:
						vals = append(vals, o.v)
					}
				}
				slices.Sort(vals)
				if nclosed != 1 || !slices.Equal(vals, []int{0, 1, 4}) {
					t.Fatalf("got %v, want 0, 1, 4 and ErrClosed", got)
				}
			})
		}
	}
}

// A chunk over the frame limit whose items each fit alone fails as a whole:
// each of its items yields the *CodecError, none runs, and Imap goes on.
func TestImapChunkOverFrameLimit(t *testing.T) {
	ctx := testCtx(t)
	p := newPool(t, procpool.WithProcesses(1), procpool.WithMaxFrame(4096))
	path := filepath.Join(t.TempDir(), "runs")
	big := strings.Repeat("x", 1500)
	xs := []anyItem{{path, big}, {path, big}, {path, big}, {path, 7}}
	var got []outcome
	for v, err := range procpool.Imap(ctx, p, squareAnyCounted, slices.Values(xs), procpool.ChunkSize(3)) {
		got = append(got, outcome{v, err})
	}
	if len(got) != 4 || got[3].err != nil || got[3].v != 49 {
		t.Fatalf("got %v, want three *CodecError then 49", got)
	}
	for _, o := range got[:3] {
		var ce *procpool.CodecError
		if !errors.As(o.err, &ce) {
			t.Fatalf("got %v, want three *CodecError then 49", got)
		}
	}
	if runs := runCounts(t, path); !mapsEqual(runs, map[int]int{7: 1}) {
		t.Fatalf("runs %v, want only item 7, once", runs)
	}
}
