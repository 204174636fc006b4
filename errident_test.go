//go:build unix

package procpool_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/fxamacker/cbor/v2"
	"github.com/procpool/procpool"
)

// errQuota is a sentinel registered at package level, so that the parent
// and the workers (which re-run this test binary) both know it.
var errQuota = procpool.RegisterError("github.com/procpool/procpool_test.errQuota", errors.New("quota exceeded"))

// tooBigError is a registered error type with a pointer receiver.
type tooBigError struct{ Size, Limit int }

func (e *tooBigError) Error() string {
	return fmt.Sprintf("%d bytes is over the limit of %d", e.Size, e.Limit)
}

// codeError is a registered error type with a value receiver.
type codeError struct{ Code int }

func (e codeError) Error() string { return fmt.Sprintf("code %d", e.Code) }

// unregisteredError is not registered: it arrives as text only.
type unregisteredError struct{ N int }

func (e *unregisteredError) Error() string { return fmt.Sprintf("unregistered %d", e.N) }

func init() {
	procpool.RegisterErrorType[*tooBigError]()
	procpool.RegisterErrorType[codeError]()
}

// stdSentinels are the standard library's sentinels that keep their
// identity without being registered by the program.
var stdSentinels = []error{
	io.EOF, io.ErrUnexpectedEOF, fs.ErrNotExist, fs.ErrExist, fs.ErrPermission,
	fs.ErrInvalid, fs.ErrClosed, context.Canceled, context.DeadlineExceeded, os.ErrDeadlineExceeded,
}

var (
	// failWith returns the error its argument names, or panics with it.
	failWith = procpool.Register("failWith", func(_ context.Context, what string) (int, error) {
		err := errorNamed(what)
		if rest, ok := strings.CutPrefix(what, "panic:"); ok {
			panic(errorNamed(rest))
		}
		return 0, err
	})

	// failWithStd returns stdSentinels[i], wrapped.
	failWithStd = procpool.Register("failWithStd", func(_ context.Context, i int) (int, error) {
		return 0, fmt.Errorf("task %d: %w", i, stdSentinels[i])
	})
)

func errorNamed(what string) error {
	switch what {
	case "notexist":
		_, err := os.Open("/nonexistent/procpool-test")
		return fmt.Errorf("loading: %w", err)
	case "quota":
		return fmt.Errorf("account 7: %w", errQuota)
	case "toobig":
		return fmt.Errorf("upload: %w", &tooBigError{Size: 12, Limit: 10})
	case "code":
		return codeError{Code: 7}
	case "joined":
		return errors.Join(errQuota, fmt.Errorf("part: %w", &tooBigError{Size: 3, Limit: 2}), io.EOF)
	case "unregistered":
		return &unregisteredError{N: 3}
	}
	return errors.New("unknown case " + what)
}

