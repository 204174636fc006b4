// Package msgpack is a procpool codec that encodes values as MessagePack
// with github.com/vmihailenco/msgpack/v5.
//
// Importing the package registers [Codec] with package codec under the
// name "msgpack", so that a worker finds it by that name: select it with
// procpool.WithCodec(msgpack.Codec) in a program whose workers run the same
// binary (or, with procpool.WithCommand, a binary that imports this package
// too). Programs that do not import it do not link the MessagePack library.
//
// # Safety
//
// Append and Unmarshal never panic: a panic inside the library becomes an
// error. Before encoding, a value whose type can hold a reference cycle is
// checked, and a cyclic value is an error rather than a stack overflow.
//
// The library has no decoding limits, so Unmarshal validates its input
// itself before decoding, with the same limits as codec.CBOR: exactly one
// well-formed value, every declared length backed by input bytes, nesting
// at most 1000 levels, arrays and maps at most 1<<26 elements. It also
// stops the library from reading an extension's payload as MessagePack (see
// [Codec]). Allocation is therefore bounded by the input size (times the
// size of the destination element types).
package msgpack

import (
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"sync"

	"github.com/procpool/procpool/codec"
	"github.com/procpool/procpool/codec/internal/guard"
	"github.com/vmihailenco/msgpack/v5"
)

const msgpackName = "msgpack"

// Codec encodes values as MessagePack. Its name is "msgpack". It is a
// codec.ListCodec.
//
// Encoding: integers use their shortest form, floats their own width,
// []byte is bin, strings are str, time.Time is the timestamp extension
// (-1), struct fields are keyed by name (tags "msgpack", then "json").
// Nil slices and maps are encoded as nil and decode as nil.
//
// Decoding into *any, *[]any or *map[string]any: every integer becomes
// int64, or uint64 if above math.MaxInt64; float32 becomes float64;
// maps become map[string]any when every key is a string and map[any]any
// otherwise; bin becomes []byte; timestamps become time.Time in the
// local zone (the instant survives, the UTC offset and zone do not).
// Values of type any inside other destinations (a struct field of type
// any, a []map[string]any) get the library's own types instead: int8,
// int16, int32, int64, uint8 ... uint64 according to the size on the
// wire, and float32 for single-precision floats; their maps follow the
// rule above.
//
// The library has no decoding limits and, in v5.4.1, allocates a slice
// or map of the declared length before reading its elements. Unmarshal
// therefore validates the whole input first (a linear pass without
// allocation in the common case): it must be exactly one well-formed
// value, every declared length must be backed by input bytes, nesting may
// not exceed 1000 levels and arrays and maps may not exceed 1<<26
// elements. The library can also decode an extension value into a map
// or struct by reading the extension's payload as MessagePack; Unmarshal
// refuses that with an error, because the payload was not validated.
// Extension types registered with msgpack.RegisterExt still decode into
// their registered Go type, but an extension decoder registered with
// msgpack.RegisterExtDecoder that reads its payload through the
// Decoder's methods is refused the same way.
//
// Cost: Append allocates only when dst lacks capacity (encoders and
// decoders are pooled). Unmarshal validates the input first, one linear
// pass. The library decodes slices element by element through
// reflection, so large slices of numbers decode slower than with CBOR
// (docs/benchmarks.md).
var Codec codec.Codec = msgpackCodec{}

func init() { codec.Register(Codec) }

type msgpackCodec struct{}

func (msgpackCodec) Name() string { return msgpackName }

