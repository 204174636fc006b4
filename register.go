package procpool

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"runtime/debug"
	"slices"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/procpool/procpool/codec"
	"github.com/procpool/procpool/internal/cborenc"
	"github.com/procpool/procpool/internal/serve"
	"github.com/procpool/procpool/internal/wire"
)

// Func is a function registered with Register, or declared with Declare: a
// handle that names it in the parent and in the workers. The zero Func is
// not usable: every call given it returns ErrZeroFunc.
type Func[In, Out any] struct {
	name string
	fn   func(context.Context, In) (Out, error)
}

// Name returns the name the function was registered under.
func (f Func[In, Out]) Name() string { return f.name }

// AnyFunc is a Func of any argument and result types, as WithRequire takes
// them. Only a Func implements it.
type AnyFunc interface {
	Name() string
	isFunc()
}

func (Func[In, Out]) isFunc() {}

// handler runs a registered function on encoded input in a worker (the
// serve loop calls it).
type handler interface {
	serve.Handler
	// fingerprint is the fingerprint of its argument and result types.
	fingerprint() string
}

// registry is the one piece of global state: the functions every process of
// the program knows by name.
var registry struct {
	mu       sync.RWMutex
	funcs    map[string]handler // under mu: the functions Register made
	declared []string           // under mu: the names Declare took, which only foreign workers serve
	serving  atomic.Bool        // Main has been called: registering now is a bug
}

// Register makes fn callable in worker processes under name and returns the
// handle to pass to Apply, Map and friends. Call it at package level (in a
// var declaration), so that the parent and every worker — which re-run the
// same program — register the same functions before Main runs.
//
// Register panics if name is empty or already taken, or if it is called
// after Main: a function registered then is unknown to the workers. It costs
// one map insertion and a walk of In's and Out's structure for the
// fingerprint that lets New catch a worker built from other versions of
// them (see docs/protocol.md).
func Register[In, Out any](name string, fn func(context.Context, In) (Out, error)) Func[In, Out] {
	if name == "" || len(name) > 65535 {
		panic(fmt.Sprintf("procpool: Register: name length %d is not in 1..65535", len(name)))
	}
	if fn == nil {
		panic(fmt.Sprintf("procpool: Register(%q) with a nil function", name))
	}
	if registry.serving.Load() {
		panic(fmt.Sprintf("procpool: Register(%q) called after procpool.Main: register functions at package level (var f = procpool.Register(...)) so that workers know them", name))
	}
	registry.mu.Lock()
	defer registry.mu.Unlock()
	if registry.funcs == nil {
		registry.funcs = make(map[string]handler)
	}
	if _, dup := registry.funcs[name]; dup || slices.Contains(registry.declared, name) {
		panic(fmt.Sprintf("procpool: Register(%q): a function with this name is already registered or declared", name))
	}
	registry.funcs[name] = typedHandler[In, Out]{fname: name, fn: fn, fp: fingerprint(reflect.TypeFor[In](), reflect.TypeFor[Out]())}
	return Func[In, Out]{name: name, fn: fn}
}

// served is the registry as the serve loop sees it.
type served struct{}

func (served) Lookup(name []byte) serve.Handler { return lookupBytes(name) }
func (served) Names() []string                  { return registeredNames() }
func (served) Fingerprints() map[string]string  { return localFingerprints() }
func (served) Report(err error) wire.ErrorBody  { return errorBody(err) }

// errorBody is the report of a task's failure: a *RemoteError's fields
// and the identity of the function's error (see identify).
func errorBody(err error) wire.ErrorBody {
	var re *RemoteError
	if errors.As(err, &re) {
		return wire.ErrorBody{Message: re.Message, Type: re.Type, Stack: re.Stack, Panic: re.Panic, Code: re.Code,
			Chain: re.Chain, Sentinels: re.sentinels, Values: re.values}
	}
	return wire.ErrorBody{Message: err.Error(), Type: typeName(err)}
}

func stack() string { return string(debug.Stack()) }

// lookupBytes finds a function by name without allocating.
func lookupBytes(name []byte) handler {
	registry.mu.RLock()
	h := registry.funcs[string(name)]
	registry.mu.RUnlock()
	return h
}

