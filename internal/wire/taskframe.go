package wire

import (
	"encoding/binary"
	"fmt"
)

// This file holds the rewrites of whole frames that the two sides make of
// frames they built themselves: the parent sends a task's argument through
// shared memory instead of its frame, or asks again for the rest of a chunk;
// the worker adds item errors to a chunk's result. Outside this package no
// frame is rewritten by byte offset.

// parseTaskFrame checks that frame is one complete KindTask frame and
// parses its header.
func parseTaskFrame(frame []byte) (h TaskHeader, payload []byte, err error) {
	if len(frame) < HeaderSize || Kind(frame[4]) != KindTask || uint64(binary.LittleEndian.Uint32(frame)) != LengthOf(frame, 0) {
		return h, nil, fmt.Errorf("%w: not one complete task frame (%d bytes)", ErrMalformed, len(frame))
	}
	return ParseTaskHeader(frame[HeaderSize:])
}

// TaskPayload returns the payload of frame, a complete KindTask frame whose
// payload is in the frame (no FlagShared): the codec-encoded argument, or
// list of arguments, after the header. It aliases frame and does not
// allocate. It returns an error wrapping ErrMalformed for anything else.
func TaskPayload(frame []byte) ([]byte, error) {
	h, payload, err := parseTaskFrame(frame)
	if err != nil {
		return nil, err
	}
	if h.Shared() {
		return nil, fmt.Errorf("%w: the task's payload is in shared memory", ErrMalformed)
	}
	return payload, nil
}

// AppendSharedTask appends to dst the task frame frame (as TaskPayload
// accepts it) with its payload moved to the worker's shared memory:
// FlagShared set, and in the payload's place a reference to its
// len(payload) bytes at offset off of the segment (AppendSharedRef). The
// caller copies the payload there before the frame reaches the worker. It
// allocates only when dst lacks the room, and returns an error wrapping
// ErrMalformed for a frame TaskPayload refuses.
func AppendSharedTask(dst, frame []byte, off uint64) ([]byte, error) {
	payload, err := TaskPayload(frame)
	if err != nil {
		return dst, err
	}
	header := frame[HeaderSize : len(frame)-len(payload)] // flags, name, and the optional fields
	out, start := BeginFrame(dst, KindTask, binary.LittleEndian.Uint64(frame[5:]))
	out = append(out, header[0]|FlagShared)
	out = append(out, header[1:]...)
	out = AppendSharedRef(out, off, uint64(len(payload)))
	if err := EndFrame(out, start); err != nil {
		return dst, err
	}
	return out, nil
}

// AppendTaskFrom appends to dst the chunk task frame frame (as TaskPayload
// accepts it, with FlagChunk) asking for its items from index from on: the
// same id, function, deadline and payload, and FlagFrom with from (none
// for 0). It allocates only when dst lacks the room, and returns an error
// wrapping ErrMalformed for a frame that is not such a chunk task or a
// from outside [0, MaxItemIndex).
func AppendTaskFrom(dst, frame []byte, from int) ([]byte, error) {
	h, payload, err := parseTaskFrame(frame)
	if err != nil {
		return dst, err
	}
	if !h.Chunk() || h.Shared() || from < 0 || from >= MaxItemIndex {
		return dst, fmt.Errorf("%w: cannot ask a task with flags %#02x for its items from %d", ErrMalformed, h.Flags, from)
	}
	out, start := BeginFrame(dst, KindTask, binary.LittleEndian.Uint64(frame[5:]))
	out = appendTaskHeader(out, true, h.Fn, from, h.Deadline, h.Timeout)
	out = append(out, payload...)
	if err := EndFrame(out, start); err != nil {
		return dst, err
	}
	return out, nil
}

// SetChunkErrors rewrites the KindResult frame that starts at frame[start]
// and runs to the end of frame — a chunk result whose error table is empty
// (AppendChunkResultHeader with no errors) followed by the encoded results
// — to carry errs in its table, and returns the extended slice. As with
// BeginFrame, the length field is left for EndFrame. It copies the results
// once. It returns an error wrapping ErrMalformed, and frame unchanged, if
// frame[start:] is not such a frame, and AppendChunkResultHeader's error,
// with frame as it was, for errs that break its rules.
func SetChunkErrors(frame []byte, start int, errs []ItemError) ([]byte, error) {
	at := start + HeaderSize
	if start < 0 || len(frame) < at+4 || Kind(frame[start+4]) != KindResult || binary.LittleEndian.Uint32(frame[at:]) != 0 {
		return frame, fmt.Errorf("%w: not a chunk result frame with an empty error table", ErrMalformed)
	}
	results := append([]byte(nil), frame[at+4:]...)
	out, err := AppendChunkResultHeader(frame[:at], errs)
	if err != nil {
		// The table may have overwritten the results: put them back.
		return append(binary.LittleEndian.AppendUint32(frame[:at], 0), results...), err
	}
	return append(out, results...), nil
}
