// Package cborenc writes the CBOR heads and integers that package codec's
// fast paths write, for the worker's per-item encoding of a chunk's results
// too. Shortest form, as the CBOR library writes them with codec's options.
package cborenc

import (
	"encoding/binary"
	"math"
)

// AppendInt appends n as a CBOR integer.
func AppendInt(dst []byte, n int64) []byte {
	if n >= 0 {
		return AppendHead(dst, 0, uint64(n))
	}
	return AppendHead(dst, 1, uint64(-1-n))
}

// AppendHead appends a data item's head: major type and argument, in the
// shortest form.
func AppendHead(dst []byte, major byte, n uint64) []byte {
	m := major << 5
	switch {
	case n < 24:
		return append(dst, m|byte(n))
	case n <= math.MaxUint8:
		return append(dst, m|24, byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(dst, m|25), uint16(n))
	case n <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(dst, m|26), uint32(n))
	default:
		return binary.BigEndian.AppendUint64(append(dst, m|27), n)
	}
}
