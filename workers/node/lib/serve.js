'use strict';

// The worker side of docs/protocol.md (version 1) for Node.js: frames on
// fds 3 and 4, stop frames on the control pipe (fd 7), arguments in the
// shared-memory segment (fd 5). No journal: each answer is written to fd 4
// before the next task begins.

const fs = require('fs');
const net = require('net');
const { OutBuf } = require('./outbuf');
const { errorBody, plainBody } = require('./errors');
const system = require('./system');

const HELLO = 1;
const TASK = 2;
const RESULT = 3;
const ERROR = 4;
const CANCEL = 5;
const INIT = 6;
const SKIPPED = 7;
const STOP = 8;

const F_CHUNK = 0x01;
const F_SHARED = 0x02;
const F_FROM = 0x04;
const F_DEADLINE = 0x08;

const HEADER = 13; // length (4), kind (1), id (8)
const DEFAULT_MAX_FRAME = 67108864;
const HELLO_LIMIT = 1048576;

const FD_TASKS = 3;
const FD_RESULTS = 4;
const FD_SHM = 5;

// Stop reasons (docs/protocol.md, "stop"), and SIGTERM's, which is ours.
const STOP_CANCEL = 1;
const STOP_DEADLINE = 2;
const STOP_MEMORY = 3;
const STOP_SIGTERM = 255;

const EXIT_SETUP = 2; // a bad variable, a limit, a frame we cannot parse
const EXIT_STOPPED = 143; // 128 + SIGTERM: a stop, SIGTERM, the parent's death

const utf8Slice = typeof Buffer.prototype.utf8Slice === 'function'
  ? (b, s, e) => b.utf8Slice(s, e)
  : (b, s, e) => b.toString('utf8', s, e);

const ENV_KEYS = ['PROCPOOL_WORKER', 'PROCPOOL_CODEC', 'PROCPOOL_MAX_FRAME', 'PROCPOOL_RLIMITS', 'PROCPOOL_SHM',
  'PROCPOOL_JOURNAL', 'PROCPOOL_CONTROL', 'PROCPOOL_KILL_GRACE'];

function abortReason(why) {
  if (why === STOP_DEADLINE) return new DOMException('the task ran past its deadline', 'TimeoutError');
  if (why === STOP_SIGTERM) return new DOMException('the worker got SIGTERM', 'AbortError');
  if (why === STOP_MEMORY) return new DOMException('the worker is over its memory limit', 'AbortError');
  return new DOMException('the task was cancelled', 'AbortError');
}

// TaskContext is the second argument of every call: the task's id, its
// deadline and an AbortSignal that a stop, SIGTERM or the deadline aborts.
// The AbortController is made only when signal is first read.
class TaskContext {
  constructor(id, name, deadline) {
    this.id = id;
    this.name = name;
    this.deadline = deadline; // ms since the epoch, or null
    this._ac = null;
    this._reason = undefined;
    this._why = 0;
    this._timer = null;
  }

  // signal is aborted when the parent stops the task (Future.Cancel, the
  // caller's context, a timeout, Terminate), on SIGTERM, and at the
  // task's deadline. Its reason is a DOMException named AbortError, or
  // TimeoutError for a deadline.
  get signal() {
    if (this._ac === null) {
      this._ac = new AbortController();
      if (this._reason !== undefined) {
        this._ac.abort(this._reason);
      } else if (this.deadline !== null) {
        const left = this.deadline - Date.now();
        if (left <= 0) this._stop(STOP_DEADLINE);
        else if (left < 2147483647) this._timer = setTimeout(() => this._stop(STOP_DEADLINE), left);
      }
    }
    return this._ac.signal;
  }

  // aborted is true once the task was told to stop or its deadline passed.
  get aborted() {
    return this._reason !== undefined || (this.deadline !== null && Date.now() >= this.deadline);
  }

  // throwIfAborted throws the abort's reason once aborted is true.
  throwIfAborted() {
    if (this._reason === undefined && this.deadline !== null && Date.now() >= this.deadline) this._stop(STOP_DEADLINE);
    if (this._reason !== undefined) throw this._reason;
  }

