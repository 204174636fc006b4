// Package procprom exports a procpool.Pool's statistics as Prometheus
// metrics: a prometheus.Collector that reads Pool.Stats at each scrape.
// It lives in a package of its own so that programs that use procpool
// without Prometheus do not link its client library.
//
//	reg := prometheus.NewRegistry()
//	reg.MustRegister(procprom.NewCollector(pool, procprom.WithPoolName("resize")))
//	http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
package procprom

import (
	"github.com/procpool/procpool"
	"github.com/prometheus/client_golang/prometheus"
)

// Metric names, all under the namespace "procpool". Counters end in
// _total; every metric carries the constant label pool when WithPoolName
// gives one.
const (
	namespace = "procpool"
)

// An Option configures a Collector.
type Option func(*config)

type config struct {
	pool string
}

// WithPoolName adds the constant label pool="name" to every metric, so
// that the collectors of several pools can share a registry.
func WithPoolName(name string) Option { return func(c *config) { c.pool = name } }

// Collector is a prometheus.Collector of one pool's statistics. Each
// Collect calls Pool.Stats once (a few short lock holds in the pool, and
// an allocation per live worker); Describe costs nothing. Collect never
// blocks on tasks, and is safe to call after the pool has closed (it then
// reports the final counts and no workers).
type Collector struct {
	p     *procpool.Pool
	descs descs
}

type descs struct {
	submitted, ended, retried, stoppedClean *prometheus.Desc
	queued, running                         *prometheus.Desc
	workers, workersStarted, restarts       *prometheus.Desc
	exits, callbackPanics, rss              *prometheus.Desc
}

// NewCollector returns a Collector for p; register it with a
// prometheus.Registerer. It does not start anything.
func NewCollector(p *procpool.Pool, opts ...Option) *Collector {
	var c config
	for _, o := range opts {
		o(&c)
	}
	var labels prometheus.Labels
	if c.pool != "" {
		labels = prometheus.Labels{"pool": c.pool}
	}
	d := func(name, help string, vars ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, "", name), help, vars, labels)
	}
	return &Collector{p: p, descs: descs{
		submitted:      d("tasks_submitted_total", "Tasks accepted by the pool (a chunk of a Map counts as one task)."),
		ended:          d("tasks_ended_total", "Tasks that ended, by outcome: succeeded, failed, cancelled, timed_out, terminated.", "outcome"),
		retried:        d("tasks_retried_total", "Restarts of tasks after a crash or a timeout."),
		stoppedClean:   d("tasks_stopped_clean_total", "Stops (cancel, deadline, memory limit) after which the worker lived on."),
		queued:         d("tasks_queued", "Tasks waiting for a worker."),
		running:        d("tasks_running", "Tasks on workers (running or in their pipes), or ending now."),
		workers:        d("workers", "Live workers, by state: busy (a task given to it is unanswered) or idle.", "state"),
		workersStarted: d("workers_started_total", "Worker processes started, replacements included."),
		restarts:       d("worker_restarts_total", "Workers started to replace one that exited."),
		exits:          d("worker_exits_total", "Worker exits, by reason (crashed, killed by signal, timeout, cancelled, memory limit, recycled, ...).", "reason"),
		callbackPanics: d("callback_panics_total", "Callbacks that panicked."),
		rss:            d("workers_resident_memory_bytes", "Resident memory of the live workers, summed, at their last reading (0 unless WithMaxWorkerMemory reads it)."),
	}}
}

// Describe sends the descriptors of every metric the Collector exports.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	d := &c.descs
	for _, x := range []*prometheus.Desc{d.submitted, d.ended, d.retried, d.stoppedClean, d.queued, d.running,
		d.workers, d.workersStarted, d.restarts, d.exits, d.callbackPanics, d.rss} {
		ch <- x
	}
}

// Collect reads the pool's Stats and sends its metrics.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	s := c.p.Stats()
	d := &c.descs
	counter := func(desc *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(desc *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, float64(v), labels...)
	}
	counter(d.submitted, s.Submitted)
	counter(d.ended, s.Succeeded, "succeeded")
	counter(d.ended, s.Failed, "failed")
	counter(d.ended, s.Cancelled, "cancelled")
	counter(d.ended, s.TimedOut, "timed_out")
	counter(d.ended, s.Terminated, "terminated")
	counter(d.retried, s.Retried)
	counter(d.stoppedClean, s.StoppedClean)
	gauge(d.queued, int64(s.Queued))
	gauge(d.running, int64(s.Running))
	var busy, idle, rss int64
	for _, w := range s.Workers {
		if w.InFlight > 0 {
			busy++
		} else {
			idle++
		}
		rss += w.RSS
	}
	gauge(d.workers, busy, "busy")
	gauge(d.workers, idle, "idle")
	counter(d.workersStarted, s.WorkersStarted)
	counter(d.restarts, s.Restarts)
	for reason, n := range s.WorkerExits {
		counter(d.exits, n, reason)
	}
	counter(d.callbackPanics, s.CallbackPanics)
	gauge(d.rss, rss)
}

var _ prometheus.Collector = (*Collector)(nil)
