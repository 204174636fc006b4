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
//	offset      size  field
//	0           8     running   uint64: id of the task the worker is running, 0 between tasks
//	8           8     answers   uint64: bytes of answer frames in the answer area
//	16          8     items     uint64: 0 until the running chunk task starts its items; then
//	                            bit 63 set, bit 62 set if it stopped between items (no item
//	                            runs), bits 32-61 the items encoded in the list area, bits
//	                            0-31 the list area's bytes
//	24          8     errors    uint64: bytes of item errors in the error area
//	32          8     finished  uint64: 0, or 1 + the items of the running chunk that finished,
//	                            once the list area has no room for more
//	40          256K  answer area: answer frames (result, error, skipped), in the order produced
//	40+256K     64K   error area: per failed item, uint32 index, uint32 n, n bytes of JSON ErrorBody
//	40+320K     rest  list area: the chunk's results, encoded one by one as a list without
//	                  its head and tail (codec.ListCodec): the items finished, in order
//
// Integers are little-endian; item indexes count from the first item the
// task runs.
//
// The worker appends each answer to the answer area before it starts its
// next task, and empties the area once it has written the frames to the
// result pipe, so every answer it produced is, at every moment, in the
// pipe, in the journal, or in both. In a chunk task of more than one item,
// the worker encodes each item's result into the list area as the item
// finishes (a failed item's zero value, with its error in the error area),
// so a death in the middle of a chunk loses no finished item, and the item
// that was running is the one after those finished. A value counts only
// once the field covering it is stored: a worker that dies while copying an
// answer or encoding an item has not produced it. Setting running clears
// the item fields, so they always belong to the running task.
const (
	JournalHeader  = 40
	JournalAnswers = 256 << 10
	journalErrors  = 64 << 10
	// JournalMin is the smallest journal: header, answer and error areas.
	JournalMin = JournalHeader + JournalAnswers + journalErrors
)

// Journal is the worker's side of a journal over its shared mapping. Its
// methods are not safe for concurrent use; the worker serializes them.
type Journal struct {
	mem      []byte
	answers  int // bytes used in the answer area
	errs     int // bytes used in the error area
	list     int // bytes used in the list area by the running chunk
	overflow bool
}

// NewJournal returns a journal over mem, which must be at least JournalMin
// bytes and 8-byte aligned (a mapping is page-aligned). It clears the
// header.
func NewJournal(mem []byte) *Journal {
	if len(mem) < JournalMin || uintptr(unsafe.Pointer(&mem[0]))%8 != 0 {
		panic("wire: NewJournal: mapping too small or misaligned")
	}
	j := &Journal{mem: mem}
	for off := 0; off < JournalHeader; off += 8 {
		j.store(off, 0)
	}
	return j
}

// store writes v little-endian at off with an atomic store, so that the
// compiler keeps the bytes written before it ahead of it.
func (j *Journal) store(off int, v uint64) {
	p := (*uint64)(unsafe.Pointer(&j.mem[off]))
	if !littleEndian {
		v = swap64(v)
	}
	atomic.StoreUint64(p, v)
}

// SetRunning records that the task with this id is running (0: none), with
// no item started. The item fields are cleared with plain stores: the
// atomic store of running that follows keeps them ahead of it, and they
// matter only while running names a task.
func (j *Journal) SetRunning(id uint64) {
	if id != 0 {
		j.errs, j.list, j.overflow = 0, 0, false
		clear(j.mem[16:JournalHeader])
	}
	j.store(0, id)
}

// Append copies frame after the journalled answers and publishes it. It
// reports false, copying nothing, if there is no room: the caller then
// writes the journalled answers out, calls Reset and tries again, or writes
// a frame larger than the area straight to the pipe.
func (j *Journal) Append(frame []byte) bool {
	if j.answers+len(frame) > JournalAnswers {
		return false
	}
	copy(j.mem[JournalHeader+j.answers:], frame)
	j.answers += len(frame)
	j.store(8, uint64(j.answers))
	return true
}

// Pending returns the journalled answers. They alias the mapping and stay
// valid until the next Append after a Reset.
func (j *Journal) Pending() []byte { return j.mem[JournalHeader : JournalHeader+j.answers] }

// Reset empties the answer area, once its frames have been written to the
// pipe.
func (j *Journal) Reset() {
	j.answers = 0
	j.store(8, 0)
}

const listBase = JournalMin

// StartItems records that the running chunk task starts its first item and
// returns the list area to encode the items' results into (length 0).
func (j *Journal) StartItems() []byte {
	j.store(16, 1<<63)
	return j.mem[listBase:listBase:len(j.mem)]
}

