package procpool

// deque is a FIFO that can also push at the front (for tasks that go back to
// the queue after their worker died). Not safe for concurrent use.
type deque[T any] struct {
	buf  []T
	head int
	n    int
}

func (q *deque[T]) len() int { return q.n }

func (q *deque[T]) grow() {
	size := max(2*len(q.buf), 8)
	buf := make([]T, size)
	for i := 0; i < q.n; i++ {
		buf[i] = q.buf[(q.head+i)%len(q.buf)]
	}
	q.buf, q.head = buf, 0
}

func (q *deque[T]) pushBack(v T) {
	if q.n == len(q.buf) {
		q.grow()
	}
	q.buf[(q.head+q.n)%len(q.buf)] = v
	q.n++
}

func (q *deque[T]) pushFront(v T) {
	if q.n == len(q.buf) {
		q.grow()
	}
	q.head = (q.head - 1 + len(q.buf)) % len(q.buf)
	q.buf[q.head] = v
	q.n++
}

func (q *deque[T]) front() (v T) {
	if q.n > 0 {
		v = q.buf[q.head]
	}
	return v
}

func (q *deque[T]) at(i int) T { return q.buf[(q.head+i)%len(q.buf)] }

func (q *deque[T]) popFront() (v T) {
	if q.n == 0 {
		return v
	}
	var zero T
	v = q.buf[q.head]
	q.buf[q.head] = zero
	q.head = (q.head + 1) % len(q.buf)
	q.n--
	if q.n == 0 {
		q.head = 0
	}
	return v
}

// remove deletes the first element for which match is true, keeping order.
func (q *deque[T]) remove(match func(T) bool) bool {
	for i := 0; i < q.n; i++ {
		if match(q.at(i)) {
			for j := i; j < q.n-1; j++ {
				q.buf[(q.head+j)%len(q.buf)] = q.at(j + 1)
			}
			var zero T
			q.buf[(q.head+q.n-1)%len(q.buf)] = zero
			q.n--
			return true
		}
	}
	return false
}

// drain removes and returns every element, oldest first.
func (q *deque[T]) drain() []T {
	out := make([]T, 0, q.n)
	for q.n > 0 {
		out = append(out, q.popFront())
	}
	return out
}
