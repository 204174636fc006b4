//go:build unix

package procpool_test

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/procpool/procpool"
)

// shout is run by the workers. Like every function a pool runs, it is
// registered at package level, so that the parent and every worker (the
// same program, started again) know it by its name.
var shout = procpool.Register("example.shout", func(_ context.Context, s string) (string, error) {
	return strings.ToUpper(s) + "!", nil
})

// New starts the worker processes and returns once each has answered the
// handshake.
func ExampleNew() {
	procpool.Main() // first in main; see ExampleMain

	ctx := context.Background()
	p, err := procpool.New(
		procpool.WithProcesses(2),                // two worker processes
		procpool.WithTaskTimeout(10*time.Second), // a task that runs longer is stopped
		procpool.WithMaxTasksPerWorker(1000),     // a fresh worker after 1000 tasks
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Close() // waits for the tasks, then stops the workers

	fmt.Println(len(p.Stats().Workers), "workers")
	out, err := procpool.Map(ctx, p, shout, []string{"ready", "steady", "go"})
	fmt.Println(out, err)
	// Output:
	// 2 workers
	// [READY! STEADY! GO!] <nil>
}
