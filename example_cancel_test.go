//go:build unix

package procpool_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/procpool/procpool"
)

// nap sleeps for d, or until its context ends: the task's ctx is cancelled
// in the worker when the caller cancels.
var nap = procpool.Register("example.nap", func(ctx context.Context, d time.Duration) (time.Duration, error) {
	select {
	case <-time.After(d):
		return d, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
})

func ExampleFuture_Cancel() {
	procpool.Main() // first in main; see ExampleMain

	ctx := context.Background()
	p, err := procpool.New(procpool.WithProcesses(1))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Close()

	f, err := procpool.ApplyAsync(ctx, p, nap, time.Hour)
	if err != nil {
		fmt.Println(err)
		return
	}
	f.Cancel() // queued: removed; running: stopped in its worker
	_, err = f.Get(ctx)
	fmt.Println("cancelled:", errors.Is(err, context.Canceled))

	// The pool carries on.
	d, err := procpool.Apply(ctx, p, nap, time.Millisecond)
	fmt.Println(d, err)
	// Output:
	// cancelled: true
	// 1ms <nil>
}
