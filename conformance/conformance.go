//go:build unix

// Package conformance checks a procpool worker written in any language
// against the worker protocol, docs/protocol.md.
//
// The kit plays the parent: it starts the worker program with the
// environment and descriptors a pool gives it (PROCPOOL_WORKER=1,
// PROCPOOL_CODEC, PROCPOOL_MAX_FRAME, PROCPOOL_RLIMITS,
// PROCPOOL_KILL_GRACE, the task and result pipes on fds 3 and 4, and,
// unless told not to, shared memory on fd 5, a journal on fd 6 and a
// control pipe on fd 7), in a process group of its own, and sends it
// frames that exercise one rule of the protocol at a time. Each check
// starts a fresh worker, so that one broken rule does not hide another.
//
// The worker program must serve the functions of the conformance contract,
// under exactly these names, and nothing else:
//
//   - conf.echo returns its argument unchanged;
//   - conf.fail fails with an error whose message is exactly its argument;
//   - conf.sleep waits its argument's number of milliseconds (interrupted
//     by a stop of its task where the language allows it), then returns
//     the argument;
//   - conf.exit exits the process at once with its argument as status;
//   - conf.len returns the length of its argument: bytes of a byte string,
//     code points of a text string;
//   - conf.pid returns the worker's process id.
//
// A check passes, fails, warns (a rule that protocol.md says a worker
// should follow, not must) or is skipped (an optional part the worker does
// not offer, such as the journal, or a codec it does not know). Only what
// protocol.md says a worker must do fails a worker; a worker that claims an
// optional part (the journal, the control pipe) must follow its rules to
// the letter.
//
// The only times in the kit are bounds on waiting for something the worker
// owes: an answer, its exit (Config.Timeout, 10 s by default). A broken
// worker cannot hang the kit, and a slow one fails only if it is that slow.
// The kit needs Linux (memfd_create, /proc).
//
// Run returns a Report; Test runs the checks from a Go test, one subtest
// each; cmd/procpool-conformance runs them from the command line.
package conformance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/procpool/procpool/internal/supervise"
)

// Config says which worker to check and how.
type Config struct {
	// Command is the worker program and its arguments, e.g.
	// {"python3", "worker.py"}. The first element is looked up in PATH
	// as exec.Command does. Required.
	Command []string
	// Env holds extra environment entries ("KEY=value") for the worker,
	// after the kit's own environment (less its PROCPOOL_ variables) and
	// before the protocol's variables.
	Env []string
	// Dir is the worker's working directory; empty means the kit's.
	Dir string
	// Codecs are the codecs to try, by name, in order; nil means "cbor"
	// and "json". The first one the worker knows is used for the checks
	// that are not about codecs. A codec the kit itself does not know
	// (not registered with codec.Register in this program) is reported
	// as skipped.
	Codecs []string
	// Timeout bounds each wait for something the worker owes: its hello,
	// an answer, its exit. Zero means 10 seconds. A worker that is
	// slower than this fails the check that waits.
	Timeout time.Duration
	// SharedMemory is the size of the shared-memory segment offered on
	// fd 5; zero means 16 MiB, as a pool's default. Sizes below 1 MiB are
	// raised to 1 MiB, which the checks need.
	SharedMemory int
	// NoSharedMemory, NoJournal and NoControl keep the kit from offering
	// the shared-memory segment, the journal or the control pipe, as a
	// pool that cannot make them does: the checks of that part are then
	// skipped.
	NoSharedMemory, NoJournal, NoControl bool
	// Filter, if not nil, selects the checks to run by name; the hello
	// checks always run, since the others need their findings.
	Filter func(name string) bool
	// Output, if not nil, receives everything the workers write on
	// their stdout and stderr. The kit keeps the last 2 KiB of each
	// worker's output either way, and quotes it in a failed check's
	// detail.
	Output io.Writer
}

// Status is the outcome of one check.
type Status int

// The outcomes of a check.
const (
	Pass Status = iota // the worker follows the rule
	Fail               // it breaks a rule that protocol.md says a worker must follow
	Warn               // it breaks a rule that protocol.md says a worker should follow
	Skip               // the check does not apply: a part the worker or the kit does not offer
)

// String returns "pass", "fail", "warn" or "skip".
func (s Status) String() string {
	switch s {
	case Pass:
		return "pass"
	case Fail:
		return "fail"
	case Warn:
		return "warn"
	case Skip:
		return "skip"
	}
	return fmt.Sprintf("Status(%d)", int(s))
}

