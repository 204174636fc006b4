//go:build unix

package procpool_test

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/procpool/procpool"
	"github.com/procpool/procpool/codec"
)

// homemade is a codec workers cannot look up by name.
type homemade struct{ codec.Codec }

func (homemade) Name() string { return "homemade" }

// impostor takes the name of a registered codec ("cbor") that it is not.
type impostor struct{ codec.Codec }

// Every option refuses the values that mean nothing, with an *OptionError
// from New that names it, and starts nothing.
func TestInvalidOptions(t *testing.T) {
	noOrphans(t)
	var zeroFunc procpool.Func[int, int]
	cases := []struct {
		opt  procpool.Option
		name string // what the error must name
	}{
		{procpool.WithProcesses(0), "WithProcesses(0)"},
		{procpool.WithProcesses(-1), "WithProcesses(-1)"},
		{procpool.WithCommand(""), `WithCommand("")`},
		{procpool.WithEnv("A=1", "NOEQUALS"), `WithEnv("NOEQUALS")`},
		{procpool.WithEnv("=1"), `WithEnv("=1")`},
		{procpool.WithCodec(nil), "WithCodec(nil)"},
		{procpool.WithCodec(homemade{codec.Default}), `WithCodec("homemade")`},
		{procpool.WithCodec(impostor{codec.CBOR}), `WithCodec("cbor")`},
		{procpool.WithInitializer(zeroFunc, 1), "WithInitializer"},
		{procpool.WithMaxTasksPerWorker(-1), "WithMaxTasksPerWorker(-1)"},
		{procpool.WithPipelineDepth(0), "WithPipelineDepth(0)"},
		{procpool.WithQueueSize(-1), "WithQueueSize(-1)"},
		{procpool.WithTaskTimeout(-time.Second), "WithTaskTimeout(-1s)"},
		{procpool.WithKillGrace(-time.Second), "WithKillGrace(-1s)"},
		{procpool.WithStartTimeout(0), "WithStartTimeout(0s)"},
		{procpool.WithStartTimeout(-time.Second), "WithStartTimeout(-1s)"},
		{procpool.WithMaxWorkerMemory(-1), "WithMaxWorkerMemory(-1)"},
		{procpool.WithIdleTimeout(-time.Second, 0), "WithIdleTimeout(-1s, 0)"},
		{procpool.WithIdleTimeout(time.Second, -1), "WithIdleTimeout(1s, -1)"},
		{procpool.WithRlimit(-1, 1, 1), "WithRlimit(-1, 1, 1)"},
		{procpool.WithRlimit(syscall.RLIMIT_NOFILE, 200, 100), fmt.Sprintf("WithRlimit(%d, 200, 100)", syscall.RLIMIT_NOFILE)},
		{procpool.WithRestartLimit(-1, time.Minute), "WithRestartLimit(-1, 1m0s)"},
		{procpool.WithRestartLimit(5, 0), "WithRestartLimit(5, 0s)"},
		{procpool.WithRetries(-1), "WithRetries(-1)"},
		{procpool.WithMaxFrame(0), "WithMaxFrame(0)"},
		{procpool.WithMaxFrame(-1), "WithMaxFrame(-1)"},
		{procpool.WithMaxFrame(1023), "WithMaxFrame(1023)"},
		{procpool.WithMaxFrame(1 << 32), "WithMaxFrame(4294967296)"},
		{procpool.WithSharedMemory(-1), "WithSharedMemory(-1)"},
	}
	for _, c := range cases {
		p, err := procpool.New(procpool.WithProcesses(1), c.opt)
		if err == nil {
			p.Terminate()
			t.Errorf("%s: New succeeded", c.name)
			continue
		}
		var oe *procpool.OptionError
		if !errors.As(err, &oe) || !errors.Is(err, procpool.ErrInvalidOption) || oe.Option != c.name ||
			!strings.Contains(err.Error(), c.name) {
			t.Errorf("%s: New returned %v (%T), want an *OptionError naming it", c.name, err, err)
		}
	}
	if _, err := procpool.New(procpool.WithInitializer(zeroFunc, 1)); !errors.Is(err, procpool.ErrZeroFunc) ||
		!strings.Contains(err.Error(), "procpool.Register") {
		t.Errorf("WithInitializer with the zero Func: %v, want ErrZeroFunc naming Register", err)
	}
	if len(children()) != 0 {
		t.Error("New started workers for options it refused")
	}
}