  _stop(why) {
    if (this._reason !== undefined) return;
    this._why = why;
    this._reason = abortReason(why);
    if (this._ac !== null) this._ac.abort(this._reason);
  }

  // _pastDeadline: a failure now ends the task as a timeout.
  _pastDeadline() {
    return this._why === STOP_DEADLINE || (this.deadline !== null && Date.now() >= this.deadline);
  }

  _release() {
    if (this._timer !== null) {
      clearTimeout(this._timer);
      this._timer = null;
    }
  }
}

function isPrimitive(v) {
  return v === null || (typeof v !== 'object' && typeof v !== 'function');
}

function isThenable(v) {
  return v !== null && (typeof v === 'object' || typeof v === 'function') && typeof v.then === 'function';
}

class Server {
  constructor(functions, codec, env) {
    this.functions = functions;
    this.codec = codec;
    this.maxFrame = env.maxFrame;
    this.grace = env.graceMs;
    this.shmSize = env.shmSize; // 0: no segment
    this.shmFd = env.shmSize > 0 ? FD_SHM : -1;
    this.control = env.controlFd >= 0;
    this.out = new OutBuf();

    this.queue = []; // tasks read, not yet begun
    this.qhead = 0;
    this.asm = null; // a frame being assembled across reads
    this.asmFill = 0;
    this.hdr = Buffer.alloc(HEADER); // a header split across reads
    this.hdrFill = 0;
    this.busy = false; // an asynchronous task is running
    this.pumping = false;
    this.eof = false;

    // What runs, and the stop the parent asked for (docs/protocol.md,
    // "stop"): JavaScript runs one thing at a time, so the control pipe's
    // handler always sees these between two steps of the serve loop.
    this.running = 0; // the id of the running task; 0 between tasks
    this.ctx = null; // its context
    this.stopFor = 0; // a stop that came before its task began
    this.graceTimer = null;
    this.exiting = false; // SIGTERM: begin nothing more
  }

  // ---- the hello ----

  hello() {
    const h = { protocol: 1, pid: process.pid, codec: this.codec.name, functions: [...this.functions.keys()] };
    if (this.control) h.control = true;
    const body = Buffer.from(JSON.stringify(h), 'utf8');
    const limit = Math.max(this.maxFrame, HELLO_LIMIT);
    if (body.length + 9 > limit) {
      throw new Error(`the hello frame, which lists the ${h.functions.length} registered functions, has a length field of ${body.length + 9}, over its limit of ${limit}`);
    }
    writeAll(helloFrame(body));
  }

  // ---- reading fd 3 ----

  start() {
    const readBuf = Buffer.allocUnsafe(64 * 1024);
    let tasks;
    try {
      // A pipe (or socket) read by libuv, into one buffer reused for
      // every read.
      tasks = new net.Socket({
        fd: FD_TASKS,
        readable: true,
        writable: false,
        onread: { buffer: readBuf, callback: (n, buf) => this.onData(buf, n) },
      });
    } catch (e) {
      if (e.code !== 'ERR_INVALID_FD_TYPE') throw e;
      // A regular file (not what a pool passes, but a test might).
      tasks = fs.createReadStream(null, { fd: FD_TASKS, highWaterMark: 64 * 1024, autoClose: false });
      tasks.on('data', (chunk) => this.onData(chunk, chunk.length));
    }
    tasks.on('end', () => {
      this.eof = true;
      this.pump();
    });
    tasks.on('error', (e) => die(EXIT_SETUP, `reading the task pipe: ${e.message}`));
    this.tasks = tasks;
  }

  onData(buf, n) {
    try {
      this.parse(buf, n);
    } catch (e) {
      if (e instanceof ProtocolError) die(EXIT_SETUP, e.message);
      throw e;
    }
    this.pump();
    // Tasks still queued hold views of the read buffer, which the next
    // read overwrites: copy their payloads.
    for (let i = this.qhead; i < this.queue.length; i++) {
      const t = this.queue[i];
      if (t.buf === buf) {
        t.buf = Buffer.from(buf.subarray(t.ps, t.pe));
        t.ps = 0;
        t.pe = t.buf.length;
        t.share = true;
      }
    }
  }

