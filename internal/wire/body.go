package wire

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
)

// The bits of a task's flags byte, the first byte of a KindTask or KindInit
// body. Bits not named here are reserved and must be 0. They are untyped
// constants so that they combine with the byte itself (body[0]|FlagShared).

// FlagChunk is bit 0 of a task's flags byte: the payload is a list of
// arguments, one task per item.
const FlagChunk = 0x01

// FlagShared is bit 1 of a task's flags byte: the payload is not in the
// frame but in the worker's shared-memory segment, and the frame carries
// only a reference to it (see AppendSharedRef).
const FlagShared = 0x02

// FlagFrom is bit 2 of a chunk task's flags byte: a 4-byte index follows the
// function name, and the worker runs only the items from that index on (the
// parent settled the ones before it from a dead worker's journal). The chunk
// result then lists those items only, and its item indexes count from that
// index.
const FlagFrom = 0x04

// SharedRefSize is the size of a shared-memory reference: offset and length.
const SharedRefSize = 16

// MaxFuncName is the longest function name a task header can carry.
const MaxFuncName = math.MaxUint16

// MaxItemIndex is the exclusive upper bound of an item index in a chunk
// result (2^31).
const MaxItemIndex = 1 << 31

// Hello is the JSON body of a KindHello frame, the first frame a worker
// writes.
type Hello struct {
	Protocol  int      `json:"protocol"`  // must equal Version
	Pid       int      `json:"pid"`       // the worker's process id
	Codec     string   `json:"codec"`     // codec the worker uses, e.g. "cbor"
	Functions []string `json:"functions"` // names of the registered functions
	// Journal is true when the worker keeps its answers and the id of its
	// running task in the journal the parent passed it (PROCPOOL_JOURNAL).
	Journal bool `json:"journal,omitempty"`
	// Control is true when the worker reads Stop frames from the control
	// pipe the parent passed it (PROCPOOL_CONTROL).
	Control bool `json:"control,omitempty"`
	// Fingerprints maps a function's name to the fingerprint of its
	// argument and result types (see docs/protocol.md). A function without
	// an entry, or a worker that sends none, is not checked.
	Fingerprints map[string]string `json:"fingerprints,omitempty"`
}

// ErrorBody is the JSON body of a KindError frame and of each item error in a
// chunk result.
type ErrorBody struct {
	Message string `json:"message"`         // human-readable description
	Type    string `json:"type"`            // type of the error or panic value, e.g. "*errors.errorString"
	Stack   string `json:"stack,omitempty"` // stack trace, when one was captured
	Panic   bool   `json:"panic,omitempty"` // the function panicked rather than returned an error
	// Code is a machine-readable word such as "unknown_function", "decode",
	// "encode" or "init"; empty for an error returned by user code.
	Code string `json:"code,omitempty"`
	// Chain lists the types of the error's chain, outermost first, in the
	// order errors.Is walks it (depth first); Type is its first entry.
	Chain []string `json:"chain,omitempty"`
	// Sentinels are the registered names of the sentinel errors the error
	// matches (errors.Is), e.g. "io/fs.ErrNotExist".
	Sentinels []string `json:"sentinels,omitempty"`
	// Values are the errors of registered types found in the chain, each
	// encoded by the codec, outermost first.
	Values []ErrorValue `json:"values,omitempty"`
}

// ErrorValue is an error of a registered type, carried in an ErrorBody so
// that the parent can rebuild it.
type ErrorValue struct {
	Type  string `json:"type"`  // the type's registered name, e.g. "*example.com/app.TooBigError"
	Codec string `json:"codec"` // the codec Data is encoded with, e.g. "cbor"
	Data  []byte `json:"data"`  // the encoded value (base64 in JSON)
}

// ItemError is the failure of one item of a chunk task.
type ItemError struct {
	Index int       // position of the item in the chunk, 0-based
	Err   ErrorBody // why it failed
}

// AppendTaskHeader appends the first part of a KindTask or KindInit body, the
// flags byte and the length-prefixed function name, to dst and returns the
// extended slice; the caller appends the codec-encoded payload after it. It
// allocates only when dst lacks 3+len(fn) bytes of spare capacity. It panics
// if fn is empty or longer than MaxFuncName bytes: the pool must reject such
// names when functions are registered.
func AppendTaskHeader(dst []byte, chunk bool, fn string) []byte {
	return appendTaskHeader(dst, chunk, fn, 0, 0, 0)
}

