//go:build unix

package procpool_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/procpool/procpool"
)

// recordingHandler keeps every record it gets, with its attributes.
type recordingHandler struct {
	mu   sync.Mutex
	recs []loggedEvent
}

type loggedEvent struct {
	level slog.Level
	msg   string
	attrs map[string]string
}

func (h *recordingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordingHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *recordingHandler) WithGroup(string) slog.Handler            { return h }
func (h *recordingHandler) Handle(_ context.Context, r slog.Record) error {
	e := loggedEvent{level: r.Level, msg: r.Message, attrs: map[string]string{}}
	r.Attrs(func(a slog.Attr) bool {
		e.attrs[a.Key] = a.Value.String()
		return true
	})
	h.mu.Lock()
	h.recs = append(h.recs, e)
	h.mu.Unlock()
	return nil
}

// find returns the records with message msg whose attributes include want.
func (h *recordingHandler) find(msg string, want map[string]string) []loggedEvent {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []loggedEvent
next:
	for _, e := range h.recs {
		if e.msg != msg {
			continue
		}
		for k, v := range want {
			if e.attrs[k] != v {
				continue next
			}
		}
		out = append(out, e)
	}
	return out
}

func (h *recordingHandler) dump() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := ""
	for _, e := range h.recs {
		s += fmt.Sprintf("\n  %v %s %v", e.level, e.msg, e.attrs)
	}
	return s
}

// Every lifecycle event reaches WithLogger with its attributes: a worker's
// start and exit (with its reason, and whether it was replaced), a retry, a
// timeout, a cancellation and a broken pool. Close waits for the logger, so
// the records are all there when it returns.
func TestLifecycleEventsLogged(t *testing.T) {
	ctx := testCtx(t)
	h := &recordingHandler{}
	marker := filepath.Join(t.TempDir(), "fail-now")
	p, err := procpool.New(procpool.WithProcesses(1), procpool.WithLogger(slog.New(h)),
		procpool.WithInitializer(initUnlessFile, marker), procpool.WithRestartLimit(2, time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	first, err := procpool.Apply(ctx, p, pid, 0)
	if err != nil {
		t.Fatal(err)
	}
	// A crash with one retry: the task runs twice, and fails.
	_, err = procpool.Apply(ctx, p, exitWith, 3, procpool.Retries(1))
	var we *procpool.WorkerExitError
	if !errors.As(err, &we) || we.Attempts != 2 {
		t.Fatalf("exitWith with a retry: %v; want a *WorkerExitError after 2 attempts", err)
	}
	// A timeout and a cancellation of running tasks.
	if _, err := procpool.Apply(ctx, p, sleepMs, 60_000, procpool.Timeout(100*time.Millisecond)); !errors.Is(err, procpool.ErrTimeout) {
		t.Fatalf("sleepMs past its timeout: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	fut, err := procpool.ApplyAsync(cctx, p, sleepMs, 60_000)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the task to run", func() bool { return p.Stats().Running == 1 && p.Stats().Queued == 0 })
	cancel()
	if _, err := fut.Get(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled task: %v", err)
	}
	// Break the pool: replacements fail their initializer.
	if err := os.WriteFile(marker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, _ = procpool.Apply(ctx, p, exitWith, 1)
	if _, err := procpool.Apply(ctx, p, square, 3); !errors.Is(err, procpool.ErrPoolBroken) {
		t.Fatalf("task on a crash-looping pool: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		msg   string
		attrs map[string]string
		level slog.Level
	}{
		{"worker started", map[string]string{"pid": fmt.Sprint(first)}, slog.LevelInfo},
		{"task retried", map[string]string{"func": "exitWith", "reason": procpool.ReasonCrashed, "retries_left": "0"}, slog.LevelInfo},
		{"worker exited", map[string]string{"reason": procpool.ReasonCrashed, "replaced": "true"}, slog.LevelWarn},
		{"worker exited", map[string]string{"reason": procpool.ReasonTimeout}, slog.LevelInfo},
		{"worker failed to start", nil, slog.LevelWarn},
		{"task timed out", map[string]string{"func": "sleepMs"}, slog.LevelInfo},
		{"task cancelled", map[string]string{"func": "sleepMs"}, slog.LevelInfo},
		{"pool broken", nil, slog.LevelError},
	} {
		got := h.find(c.msg, c.attrs)
		if len(got) == 0 {
			t.Errorf("no %q record with %v; records:%s", c.msg, c.attrs, h.dump())
			continue
		}
		if got[0].level != c.level {
			t.Errorf("%q %v: level %v, want %v", c.msg, c.attrs, got[0].level, c.level)
		}
	}
	// Exactly one retry of exactly one task, and one timeout.
	if n := len(h.find("task retried", nil)); n != 1 {
		t.Errorf("%d task retried records, want 1:%s", n, h.dump())
	}
	if n := len(h.find("task timed out", nil)); n != 1 {
		t.Errorf("%d task timed out records, want 1:%s", n, h.dump())
	}
}
