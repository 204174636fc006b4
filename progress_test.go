//go:build unix

package procpool_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/procpool/procpool"
)

// progressLog collects the reports of OnProgress.
type progressLog struct {
	mu   sync.Mutex
	reps []procpool.Progress
}

func (l *progressLog) add(p procpool.Progress) {
	l.mu.Lock()
	l.reps = append(l.reps, p)
	l.mu.Unlock()
}

func (l *progressLog) get() []procpool.Progress {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]procpool.Progress(nil), l.reps...)
}

// check verifies the reports of a call of total items, failed of them
// failing: counts never decrease or pass the total, the total is the
// call's once known (always, for a Map), and exactly one report, the
// last, has every item ended.
func (l *progressLog) check(t *testing.T, total, failed int, knownTotal bool) {
	t.Helper()
	reps := l.get()
	if len(reps) == 0 {
		t.Fatal("no progress report")
	}
	prev := procpool.Progress{Total: -1}
	finals := 0
	for i, r := range reps {
		if r.Done < prev.Done || r.Failed < prev.Failed || r.Failed > r.Done || r.Done > total {
			t.Fatalf("report %d: %+v after %+v (total %d)", i, r, prev, total)
		}
		if r.Total != total && (knownTotal || r.Total != -1 || prev.Total == total) {
			t.Fatalf("report %d: total %d, want %d", i, r.Total, total)
		}
		if r.Done == total && r.Total == total {
			finals++
		}
		prev = r
	}
	last := reps[len(reps)-1]
	if finals != 1 || last != (procpool.Progress{Done: total, Failed: failed, Total: total}) {
		t.Fatalf("%d final reports, last %+v; want exactly one, {%d %d %d}: %+v", finals, last, total, failed, total, reps)
	}
}

func TestProgressMap(t *testing.T) {
	ctx := testCtx(t)
	p := newPool(t, procpool.WithProcesses(2))
	xs := make([]int, 1000)
	for i := range xs {
		xs[i] = i
	}
	var l progressLog
	out, err := procpool.Map(ctx, p, square, xs, procpool.ChunkSize(7), procpool.OnProgress(l.add, time.Nanosecond))
	if err != nil || len(out) != 1000 || out[999] != 999*999 {
		t.Fatalf("Map: %d results, %v", len(out), err)
	}
	// Map returned after its final report.
	l.check(t, 1000, 0, true)

	// Failing items are counted as failed; MapAsync's Future is ready
	// after the final report too.
	var lf progressLog
	fut, err := procpool.MapAsync(ctx, p, failing, xs[:100], procpool.ChunkSize(9), procpool.OnProgress(lf.add, 0))
	if err != nil {
		t.Fatal(err)
	}
	var me *procpool.MapError
	if _, err := fut.Get(ctx); !errors.As(err, &me) || len(me.Errors) != 34 {
		t.Fatalf("MapAsync of failing: %v", err)
	}
	lf.check(t, 100, 34, true)

	// No items: one report, final.
	var le progressLog
	if _, err := procpool.Map(ctx, p, square, nil, procpool.OnProgress(le.add, 0)); err != nil {
		t.Fatal(err)
	}
	le.check(t, 0, 0, true)
}

// The interval bounds the reports: with an hour, the first chunk's report
// and the final one are all there is.
func TestProgressRateBound(t *testing.T) {
	ctx := testCtx(t)
	p := newPool(t, procpool.WithProcesses(2))
	xs := make([]int, 500)
	var l progressLog
	if _, err := procpool.Map(ctx, p, square, xs, procpool.ChunkSize(1), procpool.OnProgress(l.add, time.Hour)); err != nil {
		t.Fatal(err)
	}
	if reps := l.get(); len(reps) > 2 {
		t.Fatalf("%d reports within an hour's interval, want at most 2: %+v", len(reps), reps)
	}
	l.check(t, 500, 0, true)
}

func TestProgressImap(t *testing.T) {
	for _, ordered := range []bool{true, false} {
		ctx := testCtx(t)
		p := newPool(t, procpool.WithProcesses(2))
		seq := func(yield func(int) bool) {
			for i := range 500 {
				if !yield(i) {
					return
				}
			}
		}
		var l progressLog
		imap := procpool.Imap[int, int]
		if !ordered {
			imap = procpool.ImapUnordered[int, int]
		}
		n := 0
		for _, err := range imap(ctx, p, failing, seq, procpool.ChunkSize(6), procpool.OnProgress(l.add, time.Nanosecond)) {
			_ = err
			n++
		}
		if n != 500 {
			t.Fatalf("ordered %v: %d outcomes", ordered, n)
		}
		// The final report may come after the loop: Close waits for it.
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		l.check(t, 500, 167, false)
	}
}

// Items of a chunk whose worker crashes in the middle are counted once
// each: those done before the crash, the one that crashed (failed), and
// the rest, run again elsewhere.
func TestProgressChunkCrash(t *testing.T) {
	ctx := testCtx(t)
	p := newPool(t, procpool.WithProcesses(2))
	dir := t.TempDir()
	args := make([]runArg, 40)
	for i := range args {
		args[i] = runArg{Path: filepath.Join(dir, fmt.Sprint("run", i))}
	}
	args[13].Then = "exit"
	var l progressLog
	out, err := procpool.Map(ctx, p, countRun, args, procpool.ChunkSize(20), procpool.Retries(0), procpool.OnProgress(l.add, time.Nanosecond))
	var me *procpool.MapError
	if !errors.As(err, &me) || len(me.Errors) != 1 || me.Errors[0].Index != 13 {
		t.Fatalf("Map with an item that exits: %v", err)
	}
	for i, a := range args {
		b, _ := os.ReadFile(a.Path)
		if runs := strings.Count(string(b), "run\n"); runs != 1 || i != 13 && out[i] != 1 {
			t.Fatalf("item %d ran %d times, result %d", i, runs, out[i])
		}
	}
	l.check(t, 40, 1, true)
}

func TestProgressInvalid(t *testing.T) {
	p := newPool(t, procpool.WithProcesses(1), procpool.WithInProcess())
	_, err := procpool.Map(context.Background(), p, square, []int{1}, procpool.OnProgress(func(procpool.Progress) {}, -time.Second))
	var oe *procpool.OptionError
	if !errors.As(err, &oe) || !errors.Is(err, procpool.ErrInvalidOption) {
		t.Fatalf("OnProgress with a negative interval: %v", err)
	}
}

// A Map with OnProgress called from a callback returns once its ctx ends
// (found by review: it waited for the callback queue it was blocking), and
// the pool closes afterwards.
func TestProgressMapFromCallback(t *testing.T) {
	p := newPool(t, procpool.WithProcesses(1))
	ret := make(chan error, 1)
	if _, err := procpool.ApplyAsync(context.Background(), p, square, 2, procpool.Callback(func(int) {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		_, err := procpool.Map(ctx, p, square, []int{1, 2, 3}, procpool.OnProgress(func(procpool.Progress) {}, 0))
		ret <- err
	})); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-ret:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Map from a callback: %v, want the context's deadline", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Map with OnProgress from a callback never returned")
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
}