  checkHeader(b, p) {
    const len = b.readUInt32LE(p);
    if (len < 9 || len > this.maxFrame) throw new ProtocolError(`a frame with length ${len}, outside 9..${this.maxFrame}`);
    const kind = b[p + 4];
    if (kind !== TASK && kind !== CANCEL && kind !== INIT) throw new ProtocolError(`an unexpected frame of kind ${kind} on the task pipe`);
    return len + 4;
  }

  parse(buf, n) {
    let p = 0;
    while (p < n) {
      if (this.asm !== null) {
        const k = Math.min(this.asm.length - this.asmFill, n - p);
        buf.copy(this.asm, this.asmFill, p, p + k);
        this.asmFill += k;
        p += k;
        if (this.asmFill === this.asm.length) {
          const f = this.asm;
          this.asm = null;
          this.frame(f, 0, f.length, true);
        }
        continue;
      }
      if (this.hdrFill > 0 || n - p < HEADER) {
        const k = Math.min(HEADER - this.hdrFill, n - p);
        buf.copy(this.hdr, this.hdrFill, p, p + k);
        this.hdrFill += k;
        p += k;
        if (this.hdrFill < HEADER) break;
        const total = this.checkHeader(this.hdr, 0);
        this.hdrFill = 0;
        const f = Buffer.allocUnsafe(total);
        this.hdr.copy(f, 0, 0, HEADER);
        if (total === HEADER) {
          this.frame(f, 0, total, true);
        } else {
          this.asm = f;
          this.asmFill = HEADER;
        }
        continue;
      }
      const total = this.checkHeader(buf, p);
      if (n - p >= total) {
        this.frame(buf, p, p + total, false);
        p += total;
      } else {
        const f = Buffer.allocUnsafe(total);
        buf.copy(f, 0, p, n);
        this.asm = f;
        this.asmFill = n - p;
        p = n;
      }
    }
  }

  // frame files one whole frame, b[s:e). own: b is this frame's alone.
  frame(b, s, e, own) {
    const kind = b[s + 4];
    const lo = b.readUInt32LE(s + 5);
    const hi = b.readUInt32LE(s + 9);
    const id = hi < 0x200000 ? hi * 4294967296 + lo : b.readBigUInt64LE(s + 5);
    if (kind === CANCEL) {
      // A cancel for a task that began, ended or never came is ignored.
      for (let i = this.qhead; i < this.queue.length; i++) if (this.queue[i].id === id) this.queue[i].skip = true;
      return;
    }
    let p = s + HEADER;
    if (e - p < 3) throw new ProtocolError(`a task body of ${e - p} bytes, shorter than 3`);
    const flags = b[p];
    if ((flags & 0xf0) !== 0 || ((flags & F_FROM) !== 0 && (flags & F_CHUNK) === 0)) {
      throw new ProtocolError(`task flags 0x${flags.toString(16)} set reserved bits`);
    }
    const nameLen = b.readUInt16LE(p + 1);
    p += 3;
    if (nameLen === 0 || nameLen > e - p) throw new ProtocolError(`a function name of ${nameLen} bytes in a task body of ${e - s - HEADER}`);
    const name = utf8Slice(b, p, p + nameLen);
    p += nameLen;
    let from = 0;
    if (flags & F_FROM) {
      if (e - p < 4) throw new ProtocolError("a chunk task's first item index is cut short");
      from = b.readUInt32LE(p);
      p += 4;
    }
    let deadline = null;
    if (flags & F_DEADLINE) {
      if (e - p < 16) throw new ProtocolError("a task's deadline is cut short");
      // Nanoseconds, read as floats: the milliseconds they give are exact
      // enough for a deadline.
      const d = b.readInt32LE(p + 4) * 4294967296 + b.readUInt32LE(p);
      const t = b.readInt32LE(p + 12) * 4294967296 + b.readUInt32LE(p + 8);
      p += 16;
      // In ms; the timeout counts from the task's start (begin).
      deadline = { at: d > 0 ? d / 1e6 : null, timeout: t > 0 ? t / 1e6 : null };
    }
    const t = {
      id, kind, flags, name, from, deadline,
      buf: b, ps: p, pe: e, share: own, shm: false, skip: false,
    };
    if (flags & F_SHARED) {
      if (e - p !== 16) throw new ProtocolError(`a shared-memory reference of ${e - p} bytes, want 16`);
      if (this.shmSize === 0) throw new ProtocolError('a shared-memory reference without PROCPOOL_SHM');
      const off = b.readUInt32LE(p + 4) * 4294967296 + b.readUInt32LE(p);
      const len = b.readUInt32LE(p + 12) * 4294967296 + b.readUInt32LE(p + 8);
      if (off > this.shmSize || len > this.shmSize - off) {
        throw new ProtocolError(`a shared-memory reference [${off}, +${len}) outside a segment of ${this.shmSize} bytes`);
      }
      t.shm = true;
      t.buf = null;
      t.ps = off;
      t.pe = off + len;
    }
    this.queue.push(t);
  }

