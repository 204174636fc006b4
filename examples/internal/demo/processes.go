package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"time"

	"github.com/procpool/procpool"
)

// The environment through which Processes starts its one-off children.
const (
	envChild = "DEMO_CHILD"       // "1" in a child started by Processes
	envSleep = "DEMO_CHILD_SLEEP" // how long the child sleeps, as a time.Duration
	envTask  = "DEMO_CHILD_TASK"  // the task's number, for its line
)

// ChildMain must be called right after procpool.Main in a program that runs
// Processes. In a child process started by Processes it does the child's
// work (print its pid, sleep) and exits the process; in any other process it
// returns at once.
func ChildMain() {
	if os.Getenv(envChild) != "1" {
		return
	}
	d, err := time.ParseDuration(os.Getenv(envSleep))
	if err != nil {
		fmt.Fprintf(os.Stderr, "child %d: %s: %v\n", os.Getpid(), envSleep, err)
		os.Exit(2)
	}
	fmt.Printf("process %d: task %s\n", os.Getpid(), os.Getenv(envTask))
	time.Sleep(d)
	os.Exit(0)
}

// Processes runs 10 tasks that each print a pid and sleep, twice. First the
// way the tutorial starts: a loop that starts a new process per task
// (this program's own binary, run again with a marker in its environment
// that ChildMain recognises), then waits for all of them. Then the same
// work on a pool of 2 worker processes, started once and reused. It prints
// both wall-clock timings.
//
// The program must call ChildMain right after procpool.Main.
func Processes(ctx context.Context, w io.Writer, sleep time.Duration) error {
	const tasks = 10
	out, workers := outputs(w)
	exe, err := os.Executable()
	if err != nil {
		return err
	}

	fmt.Fprintf(out, "A loop that starts one process per task: %d processes, each sleeps %v.\n", tasks, sleep)
	start := time.Now()
	var cmds []*exec.Cmd
	var errs []error
	for i := range tasks {
		cmd := exec.CommandContext(ctx, exe)
		cmd.Env = append(os.Environ(),
			envChild+"=1",
			envSleep+"="+sleep.String(),
			envTask+"="+strconv.Itoa(i),
		)
		cmd.Stdout, cmd.Stderr = workers, os.Stderr
		if err := cmd.Start(); err != nil {
			errs = append(errs, err)
			break
		}
		cmds = append(cmds, cmd)
	}
	// Python's parent prints this and leaves its children running; Go's
	// waits for them, like Process.join().
	fmt.Fprintf(out, "parent %d: started %d processes, waiting for them\n", os.Getpid(), len(cmds))
	for _, cmd := range cmds {
		errs = append(errs, cmd.Wait())
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	loop := time.Since(start)

	fmt.Fprintf(out, "The same %d tasks on a pool of 2 processes, started once and reused.\n", tasks)
	start = time.Now()
	p, err := procpool.New(
		procpool.WithProcesses(2),
		procpool.WithStdout(workers),
		procpool.WithInitializer(setNap, sleep),
	)
	if err != nil {
		return err
	}
	defer p.Close()
	started := time.Since(start)
	var futures []*procpool.Future[struct{}]
	for i := range tasks {
		f, err := procpool.ApplyAsync(ctx, p, show, i)
		if err != nil {
			return err
		}
		futures = append(futures, f)
	}
	for _, f := range futures {
		if _, err := f.Get(ctx); err != nil {
			return err
		}
	}
	workersStarted := p.Stats().WorkersStarted
	if err := p.Close(); err != nil {
		return err
	}
	pooled := time.Since(start)

	fmt.Fprintf(out, "timings: one process per task: %v (%d processes started, all %d tasks at once)\n",
		round(loop), len(cmds), tasks)
	fmt.Fprintf(out, "         pool of 2: %v (%d processes started, in %v, then reused: 2 tasks at a time)\n",
		round(pooled), workersStarted, round(started))
	fmt.Fprintf(out, "The loop starts a process for every task, the pool only %d. With sleeps the loop ends first,\n"+
		"since it runs all %d tasks at once; with -sleep 0 what is left is the cost of starting processes.\n",
		workersStarted, tasks)
	return nil
}
