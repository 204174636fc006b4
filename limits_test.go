//go:build unix

package procpool_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/procpool/procpool"
	"github.com/procpool/procpool/internal/wire"
)

var (
	// strLen returns the length of its argument.
	strLen = procpool.Register("strLen", func(_ context.Context, s string) (int, error) { return len(s), nil })

	// strOf returns a string of n bytes.
	strOf = procpool.Register("strOf", func(_ context.Context, n int) (string, error) { return strings.Repeat("r", n), nil })
)

// The parent and the worker check the same quantity against WithMaxFrame:
// byte by byte across the limit, an argument is either refused by the
// parent with a *CodecError or run, and a result is either sent or reported
// as the task's *RemoteError. The worker never dies of a frame the other
// side let through.
func TestFrameLimitBoundary(t *testing.T) {
	const limit = 4096
	ctx := testCtx(t)
	p := newPool(t, procpool.WithProcesses(1), procpool.WithMaxFrame(limit), procpool.WithSharedMemory(0))

	accepted, refused := 0, 0
	for n := limit - 64; n <= limit+16; n++ {
		got, err := procpool.Apply(ctx, p, strLen, strings.Repeat("a", n))
		var ce *procpool.CodecError
		switch {
		case err == nil && got == n:
			if refused > 0 {
				t.Fatalf("a %d-byte argument ran after a shorter one was refused", n)
			}
			accepted++
		case errors.As(err, &ce) && errors.Is(err, wire.ErrFrameTooLarge):
			refused++
		default:
			t.Fatalf("a %d-byte argument: %d, %v; want it run or refused with a *CodecError", n, got, err)
		}
	}
	if accepted == 0 || refused == 0 {
		t.Fatalf("%d arguments ran and %d were refused: the sizes do not straddle the limit", accepted, refused)
	}

	sent, failed := 0, 0
	for n := limit - 64; n <= limit+16; n++ {
		got, err := procpool.Apply(ctx, p, strOf, n)
		var re *procpool.RemoteError
		switch {
		case err == nil && len(got) == n:
			if failed > 0 {
				t.Fatalf("a %d-byte result came back after a shorter one failed", n)
			}
			sent++
		case errors.As(err, &re) && re.Code == "encode":
			failed++
		default:
			t.Fatalf("a %d-byte result: %d bytes, %v; want it back or a *RemoteError with code encode", n, len(got), err)
		}
	}
	if sent == 0 || failed == 0 {
		t.Fatalf("%d results came back and %d failed: the sizes do not straddle the limit", sent, failed)
	}
	// An error too long for a frame comes back cut, rather than killing
	// its worker for a frame the parent refuses. (JSON writes '<' in six
	// bytes.)
	long := strings.Repeat("é<", 1000)
	_, err := procpool.Apply(ctx, p, panicking, long)
	var re *procpool.RemoteError
	if !errors.As(err, &re) || !re.Panic || !strings.HasSuffix(re.Message, " [cut to fit the frame limit]") ||
		!strings.HasPrefix(long, strings.TrimSuffix(re.Message, " [cut to fit the frame limit]")) {
		t.Fatalf("a panic with a %d-byte message: %v; want its *RemoteError, cut", len(long), err)
	}

	if s := p.Stats(); s.WorkersStarted != 1 || len(s.WorkerExits) != 0 {
		t.Fatalf("stats: %d workers started, exits %v; want the one worker alive throughout", s.WorkersStarted, s.WorkerExits)
	}
}

// An initializer's argument over the frame limit is refused by New, not by
// the workers it would kill.
func TestFrameLimitInitializer(t *testing.T) {
	noOrphans(t)
	_, err := procpool.New(procpool.WithProcesses(1), procpool.WithMaxFrame(4096),
		procpool.WithInitializer(setState, strings.Repeat("s", 4096)))
	var ce *procpool.CodecError
	if !errors.As(err, &ce) || !errors.Is(err, wire.ErrFrameTooLarge) {
		t.Fatalf("New with an initializer argument over the frame limit: %v; want a *CodecError", err)
	}
}
