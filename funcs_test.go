//go:build unix

package procpool_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/procpool/procpool"
	"github.com/procpool/procpool/internal/wire"
)

// The functions the tests run in workers. They are registered at package
// level, so the re-executed test binary knows them too.
var (
	square = procpool.Register("square", func(_ context.Context, x int) (int, error) { return x * x, nil })

	// pid returns the worker's process id.
	pid = procpool.Register("pid", func(_ context.Context, _ int) (int, error) { return os.Getpid(), nil })

	// squarePid returns x*x and the worker's pid.
	squarePid = procpool.Register("squarePid", func(_ context.Context, x int) ([2]int, error) { return [2]int{x * x, os.Getpid()}, nil })

	failing = procpool.Register("failing", func(_ context.Context, x int) (int, error) {
		if x%3 == 0 {
			return 0, &os.PathError{Op: "open", Path: "/nope/" + strconv.Itoa(x), Err: os.ErrNotExist}
		}
		return x, nil
	})

	panicking = procpool.Register("panicking", func(_ context.Context, msg string) (int, error) { panic(msg) })

	// exitWith ends the worker process with the given status.
	exitWith = procpool.Register("exitWith", func(_ context.Context, code int) (int, error) {
		os.Exit(code)
		return 0, nil
	})

	// exitAfterMs sleeps, then exits the worker with status 3.
	exitAfterMs = procpool.Register("exitAfterMs", func(_ context.Context, ms int) (int, error) {
		time.Sleep(time.Duration(ms) * time.Millisecond)
		os.Exit(3)
		return 0, nil
	})

	// sleepMs sleeps and returns its argument.
	sleepMs = procpool.Register("sleepMs", func(ctx context.Context, ms int) (int, error) {
		time.Sleep(time.Duration(ms) * time.Millisecond)
		return ms, nil
	})

	// workerEnv returns the worker's directory, the value of an environment
	// variable, and procpool's worker marker (which Main must have cleared).
	workerEnv = procpool.Register("workerEnv", func(_ context.Context, key string) ([3]string, error) {
		wd, err := os.Getwd()
		return [3]string{wd, os.Getenv(key), os.Getenv("PROCPOOL_WORKER")}, err
	})

	// digest returns the SHA-256 of its argument.
	digest = procpool.Register("digest", func(_ context.Context, b []byte) ([32]byte, error) { return sha256.Sum256(b), nil })

	// napUs sleeps for the given number of microseconds.
	napUs = procpool.Register("napUs", func(ctx context.Context, us int) (int, error) {
		time.Sleep(time.Duration(us) * time.Microsecond)
		return us, nil
	})

	// leak keeps mb more MiB of touched memory alive in the worker.
	leaked [][]byte
	leak   = procpool.Register("leak", func(_ context.Context, mb int) (int, error) {
		b := bytes.Repeat([]byte{1}, mb<<20) // touched, and fast under -race
		leaked = append(leaked, b)
		return len(leaked) * mb, nil
	})

	// state is set by the initializer in each worker.
	state     string
	setState  = procpool.Register("setState", func(_ context.Context, s string) (struct{}, error) { state = s; return struct{}{}, nil })
	getState  = procpool.Register("getState", func(_ context.Context, _ int) (string, error) { return state, nil })
	failInit  = procpool.Register("failInit", func(_ context.Context, _ int) (struct{}, error) { return struct{}{}, errors.New("no database") })
	exitInit  = procpool.Register("exitInit", func(_ context.Context, _ int) (struct{}, error) { os.Exit(7); return struct{}{}, nil })
	printLine = procpool.Register("printLine", func(_ context.Context, s string) (int, error) {
		n, err := os.Stdout.WriteString(s + "\n")
		return n, err
	})

	// allocMB allocates and touches n MiB and holds it for hold ms.
	allocMB = procpool.Register("allocMB", func(_ context.Context, a [2]int) (int, error) {
		b := make([]byte, a[0]<<20)
		for i := range b {
			b[i] = 1
		}
		time.Sleep(time.Duration(a[1]) * time.Millisecond)
		return len(b), nil
	})

	// spawnSleeper starts a grandchild that sleeps for an hour and returns
	// its pid.
	spawnSleeper = procpool.Register("spawnSleeper", func(_ context.Context, _ int) (int, error) {
		cmd := exec.Command("sleep", "3600")
		if err := cmd.Start(); err != nil {
			return 0, err
		}
		return cmd.Process.Pid, nil
	})

	// unencodable returns a value the codec cannot encode.
	unencodable = procpool.Register("unencodable", func(_ context.Context, _ int) (func(), error) { return func() {}, nil })

	// chanArg takes a value the codec cannot encode.
	chanArg = procpool.Register("chanArg", func(_ context.Context, _ chan int) (int, error) { return 0, nil })
)

