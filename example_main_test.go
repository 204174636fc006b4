//go:build unix

package procpool_test

import (
	"context"
	"fmt"
	"os"

	"github.com/procpool/procpool"
)

// workerPid returns the process id of the worker that runs it.
var workerPid = procpool.Register("example.workerPid", func(_ context.Context, _ int) (int, error) {
	return os.Getpid(), nil
})

// Main comes first in main: a worker is this same program started again,
// and Main is where it turns into one. Code above Main, and every init
// function and package-level variable, runs in the workers too; code below
// it runs in the parent only. The examples call Main first so that each
// reads as a program's main; in this test binary, TestMain has called it
// already, and here it returns at once, as it does in any parent.
func ExampleMain() {
	procpool.Main() // in a worker: serves tasks, then exits; never returns

	// From here on, only the parent runs.
	ctx := context.Background()
	p, err := procpool.New(procpool.WithProcesses(2))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Close()

	pid, err := procpool.Apply(ctx, p, workerPid, 0)
	fmt.Println("ran in another process:", err == nil && pid != os.Getpid())
	// Output: ran in another process: true
}