// Result is the outcome of one check.
type Result struct {
	Name   string // e.g. "hello/cbor", "task/order"
	Rule   string // the section of docs/protocol.md the check enforces
	Status Status
	// Detail says what was seen: for a failure, which rule was broken and
	// how (with the tail of the worker's output, if it wrote any); for a
	// skip, why; for a pass, sometimes which of the allowed behaviours
	// the worker chose.
	Detail string
	// Took is how long the check ran, worker starts included.
	Took time.Duration
}

// Report is the outcome of a run of the kit.
type Report struct {
	Command []string
	// Codecs are the codecs the worker knows, among those tried, in the
	// order tried.
	Codecs  []string
	Results []Result
}

// OK reports whether no check failed (warnings and skips are allowed).
func (r *Report) OK() bool { return len(r.Failed()) == 0 }

// Failed returns the failed checks, in the order they ran.
func (r *Report) Failed() []Result {
	var out []Result
	for _, res := range r.Results {
		if res.Status == Fail {
			out = append(out, res)
		}
	}
	return out
}

// Lookup returns the result of the check named name.
func (r *Report) Lookup(name string) (Result, bool) {
	for _, res := range r.Results {
		if res.Name == name {
			return res, true
		}
	}
	return Result{}, false
}

// Count returns how many checks ended with status s.
func (r *Report) Count(s Status) int {
	n := 0
	for _, res := range r.Results {
		if res.Status == s {
			n++
		}
	}
	return n
}

// ErrNoCommand is returned by Run for a Config without a Command.
var ErrNoCommand = errors.New("conformance: Config.Command is empty")

// Run checks the worker that cfg names and returns the report. It blocks
// until every check has run: each starts a worker process and waits for
// what the worker owes it, each wait bounded by cfg.Timeout, so a broken
// worker costs at most a few timeouts per check and a conforming one a
// few seconds in all (the longest checks wait for tasks that sleep a
// fraction of a second). Every process the kit starts is killed and
// reaped before Run returns.
//
// Run returns an error, and the checks run so far, only if it cannot run
// the checks: ErrNoCommand, a worker program that cannot be started, a
// failure to make a pipe or memory file, or ctx's error once ctx is done.
// A worker that breaks the protocol is not an error: its report says so.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if len(cfg.Command) == 0 || cfg.Command[0] == "" {
		return nil, ErrNoCommand
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.SharedMemory <= 0 {
		cfg.SharedMemory = defaultShm
	}
	cfg.SharedMemory = max(cfg.SharedMemory, 1<<20)
	if cfg.Codecs == nil {
		cfg.Codecs = []string{"cbor", "json"}
	}
	k := &kit{cfg: cfg, spawner: supervise.NewSpawner(), report: &Report{Command: append([]string(nil), cfg.Command...)}}
	defer k.spawner.Stop()
	err := k.run(ctx)
	return k.report, err
}

// Test runs the checks against the worker that cfg names, from a Go test:
// each check is a subtest of t named as the check, which fails for a
// failed check, logs a warning, and is skipped for a skipped check. It
// fails t at once if the checks cannot run (see Run). It blocks as Run
// does, and stops early once t's context is done.
func Test(t *testing.T, cfg Config) {
	t.Helper()
	rep, err := Run(t.Context(), cfg)
	if err != nil {
		t.Fatalf("conformance: %v", err)
	}
	for _, r := range rep.Results {
		t.Run(r.Name, func(t *testing.T) {
			switch r.Status {
			case Fail:
				t.Errorf("%s\n(protocol.md: %s)", r.Detail, r.Rule)
			case Warn:
				t.Logf("warning: %s\n(protocol.md: %s)", r.Detail, r.Rule)
			case Skip:
				t.Skip(r.Detail)
			default:
				if r.Detail != "" {
					t.Log(r.Detail)
				}
			}
		})
	}
}

// kit is one run of the checks.
type kit struct {
	cfg     Config
	spawner *supervise.Spawner
	report  *Report

	primary string // the codec the other checks use
	// What the primary codec's hello claimed, for the checks of optional
	// parts.
	claimsJournal, claimsControl bool
	// recordsItems is set once the worker was seen recording chunk items
	// in its journal (journal/chunk-items), which makes flag 0x04 a must.
	recordsItems bool
	// What probeItems found, once.
	itemsProbed bool
	itemsDetail string
	itemsErr    error
}