// Finished publishes that n items have finished, their results encoded in
// list (the slice StartItems returned, extended by appending). Once list has
// outgrown the area (appending moved it elsewhere), only the count goes on.
//
// It is called once per item, so it stores without an atomic instruction:
// the item's bytes were written by the codec's Append, a call the compiler
// does not reorder stores across, and a process dies at an instruction, with
// every store before it done.
func (j *Journal) Finished(list []byte, n int) {
	if !j.overflow && unsafe.SliceData(list) == &j.mem[listBase] && len(list) < 1<<32 && n < 1<<30 {
		j.list = len(list)
		v := 1<<63 | uint64(n)<<32 | uint64(len(list))
		if !littleEndian {
			v = swap64(v)
		}
		*(*uint64)(unsafe.Pointer(&j.mem[16])) = v
		return
	}
	j.overflow = true
	j.store(32, uint64(n)+1)
}

// StopItems records that the running chunk task stopped between items: the
// item after the last finished one did not begin (the worker was told to
// stop), so no item is to blame for the worker's exit.
func (j *Journal) StopItems() {
	v := binary.LittleEndian.Uint64(j.mem[16:])
	if !littleEndian {
		v = swap64(v)
	}
	j.store(16, v|1<<62)
}

// ItemError records the error of item i (a JSON ErrorBody); call it before
// Finished counts the item. If the error area has no room, the list stops
// where it is, as when the list area is full: item i and those after it
// count as finished but unrecorded, never as successes.
func (j *Journal) ItemError(i int, body []byte) {
	base := JournalHeader + JournalAnswers
	if j.errs+8+len(body) > journalErrors {
		j.overflow = true
		return
	}
	rec := j.mem[base+j.errs:]
	binary.LittleEndian.PutUint32(rec, uint32(i))
	binary.LittleEndian.PutUint32(rec[4:], uint32(len(body)))
	copy(rec[8:], body)
	j.errs += 8 + len(body)
	j.store(24, uint64(j.errs))
}

// ListUsed returns the part of the list area the running chunk used, so that
// the worker can give back the memory of a large chunk's results.
func (j *Journal) ListUsed() []byte { return j.mem[listBase : listBase+j.list] }

// JournalState is what the parent reads from a dead worker's journal header.
type JournalState struct {
	Running uint64 // the task that was running, 0 if none
	Answers int    // bytes of answer frames at JournalHeader
	// Finished is -1 if the running chunk task had not started its items,
	// else how many had finished.
	Finished int
	Stopped  bool // the chunk stopped between items: none was running
	Listed   int  // how many of them have their results in the list area
	List     int  // bytes of the list area in use
	Errors   int  // bytes of the error area in use
}

// Offsets of the areas a parent reads.
const (
	JournalErrorsAt = JournalHeader + JournalAnswers
	JournalListAt   = listBase
)

// ParseJournalHeader decodes a journal header; size is the journal's size in
// bytes. It returns an error wrapping ErrMalformed if a length does not fit
// its area.
func ParseJournalHeader(hdr []byte, size int) (JournalState, error) {
	if len(hdr) < JournalHeader || size < JournalMin {
		return JournalState{}, fmt.Errorf("%w: journal header of %d bytes, journal of %d", ErrMalformed, len(hdr), size)
	}
	u := binary.LittleEndian.Uint64
	st := JournalState{Running: u(hdr[0:]), Finished: -1}
	answers, items, errs, finished := u(hdr[8:]), u(hdr[16:]), u(hdr[24:]), u(hdr[32:])
	if answers > JournalAnswers || errs > journalErrors {
		return JournalState{}, fmt.Errorf("%w: journal lengths %d and %d exceed their areas", ErrMalformed, answers, errs)
	}
	st.Answers, st.Errors = int(answers), int(errs)
	if items&(1<<63) != 0 {
		st.Stopped = items&(1<<62) != 0
		st.Listed, st.List = int(items>>32&(1<<30-1)), int(items&(1<<32-1))
		if st.List > size-listBase || st.Listed > MaxItemIndex {
			return JournalState{}, fmt.Errorf("%w: journal list of %d bytes exceeds its area", ErrMalformed, st.List)
		}
		st.Finished = max(st.Listed, int(min(finished, MaxItemIndex))-1)
	}
	return st, nil
}

// ParseItemErrors decodes an error area: item index to JSON ErrorBody. The
// bodies alias b. It returns an error wrapping ErrMalformed for an entry that
// runs past the end.
func ParseItemErrors(b []byte) (map[int][]byte, error) {
	errs := map[int][]byte{}
	for len(b) > 0 {
		if len(b) < 8 {
			return errs, fmt.Errorf("%w: item error cut short", ErrMalformed)
		}
		i, n := int(binary.LittleEndian.Uint32(b)), int(binary.LittleEndian.Uint32(b[4:]))
		if n > len(b)-8 {
			return errs, fmt.Errorf("%w: item error of %d bytes in %d", ErrMalformed, n, len(b))
		}
		errs[i] = b[8 : 8+n : 8+n]
		b = b[8+n:]
	}
	return errs, nil
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