  // ---- running ----

  pump() {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (!this.busy && this.qhead < this.queue.length) {
        const t = this.queue[this.qhead];
        this.queue[this.qhead++] = undefined;
        if (this.qhead === this.queue.length) {
          this.queue.length = 0;
          this.qhead = 0;
        } else if (this.qhead > 1024 && this.qhead * 2 > this.queue.length) {
          this.queue = this.queue.slice(this.qhead);
          this.qhead = 0;
        }
        this.runTask(t);
      }
    } finally {
      this.pumping = false;
    }
    if (!this.busy && this.eof && this.qhead === this.queue.length) finish(0);
  }

  // begin marks t as running, unless the parent stopped it first.
  begin(t) {
    if (this.exiting) return false;
    if (this.stopFor === t.id) {
      this.stopFor = 0;
      return false;
    }
    // A stop for any other task is stale: the parent aims a stop only at
    // the oldest task it has no answer for.
    this.stopFor = 0;
    this.running = t.id;
    let deadline = null;
    if (t.deadline !== null) {
      const { at, timeout } = t.deadline;
      const byTimeout = timeout !== null ? Date.now() + timeout : null;
      deadline = at === null ? byTimeout : byTimeout === null ? at : Math.min(at, byTimeout);
    }
    this.ctx = new TaskContext(t.id, t.name, deadline);
    return true;
  }

  // payload reads a shared-memory argument into a buffer of the task's own:
  // the parent leaves the bytes in the segment until this task is
  // answered, and Node cannot map the segment, so they are read (pread).
  // Afterwards t.buf[t.ps:t.pe) is the encoded argument either way.
  payload(t) {
    if (!t.shm) return;
    const n = t.pe - t.ps;
    const b = Buffer.allocUnsafe(n);
    let got = 0;
    while (got < n) {
      const k = fs.readSync(this.shmFd, b, got, n - got, t.ps + got);
      if (k === 0) throw new Error(`the shared-memory segment ends at ${t.ps + got}`);
      got += k;
    }
    t.buf = b;
    t.ps = 0;
    t.pe = n;
    t.share = true;
    t.shm = false;
  }

  runTask(t) {
    if (t.skip || (t.kind === TASK && !this.begin(t))) {
      this.answer(skippedFrame(t.id));
      return;
    }
    const ctx = t.kind === TASK ? this.ctx : new TaskContext(0, t.name, null);
    const fn = this.functions.get(t.name);
    if (fn === undefined) {
      this.fail(t, plainBody(`no function registered as ${JSON.stringify(t.name)} in worker ${process.pid}`, 'Error', 'unknown_function'));
      return;
    }
    let arg;
    try {
      this.payload(t);
      arg = this.codec.decode(t.buf, t.ps, t.pe, t.share);
    } catch (err) {
      this.fail(t, plainBody(`decoding the argument${t.flags & F_CHUNK ? 's' : ''}: ${err.message}`, typeNameOf(err), 'decode'));
      return;
    }
    if (t.flags & F_CHUNK) {
      this.runChunk(t, fn, arg, ctx);
      return;
    }
    let r;
    try {
      r = fn(arg, ctx);
    } catch (err) {
      this.thrown(t, ctx, err);
      return;
    }
    if (!isThenable(r)) {
      this.returned(t, ctx, r, arg);
      return;
    }
    if (!t.share && isPrimitive(arg)) {
      // returned may send the argument's bytes back: keep them past this
      // read.
      t.buf = Buffer.from(t.buf.subarray(t.ps, t.pe));
      t.ps = 0;
      t.pe = t.buf.length;
      t.share = true;
    }
    this.busy = true;
    Promise.resolve(r).then(
      (v) => this.settled(() => this.returned(t, ctx, v, arg)),
      (err) => this.settled(() => this.thrown(t, ctx, err)),
    );
  }

  settled(answer) {
    this.busy = false;
    answer();
    this.pump();
  }

  // stoppedAway reports whether ctx was stopped for a reason that ends the
  // worker with the task unanswered (its memory, SIGTERM), and if so ends
  // it: the task's cleanup has run, but its answer is not its outcome.
  stoppedAway(ctx) {
    if (ctx._why === STOP_MEMORY || ctx._why === STOP_SIGTERM) {
      finish(EXIT_STOPPED);
      return true;
    }
    return false;
  }

  // returned answers a task's result v. A primitive that is the argument
  // itself (an echo) goes back as the argument's own bytes: JavaScript has
  // one number type, so re-encoding would turn a Go float64 of 2.0 into
  // the integer 2, and a string with invalid UTF-8 into U+FFFD.
  returned(t, ctx, v, arg) {
    if (this.stoppedAway(ctx)) return;
    const out = this.out;
    out.pos = HEADER;
    if (v === arg && isPrimitive(v)) {
      out.bytes(t.buf, t.ps, t.pe);
      this.sendResult(t);
      return;
    }
    try {
      this.codec.encode(out, v);
    } catch (err) {
      this.fail(t, plainBody(`encoding the result: ${err.message}`, typeNameOf(err), 'encode'));
      return;
    }
    this.sendResult(t);
  }

  thrown(t, ctx, err) {
    if (this.stoppedAway(ctx)) return;
    let code = '';
    if (t.kind === INIT) code = 'init';
    else if (ctx._pastDeadline()) code = 'deadline';
    this.fail(t, errorBody(err, code));
  }

  // sendResult finishes the result frame in this.out (payload from byte 13)
  // and writes it, or an encode error if it is over the frame limit.
  sendResult(t) {
    const out = this.out;
    const len = out.pos - 4;
    if (len > this.maxFrame) {
      out.release();
      this.fail(t, plainBody(`the result's frame has a length field of ${len}, over the frame limit of ${this.maxFrame} (WithMaxFrame)`, 'Error', 'encode'));
      return;
    }
    putHeader(out.buf, 0, len, RESULT, t.id);
    this.answer(out.buf.subarray(0, out.pos));
    out.release();
  }

  fail(t, body) {
    this.answer(errorFrame(t.id, body, this.maxFrame));
  }

  // answer writes an answer frame and, in the same step as far as a stop
  // is concerned, marks that no task runs.
  answer(frame) {
    writeAll(frame);
    this.running = 0;
    if (this.ctx !== null) {
      this.ctx._release();
      this.ctx = null;
    }
    if (this.graceTimer !== null) {
      clearTimeout(this.graceTimer);
      this.graceTimer = null;
    }
  }

  // ---- chunks ----

  runChunk(t, fn, items, ctx) {
    if (!Array.isArray(items)) {
      this.fail(t, plainBody(`decoding the arguments: a chunk's payload is a ${typeNameOf(items)}, not a list`, 'TypeError', 'decode'));
      return;
    }
    if (t.from > items.length) {
      this.fail(t, plainBody(`first item ${t.from} of a chunk of ${items.length}`, 'RangeError', 'decode'));
      return;
    }
    const st = { t, fn, items, ctx, i: t.from, results: new Array(items.length - t.from), fails: [] };
    this.chunkSteps(st);
  }

  // chunkSteps runs the chunk's items from st.i on, synchronously until an
  // item returns a promise: it then goes on when that settles.
  chunkSteps(st) {
    const { fn, items, ctx } = st;
    while (st.i < items.length) {
      const i = st.i;
      if (i > st.t.from && ctx._reason !== undefined) {
        // Stopped between items: for the worker's memory or SIGTERM the
        // worker ends; for a cancel or the deadline the items left fail
        // without running.
        if (this.stoppedAway(ctx)) return;
        this.itemFailed(st, ctx._reason);
        continue;
      }
      let r;
      try {
        r = fn(items[i], ctx);
      } catch (err) {
        this.itemFailed(st, err);
        continue;
      }
      if (isThenable(r)) {
        this.busy = true;
        Promise.resolve(r).then(
          (v) => {
            this.busy = false;
            this.itemDone(st, v);
            this.chunkSteps(st);
            if (!this.busy) this.pump();
          },
          (err) => {
            this.busy = false;
            this.itemFailed(st, err);
            this.chunkSteps(st);
            if (!this.busy) this.pump();
          },
        );
        return;
      }
      this.itemDone(st, r);
    }
    this.chunkAnswer(st);
  }

  itemDone(st, v) {
    st.results[st.i - st.t.from] = v;
    st.i++;
  }

  itemFailed(st, err) {
    const k = st.i - st.t.from;
    st.fails.push({ index: k, body: errorBody(err, st.ctx._pastDeadline() ? 'deadline' : '') });
    st.results[k] = null;
    st.i++;
  }

  chunkAnswer(st) {
    const { t, ctx } = st;
    if (this.stoppedAway(ctx)) return;
    const out = this.out;
    out.pos = HEADER;
    out.u32le(st.fails.length);
    for (const f of st.fails) {
      const js = Buffer.from(JSON.stringify(f.body), 'utf8');
      out.u32le(f.index);
      out.u32le(js.length);
      out.bytes(js);
    }
    try {
      this.codec.encodeList(out, st.results);
    } catch (err) {
      this.fail(t, plainBody(`encoding the results: ${err.message}`, typeNameOf(err), 'encode'));
      return;
    }
    this.sendResult(t);
  }

  // ---- stops ----

  // stop handles the parent's request to stop task id (a stop frame, from
  // the control pipe): a running task's signal is aborted and it has the
  // grace period to return; one not begun is skipped when its turn comes;
  // one answered is left alone.
  stop(id, why) {
    if (id === 0) return;
    if (this.running !== id) {
      this.stopFor = id;
      return;
    }
    if (this.grace <= 0) finish(EXIT_STOPPED);
    this.ctx._stop(why);
    if (this.graceTimer === null) {
      this.graceTimer = setTimeout(() => {
        if (this.running === id) finish(EXIT_STOPPED);
      }, this.grace);
    }
  }

  // terminate handles SIGTERM: begin nothing more; a running task is told
  // to stop and has the grace period; then the worker exits.
  terminate() {
    this.exiting = true;
    if (this.running === 0 || this.grace <= 0) finish(EXIT_STOPPED);
    this.ctx._stop(STOP_SIGTERM);
    setTimeout(() => finish(EXIT_STOPPED), this.grace);
  }

  watchControl(fd) {
    const buf = Buffer.allocUnsafe(4096);
    let carry = Buffer.alloc(0);
    const sock = new net.Socket({
      fd,
      readable: true,
      writable: false,
      onread: {
        buffer: buf,
        callback: (n, b) => {
          let data = carry.length > 0 ? Buffer.concat([carry, b.subarray(0, n)]) : b.subarray(0, n);
          while (data.length >= HEADER) {
            const len = data.readUInt32LE(0);
            if (len < 9 || len > 1024) finish(EXIT_STOPPED); // not a stop frame: nothing more is trusted
            if (data.length < len + 4) break;
            if (data[4] === STOP) {
              const lo = data.readUInt32LE(5);
              const hi = data.readUInt32LE(9);
              const id = hi < 0x200000 ? hi * 4294967296 + lo : data.readBigUInt64LE(5);
              const why = len > 9 ? data[HEADER] : STOP_CANCEL;
              this.stop(id, why === STOP_DEADLINE || why === STOP_MEMORY ? why : STOP_CANCEL);
            }
            data = data.subarray(len + 4);
          }
          carry = Buffer.from(data);
        },
      },
    });
    // End of file: the parent, which holds the only write end, is gone.
    sock.on('end', () => finish(EXIT_STOPPED));
    sock.on('error', () => finish(EXIT_STOPPED));
    this.controlSock = sock;
  }
}

