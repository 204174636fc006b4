package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// minBufSize is the smallest read buffer a Reader uses.
const minBufSize = 64

// RetainMax is the largest grown buffer a Reader keeps between frames.
const RetainMax = 4 << 20

// maxEmptyReads is how many (0, nil) reads in a row make Next give up with
// io.ErrNoProgress.
const maxEmptyReads = 100

// Reader reads frames from an io.Reader. It keeps one buffer; frames that fit
// in it are returned without copying or allocating. A Reader is not safe for
// concurrent use.
//
// Buffer policy: a frame longer than the buffer (but within the maximum
// frame size) makes the buffer grow by doubling, never beyond the frame's
// size, and only as the frame's bytes actually arrive, so a length field
// that lies costs a buffer of at most about twice the bytes really received
// (never more than maxFrame+4 bytes in one allocation). A grown buffer of up
// to RetainMax bytes is kept for the frames that follow, so a stream of
// large payloads costs no allocation per frame; a larger one is dropped at
// the start of the next call to Next, once the bytes still pending fit in
// the original buffer, and the original one is used again.
type Reader struct {
	rd       io.Reader
	buf      []byte // buffer in use; buf[r:w] holds unread bytes
	base     []byte // the buffer of the size asked for in NewReader
	r, w     int
	maxFrame int
	rerr     error // error from rd, reported once buffered bytes run out
	err      error // sticky error returned by Next
	stopEnd  bool  // an End frame ends the input (StopAtEnd)
}

// NewReader returns a Reader that reads frames from r through a buffer of
// bufSize bytes and rejects frames whose length field exceeds maxFrame.
//
// bufSize <= 0 means DefaultBufSize; values below 64 are raised to 64.
// maxFrame <= 0 means DefaultMaxFrame; values below 9 (the smallest frame)
// are raised to 9 and values above MaxLength (on 32-bit platforms,
// math.MaxInt-4) are lowered to it. NewReader allocates the buffer; it does
// no I/O.
func NewReader(r io.Reader, bufSize, maxFrame int) *Reader {
	if bufSize <= 0 {
		bufSize = DefaultBufSize
	}
	if bufSize < minBufSize {
		bufSize = minBufSize
	}
	b := make([]byte, bufSize)
	return &Reader{rd: r, buf: b, base: b, maxFrame: effectiveMax(maxFrame)}
}

// SetMaxFrame changes the limit on the length field of the frames Next reads
// from now on, as NewReader's maxFrame (a parent reads the hello under
// HelloLimit, then tasks' answers under the pool's limit).
func (r *Reader) SetMaxFrame(maxFrame int) { r.maxFrame = effectiveMax(maxFrame) }

// Next reads and returns the next frame. The frame's Body aliases the
// reader's buffer and is valid only until the next call to Next.
//
// Next checks the length field (9 <= length <= maxFrame) and that the kind is
// known; it does not look inside the body. Errors:
//   - io.EOF when the input ends cleanly at a frame boundary, or, after
//     StopAtEnd, at an End frame (what follows it is never read);
//   - io.ErrUnexpectedEOF when it ends inside a frame;
//   - an error wrapping ErrFrameTooLarge when the length field exceeds
//     maxFrame (detected from the 4-byte length alone, before anything is
//     allocated for the frame);
//   - an error wrapping ErrMalformed for a length below 9 or an unknown kind;
//   - any other error from the underlying reader, as is, and io.ErrNoProgress
//     if it keeps returning no bytes and no error.
//
// Errors are sticky: once Next has returned an error, every later call
// returns the same error without reading.
//
// Cost: no allocation when the frame fits the buffer; otherwise see the
// buffer policy on Reader. Reads from the underlying reader only when the
// buffer does not already hold the whole frame.
func (r *Reader) Next() (Frame, error) {
	if r.err != nil {
		return Frame{}, r.err
	}
	if len(r.buf) > RetainMax && r.w-r.r <= len(r.base) {
		n := copy(r.base, r.buf[r.r:r.w])
		r.buf, r.r, r.w = r.base, 0, n
	}
	if err := r.fill(4); err != nil {
		return r.fail(err)
	}
	length := binary.LittleEndian.Uint32(r.buf[r.r:])
	if length < minLength {
		return r.fail(fmt.Errorf("%w: length field %d is below the minimum %d", ErrMalformed, length, minLength))
	}
	if !Fits(uint64(length), r.maxFrame) {
		return r.fail(fmt.Errorf("%w: length field %d exceeds the maximum %d", ErrFrameTooLarge, length, r.maxFrame))
	}
	if err := r.fill(HeaderSize); err != nil {
		return r.fail(err)
	}
	k := Kind(r.buf[r.r+4])
	if k == KindEnd && r.stopEnd && length == minLength {
		r.r += HeaderSize
		r.err = io.EOF
		return Frame{}, io.EOF
	}
	if !k.Valid() {
		return r.fail(fmt.Errorf("%w: unknown kind %d", ErrMalformed, uint8(k)))
	}
	total := 4 + int(length)
	if err := r.fill(total); err != nil {
		return r.fail(err)
	}
	p := r.buf[r.r : r.r+total : r.r+total]
	f := Frame{Kind: k, ID: binary.LittleEndian.Uint64(p[5:]), Body: p[HeaderSize:]}
	r.r += total
	if r.r == r.w {
		r.r, r.w = 0, 0
	}
	return f, nil
}

// fail records err as the sticky error, translating an end of input into
// io.EOF or io.ErrUnexpectedEOF depending on whether a frame was begun.
func (r *Reader) fail(err error) (Frame, error) {
	if err == io.EOF && r.w > r.r {
		err = io.ErrUnexpectedEOF
	}
	r.err = err
	return Frame{}, err
}

// fill reads until at least n bytes are buffered (n <= maxFrame+4). It makes
// room by moving pending bytes to the front of the buffer, and grows the
// buffer (doubling, capped at n) only when it is full of pending bytes.
func (r *Reader) fill(n int) error {
	empty := 0
	for r.w-r.r < n {
		if r.rerr != nil {
			return r.rerr
		}
		if r.w == len(r.buf) {
			if r.r > 0 {
				r.w = copy(r.buf, r.buf[r.r:r.w])
				r.r = 0
			} else {
				size := 2 * len(r.buf)
				if size > n {
					size = n
				}
				nb := make([]byte, size)
				copy(nb, r.buf[:r.w])
				r.buf = nb
			}
		}
		m, err := r.rd.Read(r.buf[r.w:])
		if m < 0 || m > len(r.buf)-r.w {
			r.rerr = errors.New("wire: underlying reader returned an invalid count")
			continue
		}
		r.w += m
		switch {
		case err != nil:
			r.rerr = err
		case m == 0:
			empty++
			if empty >= maxEmptyReads {
				r.rerr = io.ErrNoProgress
			}
		default:
			empty = 0
		}
	}
	return nil
}

// StopAtEnd makes an End frame (kind KindEnd, length 9) the end of the
// input: Next returns io.EOF there and for ever after, as at the end of the
// underlying reader. Without it, an End frame is malformed, like any
// unknown kind.
func (r *Reader) StopAtEnd() { r.stopEnd = true }

// Buffered returns the number of bytes already read from the underlying
// reader but not yet returned as frames. A worker uses 0 as the signal that
// no further input is waiting and its buffered output must be flushed before
// it blocks in Next. It costs nothing.
func (r *Reader) Buffered() int { return r.w - r.r }
