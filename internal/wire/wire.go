// Package wire implements the framing used between a procpool parent and its
// worker processes: a length-prefixed binary frame format, a reader that
// returns frames without copying them, append-style writers, and the layouts
// of the task, chunk-result, hello and error bodies.
//
// A frame is, with all integers little-endian:
//
//	offset size field
//	0      4    length  uint32: bytes that follow this field (kind + id + body), >= 9
//	4      1    kind    uint8
//	5      8    id      uint64: task id (0 for hello and init)
//	13     n    body    n = length - 9 bytes
//
// docs/protocol.md in the repository describes the protocol in full.
//
// The package uses only the standard library and does no I/O besides reading
// from the io.Reader given to NewReader.
package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
)

// Version is the protocol version a worker puts in its Hello frame. The parent
// refuses a worker whose Hello carries any other value.
const Version = 1

// HeaderSize is the size in bytes of a frame header: the 4-byte length, the
// 1-byte kind and the 8-byte id.
const HeaderSize = 13

// minLength is the smallest valid value of the length field (kind + id).
const minLength = HeaderSize - 4

// MaxLength is the largest value the 4-byte length field can hold. A frame
// can never carry a body longer than MaxLength-9 bytes.
const MaxLength = math.MaxUint32

// DefaultMaxFrame is the default limit on the length field of a frame (64 MiB),
// used by NewReader when it is given a maxFrame <= 0 and by workers when
// PROCPOOL_MAX_FRAME is not set.
const DefaultMaxFrame = 64 << 20

// DefaultBufSize is the read buffer size NewReader uses when it is given a
// bufSize <= 0.
const DefaultBufSize = 64 << 10

// Kind is the type of a frame, carried in its fifth byte.
type Kind uint8

// The frame kinds. The comment on each says who sends it.
const (
	KindHello   Kind = 1 // worker→parent, first frame; id 0; body: JSON Hello
	KindTask    Kind = 2 // parent→worker; id != 0; body: task header + payload
	KindResult  Kind = 3 // worker→parent; body: payload, or chunk result
	KindError   Kind = 4 // worker→parent; body: JSON ErrorBody
	KindCancel  Kind = 5 // parent→worker; empty body
	KindInit    Kind = 6 // parent→worker; id 0; body: task header (flags 0) + payload
	KindSkipped Kind = 7 // worker→parent; empty body: cancelled before it started
	KindStop    Kind = 8 // parent→worker, on the control pipe; body: empty or a StopReason byte: stop the task with this id
)

// KindEnd marks the end of a worker's result stream. It is not a protocol
// kind and never travels between processes: a parent writes it into the
// result pipe of a worker it has reaped, to wake up and stop a reader that
// would otherwise wait for bytes that can no longer come from the worker
// (a process the worker started may hold the pipe open). Everything the
// worker wrote is before it. A reader accepts it only after StopAtEnd; id
// 0, empty body. Valid reports false for it.
const KindEnd Kind = 255

