package procpool

import (
	"errors"
	"fmt"
	"sync"

	"github.com/procpool/procpool/codec"
)

// itemSink is the sink of a chunk task (Map, Imap). Besides the task's own
// ending (sink.result and sink.fail, which cover the items from the task's
// first unsettled one on), it settles items in pieces when a worker died in
// the middle of the chunk: the items that finished keep their outcomes (from
// the dead worker's journal) and the one that was running gets the error,
// while the rest of the chunk runs again elsewhere as the same task.
type itemSink interface {
	sink
	// settle settles items from, from+1, ..., from+pc.count-1.
	settle(p *Pool, from int, pc *itemPiece)
}

// itemPiece is the outcomes of a run of a chunk's items settled on their
// own: the first listed have their results in list (encoded as a list
// without head and tail, see codec.ListCodec), and errs holds the failures,
// by index within the piece.
type itemPiece struct {
	count  int
	listed int
	list   []byte
	errs   map[int]error
}

// decodePiece decodes the listed results of a piece into a new slice, or
// returns the error that ends them all.
func decodePiece[Out any](p *Pool, pc *itemPiece) ([]Out, error) {
	if pc.listed == 0 {
		return nil, nil
	}
	lc, ok := p.codec.(codec.ListCodec)
	if !ok {
		return nil, &CodecError{Op: "decode results", Err: errors.New("the codec cannot decode a list item by item")}
	}
	b := lc.AppendListHead(make([]byte, 0, len(pc.list)+16), pc.listed)
	b = lc.AppendListTail(append(b, pc.list...))
	var vals []Out
	if err := p.codec.Unmarshal(b, &vals); err != nil {
		return nil, &CodecError{Op: "decode results", Err: err}
	}
	if len(vals) != pc.listed {
		return nil, &CodecError{Op: "decode results", Err: errCount(len(vals), pc.listed)}
	}
	return vals, nil
}

// outcome returns item i's value or error, from a piece decoded into vals
// (with verr the decoding's error).
func pieceItem[Out any](pc *itemPiece, vals []Out, verr error, i int) (Out, error) {
	var zero Out
	if err := pc.errs[i]; err != nil {
		return zero, err
	}
	if verr != nil {
		return zero, verr
	}
	if i < len(vals) {
		return vals[i], nil
	}
	return zero, errResultLost
}

// itemSet tracks which items of a chunk have settled, so that each settles
// exactly once whatever the order of the pieces (a piece from a dead
// worker's journal may come after the chunk's own ending) and the chunk
// completes exactly once, after every item's outcome is written: a caller
// claims items (reserving them), writes their outcomes, then calls written;
// the call that writes the last ones completes the chunk.
type itemSet struct {
	mu    sync.Mutex
	n     int
	taken int    // items claimed
	left  int    // items not written yet
	done  []bool // claimed items; nil while none was claimed on its own
}

// init sets the chunk's number of items; call it before the set is shared.
func (s *itemSet) init(n int) { s.n, s.left = n, n }

// claim reserves the items in [from, to) not reserved yet, and returns them
// as ranges. The caller writes their outcomes, then calls written.
func (s *itemSet) claim(from, to int) (ranges [][2]int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if from >= to || s.taken == s.n {
		return nil
	}
	if s.done == nil && from == 0 && to == s.n && s.taken == 0 {
		s.taken = s.n
		return [][2]int{{0, s.n}}
	}
	if s.done == nil {
		s.done = make([]bool, s.n)
	}
	for i := from; i < to; i++ {
		if s.done[i] {
			continue
		}
		s.done[i] = true
		s.taken++
		if k := len(ranges); k > 0 && ranges[k-1][1] == i {
			ranges[k-1][1] = i + 1
		} else {
			ranges = append(ranges, [2]int{i, i + 1})
		}
	}
	return ranges
}

// written records that the outcomes of n claimed items are written, and
// reports whether they were the last: the chunk is then complete.
func (s *itemSet) written(n int) bool {
	if n == 0 {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.left -= n
	return s.left == 0
}

// count returns the number of items in ranges.
func count(ranges [][2]int) int {
	n := 0
	for _, r := range ranges {
		n += r[1] - r[0]
	}
	return n
}

// chunkItemError is the error of a chunk item the worker reported failed: its
// *RemoteError, wrapped in ErrTimeout if the item failed once the chunk's
// deadline had passed (code CodeDeadline), as a task would be.
func chunkItemError(re *RemoteError) error {
	if re.Code == CodeDeadline {
		return fmt.Errorf("%w: %w", ErrTimeout, re)
	}
	return re
}
