//go:build unix

// Command python calls Python functions from Go: a pool of python3
// processes running textstats.py (beside this file) with the worker module
// workers/python/procpool_worker.py, and text statistics computed there
// with Python's standard library.
//
//	go run ./examples/python
//
// Where python3 is missing it says so and exits with status 0.
package main

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/procpool/procpool"
)

// The worker script, written to a temporary directory at run time, so that
// the program runs from any directory.
//
//go:embed textstats.py
var textstats []byte

// Doc is a document; Python gets it as a dict with these keys.
type Doc struct {
	Name string
	Text string
}

// Stats is what text.stats returns: a Python dict with these keys.
type Stats struct {
	Name     string
	Lines    int
	Words    int
	Distinct int
	Top      []string
	Pid      int
}

// The functions only the Python workers implement.
var (
	stats = procpool.Declare[Doc, Stats]("text.stats")
	check = procpool.Declare[string, int]("text.check")
)

var docs = []Doc{
	{"hamlet", "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\nThe slings and arrows of outrageous fortune,\nOr to take arms against a sea of troubles\n"},
	{"sonnet", "Shall I compare thee to a summer's day?\nThou art more lovely and more temperate:\nRough winds do shake the darling buds of May,\nAnd summer's lease hath all too short a date;\n"},
	{"raven", "Once upon a midnight dreary, while I pondered, weak and weary,\nOver many a quaint and curious volume of forgotten lore—\nWhile I nodded, nearly napping, suddenly there came a tapping,\nAs of some one gently rapping, rapping at my chamber door.\n"},
	{"tyger", "Tyger Tyger, burning bright,\nIn the forests of the night;\nWhat immortal hand or eye,\nCould frame thy fearful symmetry?\n"},
}

func main() {
	procpool.Main() // this program's own workers are not used; Main is harmless
	python, err := exec.LookPath("python3")
	if err != nil {
		fmt.Println("python3 is not installed: this example needs it to start its Python workers. Nothing to do.")
		return
	}
	if err := run(context.Background(), os.Stdout, python); err != nil {
		fmt.Fprintln(os.Stderr, "python example:", err)
		os.Exit(1)
	}
}

// run starts a pool of two Python workers and prints what they compute.
func run(ctx context.Context, out io.Writer, python string) error {
	module, err := workerModule()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "procpool-python-example-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	script := filepath.Join(dir, "textstats.py")
	if err := os.WriteFile(script, textstats, 0o644); err != nil {
		return err
	}

	// procpool_worker.py SCRIPT imports the script's functions, then serves.
	p, err := procpool.New(procpool.WithCommand(python, module, script), procpool.WithProcesses(2))
	if err != nil {
		return err
	}
	defer p.Close()

	all, err := procpool.Map(ctx, p, stats, docs, procpool.ChunkSize(1))
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "%-8s %5s %5s %8s  %-28s %s\n", "doc", "lines", "words", "distinct", "most common (> 3 letters)", "worker pid")
	for _, s := range all {
		fmt.Fprintf(out, "%-8s %5d %5d %8d  %-28s %d\n", s.Name, s.Lines, s.Words, s.Distinct, strings.Join(s.Top, ", "), s.Pid)
	}
	var pids []string
	for _, w := range p.Stats().Workers {
		pids = append(pids, fmt.Sprint(w.Pid))
	}
	fmt.Fprintf(out, "workers: %s (this program: %d)\n", strings.Join(pids, ", "), os.Getpid())

	// A Python exception comes back as a *procpool.RemoteError.
	_, err = procpool.Apply(ctx, p, check, "   ")
	var re *procpool.RemoteError
	if !errors.As(err, &re) {
		return fmt.Errorf("text.check of an empty document: %v, want a *procpool.RemoteError", err)
	}
	fmt.Fprintf(out, "text.check(\"   \") raised %s: %s\n", re.Type, re.Message)
	return p.Close()
}

// workerModule finds workers/python/procpool_worker.py from this source
// file's place in the repository, or above the working directory.
func workerModule() (string, error) {
	var roots []string
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		roots = append(roots, filepath.Join(filepath.Dir(file), "..", ".."))
	}
	if wd, err := os.Getwd(); err == nil {
		for d := wd; ; d = filepath.Dir(d) {
			roots = append(roots, d)
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	for _, r := range roots {
		p := filepath.Join(r, "workers", "python", "procpool_worker.py")
		if _, err := os.Stat(p); err == nil {
			return filepath.Clean(p), nil
		}
	}
	return "", errors.New("workers/python/procpool_worker.py not found: run the example from the procpool repository")
}
