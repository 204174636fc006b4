package shmring

import (
	"testing"
)

// An operation on a ring: free the oldest region, or alloc n bytes and
// want the offset (-1: no room).
type op struct {
	free bool
	n    int
	want int
}

func alloc(n, want int) op { return op{n: n, want: want} }

var free = op{free: true}

func TestRing(t *testing.T) {
	for _, tc := range []struct {
		name string
		size int
		ops  []op
	}{
		{"fills from the start", 100, []op{alloc(10, 0), alloc(20, 10), alloc(70, 30), alloc(1, -1)}},
		{"the whole segment", 100, []op{alloc(100, 0), alloc(1, -1), free, alloc(100, 0)}},
		{"over the size", 100, []op{alloc(101, -1), alloc(-1, -1), alloc(100, 0)}},
		{"empty starts again at 0", 100, []op{alloc(60, 0), free, alloc(60, 0)}},
		{"wraps below the oldest", 100, []op{alloc(40, 0), alloc(40, 40), free, alloc(30, 0), alloc(9, 30)}},
		{"a wrap needs room strictly below the oldest", 100, []op{alloc(40, 0), alloc(40, 40), free, alloc(20, 80), alloc(40, -1), alloc(39, 0)}},
		{"wrapped: room strictly below the oldest", 100, []op{alloc(40, 0), alloc(40, 40), free, alloc(20, 80), alloc(20, 0), alloc(20, -1), alloc(19, 20)}},
		{"no wrap while the start is in use", 100, []op{alloc(50, 0), alloc(40, 50), alloc(20, -1)}},
		{"unwraps once the regions before the wrap are gone", 100, []op{
			alloc(40, 0), alloc(50, 40), free, alloc(30, 0), alloc(10, -1), alloc(9, 30), free, free,
			alloc(62, -1), alloc(61, 39), alloc(1, 0), alloc(29, -1), alloc(28, 1)}},
		{"the end skipped by a wrap stays in use", 100, []op{
			alloc(60, 0), alloc(30, 60), free, alloc(50, 0), alloc(10, -1), alloc(9, 50), free,
			alloc(31, -1), alloc(30, 59)}},
		{"a refused alloc changes nothing", 100, []op{alloc(70, 0), alloc(50, -1), alloc(30, 70)}},
		{"empty segment", 0, []op{alloc(1, -1), alloc(0, 0)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := New(tc.size)
			var ends []int // regions in use, oldest first
			for i, o := range tc.ops {
				if o.free {
					if len(ends) == 0 {
						t.Fatalf("op %d: the test frees with nothing in use", i)
					}
					r.Free(ends[0])
					ends = ends[1:]
				} else {
					off, ok := r.Alloc(o.n)
					switch {
					case o.want < 0 && ok:
						t.Fatalf("op %d: Alloc(%d) = %d, want no room", i, o.n, off)
					case o.want >= 0 && (!ok || off != o.want):
						t.Fatalf("op %d: Alloc(%d) = %d, %v, want %d", i, o.n, off, ok, o.want)
					case ok:
						ends = append(ends, off+o.n)
					}
				}
				if r.Len() != len(ends) {
					t.Fatalf("op %d: Len %d, want %d", i, r.Len(), len(ends))
				}
			}
		})
	}
}

// FuzzRing runs random reservations and releases (oldest first) against a
// model of the segment's bytes: no two regions in use overlap, every region
// is inside the segment, and an empty ring has room for anything up to its
// size.
func FuzzRing(f *testing.F) {
	f.Add(uint16(100), []byte{40, 40, 0, 30, 9, 0, 0, 60})
	f.Add(uint16(64), []byte{64, 0, 1, 63, 0, 2, 0, 0})
	f.Add(uint16(1000), []byte{200, 200, 200, 200, 0, 250, 0, 90, 0, 0, 170})
	f.Fuzz(func(t *testing.T, size uint16, ops []byte) {
		r := New(int(size))
		owner := make([]int, size) // which live region holds each byte, 0 if free
		type region struct{ off, n, id int }
		var live []region
		next := 1
		for _, b := range ops {
			if b == 0 { // release the oldest
				if len(live) == 0 {
					continue
				}
				g := live[0]
				live = live[1:]
				for i := g.off; i < g.off+g.n; i++ {
					owner[i] = 0
				}
				r.Free(g.off + g.n)
				continue
			}
			n := int(b) * int(size) / 255 // up to the whole segment
			empty := len(live) == 0
			off, ok := r.Alloc(n)
			if !ok {
				if empty && n <= int(size) {
					t.Fatalf("an empty ring of %d refused %d bytes", size, n)
				}
				continue
			}
			if off < 0 || off+n > int(size) {
				t.Fatalf("Alloc(%d) = [%d, %d) outside a segment of %d", n, off, off+n, size)
			}
			for i := off; i < off+n; i++ {
				if owner[i] != 0 {
					t.Fatalf("Alloc(%d) = [%d, %d) overlaps region %d at byte %d", n, off, off+n, owner[i], i)
				}
				owner[i] = next
			}
			live = append(live, region{off, n, next})
			next++
			if r.Len() != len(live) {
				t.Fatalf("Len %d, want %d", r.Len(), len(live))
			}
		}
	})
}
