// Package codec encodes procpool task arguments and results.
//
// The parent process encodes each task argument with a [Codec], sends the
// bytes to a worker process, and the worker decodes them with the same codec;
// results travel back the same way. Both sides agree on the codec by its
// [Codec.Name], which is sent in the handshake and in the environment variable
// PROCPOOL_CODEC.
//
// Four codecs are built in: [CBOR], [MsgPack], [JSON] and [Gob]. [Default] is
// the one procpool uses unless told otherwise; it was picked by the
// benchmarks in codec_bench_test.go (see docs/benchmarks.md).
//
// # Safety
//
// Every built-in codec turns a panic inside the encoding library into an
// error, so Append and Unmarshal never panic. Before encoding, CBOR, MsgPack
// and Gob check values whose type can hold a reference cycle (pointers,
// maps, slices or interfaces that can lead back to themselves) and return an
// error for a cyclic value instead of recursing until the goroutine stack
// overflows, which would kill the process; JSON detects cycles itself. Types
// that cannot hold a cycle (for example int, []byte, []int or a struct of
// scalars and slices of scalars) skip that check and pay nothing for it.
//
// Unmarshal treats its input as untrusted:
//
//   - CBOR checks that the whole input is one well-formed data item before
//     decoding, so a declared length can never exceed the bytes present, and
//     limits nesting to 1000 levels and arrays and maps to 1<<26 elements.
//   - MsgPack has no such options in the library, so this package validates
//     the input itself before decoding, with the same limits as CBOR: exactly
//     one well-formed value, every declared length backed by input bytes,
//     nesting at most 1000 levels. It also stops the library from reading an
//     extension's payload as MessagePack (see [MsgPack]).
//   - JSON is validated by encoding/json before decoding; JSON has no length
//     prefixes and nesting is limited to 10000 levels by the standard library.
//   - Gob bounds message sizes and slice lengths by the input, but the Go
//     standard library as of Go 1.26.8 preallocates maps from the declared
//     count (golang.org/issue/79539, fix pending upstream): a forged message
//     decoded into a destination containing a map can make it allocate
//     gigabytes from a few dozen bytes. Use Gob only between trusted
//     processes.
//
// Allocation is therefore bounded by the input size (times the size of the
// destination element types) for CBOR, MsgPack and JSON.
package codec

import (
	"errors"
	"fmt"
)

// Codec encodes task arguments and results.
//
// Implementations must be safe for concurrent use by multiple goroutines.
type Codec interface {
	// Name returns the codec's stable name, such as "cbor". It is sent in
	// the handshake and in the environment variable PROCPOOL_CODEC, and
	// [ByName] maps it back to the codec.
	Name() string

	// Append encodes v and appends the encoding to dst, returning the
	// extended slice. On error it returns dst unchanged (its length is
	// restored, though bytes beyond it may have been written) and an error
	// that names the codec and the type of v.
	Append(dst []byte, v any) ([]byte, error)

	// Unmarshal decodes data, which must hold exactly one encoded value,
	// into v, which must be a non-nil pointer. It never retains data after
	// it returns. Malformed input yields an error, never a panic.
	Unmarshal(data []byte, v any) error
}

// ErrUnknownCodec is returned (wrapped) by [ByName] for a name that is not one
// of the built-in codecs.
var ErrUnknownCodec = errors.New("codec: unknown codec")

