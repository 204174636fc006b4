//go:build unix

package procpool_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/procpool/procpool"
)

// doze sleeps for d, or until its context ends.
var doze = procpool.Register("example.doze", func(ctx context.Context, d time.Duration) (time.Duration, error) {
	select {
	case <-time.After(d):
		return d, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
})

// Shutdown is Close with a deadline: it waits for the submitted tasks, and
// when its context ends first it terminates the pool.
func ExamplePool_Shutdown() {
	procpool.Main() // first in main; see ExampleMain

	ctx := context.Background()
	p, err := procpool.New(procpool.WithProcesses(1))
	if err != nil {
		fmt.Println(err)
		return
	}

	short, _ := procpool.ApplyAsync(ctx, p, doze, time.Millisecond)
	long, _ := procpool.ApplyAsync(ctx, p, doze, time.Hour)

	sctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	err = p.Shutdown(sctx) // no new tasks; wait up to a second; then terminate
	fmt.Println("Shutdown:", err)

	_, err = short.Get(ctx)
	fmt.Println("short task:", err)
	_, err = long.Get(ctx)
	fmt.Println("long task terminated:", errors.Is(err, procpool.ErrTerminated))
	// Output:
	// Shutdown: context deadline exceeded
	// short task: <nil>
	// long task terminated: true
}
