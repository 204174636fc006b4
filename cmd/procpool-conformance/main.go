//go:build unix

// Command procpool-conformance checks a procpool worker program, written in
// any language, against the worker protocol (docs/protocol.md):
//
//	go run ./cmd/procpool-conformance [flags] -- python3 worker.py
//
// The worker program must serve the functions of the conformance contract
// (conf.echo, conf.fail, conf.sleep, conf.exit, conf.len, conf.pid; see
// package conformance) and nothing else. The command prints one line per
// check (PASS, FAIL, WARN or SKIP, its name and, for all but a plain pass,
// what was seen), then a summary. It exits with status 0 if no check
// failed (warnings and skips allowed), 1 if one did, and 2 for a usage
// error or when the checks could not run (the program cannot be started).
//
// Flags:
//
//	-codec list   codecs to try, comma-separated (default cbor,json; msgpack is known too)
//	-run regexp   run only the checks whose names match (the hello checks always run)
//	-timeout d    how long to wait for anything the worker owes (default 10s)
//	-no-shm, -no-journal, -no-control
//	              do not offer shared memory, the journal or the control pipe
//	-output       copy the workers' stdout and stderr to this command's stderr
//	-list         list the checks and exit
//	-v            print the detail of passing checks too, and how long each check took
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"regexp"
	"strings"
	"syscall"
	"time"

	_ "github.com/procpool/procpool/codec/msgpack" // -codec msgpack
	"github.com/procpool/procpool/conformance"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is the command, with its arguments, output and error streams; it
// returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("procpool-conformance", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: procpool-conformance [flags] -- worker-program [args...]")
		fmt.Fprintln(stderr, "Checks a procpool worker against docs/protocol.md. Flags:")
		fs.PrintDefaults()
	}
	codecs := fs.String("codec", "cbor,json", "codecs to try, comma-separated, in order")
	filter := fs.String("run", "", "run only the checks whose names match this regular expression")
	timeout := fs.Duration("timeout", 10*time.Second, "how long to wait for anything the worker owes (hello, answer, exit)")
	noShm := fs.Bool("no-shm", false, "do not offer a shared-memory segment (PROCPOOL_SHM)")
	noJournal := fs.Bool("no-journal", false, "do not offer a journal (PROCPOOL_JOURNAL)")
	noControl := fs.Bool("no-control", false, "do not offer a control pipe (PROCPOOL_CONTROL)")
	output := fs.Bool("output", false, "copy the workers' stdout and stderr to stderr")
	list := fs.Bool("list", false, "list the checks and exit")
	verbose := fs.Bool("v", false, "print the detail of passing checks too")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *list {
		for _, c := range conformance.Checks() {
			fmt.Fprintf(stdout, "%-30s %s\n%-30s (protocol.md: %s)\n", c.Name, c.Summary, "", c.Rule)
		}
		return 0
	}
	command := fs.Args()
	if len(command) == 0 {
		fmt.Fprintln(stderr, "procpool-conformance: no worker program given")
		fs.Usage()
		return 2
	}
	if *timeout <= 0 {
		fmt.Fprintln(stderr, "procpool-conformance: -timeout must be positive")
		return 2
	}
	cfg := conformance.Config{
		Command:        command,
		Timeout:        *timeout,
		NoSharedMemory: *noShm,
		NoJournal:      *noJournal,
		NoControl:      *noControl,
	}
	for _, c := range strings.Split(*codecs, ",") {
		if c = strings.TrimSpace(c); c != "" {
			cfg.Codecs = append(cfg.Codecs, c)
		}
	}
	if len(cfg.Codecs) == 0 {
		fmt.Fprintln(stderr, "procpool-conformance: -codec names no codec")
		return 2
	}
	if *filter != "" {
		re, err := regexp.Compile(*filter)
		if err != nil {
			fmt.Fprintf(stderr, "procpool-conformance: -run: %v\n", err)
			return 2
		}
		cfg.Filter = re.MatchString
	}
	if *output {
		cfg.Output = stderr
	}
	rep, err := conformance.Run(ctx, cfg)
	if rep != nil {
		printReport(stdout, rep, *verbose)
	}
	if err != nil {
		fmt.Fprintf(stderr, "procpool-conformance: %v\n", err)
		if errors.Is(err, context.Canceled) {
			return 1
		}
		return 2
	}
	if !rep.OK() {
		return 1
	}
	return 0
}

// printReport writes one line per check, with its detail indented below where
// there is one to show, and the summary.
func printReport(w io.Writer, rep *conformance.Report, verbose bool) {
	for _, r := range rep.Results {
		if verbose {
			fmt.Fprintf(w, "%s  %s  (%v)\n", strings.ToUpper(r.Status.String()), r.Name, r.Took.Round(time.Millisecond))
		} else {
			fmt.Fprintf(w, "%s  %s\n", strings.ToUpper(r.Status.String()), r.Name)
		}
		if r.Detail != "" && (r.Status != conformance.Pass || verbose) {
			fmt.Fprintf(w, "      %s\n", strings.ReplaceAll(r.Detail, "\n", "\n      "))
		}
		if r.Status == conformance.Fail || r.Status == conformance.Warn {
			fmt.Fprintf(w, "      (protocol.md: %s)\n", r.Rule)
		}
	}
	verdict := "conforms"
	if !rep.OK() {
		verdict = "DOES NOT CONFORM"
	}
	codecs := strings.Join(rep.Codecs, ", ")
	if codecs == "" {
		codecs = "none"
	}
	fmt.Fprintf(w, "\n%s: %s — %d passed, %d failed, %d warnings, %d skipped (codecs: %s)\n",
		strings.Join(rep.Command, " "), verdict, rep.Count(conformance.Pass), rep.Count(conformance.Fail), rep.Count(conformance.Warn), rep.Count(conformance.Skip), codecs)
}
