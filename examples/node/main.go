// Command node runs JavaScript functions in a pool of Node.js processes:
// worker.js registers them with procpool-worker (workers/node), and this
// program calls them through procpool.Declare handles.
//
//	go run ./examples/node [-worker examples/node/worker.js]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"

	"github.com/procpool/procpool"
	"github.com/procpool/procpool/codec"
)

// The functions worker.js serves: a name and the Go types of the argument
// and the result.
var (
	square = procpool.Declare[int, int]("square")
	shout  = procpool.Declare[string, string]("shout")
)

func main() {
	procpool.Main()
	script := flag.String("worker", "examples/node/worker.js", "the worker script")
	flag.Parse()
	node, err := exec.LookPath("node")
	if err != nil {
		fmt.Println("node is not installed: this example needs it to start its Node workers. Nothing to do.")
		return
	}
	if _, err := os.Stat(*script); err != nil {
		fmt.Fprintf(os.Stderr, "node: %v (run from the repository's root, or give -worker)\n", err)
		os.Exit(1)
	}
	p, err := procpool.New(procpool.WithCommand(node, *script), procpool.WithProcesses(2), procpool.WithCodec(codec.JSON))
	if err != nil {
		fmt.Fprintln(os.Stderr, "node:", err)
		os.Exit(1)
	}
	defer p.Close()
	ctx := context.Background()
	squares, err := procpool.Map(ctx, p, square, []int{1, 2, 3, 4, 5})
	fmt.Println(squares, err)
	s, err := procpool.Apply(ctx, p, shout, "hello")
	fmt.Println(s, err)
}