// outcome is what a check returns when it does not simply pass.
type outcome struct {
	status Status
	detail string
}

func (o *outcome) Error() string { return o.status.String() + ": " + o.detail }

func failf(format string, args ...any) error {
	return &outcome{Fail, fmt.Sprintf(format, args...)}
}

func warnf(format string, args ...any) error {
	return &outcome{Warn, fmt.Sprintf(format, args...)}
}

func skipf(format string, args ...any) error {
	return &outcome{Skip, fmt.Sprintf(format, args...)}
}

// passf is a pass with a detail worth reporting.
func passf(format string, args ...any) error {
	return &outcome{Pass, fmt.Sprintf(format, args...)}
}

// record adds a check's outcome to the report.
func (k *kit) record(name, rule string, began time.Time, err error) {
	r := Result{Name: name, Rule: rule, Took: time.Since(began)}
	var o *outcome
	switch {
	case err == nil:
		r.Status = Pass
	case errors.As(err, &o):
		r.Status, r.Detail = o.status, o.detail
	default:
		r.Status, r.Detail = Fail, err.Error()
	}
	k.report.Results = append(k.report.Results, r)
}

func (k *kit) run(ctx context.Context) error {
	// The handshake in each codec: which ones the worker knows.
	for _, name := range k.cfg.Codecs {
		began := time.Now()
		err := k.checkHello(ctx, name)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if isSetup(err) {
			return err
		}
		k.record("hello/"+name, "hello (1)", began, err)
		if err == nil || isStatus(err, Pass) {
			k.report.Codecs = append(k.report.Codecs, name)
		}
	}
	if len(k.report.Codecs) == 0 {
		k.record("codecs", "Starting a worker", time.Now(), failf("the worker passed the handshake in none of the codecs tried (%s): a worker must know at least one", strings.Join(k.cfg.Codecs, ", ")))
		for _, c := range checks {
			if k.selected(c.name) {
				k.record(c.name, c.rule, time.Now(), skipf("no codec passed the handshake"))
			}
		}
		return nil
	}
	k.primary = k.report.Codecs[0]
	k.record("codecs", "Starting a worker", time.Now(), passf("the worker knows %s; the checks that are not about codecs use %s", strings.Join(k.report.Codecs, " and "), k.primary))
	for _, c := range checks {
		if c.perCodec {
			for _, name := range k.report.Codecs {
				full := strings.Replace(c.name, "<codec>", name, 1)
				if !k.selected(full) {
					continue
				}
				began := time.Now()
				err := c.run(ctx, k, name)
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if isSetup(err) {
					return err
				}
				k.record(full, c.rule, began, err)
			}
			continue
		}
		if !k.selected(c.name) {
			continue
		}
		began := time.Now()
		err := c.run(ctx, k, k.primary)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if isSetup(err) {
			return err
		}
		k.record(c.name, c.rule, began, err)
	}
	return nil
}

func (k *kit) selected(name string) bool { return k.cfg.Filter == nil || k.cfg.Filter(name) }

// isSetup reports whether err is the kit's own failure to run a check
// (not an outcome of the check).
func isSetup(err error) bool {
	var o *outcome
	return err != nil && !errors.As(err, &o)
}

func isStatus(err error, s Status) bool {
	var o *outcome
	return errors.As(err, &o) && o.status == s
}

// CheckInfo describes one check, for listings.
type CheckInfo struct {
	Name    string // "<codec>" stands for each codec the worker knows
	Rule    string // the section of docs/protocol.md it enforces
	Summary string
}

// Checks lists the checks Run runs, in order (the hello checks, one per
// codec tried, and the codecs summary come first).
func Checks() []CheckInfo {
	out := []CheckInfo{
		{"hello/<codec>", "hello (1)", "the first frame is a hello: protocol 1, pid, codec = PROCPOOL_CODEC (or \"\" for a codec the worker does not know), functions naming the six conf.* functions; journal, control and fingerprints well formed if present"},
		{"codecs", "Starting a worker", "the worker knows at least one of the codecs tried"},
	}
	for _, c := range checks {
		out = append(out, CheckInfo{c.name, c.rule, c.summary})
	}
	return out
}
