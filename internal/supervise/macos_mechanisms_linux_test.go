package supervise

// The mechanisms that stand in on macOS for Linux's /proc, pipe2, parent-
// death signal and FIFO reopening are POSIX; these tests run them on Linux,
// with real processes, where /proc can check what they did.

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// procSnapshot is the process table as macOS's procTable returns it, read
// from /proc.
func procSnapshot() ([]procEntry, bool) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, false
	}
	var procs []procEntry
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, ok := readStat(pid); ok {
			procs = append(procs, procEntry{pid: pid, ppid: st.ppid, pgid: st.pgrp, zombie: st.state == 'Z'})
		}
	}
	return procs, true
}

// alive reports whether pid is a process that is not a zombie.
func alive(pid int) bool {
	st, ok := readStat(pid)
	return ok && st.state != 'Z'
}

// waitDead waits until none of pids is alive; the deadline only catches a
// sweep that missed one.
func waitDead(t *testing.T, pids []int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for _, pid := range pids {
		for alive(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("process %d alive after the sweep", pid)
			}
			time.Sleep(time.Millisecond)
		}
	}
}

// pidsFrom reads n pids, one a line, from r.
func pidsFrom(t *testing.T, r *bufio.Reader, n int) []int {
	t.Helper()
	var pids []int
	for range n {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("reading pids: %v", err)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(line))
		if err != nil {
			t.Fatalf("reading pids: %q", line)
		}
		pids = append(pids, pid)
	}
	return pids
}

// Both ends of pipeCloexec's pipe are blocking and close-on-exec: a child
// started after it does not hold them.
func TestPipeCloexec(t *testing.T) {
	r, w, err := pipeCloexec()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	for _, f := range []*os.File{r, w} {
		fd := f.Fd()
		fdFlags, _, e1 := syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_GETFD, 0)
		flFlags, _, e2 := syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_GETFL, 0)
		if e1 != 0 || e2 != 0 {
			t.Fatal(e1, e2)
		}
		if fdFlags&syscall.FD_CLOEXEC == 0 || flFlags&syscall.O_NONBLOCK != 0 {
			t.Fatalf("fd %d: FD flags %#x, status flags %#x; want close-on-exec and blocking", fd, fdFlags, flFlags)
		}
	}
	ino, err := PipeInode(r)
	if err != nil {
		t.Fatal(err)
	}
	child := exec.Command("sleep", "1000")
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer child.Wait()
	defer child.Process.Kill()
	ours := "pipe:[" + strconv.FormatUint(ino, 10) + "]"
	if holds(child.Process.Pid, map[string]bool{ours: true}) {
		t.Fatalf("the child holds %s", ours)
	}
	if _, err := w.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	var b [1]byte
	if n, err := r.Read(b[:]); n != 1 || err != nil || b[0] != 'x' {
		t.Fatalf("read %q, %v", b[:n], err)
	}
}

// endReadsKept ends the reading of a pipe whose other writer lives on: the
// reader gets what was written, then the marker, and then EAGAIN; the kept
// write end is closed.
func TestEndReadsKept(t *testing.T) {
	r, w, err := Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// The holder keeps a write end of its own for as long as it lives.
	holder := exec.Command("sleep", "1000")
	holder.ExtraFiles = []*os.File{w}
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	defer holder.Wait()
	defer holder.Process.Kill()
	if _, err := w.Write([]byte("answer")); err != nil {
		t.Fatal(err)
	}
	keepWriteEnd(r, w) // as ReleaseWriteEnd does on macOS once the child started

	marker := []byte("END")
	type result struct {
		data []byte
		err  error
	}
	firstRead := make(chan struct{})
	got := make(chan result, 1)
	go func() {
		var all []byte
		buf := make([]byte, 64)
		for {
			n, err := r.Read(buf)
			all = append(all, buf[:n]...)
			if len(all) == len("answer") {
				close(firstRead)
			}
			if err != nil || bytes.HasSuffix(all, marker) {
				got <- result{all, err}
				return
			}
		}
	}()
	<-firstRead // the reader goes on to wait in read(2), or is about to
	if err := endReadsKept(r, marker); err != nil {
		t.Fatal(err)
	}
	select {
	case res := <-got:
		if string(res.data) != "answerEND" || res.err != nil {
			t.Fatalf("reader got %q, %v; want the data, then the marker", res.data, res.err)
		}
	case <-time.After(30 * time.Second): // only to catch a hang
		t.Fatal("the reader still waits")
	}
	if n, err := r.Read(make([]byte, 8)); !errors.Is(err, syscall.EAGAIN) {
		t.Fatalf("read after the end: %d, %v; want EAGAIN", n, err)
	}
	if _, err := w.Write([]byte("x")); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("the kept write end is still open: %v", err)
	}
	if err := endReadsKept(r, marker); err == nil {
		t.Fatal("a second endReadsKept found a write end")
	}
	if !alive(holder.Process.Pid) {
		t.Fatal("the holder is gone: this tested nothing")
	}
}