// The built-in codecs. They are stateless values, safe for concurrent use;
// their configuration is fixed when the package is initialized.
var (
	// CBOR encodes values as CBOR (RFC 8949) with
	// github.com/fxamacker/cbor/v2. Its name is "cbor".
	//
	// Options, fixed at init: integers keep their value; decoding into any
	// yields int64 for every integer that fits and *big.Int for one that does
	// not (a uint64 above math.MaxInt64). Floats are encoded at their own
	// width, NaN and ±Inf unchanged; decoding a float into any yields
	// float64. []byte is a CBOR byte string and decodes into any as []byte.
	// time.Time is tag 0 with an RFC 3339 string with nanoseconds: the
	// instant and the UTC offset survive, the monotonic reading and the
	// zone name do not, and the zero time is encoded as null (decoding into
	// any yields nil). A time outside the years 0 to 9999 encodes, but
	// decoding it fails with an error, since RFC 3339 has four-digit years. *big.Int is always a bignum tag. Nil slices and maps
	// are encoded as null and decode as nil, empty ones as empty. Strings
	// with invalid UTF-8 round-trip unchanged. Maps decode into any as
	// map[string]any; if the data holds a map with a key that is not a
	// string, the whole value is decoded again with map[any]any for every
	// map. Struct fields are matched by name (tags "cbor", then "json").
	//
	// Unmarshal of a lone null or undefined sets the destination to its
	// zero value; inside a value the library's rule applies (null sets
	// pointers, slices and maps to nil and leaves other destinations,
	// interfaces included, unchanged, which for a fresh destination is the
	// same).
	//
	// Cost: Append allocates only when dst lacks capacity. Unmarshal first
	// checks that the input is well formed (one extra linear pass without
	// allocation); it rejects inputs nested more than 1000 levels deep and
	// arrays or maps with more than 1<<26 elements.
	CBOR Codec = cborCodec{}

	// MsgPack encodes values as MessagePack with
	// github.com/vmihailenco/msgpack/v5. Its name is "msgpack".
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
	// reflection, so large slices of numbers decode slower than with CBOR.
	MsgPack Codec = msgpackCodec{}

	// JSON encodes values with encoding/json from the standard library (the
	// stable v1 API; encoding/json/v2 needs GOEXPERIMENT=jsonv2 in Go 1.26
	// and is not used). Its name is "json".
	//
	// JSON is language neutral but not faithful for Go values: NaN and ±Inf
	// cannot be encoded (error), []byte is a base64 string, every number
	// decoded into any is a float64 (integers above 2^53 lose precision),
	// []byte and time.Time decode into any as string, and map keys are
	// always strings. HTML characters are escaped as by json.Marshal.
	//
	// Cost: Append allocates the encoding once and copies it into dst;
	// Unmarshal scans the input twice (validation, then decoding).
	JSON Codec = jsonCodec{}

	// Gob encodes values with encoding/gob from the standard library. Its
	// name is "gob".
	//
	// Gob is a stream format: an encoder sends each type's description once
	// and later values refer to it. Here every message must be decodable on
	// its own, so each Append uses a fresh encoder and every message
	// carries the full type description of v. That is the honest
	// per-message cost of gob in this setting: small values are several
	// times larger than in the other codecs and encoding allocates a new
	// encoder each time.
	//
	// Gob is Go-only and has its own rules: the destination must be a
	// concrete type (decoding into *any fails unless the value was encoded
	// as an interface with a registered type); zero values inside structs
	// (0, "", nil, pointers to zero values) are not transmitted and decode
	// as nil or zero; an empty slice decodes as nil and a nil map at the
	// top level as an empty map; a nil pointer at the top level, a struct
	// with no exported fields, a channel and a function cannot be encoded.
	// Struct fields of channel or function type are silently skipped.
	//
	// Gob decoding is not safe against forged input: see the package
	// documentation.
	Gob Codec = gobCodec{}
)

// Default is the codec procpool uses when none is configured: [CBOR].
//
// In this package's round-trip benchmarks (docs/benchmarks.md: one int, a
// small struct, 1 MiB of bytes, 1000 ints) CBOR had the lowest median time
// on every workload; MsgPack took 1.07 to 1.74 times as long, JSON 2.7 to
// 27 times and Gob 1.14 to 22 times. CBOR is also language neutral, and its
// library enforces decoding limits itself.
var Default Codec = CBOR

// ByName returns the built-in codec whose [Codec.Name] is name: "cbor",
// "msgpack", "json" or "gob". Names are case-sensitive. For any other name
// it returns an error wrapping [ErrUnknownCodec]. It does not allocate on
// success.
func ByName(name string) (Codec, error) {
	switch name {
	case cborName:
		return CBOR, nil
	case msgpackName:
		return MsgPack, nil
	case jsonName:
		return JSON, nil
	case gobName:
		return Gob, nil
	}
	return nil, fmt.Errorf("%w %q (known: cbor, msgpack, json, gob)", ErrUnknownCodec, name)
}

const (
	cborName    = "cbor"
	msgpackName = "msgpack"
	jsonName    = "json"
	gobName     = "gob"
)

// Limits applied by Unmarshal to CBOR and MsgPack input. Allocation is bounded
// by the input size anyway; these bound the work and stack depth spent on
// honest but absurd input.
const (
	maxNestedLevels = 1000
	maxElements     = 1 << 26
)

// encodeError wraps err from codec name while encoding a value of type v.
func encodeError(name string, v any, err error) error {
	return fmt.Errorf("codec %s: encode %T: %w", name, v, err)
}

// decodeError wraps err from codec name while decoding into v.
func decodeError(name string, v any, err error) error {
	return fmt.Errorf("codec %s: decode into %T: %w", name, v, err)
}

// panicError converts a recovered panic value into an error.
func panicError(r any) error {
	if err, ok := r.(error); ok {
		return fmt.Errorf("panic: %w", err)
	}
	return fmt.Errorf("panic: %v", r)
}

// ListCodec is a Codec that can encode a list one element at a time:
// AppendListHead with the number of elements, then each element with
// Append, each but the first preceded by AppendListSep, then
// AppendListTail. Unmarshal decodes the bytes into a slice like the
// encoding of a whole slice. A worker encodes a chunk's results so, as each
// item finishes, into memory its parent can read if the worker dies (see
// docs/protocol.md). CBOR, MsgPack and JSON are ListCodecs; Gob is not.
type ListCodec interface {
	Codec
	AppendListHead(dst []byte, n int) []byte
	AppendListSep(dst []byte) []byte
	AppendListTail(dst []byte) []byte
}

func (cborCodec) AppendListHead(dst []byte, n int) []byte { return appendCBORHead(dst, 4, uint64(n)) }
func (cborCodec) AppendListSep(dst []byte) []byte         { return dst }
func (cborCodec) AppendListTail(dst []byte) []byte        { return dst }

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

func (jsonCodec) AppendListHead(dst []byte, _ int) []byte { return append(dst, '[') }
func (jsonCodec) AppendListSep(dst []byte) []byte         { return append(dst, ',') }
func (jsonCodec) AppendListTail(dst []byte) []byte        { return append(dst, ']') }