// ParseTask splits the body of a KindTask or KindInit frame into its chunk
// flag, function name and payload. fn and payload alias body and allocate
// nothing; look a name up with m[string(fn)], which the compiler does without
// allocating, and copy fn if it must outlive body.
//
// It returns an error wrapping ErrMalformed if the body is shorter than 3
// bytes, a reserved flag bit is set, the name is empty, or the name runs past
// the end of the body.
func ParseTask(body []byte) (chunk bool, fn []byte, payload []byte, err error) {
	if len(body) < 3 {
		return false, nil, nil, fmt.Errorf("%w: task body of %d bytes is shorter than 3", ErrMalformed, len(body))
	}
	flags := body[0]
	if flags&^FlagChunk != 0 {
		return false, nil, nil, fmt.Errorf("%w: task flags %#02x set reserved bits", ErrMalformed, flags)
	}
	n := int(binary.LittleEndian.Uint16(body[1:]))
	if n == 0 {
		return false, nil, nil, fmt.Errorf("%w: task has an empty function name", ErrMalformed)
	}
	if n > len(body)-3 {
		return false, nil, nil, fmt.Errorf("%w: function name of %d bytes overruns a task body of %d", ErrMalformed, n, len(body))
	}
	return flags&FlagChunk != 0, body[3 : 3+n : 3+n], body[3+n:], nil
}

// FlagDeadline is bit 3 of a task's flags byte: 16 bytes follow the
// function name (and the first item index, with FlagFrom): the caller's
// deadline as Unix nanoseconds and the task's timeout in nanoseconds,
// counted from the moment the worker starts the task; 0 means none. The
// worker gives the task a context whose deadline is the earlier of the two.
const FlagDeadline = 0x08

// TaskHeader is the decoded header of a KindTask or KindInit body.
type TaskHeader struct {
	Flags    byte
	Fn       []byte // the function's name; aliases the body
	From     int    // FlagFrom: a chunk's first item to run; else 0
	Deadline int64  // FlagDeadline: Unix nanoseconds; else 0
	Timeout  int64  // FlagDeadline: nanoseconds from the start; else 0
}

// Chunk reports whether the payload is a list of arguments (FlagChunk).
func (h TaskHeader) Chunk() bool { return h.Flags&FlagChunk != 0 }

// Shared reports whether the payload is a reference to the worker's shared
// memory (FlagShared).
func (h TaskHeader) Shared() bool { return h.Flags&FlagShared != 0 }

// AppendTaskHeaderExt is AppendTaskHeader with the optional fields: a
// chunk's first item to run (from > 0 sets FlagFrom) and a deadline or
// timeout (either not 0 sets FlagDeadline). It panics as AppendTaskHeader.
func AppendTaskHeaderExt(dst []byte, chunk bool, fn string, from int, deadline, timeout int64) []byte {
	return appendTaskHeader(dst, chunk, fn, from, deadline, timeout)
}

// appendTaskHeader is AppendTaskHeaderExt for a name given as a string or
// as bytes (AppendTaskFrom copies it from a frame).
func appendTaskHeader[S ~string | ~[]byte](dst []byte, chunk bool, fn S, from int, deadline, timeout int64) []byte {
	if len(fn) == 0 || len(fn) > MaxFuncName {
		panic("wire: AppendTaskHeader: function name length " + strconv.Itoa(len(fn)) + " is not in 1..65535")
	}
	at := len(dst)
	var flags byte
	if chunk {
		flags = FlagChunk
	}
	dst = append(dst, flags)
	dst = binary.LittleEndian.AppendUint16(dst, uint16(len(fn)))
	dst = append(dst, fn...)
	if from > 0 && chunk {
		dst[at] |= FlagFrom
		dst = binary.LittleEndian.AppendUint32(dst, uint32(from))
	}
	if deadline != 0 || timeout != 0 {
		dst[at] |= FlagDeadline
		dst = binary.LittleEndian.AppendUint64(dst, uint64(deadline))
		dst = binary.LittleEndian.AppendUint64(dst, uint64(timeout))
	}
	return dst
}