// watchParent calls gone once the caller's parent has exited. The test
// binary runs as the helper: a shell starts it in the background, and
// exits when the test tells it to.
func TestWatchParent(t *testing.T) {
	if os.Getenv("SUPERVISE_TEST_HELPER") == "watch-parent" {
		ppid := syscall.Getppid()
		done := make(chan struct{})
		go watchParent(ppid, 5*time.Millisecond, func() {
			os.Stdout.WriteString("gone " + strconv.Itoa(ppid) + "\n")
			close(done)
		})
		os.Stdout.WriteString("ready " + strconv.Itoa(ppid) + "\n")
		<-done
		os.Exit(0)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	sh := exec.Command("sh", "-c", `"$0" -test.run='^TestWatchParent$' & read x`, self)
	// GORACE: a program built with -race otherwise sleeps a second at exit.
	sh.Env = append(os.Environ(), "SUPERVISE_TEST_HELPER=watch-parent", "GORACE=atexit_sleep_ms=0")
	in, err := sh.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer outR.Close()
	sh.Stdout = outW
	if err := sh.Start(); err != nil {
		t.Fatal(err)
	}
	outW.Close()
	defer sh.Wait()
	defer sh.Process.Kill()
	lines := make(chan string, 2)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(outR)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	next := func() string {
		select {
		case l := <-lines:
			return l
		case <-time.After(30 * time.Second): // only to catch a hang
			t.Fatal("the helper says nothing")
			return ""
		}
	}
	want := strconv.Itoa(sh.Process.Pid)
	if l := next(); l != "ready "+want {
		t.Fatalf("helper: %q; want it ready, under the shell %s", l, want)
	}
	in.Write([]byte("\n")) // the shell exits
	in.Close()
	if err := sh.Wait(); err != nil {
		t.Fatal(err)
	}
	if l := next(); l != "gone "+want {
		t.Fatalf("helper: %q; want it to see its parent %s gone", l, want)
	}
	if l, more := <-lines; more {
		t.Fatalf("helper said more: %q", l)
	}
	reapAll() // the helper, if this test binary is a subreaper
}

// sweepDescendants kills a tree of descendants, detached ones included,
// and nothing else.
func TestSweepDescendants(t *testing.T) {
	// The orphans of the killed shell come here if this process is a
	// subreaper (TestKillDescendants).
	defer reapAll()
	other := exec.Command("sleep", "1000")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	defer other.Wait()
	defer other.Process.Kill()
	// mine plays the sweeping process: the sweep kills its descendants and
	// spares other, a process outside its tree.
	mine := exec.Command("sh", "-c", `
		sleep 1000 & echo $!
		sh -c 'sleep 1000 & echo $!; wait' &
		setsid sleep 1000 & echo $!
		exec sleep 1000`)
	out, err := mine.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := mine.Start(); err != nil {
		t.Fatal(err)
	}
	defer mine.Wait()
	pids := pidsFrom(t, bufio.NewReader(out), 3)
	sweepDescendants(mine.Process.Pid, procSnapshot)
	waitDead(t, pids)
	if !alive(mine.Process.Pid) || !alive(other.Process.Pid) {
		t.Fatal("the sweep killed the process it swept for, or one outside its tree")
	}
	mine.Process.Kill()
	io.Copy(io.Discard, out)
}

// sweepGroup kills the other processes of a group, and spares self.
func TestSweepGroup(t *testing.T) {
	leader := exec.Command("sh", "-c", `sleep 1000 & echo $!; sleep 1000 & echo $!; wait`)
	leader.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := leader.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := leader.Start(); err != nil {
		t.Fatal(err)
	}
	defer leader.Process.Kill()
	members := pidsFrom(t, bufio.NewReader(out), 2)
	sweepGroup(leader.Process.Pid, leader.Process.Pid, procSnapshot)
	waitDead(t, members)
	// The shell's wait returns once both are dead: it exits by itself.
	if err := leader.Wait(); err != nil {
		t.Fatalf("the group's leader, which the sweep spares: %v", err)
	}
}
