//go:build unix

package procpool_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/procpool/procpool"
)

// Functions that workers run are registered at package level, so that the
// parent and every worker (which re-run this same program) know them.
var upper = procpool.Register("example.upper", func(_ context.Context, s string) (string, error) {
	return strings.ToUpper(s), nil
})

// A program that uses procpool calls procpool.Main first in main (here, in
// TestMain), then creates a pool and sends it work.
func Example() {
	ctx := context.Background()
	p, err := procpool.New(procpool.WithProcesses(2))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Close()

	s, err := procpool.Apply(ctx, p, upper, "hello from a worker")
	fmt.Println(s, err)
	// Output: HELLO FROM A WORKER <nil>
}

func ExampleMap() {
	ctx := context.Background()
	p, err := procpool.New(procpool.WithProcesses(2))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Close()

	squares, err := procpool.Map(ctx, p, square, []int{1, 2, 3, 4, 5, 6})
	fmt.Println(squares, err)
	// Output: [1 4 9 16 25 36] <nil>
}

func ExampleApplyAsync() {
	ctx := context.Background()
	p, err := procpool.New(procpool.WithProcesses(2))
	if err != nil {
		fmt.Println(err)
		return
	}
	var futures []*procpool.Future[int]
	var seen []int // callbacks run one at a time: no lock needed
	for i := range 5 {
		f, err := procpool.ApplyAsync(ctx, p, square, i, procpool.Callback(func(v int) { seen = append(seen, v) }))
		if err != nil {
			fmt.Println(err)
			return
		}
		futures = append(futures, f)
	}
	p.Close() // waits for every task and callback, like close() then join()
	for _, f := range futures {
		v, _ := f.Get(ctx)
		fmt.Print(v, " ")
	}
	slices.Sort(seen) // callbacks run in completion order
	fmt.Println("| callbacks saw", seen)
	// Output: 0 1 4 9 16 | callbacks saw [0 1 4 9 16]
}

func ExampleImap() {
	ctx := context.Background()
	p, err := procpool.New(procpool.WithProcesses(2))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Close()

	// The input is read lazily, a window of chunks ahead of the consumer.
	for v, err := range procpool.Imap(ctx, p, square, slices.Values([]int{1, 2, 3}), procpool.ChunkSize(2)) {
		fmt.Println(v, err)
	}
	// Output:
	// 1 <nil>
	// 4 <nil>
	// 9 <nil>
}

func ExampleRemoteError() {
	ctx := context.Background()
	p, err := procpool.New(procpool.WithProcesses(1))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Close()

	_, err = procpool.Apply(ctx, p, panicking, "out of cheese")
	var re *procpool.RemoteError
	if errors.As(err, &re) {
		fmt.Println(re.Func, re.Panic, re.Message)
	}
	// Output: panicking true out of cheese
}

func ExampleWorkerExitError() {
	ctx := context.Background()
	p, err := procpool.New(procpool.WithProcesses(1))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Close()

	// The worker dies under the task; the pool replaces it and goes on.
	_, err = procpool.Apply(ctx, p, exitWith, 3)
	var we *procpool.WorkerExitError
	if errors.As(err, &we) {
		fmt.Println(we.Reason, we.ExitCode)
	}
	v, err := procpool.Apply(ctx, p, square, 7)
	fmt.Println(v, err)
	// Output:
	// crashed 3
	// 49 <nil>
}

// errOutOfStock is a sentinel that keeps its identity across the process
// boundary: registered at package level, under a name the parent and the
// workers agree on.
var errOutOfStock = procpool.RegisterError("github.com/procpool/procpool_test.errOutOfStock", errors.New("out of stock"))

var reserve = procpool.Register("example.reserve", func(_ context.Context, item int) (int, error) {
	return 0, fmt.Errorf("reserving item %d: %w", item, errOutOfStock)
})

