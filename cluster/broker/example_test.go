package broker_test

import (
	"context"
	"fmt"
	"log"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/procpool/procpool/cluster/broker"
)

// Start a broker with its store in a temporary directory, connect to it,
// and queue a message in a file-storage work-queue stream. Hosts on other
// machines would join with Config{Host: "0.0.0.0"} and this machine's
// address and Broker.Port.
func ExampleStart() {
	ctx := context.Background()
	b, err := broker.Start(ctx, broker.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()

	nc, err := nats.Connect(b.URL())
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name:      "TASKS",
		Subjects:  []string{"tasks.>"},
		Storage:   jetstream.FileStorage,
		Retention: jetstream.WorkQueuePolicy,
	}); err != nil {
		log.Fatal(err)
	}
	ack, err := js.Publish(ctx, "tasks.square", []byte("7"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("queued in", ack.Stream, "as message", ack.Sequence)
	// Output: queued in TASKS as message 1
}