// The values documented as meaning something (mostly zero) are accepted,
// and a pool with all of them works.
func TestZeroOptionsAccepted(t *testing.T) {
	ctx := testCtx(t)
	p := newPool(t, procpool.WithProcesses(1), procpool.WithMaxTasksPerWorker(0), procpool.WithQueueSize(0),
		procpool.WithTaskTimeout(0), procpool.WithKillGrace(0), procpool.WithMaxWorkerMemory(0),
		procpool.WithIdleTimeout(0, 0), procpool.WithRestartLimit(0, time.Minute), procpool.WithRetries(0),
		procpool.WithMaxFrame(1024), procpool.WithSharedMemory(0), procpool.WithDir(""),
		procpool.WithStdout(nil), procpool.WithLogger(nil), procpool.WithPipelineDepth(1),
		procpool.WithRlimit(syscall.RLIMIT_NOFILE, 100, 100))
	v, err := procpool.Apply(ctx, p, square, 3, procpool.Timeout(0), procpool.Retries(0))
	if err != nil || v != 9 {
		t.Fatalf("Apply: %d, %v", v, err)
	}
	vs, err := procpool.Map(ctx, p, square, []int{1, 2, 3}, procpool.ChunkSize(0))
	if err != nil || !slices.Equal(vs, []int{1, 4, 9}) {
		t.Fatalf("Map: %v, %v", vs, err)
	}
	var got []int
	for v, err := range procpool.Imap(ctx, p, square, slices.Values([]int{1, 2}), procpool.ChunkSize(0), procpool.Window(0)) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, v)
	}
	if !slices.Equal(got, []int{1, 4}) {
		t.Fatalf("Imap: %v", got)
	}
}

// calls runs f with every entry point that takes a Func and call options,
// each returning its first error.
func calls(ctx context.Context, p *procpool.Pool, f procpool.Func[int, int], opts ...procpool.CallOption) map[string]error {
	first := func(seq iter.Seq2[int, error]) error {
		for _, err := range seq {
			if err != nil {
				return err
			}
		}
		return nil
	}
	_, applyErr := procpool.Apply(ctx, p, f, 2, opts...)
	_, asyncErr := procpool.ApplyAsync(ctx, p, f, 2, opts...)
	_, tryErr := procpool.TryApplyAsync(ctx, p, f, 2, opts...)
	_, mapErr := procpool.Map(ctx, p, f, []int{1, 2}, opts...)
	_, mapAsyncErr := procpool.MapAsync(ctx, p, f, []int{1, 2}, opts...)
	return map[string]error{
		"Apply": applyErr, "ApplyAsync": asyncErr, "TryApplyAsync": tryErr, "Map": mapErr, "MapAsync": mapAsyncErr,
		"Imap":          first(procpool.Imap(ctx, p, f, slices.Values([]int{1, 2}), opts...)),
		"ImapUnordered": first(procpool.ImapUnordered(ctx, p, f, slices.Values([]int{1, 2}), opts...)),
		"ImapUnorderedIndexed": first(func(yield func(int, error) bool) {
			for r, err := range procpool.ImapUnorderedIndexed(ctx, p, f, slices.Values([]int{1, 2}), opts...) {
				if !yield(r.Value, err) {
					return
				}
			}
		}),
	}
}

// Every call refuses an invalid call option, and the zero Func, with an
// error and without submitting anything; none panics.
func TestInvalidCallOptions(t *testing.T) {
	ctx := testCtx(t)
	p := newPool(t, procpool.WithProcesses(1))
	for _, c := range []struct {
		opt  procpool.CallOption
		name string
	}{
		{procpool.ChunkSize(-1), "ChunkSize(-1)"},
		{procpool.Timeout(-time.Second), "Timeout(-1s)"},
		{procpool.Retries(-1), "Retries(-1)"},
		{procpool.Window(-1), "Window(-1)"},
		{procpool.Callback(func(string) {}), "Callback"},
	} {
		for call, err := range calls(ctx, p, square, c.opt) {
			var oe *procpool.OptionError
			if !errors.As(err, &oe) || !errors.Is(err, procpool.ErrInvalidOption) || oe.Option != c.name {
				t.Errorf("%s with %s: %v, want an *OptionError naming it", call, c.name, err)
			}
		}
	}
	var zeroFunc procpool.Func[int, int]
	for call, err := range calls(ctx, p, zeroFunc) {
		if !errors.Is(err, procpool.ErrZeroFunc) || !strings.Contains(err.Error(), "procpool.Register") {
			t.Errorf("%s with the zero Func: %v, want ErrZeroFunc naming Register", call, err)
		}
	}
	for v, err := range procpool.ImapUnordered(ctx, p, square, slices.Values([]int{1}), procpool.ErrorCallback(func(error) {})) {
		if oe := (*procpool.OptionError)(nil); !errors.As(err, &oe) || oe.Option != "ErrorCallback" {
			t.Errorf("ImapUnordered with an ErrorCallback: %d, %v; want an *OptionError", v, err)
		}
	}
	if n := p.Stats().Submitted; n != 0 {
		t.Fatalf("%d tasks submitted by calls that should have refused them", n)
	}
}
