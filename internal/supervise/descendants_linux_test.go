package supervise

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// descendants returns the living descendants of this process.
func descendants(t *testing.T) []int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	children := make(map[int][]int)
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, ok := readStat(pid); ok && st.state != 'Z' {
			children[st.ppid] = append(children[st.ppid], pid)
		}
	}
	var all []int
	queue := children[os.Getpid()]
	for len(queue) > 0 {
		all = append(all, queue[0])
		queue = append(queue[1:], children[queue[0]]...)
	}
	return all
}

// reapAll reaps this process's zombie children (the test binary has no
// other children whose status anyone waits for).
func reapAll() {
	for {
		var ws syscall.WaitStatus
		if pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil); pid <= 0 || err != nil {
			return
		}
	}
}

// KillDescendants reaches descendants that left the process group and the
// session and whose parents exited, and ones that fork while it kills.
func TestKillDescendants(t *testing.T) {
	if err := SetSubreaper(); err != nil {
		t.Skip(err)
	}
	defer reapAll()
	// Detached and orphaned at once: a shell that starts them and exits.
	out, err := exec.Command("sh", "-c", `
		setsid sleep 1000 </dev/null >/dev/null 2>&1 & echo $!
		setsid sh -c 'sleep 1000 & sleep 1000' </dev/null >/dev/null 2>&1 &
	`).Output()
	if err != nil {
		t.Fatal(err)
	}
	orphan, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	// A shell that keeps forking, in a session of its own.
	storm := exec.Command("setsid", "sh", "-c", "while :; do sleep 1000 & done")
	if err := storm.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second) // only to catch hangs
	for len(descendants(t)) < 10 {
		if time.Now().After(deadline) {
			t.Fatalf("the processes to kill did not start: %v", descendants(t))
		}
		time.Sleep(time.Millisecond)
	}
	if st, ok := readStat(orphan); !ok || st.ppid != os.Getpid() {
		t.Fatalf("orphan %d: %+v, %v; want it reparented to this subreaper", orphan, st, ok)
	}

	KillDescendants()
	// Every one of them has been sent SIGKILL and none can fork any more;
	// dying takes a moment. One that was missed would live on.
	for left := descendants(t); len(left) > 0; left = descendants(t) {
		if time.Now().After(deadline) {
			t.Fatalf("descendants alive after KillDescendants: %v", left)
		}
		time.Sleep(time.Millisecond)
	}
	storm.Wait()
}

// hasLiveChild sees a living child, and only a living one.
func TestHasLiveChild(t *testing.T) {
	reapAll()
	if hasLiveChild() {
		t.Fatal("a living child before any was started")
	}
	cmd := exec.Command("sleep", "1000")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	if !hasLiveChild() {
		t.Fatal("no living child while sleep runs")
	}
	cmd.Process.Kill()
	deadline := time.Now().Add(30 * time.Second) // only to catch hangs
	for {
		if st, ok := readStat(cmd.Process.Pid); ok && st.state == 'Z' {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the killed child did not become a zombie")
		}
		time.Sleep(time.Millisecond)
	}
	if hasLiveChild() {
		t.Fatal("a zombie counted as a living child")
	}
}