// checkIdentity checks that err, a task's error from failWith(what), has
// kept its identity across the boundary.
func checkIdentity(t *testing.T, what string, err error) {
	t.Helper()
	var re *procpool.RemoteError
	if !errors.As(err, &re) {
		t.Fatalf("%s: %v (%T); want a *RemoteError", what, err, err)
	}
	var tb *tooBigError
	var ce codeError
	switch what {
	case "notexist":
		want := []string{"*fmt.wrapError", "*fs.PathError", "syscall.Errno"}
		if !errors.Is(err, fs.ErrNotExist) || !errors.Is(err, os.ErrNotExist) || errors.Is(err, fs.ErrExist) {
			t.Errorf("%s: errors.Is(err, fs.ErrNotExist) false, or fs.ErrExist true: %v", what, err)
		}
		if re.Message != "loading: open /nonexistent/procpool-test: no such file or directory" || re.Type != "*fmt.wrapError" || !slices.Equal(re.Chain, want) {
			t.Errorf("%s: message %q, type %q, chain %q; want the worker's message, and chain %q", what, re.Message, re.Type, re.Chain, want)
		}
		if re.Error() != "procpool: failWith: "+re.Message+" (*fmt.wrapError)" {
			t.Errorf("%s: Error() = %q", what, re.Error())
		}
	case "quota":
		if !errors.Is(err, errQuota) || errors.Is(err, io.EOF) {
			t.Errorf("%s: errors.Is(err, errQuota) false or io.EOF true: %v", what, err)
		}
	case "toobig", "panic:toobig":
		if !errors.As(err, &tb) || *tb != (tooBigError{Size: 12, Limit: 10}) {
			t.Errorf("%s: errors.As(err, *tooBigError) = %v; want {12 10}", what, tb)
		}
		if !slices.Equal(re.Chain, []string{"*fmt.wrapError", "*procpool_test.tooBigError"}) {
			t.Errorf("%s: chain %q", what, re.Chain)
		}
		if re.Panic != (what == "panic:toobig") || re.Panic && !strings.Contains(re.Stack, "procpool_test.init") {
			t.Errorf("%s: panic %v, stack %q", what, re.Panic, re.Stack)
		}
	case "code":
		if !errors.As(err, &ce) || ce.Code != 7 {
			t.Errorf("%s: errors.As(err, codeError) = %v; want code 7", what, ce)
		}
	case "joined":
		if !errors.Is(err, errQuota) || !errors.Is(err, io.EOF) || !errors.As(err, &tb) || *tb != (tooBigError{Size: 3, Limit: 2}) {
			t.Errorf("%s: Is quota %v, Is io.EOF %v, As tooBig %v", what, errors.Is(err, errQuota), errors.Is(err, io.EOF), tb)
		}
		want := []string{"*errors.joinError", "*errors.errorString", "*fmt.wrapError", "*procpool_test.tooBigError", "*errors.errorString"}
		if !slices.Equal(re.Chain, want) {
			t.Errorf("%s: chain %q, want %q", what, re.Chain, want)
		}
	case "unregistered":
		var ue *unregisteredError
		if errors.As(err, &ue) || errors.As(err, &tb) || errors.Is(err, errQuota) {
			t.Errorf("%s: an unregistered error type matched: %v", what, err)
		}
		if re.Message != "unregistered 3" || re.Type != "*procpool_test.unregisteredError" {
			t.Errorf("%s: message %q, type %q", what, re.Message, re.Type)
		}
	}
}

var identityCases = []string{"notexist", "quota", "toobig", "panic:toobig", "code", "joined", "unregistered"}

// A task's error keeps its identity across the process boundary: the
// standard library's sentinels, a registered sentinel and registered error
// types match with errors.Is and errors.As in the parent, from Apply, Map
// and Imap alike; an unregistered error type stays text.
func TestErrorIdentity(t *testing.T) {
	for _, mode := range []struct {
		name string
		opts []procpool.Option
	}{
		{"processes", []procpool.Option{procpool.WithProcesses(1)}},
		{"in-process", []procpool.Option{procpool.WithProcesses(1), procpool.WithInProcess()}},
	} {
		t.Run(mode.name, func(t *testing.T) {
			ctx := testCtx(t)
			p := newPool(t, mode.opts...)
			for _, what := range identityCases {
				_, err := procpool.Apply(ctx, p, failWith, what)
				checkIdentity(t, what, err)
			}
			for i, s := range stdSentinels {
				_, err := procpool.Apply(ctx, p, failWithStd, i)
				var re *procpool.RemoteError
				if !errors.As(err, &re) || !errors.Is(err, s) {
					t.Errorf("a task's error wrapping %v: errors.Is false: %v", s, err)
				}
				for j, other := range stdSentinels {
					if j != i && errors.Is(err, other) && !errors.Is(s, other) {
						t.Errorf("a task's error wrapping %v matches %v too", s, other)
					}
				}
			}
			// Chunked: each item's error keeps its own identity.
			for _, what := range identityCases {
				_, err := procpool.Map(ctx, p, failWith, []string{what, what}, procpool.ChunkSize(2))
				var me *procpool.MapError
				if !errors.As(err, &me) || me.Index != 0 {
					t.Fatalf("Map: %v; want a *MapError for item 0", err)
				}
				checkIdentity(t, what, me.Err)
				for _, err := range procpool.Imap(ctx, p, failWith, slices.Values([]string{what}), procpool.ChunkSize(1)) {
					checkIdentity(t, what, err)
				}
			}
		})
	}
}

