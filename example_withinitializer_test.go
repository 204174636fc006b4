//go:build unix

package procpool_test

import (
	"context"
	"fmt"

	"github.com/procpool/procpool"
)

// salutation is per-worker state: each worker's initializer sets its own
// copy, and the tasks on that worker read it. The parent's copy is not
// touched: processes share no memory.
var salutation string

// setSalutation is the initializer: it runs once in each worker, before the
// worker's first task.
var setSalutation = procpool.Register("example.setSalutation", func(_ context.Context, s string) (struct{}, error) {
	salutation = s // in a program: open a connection, load a model, ...
	return struct{}{}, nil
})

// salute is a task that uses the state the initializer set up.
var salute = procpool.Register("example.salute", func(_ context.Context, name string) (string, error) {
	return salutation + ", " + name, nil
})

func ExampleWithInitializer() {
	procpool.Main() // first in main; see ExampleMain

	ctx := context.Background()
	p, err := procpool.New(
		procpool.WithProcesses(2),
		procpool.WithInitializer(setSalutation, "bonjour"), // if it fails, New returns its error
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Close()

	out, err := procpool.Map(ctx, p, salute, []string{"Ada", "Alan"})
	fmt.Println(out, err)
	fmt.Printf("in the parent: %q\n", salutation)
	// Output:
	// [bonjour, Ada bonjour, Alan] <nil>
	// in the parent: ""
}
