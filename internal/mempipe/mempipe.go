// Package mempipe is an in-memory, buffered, one-way byte pipe: the
// transport between the pool and an in-process worker, and between a
// cluster slot and the pool.
package mempipe

import (
	"io"
	"sync"
)

// Pipe is an in-memory, buffered, one-way byte pipe. Writes never block:
// its user bounds what it holds (the pool's pipeline depth bounds a
// worker's frames, as an OS pipe's size would).
type Pipe struct {
	mu     sync.Mutex
	cond   sync.Cond
	buf    []byte
	closed bool // no more writes; reads drain what is left
	broken bool // reads return EOF at once
}

// New returns an empty, open pipe.
func New() *Pipe {
	p := &Pipe{}
	p.cond.L = &p.mu
	return p
}

// Write appends b; it fails with io.ErrClosedPipe after Close or Break.
func (p *Pipe) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.broken {
		return 0, io.ErrClosedPipe
	}
	p.buf = append(p.buf, b...)
	p.cond.Signal()
	return len(b), nil
}

// Read blocks until there is something to read, and returns io.EOF once
// the pipe is closed and drained, or broken.
func (p *Pipe) Read(b []byte) (int, error) {
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

// Available reports how many bytes a Read would return without blocking.
func (p *Pipe) Available() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.buf)
}

// Close ends the stream after what has been written.
func (p *Pipe) Close() error {
	p.mu.Lock()
	p.closed = true
	p.cond.Broadcast()
	p.mu.Unlock()
	return nil
}

// Break ends the stream at once, dropping what is buffered.
func (p *Pipe) Break() {
	p.mu.Lock()
	p.broken = true
	p.buf = nil
	p.cond.Broadcast()
	p.mu.Unlock()
}
