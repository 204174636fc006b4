'use strict';

// What the worker asks of the operating system without a native addon:
// the processes to sweep on the way out, the current parent, resource
// limits.

const fs = require('fs');
const cp = require('child_process');

// procTable lists every process as [pid, ppid, pgrp], from /proc on Linux,
// from ps(1) elsewhere; null if neither works.
function procTable() {
  let names = null;
  try {
    names = fs.readdirSync('/proc');
  } catch (_) {
    names = null;
  }
  const rows = [];
  if (names !== null && fs.existsSync('/proc/self/stat')) {
    for (const name of names) {
      const c = name.charCodeAt(0);
      if (c < 48 || c > 57) continue;
      const st = statOf(name);
      if (st !== null) rows.push(st);
    }
    return rows;
  }
  try {
    const out = cp.execFileSync('ps', ['-A', '-o', 'pid=,ppid=,pgid='], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    for (const line of out.split('\n')) {
      const f = line.trim().split(/\s+/).map(Number);
      if (f.length === 3 && f.every(Number.isInteger)) rows.push(f);
    }
    return rows;
  } catch (_) {
    return null;
  }
}

// statOf reads /proc/PID/stat: [pid, ppid, pgrp], or null.
function statOf(pid) {
  let s;
  try {
    s = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch (_) {
    return null;
  }
  // The command name is in parentheses and may hold spaces and ')'.
  const rest = s.slice(s.lastIndexOf(')') + 2).split(' ');
  return [Number(pid === 'self' ? s.slice(0, s.indexOf(' ')) : pid), Number(rest[1]), Number(rest[2])];
}

// currentParent returns the parent's pid now (process.ppid is the one at
// start-up), or -1 if it cannot tell.
function currentParent() {
  const st = statOf('self');
  return st === null ? -1 : st[1];
}

// sweep kills (SIGKILL) every other process of this worker's process group
// and every descendant of this worker: what its tasks started must not
// outlive it. Two passes catch a process forked while the first ran.
function sweep() {
  const self = process.pid;
  for (let pass = 0; pass < 2; pass++) {
    const rows = procTable();
    if (rows === null) return;
    const kids = new Map();
    for (const [pid, ppid] of rows) {
      if (!kids.has(ppid)) kids.set(ppid, []);
      kids.get(ppid).push(pid);
    }
    const victims = new Set();
    for (const [pid, , pgrp] of rows) if (pgrp === self && pid !== self) victims.add(pid);
    const stack = [self];
    while (stack.length > 0) {
      for (const k of kids.get(stack.pop()) || []) {
        if (k !== self && !victims.has(k)) {
          victims.add(k);
          stack.push(k);
        }
      }
    }
    if (victims.size === 0) return;
    for (const pid of victims) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch (_) {
        // gone already
      }
    }
  }
}

// prlimit(1)'s option for each Linux resource number.
const rlimitNames = ['cpu', 'fsize', 'data', 'stack', 'core', 'rss', 'nproc', 'nofile', 'memlock', 'as', 'locks', 'sigpending', 'msgqueue', 'nice', 'rtprio', 'rttime'];
const INFINITY = '18446744073709551615';

// applyRlimits sets PROCPOOL_RLIMITS on this process with prlimit(1)
// (util-linux): Node has no setrlimit. It throws an Error that says why a
// limit could not be set.
function applyRlimits(spec) {
  if (spec === '') return;
  const args = ['--pid', String(process.pid)];
  for (const entry of spec.split(',')) {
    const m = /^(\d+):(\d+):(\d+)$/.exec(entry);
    if (m === null) throw new Error(`bad PROCPOOL_RLIMITS entry ${JSON.stringify(entry)}`);
    const name = rlimitNames[Number(m[1])];
    if (name === undefined) throw new Error(`PROCPOOL_RLIMITS: unknown resource ${m[1]}`);
    const v = (x) => (x === INFINITY ? 'unlimited' : x);
    args.push(`--${name}=${v(m[2])}:${v(m[3])}`);
  }
  try {
    cp.execFileSync('prlimit', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (e) {
    const why = e.code === 'ENOENT' ? 'prlimit(1) not found (install util-linux)' : String(e.stderr || e.message).trim();
    throw new Error(`cannot set resource limits ${spec}: ${why}`);
  }
}

module.exports = { sweep, currentParent, applyRlimits };
