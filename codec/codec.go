// Package codec encodes procpool task arguments and results.
//
// The parent process encodes each task argument with a [Codec], sends the
// bytes to a worker process, and the worker decodes them with the same codec;
// results travel back the same way. Both sides agree on the codec by its
// [Codec.Name], which is sent in the environment variable PROCPOOL_CODEC and
// checked in the handshake: the worker looks the name up with [ByName].
//
// Two codecs are built in: [CBOR], the [Default], and [JSON], which
// needs nothing beyond the standard library and suits workers written in
// other languages. Others live in packages of their own, so that a program
// links only the encoding libraries it uses, and register themselves when
// imported: codec/msgpack (MessagePack) and codec/gob (encoding/gob). A
// program can add its own codec with [Register]. CBOR was picked as the
// default by the benchmarks in codec_bench_test.go (see docs/benchmarks.md).
//
// # Safety
//
// The built-in codecs turn a panic inside the encoding library into an
// error, so Append and Unmarshal never panic. Before encoding, CBOR checks
// values whose type can hold a reference cycle (pointers, maps, slices or
// interfaces that can lead back to themselves) and returns an error for a
// cyclic value instead of recursing until the goroutine stack overflows,
// which would kill the process; JSON detects cycles itself. Types that
// cannot hold a cycle (for example int, []byte, []int or a struct of
// scalars and slices of scalars) skip that check and pay nothing for it.
//
// Unmarshal treats its input as untrusted:
//
//   - CBOR checks that the whole input is one well-formed data item before
//     decoding, so a declared length can never exceed the bytes present, and
//     limits nesting to 1000 levels and arrays and maps to 1<<26 elements.
//   - JSON is validated by encoding/json before decoding; JSON has no length
//     prefixes and nesting is limited to 10000 levels by the standard library.
//
// Allocation is therefore bounded by the input size (times the size of the
// destination element types) for both. The packages of the other codecs
// say what they guarantee.
package codec

import (
	"errors"
)

// Codec encodes task arguments and results.
//
// Implementations must be safe for concurrent use by multiple goroutines.
// A codec of one's own is used like the others: [Register] it at package
// level, in a package that the workers' program imports too, and pass it
// to procpool.WithCodec. Implement [ListCodec] too if the encoding allows.
type Codec interface {
	// Name returns the codec's stable name, such as "cbor". It is sent in
	// the environment variable PROCPOOL_CODEC and in the handshake, and
	// [ByName] maps it back to the codec registered under it.
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

// ErrUnknownCodec is returned (wrapped) by [ByName] for a name that no
// codec is registered under.
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
)

// Default is the codec procpool uses when none is configured: [CBOR].
//
// In this package's round-trip benchmarks (docs/benchmarks.md: one int, a
// small struct, 1 MiB of bytes, 1000 ints) CBOR had the lowest median time
// on every workload; MessagePack took 1.07 to 1.74 times as long, JSON 2.7
// to 27 times and gob 1.14 to 22 times. CBOR is also language neutral, and
// its library enforces decoding limits itself.
var Default Codec = CBOR

// ListCodec is a Codec that can encode a list one element at a time:
// AppendListHead with the number of elements, then each element with
// Append, each but the first preceded by AppendListSep, then
// AppendListTail; AppendListSep appends the same bytes each time.
// Unmarshal decodes the bytes into a slice like the
// encoding of a whole slice. A worker encodes a chunk's results so, as each
// item finishes, into memory its parent can read if the worker dies (see
// docs/protocol.md). CBOR and JSON are ListCodecs, and so is
// codec/msgpack's; codec/gob's is not. With a codec that is not, a worker
// that dies in the middle of a chunk fails (or retries) the whole chunk.
type ListCodec interface {
	Codec
	AppendListHead(dst []byte, n int) []byte
	AppendListSep(dst []byte) []byte
	AppendListTail(dst []byte) []byte
}

func (cborCodec) AppendListHead(dst []byte, n int) []byte { return appendCBORHead(dst, 4, uint64(n)) }
func (cborCodec) AppendListSep(dst []byte) []byte         { return dst }
func (cborCodec) AppendListTail(dst []byte) []byte        { return dst }

func (jsonCodec) AppendListHead(dst []byte, _ int) []byte { return append(dst, '[') }
func (jsonCodec) AppendListSep(dst []byte) []byte         { return append(dst, ',') }
func (jsonCodec) AppendListTail(dst []byte) []byte        { return append(dst, ']') }