func registeredNames() []string {
	registry.mu.RLock()
	defer registry.mu.RUnlock()
	names := make([]string, 0, len(registry.funcs))
	for n := range registry.funcs {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

type typedHandler[In, Out any] struct {
	fname string
	fn    func(context.Context, In) (Out, error)
	fp    string
}

func (h typedHandler[In, Out]) Name() string        { return h.fname }
func (h typedHandler[In, Out]) fingerprint() string { return h.fp }

func (h typedHandler[In, Out]) Call(ctx context.Context, c codec.Codec, payload, dst []byte) ([]byte, error) {
	var in In
	if err := c.Unmarshal(payload, &in); err != nil {
		return dst, &RemoteError{Func: h.fname, Code: CodeDecode, Message: "decoding the argument: " + err.Error(), Type: typeName(err)}
	}
	out, err := runProtected(ctx, c, h.fname, h.fn, in)
	if err != nil {
		return dst, err
	}
	res, err := c.Append(dst, out)
	if err != nil {
		return dst, &RemoteError{Func: h.fname, Code: CodeEncode, Message: "encoding the result: " + err.Error(), Type: typeName(err)}
	}
	return res, nil
}

func (h typedHandler[In, Out]) CallChunk(ctx context.Context, c codec.Codec, payload, dst []byte, from int, rec *wire.Journal) ([]byte, []serve.ItemFailure, error) {
	var ins []In
	if err := c.Unmarshal(payload, &ins); err != nil {
		return dst, nil, &RemoteError{Func: h.fname, Code: CodeDecode, Message: "decoding the arguments: " + err.Error(), Type: typeName(err)}
	}
	if from < 0 || from > len(ins) {
		return dst, nil, &RemoteError{Func: h.fname, Code: CodeDecode, Message: fmt.Sprintf("first item %d of a chunk of %d", from, len(ins))}
	}
	ins = ins[from:]
	var fails []serve.ItemFailure
	if lc, ok := c.(codec.ListCodec); ok && rec != nil && len(ins) > 1 {
		// Each result goes into the journal as its item finishes: a
		// death in the middle of the chunk loses no finished item.
		list := rec.StartItems()
		var out Out // one variable for every item: encoding it boxes a pointer, once
		tc := serve.TaskContext(ctx)
		enc := itemEncoder[Out](c)
		sep := lc.AppendListSep(nil) // the same bytes between every two items
		for i, in := range ins {
			var err error
			switch why := tc.StoppedFor(); {
			case i > 0 && (why == wire.StopMemory || why == serve.StopTerm):
				// The items left run elsewhere: the worker ends between
				// items, blaming none.
				rec.StopItems()
				return dst, nil, serve.ErrItemsStopped
			case i > 0 && why == wire.StopCancel:
				// The parent has ended the chunk: run nothing more.
				var zero Out
				out, err = zero, context.Canceled
			default:
				out, err = runProtected(ctx, c, h.fname, h.fn, in)
			}
			if err != nil {
				if re, ok := err.(*RemoteError); ok && re.Code == "" && ctx.Err() == context.DeadlineExceeded {
					re.Code = CodeDeadline // it failed once the chunk's deadline had passed
				}
				fails = append(fails, serve.ItemFailure{Index: i, Err: err})
				body, _ := json.Marshal(errorBody(err))
				rec.ItemError(i, body)
				var zero Out
				out = zero
			}
			if i > 0 && len(sep) > 0 {
				list = append(list, sep...)
			}
			if list, err = enc(list, &out); err != nil {
				return dst, nil, &RemoteError{Func: h.fname, Code: CodeEncode, Message: "encoding the results: " + err.Error(), Type: typeName(err)}
			}
			rec.Finished(list, i+1)
		}
		dst = lc.AppendListHead(dst, len(ins))
		return lc.AppendListTail(append(dst, list...)), fails, nil
	}
	outs := make([]Out, len(ins))
	for i, in := range ins {
		out, err := runProtected(ctx, c, h.fname, h.fn, in)
		if err != nil {
			fails = append(fails, serve.ItemFailure{Index: i, Err: err})
			continue
		}
		outs[i] = out
	}
	res, err := c.Append(dst, outs)
	if err != nil {
		return dst, nil, &RemoteError{Func: h.fname, Code: CodeEncode, Message: "encoding the results: " + err.Error(), Type: typeName(err)}
	}
	return res, fails, nil
}

// runProtected calls fn and turns a returned error or a panic into a
// *RemoteError that carries the error's identity (see identify), encoded
// with c.
func runProtected[In, Out any](ctx context.Context, c codec.Codec, name string, fn func(context.Context, In) (Out, error), in In) (out Out, err error) {
	defer func() {
		if v := recover(); v != nil {
			re := &RemoteError{Func: name, Message: fmt.Sprint(v), Type: typeName(v), Panic: true, Stack: stack()}
			if e, ok := v.(error); ok {
				re.Chain, re.wrapped = chainOf(e), &unwrapped{errs: []error{e}}
				re.sentinels, re.values = identify(e, c)
			} else {
				re.Chain = []string{re.Type}
			}
			err = re
		}
	}()
	out, err = fn(ctx, in)
	if err != nil {
		return out, newRemoteError(name, err, c)
	}
	return out, nil
}

// newRemoteError reports a function's error. A *RemoteError from a pool the
// function used itself passes through with its message and types, and the
// identity it carries.
func newRemoteError(name string, err error, c codec.Codec) *RemoteError {
	var re *RemoteError
	if inner, ok := err.(*RemoteError); ok {
		cp := *inner
		re = &cp
	} else {
		re = &RemoteError{Func: name, Message: err.Error(), Type: typeName(err), Chain: chainOf(err), wrapped: &unwrapped{errs: []error{err}}}
	}
	re.sentinels, re.values = identify(err, c)
	return re
}

func typeName(v any) string {
	if v == nil {
		return ""
	}
	return reflect.TypeOf(v).String()
}

// itemEncoder returns how to encode one result of type Out with c: for the
// CBOR codec and integer results (a Map of numbers, where the per-item cost
// shows), straight into the buffer; else through c.Append.
func itemEncoder[Out any](c codec.Codec) func([]byte, *Out) ([]byte, error) {
	if c == codec.CBOR {
		switch any((*Out)(nil)).(type) {
		case *int:
			return func(dst []byte, v *Out) ([]byte, error) { return cborenc.AppendInt(dst, int64(*any(v).(*int))), nil }
		case *int64:
			return func(dst []byte, v *Out) ([]byte, error) { return cborenc.AppendInt(dst, *any(v).(*int64)), nil }
		}
	}
	return func(dst []byte, v *Out) ([]byte, error) { return c.Append(dst, v) }
}
