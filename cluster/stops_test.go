//go:build unix

package cluster_test

import (
	"context"
	"errors"
	"testing"

	"github.com/procpool/procpool"
	"github.com/procpool/procpool/codec"
)

// An answer that fits what the server carries but not the client pool's
// own frame limit (WithMaxFrame) ends its task with a RemoteError whose
// Code is CodeEncode, as a local worker's result over the limit does; it
// used to end the slot with a protocol error.
func TestAnswerOverTheClientsMaxFrame(t *testing.T) {
	e := newEnv(t)
	e.localHost("a", 1, 1)
	p := e.client(procpool.WithMaxFrame(4096))
	_, err := procpool.Apply(context.Background(), p, zeros, 8192)
	var re *procpool.RemoteError
	if !errors.As(err, &re) || re.Code != procpool.CodeEncode {
		t.Fatalf("a result over the client's WithMaxFrame: %v (%T); want a RemoteError with CodeEncode", err, err)
	}
	if v, err := procpool.Apply(context.Background(), p, square, 5); err != nil || v != 25 {
		t.Fatalf("the next task: %d, %v", v, err)
	}
	if s := p.Stats(); s.Restarts != 0 {
		t.Fatalf("%d slots replaced, want 0", s.Restarts)
	}
}

// With the default limits: an answer whose body is as large as the host
// lets through (the server's max payload less 1 KiB) is the result, or a
// RemoteError with CodeEncode, never a protocol error (the client's frame
// limit counts the frame's header too).
func TestAnswerAtTheHostsLimit(t *testing.T) {
	e := newEnv(t)
	e.localHost("a", 1, 1)
	p := e.client()
	limit := int(e.connect().MaxPayload()) - 1024
	n := limit
	for {
		b, err := codec.Default.Append(nil, make([]byte, n))
		if err != nil {
			t.Fatal(err)
		}
		if len(b) <= limit {
			break
		}
		n--
	}
	_, err := procpool.Apply(context.Background(), p, zeros, n)
	var re *procpool.RemoteError
	if err != nil && !(errors.As(err, &re) && re.Code == procpool.CodeEncode) {
		t.Fatalf("a result of %d bytes, at the host's limit: %v (%T); want the result or a RemoteError with CodeEncode", n, err, err)
	}
}

// A task cancelled, or ended by Terminate, while it waits in the stream
// is deleted from it: a host that starts later, and so never heard the
// stop, does not run it. The stream is FIFO, so a later task that runs
// on that host shows it pulled what was there before.
func TestStoppedQueuedTaskIsNotRunLater(t *testing.T) {
	e := newEnv(t)
	p := e.client()
	ctx := context.Background()
	cctx, cancel := context.WithCancel(ctx)
	fc, err := procpool.ApplyAsync(cctx, p, square, 12)
	if err != nil {
		t.Fatal(err)
	}
	ft, err := procpool.ApplyAsync(ctx, p, square, 11)
	if err != nil {
		t.Fatal(err)
	}
	stream := e.stream()
	waitFor(t, "both tasks to be stored", func() bool {
		info, err := stream.Info(ctx)
		return err == nil && info.State.Msgs == 2
	})
	cancel()
	if _, err := fc.Get(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled task: %v, want context.Canceled", err)
	}
	if err := p.Terminate(); err != nil {
		t.Fatal(err)
	}
	if _, err := ft.Get(ctx); !errors.Is(err, procpool.ErrTerminated) {
		t.Fatalf("terminated task: %v, want ErrTerminated", err)
	}
	e.startHost("late", 1)
	if v, err := procpool.Apply(ctx, e.client(), square, 13); err != nil || v != 169 {
		t.Fatalf("a task after them: %d, %v", v, err)
	}
	r := e.runs()["square"]
	if len(r[11]) != 0 || len(r[12]) != 0 || len(r[13]) != 1 {
		t.Fatalf("runs: terminated task %v, cancelled task %v, the task after them %v; want none, none, one", r[11], r[12], r[13])
	}
}
