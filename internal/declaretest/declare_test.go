package declaretest_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/procpool/procpool"
	"go.uber.org/goleak"
)

// envServe makes the test binary, run as a WithCommand worker, register the
// functions that the parent only declares: it stands for a worker in another
// language.
const envServe = "PROCPOOL_DECLARETEST_SERVE"

var serving = os.Getenv(envServe) == "1"

// prefix is what dt.init sets in a worker and dt.prefixed prepends.
var prefix string

var (
	prefixed = declareOrRegister("dt.prefixed", func(_ context.Context, s string) (string, error) {
		return prefix + strings.ToUpper(s), nil
	})
	setPrefix = declareOrRegister("dt.init", func(_ context.Context, s string) (string, error) {
		prefix = s
		return "", nil
	})
	// missing is declared in the parent and in every worker: nobody serves it.
	missing = procpool.Declare[int, int]("dt.missing")
	// double is registered everywhere.
	double = procpool.Register("dt.double", func(_ context.Context, x int) (int, error) { return 2 * x, nil })
)

// declareOrRegister declares name in the parent and registers fn under it in
// a worker started with envServe.
func declareOrRegister[In, Out any](name string, fn func(context.Context, In) (Out, error)) procpool.Func[In, Out] {
	if serving {
		return procpool.Register(name, fn)
	}
	return procpool.Declare[In, Out](name)
}

func TestMain(m *testing.M) {
	procpool.Main()
	goleak.VerifyTestMain(m)
}

func TestDeclaredMissingFailsNew(t *testing.T) {
	_, err := procpool.New(procpool.WithProcesses(1), procpool.WithCommand(os.Args[0]), procpool.WithEnv(envServe+"=1"))
	var se *procpool.StartError
	if !errors.As(err, &se) || !errors.Is(err, procpool.ErrHandshake) {
		t.Fatalf("New of a worker that lacks a declared function: %v; want a *StartError wrapping ErrHandshake", err)
	}
	msg := err.Error()
	if !strings.Contains(msg, `"dt.missing"`) || strings.Contains(msg, `"dt.prefixed"`) || strings.Contains(msg, `"dt.init"`) {
		t.Errorf("message %q should name dt.missing, and only it", msg)
	}
	if !strings.Contains(msg, "declares") {
		t.Errorf("message %q should say the function is declared", msg)
	}
}

func TestDeclaredServed(t *testing.T) {
	ctx := context.Background()
	p, err := procpool.New(procpool.WithProcesses(2), procpool.WithCommand(os.Args[0]), procpool.WithEnv(envServe+"=1"),
		procpool.WithRequire(prefixed, setPrefix), procpool.WithInitializer(setPrefix, "> "))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	got, err := procpool.Apply(ctx, p, prefixed, "abc")
	if err != nil || got != "> ABC" {
		t.Fatalf("Apply(prefixed, abc) = %q, %v; want %q, nil", got, err, "> ABC")
	}
	outs, err := procpool.Map(ctx, p, prefixed, []string{"a", "b", "c"})
	if err != nil || strings.Join(outs, ",") != "> A,> B,> C" {
		t.Fatalf("Map = %q, %v", outs, err)
	}
	for _, w := range p.Stats().Workers {
		if w.Pid == os.Getpid() || w.Pid <= 0 {
			t.Errorf("worker pid %d: the function did not run in a worker process", w.Pid)
		}
	}
	_, err = procpool.Apply(ctx, p, missing, 1)
	var re *procpool.RemoteError
	if !errors.Is(err, procpool.ErrUnknownFunc) || !errors.As(err, &re) {
		t.Fatalf("Apply of a function no worker serves: %v; want a *RemoteError wrapping ErrUnknownFunc", err)
	}
}

func TestDeclaredHasNoGoBody(t *testing.T) {
	// The program's own workers, and in-process ones, do not serve it.
	for _, opts := range [][]procpool.Option{{procpool.WithInProcess()}, {}} {
		p, err := procpool.New(append(opts, procpool.WithProcesses(1))...)
		if err != nil {
			t.Fatal(err)
		}
		_, err = procpool.Apply(context.Background(), p, prefixed, "x")
		if !errors.Is(err, procpool.ErrUnknownFunc) {
			t.Errorf("Apply of a declared function on the program's own workers (%d options): %v; want ErrUnknownFunc", len(opts), err)
		}
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	}
}

// registerDeclared is the panic of Register given a declared name, caught
// at package initialization, before Main (after it, Register panics for
// that reason first).
var registerDeclared = panicOf(func() {
	procpool.Register(missing.Name(), func(context.Context, int) (int, error) { return 0, nil })
})

func panicOf(f func()) (msg string) {
	defer func() {
		if r := recover(); r != nil {
			msg, _ = r.(string)
			if msg == "" {
				msg = "a panic without a message"
			}
		}
	}()
	f()
	return ""
}

func TestDeclarePanics(t *testing.T) {
	for _, c := range []struct {
		name, msg string
	}{
		{"Register of a declared name", registerDeclared},
		{"Declare of an empty name", panicOf(func() { procpool.Declare[int, int]("") })},
		{"Declare of a declared name", panicOf(func() { procpool.Declare[string, int](missing.Name()) })},
		{"Declare of a registered name", panicOf(func() { procpool.Declare[int, int](double.Name()) })},
	} {
		if c.msg == "" {
			t.Errorf("%s: no panic", c.name)
		}
		t.Logf("%s: %s", c.name, c.msg)
	}
	if got, err := procpool.Apply(context.Background(), mustPool(t, procpool.WithInProcess()), double, 21); got != 42 || err != nil {
		t.Errorf("the registered function after a refused Declare: %d, %v", got, err)
	}
	if !strings.Contains(registerDeclared, "already registered or declared") {
		t.Errorf("Register of a declared name panicked with %q", registerDeclared)
	}
}

func mustPool(t *testing.T, opts ...procpool.Option) *procpool.Pool {
	t.Helper()
	p, err := procpool.New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	})
	return p
}