// AppendListHead, AppendListSep and AppendListTail make the codec a
// codec.ListCodec: a list is an array with its length in the head.
func (msgpackCodec) AppendListHead(dst []byte, n int) []byte {
	switch {
	case n < 16:
		return append(dst, 0x90|byte(n))
	case n <= 0xffff:
		return append(dst, 0xdc, byte(n>>8), byte(n))
	default:
		return append(dst, 0xdd, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
}

func (msgpackCodec) AppendListSep(dst []byte) []byte  { return dst }
func (msgpackCodec) AppendListTail(dst []byte) []byte { return dst }

// errTrailing is returned for input left over after the value.
var errTrailing = errors.New("trailing data after the encoded value")

// appendWriter is the io.Writer and io.ByteWriter the msgpack encoder writes
// to; it appends to the caller's slice.
type appendWriter struct{ b []byte }

func (w *appendWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

func (w *appendWriter) WriteByte(c byte) error {
	w.b = append(w.b, c)
	return nil
}

type msgpackEncState struct {
	enc *msgpack.Encoder
	w   appendWriter
}

var msgpackEncPool = sync.Pool{New: func() any {
	return &msgpackEncState{enc: msgpack.NewEncoder(nil)}
}}

func (msgpackCodec) Append(dst []byte, v any) (out []byte, err error) {
	n := len(dst)
	defer func() {
		if r := recover(); r != nil {
			out, err = dst[:n], guard.EncodeError(msgpackName, v, guard.PanicError(r))
		}
	}()
	if err := guard.CheckCycles(v); err != nil {
		return dst, guard.EncodeError(msgpackName, v, err)
	}
	st := msgpackEncPool.Get().(*msgpackEncState)
	st.w.b = dst
	st.enc.Reset(&st.w) // also clears the options
	st.enc.UseCompactInts(true)
	st.enc.SetCustomStructTag("json")
	err = st.enc.Encode(v)
	out = st.w.b
	st.w.b = nil
	st.enc.Reset(nil)
	msgpackEncPool.Put(st)
	if err != nil {
		return dst[:n], guard.EncodeError(msgpackName, v, err)
	}
	return out, nil
}

type msgpackDecState struct {
	dec    *msgpack.Decoder
	r      msgpackReader
	guards []int
}

var msgpackDecPool = sync.Pool{New: func() any {
	return &msgpackDecState{dec: msgpack.NewDecoder(nil)}
}}

func (msgpackCodec) Unmarshal(data []byte, v any) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = guard.DecodeError(msgpackName, v, guard.PanicError(r))
		}
	}()
	st := msgpackDecPool.Get().(*msgpackDecState)
	guards, err := msgpackCheck(data, st.guards[:0])
	if err != nil {
		msgpackDecPool.Put(st)
		return guard.DecodeError(msgpackName, v, err)
	}
	st.r = msgpackReader{data: data, guards: guards}
	st.dec.Reset(&st.r) // also clears the options
	st.dec.SetCustomStructTag("json")
	st.dec.SetMapDecoder(msgpackDecodeMap)
	if p, ok := v.(*any); ok && p != nil {
		err = msgpackDecodeAny(st.dec, p)
	} else {
		err = st.dec.Decode(v)
	}
	if err == nil && st.r.pos != len(data) {
		err = errTrailing // not expected after msgpackCheck; be sure
	}
	if err != nil {
		// The decoder may be left mid-value; let it go.
		return guard.DecodeError(msgpackName, v, err)
	}
	switch p := v.(type) {
	case *[]any:
		if p != nil {
			normalizeAny(*p)
		}
	case *map[string]any:
		if p != nil {
			normalizeAny(*p)
		}
	}
	st.r = msgpackReader{}
	st.dec.Reset(nil)
	if cap(guards) <= 64 {
		st.guards = guards[:0]
	} else {
		st.guards = nil
	}
	msgpackDecPool.Put(st)
	return nil
}

// msgpackDecodeAny decodes into a fresh interface and stores the normalized
// result in *p. Decoding into p itself would make the library decode into
// the dynamic value *p holds instead of replacing it.
func msgpackDecodeAny(d *msgpack.Decoder, p *any) error {
	var x any
	if err := d.Decode(&x); err != nil {
		return err
	}
	*p = normalizeAny(x)
	return nil
}

// msgpackDecodeMap decodes a map inside an any value: map[string]any when
// every key is a string (a bin key counts as its string), map[any]any
// otherwise.
func msgpackDecodeMap(d *msgpack.Decoder) (any, error) {
	n, err := d.DecodeMapLen()
	if err != nil || n < 0 {
		return nil, err
	}
	m := make(map[string]any, n)
	for i := range n {
		k, err := d.DecodeInterface()
		if err != nil {
			return nil, err
		}
		var s string
		switch k := k.(type) {
		case string:
			s = k
		case []byte:
			s = string(k)
		default:
			return msgpackDecodeMapAnyKeys(d, m, k, n-i)
		}
		e, err := d.DecodeInterface()
		if err != nil {
			return nil, err
		}
		m[s] = e
	}
	return m, nil
}

