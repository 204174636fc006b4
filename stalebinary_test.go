//go:build unix

package procpool_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/procpool/procpool"
)

// greetArgs is the argument of staleGreet. The worker programs that
// buildWorkers writes declare it again: "current" with the same fields,
// "stale" as an older version of the code had it, with Name called
// FullName.
type greetArgs struct {
	Name  string
	Times int
}

var staleGreet = procpool.Register("stale.greet", func(_ context.Context, a greetArgs) (string, error) {
	return strings.Repeat("hello "+a.Name+"; ", a.Times), nil
})

const workerProgram = `package main

import (
	"context"
	"strings"

	"github.com/procpool/procpool"
)

type greetArgs struct {
	NAME  string
	Times int
}

var _ = procpool.Register("stale.greet", func(_ context.Context, a greetArgs) (string, error) {
	return strings.Repeat("hello "+a.NAME+"; ", a.Times), nil
})

func main() {
	procpool.Main()
}
`

// buildWorkers builds two worker programs that register only stale.greet,
// from a module that uses this repository through a replace directive:
// "current", whose argument type matches the one this test binary
// registers, and "stale", whose argument has a renamed field. It returns
// their paths.
func buildWorkers(t *testing.T) (current, stale string) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds two Go programs")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to build worker programs with")
	}
	root, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	sum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	files := map[string]string{
		"go.mod": "module stalework\n\ngo 1.24\n\nrequire github.com/procpool/procpool v0.0.0\n\n" +
			"replace github.com/procpool/procpool => " + root + "\n",
		"go.sum":          string(sum),
		"current/main.go": strings.ReplaceAll(workerProgram, "NAME", "Name"),
		"stale/main.go":   strings.ReplaceAll(workerProgram, "NAME", "FullName"),
	}
	for name, text := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(dir, "bin")
	cmd := exec.Command(goTool, "build", "-o", bin+string(filepath.Separator), "./current", "./stale")
	cmd.Dir = dir
	// Offline: the module cache holds this module's dependencies.
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod -buildvcs=false", "GOPROXY=off", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the worker programs: %v\n%s", err, out)
	}
	return filepath.Join(bin, "current"), filepath.Join(bin, "stale")
}

// A worker built from an older version of the code, whose function takes
// an argument with a renamed field, is refused by New, which names the
// function; a current one starts and runs it. A worker may serve a subset
// of the parent's functions: calling one it lacks is ErrUnknownFunc,
// unless WithRequire makes New fail at once, listing the missing ones.
func TestStaleWorkerBinary(t *testing.T) {
	current, stale := buildWorkers(t)
	ctx := testCtx(t)

	noOrphans(t)
	p, err := procpool.New(procpool.WithProcesses(2), procpool.WithCommand(stale))
	if err == nil {
		p.Terminate()
	}
	var se *procpool.StartError
	if !errors.As(err, &se) || !errors.Is(err, procpool.ErrHandshake) || !strings.Contains(err.Error(), `function "stale.greet"`) {
		t.Fatalf("New with a stale worker: %v; want a *StartError naming stale.greet", err)
	}
	t.Logf("New with a stale worker: %v", err)
	if strings.Contains(err.Error(), "square") {
		t.Errorf("New with a stale worker: %v names a function the worker lacks", err)
	}

	p = newPool(t, procpool.WithProcesses(1), procpool.WithCommand(current))
	got, err := procpool.Apply(ctx, p, staleGreet, greetArgs{Name: "Ada", Times: 2})
	if err != nil || got != "hello Ada; hello Ada; " {
		t.Fatalf("Apply on a current worker: %q, %v", got, err)
	}
	if _, err := procpool.Apply(ctx, p, square, 3); !errors.Is(err, procpool.ErrUnknownFunc) {
		t.Fatalf("Apply of a function the worker lacks: %v; want ErrUnknownFunc", err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}

	_, err = procpool.New(procpool.WithProcesses(1), procpool.WithCommand(current), procpool.WithRequire(staleGreet, square, upper))
	if !errors.As(err, &se) || !strings.Contains(err.Error(), `functions "square" and "example.upper"`) || strings.Contains(err.Error(), `"stale.greet"`) {
		t.Fatalf("New requiring functions the worker lacks: %v; want a *StartError listing square and example.upper", err)
	}
	t.Logf("New requiring functions the worker lacks: %v", err)
	p2 := newPool(t, procpool.WithProcesses(1), procpool.WithCommand(current), procpool.WithRequire(staleGreet))
	if err := p2.Close(); err != nil {
		t.Fatal(err)
	}
}

// WithRequire refuses the zero Func, as WithInitializer does.
func TestWithRequireZeroFunc(t *testing.T) {
	for _, f := range []procpool.AnyFunc{procpool.Func[int, int]{}, nil} {
		_, err := procpool.New(procpool.WithProcesses(1), procpool.WithRequire(square, f))
		var oe *procpool.OptionError
		if !errors.As(err, &oe) || !errors.Is(err, procpool.ErrZeroFunc) {
			t.Errorf("WithRequire(square, %v): %v; want an *OptionError wrapping ErrZeroFunc", f, err)
		}
	}
}
