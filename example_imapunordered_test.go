//go:build unix

package procpool_test

import (
	"context"
	"fmt"
	"slices"

	"github.com/procpool/procpool"
)

// cube is run by the workers on each item of the input.
var cube = procpool.Register("example.cube", func(_ context.Context, x int) (int, error) {
	return x * x * x, nil
})

func ExampleImapUnordered() {
	procpool.Main() // first in main; see ExampleMain

	ctx := context.Background()
	p, err := procpool.New(procpool.WithProcesses(2))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Close()

	// The input is any iter.Seq, read lazily, a bounded window ahead of the
	// loop. Outcomes come as chunks complete, not in input order. Breaking
	// out of the loop would cancel the rest.
	var cubes []int
	for v, err := range procpool.ImapUnordered(ctx, p, cube, slices.Values([]int{1, 2, 3, 4, 5, 6}), procpool.ChunkSize(2)) {
		if err != nil {
			fmt.Println(err)
			continue
		}
		cubes = append(cubes, v)
	}
	slices.Sort(cubes)
	fmt.Println(cubes)
	// Output: [1 8 27 64 125 216]
}