// msgpackDecodeMapAnyKeys continues msgpackDecodeMap once a key that is not a
// string turns up: strKeys holds the pairs so far, key is the key just read
// and left counts the pairs still to read, including key's.
func msgpackDecodeMapAnyKeys(d *msgpack.Decoder, strKeys map[string]any, key any, left int) (any, error) {
	m := make(map[any]any, len(strKeys)+left)
	for k, e := range strKeys {
		m[k] = e
	}
	for {
		key = normalizeAny(key)
		if key != nil && !reflect.TypeOf(key).Comparable() {
			return nil, fmt.Errorf("msgpack: map key of type %T cannot be a Go map key", key)
		}
		e, err := d.DecodeInterface()
		if err != nil {
			return nil, err
		}
		m[key] = e
		left--
		if left == 0 {
			return m, nil
		}
		if key, err = d.DecodeInterface(); err != nil {
			return nil, err
		}
	}
}

// normalizeAny converts the values the msgpack library produces for any into
// the types documented for MsgPack: integers to int64 (uint64 when above
// math.MaxInt64), float32 to float64, recursively through []any and maps.
func normalizeAny(v any) any {
	switch x := v.(type) {
	case int8:
		return int64(x)
	case int16:
		return int64(x)
	case int32:
		return int64(x)
	case uint8:
		return int64(x)
	case uint16:
		return int64(x)
	case uint32:
		return int64(x)
	case uint64:
		if x <= math.MaxInt64 {
			return int64(x)
		}
		return x
	case float32:
		return float64(x)
	case []any:
		for i, e := range x {
			x[i] = normalizeAny(e)
		}
		return x
	case map[string]any:
		for k, e := range x {
			x[k] = normalizeAny(e)
		}
		return x
	case map[any]any:
		// Keys were normalized when the map was built; values may hold
		// slices or maps decoded by the library.
		for k, e := range x {
			x[k] = normalizeAny(e)
		}
		return x
	}
	return v
}

// errExtAsValue is returned when the library starts reading an extension's
// payload as a MessagePack value. It does that when an extension value is
// decoded into a map or struct; msgpackCheck did not validate the payload as
// MessagePack, so its lengths cannot be trusted.
var errExtAsValue = errors.New("msgpack: extension value cannot be decoded into a map or struct")

// msgpackReader feeds the msgpack decoder from a byte slice, like
// bytes.Reader, and refuses single-byte reads at the offsets in guards.
//
// The decoder reads every type code with ReadByte and every payload (of
// strings, bin, numbers and extensions) with Read. A ReadByte at the first
// byte of an extension's payload therefore means the decoder is about to
// interpret that payload as MessagePack, which it does when decoding an
// extension into a map or a struct.
type msgpackReader struct {
	data   []byte
	pos    int
	guards []int // ascending offsets of non-empty extension payloads
	gi     int   // guards[:gi] are all < pos
}

