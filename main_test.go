//go:build unix

package procpool_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/procpool/procpool"
	"go.uber.org/goleak"
)

// envMode makes the test binary act as a misbehaving worker program for the
// tests that need one (see TestMain).
const envMode = "PROCPOOL_TEST_MODE"

// envDeaf makes the orphan-parent mode also run tasks that change SIGTERM's
// disposition ("ignore" or "reset") and block.
const envDeaf = "PROCPOOL_TEST_DEAF"

func TestMain(m *testing.M) {
	switch os.Getenv(envMode) {
	case "exit-without-main":
		// A program that never calls procpool.Main and just exits.
		fmt.Println("I am not a procpool worker")
		os.Exit(0)
	case "hang-without-main":
		// A program that never calls procpool.Main and never exits.
		time.Sleep(time.Hour)
		os.Exit(0)
	case "stderr-exit-3":
		// A program that fails before it could become a worker, saying why.
		fmt.Fprintln(os.Stderr, "loading config.yaml: no such file or directory")
		os.Exit(3)
	case "panic-at-start":
		// A program that panics before it could become a worker.
		panic("no configuration for this host")
	case "stderr-hang":
		// A program that complains and then hangs, never answering.
		fmt.Fprintln(os.Stderr, "waiting for the database at db:5432")
		time.Sleep(time.Hour)
		os.Exit(0)
	case "garbage":
		// Says hello like a worker, then answers every task with garbage.
		badWorker("garbage")
	case "close-early":
		badWorker("close-early")
	case "wrong-id":
		badWorker("wrong-id")
	case "huge-frame":
		badWorker("huge-frame")
	case "item-out-of-range":
		badWorker("item-out-of-range")
	}
	procpool.Main()
	if os.Getenv(envMode) == "orphan-parent" {
		orphanParent()
	}
	// Under -race, a Go program sleeps a second at exit by default; workers
	// exit often in these tests.
	if os.Getenv("GORACE") == "" {
		os.Setenv("GORACE", "atexit_sleep_ms=0")
	}
	goleak.VerifyTestMain(m)
}

// children returns the pids of this process's live child processes.
func children() []int {
	self := strconv.Itoa(os.Getpid())
	var kids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) > 1 && f[1] == self && f[0] != "Z" {
			kids = append(kids, pid)
		}
	}
	return kids
}

// noOrphans fails the test if a child process of the test binary is still
// alive shortly after the test ends (pools must reap their workers).
func noOrphans(t *testing.T) {
	t.Helper()
	t.Cleanup(func() {
		deadline := time.Now().Add(10 * time.Second)
		for {
			kids := children()
			if len(kids) == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("worker processes outlived the test: %v", kids)
				return
			}
			if os.Getenv("DEBUG_KIDS") != "" {
				for _, k := range kids {
					b, _ := os.ReadFile("/proc/" + strconv.Itoa(k) + "/stat")
					t.Logf("kid %s", b)
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

// orphanParent plays a program that starts a pool whose tasks start
// grandchildren (in the workers' process groups, and detached into
// sessions of their own), prints every pid, and waits to be killed.
func orphanParent() {
	p, err := procpool.New(procpool.WithProcesses(2))
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(1)
	}
	ctx := context.Background()
	pids := []string{"PIDS"}
	for _, w := range p.Stats().Workers {
		pids = append(pids, strconv.Itoa(w.Pid))
	}
	for range 2 {
		g, err := procpool.Apply(ctx, p, spawnSleeper, 0)
		if err != nil {
			fmt.Println("ERR", err)
			os.Exit(1)
		}
		pids = append(pids, strconv.Itoa(g))
	}
	for range 2 { // grandchildren that left the workers' groups and sessions
		g, err := procpool.Apply(ctx, p, detach, detachArg{})
		if err != nil {
			fmt.Println("ERR", err)
			os.Exit(1)
		}
		pids = append(pids, strconv.Itoa(g))
	}
	if mode := os.Getenv(envDeaf); mode != "" {
		// Each worker runs a task that starts a grandchild, then changes
		// SIGTERM's disposition and blocks: the worker must still die with
		// its parent, and its grandchild with it.
		for i := range 2 {
			path := filepath.Join(os.TempDir(), fmt.Sprintf("procpool-deaf-%d-%d", os.Getpid(), i))
			if _, err := procpool.ApplyAsync(ctx, p, deafSleeper, deafArg{Path: path, Mode: mode}); err != nil {
				fmt.Println("ERR", err)
				os.Exit(1)
			}
			for {
				b, err := os.ReadFile(path)
				if err == nil && strings.HasSuffix(string(b), "\n") {
					os.Remove(path)
					pids = append(pids, strings.TrimSpace(string(b)))
					break
				}
				time.Sleep(time.Millisecond)
			}
		}
	}
	fmt.Println(strings.Join(pids, " "))
	time.Sleep(time.Hour)
	os.Exit(0)
}