// ParseTaskHeader is ParseTask for a worker: it also accepts FlagShared,
// FlagFrom and FlagDeadline, and returns the whole header. With FlagShared
// the payload is a reference of exactly SharedRefSize bytes
// (ParseSharedRef); anything else wraps ErrMalformed, as do a FlagFrom
// without the chunk flag and optional fields cut short.
func ParseTaskHeader(body []byte) (h TaskHeader, payload []byte, err error) {
	if len(body) < 3 {
		return h, nil, fmt.Errorf("%w: task body of %d bytes is shorter than 3", ErrMalformed, len(body))
	}
	h.Flags = body[0]
	if h.Flags&^(FlagChunk|FlagShared|FlagFrom|FlagDeadline) != 0 || h.Flags&FlagFrom != 0 && h.Flags&FlagChunk == 0 {
		return TaskHeader{}, nil, fmt.Errorf("%w: task flags %#02x set reserved bits", ErrMalformed, h.Flags)
	}
	n := int(binary.LittleEndian.Uint16(body[1:]))
	if n == 0 || n > len(body)-3 {
		return TaskHeader{}, nil, fmt.Errorf("%w: function name of %d bytes in a task body of %d", ErrMalformed, n, len(body))
	}
	h.Fn, payload = body[3:3+n:3+n], body[3+n:]
	if h.Flags&FlagFrom != 0 {
		if len(payload) < 4 {
			return TaskHeader{}, nil, fmt.Errorf("%w: chunk task's first item index is cut short", ErrMalformed)
		}
		h.From = int(binary.LittleEndian.Uint32(payload))
		payload = payload[4:]
	}
	if h.Flags&FlagDeadline != 0 {
		if len(payload) < 16 {
			return TaskHeader{}, nil, fmt.Errorf("%w: task's deadline is cut short", ErrMalformed)
		}
		h.Deadline = int64(binary.LittleEndian.Uint64(payload))
		h.Timeout = int64(binary.LittleEndian.Uint64(payload[8:]))
		payload = payload[16:]
	}
	if h.Flags&FlagShared != 0 && len(payload) != SharedRefSize {
		return TaskHeader{}, nil, fmt.Errorf("%w: shared-memory reference of %d bytes, want %d", ErrMalformed, len(payload), SharedRefSize)
	}
	return h, payload, nil
}

// AppendSharedRef appends a shared-memory reference: the payload's offset in
// the segment and its length, each a uint64.
func AppendSharedRef(dst []byte, off, n uint64) []byte {
	dst = binary.LittleEndian.AppendUint64(dst, off)
	return binary.LittleEndian.AppendUint64(dst, n)
}

// ParseSharedRef reads a reference and checks it against the segment's size:
// an error wrapping ErrMalformed if it is not SharedRefSize bytes or points
// outside [0, size).
func ParseSharedRef(ref []byte, size int) (off, n int, err error) {
	if len(ref) != SharedRefSize {
		return 0, 0, fmt.Errorf("%w: shared-memory reference of %d bytes", ErrMalformed, len(ref))
	}
	o, l := binary.LittleEndian.Uint64(ref), binary.LittleEndian.Uint64(ref[8:])
	if o > uint64(size) || l > uint64(size)-o {
		return 0, 0, fmt.Errorf("%w: shared-memory reference [%d, +%d) outside a segment of %d bytes", ErrMalformed, o, l, size)
	}
	return int(o), int(l), nil
}

// AppendChunkResultHeader appends the error table of a chunk result body to
// dst: the count, then for each item error its index, the length of its JSON
// and the JSON. The caller appends the codec-encoded list of results after
// it. errs may be nil.
//
// It returns dst unchanged and an error wrapping ErrMalformed if the indexes
// are not strictly increasing or not in 0..2^31-1. It allocates when dst
// lacks capacity and once per item error for the JSON encoding; with no item
// errors it writes 4 bytes.
func AppendChunkResultHeader(dst []byte, errs []ItemError) ([]byte, error) {
	if uint64(len(errs)) > math.MaxUint32 {
		return dst, fmt.Errorf("%w: %d item errors", ErrMalformed, len(errs))
	}
	out := binary.LittleEndian.AppendUint32(dst, uint32(len(errs)))
	prev := -1
	for i, e := range errs {
		if e.Index <= prev || uint64(e.Index) >= MaxItemIndex {
			return dst, fmt.Errorf("%w: item error %d has index %d (previous %d); indexes must increase and be below 2^31", ErrMalformed, i, e.Index, prev)
		}
		prev = e.Index
		js, err := json.Marshal(e.Err)
		if err != nil {
			// ErrorBody holds only strings, bools and bytes, so this
			// cannot happen; report it rather than write a broken body.
			return dst, fmt.Errorf("wire: encoding item error %d: %v", e.Index, err)
		}
		out = binary.LittleEndian.AppendUint32(out, uint32(e.Index))
		out = binary.LittleEndian.AppendUint32(out, uint32(len(js)))
		out = append(out, js...)
	}
	return out, nil
}

