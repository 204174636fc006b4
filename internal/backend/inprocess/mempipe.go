package inprocess

import (
	"io"
	"sync"
)

// memPipe is an in-memory, buffered, one-way byte pipe: the transport of
// in-process workers (WithInProcess). Writes never block; memory is bounded
// by the pool's pipeline depth, as with an OS pipe.
type memPipe struct {
	mu     sync.Mutex
	cond   sync.Cond
	buf    []byte
	closed bool // no more writes; reads drain what is left
	broken bool // reads return EOF at once
}

func newMemPipe() *memPipe {
	p := &memPipe{}
	p.cond.L = &p.mu
	return p
}

func (p *memPipe) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.broken {
		return 0, io.ErrClosedPipe
	}
	p.buf = append(p.buf, b...)
	p.cond.Signal()
	return len(b), nil
}

func (p *memPipe) Read(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.buf) == 0 && !p.closed && !p.broken {
		p.cond.Wait()
	}
	if p.broken || len(p.buf) == 0 {
		return 0, io.EOF
	}
	n := copy(b, p.buf)
	p.buf = p.buf[:copy(p.buf, p.buf[n:])]
	return n, nil
}

// available reports how many bytes a Read would return without blocking.
func (p *memPipe) available() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.buf)
}

// Close ends the stream after what has been written.
func (p *memPipe) Close() error {
	p.mu.Lock()
	p.closed = true
	p.cond.Broadcast()
	p.mu.Unlock()
	return nil
}

// breakPipe ends the stream at once, dropping what is buffered.
func (p *memPipe) breakPipe() {
	p.mu.Lock()
	p.broken = true
	p.buf = nil
	p.cond.Broadcast()
	p.mu.Unlock()
}
