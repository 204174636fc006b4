package procpool_test

import (
	"context"
	"errors"
	"testing"

	"github.com/procpool/procpool"
	"github.com/procpool/procpool/internal/supervise"
)

// platformEcho returns its argument. It is this file's own, so that the
// test builds on every system (most test files' functions are Unix's).
var platformEcho = procpool.Register("platformEcho", func(_ context.Context, s string) (string, error) {
	return s, nil
})

// New runs in-process on every system, and refuses with an error that
// says so what the system cannot run: worker processes where none can be
// started (Windows), a memory limit where no worker's memory can be read
// (macOS). Where it can, it runs them.
func TestNewPlatform(t *testing.T) {
	ctx := context.Background()
	run := func(opts ...procpool.Option) error {
		p, err := procpool.New(append([]procpool.Option{procpool.WithProcesses(1)}, opts...)...)
		if err != nil {
			return err
		}
		defer p.Close()
		if v, err := procpool.Apply(ctx, p, platformEcho, "here"); err != nil || v != "here" {
			t.Fatalf("%v, %v", v, err)
		}
		return p.Close()
	}

	// In-process workers have no memory of their own: the limit is not
	// checked, so not refused.
	if err := run(procpool.WithInProcess(), procpool.WithMaxWorkerMemory(1<<30)); err != nil {
		t.Fatalf("in-process: %v", err)
	}

	err := run()
	if supervise.Processes {
		if err != nil {
			t.Fatalf("processes: %v", err)
		}
	} else {
		var oe *procpool.OptionError
		if !errors.Is(err, errors.ErrUnsupported) || errors.As(err, &oe) {
			t.Fatalf("processes where none can be started: %v; want an error wrapping errors.ErrUnsupported", err)
		}
	}

	err = run(procpool.WithMaxWorkerMemory(1 << 30))
	switch {
	case !supervise.Processes:
		if !errors.Is(err, errors.ErrUnsupported) {
			t.Fatalf("memory limit where no process can be started: %v", err)
		}
	case !supervise.HasRSS:
		var oe *procpool.OptionError
		if !errors.As(err, &oe) || oe.Option != "WithMaxWorkerMemory(1073741824)" ||
			!errors.Is(err, procpool.ErrInvalidOption) || !errors.Is(err, errors.ErrUnsupported) {
			t.Fatalf("memory limit where no memory can be read: %v; want an *OptionError wrapping errors.ErrUnsupported", err)
		}
	default:
		if err != nil {
			t.Fatalf("memory limit: %v", err)
		}
	}
}
