package procpool

import (
	"fmt"
	"slices"
)

// Declare returns the handle of a function that only the workers of a
// WithCommand pool implement: a worker written in Python, JavaScript or any
// language that speaks docs/protocol.md, or another Go program. The handle
// is typed like one from Register and goes to Apply, Map and friends and to
// WithInitializer in the same way; the worker decodes In and encodes Out
// with the pool's codec (docs/protocol.md lists which types map to which in
// each codec).
//
// A declared function has no Go body and no entry in this program's worker
// registry: a pool that re-runs this program, or runs in-process, fails a
// call to it with ErrUnknownFunc (a *RemoteError). A WithCommand pool checks
// the functions its workers list when they start: without WithRequire, every
// function this program declares must be served, or New returns a
// *StartError that lists those missing (wrapping ErrHandshake); with
// WithRequire, exactly the functions it names are checked, which is how a
// program that declares functions for workers in two languages keeps each
// pool to its own.
//
// Call it at package level, like Register. It panics if name is empty,
// longer than 65535 bytes, or already registered or declared. It costs one
// map insertion.
func Declare[In, Out any](name string) Func[In, Out] {
	if name == "" || len(name) > 65535 {
		panic(fmt.Sprintf("procpool: Declare: name length %d is not in 1..65535", len(name)))
	}
	registry.mu.Lock()
	defer registry.mu.Unlock()
	if _, dup := registry.funcs[name]; dup || slices.Contains(registry.declared, name) {
		panic(fmt.Sprintf("procpool: Declare(%q): a function with this name is already registered or declared", name))
	}
	registry.declared = append(registry.declared, name)
	return Func[In, Out]{name: name}
}

// declaredNames returns the names of the functions this program declares,
// in the order of their declaration.
func declaredNames() []string {
	registry.mu.RLock()
	defer registry.mu.RUnlock()
	return slices.Clone(registry.declared)
}