func (r *msgpackReader) Read(p []byte) (int, error) {
	if r.pos >= len(r.data) {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	n := copy(p, r.data[r.pos:])
	r.pos += n
	return n, nil
}

func (r *msgpackReader) ReadByte() (byte, error) {
	if r.pos >= len(r.data) {
		return 0, io.EOF
	}
	if r.gi < len(r.guards) {
		for r.gi < len(r.guards) && r.guards[r.gi] < r.pos {
			r.gi++
		}
		if r.gi < len(r.guards) && r.guards[r.gi] == r.pos {
			return 0, errExtAsValue
		}
	}
	c := r.data[r.pos]
	r.pos++
	return c, nil
}

func (r *msgpackReader) UnreadByte() error {
	if r.pos <= 0 {
		return errors.New("msgpack: UnreadByte at the beginning of the input")
	}
	r.pos--
	for r.gi > 0 && r.guards[r.gi-1] >= r.pos {
		r.gi--
	}
	return nil
}

// Errors of msgpackCheck.
var (
	errMsgpackTruncated = errors.New("msgpack: unexpected end of input")
	errMsgpackTrailing  = errors.New("msgpack: trailing data after the encoded value")
	errMsgpackReserved  = errors.New("msgpack: reserved code 0xc1")
	errMsgpackTooDeep   = fmt.Errorf("msgpack: nested deeper than %d levels", guard.MaxNestedLevels)
)

// msgpackCheck reports whether data holds exactly one well-formed MessagePack
// value. Every declared length must fit in the bytes that follow: a string,
// bin or extension of n bytes needs n bytes, an array of n elements at least
// n bytes and a map of n pairs at least 2n bytes. Nesting is limited to
// guard.MaxNestedLevels and arrays and maps to guard.MaxElements elements. Together these
// bound what the library can allocate by the input size.
//
// It appends to guards the offset of the payload of every non-empty
// extension, in ascending order, and returns the result (see msgpackReader).
// It allocates only when the value nests more than 16 levels deep or guards
// must grow.
func msgpackCheck(data []byte, guards []int) ([]int, error) {
	var stackBuf [16]int
	stack := stackBuf[:0] // items left in the enclosing containers
	pos := 0
	left := 1 // items left in the current container (or at the top level)

	// length reads a big-endian length of size bytes at pos.
	length := func(size int) (uint64, error) {
		if len(data)-pos < size {
			return 0, errMsgpackTruncated
		}
		var n uint64
		for _, b := range data[pos : pos+size] {
			n = n<<8 | uint64(b)
		}
		pos += size
		return n, nil
	}

	for {
		if left == 0 {
			if len(stack) == 0 {
				break
			}
			left = stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			continue
		}
		left--
		if pos >= len(data) {
			return guards, errMsgpackTruncated
		}
		c := data[pos]
		pos++

		var skip uint64  // payload bytes that follow
		var items uint64 // child items, for arrays and maps
		ext := false     // payload is an extension's (type byte + data)
		lenSize := 0     // size of a length that follows the code
		isMap := false   // items counts pairs
		switch {
		case c <= 0x7f || c >= 0xe0: // positive and negative fixint
		case c <= 0x8f: // fixmap
			items, isMap = uint64(c&0x0f), true
		case c <= 0x9f: // fixarray
			items = uint64(c & 0x0f)
		case c <= 0xbf: // fixstr
			skip = uint64(c & 0x1f)
		default:
			switch c {
			case 0xc0, 0xc2, 0xc3: // nil, false, true
			case 0xc1:
				return guards, errMsgpackReserved
			case 0xc4, 0xd9: // bin8, str8
				lenSize = 1
			case 0xc5, 0xda: // bin16, str16
				lenSize = 2
			case 0xc6, 0xdb: // bin32, str32
				lenSize = 4
			case 0xc7: // ext8
				lenSize, ext = 1, true
			case 0xc8: // ext16
				lenSize, ext = 2, true
			case 0xc9: // ext32
				lenSize, ext = 4, true
			case 0xca: // float32
				skip = 4
			case 0xcb: // float64
				skip = 8
			case 0xcc, 0xd0: // uint8, int8
				skip = 1
			case 0xcd, 0xd1: // uint16, int16
				skip = 2
			case 0xce, 0xd2: // uint32, int32
				skip = 4
			case 0xcf, 0xd3: // uint64, int64
				skip = 8
			case 0xd4: // fixext1
				skip, ext = 1, true
			case 0xd5: // fixext2
				skip, ext = 2, true
			case 0xd6: // fixext4
				skip, ext = 4, true
			case 0xd7: // fixext8
				skip, ext = 8, true
			case 0xd8: // fixext16
				skip, ext = 16, true
			case 0xdc: // array16
				n, err := length(2)
				if err != nil {
					return guards, err
				}
				items = n
			case 0xdd: // array32
				n, err := length(4)
				if err != nil {
					return guards, err
				}
				items = n
			case 0xde: // map16
				n, err := length(2)
				if err != nil {
					return guards, err
				}
				items, isMap = n, true
			case 0xdf: // map32
				n, err := length(4)
				if err != nil {
					return guards, err
				}
				items, isMap = n, true
			}
		}

		if lenSize > 0 {
			n, err := length(lenSize)
			if err != nil {
				return guards, err
			}
			skip = n
		}
		if ext {
			if pos >= len(data) {
				return guards, errMsgpackTruncated
			}
			pos++ // type byte
			if skip > 0 {
				guards = append(guards, pos)
			}
		}
		if skip > uint64(len(data)-pos) {
			return guards, errMsgpackTruncated
		}
		pos += int(skip)

		if items > 0 {
			if items > guard.MaxElements {
				return guards, fmt.Errorf("msgpack: %d elements exceed the limit of %d", items, guard.MaxElements)
			}
			if isMap {
				items *= 2
			}
			if items > uint64(len(data)-pos) {
				return guards, errMsgpackTruncated
			}
			if len(stack) >= guard.MaxNestedLevels {
				return guards, errMsgpackTooDeep
			}
			stack = append(stack, left)
			left = int(items)
		}
	}
	if pos != len(data) {
		return guards, errMsgpackTrailing
	}
	return guards, nil
}