class ProtocolError extends Error {}

function typeNameOf(v) {
  return v !== null && typeof v === 'object' && v.constructor ? v.constructor.name : typeof v;
}

function putHeader(b, p, len, kind, id) {
  b.writeUInt32LE(len, p);
  b[p + 4] = kind;
  if (typeof id === 'bigint') {
    b.writeBigUInt64LE(id, p + 5);
  } else {
    b.writeUInt32LE(id % 4294967296, p + 5);
    b.writeUInt32LE(Math.floor(id / 4294967296), p + 9);
  }
}

function helloFrame(body) {
  const f = Buffer.allocUnsafe(HEADER + body.length);
  putHeader(f, 0, 9 + body.length, HELLO, 0);
  body.copy(f, HEADER);
  return f;
}

function skippedFrame(id) {
  const f = Buffer.allocUnsafe(HEADER);
  putHeader(f, 0, 9, SKIPPED, id);
  return f;
}

// errorFrame encodes an error frame, shortening the body until it fits the
// frame limit as docs/protocol.md asks: it cuts the stack, drops the
// chain, cuts the message, then the type, and drops the sentinels.
function errorFrame(id, body, maxFrame) {
  const MARK = ' [cut to fit the frame limit]';
  const encode = () => Buffer.from(JSON.stringify(body), 'utf8');
  const fits = (js) => js.length + 9 <= maxFrame;
  const cut = (key) => {
    const full = body[key];
    if (typeof full !== 'string') return;
    let lo = 0;
    let hi = full.length;
    let best = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      body[key] = full.slice(0, mid) + MARK;
      if (fits(encode())) {
        best = mid;
        lo = mid + 1;
      } else {
        hi = mid - 1;
      }
    }
    body[key] = best < 0 ? '' : full.slice(0, best) + MARK;
  };
  let js = encode();
  const steps = [() => cut('stack'), () => delete body.chain, () => cut('message'), () => cut('type'), () => delete body.sentinels];
  for (const step of steps) {
    if (fits(js)) break;
    step();
    js = encode();
  }
  const f = Buffer.allocUnsafe(HEADER + js.length);
  putHeader(f, 0, 9 + js.length, ERROR, id);
  js.copy(f, HEADER);
  return f;
}

