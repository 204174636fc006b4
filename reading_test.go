//go:build unix

package procpool

import (
	"context"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/procpool/procpool/internal/supervise"
)

// echoBytes returns its argument: the tests of who reads and writes a
// worker's pipes send it large ones.
var echoBytes = Register("internal.echo", func(_ context.Context, b []byte) ([]byte, error) { return b, nil })

// hangCheck bounds a test that would otherwise hang on a bug.
func hangCheck(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// An Apply caller that reads its worker's answers must not block writing
// other tasks' frames meanwhile: the worker, blocked writing the caller's
// large answer, would never read them.
func TestReadingCallerWritesOnlyItsOwnFrame(t *testing.T) {
	ctx := hangCheck(t)
	p, err := New(WithProcesses(1), WithSharedMemory(0))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Terminate()
	for range 100 { // short tasks: the worker pipelines
		Apply(ctx, p, echoBytes, []byte{1})
	}
	p.mu.Lock()
	w := p.workers[0]
	p.mu.Unlock()
	taskPipe, ok := w.tasks.(*os.File)
	if !ok {
		t.Fatalf("the task pipe is a %T", w.tasks)
	}
	// A stopped worker reads nothing: the caller's 4 MiB frame fills the
	// task pipe and the caller stays in its write.
	if err := syscall.Kill(w.pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(w.pid, syscall.SIGCONT)
	applied := make(chan error, 1)
	go func() {
		_, err := Apply(ctx, p, echoBytes, make([]byte, 4<<20))
		applied <- err
	}()
	// Bytes in the pipe are the caller's (its frame is all there is to
	// write), and the worker cannot take them out: the caller is writing.
	for supervise.Available(int(taskPipe.Fd())) == 0 {
		select {
		case err := <-applied:
			t.Fatalf("Apply returned while its worker was stopped: %v", err)
		case <-time.After(100 * time.Microsecond):
		}
	}
	p.mu.Lock()
	reader := w.reader
	p.mu.Unlock()
	if reader != readCaller {
		t.Fatalf("the Apply caller does not read its answer (%d): this tests nothing", reader)
	}
	var futs []*Future[[]byte]
	for range 15 {
		f, err := ApplyAsync(ctx, p, echoBytes, make([]byte, 256<<10))
		if err != nil {
			t.Fatal(err)
		}
		futs = append(futs, f)
	}
	if err := syscall.Kill(w.pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if err := <-applied; err != nil {
		t.Fatal(err)
	}
	for _, f := range futs {
		if b, err := f.Get(ctx); err != nil || len(b) != 256<<10 {
			t.Fatalf("%d bytes back, %v", len(b), err)
		}
	}
}

// gate, in process only, tells gateStarted that it runs, then waits for
// gateRelease.
var (
	gateStarted = make(chan struct{}, 1)
	gateRelease = make(chan struct{})
	gate        = Register("internal.gate", func(_ context.Context, _ int) (int, error) {
		gateStarted <- struct{}{}
		<-gateRelease
		return 0, nil
	})
)

// An in-process worker's reader goroutine sees the worker end even if a
// stray kick reached it while an Apply caller was reading.
func TestInProcessReaderSeesExitAfterStrayKick(t *testing.T) {
	ctx := hangCheck(t)
	p, err := New(WithInProcess(), WithProcesses(1))
	if err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	w := p.workers[0]
	p.mu.Unlock()
	applied := make(chan error, 1)
	go func() {
		_, err := Apply(ctx, p, gate, 0)
		applied <- err
	}()
	<-gateStarted // the task runs, and its caller reads its answer
	p.mu.Lock()
	reader := w.reader
	p.mu.Unlock()
	if reader != readCaller {
		t.Fatalf("the Apply caller does not read its answer (%d): this tests nothing", reader)
	}
	w.kickReader()
	gateRelease <- struct{}{}
	if err := <-applied; err != nil {
		t.Fatal(err)
	}
	closed := make(chan struct{})
	go func() { p.Close(); close(closed) }()
	select {
	case <-closed:
	case <-ctx.Done():
		t.Fatal("Close hangs: the reader missed the worker's end")
	}
}
