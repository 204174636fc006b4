package codec

import (
	"fmt"
	"slices"
	"strings"
	"sync"
)

// Names of the built-in codecs.
const (
	cborName = "cbor"
	jsonName = "json"
)

// registry holds the codecs registered with Register, by name; the built-in
// ones are not in it (ByName knows them without a lock).
var registry struct {
	mu     sync.RWMutex
	byName map[string]Codec
}

// Register makes c known to [ByName] under c.Name(), in this program.
//
// A pool names its codec to its workers, which look it up with ByName: a
// worker can only use a codec its own program has registered. Call Register
// at package level (in an init function, as codec/msgpack and codec/gob
// do), in a package that both the program that creates the pool and the
// workers' program import (the same program, unless procpool.WithCommand
// names another), so that it is registered before procpool.Main runs.
//
// A name is 1 to 64 bytes of ASCII letters, digits and the characters
// "._+-", and is case-sensitive. Register panics if c is nil, if its name is
// not such a name, or if a codec is already registered under it (the
// built-in "cbor" and "json" included). It costs a map insertion under a
// lock.
func Register(c Codec) {
	if c == nil {
		panic("codec: Register(nil)")
	}
	name := c.Name()
	if !validName(name) {
		panic(fmt.Sprintf("codec: Register: invalid name %q: use 1 to 64 ASCII letters, digits and ._+-", name))
	}
	registry.mu.Lock()
	defer registry.mu.Unlock()
	if _, dup := builtin(name); dup {
		panic(fmt.Sprintf("codec: Register: %q is a built-in codec", name))
	}
	if _, dup := registry.byName[name]; dup {
		panic(fmt.Sprintf("codec: Register: a codec named %q is already registered", name))
	}
	if registry.byName == nil {
		registry.byName = make(map[string]Codec)
	}
	registry.byName[name] = c
}

// ByName returns the codec whose [Codec.Name] is name: a built-in one
// ("cbor", "json") or one registered with [Register] ("msgpack" and "gob"
// once their packages are imported). Names are case-sensitive. For any
// other name it returns an error wrapping [ErrUnknownCodec] that lists the
// names known. It does not allocate on success; a registered codec costs
// a map lookup under a read lock.
func ByName(name string) (Codec, error) {
	if c, ok := builtin(name); ok {
		return c, nil
	}
	registry.mu.RLock()
	c, ok := registry.byName[name]
	registry.mu.RUnlock()
	if ok {
		return c, nil
	}
	return nil, fmt.Errorf("%w %q (known in this program: %s)", ErrUnknownCodec, name, strings.Join(names(), ", "))
}

func builtin(name string) (Codec, bool) {
	switch name {
	case cborName:
		return CBOR, true
	case jsonName:
		return JSON, true
	}
	return nil, false
}

// names returns the names of the known codecs, built-in first.
func names() []string {
	registry.mu.RLock()
	defer registry.mu.RUnlock()
	var more []string
	for name := range registry.byName {
		more = append(more, name)
	}
	slices.Sort(more)
	return append([]string{cborName, jsonName}, more...)
}

func validName(name string) bool {
	if len(name) == 0 || len(name) > 64 {
		return false
	}
	for i := range len(name) {
		switch c := name[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '.', c == '_', c == '+', c == '-':
		default:
			return false
		}
	}
	return true
}