func ExampleRegisterError() {
	ctx := context.Background()
	p, err := procpool.New(procpool.WithProcesses(1))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Close()

	_, err = procpool.Apply(ctx, p, reserve, 42)
	fmt.Println(errors.Is(err, errOutOfStock))
	fmt.Println(err)
	// Output:
	// true
	// procpool: example.reserve: reserving item 42: out of stock (*fmt.wrapError)
}

// LimitError is an error type whose values travel from the workers to the
// parent: its exported fields are encoded with the pool's codec.
type LimitError struct {
	Limit, Got int
}

func (e *LimitError) Error() string { return fmt.Sprintf("%d is over the limit of %d", e.Got, e.Limit) }

func init() {
	procpool.RegisterErrorType[*LimitError]()
}

var checkLimit = procpool.Register("example.checkLimit", func(_ context.Context, n int) (int, error) {
	if n > 10 {
		return 0, fmt.Errorf("checking: %w", &LimitError{Limit: 10, Got: n})
	}
	return n, nil
})

func ExampleRegisterErrorType() {
	ctx := context.Background()
	p, err := procpool.New(procpool.WithProcesses(1))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Close()

	_, err = procpool.Apply(ctx, p, checkLimit, 12)
	var le *LimitError
	if errors.As(err, &le) {
		fmt.Println("limit", le.Limit, "got", le.Got)
	}
	var re *procpool.RemoteError
	if errors.As(err, &re) {
		fmt.Println(re.Chain)
	}
	// Output:
	// limit 10 got 12
	// [*fmt.wrapError *procpool_test.LimitError]
}

func ExampleWithRequire() {
	// A worker program other than this one (WithCommand) may register only
	// some of the parent's functions. WithRequire makes New fail at once,
	// naming them, if a worker lacks one this program needs; and New fails
	// whatever the options if a worker was built from another version of a
	// function's argument or result types.
	exe, err := os.Executable()
	if err != nil {
		fmt.Println(err)
		return
	}
	p, err := procpool.New(procpool.WithProcesses(1), procpool.WithCommand(exe), procpool.WithRequire(upper, square))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Close()

	s, err := procpool.Apply(context.Background(), p, upper, "all there")
	fmt.Println(s, err)
	// Output: ALL THERE <nil>
}

// Each result of ImapUnorderedIndexed comes with its item's index, which
// pairs it with its input without carrying the input in the output.
func ExampleImapUnorderedIndexed() {
	ctx := context.Background()
	p, err := procpool.New(procpool.WithProcesses(2))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Close()

	words := []string{"alpha", "beta", "gamma"}
	upperOf := make(map[string]string)
	// Results come in the order they complete, each with its item's index.
	for r, err := range procpool.ImapUnorderedIndexed(ctx, p, upper, slices.Values(words)) {
		if err != nil {
			fmt.Println(err) // an *ItemError: its Index is r.Index
			continue
		}
		upperOf[words[r.Index]] = r.Value
	}
	for _, w := range words {
		fmt.Println(w, "->", upperOf[w])
	}
	// Output:
	// alpha -> ALPHA
	// beta -> BETA
	// gamma -> GAMMA
}

func ExampleMapError() {
	ctx := context.Background()
	p, err := procpool.New(procpool.WithProcesses(2))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Close()

	// failing returns an error for multiples of 3. Map returns the other
	// results all the same, and a *MapError that lists every failed item.
	out, err := procpool.Map(ctx, p, failing, []int{1, 3, 4, 6, 7})
	fmt.Println(out)
	var me *procpool.MapError
	if errors.As(err, &me) {
		for _, ie := range me.Errors {
			fmt.Println("item", ie.Index, "failed:", ie.Err)
		}
	}
	// Output:
	// [1 0 4 0 7]
	// item 1 failed: procpool: failing: open /nope/3: file does not exist (*fs.PathError)
	// item 3 failed: procpool: failing: open /nope/6: file does not exist (*fs.PathError)
}
