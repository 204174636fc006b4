// Package guard holds what the codecs of procpool share to stay safe on
// any value and any input: the reference-cycle check run before encoding,
// the decoding limits, and the form of their errors. It is internal to
// package codec and the codec packages below it.
package guard

import "fmt"

// Limits applied by Unmarshal to CBOR and MessagePack input. Allocation is
// bounded by the input size anyway; these bound the work and stack depth
// spent on honest but absurd input.
const (
	MaxNestedLevels = 1000
	MaxElements     = 1 << 26
)

// EncodeError wraps err from codec name while encoding a value of type v.
func EncodeError(name string, v any, err error) error {
	return fmt.Errorf("codec %s: encode %T: %w", name, v, err)
}

// DecodeError wraps err from codec name while decoding into v.
func DecodeError(name string, v any, err error) error {
	return fmt.Errorf("codec %s: decode into %T: %w", name, v, err)
}

// PanicError converts a recovered panic value into an error.
func PanicError(r any) error {
	if err, ok := r.(error); ok {
		return fmt.Errorf("panic: %w", err)
	}
	return fmt.Errorf("panic: %v", r)
}