// Registering errors after Main, or what cannot be registered, panics, as
// Register does: the workers would not know them.
func TestRegisterErrorMisuse(t *testing.T) {
	mustPanic := func(what, want string, f func()) {
		t.Helper()
		defer func() {
			t.Helper()
			if v := recover(); v == nil || !strings.Contains(fmt.Sprint(v), want) {
				t.Errorf("%s: panic %v; want one that says %q", what, v, want)
			}
		}()
		f()
	}
	// TestMain has called procpool.Main.
	mustPanic("RegisterError after Main", "after procpool.Main", func() { procpool.RegisterError("late", errors.New("late")) })
	mustPanic("RegisterErrorType after Main", "after procpool.Main", procpool.RegisterErrorType[*unregisteredError])
	mustPanic("RegisterError without a name", "empty name", func() { procpool.RegisterError("", errors.New("x")) })
	mustPanic("RegisterError(nil)", "nil error", func() { procpool.RegisterError("nil", nil) })
	mustPanic("RegisterErrorType of an interface", "interface type", procpool.RegisterErrorType[error])
	mustPanic("RegisterErrorType of an unnamed type", "unnamed type", procpool.RegisterErrorType[struct{ error }])
}

// statsPool is the pool whose lock statsError's decoding takes, if set.
var statsPool atomic.Pointer[procpool.Pool]

// statsError is a registered error type whose decoding in the parent calls
// Stats, which takes the pool's lock: user code, which must not run under
// that lock.
type statsError struct{ N int }

func (e *statsError) Error() string { return fmt.Sprintf("stats error %d", e.N) }

func (e *statsError) UnmarshalCBOR(b []byte) error {
	if p := statsPool.Load(); p != nil {
		_ = p.Stats()
	}
	var v struct{ N int }
	if err := cbor.Unmarshal(b, &v); err != nil {
		return err
	}
	e.N = v.N
	return nil
}

func init() { procpool.RegisterErrorType[*statsError]() }

// failThenCrash fails item 0 with a *statsError and crashes the worker on
// item 1.
var failThenCrash = procpool.Register("failThenCrash", func(_ context.Context, x int) (int, error) {
	if x == 1 {
		os.Exit(3)
	}
	return 0, &statsError{N: 5}
})

// The parent rebuilds a task's typed error when the caller first looks
// into it, not while the pool holds its lock, where it makes the errors of
// the finished items of a chunk whose worker died: the type's decoding,
// user code, may call the pool (invariant 5).
func TestTypedErrorDecodedOutsidePoolLock(t *testing.T) {
	ctx := testCtx(t)
	p := newPool(t, procpool.WithProcesses(1))
	statsPool.Store(p)
	defer statsPool.Store(nil)

	_, err := procpool.Map(ctx, p, failThenCrash, []int{0, 1}, procpool.ChunkSize(2))
	var me *procpool.MapError
	var se *statsError
	if !errors.As(err, &me) || me.Index != 0 || !errors.As(err, &se) || se.N != 5 {
		t.Fatalf("Map: %v; want item 0's *statsError", err)
	}
	var we *procpool.WorkerExitError
	if _, err := procpool.Map(ctx, p, failThenCrash, []int{1, 0}, procpool.ChunkSize(2)); !errors.As(err, &we) {
		t.Fatalf("Map with the crash first: %v; want a *WorkerExitError", err)
	}
}