// writeAll writes a whole frame to fd 4, which is in blocking mode: the
// parent reads it continuously.
function writeAll(b) {
  let off = 0;
  while (off < b.length) {
    try {
      off += fs.writeSync(FD_RESULTS, b, off, b.length - off);
    } catch (e) {
      if (e.code === 'EAGAIN') continue;
      // EPIPE: the parent is gone.
      die(EXIT_STOPPED, `writing the result pipe: ${e.message}`);
    }
  }
}

// finish sweeps what the tasks started and exits with code.
function finish(code) {
  system.sweep();
  process.exit(code);
}

function die(code, msg) {
  process.stderr.write(`procpool worker ${process.pid}: ${msg}\n`);
  finish(code);
}

// readEnv reads and removes the PROCPOOL_* variables, so that processes
// the tasks start do not take themselves for workers.
function readEnv() {
  const env = {};
  for (const k of ENV_KEYS) {
    env[k] = process.env[k];
    delete process.env[k];
  }
  return env;
}

function intVar(name, s, dflt) {
  if (s === undefined || s === '') return dflt;
  if (!/^\d+$/.test(s)) throw new Error(`bad ${name}=${JSON.stringify(s)}`);
  return Number(s);
}

// warnInherited says so on stderr if a protocol descriptor would pass to
// the processes the tasks start (Linux, where /proc tells). Node has no
// fcntl; Node 20 marks descriptors 0 to 16 close-on-exec as it starts
// (seen with strace), which covers fds 3 to 7, and node_test.go's
// TestChildInheritsNothing checks it for the Node that runs the tests.
function warnInherited() {
  const open = [];
  for (const fd of [FD_TASKS, FD_RESULTS, FD_SHM, 6, 7]) {
    let info;
    try {
      info = fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'latin1');
    } catch (_) {
      continue; // closed, or no /proc
    }
    const m = /^flags:\s*([0-7]+)/m.exec(info);
    if (m !== null && (parseInt(m[1], 8) & 0o2000000) === 0) open.push(fd);
  }
  if (open.length > 0) {
    process.stderr.write(`procpool worker ${process.pid}: warning: descriptors ${open.join(', ')} are not close-on-exec: processes the tasks start inherit them\n`);
  }
}

