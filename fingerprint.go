package procpool

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/procpool/procpool/internal/wire"
)

// A worker built from another version of the code may register a function
// under the same name with other argument or result types: a renamed field
// then decodes as zero, and the task returns a wrong result without an
// error. So the hello carries, for each function, a fingerprint of its
// types' structure, and the parent refuses a worker whose fingerprints
// differ from its own (see checkFunctions). docs/protocol.md, "Function
// fingerprints", describes the algorithm byte for byte.

// fingerprint returns the fingerprint of a function from in to out: the
// first 8 bytes of the SHA-256 of its description, in lower-case hex.
func fingerprint(in, out reflect.Type) string {
	sum := sha256.Sum256([]byte(funcDescription(in, out)))
	return hex.EncodeToString(sum[:8])
}

// funcDescription describes a function's types for its fingerprint:
// "func(" + in + ") " + out.
func funcDescription(in, out reflect.Type) string {
	var b strings.Builder
	b.WriteString("func(")
	describeType(&b, in, nil)
	b.WriteString(") ")
	describeType(&b, out, nil)
	return b.String()
}

// describeType writes the structure of t: what a codec sees of it, without
// the names of types. path holds the named types being described, outermost
// first; one met again on it (a recursive type) is written "@i", its index
// in path.
func describeType(b *strings.Builder, t reflect.Type, path []reflect.Type) {
	if t.Name() != "" {
		if i := slices.Index(path, t); i >= 0 {
			b.WriteString("@")
			b.WriteString(strconv.Itoa(i))
			return
		}
		path = append(path, t)
	}
	switch t.Kind() {
	case reflect.Pointer:
		b.WriteString("*")
		describeType(b, t.Elem(), path)
	case reflect.Slice:
		b.WriteString("[]")
		describeType(b, t.Elem(), path)
	case reflect.Array:
		b.WriteString("[")
		b.WriteString(strconv.Itoa(t.Len()))
		b.WriteString("]")
		describeType(b, t.Elem(), path)
	case reflect.Map:
		b.WriteString("map[")
		describeType(b, t.Key(), path)
		b.WriteString("]")
		describeType(b, t.Elem(), path)
	case reflect.Struct:
		b.WriteString("struct{")
		first := true
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() && !f.Anonymous {
				continue // no codec carries it
			}
			if !first {
				b.WriteString("; ")
			}
			first = false
			if f.Anonymous {
				b.WriteString("embed ")
			}
			b.WriteString(f.Name)
			b.WriteString(" ")
			describeType(b, f.Type, path)
			if f.Tag != "" {
				b.WriteString(" ")
				b.WriteString(strconv.Quote(string(f.Tag)))
			}
		}
		b.WriteString("}")
	default:
		// bool, int, ..., complex128, string, unsafe.Pointer, chan, func,
		// interface: the kind's name.
		b.WriteString(t.Kind().String())
	}
}

// localFingerprints returns the fingerprints of the registered functions,
// for the hello.
func localFingerprints() map[string]string {
	registry.mu.RLock()
	defer registry.mu.RUnlock()
	fps := make(map[string]string, len(registry.funcs))
	for name, h := range registry.funcs {
		fps[name] = h.fingerprint()
	}
	return fps
}

// checkFunctions compares a worker's hello with this program's functions.
// It returns a *StartError that names the functions whose fingerprints
// differ from this program's, and the required functions (those WithRequire
// names, or else for a WithCommand pool those the program declares) that
// the worker lacks; nil if there are none. A function the worker sends no fingerprint
// for, or that this program does not register, is not compared.
func (p *Pool) checkFunctions(pid int, h *wire.Hello) error {
	var differ, missing []string
	if len(h.Fingerprints) > 0 {
		registry.mu.RLock()
		for name, fp := range h.Fingerprints {
			if mine := registry.funcs[name]; mine != nil && mine.fingerprint() != fp {
				differ = append(differ, name)
			}
		}
		registry.mu.RUnlock()
		slices.Sort(differ)
	}
	required, why := p.cfg.require, "which WithRequire names"
	if p.cfg.launch != nil {
		// A remote pool's slots serve whatever its hosts serve.
		required = nil
	} else if !p.cfg.requireSet && p.cfg.command != "" {
		required, why = declaredNames(), "which this program declares (procpool.Declare)"
	}
	for _, name := range required {
		if !slices.Contains(h.Functions, name) && !slices.Contains(missing, name) {
			missing = append(missing, name)
		}
	}
	if differ == nil && missing == nil {
		return nil
	}
	var reasons []string
	if differ != nil {
		reasons = append(reasons, fmt.Sprintf("the worker program was built from another version of the code: the argument or result types of %s differ from this program's (rebuild it)", quoteList(differ)))
	}
	if missing != nil {
		reasons = append(reasons, fmt.Sprintf("the worker program does not serve %s, %s", quoteList(missing), why))
	}
	return &StartError{Pid: pid, Reason: strings.Join(reasons, "; "), Err: ErrHandshake}
}

// quoteList writes names as `function "a"` or `functions "a", "b" and "c"`.
func quoteList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = strconv.Quote(n)
	}
	if len(q) == 1 {
		return "function " + q[0]
	}
	return "functions " + strings.Join(q[:len(q)-1], ", ") + " and " + q[len(q)-1]
}
