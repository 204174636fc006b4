package procprom_test

import (
	"context"
	"errors"
	"os"
	"runtime"
	"testing"

	"github.com/procpool/procpool"
	"github.com/procpool/procpool/procprom"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"
)

var (
	square = procpool.Register("procprom.square", func(_ context.Context, x int) (int, error) { return x * x, nil })
	fail   = procpool.Register("procprom.fail", func(_ context.Context, x int) (int, error) { return 0, errors.New("failed by design") })
	exit   = procpool.Register("procprom.exit", func(_ context.Context, code int) (int, error) { os.Exit(code); return 0, nil })
)

func TestMain(m *testing.M) {
	procpool.Main()
	goleak.VerifyTestMain(m)
}

// After a known set of tasks, a registry gathers every metric family with
// the counts those tasks make.
func TestCollector(t *testing.T) {
	ctx := context.Background()
	p, err := procpool.New(procpool.WithProcesses(2))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for i := range 10 {
		if v, err := procpool.Apply(ctx, p, square, i); err != nil || v != i*i {
			t.Fatalf("square(%d) = %d, %v", i, v, err)
		}
	}
	for i := range 3 {
		if _, err := procpool.Apply(ctx, p, fail, i); err == nil {
			t.Fatal("fail succeeded")
		}
	}
	var we *procpool.WorkerExitError
	if _, err := procpool.Apply(ctx, p, exit, 3); !errors.As(err, &we) {
		t.Fatalf("exit: %v", err)
	}
	if _, err := procpool.Map(ctx, p, square, make([]int, 64), procpool.ChunkSize(1)); err != nil {
		t.Fatal(err)
	}
	// Wait for the replacement to be in service (its start is not timed).
	for len(p.Stats().Workers) < 2 {
		runtime.Gosched()
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(procprom.NewCollector(p, procprom.WithPoolName("test")))
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			key := f.GetName()
			for _, l := range m.GetLabel() {
				if l.GetName() == "pool" {
					if l.GetValue() != "test" {
						t.Errorf("%s: pool label %q", key, l.GetValue())
					}
					continue
				}
				key += "{" + l.GetName() + "=" + l.GetValue() + "}"
			}
			got[key] = value(m)
		}
	}
	for key, want := range map[string]float64{
		"procpool_tasks_submitted_total":                 10 + 3 + 1 + 64,
		"procpool_tasks_ended_total{outcome=succeeded}":  10 + 64,
		"procpool_tasks_ended_total{outcome=failed}":     3 + 1,
		"procpool_tasks_ended_total{outcome=cancelled}":  0,
		"procpool_tasks_ended_total{outcome=timed_out}":  0,
		"procpool_tasks_ended_total{outcome=terminated}": 0,
		"procpool_tasks_retried_total":                   0,
		"procpool_tasks_queued":                          0,
		"procpool_tasks_running":                         0,
		"procpool_workers{state=busy}":                   0,
		"procpool_workers{state=idle}":                   2,
		"procpool_workers_started_total":                 3,
		"procpool_worker_restarts_total":                 1,
		"procpool_worker_exits_total{reason=crashed}":    1,
		"procpool_callback_panics_total":                 0,
		"procpool_tasks_stopped_clean_total":             0,
		"procpool_workers_resident_memory_bytes":         0,
	} {
		if v, ok := got[key]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", key, v, ok, want)
		}
	}
	if len(got) != 17 {
		t.Errorf("%d series, want 17: %v", len(got), got)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	// After Close: the final counts, no workers.
	if n, err := prometheusCount(reg, "procpool_workers"); err != nil || n != 0 {
		t.Errorf("workers after Close: %v, %v", n, err)
	}
}

func prometheusCount(reg *prometheus.Registry, name string) (float64, error) {
	fams, err := reg.Gather()
	if err != nil {
		return 0, err
	}
	sum := 0.0
	for _, f := range fams {
		if f.GetName() == name {
			for _, m := range f.GetMetric() {
				sum += value(m)
			}
		}
	}
	return sum, nil
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	return -1
}

// Two pools' collectors share a registry when named.
func TestTwoPools(t *testing.T) {
	a, _ := procpool.New(procpool.WithProcesses(1), procpool.WithInProcess())
	b, _ := procpool.New(procpool.WithProcesses(1), procpool.WithInProcess())
	defer a.Close()
	defer b.Close()
	reg := prometheus.NewRegistry()
	if err := reg.Register(procprom.NewCollector(a, procprom.WithPoolName("a"))); err != nil {
		t.Fatal(err)
	}
	if err := reg.Register(procprom.NewCollector(b, procprom.WithPoolName("b"))); err != nil {
		t.Fatal(err)
	}
	if _, err := procpool.Apply(context.Background(), a, square, 3); err != nil {
		t.Fatal(err)
	}
	if n, err := prometheusCount(reg, "procpool_tasks_submitted_total"); err != nil || n != 1 {
		t.Fatalf("submitted over both pools: %v, %v", n, err)
	}
}