// serve runs the worker: it never returns (the process exits at the end
// of the task stream, on a stop, or on an error).
function serve(functions, codecs) {
  const raw = readEnv();
  if (raw.PROCPOOL_WORKER !== '1') {
    process.stderr.write('procpool-worker: run() outside a procpool pool: this script is started by procpool.WithCommand, which sets PROCPOOL_WORKER=1\n');
    process.exit(EXIT_SETUP);
  }
  process.on('SIGINT', () => {}); // Ctrl-C belongs to the parent
  let server = null;
  process.on('SIGTERM', () => (server !== null ? server.terminate() : finish(EXIT_STOPPED)));
  const ppid = system.currentParent();
  process.on('SIGWINCH', () => {
    // The parent-death signal, or a terminal's resize: only a new parent
    // tells them apart.
    if (ppid > 0 && system.currentParent() !== ppid) finish(EXIT_STOPPED);
  });
  let env;
  try {
    for (const fd of [FD_TASKS, FD_RESULTS]) fs.fstatSync(fd);
    system.applyRlimits(raw.PROCPOOL_RLIMITS || '');
    env = {
      maxFrame: intVar('PROCPOOL_MAX_FRAME', raw.PROCPOOL_MAX_FRAME, DEFAULT_MAX_FRAME),
      graceMs: intVar('PROCPOOL_KILL_GRACE', raw.PROCPOOL_KILL_GRACE, 300000000) / 1e6,
      shmSize: intVar('PROCPOOL_SHM', raw.PROCPOOL_SHM, 0),
      controlFd: intVar('PROCPOOL_CONTROL', raw.PROCPOOL_CONTROL, -1),
    };
    if (env.maxFrame < 9) throw new Error(`bad PROCPOOL_MAX_FRAME=${raw.PROCPOOL_MAX_FRAME}`);
  } catch (e) {
    die(EXIT_SETUP, e.message);
  }
  const codec = codecs[raw.PROCPOOL_CODEC || 'cbor'];
  if (codec === undefined) {
    // An empty codec in the hello lets the parent say which one this
    // worker lacks.
    process.stderr.write(`procpool worker ${process.pid}: unknown codec ${JSON.stringify(raw.PROCPOOL_CODEC)} (this worker knows ${Object.keys(codecs).join(', ')})\n`);
    writeAll(helloFrame(Buffer.from(JSON.stringify({ protocol: 1, pid: process.pid, codec: '', functions: [] }))));
    finish(EXIT_SETUP);
  }
  warnInherited();
  server = new Server(functions, codec, env);
  try {
    server.hello();
  } catch (e) {
    die(EXIT_SETUP, `handshake: ${e.message}`);
  }
  if (env.controlFd >= 0) server.watchControl(env.controlFd);
  server.start();
  return server;
}

module.exports = { serve, TaskContext, errorFrame };