// String returns the lower-case name of k ("hello", "task", ...), or
// "Kind(N)" for a value that is not a known kind. It allocates only for
// unknown kinds.
func (k Kind) String() string {
	switch k {
	case KindHello:
		return "hello"
	case KindTask:
		return "task"
	case KindResult:
		return "result"
	case KindError:
		return "error"
	case KindCancel:
		return "cancel"
	case KindInit:
		return "init"
	case KindSkipped:
		return "skipped"
	case KindStop:
		return "stop"
	case KindEnd:
		return "end"
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Valid reports whether k is one of the kinds defined by this protocol
// version (KindEnd is not). It costs a comparison.
func (k Kind) Valid() bool { return k >= KindHello && k <= KindStop }

// Frame is one decoded frame. Body holds exactly length-9 bytes.
//
// A Frame returned by Reader.Next aliases the reader's buffer: Body is valid
// only until the next call to Next on that reader. Copy it to keep it. Body
// has its capacity clipped to its length, so appending to it never overwrites
// buffered data.
type Frame struct {
	Kind Kind
	ID   uint64
	Body []byte
}

// ErrFrameTooLarge is returned, wrapped with the offending numbers, when a
// frame's length field exceeds the reader's maximum frame size, and by
// EndFrame when a frame would not fit the 4-byte length field.
var ErrFrameTooLarge = errors.New("wire: frame too large")

// ErrMalformed is returned, wrapped with details, for bytes that do not follow
// the protocol: a length field below 9, an unknown kind, or a task,
// chunk-result, hello or error body that does not parse. It is also returned
// by AppendChunkResultHeader for item indexes that break its rules.
var ErrMalformed = errors.New("wire: malformed frame")

// AppendFrame appends a complete frame with the given kind, id and body to dst
// and returns the extended slice. It allocates only when dst lacks the
// capacity for HeaderSize+len(body) more bytes. It panics if len(body) is
// more than MaxLength-9, which the length field cannot express.
func AppendFrame(dst []byte, k Kind, id uint64, body []byte) []byte {
	if uint64(len(body)) > MaxLength-minLength {
		panic("wire: AppendFrame: body of " + strconv.Itoa(len(body)) + " bytes does not fit a frame")
	}
	dst = binary.LittleEndian.AppendUint32(dst, uint32(minLength+len(body)))
	dst = append(dst, byte(k))
	dst = binary.LittleEndian.AppendUint64(dst, id)
	return append(dst, body...)
}

// BeginFrame appends a frame header with a placeholder length to dst and
// returns the extended slice and the offset at which the frame starts. The
// caller then appends the body to out and calls EndFrame(out, start) to fill
// in the length. It allocates only when dst lacks HeaderSize bytes of spare
// capacity.
func BeginFrame(dst []byte, k Kind, id uint64) (out []byte, start int) {
	start = len(dst)
	dst = append(dst, 0, 0, 0, 0, byte(k))
	dst = binary.LittleEndian.AppendUint64(dst, id)
	return dst, start
}

// EndFrame writes the length of the frame that starts at dst[start] (begun by
// BeginFrame, its body being everything after the header up to len(dst)) into
// its length field. It returns an error wrapping ErrFrameTooLarge, leaving dst
// unchanged, if the frame is longer than the length field can express, and a
// plain error if start does not leave room for a header. It does not
// allocate.
func EndFrame(dst []byte, start int) error {
	if start < 0 || start > len(dst) || len(dst)-start < HeaderSize {
		return fmt.Errorf("wire: EndFrame: start %d leaves no frame header in %d bytes", start, len(dst))
	}
	n := LengthOf(dst, start)
	if n > MaxLength {
		return fmt.Errorf("%w: length %d exceeds %d", ErrFrameTooLarge, n, uint64(MaxLength))
	}
	binary.LittleEndian.PutUint32(dst[start:], uint32(n))
	return nil
}

// LengthOf returns the value of the length field of the frame that starts
// at frame[start] and runs to the end of frame (a frame begun by
// BeginFrame, header included): its size minus the 4 bytes of the field
// itself. It reads nothing from frame and does not need the field filled
// in. start must be in [0, len(frame)].
func LengthOf(frame []byte, start int) uint64 { return uint64(len(frame)-start) - 4 }

// Fits reports whether a frame whose length field is length is within the
// frame-size limit maxFrame (see NewReader for how maxFrame is read:
// <= 0 means DefaultMaxFrame, and values outside [9, MaxLength] are
// brought into it). It is the one check of the limit: Reader.Next rejects
// with ErrFrameTooLarge exactly the frames for which it is false, so a
// writer that checks Fits(LengthOf(frame, start), maxFrame) before sending
// never sends a frame its reader refuses. It costs a few comparisons.
func Fits(length uint64, maxFrame int) bool { return length <= uint64(effectiveMax(maxFrame)) }

// effectiveMax brings a maxFrame setting into the range a Reader enforces.
func effectiveMax(maxFrame int) int {
	if maxFrame <= 0 {
		maxFrame = DefaultMaxFrame
	}
	if maxFrame < minLength {
		maxFrame = minLength
	}
	limit := uint64(math.MaxInt - 4) // so that 4+length never overflows an int
	if limit > MaxLength {
		limit = MaxLength
	}
	if uint64(maxFrame) > limit {
		maxFrame = int(limit)
	}
	return maxFrame
}

// Why the parent stops a task: the one byte of a KindStop body (an empty
// body means StopCancel). The worker cancels the task's context with
// context.DeadlineExceeded for StopDeadline, context.Canceled otherwise
// (see TaskCtx.stop in internal/serve).
const (
	StopCancel   byte = 1 // Future.Cancel, the caller's context, Terminate
	StopDeadline byte = 2 // the task's timeout or its caller's deadline
	StopMemory   byte = 3 // the worker's memory is over the limit
)

// HelloLimit bounds the hello frame's length field, whatever the frame
// limit a pool sets for tasks: the hello lists every registered function,
// and a small limit for payloads must not keep a worker from starting.
const HelloLimit = 1 << 20
