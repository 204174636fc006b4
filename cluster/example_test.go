package cluster_test

import (
	"context"
	"fmt"

	"github.com/procpool/procpool"
	"github.com/procpool/procpool/cluster"
	"github.com/procpool/procpool/cluster/broker"
)

var cube = procpool.Register("example.cube", func(_ context.Context, x int) (int, error) { return x * x * x, nil })

// A broker, a host and a client in one program. In real use the host is
// another program on another machine, with worker processes (its main
// calls procpool.Main first); here its pool runs in process.
func Example() {
	ctx := context.Background()
	b, err := broker.Start(ctx, broker.Config{})
	if err != nil {
		panic(err)
	}
	defer b.Close()
	nc, err := cluster.Connect(b.URL())
	if err != nil {
		panic(err)
	}
	defer nc.Close()
	cfg := cluster.Config{Prefix: "example"}

	// The host: serves until hostCtx ends, then drains.
	local, err := procpool.New(procpool.WithInProcess(), procpool.WithProcesses(2))
	if err != nil {
		panic(err)
	}
	defer local.Close()
	hostCtx, stopHost := context.WithCancel(ctx)
	served := make(chan error)
	go func() { served <- cluster.Serve(hostCtx, nc, local, cfg) }()

	// The client: a *procpool.Pool like any other.
	pool, err := cluster.New(ctx, nc, cfg)
	if err != nil {
		panic(err)
	}
	out, err := procpool.Map(ctx, pool, cube, []int{1, 2, 3, 4})
	fmt.Println(out, err)
	pool.Close()

	stopHost()
	fmt.Println("host drained:", <-served)
	// Output:
	// [1 8 27 64] <nil>
	// host drained: <nil>
}