// badWorker plays a broken worker program: it completes the handshake, then
// misbehaves on the first task as mode says.
func badWorker(mode string) {
	tasks, results := os.NewFile(3, "tasks"), os.NewFile(4, "results")
	hello, _ := json.Marshal(wire.Hello{Protocol: wire.Version, Pid: os.Getpid(), Codec: os.Getenv("PROCPOOL_CODEC")})
	results.Write(wire.AppendFrame(nil, wire.KindHello, 0, hello))
	r := wire.NewReader(tasks, 0, 0)
	for {
		f, err := r.Next()
		if err != nil {
			os.Exit(0)
		}
		switch mode {
		case "garbage":
			results.Write([]byte("\xde\xad\xbe\xef not a frame at all \x00\x01\x02"))
			os.Exit(0)
		case "close-early":
			results.Close()
			time.Sleep(time.Hour)
		case "wrong-id":
			results.Write(wire.AppendFrame(nil, wire.KindResult, f.ID+1000, []byte{0x07}))
		case "huge-frame":
			results.Write([]byte{0xff, 0xff, 0xff, 0x7f, byte(wire.KindResult)})
			time.Sleep(time.Hour)
		case "item-out-of-range":
			// A chunk result of three zeros (CBOR), with an error for an
			// item far past them.
			body, _ := wire.AppendChunkResultHeader(nil, []wire.ItemError{{Index: 1000, Err: wire.ErrorBody{Message: "no such item"}}})
			body = append(body, 0x83, 0, 0, 0)
			results.Write(wire.AppendFrame(nil, wire.KindResult, f.ID, body))
		}
	}
}

var (
	// initUnlessFile is an initializer that exits the worker once the file
	// at path exists: workers start fine until the test creates it.
	initUnlessFile = procpool.Register("initUnlessFile", func(_ context.Context, path string) (struct{}, error) {
		if _, err := os.Stat(path); err == nil {
			os.Exit(9)
		}
		return struct{}{}, nil
	})

	// initHangIfFile is an initializer that hangs once the file at path
	// exists.
	initHangIfFile = procpool.Register("initHangIfFile", func(_ context.Context, path string) (struct{}, error) {
		if _, err := os.Stat(path); err == nil {
			time.Sleep(time.Hour)
		}
		return struct{}{}, nil
	})

	// countRun appends a line to the file at path (to count how often a task
	// ran), then fails or exits as told.
	countRun = procpool.Register("countRun", func(_ context.Context, a runArg) (int, error) {
		f, err := os.OpenFile(a.Path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
		if err != nil {
			return 0, err
		}
		f.WriteString("run\n")
		f.Close()
		switch a.Then {
		case "exit":
			os.Exit(5)
		case "fail":
			return 0, errors.New("task failed by design")
		}
		return 1, nil
	})

	// nofile returns the worker's soft limit on open files.
	nofile = procpool.Register("nofile", func(_ context.Context, _ int) (uint64, error) {
		var l syscall.Rlimit
		err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l)
		return l.Cur, err
	})

	// spin burns CPU for ms milliseconds of wall time.
	spin = procpool.Register("spin", func(_ context.Context, ms int) (int, error) {
		end := time.Now().Add(time.Duration(ms) * time.Millisecond)
		n := 0
		for time.Now().Before(end) {
			n++
		}
		return n, nil
	})
)

type runArg struct {
	Path string
	Then string // "", "exit" or "fail"
}

// detachArg tells detach what to do.
type detachArg struct {
	Path string // where to write the grandchild's pid, if not empty
	Hold bool   // hand the worker's result pipe (fd 4) to the grandchild
	Then string // "" returns the pid, "exit" exits the worker with status 3, "hang" sleeps an hour
}

// detach starts a grandchild that leaves the worker's process group and
// session (setsid) and is orphaned at once (its parent, a shell, exits),
// and returns its pid. See detachArg.
var detach = procpool.Register("detach", func(_ context.Context, a detachArg) (int, error) {
	cmd := exec.Command("sh", "-c", "setsid sleep 1000 </dev/null >/dev/null 2>&1 & echo $!")
	if a.Hold {
		fd, err := syscall.Dup(4) // not fd 4 itself: its *os.File would close it
		if err != nil {
			return 0, err
		}
		f := os.NewFile(uintptr(fd), "results")
		defer f.Close()
		cmd.ExtraFiles = []*os.File{f} // the grandchild's fd 3
	}
	out, err := cmd.Output()
	if err != nil {
		return 0, err
	}
	g, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		return 0, err
	}
	// The shell has printed the pid before the grandchild calls setsid.
	// Until then it is in the worker's group, which the parent sweeps when
	// the worker exits ("exit" below): go on once it leads its session, or
	// is gone (the test then fails, saying so).
	for !leadsSession(strconv.Itoa(g)) && alive(g) {
		time.Sleep(time.Millisecond)
	}
	if a.Path != "" {
		if err := os.WriteFile(a.Path, []byte(strconv.Itoa(g)), 0o600); err != nil {
			return 0, err
		}
	}
	switch a.Then {
	case "exit":
		os.Exit(3)
	case "hang":
		time.Sleep(time.Hour)
	}
	return g, nil
})

type deafArg struct {
	Path string // where to write the grandchild's pid, then a newline
	Mode string // "ignore" or "reset": what to do to SIGTERM
}

// deafSleeper starts a grandchild in the worker's group, writes its pid to
// a.Path, makes the worker ignore SIGTERM (or resets it to its default),
// and blocks for an hour: a task with its own signal policy.
var deafSleeper = procpool.Register("deafSleeper", func(_ context.Context, a deafArg) (int, error) {
	cmd := exec.Command("sleep", "3600")
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	if a.Mode == "ignore" {
		signal.Ignore(syscall.SIGTERM)
	} else {
		signal.Reset(syscall.SIGTERM)
	}
	if err := os.WriteFile(a.Path, []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o600); err != nil {
		return 0, err
	}
	time.Sleep(time.Hour)
	return 0, nil
})
