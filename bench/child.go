//go:build unix

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/procpool/procpool"
	"github.com/procpool/procpool/bench/internal/measure"
)

// runChild runs the bench binary in one of its child modes and returns the
// exit code. The mode comes from envChild, its arguments from the command
// line.
//
//   - pipe-echo: echo 8-byte messages from descriptor 3 to descriptor 4 with
//     blocking read and write system calls, until end of file.
//   - square X: print X*X and exit (one process per task).
//   - stream-memory N: run Imap of square over 0..N-1 with ChunkSize(1000)
//     on a pool of 2 workers, consuming the results one by one, then print
//     this process's peak resident memory in bytes.
func runChild(mode string) int {
	fail := func(err error) int {
		fmt.Fprintf(os.Stderr, "bench child %s: %v\n", mode, err)
		return 1
	}
	switch mode {
	case "pipe-echo":
		if err := pipeEcho(3, 4); err != nil {
			return fail(err)
		}
		return 0
	case "square":
		if len(os.Args) != 2 {
			return fail(errors.New("want one argument"))
		}
		x, err := strconv.Atoi(os.Args[1])
		if err != nil {
			return fail(err)
		}
		fmt.Println(x * x)
		return 0
	case "stream-memory":
		if len(os.Args) != 2 {
			return fail(errors.New("want one argument"))
		}
		n, err := strconv.Atoi(os.Args[1])
		if err != nil {
			return fail(err)
		}
		if err := streamChild(n); err != nil {
			return fail(err)
		}
		peak, err := peakRSS()
		if err != nil {
			return fail(err)
		}
		fmt.Println(peak)
		return 0
	}
	return fail(errors.New("unknown mode"))
}

// ---- pipe-limit ----

// readFull reads len(b) bytes from fd with blocking read calls.
func readFull(fd int, b []byte) error {
	for off := 0; off < len(b); {
		n, err := syscall.Read(fd, b[off:])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return errEOF
		}
		off += n
	}
	return nil
}

// writeFull writes b to fd with blocking write calls.
func writeFull(fd int, b []byte) error {
	for off := 0; off < len(b); {
		n, err := syscall.Write(fd, b[off:])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		off += n
	}
	return nil
}

var errEOF = errors.New("end of file")

func pipeEcho(in, out int) error {
	var buf [8]byte
	for {
		if err := readFull(in, buf[:]); err == errEOF {
			return nil
		} else if err != nil {
			return err
		}
		if err := writeFull(out, buf[:]); err != nil {
			return err
		}
	}
}

// pipeLatency measures round trips of 8 bytes to a child process over two
// pipes, with blocking read and write system calls on both sides: the floor
// under any synchronous call to another process.
func pipeLatency(sz sizes) (lat []time.Duration, err error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	// Blocking descriptors, outside Go's poller (see blockingPipe).
	var toChild, fromChild [2]int
	if err := blockingPipe(toChild[:]); err != nil {
		return nil, err
	}
	if err := blockingPipe(fromChild[:]); err != nil {
		syscall.Close(toChild[0])
		syscall.Close(toChild[1])
		return nil, err
	}
	childIn := os.NewFile(uintptr(toChild[0]), "pipe-echo-in")
	childOut := os.NewFile(uintptr(fromChild[1]), "pipe-echo-out")
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), envChild+"=pipe-echo")
	cmd.ExtraFiles = []*os.File{childIn, childOut}
	cmd.Stderr = os.Stderr
	err = cmd.Start()
	childIn.Close()
	childOut.Close()
	w, r := toChild[1], fromChild[0]
	if err != nil {
		syscall.Close(w)
		syscall.Close(r)
		return nil, err
	}
	defer func() {
		syscall.Close(w) // the child sees end of file and exits
		werr := cmd.Wait()
		syscall.Close(r)
		if err == nil && werr != nil {
			err = fmt.Errorf("pipe-echo child: %w", werr)
		}
	}()

	var msg, echo [8]byte
	roundTrip := func(i int) error {
		binary.LittleEndian.PutUint64(msg[:], uint64(i))
		if err := writeFull(w, msg[:]); err != nil {
			return err
		}
		if err := readFull(r, echo[:]); err != nil {
			return err
		}
		if echo != msg {
			return fmt.Errorf("echo %x, sent %x", echo, msg)
		}
		return nil
	}
	if err := roundTrip(-1); err != nil { // warm-up
		return nil, err
	}
	lat = make([]time.Duration, sz.applyN)
	for i := range lat {
		t0 := time.Now()
		err := roundTrip(i)
		lat[i] = time.Since(t0)
		if err != nil {
			return nil, err
		}
	}
	slices.Sort(lat)
	return lat, nil
}

// ---- exec-per-task ----

// perTaskExec runs each task in a new process (the bench binary in its
// square mode) and waits for it, as Python's documentation's loop of
// Process(...).start(); join() does.
func perTaskExec(sz sizes) (time.Duration, error) {
	self, err := os.Executable()
	if err != nil {
		return 0, err
	}
	env := append(os.Environ(), envChild+"=square")
	run := func(x int) error {
		cmd := exec.Command(self, strconv.Itoa(x))
		cmd.Env = env
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			return err
		}
		if got := strings.TrimSpace(string(out)); got != strconv.Itoa(x*x) {
			return fmt.Errorf("square(%d) printed %q", x, got)
		}
		return nil
	}
	if err := run(1); err != nil { // warm-up: the page cache, as for the pool
		return 0, err
	}
	settle()
	t0 := time.Now()
	for i := range sz.perTaskN {
		if err := run(i); err != nil {
			return 0, err
		}
	}
	return time.Since(t0) / time.Duration(sz.perTaskN), nil
}

// ---- stream-memory ----

// streamMemory runs the stream in a child process of its own, so that the
// harness's heap does not count, and returns the child's peak RSS in MB.
func streamMemory(sz sizes) (float64, error) {
	self, err := os.Executable()
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), sz.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, self, strconv.Itoa(sz.streamN))
	cmd.Env = append(os.Environ(), envChild+"=stream-memory")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return 0, fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
	}
	peak, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("child printed %q", out)
	}
	return float64(peak) / 1e6, nil
}

func streamChild(n int) (err error) {
	ctx := context.Background()
	p, err := newPool(ctx, procpool.WithProcesses(workers))
	if err != nil {
		return err
	}
	defer measure.ClosePool(ctx, p, &err)
	var sum, want uint64 // both wrap alike
	seq := func(yield func(int) bool) {
		for i := range n {
			if !yield(i) {
				return
			}
		}
	}
	i := 0
	for v, err := range procpool.Imap(ctx, p, square, seq, procpool.ChunkSize(1000)) {
		if err != nil {
			return err
		}
		sum += uint64(v)
		want += uint64(i) * uint64(i)
		i++
	}
	if i != n || sum != want {
		return fmt.Errorf("got %d results summing to %d, want %d summing to %d", i, sum, n, want)
	}
	return nil
}

// peakRSS returns this process's peak resident set size (VmHWM) in bytes.
func peakRSS() (int64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return 0, err
			}
			return kb << 10, nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("no VmHWM in /proc/self/status")
}
