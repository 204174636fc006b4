package wire

import (
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"unsafe"
)

// A journal is a shared-memory file that a worker writes and its parent reads
// only after the worker has died. It records what a death would otherwise
// lose or blur:
//
//	offset size field
//	0      8    running  uint64: id of the task the worker is running, 0 between tasks
//	8      8    length   uint64: bytes of answer frames that follow
//	16     n    frames   answer frames (result, error, skipped), in the order produced
//
// Integers are little-endian. The worker appends each answer to the journal
// before it starts its next task and empties the journal after it has
// written the journalled frames to the result pipe, so every answer it
// produced is, at every moment, in the pipe, in the journal, or in both. A
// frame counts only once the length covering it is stored: a worker that
// dies while copying a frame has not produced it.
const JournalHeader = 16

// Journal is the worker's side of a journal over its shared mapping. Its
// methods are not safe for concurrent use; the worker serializes them.
type Journal struct {
	mem  []byte
	used int
}

// NewJournal returns a journal over mem, which must be at least
// JournalHeader bytes and 8-byte aligned (a mapping is page-aligned). It
// clears the header.
func NewJournal(mem []byte) *Journal {
	if len(mem) < JournalHeader || uintptr(unsafe.Pointer(&mem[0]))%8 != 0 {
		panic("wire: NewJournal: mapping too small or misaligned")
	}
	j := &Journal{mem: mem}
	j.store(0, 0)
	j.store(8, 0)
	return j
}

// store writes v little-endian at off (0 or 8) with an atomic store, so that
// the compiler keeps the frame bytes written before it ahead of it.
func (j *Journal) store(off int, v uint64) {
	p := (*uint64)(unsafe.Pointer(&j.mem[off]))
	if !littleEndian {
		v = swap64(v)
	}
	atomic.StoreUint64(p, v)
}

// SetRunning records that the task with this id is running (0: none).
func (j *Journal) SetRunning(id uint64) { j.store(0, id) }

// Append copies frame after the journalled frames and publishes it. It
// reports false, copying nothing, if there is no room: the caller then
// writes the journalled frames out, calls Reset and tries again, or writes
// a frame larger than the journal straight to the pipe.
func (j *Journal) Append(frame []byte) bool {
	if JournalHeader+j.used+len(frame) > len(j.mem) {
		return false
	}
	copy(j.mem[JournalHeader+j.used:], frame)
	j.used += len(frame)
	j.store(8, uint64(j.used))
	return true
}

// Pending returns the journalled frames. They alias the mapping and stay
// valid until the next Append after a Reset.
func (j *Journal) Pending() []byte { return j.mem[JournalHeader : JournalHeader+j.used] }

// Reset empties the journal, once its frames have been written to the pipe.
func (j *Journal) Reset() {
	j.used = 0
	j.store(8, 0)
}

// ReadJournal decodes a dead worker's journal from its bytes (the header and
// at most size-JournalHeader bytes after it): the running task's id and the
// journalled frames. It returns an error wrapping ErrMalformed if the length
// does not fit the journal's size.
func ReadJournal(mem []byte) (running uint64, frames []byte, err error) {
	if len(mem) < JournalHeader {
		return 0, nil, fmt.Errorf("%w: journal of %d bytes", ErrMalformed, len(mem))
	}
	running = binary.LittleEndian.Uint64(mem[0:])
	n := binary.LittleEndian.Uint64(mem[8:])
	if n > uint64(len(mem)-JournalHeader) {
		return running, nil, fmt.Errorf("%w: journal length %d exceeds its %d bytes", ErrMalformed, n, len(mem)-JournalHeader)
	}
	return running, mem[JournalHeader : JournalHeader+int(n)], nil
}

var littleEndian = func() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}()

func swap64(v uint64) uint64 {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], v)
	return binary.BigEndian.Uint64(b[:])
}
