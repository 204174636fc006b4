//go:build unix

package procpool_test

import (
	"context"
	"fmt"
	"strings"

	"github.com/procpool/procpool"
)

// wordCount counts the words of a text. It is registered in a package-level
// var declaration: the parent and every worker run that declaration before
// procpool.Main, so all of them know the function by its name. Calling
// Register after Main (in main, in a test) panics.
var wordCount = procpool.Register("example.wordCount", func(_ context.Context, text string) (int, error) {
	return len(strings.Fields(text)), nil
})

func ExampleRegister() {
	procpool.Main() // first in main; see ExampleMain

	ctx := context.Background()
	p, err := procpool.New(procpool.WithProcesses(1))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Close()

	// The handle carries the function's types: the argument must be a
	// string, and the result is an int.
	n, err := procpool.Apply(ctx, p, wordCount, "the quick brown fox")
	fmt.Println(wordCount.Name(), n, err)
	// Output: example.wordCount 4 <nil>
}
