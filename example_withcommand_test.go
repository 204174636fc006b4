//go:build unix

package procpool_test

import (
	"context"
	"fmt"
	"os"

	"github.com/procpool/procpool"
)

// greet is registered at package level in the worker program, which must
// register the same functions as the parent, under the same names.
var greet = procpool.Register("example.greet", func(_ context.Context, name string) (string, error) {
	return "hello, " + name, nil
})

// WithCommand runs another program as the worker: one whose main calls
// procpool.Main first and registers the functions the parent calls, such
// as a small worker binary built next to a program that cannot re-run
// itself. Here the worker program is this test binary itself, whose
// TestMain calls procpool.Main first.
func ExampleWithCommand() {
	procpool.Main() // first in main; see ExampleMain

	worker, err := os.Executable()
	if err != nil {
		fmt.Println(err)
		return
	}

	ctx := context.Background()
	p, err := procpool.New(
		procpool.WithProcesses(1),
		procpool.WithCommand(worker), // arguments, if any, follow the path
	)
	if err != nil {
		fmt.Println(err) // a *StartError if the program does not call Main
		return
	}
	defer p.Close()

	s, err := procpool.Apply(ctx, p, greet, "worker")
	fmt.Println(s, err)
	// Output: hello, worker <nil>
}
