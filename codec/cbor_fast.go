package codec

import (
	"encoding/binary"
	"github.com/procpool/procpool/internal/cborenc"
	"math"
)

// Fast paths for the values procpool moves most: an int, slices of ints and
// floats (Map chunks), and byte slices (payloads). They write exactly the bytes the CBOR library
// writes with this package's options (shortest-form integers, float64 kept
// as float64, definite-length arrays, nil slices as null) and read the same
// subset; anything else falls back to the library. They allocate nothing
// beyond the destination slice and run several times faster than reflection.

// appendCBORFast encodes v if it is of a fast-path type.
func appendCBORFast(dst []byte, v any) ([]byte, bool) {
	switch x := v.(type) {
	case int:
		return appendCBORInt(dst, int64(x)), true
	case int64:
		return appendCBORInt(dst, x), true
	case *int: // a pointer encodes as what it points to (workers encode a chunk's items so)
		return appendCBORInt(dst, int64(*x)), true
	case *int64:
		return appendCBORInt(dst, *x), true
	case *float64:
		return binary.BigEndian.AppendUint64(append(dst, 0xfb), math.Float64bits(*x)), true
	case []int:
		if x == nil {
			return append(dst, 0xf6), true
		}
		dst = appendCBORHead(dst, 4, uint64(len(x)))
		for _, e := range x {
			dst = appendCBORInt(dst, int64(e))
		}
		return dst, true
	case []int64:
		if x == nil {
			return append(dst, 0xf6), true
		}
		dst = appendCBORHead(dst, 4, uint64(len(x)))
		for _, e := range x {
			dst = appendCBORInt(dst, e)
		}
		return dst, true
	case []byte:
		if x == nil {
			return append(dst, 0xf6), true
		}
		// One copy, into dst's growth, without zeroing the new memory first.
		return append(appendCBORHead(dst, 2, uint64(len(x))), x...), true
	case []float64:
		if x == nil {
			return append(dst, 0xf6), true
		}
		dst = appendCBORHead(dst, 4, uint64(len(x)))
		for _, e := range x {
			dst = binary.BigEndian.AppendUint64(append(dst, 0xfb), math.Float64bits(e))
		}
		return dst, true
	}
	return dst, false
}

func appendCBORInt(dst []byte, n int64) []byte { return cborenc.AppendInt(dst, n) }

// appendCBORHead writes a data item's head: major type and argument, in
// the shortest form.
func appendCBORHead(dst []byte, major byte, n uint64) []byte {
	return cborenc.AppendHead(dst, major, n)
}

// unmarshalCBORFast decodes data into v if v is of a fast-path type and data
// is in the subset the fast path reads. It reports false to let the library
// decode (and report any error).
func unmarshalCBORFast(data []byte, v any) bool {
	switch p := v.(type) {
	case nil:
		return false
	case *int:
		if p == nil {
			return false
		}
		n, rest, ok := readCBORInt(data)
		if !ok || len(rest) != 0 || n != int64(int(n)) {
			return false
		}
		*p = int(n)
		return true
	case *int64:
		if p == nil {
			return false
		}
		n, rest, ok := readCBORInt(data)
		if !ok || len(rest) != 0 {
			return false
		}
		*p = n
		return true
	case *[]byte:
		if p == nil {
			return false
		}
		major, n, rest, ok := readCBORHead(data)
		if !ok || major != 2 || n != uint64(len(rest)) || n == 0 {
			return false
		}
		// append allocates without zeroing the part it copies over.
		*p = append([]byte(nil), rest...)
		return true
	case *[]int:
		if p == nil {
			return false
		}
		return readCBORArray(data, p, func(b []byte) (int, []byte, bool) {
			n, rest, ok := readCBORInt(b)
			return int(n), rest, ok && n == int64(int(n))
		})
	case *[]int64:
		if p == nil {
			return false
		}
		return readCBORArray(data, p, readCBORInt)
	case *[]float64:
		if p == nil {
			return false
		}
		return readCBORArray(data, p, readCBORFloat64)
	}
	return false
}

// readCBORArray reads a definite-length array whose items elem reads. The
// length is checked against the input before anything is allocated (every
// item takes at least one byte). The destination's backing array is reused
// when it is large enough, as the library does.
func readCBORArray[T any](data []byte, p *[]T, elem func([]byte) (T, []byte, bool)) bool {
	major, n, rest, ok := readCBORHead(data)
	if !ok || major != 4 || n > uint64(len(rest)) {
		return false
	}
	out := *p
	if out != nil && uint64(cap(out)) >= n {
		out = out[:n]
	} else {
		out = make([]T, n)
	}
	for i := range out {
		var e T
		if e, rest, ok = elem(rest); !ok {
			return false
		}
		out[i] = e
	}
	if len(rest) != 0 {
		return false
	}
	*p = out
	return true
}

func readCBORInt(data []byte) (int64, []byte, bool) {
	major, n, rest, ok := readCBORHead(data)
	if !ok || n > math.MaxInt64 {
		return 0, nil, false
	}
	switch major {
	case 0:
		return int64(n), rest, true
	case 1:
		return -1 - int64(n), rest, true
	}
	return 0, nil, false
}

func readCBORFloat64(data []byte) (float64, []byte, bool) {
	if len(data) < 9 || data[0] != 0xfb {
		return 0, nil, false
	}
	return math.Float64frombits(binary.BigEndian.Uint64(data[1:])), data[9:], true
}

// readCBORHead reads a head with a definite argument (additional info up to
// 27); indefinite lengths, simple values and reserved forms are left to the
// library.
func readCBORHead(data []byte) (major byte, n uint64, rest []byte, ok bool) {
	if len(data) == 0 {
		return 0, 0, nil, false
	}
	major, info := data[0]>>5, data[0]&0x1f
	data = data[1:]
	switch {
	case info < 24:
		return major, uint64(info), data, true
	case info == 24 && len(data) >= 1:
		return major, uint64(data[0]), data[1:], true
	case info == 25 && len(data) >= 2:
		return major, uint64(binary.BigEndian.Uint16(data)), data[2:], true
	case info == 26 && len(data) >= 4:
		return major, uint64(binary.BigEndian.Uint32(data)), data[4:], true
	case info == 27 && len(data) >= 8:
		return major, binary.BigEndian.Uint64(data), data[8:], true
	}
	return 0, 0, nil, false
}
