package procpool

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"reflect"
	"sync"

	"github.com/procpool/procpool/codec"
	"github.com/procpool/procpool/internal/wire"
)

// A task's error crosses the process boundary as text plus its identity
// (see docs/protocol.md, "error"): the worker names the registered
// sentinels it matches and encodes the errors of registered types it
// wraps; the parent puts those sentinels and rebuilt values behind the
// *RemoteError's Unwrap, so errors.Is and errors.As find them.

// maxChain bounds how many errors of a chain the worker walks and names:
// a chain is rarely more than a handful deep, and a buggy Unwrap may
// return its own receiver.
const maxChain = 32

// errRegistry holds the sentinels and error types that keep their identity
// across the boundary. Like the function registry, it is filled at package
// level, before Main, and only read afterwards.
var errRegistry struct {
	mu        sync.RWMutex
	sentinels []namedSentinel  // in registration order, the standard library's first; never changed in place
	byName    map[string]error // sentinel by registered name
	types     map[reflect.Type]*errType
	typeNames map[string]*errType
}

type namedSentinel struct {
	name string
	err  error
}

// errType is a registered error type: how to encode a value of it in the
// worker and rebuild one in the parent.
type errType struct {
	name   string
	encode func(c codec.Codec, e error) ([]byte, error)
	decode func(c codec.Codec, data []byte) (error, bool)
}

// The standard library's common sentinels, registered under their import
// path and name. docs/protocol.md lists the same names.
func init() {
	for _, s := range []namedSentinel{
		{"io.EOF", io.EOF},
		{"io.ErrUnexpectedEOF", io.ErrUnexpectedEOF},
		{"io/fs.ErrNotExist", fs.ErrNotExist},
		{"io/fs.ErrExist", fs.ErrExist},
		{"io/fs.ErrPermission", fs.ErrPermission},
		{"io/fs.ErrInvalid", fs.ErrInvalid},
		{"io/fs.ErrClosed", fs.ErrClosed},
		{"context.Canceled", context.Canceled},
		{"context.DeadlineExceeded", context.DeadlineExceeded},
		{"os.ErrDeadlineExceeded", os.ErrDeadlineExceeded},
	} {
		addSentinel(s.name, s.err)
	}
}

// RegisterError makes errors.Is(err, sentinel) work in the parent for a
// task's error that matches sentinel in the worker, and returns sentinel,
// so that it can be declared in one line at package level:
//
//	var ErrQuota = procpool.RegisterError("example.com/billing.ErrQuota", errors.New("quota exceeded"))
//
// The worker reports which registered sentinels a task's error (or the
// error value of a panic) matches with errors.Is, by name; the parent puts
// its own sentinels of those names behind the *RemoteError. Go cannot find
// a variable's name, so name is given: a stable name that the parent and
// the worker agree on, unique in the program — the package's import path
// and the variable's name are a good choice. Renaming it is a change of
// protocol between a parent and an older worker binary: the error then
// arrives without that identity, a plain *RemoteError.
//
// The standard library's common sentinels are registered already:
// io.EOF, io.ErrUnexpectedEOF, fs.ErrNotExist, fs.ErrExist,
// fs.ErrPermission, fs.ErrInvalid, fs.ErrClosed, context.Canceled,
// context.DeadlineExceeded and os.ErrDeadlineExceeded.
//
// Call RegisterError at package level (in a var declaration or an init
// function), like Register, so that the parent and every worker register
// the same sentinels before Main runs. It panics if name is empty or
// taken, if sentinel is nil, or if it is called after Main. Each
// registered sentinel costs one errors.Is in the worker for every task
// that fails.
func RegisterError(name string, sentinel error) error {
	if name == "" {
		panic("procpool: RegisterError with an empty name")
	}
	if sentinel == nil {
		panic(fmt.Sprintf("procpool: RegisterError(%q) with a nil error", name))
	}
	if registry.serving.Load() {
		panic(fmt.Sprintf("procpool: RegisterError(%q) called after procpool.Main: register errors at package level so that workers know them", name))
	}
	addSentinel(name, sentinel)
	return sentinel
}

func addSentinel(name string, sentinel error) {
	errRegistry.mu.Lock()
	defer errRegistry.mu.Unlock()
	if _, dup := errRegistry.byName[name]; dup {
		panic(fmt.Sprintf("procpool: RegisterError(%q): a sentinel with this name is already registered", name))
	}
	if errRegistry.byName == nil {
		errRegistry.byName = make(map[string]error)
	}
	errRegistry.byName[name] = sentinel
	errRegistry.sentinels = append(errRegistry.sentinels, namedSentinel{name, sentinel})
}

