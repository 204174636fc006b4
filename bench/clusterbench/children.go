//go:build unix

package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/procpool/procpool"
	"github.com/procpool/procpool/cluster"
)

// runChild runs one of the child modes, chosen by envChild, with the
// broker's URL and the child's name as its arguments, and returns the exit
// code.
//
//   - cluster-host URL NAME: a host of the cluster workloads' pool on the
//     broker at URL, until SIGTERM or its standard input closes.
//   - cluster-raw URL NAME: a bare JetStream consumer of the baseline,
//     likewise.
func runChild(mode string) int {
	fail := func(err error) int {
		fmt.Fprintf(os.Stderr, "clusterbench child %s: %v\n", mode, err)
		return 1
	}
	if len(os.Args) != 3 {
		return fail(errors.New("want two arguments"))
	}
	var err error
	switch mode {
	case "cluster-host":
		err = clusterHostChild(os.Args[1], os.Args[2])
	case "cluster-raw":
		err = rawConsumerChild(os.Args[1])
	default:
		err = errors.New("unknown mode")
	}
	if err != nil {
		return fail(err)
	}
	return 0
}

// childContext is a child's context: it ends on SIGTERM, or when standard
// input (a pipe from the process that started it) closes.
func childContext() (context.Context, context.CancelFunc) {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); stop() }()
	return ctx, stop
}

// clusterHostChild is the cluster-host child mode: a host of
// clusterConfig's pool, named name, with a local pool of workers worker
// processes, on the broker at url, until childContext ends; then it drains.
func clusterHostChild(url, name string) error {
	ctx, stop := childContext()
	defer stop()
	defer startProfile("cluster-host-" + name + "-" + fmt.Sprint(os.Getpid()))()
	local, err := procpool.New(procpool.WithProcesses(workers))
	if err != nil {
		return err
	}
	defer local.Close()
	nc, err := nats.Connect(url)
	if err != nil {
		return err
	}
	defer nc.Close()
	return cluster.Serve(ctx, nc, local, clusterConfig(), cluster.WithName(name))
}

// rawConsumerChild is the cluster-raw child mode: workers goroutines that
// each pull one message at a time from the bare stream's consumer on the
// broker at url (as a host's slots do), reply to it on rawReply over core
// NATS with the square of its number, then acknowledge it; until
// childContext ends.
func rawConsumerChild(url string) error {
	ctx, stop := childContext()
	defer stop()
	defer startProfile("cluster-raw-" + fmt.Sprint(os.Getpid()))()
	nc, err := nats.Connect(url)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	cons, err := js.Consumer(ctx, rawStream, rawConsumer)
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			reply := make([]byte, 16)
			for ctx.Err() == nil {
				batch, err := cons.Fetch(1, jetstream.FetchMaxWait(time.Second))
				if err != nil {
					time.Sleep(10 * time.Millisecond)
					continue
				}
				for m := range batch.Messages() {
					d := m.Data()
					if len(d) != 16 {
						_ = m.Term()
						continue
					}
					x := binary.LittleEndian.Uint64(d[8:])
					copy(reply, d[:8])
					binary.LittleEndian.PutUint64(reply[8:], x*x)
					_ = nc.Publish(rawReply, reply)
					_ = m.Ack()
				}
			}
		})
	}
	wg.Wait()
	return nil
}
