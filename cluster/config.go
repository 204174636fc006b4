package cluster

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Config is what a pool's clients and hosts agree on: the subjects and
// stream they share, and the stream's limits. Its zero value is usable:
// every field has a default.
type Config struct {
	// Prefix starts every subject of the pool ("procpool" by default); the
	// stream's name is made from it. Pools with different prefixes share
	// nothing, on the same server.
	Prefix string
	// AckWait is how long a host may go without a sign of life on a task
	// (it sends one every AckWait/2 while the task runs) before the
	// broker takes it for lost and delivers the task again, so that
	// another host reports the loss. Default 30s. It is the hosts'
	// consumer's: the first client or host to create the consumer sets
	// it, and every other one uses the consumer's.
	AckWait time.Duration
	// MaxAge bounds how long a task may live in the stream, waiting or
	// running: the server drops it then, and its client ends it with
	// ErrTimeout (and stops it on its host) if it has not been answered
	// by then. A task whose client died is dropped after it too. Default
	// 1h; the stream's, like AckWait the consumer's.
	MaxAge time.Duration
	// MaxMsgs and MaxBytes bound the stream (all clients' tasks waiting or
	// running). When it is full, a client's publish is refused and
	// retried, so the task waits in the client's queue (see New).
	// Defaults 1,000,000 and 128 MiB (the stream reserves MaxBytes of the server's JetStream store or memory: cluster/broker's defaults are 1 GiB and 256 MiB).
	MaxMsgs  int64
	MaxBytes int64
	// Replicas is the stream's replica count in a clustered NATS
	// deployment. Default 1.
	Replicas int
	// Memory keeps the stream in the server's memory rather than on disk:
	// faster, but queued tasks do not survive a restart of the server.
	Memory bool
}

// Defaults of Config's fields.
const (
	DefaultPrefix   = "procpool"
	DefaultAckWait  = 30 * time.Second
	DefaultMaxAge   = time.Hour
	DefaultMaxMsgs  = 1_000_000
	DefaultMaxBytes = 128 << 20
)

// ErrConfig is wrapped by the errors of a Config that cannot be used.
var ErrConfig = errors.New("cluster: invalid config")

func (c Config) withDefaults() (Config, error) {
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if strings.ContainsAny(c.Prefix, " \t\r\n*>") || strings.HasPrefix(c.Prefix, ".") || strings.HasSuffix(c.Prefix, ".") || strings.Contains(c.Prefix, "..") {
		return c, fmt.Errorf("%w: prefix %q is not a NATS subject of literal tokens", ErrConfig, c.Prefix)
	}
	if c.AckWait == 0 {
		c.AckWait = DefaultAckWait
	}
	if c.MaxAge == 0 {
		c.MaxAge = DefaultMaxAge
	}
	if c.MaxMsgs == 0 {
		c.MaxMsgs = DefaultMaxMsgs
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.AckWait < 0 || c.MaxAge < 0 || c.MaxMsgs < 0 || c.MaxBytes < 0 || c.Replicas < 0 {
		return c, fmt.Errorf("%w: negative limit in %+v", ErrConfig, c)
	}
	if c.AckWait < 100*time.Millisecond {
		return c, fmt.Errorf("%w: AckWait %v is under 100ms: hosts could not show they are alive in time", ErrConfig, c.AckWait)
	}
	return c, nil
}

// The subjects of a pool with prefix P:
//
//	P.task            tasks, captured by the stream; hosts pull them
//	P.result.CLIENT   answers, published by hosts to the client that sent the task
//	P.stop.CLIENT     stops (a cancel, a deadline, Terminate) from a client to the hosts
func (c Config) taskSubject() string                { return c.Prefix + ".task" }
func (c Config) resultSubject(client string) string { return c.Prefix + ".result." + client }
func (c Config) stopSubject(client string) string   { return c.Prefix + ".stop." + client }

// streamName is the stream's name: the prefix in capitals, with dots as
// underscores ("procpool" → "PROCPOOL_TASKS").
func (c Config) streamName() string {
	return strings.ToUpper(strings.ReplaceAll(c.Prefix, ".", "_")) + "_TASKS"
}

// maxWaiting bounds the pull requests waiting on the consumer: one per
// free slot of every host (the server's default, 512, would refuse the
// requests of more than 512 idle slots in all).
const maxWaiting = 1 << 14

// consumerName is the durable pull consumer that every host pulls from.
const consumerName = "hosts"

// ensure creates the pool's stream and consumer if they do not exist. An existing stream is used as it is: the first
// client or host to start sets its limits (change them with the nats
// tool), and so is an existing consumer. It returns the Config with the
// AckWait and MaxAge in force: those of the stream and consumer found.
func (c Config) ensure(ctx context.Context, js jetstream.JetStream) (Config, error) {
	storage := jetstream.FileStorage
	if c.Memory {
		storage = jetstream.MemoryStorage
	}
	s, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name:        c.streamName(),
		Description: "procpool tasks for prefix " + c.Prefix,
		Subjects:    []string{c.taskSubject()},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     storage,
		Discard:     jetstream.DiscardNew,
		MaxMsgs:     c.MaxMsgs,
		MaxBytes:    c.MaxBytes,
		MaxAge:      c.MaxAge,
		Duplicates:  min(2*time.Minute, c.MaxAge), // the window of Nats-Msg-Id; at most MaxAge
		Replicas:    c.Replicas,
	})
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		s, err = js.Stream(ctx, c.streamName())
	}
	if err != nil {
		return c, fmt.Errorf("cluster: stream %s: %w", c.streamName(), err)
	}
	// Look the consumer up before creating it: creating one that exists
	// with another AckWait would fail, and updating it would change the
	// AckWait under hosts that show life at the old one's pace.
	cons, err := s.Consumer(ctx, consumerName)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		cons, err = s.CreateConsumer(ctx, jetstream.ConsumerConfig{
			Durable:       consumerName,
			Description:   "procpool hosts",
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       c.AckWait,
			MaxDeliver:    -1,
			MaxAckPending: -1,
			MaxWaiting:    maxWaiting,
			FilterSubject: c.taskSubject(),
		})
		if errors.Is(err, jetstream.ErrConsumerExists) { // another one created it meanwhile
			cons, err = s.Consumer(ctx, consumerName)
		}
	}
	if err != nil {
		return c, fmt.Errorf("cluster: consumer %s of stream %s: %w", consumerName, c.streamName(), err)
	}
	c.MaxAge = s.CachedInfo().Config.MaxAge
	c.AckWait = cons.CachedInfo().Config.AckWait
	return c, nil
}