// RegisterErrorType makes errors.As(err, &target) work in the parent, for
// a target of type *T, when a task's error (or the error value of a panic)
// has an error of type T in its chain in the worker. The worker encodes
// that value with the pool's codec, and the parent decodes it into a new
// T that it puts behind the *RemoteError. So only what the codec carries
// survives: for the built-in codecs, a struct's exported fields. A value
// the codec cannot encode (a func field, a cycle) or decode is left out,
// and errors.As is false for it; the message is there either way.
//
// T must be a named type or a pointer to one, as in
// RegisterErrorType[*TooBigError](); the name that travels is its import
// path and name ("*example.com/app.TooBigError"), so the parent and the
// worker must define it in the same package.
//
// Call RegisterErrorType at package level (in an init function, or in a
// var declaration: var _ = ...), like Register, so that the parent and
// every worker know the type before Main runs. It panics if T is an
// interface or unnamed type, if it is already registered, or if it is
// called after Main. It costs a map lookup per error of a failed task's
// chain in the worker.
func RegisterErrorType[T error]() {
	t := reflect.TypeFor[T]()
	if t.Kind() == reflect.Interface {
		panic(fmt.Sprintf("procpool: RegisterErrorType[%v]: an interface type: register the concrete error type", t))
	}
	name, ok := errTypeName(t)
	if !ok {
		panic(fmt.Sprintf("procpool: RegisterErrorType[%v]: an unnamed type: register a named type or a pointer to one", t))
	}
	if registry.serving.Load() {
		panic(fmt.Sprintf("procpool: RegisterErrorType[%v] called after procpool.Main: register error types at package level so that workers know them", t))
	}
	et := &errType{
		name:   name,
		encode: func(c codec.Codec, e error) ([]byte, error) { return c.Append(nil, e) },
		decode: func(c codec.Codec, data []byte) (error, bool) {
			var v T
			if c.Unmarshal(data, &v) != nil || isNilPointer(v) {
				return nil, false
			}
			return v, true
		},
	}
	errRegistry.mu.Lock()
	defer errRegistry.mu.Unlock()
	if _, dup := errRegistry.types[t]; dup {
		panic(fmt.Sprintf("procpool: RegisterErrorType[%v]: already registered", t))
	}
	if _, dup := errRegistry.typeNames[name]; dup {
		panic(fmt.Sprintf("procpool: RegisterErrorType[%v]: another type is registered as %q", t, name))
	}
	if errRegistry.types == nil {
		errRegistry.types = make(map[reflect.Type]*errType)
		errRegistry.typeNames = make(map[string]*errType)
	}
	errRegistry.types[t] = et
	errRegistry.typeNames[name] = et
}

// errTypeName is the name a registered error type travels under: one "*"
// per pointer, then the import path and the name of the named type.
func errTypeName(t reflect.Type) (string, bool) {
	stars := ""
	for t.Kind() == reflect.Pointer && t.Name() == "" {
		stars += "*"
		t = t.Elem()
	}
	if t.Name() == "" || t.PkgPath() == "" {
		return "", false
	}
	return stars + t.PkgPath() + "." + t.Name(), true
}

func isNilPointer(v any) bool {
	rv := reflect.ValueOf(v)
	return !rv.IsValid() || rv.Kind() == reflect.Pointer && rv.IsNil()
}

// walkChain calls visit for err and the errors it wraps, outermost first,
// in the order errors.Is visits them (depth first through Unwrap() []error),
// at most maxChain times.
func walkChain(err error, visit func(error)) {
	n := 0
	var walk func(error)
	walk = func(e error) {
		for e != nil && n < maxChain {
			visit(e)
			n++
			switch u := e.(type) {
			case interface{ Unwrap() error }:
				e = u.Unwrap()
			case interface{ Unwrap() []error }:
				for _, inner := range u.Unwrap() {
					walk(inner)
				}
				return
			default:
				return
			}
		}
	}
	walk(err)
}

// chainOf returns the Go types of err's chain, outermost first.
func chainOf(err error) (chain []string) {
	defer func() { _ = recover() }() // a user's Unwrap that panics cuts the chain short
	walkChain(err, func(e error) { chain = append(chain, typeName(e)) })
	return chain
}

// identify returns the registered names of the sentinels err matches (as
// errors.Is would, within the first maxChain errors of its chain), in
// registration order, and the encoded errors of registered types in its
// chain, outermost first. It runs in the worker, on the task's goroutine;
// a user's Is, Unwrap or codec method that panics costs the error the
// identity not found yet, and nothing else.
func identify(err error, c codec.Codec) (sentinels []string, values []wire.ErrorValue) {
	errRegistry.mu.RLock()
	known, types := errRegistry.sentinels, len(errRegistry.types)
	errRegistry.mu.RUnlock()
	matched := make([]bool, len(known))
	defer func() {
		_ = recover()
		for i, s := range known {
			if matched[i] {
				sentinels = append(sentinels, s.name)
			}
		}
	}()
	walkChain(err, func(e error) {
		// errors.Is's test, node by node: walkChain bounds the walk, where
		// errors.Is would loop for ever on an Unwrap that returns its
		// receiver.
		is, hasIs := e.(interface{ Is(error) bool })
		for i, s := range known {
			if !matched[i] && (reflect.TypeOf(s.err).Comparable() && e == s.err || hasIs && is.Is(s.err)) {
				matched[i] = true
			}
		}
		if types == 0 {
			return
		}
		errRegistry.mu.RLock()
		et := errRegistry.types[reflect.TypeOf(e)]
		errRegistry.mu.RUnlock()
		if et == nil || isNilPointer(e) {
			return
		}
		if data, err := et.encode(c, e); err == nil {
			values = append(values, wire.ErrorValue{Type: et.name, Codec: c.Name(), Data: data})
		}
	})
	return nil, values // sentinels: set by the deferred function
}

// rebuild returns what the parent puts behind a *RemoteError: the errors
// of registered types it could decode, outermost first, then its own
// registered sentinels of the names the worker sent. Names and types it
// does not know are skipped.
func rebuild(eb *wire.ErrorBody) []error {
	if len(eb.Sentinels) == 0 && len(eb.Values) == 0 {
		return nil
	}
	var errs []error
	for _, v := range eb.Values {
		errRegistry.mu.RLock()
		et := errRegistry.typeNames[v.Type]
		errRegistry.mu.RUnlock()
		if et == nil {
			continue
		}
		c, err := codec.ByName(v.Codec)
		if err != nil {
			continue
		}
		if e, ok := et.decode(c, v.Data); ok {
			errs = append(errs, e)
		}
	}
	errRegistry.mu.RLock()
	for _, name := range eb.Sentinels {
		if s, ok := errRegistry.byName[name]; ok {
			errs = append(errs, s)
		}
	}
	errRegistry.mu.RUnlock()
	return errs
}
