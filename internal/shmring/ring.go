// Package shmring allocates the regions of a worker's shared-memory segment
// in which the parent places large task arguments. A region is reserved when
// its task is sent and released when the task is answered; a worker answers
// its tasks in the order it got them, so regions are released in the order
// they were reserved, and the segment is used as a ring.
//
// The package does no I/O and holds no memory: it hands out offsets into a
// segment of a given size. A Ring is not safe for concurrent use; the pool
// guards each worker's under its lock.
package shmring

// Ring hands out contiguous regions of a segment of Size bytes, to be
// released oldest first. The zero Ring has no room; make one with New.
//
// In use are the regions reserved and not released: while the ring has not
// wrapped, [tail, head); once a region has been placed at offset 0 before
// the older ones were released, [tail, size) and [0, head). The room skipped
// at the end of the segment by a wrap counts as in use until the regions
// before it are released: tail is conservative.
type Ring struct {
	size  int
	head  int // the end of the newest region: where the next one goes if it fits
	tail  int // the start of the oldest region in use (conservative: see Ring)
	count int // regions in use
}

// New returns an empty ring over a segment of size bytes.
func New(size int) Ring { return Ring{size: size} }

// Size returns the size of the segment.
func (r *Ring) Size() int { return r.size }

// Len returns the number of regions in use.
func (r *Ring) Len() int { return r.count }

// Alloc reserves n contiguous bytes and returns their offset. ok is false
// when there is no such room now (or n is over the segment's size); the
// ring is then unchanged. It costs a few comparisons.
func (r *Ring) Alloc(n int) (off int, ok bool) {
	if r.count == 0 {
		r.head, r.tail = 0, 0
	}
	switch {
	case n < 0 || n > r.size:
		return 0, false
	case r.count == 0 || r.head >= r.tail:
		// Not wrapped. In use: [tail, head). Free: [head, size) and [0, tail).
		switch {
		case r.head+n <= r.size:
			off = r.head
		case n < r.tail:
			off = 0 // wrap; strictly below tail, so that head == tail never means wrapped
		default:
			return 0, false
		}
	default:
		// Wrapped. In use: [tail, size) and [0, head). Free: [head, tail).
		if r.head+n >= r.tail {
			return 0, false
		}
		off = r.head
	}
	r.head = off + n
	r.count++
	return off, true
}

// Free releases the oldest region in use, which ends at end (its offset
// plus its length, as Alloc returned them). Releasing anything but the
// oldest region, or with nothing in use, is a bug in the caller: the ring's
// state is then meaningless.
func (r *Ring) Free(end int) {
	r.count--
	r.tail = end
	if r.count == 0 {
		r.head, r.tail = 0, 0
	}
}