// ParseChunkResult splits the body of a KindResult frame answering a chunk
// task into its item errors and the codec-encoded list of results. payload
// aliases body; errs is nil when no item failed, so a chunk without failures
// costs no allocation.
//
// The count is checked against the body's length before anything is
// allocated, so a lying count costs nothing. It returns an error wrapping
// ErrMalformed if the body is shorter than 4 bytes, an entry runs past the
// end of the body, the indexes are not strictly increasing or not below 2^31,
// or an entry's JSON is not an object that decodes into ErrorBody. The
// strings in errs are allocated copies.
func ParseChunkResult(body []byte) (errs []ItemError, payload []byte, err error) {
	if len(body) < 4 {
		return nil, nil, fmt.Errorf("%w: chunk result body of %d bytes is shorter than 4", ErrMalformed, len(body))
	}
	nerr := uint64(binary.LittleEndian.Uint32(body))
	rest := body[4:]
	// Each entry takes at least 8 bytes (index and length).
	if nerr > uint64(len(rest))/8 {
		return nil, nil, fmt.Errorf("%w: chunk result claims %d item errors but has %d bytes after the count", ErrMalformed, nerr, len(rest))
	}
	if nerr == 0 {
		return nil, rest, nil
	}
	errs = make([]ItemError, 0, int(nerr))
	prev := int64(-1)
	for i := 0; i < int(nerr); i++ {
		if len(rest) < 8 {
			return nil, nil, fmt.Errorf("%w: item error %d of %d is truncated", ErrMalformed, i, nerr)
		}
		index := int64(binary.LittleEndian.Uint32(rest))
		n := uint64(binary.LittleEndian.Uint32(rest[4:]))
		rest = rest[8:]
		if index <= prev || index >= MaxItemIndex {
			return nil, nil, fmt.Errorf("%w: item error %d has index %d (previous %d); indexes must increase and be below 2^31", ErrMalformed, i, index, prev)
		}
		prev = index
		if n > uint64(len(rest)) {
			return nil, nil, fmt.Errorf("%w: item error %d claims %d bytes of JSON but %d remain", ErrMalformed, i, n, len(rest))
		}
		var eb ErrorBody
		if err := unmarshalObject(rest[:n], &eb); err != nil {
			return nil, nil, fmt.Errorf("%w: item error %d: %v", ErrMalformed, i, err)
		}
		rest = rest[n:]
		errs = append(errs, ItemError{Index: int(index), Err: eb})
	}
	return errs, rest, nil
}

// ParseHello decodes the JSON body of a KindHello frame. It does not check the
// protocol version or codec; the caller compares them with what it expects.
// It returns an error wrapping ErrMalformed if the body is not a JSON object
// that decodes into Hello. It allocates the strings it returns.
func ParseHello(body []byte) (Hello, error) {
	var h Hello
	if err := unmarshalObject(body, &h); err != nil {
		return Hello{}, fmt.Errorf("%w: hello: %v", ErrMalformed, err)
	}
	return h, nil
}

// ParseError decodes the JSON body of a KindError frame. It returns an error
// wrapping ErrMalformed if the body is not a JSON object that decodes into
// ErrorBody. It allocates the strings it returns.
func ParseError(body []byte) (ErrorBody, error) {
	var e ErrorBody
	if err := unmarshalObject(body, &e); err != nil {
		return ErrorBody{}, fmt.Errorf("%w: error body: %v", ErrMalformed, err)
	}
	return e, nil
}

// unmarshalObject is json.Unmarshal that also refuses a top-level null, which
// json.Unmarshal would accept as a no-op.
func unmarshalObject(body []byte, v any) error {
	for _, c := range body {
		if c == ' ' || c == '\t' || c == '\n' || c == '\r' {
			continue
		}
		if c != '{' {
			return errors.New("not a JSON object")
		}
		break
	}
	return json.Unmarshal(body, v)
}
