package guard

import (
	"errors"
	"reflect"
	"sync"
	"unsafe"
)

// ErrCycle is returned by CheckCycles for a value that contains a reference
// cycle.
var ErrCycle = errors.New("value contains a reference cycle")

// cyclicTypes caches, per reflect.Type, whether a value of that type can
// contain a reference cycle that an encoder would follow.
var cyclicTypes sync.Map // reflect.Type -> bool

// mayCycle reports whether a value of type t can reach itself through the
// parts an encoder visits: pointers, slices, arrays, maps, interfaces and the
// exported (or embedded) fields of structs. Any interface is assumed to be
// able to lead anywhere. The answer is computed once per type.
func mayCycle(t reflect.Type) bool {
	if c, ok := cyclicTypes.Load(t); ok {
		return c.(bool)
	}
	c := typeMayCycle(t, make(map[reflect.Type]bool))
	cyclicTypes.Store(t, c)
	return c
}

// typeMayCycle walks the type graph from t. onPath holds the types on the
// current path; meeting one of them again means the type is recursive.
func typeMayCycle(t reflect.Type, onPath map[reflect.Type]bool) bool {
	switch t.Kind() {
	case reflect.Interface:
		return true
	case reflect.Pointer, reflect.Slice, reflect.Array, reflect.Map, reflect.Struct:
	default:
		return false
	}
	if done, ok := onPath[t]; ok {
		// true: t is on the current path, so it contains itself.
		// false: t was fully explored before and found acyclic.
		return done
	}
	onPath[t] = true
	cyclic := false
	switch t.Kind() {
	case reflect.Pointer, reflect.Slice, reflect.Array:
		cyclic = typeMayCycle(t.Elem(), onPath)
	case reflect.Map:
		cyclic = typeMayCycle(t.Key(), onPath) || typeMayCycle(t.Elem(), onPath)
	case reflect.Struct:
		for i := range t.NumField() {
			f := t.Field(i)
			if (f.IsExported() || f.Anonymous) && typeMayCycle(f.Type, onPath) {
				cyclic = true
				break
			}
		}
	}
	if cyclic {
		return true
	}
	onPath[t] = false
	return false
}

// CheckCycles returns ErrCycle if v contains a reference cycle. It costs one
// cached type lookup for types that cannot hold a cycle; otherwise it walks
// the value once.
func CheckCycles(v any) error {
	switch v.(type) {
	case nil, bool, int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64, uintptr,
		float32, float64, string, []byte, []int, []int64, []float64, []string:
		return nil // common acyclic types: skip the cache lookup
	}
	rv := reflect.ValueOf(v)
	if !mayCycle(rv.Type()) {
		return nil
	}
	w := cycleWalker{}
	return w.walk(rv)
}

// trackAfter is the nesting depth from which the walker remembers the
// references on its current path. Shallower values cannot be cyclic without
// going deeper, so small values never touch the map.
const trackAfter = 100

type cycleKey struct {
	ptr unsafe.Pointer
	len int
	typ reflect.Type
}

// cycleWalker follows references like an encoder does and detects when a
// reference is reached again while it is still being visited.
type cycleWalker struct {
	depth  int
	onPath map[cycleKey]struct{}
}

// enter records a reference on the current path. It reports false if the
// reference is already on the path, which means a cycle.
func (w *cycleWalker) enter(k cycleKey) bool {
	w.depth++
	if w.depth <= trackAfter {
		return true
	}
	if w.onPath == nil {
		w.onPath = make(map[cycleKey]struct{})
	}
	if _, ok := w.onPath[k]; ok {
		return false
	}
	w.onPath[k] = struct{}{}
	return true
}

func (w *cycleWalker) leave(k cycleKey) {
	if w.depth > trackAfter {
		delete(w.onPath, k)
	}
	w.depth--
}

func (w *cycleWalker) walk(v reflect.Value) error {
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() || !mayCycle(v.Type()) {
			return nil
		}
		k := cycleKey{ptr: v.UnsafePointer(), typ: v.Type()}
		if !w.enter(k) {
			return ErrCycle
		}
		err := w.walk(v.Elem())
		w.leave(k)
		return err
	case reflect.Interface:
		if v.IsNil() {
			return nil
		}
		return w.walk(v.Elem())
	case reflect.Map:
		if v.IsNil() || !mayCycle(v.Type()) {
			return nil
		}
		k := cycleKey{ptr: v.UnsafePointer(), typ: v.Type()}
		if !w.enter(k) {
			return ErrCycle
		}
		keys, elems := mayCycle(v.Type().Key()), mayCycle(v.Type().Elem())
		it := v.MapRange()
		for it.Next() {
			if keys {
				if err := w.walk(it.Key()); err != nil {
					return err
				}
			}
			if elems {
				if err := w.walk(it.Value()); err != nil {
					return err
				}
			}
		}
		w.leave(k)
		return nil
	case reflect.Slice:
		if v.IsNil() || !mayCycle(v.Type()) {
			return nil
		}
		k := cycleKey{ptr: v.UnsafePointer(), len: v.Len(), typ: v.Type()}
		if !w.enter(k) {
			return ErrCycle
		}
		for i := range v.Len() {
			if err := w.walk(v.Index(i)); err != nil {
				return err
			}
		}
		w.leave(k)
		return nil
	case reflect.Array:
		if !mayCycle(v.Type()) {
			return nil
		}
		for i := range v.Len() {
			if err := w.walk(v.Index(i)); err != nil {
				return err
			}
		}
		return nil
	case reflect.Struct:
		t := v.Type()
		if !mayCycle(t) {
			return nil
		}
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() && !f.Anonymous {
				continue
			}
			if err := w.walk(v.Field(i)); err != nil {
				return err
			}
		}
		return nil
	}
	return nil
}
