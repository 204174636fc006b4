'use strict';

// OutBuf is a growable byte buffer that the worker reuses for every answer
// frame: the codecs append the payload to it, the frame header is filled
// in afterwards, and the whole frame leaves in one write. It grows by
// doubling and never shrinks below its initial size; after an answer of
// more than `keep` bytes (8 MiB) it is replaced by a fresh buffer of the initial
// size, so that one large result does not pin its memory for ever.

class OutBuf {
  constructor(size = 64 * 1024, keep = 8 << 20) {
    this.initial = size;
    this.keep = keep;
    this.buf = Buffer.allocUnsafe(size);
    this.pos = 0;
  }

  // ensure makes room for n more bytes.
  ensure(n) {
    const need = this.pos + n;
    if (need <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < need) size *= 2;
    const nb = Buffer.allocUnsafe(size);
    this.buf.copy(nb, 0, 0, this.pos);
    this.buf = nb;
  }

  // release drops a buffer that grew past `keep` bytes.
  release() {
    if (this.buf.length > this.keep) this.buf = Buffer.allocUnsafe(this.initial);
    this.pos = 0;
  }

  byte(b) {
    if (this.pos >= this.buf.length) this.ensure(1);
    this.buf[this.pos++] = b;
  }

  bytes(src, start = 0, end = src.length) {
    const n = end - start;
    this.ensure(n);
    if (n < 64) {
      const b = this.buf;
      let p = this.pos;
      for (let i = start; i < end; i++) b[p++] = src[i];
    } else {
      // Buffer.prototype.copy accepts any Uint8Array as its source.
      Buffer.prototype.copy.call(src, this.buf, this.pos, start, end);
    }
    this.pos += n;
  }

  u32le(v) {
    this.ensure(4);
    this.buf.writeUInt32LE(v, this.pos);
    this.pos += 4;
  }

  // utf8 appends s as UTF-8 and returns the number of bytes written.
  utf8(s) {
    this.ensure(s.length * 3);
    const n = this.buf.utf8Write(s, this.pos);
    this.pos += n;
    return n;
  }
}

module.exports = { OutBuf };
