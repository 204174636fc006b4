//go:build unix

package conformance

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/procpool/procpool/codec"
	"github.com/procpool/procpool/internal/supervise"
	"github.com/procpool/procpool/internal/wire"
)

// check is one rule of the protocol, checked against a fresh worker (or a
// few).
type check struct {
	name     string // with perCodec, "<codec>" stands for the codec's name
	rule     string // the section of docs/protocol.md
	summary  string
	perCodec bool // run once per codec the worker knows
	run      func(ctx context.Context, k *kit, codec string) error
}

// checks, in the order they run.
var checks = []check{
	{"echo/<codec>", "Frames; result (3)", "conf.echo of a value of each kind the codec carries (null, booleans, integers, floats, text, byte strings, lists, maps) comes back equal", true, checkEcho},
	{"len/<codec>", "result (3)", "conf.len counts the bytes of a byte string and the code points of a text string", true, checkLen},
	{"chunk/<codec>", "task (2) and init (6); result (3)", "a chunk task (flag 0x01) is answered with one chunk result: an error table and the list of the items' results; conf.fail items fail one by one with their messages", true, checkChunk},
	{"decode-error/<codec>", "error (4)", "a task whose payload does not decode is answered with an error (code decode, if any) and the worker goes on", true, checkDecodeError},
	{"shm/<codec>", "task (2) and init (6): Shared memory", "with PROCPOOL_SHM, arguments and chunk lists passed by reference into fd 5 (flag 0x02) are read from the segment", true, checkShm},
	{"task/order", "Session: ordering rules", "40 pipelined tasks of mixed functions are answered once each, in order, with the right results", false, checkOrder},
	{"task/ids", "Frames; Session", "task ids are echoed as all 64 bits (1, 2^32+1, 2^53+1, 2^63+7, 2^64-1)", false, checkIDs},
	{"task/large", "Frames", "a 1 MiB argument and result travel inline (no shared memory)", false, checkLarge},
	{"task/deadline-flag", "task (2) and init (6): flag 0x08", "tasks with flag 0x08 (a deadline, a timeout, or both) are accepted and run", false, checkDeadlineFlag},
	{"error/conf.fail", "error (4)", "conf.fail is answered with an error frame: a JSON object whose message is exactly the argument and whose type is a string; no code for an error from user code; chain[0] = type if chain is sent", false, checkFail},
	{"error/unknown-function", "error (4); result (3)", "a task or chunk naming a function the worker does not serve is answered with an error (code unknown_function, if any), and the worker goes on", false, checkUnknownFunction},
	{"init/result", "Session (2); task (2) and init (6)", "an init frame is answered with a result of id 0 before any task, and tasks run after it", false, checkInitResult},
	{"init/error", "Session (2); error (4)", "an init whose function fails (or is unknown) is answered with an error of id 0; the worker then exits on end of input", false, checkInitError},
	{"cancel/queued", "cancel (5); skipped (7)", "a task cancelled while queued is answered once, with skipped or its normal answer (cancel is best effort); the cancel itself is never answered", false, checkCancelQueued},
	{"cancel/running", "cancel (5)", "a cancel for a task that has begun does not stop it: it is answered with its normal result", false, checkCancelRunning},
	{"cancel/ignored", "cancel (5)", "cancels for an answered task and for an id never sent are ignored", false, checkCancelIgnored},
	{"eof/idle", "Session (4)", "on end of file on fd 3 an idle worker exits with status 0, writing nothing", false, checkEOFIdle},
	{"eof/pending", "Session (4)", "on end of file on fd 3 the worker answers every task it received, writes the answers and exits with status 0", false, checkEOFPending},
	{"exit/status", "Session", "conf.exit(7) ends the worker with status 7 and no answer", false, checkExitStatus},
	{"process/pid", "hello (1); Starting a worker", "conf.pid equals the hello's pid, and the worker runs in the process group the parent made", false, checkPid},
	{"env/rlimits", "Starting a worker: PROCPOOL_RLIMITS", "the worker applies PROCPOOL_RLIMITS to itself before its hello (read back from /proc/PID/limits)", false, checkRlimits},
	{"env/rlimit-refused", "Starting a worker: PROCPOOL_RLIMITS", "a worker that cannot set a limit exits with a message on its stderr, before its hello", false, checkRlimitRefused},
	{"env/unknown-codec", "hello (1): codec", "a worker started with a codec it does not know sends a hello with codec \"\"", false, checkUnknownCodec},
	{"malformed/length-over-limit", "Frames; Session", "a frame whose length exceeds PROCPOOL_MAX_FRAME: the worker answers nothing more and exits with a non-zero status", false, malformedCheck(malOverLimit)},
	{"malformed/length-below-9", "Frames; Session", "a frame whose length field is below 9: the worker answers nothing more and exits with a non-zero status", false, malformedCheck(malBelow9)},
	{"malformed/unknown-kind", "Frames; Kinds; Session", "a frame of kind 9: the worker answers nothing more and exits with a non-zero status", false, malformedCheck(malUnknownKind)},
	{"malformed/short-task", "task (2) and init (6); Session", "a task body of 2 bytes: the worker answers nothing more and exits with a non-zero status", false, malformedCheck(malShortTask)},
	{"malformed/reserved-flag", "task (2) and init (6); Session", "a task with flag bit 4 set: the worker answers nothing more and exits with a non-zero status", false, malformedCheck(malReservedFlag)},
	{"malformed/empty-name", "task (2) and init (6); Session", "a task whose name_len is 0: the worker answers nothing more and exits with a non-zero status", false, malformedCheck(malEmptyName)},
	{"malformed/name-overrun", "task (2) and init (6); Session", "a task whose name runs past the end of its body: the worker answers nothing more and exits with a non-zero status", false, malformedCheck(malNameOverrun)},
	{"malformed/deadline-cut-short", "task (2) and init (6); Session", "a task with flag 0x08 whose deadline and timeout are cut short: the worker answers nothing more and exits with a non-zero status", false, malformedCheck(malDeadlineShort)},
	{"malformed/from-without-chunk", "task (2) and init (6); Session", "a task with flag 0x04 but not 0x01: the worker answers nothing more and exits with a non-zero status", false, malformedCheck(malFromWithoutChunk)},
	{"malformed/shm-ref-size", "task (2) and init (6): Shared memory; Session", "a shared task (flag 0x02) whose reference is not 16 bytes: the worker answers nothing more and exits with a non-zero status", false, malformedCheck(malShmRefSize)},
	{"malformed/shm-ref-outside", "task (2) and init (6): Shared memory; Session", "a shared task whose reference points outside the segment: the worker answers nothing more and exits with a non-zero status", false, malformedCheck(malShmRefOutside)},
	{"malformed/wrong-direction", "Kinds", "a stop frame on fd 3 (a kind sent in the wrong direction) is not answered; the worker should exit with a non-zero status, as the Go worker does", false, checkWrongDirection},
	{"limit/result", "Frames", "a result that would exceed PROCPOOL_MAX_FRAME (an argument passed through shared memory) is answered with an error frame (code encode, if any) that fits", false, checkLimitResult},
	{"limit/error", "Frames", "an error whose body would exceed PROCPOOL_MAX_FRAME is shortened to fit", false, checkLimitError},
	{"journal/running", "Journal", "a worker that claims the journal stores the running task's id in running before the task runs, clears the item fields, stores 0 once it has answered, and writes its answers out (answers = 0) before waiting for input", false, checkJournalRunning},
	{"journal/death", "Journal", "when a task kills the worker, every answer produced before it is in the pipe or the journal's answer area, and running names the task", false, checkJournalDeath},
	{"journal/chunk-items", "Journal: rule 4", "if the worker records chunk items (optional), the items field and the list area hold the finished items' results while a later item runs", false, checkJournalItems},
	{"chunk/from", "task (2) and init (6): flag 0x04", "a chunk with flag 0x04 runs only the items from `from` on and counts item indexes from there; a from past the end is answered with an error (code decode, if any); a must for a worker that records chunk items, a warning otherwise", false, checkFrom},
	{"control/stop-running", "stop (8); Control pipe", "a worker that claims the control pipe, given a stop for its running task, answers it as usual within the grace or ends itself without answering; it never skips a task that has begun", false, checkStopRunning},
	{"control/stop-grace-0", "stop (8)", "with PROCPOOL_KILL_GRACE=0 a stop for the running task ends the worker at once, without answering it", false, checkStopGrace0},
	{"control/stop-ignored", "stop (8)", "stops for an answered task and for an id never sent are ignored", false, checkStopIgnored},
	{"control/eof", "Control pipe", "a worker that claims the control pipe exits when it ends, even while a task runs", false, checkControlEOF},
	{"nojournal/answer-before-next", "Session: ordering rules; Journal", "without a journal, the worker writes each answer before it begins its next task", false, checkNoJournal},
	{"signal/sigterm", "Signals", "an idle worker exits on SIGTERM to its group (should)", false, checkSIGTERM},
	{"signal/sigint", "Signals", "a worker ignores SIGINT (should)", false, checkSIGINT},
	{"signal/sigwinch", "Signals", "SIGWINCH while the parent lives does not end the worker (should)", false, checkSIGWINCH},
	{"eof/after-tasks", "Session (4)", "end of input after 20 tasks: the worker exits with status 0", false, checkEOFAfterWork},
}

// defaults returns the options a pool gives a worker.
func (k *kit) defaults(c string) opts {
	return opts{codec: c, maxFrame: defaultMaxFrame, grace: defaultGrace, shm: !k.cfg.NoSharedMemory, journal: !k.cfg.NoJournal, control: !k.cfg.NoControl}
}

// with opens a worker with the default options changed by mod, runs fn
// with it and closes it. A failure to start or to say hello is the
// check's failure.
func (k *kit) with(ctx context.Context, c string, mod func(*opts), fn func(s *session) error) error {
	o := k.defaults(c)
	if mod != nil {
		mod(&o)
	}
	s, err := k.open(ctx, o)
	if s != nil {
		defer s.close()
	}
	if err != nil {
		return err
	}
	err = fn(s)
	var out *outcome
	if errors.As(err, &out) && out.status == Fail {
		out.detail = s.withOutput(out.detail)
	}
	return err
}

func (k *kit) checkHello(ctx context.Context, name string) error {
	if _, err := codec.ByName(name); err != nil {
		return skipf("codec %s: the kit does not know it (register it with codec.Register in the program that runs the kit)", name)
	}
	s, err := k.start(ctx, k.defaults(name))
	if err != nil {
		return err
	}
	defer s.close()
	problems, unknown, err := s.readHello(ctx)
	if err != nil {
		if o, ok := err.(*outcome); ok {
			o.detail = s.withOutput(o.detail)
		}
		return err
	}
	if len(problems) > 0 {
		return failf("%s", s.withOutput("hello: "+strings.Join(problems, "; ")))
	}
	if unknown {
		return skipf("codec %s: not supported (the worker's hello names codec \"\")", name)
	}
	if k.primary == "" && len(k.report.Codecs) == 0 {
		k.claimsJournal, k.claimsControl = s.hello.Journal, s.hello.Control
	}
	var parts []string
	if s.journal != nil {
		parts = append(parts, fmt.Sprintf("journal %v", s.hello.Journal))
	}
	if s.ctl != nil {
		parts = append(parts, fmt.Sprintf("control %v", s.hello.Control))
	}
	parts = append(parts, fmt.Sprintf("%d functions", len(s.hello.Functions)))
	if len(s.hello.Fingerprints) > 0 {
		parts = append(parts, fmt.Sprintf("%d fingerprints", len(s.hello.Fingerprints)))
	}
	return passf("pid %d, %s", s.hello.Pid, strings.Join(parts, ", "))
}

// echo calls conf.echo on v and compares the result with what the kit's
// codec makes of v.
func echo(ctx context.Context, s *session, v value, shared bool) error {
	want, err := roundTrip(s.c, v.v)
	if err != nil {
		return err
	}
	f, err := s.call(ctx, taskSpec{fn: "conf.echo", payload: s.encode(v.v), shared: shared})
	if err != nil {
		return err
	}
	var got any
	if err := s.result(f, "conf.echo of "+v.desc, &got); err != nil {
		return err
	}
	if !same(got, want) {
		return failf("conf.echo of %s (%s) came back as %s", v.desc, show(want), show(got))
	}
	return nil
}

func checkEcho(ctx context.Context, k *kit, c string) error {
	return k.with(ctx, c, nil, func(s *session) error {
		n := 0
		for _, v := range echoValues() {
			if v.bytes && !carriesBytes(s.c) {
				continue
			}
			if err := echo(ctx, s, v, false); err != nil {
				return err
			}
			n++
		}
		return passf("%d values", n)
	})
}

func checkLen(ctx context.Context, k *kit, c string) error {
	type lc struct {
		desc string
		v    any
		n    int
	}
	cases := []lc{
		{"empty text", "", 0},
		{"text \"hello\"", "hello", 5},
		{"text \"héllo\" (6 bytes, 5 code points)", "héllo", 5},
		{"text \"a😀\" (a code point outside the BMP: 2 UTF-16 units, 4 bytes)", "a😀", 2},
		{"text of 1000 code points", strings.Repeat("é", 1000), 1000},
	}
	return k.with(ctx, c, nil, func(s *session) error {
		if carriesBytes(s.c) {
			cases = append(cases, lc{"empty bytes", []byte{}, 0}, lc{"3 bytes", []byte{1, 2, 3}, 3}, lc{"bytes 0xc3 0xa9 (é in UTF-8)", []byte("é"), 2}, lc{"70000 bytes", make([]byte, 70000), 70000})
		}
		for _, tc := range cases {
			f, err := s.call(ctx, taskSpec{fn: "conf.len", payload: s.encode(tc.v)})
			if err != nil {
				return err
			}
			var got int64
			if err := s.result(f, "conf.len of "+tc.desc, &got); err != nil {
				return err
			}
			if got != int64(tc.n) {
				return failf("conf.len of %s returned %d, want %d", tc.desc, got, tc.n)
			}
		}
		return nil
	})
}

// chunkResult parses a chunk result and decodes its list.
func chunkResult(s *session, f wire.Frame, what string) ([]wire.ItemError, []any, error) {
	switch f.Kind {
	case wire.KindResult:
	case wire.KindError:
		return nil, nil, failf("%s was answered with an error: %s", what, errorText(f.Body))
	default:
		return nil, nil, failf("%s was answered with %s frame, want a chunk result", what, an(f.Kind))
	}
	errs, payload, err := wire.ParseChunkResult(f.Body)
	if err != nil {
		return nil, nil, failf("%s: the chunk result does not parse: %v (protocol.md, result (3): 4-byte nerr, entries of index, len and JSON, then the list)", what, err)
	}
	var list []any
	if err := s.c.Unmarshal(payload, &list); err != nil {
		return nil, nil, failf("%s: the chunk result's list does not decode as a list with %s: %v (payload % x)", what, s.c.Name(), err, clip(payload))
	}
	return errs, list, nil
}

// expectItems checks a chunk result whose items all succeeded.
func expectItems(s *session, f wire.Frame, what string, want []any) error {
	errs, list, err := chunkResult(s, f, what)
	if err != nil {
		return err
	}
	if len(errs) > 0 {
		return failf("%s: item %d failed: %q", what, errs[0].Index, errs[0].Err.Message)
	}
	wantRT, _ := roundTrip(s.c, want)
	if !same(any(list), wantRT) {
		return failf("%s: the results are %s, want %s", what, show(list), show(wantRT))
	}
	return nil
}

// expectFailedItems checks a chunk result of conf.fail over msgs.
func expectFailedItems(s *session, f wire.Frame, what string, msgs []string) error {
	errs, list, err := chunkResult(s, f, what)
	if err != nil {
		return err
	}
	if len(list) != len(msgs) {
		return failf("%s: the list has %d entries, want one per item run (%d): a failed item's entry is a placeholder (protocol.md, result (3))", what, len(list), len(msgs))
	}
	if len(errs) != len(msgs) {
		return failf("%s: %d item errors, want %d (every item fails)", what, len(errs), len(msgs))
	}
	for i, e := range errs {
		if e.Index != i {
			return failf("%s: item error %d has index %d, want %d (indexes count the items run, from 0)", what, i, e.Index, i)
		}
		if e.Err.Message != msgs[i] {
			return failf("%s: item %d's error message is %q, want %q", what, i, e.Err.Message, msgs[i])
		}
		if e.Err.Type == "" {
			return failf("%s: item %d's error has no type", what, i)
		}
	}
	return nil
}

func checkChunk(ctx context.Context, k *kit, c string) error {
	return k.with(ctx, c, nil, func(s *session) error {
		items := []any{1, "two", []any{3.5}, map[string]any{"four": 4}, nil, true}
		f, err := s.call(ctx, taskSpec{fn: "conf.echo", chunk: true, payload: s.encode(items)})
		if err != nil {
			return err
		}
		if err := expectItems(s, f, "a chunk of conf.echo over 6 items", items); err != nil {
			return err
		}
		f, err = s.call(ctx, taskSpec{fn: "conf.len", chunk: true, payload: s.encode([]any{"abc", "", "é😀"})})
		if err != nil {
			return err
		}
		if err := expectItems(s, f, "a chunk of conf.len over 3 texts", []any{3, 0, 2}); err != nil {
			return err
		}
		f, err = s.call(ctx, taskSpec{fn: "conf.echo", chunk: true, payload: s.encode([]any{42})})
		if err != nil {
			return err
		}
		if err := expectItems(s, f, "a chunk of conf.echo over 1 item", []any{42}); err != nil {
			return err
		}
		msgs := []string{"first", "second ✗", "third"}
		f, err = s.call(ctx, taskSpec{fn: "conf.fail", chunk: true, payload: s.encode(msgs)})
		if err != nil {
			return err
		}
		if err := expectFailedItems(s, f, "a chunk of conf.fail over 3 items", msgs); err != nil {
			return err
		}
		// The worker goes on after failed items.
		return echo(ctx, s, value{desc: "\"after\"", v: "after"}, false)
	})
}

func checkDecodeError(ctx context.Context, k *kit, c string) error {
	bad := map[string][]byte{
		"cbor": {0x83, 0x01, 0x02}, // an array of 3 items that holds 2
		"json": []byte("{\"a\":"),  // cut short
	}
	payload, ok := bad[c]
	if !ok {
		return skipf("the kit has no undecodable payload for codec %s", c)
	}
	return k.with(ctx, c, nil, func(s *session) error {
		f, err := s.call(ctx, taskSpec{fn: "conf.echo", payload: payload})
		if err != nil {
			return err
		}
		if f.Kind != wire.KindError {
			return failf("a conf.echo task whose payload (% x) is not valid %s was answered with %s frame, want an error (code decode)", payload, c, an(f.Kind))
		}
		if err := checkErrorBody(f.Body, "decode"); err != nil {
			return err
		}
		return echo(ctx, s, value{desc: "\"after\"", v: "after"}, false)
	})
}

// checkErrorBody checks an error frame's JSON: an object with a string
// message and a string type, and the optional keys with their types; a
// code, if present, must be code (or, with code "", absent).
func checkErrorBody(body []byte, code string, alsoCodes ...string) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil || m == nil {
		return failf("the error body is not a JSON object: %q (protocol.md, error (4))", clip(body))
	}
	str := func(key string, required bool) (string, error) {
		raw, ok := m[key]
		if !ok {
			if required {
				return "", failf("the error body lacks %q: %s (protocol.md, error (4))", key, clip(body))
			}
			return "", nil
		}
		var v string
		if err := json.Unmarshal(raw, &v); err != nil || string(raw) == "null" {
			return "", failf("the error body's %q is %s, want a string (protocol.md, error (4))", key, raw)
		}
		return v, nil
	}
	if _, err := str("message", true); err != nil {
		return err
	}
	typ, err := str("type", true)
	if err != nil {
		return err
	}
	if _, err := str("stack", false); err != nil {
		return err
	}
	got, err := str("code", false)
	if err != nil {
		return err
	}
	if got != "" && got != code && !contains(alsoCodes, got) {
		if code == "" {
			return failf("the error of user code carries code %q; protocol.md (error (4)) says code is absent for an ordinary error from user code", got)
		}
		return failf("the error carries code %q, want %q (or no code) (protocol.md, error (4))", got, code)
	}
	if raw, ok := m["panic"]; ok {
		var b bool
		if json.Unmarshal(raw, &b) != nil || string(raw) == "null" {
			return failf("the error body's \"panic\" is %s, want true or false", raw)
		}
	}
	for _, key := range []string{"chain", "sentinels"} {
		if raw, ok := m[key]; ok && string(raw) != "null" {
			var list []string
			if json.Unmarshal(raw, &list) != nil {
				return failf("the error body's %q is %s, want an array of strings", key, clip(raw))
			}
			if key == "chain" && len(list) > 0 && list[0] != typ {
				return failf("the error's chain begins with %q but its type is %q: chain's first entry equals type (protocol.md, error (4))", list[0], typ)
			}
			if key == "chain" && len(list) > 32 {
				return failf("the error's chain has %d entries, at most 32 (protocol.md, error (4))", len(list))
			}
		}
	}
	if raw, ok := m["values"]; ok && string(raw) != "null" {
		var vals []struct {
			Type  *string `json:"type"`
			Codec *string `json:"codec"`
			Data  *string `json:"data"`
		}
		if json.Unmarshal(raw, &vals) != nil {
			return failf("the error body's \"values\" is %s, want an array of objects", clip(raw))
		}
		for i, v := range vals {
			if v.Type == nil || v.Codec == nil || v.Data == nil {
				return failf("the error body's values[%d] lacks type, codec or data: %s", i, clip(raw))
			}
		}
	}
	return nil
}

func checkShm(ctx context.Context, k *kit, c string) error {
	if k.cfg.NoSharedMemory {
		return skipf("shared memory not offered (Config.NoSharedMemory)")
	}
	return k.with(ctx, c, nil, func(s *session) error {
		text := strings.Repeat("shared ✓ ", 20000) // 200000 bytes, 180000 code points
		var big any = text
		n := 180000
		if carriesBytes(s.c) {
			big, n = bytes.Repeat([]byte{7, 0, 255}, 70000), 210000
		}
		f, err := s.call(ctx, taskSpec{fn: "conf.len", payload: s.encode(big), shared: true})
		if err != nil {
			return err
		}
		var got int64
		if err := s.result(f, "conf.len of a 200 KB argument in shared memory", &got); err != nil {
			return err
		}
		if got != int64(n) {
			return failf("conf.len of a %d-long argument in shared memory returned %d", n, got)
		}
		if err := echo(ctx, s, value{desc: "a text of 100000 characters in shared memory", v: strings.Repeat("0123456789", 10000)}, true); err != nil {
			return err
		}
		// Two shared tasks in one write, then a chunk whose list is
		// shared.
		ids, err := s.send(
			taskSpec{fn: "conf.echo", payload: s.encode("first shared"), shared: true},
			taskSpec{fn: "conf.echo", payload: s.encode("second shared"), shared: true},
			taskSpec{fn: "conf.len", chunk: true, payload: s.encode([]any{text, "abc"}), shared: true},
		)
		if err != nil {
			return failf("%v", err)
		}
		for i, want := range []string{"first shared", "second shared"} {
			f, err := s.answer(ctx)
			if err != nil {
				return err
			}
			var got string
			if err := s.result(f, fmt.Sprintf("task %d, conf.echo of %q in shared memory", ids[i], want), &got); err != nil {
				return err
			}
			if got != want {
				return failf("task %d, conf.echo of %q in shared memory, returned %q", ids[i], want, got)
			}
		}
		f, err = s.answer(ctx)
		if err != nil {
			return err
		}
		return expectItems(s, f, "a chunk of conf.len whose list is in shared memory", []any{180000, 3})
	})
}

func checkOrder(ctx context.Context, k *kit, c string) error {
	return k.with(ctx, c, nil, func(s *session) error {
		var ts []taskSpec
		var want []any
		for i := 0; i < 40; i++ {
			switch i % 4 {
			case 0:
				ts = append(ts, taskSpec{fn: "conf.echo", payload: s.encode(i)})
				want = append(want, i)
			case 1:
				ts = append(ts, taskSpec{fn: "conf.len", payload: s.encode(strings.Repeat("x", i*100))})
				want = append(want, i*100)
			case 2:
				ts = append(ts, taskSpec{fn: "conf.fail", payload: s.encode("fail " + strconv.Itoa(i))})
				want = append(want, "fail "+strconv.Itoa(i))
			case 3:
				ts = append(ts, taskSpec{fn: "conf.sleep", payload: s.encode(i % 3)})
				want = append(want, i%3)
			}
		}
		ids, err := s.send(ts...)
		if err != nil {
			return failf("%v", err)
		}
		for i := range ts {
			f, err := s.answer(ctx)
			if err != nil {
				return err
			}
			what := fmt.Sprintf("task %d (%s)", ids[i], ts[i].fn)
			if ts[i].fn == "conf.fail" {
				if f.Kind != wire.KindError {
					return failf("%s was answered with %s frame, want an error", what, an(f.Kind))
				}
				eb, err := wire.ParseError(f.Body)
				if err != nil || eb.Message != want[i] {
					return failf("%s: error %s, want message %q", what, errorText(f.Body), want[i])
				}
				continue
			}
			var got any
			if err := s.result(f, what, &got); err != nil {
				return err
			}
			w, _ := roundTrip(s.c, want[i])
			if !same(got, w) {
				return failf("%s returned %s, want %s", what, show(got), show(w))
			}
		}
		return nil
	})
}

func checkIDs(ctx context.Context, k *kit, c string) error {
	return k.with(ctx, c, nil, func(s *session) error {
		ids := []uint64{1, 1<<32 + 1, 1<<53 + 1, 1<<63 + 7, 1<<64 - 1}
		var ts []taskSpec
		for i, id := range ids {
			ts = append(ts, taskSpec{id: id, fn: "conf.echo", payload: s.encode(i)})
		}
		if _, err := s.send(ts...); err != nil {
			return failf("%v", err)
		}
		for i := range ids {
			f, err := s.answer(ctx)
			if err != nil {
				return err
			}
			var got int64
			if err := s.result(f, "task "+u64(ids[i]), &got); err != nil {
				return err
			}
			if got != int64(i) {
				return failf("task %d returned %d, want %d", ids[i], got, i)
			}
		}
		return nil
	})
}

func checkLarge(ctx context.Context, k *kit, c string) error {
	return k.with(ctx, c, func(o *opts) { o.shm = false }, func(s *session) error {
		v := value{desc: "a text of 1 MiB", v: strings.Repeat("abcdefgh", 1<<17)}
		if carriesBytes(s.c) {
			v = value{desc: "1 MiB of bytes", v: bytes.Repeat([]byte{1, 2, 3, 4, 5, 6, 7, 8}, 1<<17)}
		}
		return echo(ctx, s, v, false)
	})
}

func checkDeadlineFlag(ctx context.Context, k *kit, c string) error {
	return k.with(ctx, c, nil, func(s *session) error {
		hour := int64(time.Hour)
		far := time.Now().Add(time.Hour).UnixNano()
		for _, tc := range []struct {
			desc              string
			deadline, timeout int64
		}{
			{"a deadline an hour away", far, 0},
			{"a timeout of an hour", 0, hour},
			{"both", far, hour},
		} {
			f, err := s.call(ctx, taskSpec{fn: "conf.echo", payload: s.encode(tc.desc), deadline: tc.deadline, timeout: tc.timeout})
			if err != nil {
				return err
			}
			var got string
			if err := s.result(f, "conf.echo with flag 0x08 ("+tc.desc+")", &got); err != nil {
				return err
			}
			if got != tc.desc {
				return failf("conf.echo of %q with flag 0x08 returned %q", tc.desc, got)
			}
		}
		// Flag 0x08 on a chunk, with the from flag's absence in between.
		f, err := s.call(ctx, taskSpec{fn: "conf.echo", chunk: true, payload: s.encode([]any{1, 2}), timeout: hour})
		if err != nil {
			return err
		}
		return expectItems(s, f, "a chunk with flag 0x08", []any{1, 2})
	})
}

func checkFail(ctx context.Context, k *kit, c string) error {
	return k.with(ctx, c, nil, func(s *session) error {
		msg := "boom: ünïcode ✗ \"quoted\"\nsecond line"
		f, err := s.call(ctx, taskSpec{fn: "conf.fail", payload: s.encode(msg)})
		if err != nil {
			return err
		}
		if f.Kind != wire.KindError {
			return failf("conf.fail was answered with %s frame, want an error", an(f.Kind))
		}
		if err := checkErrorBody(f.Body, ""); err != nil {
			return err
		}
		eb, _ := wire.ParseError(f.Body)
		if eb.Message != msg {
			return failf("conf.fail(%q) answered an error with message %q; the contract says the message is exactly the argument", msg, eb.Message)
		}
		if eb.Type == "" {
			return warnf("conf.fail's error has an empty type; protocol.md (error (4)): type is the type of the error in the worker's language")
		}
		if err := echo(ctx, s, value{desc: "\"after\"", v: "after"}, false); err != nil {
			return err
		}
		return passf("type %q", eb.Type)
	})
}

func checkUnknownFunction(ctx context.Context, k *kit, c string) error {
	return k.with(ctx, c, nil, func(s *session) error {
		for _, chunk := range []bool{false, true} {
			what := "a task of conf.nosuch (not served)"
			payload := s.encode(1)
			if chunk {
				what, payload = "a chunk of conf.nosuch", s.encode([]any{1, 2})
			}
			f, err := s.call(ctx, taskSpec{fn: "conf.nosuch", chunk: chunk, payload: payload})
			if err != nil {
				return err
			}
			if f.Kind != wire.KindError {
				return failf("%s was answered with %s frame, want an error (code unknown_function) (protocol.md, error (4); for a chunk, result (3): the chunk fails as a whole)", what, an(f.Kind))
			}
			if err := checkErrorBody(f.Body, "unknown_function"); err != nil {
				return failf("%s: %s", what, err.(*outcome).detail)
			}
		}
		return echo(ctx, s, value{desc: "\"after\"", v: "after"}, false)
	})
}

// initAnswer reads the answer to an init frame.
func initAnswer(ctx context.Context, s *session) (wire.Frame, error) {
	f, err := s.next(ctx)
	if err != nil {
		return f, failf("%s", s.describe(err, "the answer to init"))
	}
	if f.Kind != wire.KindResult && f.Kind != wire.KindError {
		return f, failf("init was answered with %s frame, want a result or an error (protocol.md, Session (2))", an(f.Kind))
	}
	if f.ID != 0 {
		return f, failf("init was answered with %s frame of id %d, want id 0 (protocol.md, Frames)", an(f.Kind), f.ID)
	}
	return f, nil
}

func checkInitResult(ctx context.Context, k *kit, c string) error {
	return k.with(ctx, c, nil, func(s *session) error {
		if _, err := s.send(taskSpec{kind: wire.KindInit, fn: "conf.echo", payload: s.encode("init argument")}); err != nil {
			return failf("%v", err)
		}
		f, err := initAnswer(ctx, s)
		if err != nil {
			return err
		}
		if f.Kind != wire.KindResult {
			return failf("init of conf.echo was answered with an error: %s", errorText(f.Body))
		}
		return echo(ctx, s, value{desc: "\"after init\"", v: "after init"}, false)
	})
}

func checkInitError(ctx context.Context, k *kit, c string) error {
	for _, tc := range []struct{ fn, desc string }{{"conf.fail", "conf.fail"}, {"conf.nosuch", "an unknown function"}} {
		err := k.with(ctx, c, nil, func(s *session) error {
			if _, err := s.send(taskSpec{kind: wire.KindInit, fn: tc.fn, payload: s.encode("init failed")}); err != nil {
				return failf("%v", err)
			}
			f, err := initAnswer(ctx, s)
			if err != nil {
				return err
			}
			if f.Kind != wire.KindError {
				return failf("init of %s was answered with a result, want an error", tc.desc)
			}
			codes := []string{"init"}
			if tc.fn == "conf.nosuch" {
				codes = append(codes, "unknown_function")
			}
			if err := checkErrorBody(f.Body, codes[0], codes[1:]...); err != nil {
				return failf("init of %s: %s", tc.desc, err.(*outcome).detail)
			}
			if tc.fn == "conf.fail" {
				if eb, _ := wire.ParseError(f.Body); eb.Message != "init failed" {
					return failf("init of conf.fail(\"init failed\") answered an error with message %q", eb.Message)
				}
			}
			// The parent shuts the worker down: end of input.
			s.tasks.Close()
			if !s.waitExit(ctx) {
				return failf("after its init failed and fd 3 was closed, the worker was still running %v later", s.tout)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func checkCancelQueued(ctx context.Context, k *kit, c string) error {
	return k.with(ctx, c, nil, func(s *session) error {
		var buf []byte
		id1, f1 := s.frame(taskSpec{fn: "conf.sleep", payload: s.encode(200)})
		id2, f2 := s.frame(taskSpec{fn: "conf.echo", payload: s.encode("cancelled")})
		id3, f3 := s.frame(taskSpec{fn: "conf.echo", payload: s.encode("after")})
		buf = append(buf, f1...)
		buf = append(buf, f2...)
		buf = wire.AppendFrame(buf, wire.KindCancel, id2, nil)
		buf = append(buf, f3...)
		if err := s.sendRaw(buf); err != nil {
			return failf("%v", err)
		}
		s.pending = append(s.pending, id1, id2, id3)
		if f, err := s.answer(ctx); err != nil {
			return err
		} else if err := s.result(f, "task "+u64(id1)+" (conf.sleep(200))", new(int64)); err != nil {
			return err
		}
		f, err := s.answer(ctx)
		if err != nil {
			return err
		}
		how := "answered with skipped"
		switch f.Kind {
		case wire.KindSkipped:
		case wire.KindResult:
			how = "ran anyway (cancel is best effort)"
			var got string
			if err := s.result(f, "the cancelled task", &got); err != nil || got != "cancelled" {
				return failf("the cancelled task %d (conf.echo of \"cancelled\") was answered with %q", id2, got)
			}
		default:
			return failf("the cancelled task %d was answered with %s frame: %s; want skipped or its normal result", id2, an(f.Kind), errorText(f.Body))
		}
		f, err = s.answer(ctx)
		if err != nil {
			return err
		}
		var got string
		if err := s.result(f, "the task after the cancelled one", &got); err != nil {
			return err
		}
		if got != "after" {
			return failf("task %d returned %q, want \"after\"", id3, got)
		}
		return passf("the cancelled task %s", how)
	})
}

// unread returns the bytes in the task pipe that the worker has not read
// (FIONREAD works on either end of a pipe).
func (s *session) unread() int {
	rc, err := s.tasks.SyscallConn()
	if err != nil {
		return 0
	}
	n := 0
	_ = rc.Control(func(fd uintptr) { n = supervise.Available(int(fd)) })
	return n
}

// waitRead waits until the worker has read everything written to its task
// pipe: it then holds the tasks (though it may not have begun the last).
func (s *session) waitRead(ctx context.Context) bool {
	deadline := time.Now().Add(s.tout)
	for s.unread() > 0 {
		if time.Now().After(deadline) || s.exitedNow() || ctx.Err() != nil {
			return false
		}
		time.Sleep(200 * time.Microsecond)
	}
	return true
}

// begun waits until task id has begun: with a journal, until running names
// it (known is then true); without, until the worker has read it from the
// pipe (known false: it may not have begun).
func (s *session) begun(ctx context.Context, id uint64) (known bool, err error) {
	if s.journal != nil && s.hello.Journal {
		if !s.pollJournal(ctx, func(v journalView) bool { return v.running == id }) {
			return false, failf("the journal's running field never named task %d while it ran (it says %d) (protocol.md, Journal, rule 1)", id, s.readJournal().running)
		}
		return true, nil
	}
	if !s.waitRead(ctx) {
		return false, failf("the worker did not read task %d from its task pipe within %v (the worker %s)", id, s.tout, s.runningText())
	}
	return false, nil
}

func checkCancelRunning(ctx context.Context, k *kit, c string) error {
	return k.with(ctx, c, nil, func(s *session) error {
		ids, err := s.send(taskSpec{fn: "conf.sleep", payload: s.encode(300)})
		if err != nil {
			return failf("%v", err)
		}
		known, err := s.begun(ctx, ids[0])
		if err != nil {
			return err
		}
		if err := s.cancel(ids[0]); err != nil {
			return failf("%v", err)
		}
		f, err := s.answer(ctx)
		if err != nil {
			return err
		}
		if f.Kind == wire.KindSkipped {
			if known {
				return failf("task %d was answered with skipped after a cancel, although the journal said it had begun: a cancel for a task that has begun is answered by its normal result (protocol.md, cancel (5))", ids[0])
			}
			return passf("skipped: the worker had not begun it (without a journal the kit cannot tell)")
		}
		if err := s.result(f, "the conf.sleep(300) cancelled while it ran", new(int64)); err != nil {
			return err
		}
		if err := echo(ctx, s, value{desc: "\"after\"", v: "after"}, false); err != nil {
			return err
		}
		if !known {
			return passf("answered with its result (without a journal the kit cannot tell whether it had begun)")
		}
		return nil
	})
}

func checkCancelIgnored(ctx context.Context, k *kit, c string) error {
	return k.with(ctx, c, nil, func(s *session) error {
		f, err := s.call(ctx, taskSpec{fn: "conf.echo", payload: s.encode("answered")})
		if err != nil {
			return err
		}
		if err := s.result(f, "conf.echo", new(string)); err != nil {
			return err
		}
		var buf []byte
		buf = wire.AppendFrame(buf, wire.KindCancel, 1, nil)       // answered
		buf = wire.AppendFrame(buf, wire.KindCancel, 1<<40+3, nil) // never sent
		id, fr := s.frame(taskSpec{fn: "conf.echo", payload: s.encode("after")})
		buf = append(buf, fr...)
		if err := s.sendRaw(buf); err != nil {
			return failf("%v", err)
		}
		s.pending = append(s.pending, id)
		f, err = s.answer(ctx)
		if err != nil {
			return err
		}
		var got string
		if err := s.result(f, "the task after two stale cancels", &got); err != nil {
			return err
		}
		if got != "after" {
			return failf("the task after two stale cancels returned %q", got)
		}
		return nil
	})
}

// expectCleanExit waits for the end of the result stream and the worker's
// exit with status 0, with no frame but those expected.
func expectCleanExit(ctx context.Context, s *session, after string) error {
	f, err := s.next(ctx)
	switch {
	case err == nil:
		return failf("after %s the worker wrote %s frame (id %d), with no task pending", after, an(f.Kind), f.ID)
	case err == errNoFrame:
		return failf("the worker was still running %v after %s (protocol.md, Session (4): on end of file on fd 3 the worker ... exits with status 0)", s.tout, after)
	case err != io.EOF && ctx.Err() == nil:
		return failf("%s", s.describe(err, "the end of the result stream"))
	}
	if !s.waitExit(ctx) {
		return failf("the worker closed its result pipe but was still running %v after %s", s.tout, after)
	}
	if code := s.exitCode(); code != 0 {
		return failf("after %s the worker %s, want status 0 (protocol.md, Session (4))", after, s.exitText())
	}
	return nil
}

func checkEOFIdle(ctx context.Context, k *kit, c string) error {
	return k.with(ctx, c, nil, func(s *session) error {
		s.tasks.Close()
		return expectCleanExit(ctx, s, "end of input (fd 3 closed) with no task sent")
	})
}

func checkEOFPending(ctx context.Context, k *kit, c string) error {
	return k.with(ctx, c, nil, func(s *session) error {
		ids, err := s.send(
			taskSpec{fn: "conf.echo", payload: s.encode("one")},
			taskSpec{fn: "conf.sleep", payload: s.encode(20)},
			taskSpec{fn: "conf.fail", payload: s.encode("three")},
			taskSpec{fn: "conf.echo", payload: s.encode("four")},
		)
		if err != nil {
			return failf("%v", err)
		}
		s.tasks.Close()
		for _, id := range ids {
			f, err := s.answer(ctx)
			if err != nil {
				return err
			}
			if f.Kind == wire.KindSkipped {
				return failf("task %d was answered with skipped after end of input; the worker must answer every task it received (protocol.md, Session (4))", id)
			}
		}
		return expectCleanExit(ctx, s, "end of input with 4 tasks sent, all answered")
	})
}

func checkEOFAfterWork(ctx context.Context, k *kit, c string) error {
	return k.with(ctx, c, nil, func(s *session) error {
		for i := 0; i < 20; i++ {
			if err := echo(ctx, s, value{desc: strconv.Itoa(i), v: i}, false); err != nil {
				return err
			}
		}
		s.tasks.Close()
		return expectCleanExit(ctx, s, "end of input after 20 tasks")
	})
}

func checkExitStatus(ctx context.Context, k *kit, c string) error {
	return k.with(ctx, c, nil, func(s *session) error {
		if err := echo(ctx, s, value{desc: "\"before\"", v: "before"}, false); err != nil {
			return err
		}
		if _, err := s.send(taskSpec{fn: "conf.exit", payload: s.encode(7)}); err != nil {
			return failf("%v", err)
		}
		f, err := s.next(ctx)
		switch {
		case err == nil:
			return failf("conf.exit(7) was answered with %s frame; the contract says it exits at once", an(f.Kind))
		case err == errNoFrame:
			return failf("conf.exit(7): the worker was still running %v later", s.tout)
		}
		if !s.waitExit(ctx) {
			return failf("conf.exit(7): the worker closed its result pipe but was still running %v later", s.tout)
		}
		if s.exitCode() != 7 {
			return failf("conf.exit(7): the worker %s, want status 7", s.exitText())
		}
		return nil
	})
}

func checkPid(ctx context.Context, k *kit, c string) error {
	return k.with(ctx, c, nil, func(s *session) error {
		f, err := s.call(ctx, taskSpec{fn: "conf.pid", payload: s.encode(nil)})
		if err != nil {
			return err
		}
		var pid int64
		if err := s.result(f, "conf.pid", &pid); err != nil {
			return err
		}
		if int(pid) != s.hello.Pid {
			return failf("conf.pid returned %d but the hello said pid %d", pid, s.hello.Pid)
		}
		pgid, err := syscall.Getpgid(s.hello.Pid)
		if err != nil {
			return failf("the hello's pid %d names no process the kit can see: %v", s.hello.Pid, err)
		}
		if pgid != s.pid {
			return failf("the worker (pid %d) is in process group %d, not in the group %d the parent made for it (protocol.md, Starting a worker: the worker is the leader of a new process group)", s.hello.Pid, pgid, s.pid)
		}
		if s.hello.Pid != s.pid {
			return passf("the worker is pid %d, a descendant of the started process %d, in its group", s.hello.Pid, s.pid)
		}
		return nil
	})
}

// nofileLimits reads the soft and hard RLIMIT_NOFILE of pid from /proc.
func nofileLimits(pid int) (soft, hard string, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/limits")
	if err != nil {
		return "", "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "Max open files") {
			f := strings.Fields(strings.TrimPrefix(line, "Max open files"))
			if len(f) >= 2 {
				return f[0], f[1], nil
			}
		}
	}
	return "", "", errors.New("no \"Max open files\" line")
}

func checkRlimits(ctx context.Context, k *kit, c string) error {
	var cur syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &cur); err != nil {
		return skipf("getrlimit: %v", err)
	}
	if _, _, err := nofileLimits(os.Getpid()); err != nil {
		return skipf("cannot read /proc/PID/limits: %v", err)
	}
	soft := min(uint64(500), cur.Max)
	spec := fmt.Sprintf("%d:%d:%d", syscall.RLIMIT_NOFILE, soft, cur.Max)
	return k.with(ctx, c, func(o *opts) { o.rlimits = spec }, func(s *session) error {
		gotSoft, gotHard, err := nofileLimits(s.hello.Pid)
		if err != nil {
			return failf("reading /proc/%d/limits: %v", s.hello.Pid, err)
		}
		wantHard := strconv.FormatUint(cur.Max, 10)
		if cur.Max == ^uint64(0) {
			wantHard = "unlimited"
		}
		if gotSoft != strconv.FormatUint(soft, 10) || gotHard != wantHard {
			return failf("with PROCPOOL_RLIMITS=%s the worker's open-files limit is %s (soft) %s (hard) after its hello, want %d %s", spec, gotSoft, gotHard, soft, wantHard)
		}
		return echo(ctx, s, value{desc: "\"limited\"", v: "limited"}, false)
	})
}

func checkRlimitRefused(ctx context.Context, k *kit, c string) error {
	spec := fmt.Sprintf("%d:100:50", syscall.RLIMIT_NOFILE) // soft above hard: EINVAL
	o := k.defaults(c)
	o.rlimits = spec
	s, err := k.start(ctx, o)
	if err != nil {
		return err
	}
	defer s.close()
	f, err := s.next(ctx)
	switch {
	case err == nil && f.Kind == wire.KindHello:
		return failf("%s", s.withOutput(fmt.Sprintf("with PROCPOOL_RLIMITS=%s (a soft limit above the hard one, which setrlimit refuses) the worker sent a hello; it must exit with a message on its stderr before its hello", spec)))
	case err == nil:
		return failf("with PROCPOOL_RLIMITS=%s the worker wrote %s frame", spec, an(f.Kind))
	case err == errNoFrame:
		return failf("with PROCPOOL_RLIMITS=%s the worker neither said hello nor exited within %v", spec, s.tout)
	}
	if !s.waitExit(ctx) {
		return failf("with PROCPOOL_RLIMITS=%s the worker closed its result pipe without a hello but was still running %v later", spec, s.tout)
	}
	if s.exitCode() == 0 {
		return warnf("with PROCPOOL_RLIMITS=%s the worker exited without a hello, but with status 0", spec)
	}
	out := s.stderr()
	if out == "" {
		return warnf("with PROCPOOL_RLIMITS=%s the worker %s without a hello, but wrote nothing on its stderr to say why", spec, s.exitText())
	}
	return passf("%s, saying: %s", s.exitText(), firstLine(out))
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

func checkUnknownCodec(ctx context.Context, k *kit, c string) error {
	const name = "procpool-conformance-nosuch"
	o := k.defaults(c)
	o.codec = name
	s, err := k.start(ctx, o)
	if err != nil {
		return err
	}
	defer s.close()
	problems, unknown, err := s.readHello(ctx)
	if err != nil {
		var out *outcome
		if errors.As(err, &out) {
			out.detail = s.withOutput(fmt.Sprintf("with PROCPOOL_CODEC=%s: %s; a worker that does not know the codec sends a hello with codec \"\" (protocol.md, hello (1))", name, out.detail))
		}
		return err
	}
	if len(problems) > 0 {
		return failf("with PROCPOOL_CODEC=%s: hello: %s", name, strings.Join(problems, "; "))
	}
	if !unknown {
		return failf("with PROCPOOL_CODEC=%s the hello names codec %q, want \"\"", name, s.hello.Codec)
	}
	return nil
}

// malformed describes one malformed input and what the session needs.
type malformed struct {
	desc string
	opts func(*opts)
	// build returns the bytes to send, or a skip.
	build func(s *session) ([]byte, error)
}

var (
	malOverLimit = malformed{"a task frame whose length field is 65537, over PROCPOOL_MAX_FRAME=65536 (its whole body sent)", func(o *opts) { o.maxFrame = 65536 }, func(s *session) ([]byte, error) {
		body := wire.AppendTaskHeader(nil, false, "conf.echo")
		body = append(body, make([]byte, 65537-9-len(body))...)
		return wire.AppendFrame(nil, wire.KindTask, 1<<20, body), nil
	}}
	malBelow9 = malformed{"a frame whose length field is 5 (below 9)", nil, func(*session) ([]byte, error) {
		// Followed by zeros, so that a reader that takes a whole 13-byte
		// header, or the 5 bytes and then the next length, has its bytes
		// and meets only invalid lengths.
		return append([]byte{5, 0, 0, 0, byte(wire.KindTask), 1, 0, 0, 0}, make([]byte, 64)...), nil
	}}
	malUnknownKind = malformed{"a frame of kind 9", nil, func(*session) ([]byte, error) {
		return wire.AppendFrame(nil, wire.Kind(9), 1<<20, nil), nil
	}}
	malShortTask = malformed{"a task whose body is 2 bytes", nil, func(*session) ([]byte, error) {
		return wire.AppendFrame(nil, wire.KindTask, 1<<20, []byte{0, 9}), nil
	}}
	malReservedFlag = malformed{"a task with flags 0x10 (a reserved bit)", nil, func(s *session) ([]byte, error) {
		body := wire.AppendTaskHeader(nil, false, "conf.echo")
		body[0] = 0x10
		return wire.AppendFrame(nil, wire.KindTask, 1<<20, append(body, s.encode(1)...)), nil
	}}
	malEmptyName = malformed{"a task whose name_len is 0", nil, func(s *session) ([]byte, error) {
		return wire.AppendFrame(nil, wire.KindTask, 1<<20, append([]byte{0, 0, 0}, s.encode(1)...)), nil
	}}
	malNameOverrun = malformed{"a task whose name_len (200) runs past the end of its body", nil, func(*session) ([]byte, error) {
		return wire.AppendFrame(nil, wire.KindTask, 1<<20, append([]byte{0, 200, 0}, "conf.echo"...)), nil
	}}
	malDeadlineShort = malformed{"a task with flag 0x08 and only 10 of its 16 deadline bytes", nil, func(*session) ([]byte, error) {
		body := wire.AppendTaskHeader(nil, false, "conf.echo")
		body[0] = wire.FlagDeadline
		return wire.AppendFrame(nil, wire.KindTask, 1<<20, append(body, make([]byte, 10)...)), nil
	}}
	malFromWithoutChunk = malformed{"a task with flag 0x04 (from) but not 0x01 (chunk)", nil, func(s *session) ([]byte, error) {
		body := wire.AppendTaskHeader(nil, false, "conf.echo")
		body[0] = wire.FlagFrom
		body = binary.LittleEndian.AppendUint32(body, 0)
		return wire.AppendFrame(nil, wire.KindTask, 1<<20, append(body, s.encode(1)...)), nil
	}}
	malShmRefSize = malformed{"a shared task (flag 0x02) whose reference is 15 bytes", nil, func(s *session) ([]byte, error) {
		if s.shm == nil {
			return nil, skipf("shared memory not offered (Config.NoSharedMemory)")
		}
		body := wire.AppendTaskHeader(nil, false, "conf.echo")
		body[0] = wire.FlagShared
		return wire.AppendFrame(nil, wire.KindTask, 1<<20, append(body, make([]byte, 15)...)), nil
	}}
	malShmRefOutside = malformed{"a shared task whose reference [size-8, +16) ends past the segment", nil, func(s *session) ([]byte, error) {
		if s.shm == nil {
			return nil, skipf("shared memory not offered (Config.NoSharedMemory)")
		}
		body := wire.AppendTaskHeader(nil, false, "conf.echo")
		body[0] = wire.FlagShared
		return wire.AppendFrame(nil, wire.KindTask, 1<<20, wire.AppendSharedRef(body, uint64(len(s.shm)-8), 16)), nil
	}}
)

// malformedCheck returns a check that sends m after one answered task and
// expects the worker to answer nothing more and exit with a non-zero
// status (protocol.md, Session: "A worker that receives a frame it cannot
// parse answers nothing more ... and exits with a non-zero status").
func malformedCheck(m malformed) func(context.Context, *kit, string) error {
	return func(ctx context.Context, k *kit, c string) error {
		return k.with(ctx, c, m.opts, func(s *session) error {
			if err := echo(ctx, s, value{desc: "\"ready\"", v: "ready"}, false); err != nil {
				return err
			}
			bad, err := m.build(s)
			if err != nil {
				return err
			}
			if err := s.sendRaw(bad); err != nil && !strings.Contains(err.Error(), "closed its task pipe") {
				return failf("sending %s: %v", m.desc, err)
			}
			return expectProtocolExit(ctx, s, m.desc)
		})
	}
}

// expectProtocolExit checks that the worker answers nothing after bad
// input and exits with a non-zero status.
func expectProtocolExit(ctx context.Context, s *session, desc string) error {
	const rule = "protocol.md, Session: a worker that receives a frame it cannot parse answers nothing more and exits with a non-zero status"
	f, err := s.next(ctx)
	switch {
	case err == nil:
		return failf("after %s the worker wrote %s frame (id %d) (%s)", desc, an(f.Kind), f.ID, rule)
	case err == errNoFrame:
		return failf("after %s the worker was still running %v later, its result pipe open (%s)", desc, s.tout, rule)
	case err != io.EOF && err != io.ErrUnexpectedEOF && ctx.Err() == nil:
		return failf("after %s: %s", desc, s.describe(err, "the worker's exit"))
	}
	if !s.waitExit(ctx) {
		return failf("after %s the worker closed its result pipe but was still running %v later (%s)", desc, s.tout, rule)
	}
	if s.exitCode() == 0 {
		return failf("after %s the worker exited with status 0 (%s)", desc, rule)
	}
	return passf("%s", s.exitText())
}

func checkWrongDirection(ctx context.Context, k *kit, c string) error {
	return k.with(ctx, c, nil, func(s *session) error {
		if err := echo(ctx, s, value{desc: "\"ready\"", v: "ready"}, false); err != nil {
			return err
		}
		// A stop for the next task, on fd 3 where it does not belong, then
		// that task.
		next := s.nextID
		buf := wire.AppendFrame(nil, wire.KindStop, next, []byte{wire.StopCancel})
		id, fr := s.frame(taskSpec{fn: "conf.echo", payload: s.encode("after")})
		buf = append(buf, fr...)
		if err := s.sendRaw(buf); err != nil && !strings.Contains(err.Error(), "closed its task pipe") {
			return failf("%v", err)
		}
		f, err := s.next(ctx)
		switch {
		case err == errNoFrame:
			return failf("after a stop frame on fd 3 followed by a task, the worker neither answered the task nor exited within %v", s.tout)
		case err == io.EOF || err == io.ErrUnexpectedEOF:
			if !s.waitExit(ctx) {
				return failf("after a stop frame on fd 3 the worker closed its result pipe but was still running %v later", s.tout)
			}
			if s.exitCode() == 0 {
				return warnf("after a stop frame on fd 3 the worker exited with status 0; the Go worker exits with status 2")
			}
			return passf("%s", s.exitText())
		case err != nil:
			return failf("%s", s.describe(err, "the worker's exit"))
		}
		if f.ID == id && f.Kind == wire.KindSkipped {
			return failf("the worker took the stop frame on fd 3 for a stop and skipped task %d; a stop comes only on the control pipe, and a kind in the wrong direction is a protocol error (protocol.md, Kinds)", id)
		}
		if f.ID == id && f.Kind == wire.KindResult {
			return warnf("the worker ignored a stop frame on fd 3 and went on (answered task %d); protocol.md (Kinds) makes a kind in the wrong direction a protocol error, and the Go worker exits with status 2", id)
		}
		return failf("after a stop frame on fd 3 the worker wrote %s frame for id %d", an(f.Kind), f.ID)
	})
}

func checkLimitResult(ctx context.Context, k *kit, c string) error {
	if k.cfg.NoSharedMemory {
		return skipf("needs shared memory, not offered (Config.NoSharedMemory)")
	}
	return k.with(ctx, c, func(o *opts) { o.maxFrame = 65536 }, func(s *session) error {
		for _, tc := range []struct {
			desc    string
			chunk   bool
			payload []byte
		}{
			{"conf.echo of a 100000-character text passed through shared memory", false, s.encode(strings.Repeat("y", 100000))},
			{"a chunk of conf.echo over two 40000-character texts passed through shared memory", true, s.encode([]any{strings.Repeat("a", 40000), strings.Repeat("b", 40000)})},
		} {
			f, err := s.call(ctx, taskSpec{fn: "conf.echo", chunk: tc.chunk, payload: tc.payload, shared: true})
			if err != nil {
				return err
			}
			if f.Kind != wire.KindError {
				return failf("%s, with PROCPOOL_MAX_FRAME=65536, was answered with %s frame of %d bytes; a result that would not fit is answered with an error (code encode)", tc.desc, an(f.Kind), len(f.Body))
			}
			if err := checkErrorBody(f.Body, "encode"); err != nil {
				return err
			}
		}
		return echo(ctx, s, value{desc: "\"after\"", v: "after"}, false)
	})
}

func checkLimitError(ctx context.Context, k *kit, c string) error {
	if k.cfg.NoSharedMemory {
		return skipf("needs shared memory, not offered (Config.NoSharedMemory)")
	}
	return k.with(ctx, c, func(o *opts) { o.maxFrame = 65536 }, func(s *session) error {
		msg := strings.Repeat("ü", 50000) // 100000 bytes of UTF-8
		f, err := s.call(ctx, taskSpec{fn: "conf.fail", payload: s.encode(msg), shared: true})
		if err != nil {
			return err
		}
		if f.Kind != wire.KindError {
			return failf("conf.fail of a 100000-byte message was answered with %s frame, want an error", an(f.Kind))
		}
		if err := checkErrorBody(f.Body, ""); err != nil {
			return err
		}
		if err := echo(ctx, s, value{desc: "\"after\"", v: "after"}, false); err != nil {
			return err
		}
		eb, _ := wire.ParseError(f.Body)
		return passf("the error's message was cut to %d bytes", len(eb.Message))
	})
}

// journalOn skips a check for a worker that was offered no journal or does
// not claim it.
func (k *kit) journalOn() error {
	switch {
	case k.cfg.NoJournal:
		return skipf("journal not offered (Config.NoJournal)")
	case !k.claimsJournal:
		return skipf("the worker does not claim the journal (optional): its hello does not say \"journal\":true")
	}
	return nil
}

func (k *kit) controlOn() error {
	switch {
	case k.cfg.NoControl:
		return skipf("control pipe not offered (Config.NoControl)")
	case !k.claimsControl:
		return skipf("the worker does not claim the control pipe (optional): its hello does not say \"control\":true")
	}
	return nil
}

func checkJournalRunning(ctx context.Context, k *kit, c string) error {
	if err := k.journalOn(); err != nil {
		return err
	}
	return k.with(ctx, c, nil, func(s *session) error {
		f, err := s.call(ctx, taskSpec{fn: "conf.echo", chunk: true, payload: s.encode([]any{1, 2, 3})})
		if err != nil {
			return err
		}
		if err := expectItems(s, f, "a chunk of conf.echo", []any{1, 2, 3}); err != nil {
			return err
		}
		idle := func(v journalView) bool { return v.running == 0 && v.answers == 0 }
		if !s.pollJournal(ctx, idle) {
			v := s.readJournal()
			return failf("once its only task was answered and no input was waiting, the journal said running=%d answers=%d for %v; want 0 and 0 (protocol.md, Journal, rules 2 and 3: store 0 in running with the answer; write the answers out before blocking on fd 3)", v.running, v.answers, s.tout)
		}
		ids, err := s.send(taskSpec{fn: "conf.sleep", payload: s.encode(600000)})
		if err != nil {
			return failf("%v", err)
		}
		if _, err := s.begun(ctx, ids[0]); err != nil {
			return err
		}
		if v := s.readJournal(); v.items != 0 || v.errors != 0 || v.finished != 0 {
			return failf("while task %d (not a chunk) ran, the journal's item fields were items=%#x errors=%d finished=%d, left from the chunk before; rule 1 of Journal stores 0 in them before running", ids[0], v.items, v.errors, v.finished)
		}
		return nil
	})
}

func checkJournalDeath(ctx context.Context, k *kit, c string) error {
	if err := k.journalOn(); err != nil {
		return err
	}
	return k.with(ctx, c, nil, func(s *session) error {
		ids, err := s.send(
			taskSpec{fn: "conf.echo", payload: s.encode("a")},
			taskSpec{fn: "conf.fail", payload: s.encode("b")},
			taskSpec{fn: "conf.exit", payload: s.encode(3)},
		)
		if err != nil {
			return failf("%v", err)
		}
		got := map[uint64]wire.Frame{}
		for {
			f, err := s.next(ctx)
			if err == errNoFrame {
				return failf("conf.exit(3) as the third of three tasks: the worker was still running %v later", s.tout)
			}
			if err != nil {
				break
			}
			if len(s.pending) == 0 {
				return failf("the worker wrote %s frame for id %d after answering every task it could have", an(f.Kind), f.ID)
			}
			if err := s.checkAnswerFrame(f, s.pending[0]); err != nil {
				return err
			}
			s.pending = s.pending[1:]
			got[f.ID] = f
		}
		if !s.waitExit(ctx) {
			return failf("the worker closed its result pipe after conf.exit(3) but was still running %v later", s.tout)
		}
		if v := s.readJournal(); v.running != ids[2] {
			return failf("the worker died in task %d (conf.exit), but the journal's running field says %d (protocol.md, Journal, rule 1: the task's id is stored in running before its code runs)", ids[2], v.running)
		}
		area, err := s.journalAnswers()
		if err != nil {
			return failf("%v", err)
		}
		r := wire.NewReader(bytes.NewReader(area), 0, s.max)
		for {
			f, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				return failf("the journal's answer area (%d bytes) does not hold whole frames: %v (protocol.md, Journal)", len(area), err)
			}
			switch f.Kind {
			case wire.KindResult, wire.KindError, wire.KindSkipped:
			default:
				return failf("the journal's answer area holds %s frame; it holds only answers", an(f.Kind))
			}
			if f.ID == ids[2] {
				return failf("the journal's answer area holds an answer (%s) for the task that killed the worker", f.Kind)
			}
			if f.ID != ids[0] && f.ID != ids[1] {
				return failf("the journal's answer area holds %s frame for task %d, which the kit never sent", an(f.Kind), f.ID)
			}
			if _, dup := got[f.ID]; !dup {
				f.Body = bytes.Clone(f.Body)
				got[f.ID] = f
			}
		}
		for i, id := range ids[:2] {
			f, ok := got[id]
			if !ok {
				return failf("the answer to task %d, produced before the worker died in task %d, is neither in the pipe nor in the journal (protocol.md, Journal, rule 2)", id, ids[2])
			}
			if i == 0 {
				var v string
				if err := s.result(f, "conf.echo(\"a\")", &v); err != nil || v != "a" {
					return failf("the answer to task %d, conf.echo(\"a\"), recovered as %s", id, f.Kind)
				}
			} else if f.Kind != wire.KindError {
				return failf("the answer to task %d, conf.fail(\"b\"), recovered as %s frame", id, an(f.Kind))
			}
		}
		if len(area) > 0 {
			return passf("%d bytes of answers were in the journal only", len(area))
		}
		return nil
	})
}

// probeItems finds out, once, whether the worker records chunk items in
// its journal: it runs conf.sleep over [1, 2, 500] and watches the items
// field while the last item sleeps. It reports an error for a worker that
// records them wrongly.
func (k *kit) probeItems(ctx context.Context) (recorded bool, detail string, err error) {
	if k.itemsProbed {
		return k.recordsItems, k.itemsDetail, k.itemsErr
	}
	defer func() {
		k.itemsProbed, k.recordsItems, k.itemsDetail, k.itemsErr = true, recorded, detail, err
	}()
	if k.journalOn() != nil {
		return false, "the worker keeps no journal", nil
	}
	err = k.with(ctx, k.primary, nil, func(s *session) error {
		ids, err := s.send(taskSpec{fn: "conf.sleep", chunk: true, payload: s.encode([]any{1, 2, 500})})
		if err != nil {
			return failf("%v", err)
		}
		if _, err := s.begun(ctx, ids[0]); err != nil {
			return err
		}
		seen := false
		var list []byte
		listed := func(v journalView) bool {
			return v.running == ids[0] && v.items>>63 == 1 && (v.items>>32)&(1<<30-1) == 2
		}
		for !seen && s.pollJournal(ctx, listed) {
			v := s.readJournal()
			n := int(v.items & (1<<32 - 1))
			if wire.JournalListAt+n > len(s.journal) {
				return failf("the journal's items field says %d bytes of list, beyond the list area", n)
			}
			list = bytes.Clone(s.journal[wire.JournalListAt : wire.JournalListAt+n])
			seen = s.readJournal().items == v.items // else read again
		}
		f, err := s.answer(ctx)
		if err != nil {
			return err
		}
		if err := expectItems(s, f, "a chunk of conf.sleep over [1, 2, 500]", []any{1, 2, 500}); err != nil {
			return err
		}
		if !seen {
			if s.readJournal().items>>63 == 1 {
				recorded = true
				detail = "the worker records chunk items (the items field has bit 63 set), but the kit did not see the list between items 2 and 3"
				return nil
			}
			detail = "the worker does not record chunk items in its journal (optional)"
			return nil
		}
		recorded = true
		lc, ok := s.c.(codec.ListCodec)
		if !ok {
			detail = "the worker records chunk items; the kit cannot decode the list area with codec " + s.c.Name()
			return nil
		}
		whole := append(lc.AppendListHead(nil, 2), list...)
		whole = lc.AppendListTail(whole)
		var items []any
		if err := s.c.Unmarshal(whole, &items); err != nil {
			return failf("with items [1, 2] finished, the journal's list area (% x) does not decode as their results once given a list head and tail: %v (protocol.md, Journal, rule 4)", clip(list), err)
		}
		want, _ := roundTrip(s.c, []any{1, 2})
		if !same(any(items), want) {
			return failf("with items [1, 2] finished, the journal's list area holds %s, want %s (protocol.md, Journal, rule 4)", show(items), show(want))
		}
		detail = "the worker records chunk items; the list area held [1, 2] while item 3 ran"
		return nil
	})
	return recorded, detail, err
}

func checkJournalItems(ctx context.Context, k *kit, c string) error {
	if err := k.journalOn(); err != nil {
		return err
	}
	recorded, detail, err := k.probeItems(ctx)
	if err != nil {
		return err
	}
	if !recorded {
		return skipf("%s", detail)
	}
	return passf("%s", detail)
}

func checkFrom(ctx context.Context, k *kit, c string) error {
	recorded, _, err := k.probeItems(ctx)
	if err != nil && isSetup(err) {
		return err
	}
	err = k.with(ctx, c, nil, func(s *session) error {
		f, err := s.call(ctx, taskSpec{fn: "conf.echo", chunk: true, from: 2, payload: s.encode([]any{10, 20, 30, 40})})
		if err != nil {
			return err
		}
		if err := expectItems(s, f, "a chunk of conf.echo over [10, 20, 30, 40] from 2", []any{30, 40}); err != nil {
			return err
		}
		msgs := []string{"a", "b", "c", "d"}
		f, err = s.call(ctx, taskSpec{fn: "conf.fail", chunk: true, from: 1, payload: s.encode(msgs)})
		if err != nil {
			return err
		}
		if err := expectFailedItems(s, f, "a chunk of conf.fail over [a, b, c, d] from 1", msgs[1:]); err != nil {
			return err
		}
		f, err = s.call(ctx, taskSpec{fn: "conf.echo", chunk: true, from: 4, payload: s.encode([]any{1, 2})})
		if err != nil {
			return err
		}
		if f.Kind != wire.KindError {
			return failf("a chunk of 2 items from 4 (past the end) was answered with %s frame, want an error (code decode)", an(f.Kind))
		}
		if err := checkErrorBody(f.Body, "decode"); err != nil {
			return err
		}
		return echo(ctx, s, value{desc: "\"after\"", v: "after"}, false)
	})
	if !recorded && isStatus(err, Fail) {
		var o *outcome
		errors.As(err, &o)
		return warnf("%s\n(only a warning: the parent sends flag 0x04 only to workers that record chunk items in a journal, and this one does not)", o.detail)
	}
	return err
}

// stopFrame is a stop for task id with reason why.
func stopFrame(id uint64, why byte) []byte {
	return wire.AppendFrame(nil, wire.KindStop, id, []byte{why})
}

func checkStopRunning(ctx context.Context, k *kit, c string) error {
	if err := k.controlOn(); err != nil {
		return err
	}
	const grace = 2 * time.Second
	return k.with(ctx, c, func(o *opts) { o.grace = grace }, func(s *session) error {
		if err := echo(ctx, s, value{desc: "\"ready\"", v: "ready"}, false); err != nil {
			return err
		}
		ids, err := s.send(taskSpec{fn: "conf.sleep", payload: s.encode(600000)})
		if err != nil {
			return failf("%v", err)
		}
		known, err := s.begun(ctx, ids[0])
		if err != nil {
			return err
		}
		if err := s.writeControl(stopFrame(ids[0], wire.StopCancel)); err != nil {
			return failf("%v", err)
		}
		s.tout += grace
		f, err := s.next(ctx)
		s.tout -= grace
		switch {
		case err == errNoFrame:
			return failf("after a stop for its running task %d (conf.sleep(600000)) with PROCPOOL_KILL_GRACE=%v, the worker neither answered it nor exited within the grace and %v more (protocol.md, stop (8))", ids[0], grace, s.tout)
		case err == io.EOF:
			if !s.waitExit(ctx) {
				return failf("after a stop for its running task the worker closed its result pipe but was still running %v later", s.tout)
			}
			return passf("the task did not return within the grace: the worker ended itself without answering it (%s)", s.exitText())
		case err != nil:
			return failf("%s", s.describe(err, "the answer to the stopped task"))
		}
		if err := s.checkAnswerFrame(f, ids[0]); err != nil {
			return err
		}
		s.pending = s.pending[1:]
		if f.Kind == wire.KindSkipped {
			if known {
				return failf("the stopped task %d was answered with skipped although the journal said it had begun; a running task is stopped and answered as usual, or the worker ends itself (protocol.md, stop (8))", ids[0])
			}
			return passf("skipped: the worker had not begun it (without a journal the kit cannot tell)")
		}
		how := "with a result"
		if f.Kind == wire.KindError {
			how = "with an error " + errorText(f.Body)
		}
		if err := echo(ctx, s, value{desc: "\"after the stop\"", v: "after the stop"}, false); err != nil {
			return err
		}
		return passf("the stopped task returned within the grace, answered %s, and the worker went on", how)
	})
}

func checkStopGrace0(ctx context.Context, k *kit, c string) error {
	if err := k.controlOn(); err != nil {
		return err
	}
	return k.with(ctx, c, func(o *opts) { o.grace = 0 }, func(s *session) error {
		if err := echo(ctx, s, value{desc: "\"ready\"", v: "ready"}, false); err != nil {
			return err
		}
		ids, err := s.send(taskSpec{fn: "conf.sleep", payload: s.encode(600000)})
		if err != nil {
			return failf("%v", err)
		}
		known, err := s.begun(ctx, ids[0])
		if err != nil {
			return err
		}
		if err := s.writeControl(stopFrame(ids[0], wire.StopDeadline)); err != nil {
			return failf("%v", err)
		}
		f, err := s.next(ctx)
		switch {
		case err == errNoFrame:
			return failf("after a stop for its running task %d with PROCPOOL_KILL_GRACE=0, the worker was still running %v later (protocol.md, stop (8): with a grace of 0 it ends itself at once)", ids[0], s.tout)
		case err == io.EOF:
			if !s.waitExit(ctx) {
				return failf("after a stop with a grace of 0 the worker closed its result pipe but was still running %v later", s.tout)
			}
			return passf("%s", s.exitText())
		case err != nil:
			return failf("%s", s.describe(err, "the worker's exit"))
		}
		if err := s.checkAnswerFrame(f, ids[0]); err != nil {
			return err
		}
		if f.Kind == wire.KindSkipped && !known {
			return passf("skipped: the worker had not begun it (without a journal the kit cannot tell)")
		}
		return failf("after a stop for its running task %d with PROCPOOL_KILL_GRACE=0 the worker answered it with %s frame; with a grace of 0 it ends itself at once, without answering (protocol.md, stop (8))", ids[0], an(f.Kind))
	})
}

func checkStopIgnored(ctx context.Context, k *kit, c string) error {
	if err := k.controlOn(); err != nil {
		return err
	}
	return k.with(ctx, c, nil, func(s *session) error {
		if err := echo(ctx, s, value{desc: "\"answered\"", v: "answered"}, false); err != nil {
			return err
		}
		buf := stopFrame(1, wire.StopCancel)                                            // answered
		buf = append(buf, wire.AppendFrame(nil, wire.KindStop, 1, nil)...)              // answered, empty body
		buf = append(buf, stopFrame(1<<40+5, wire.StopMemory)...)                       // never sent
		buf = append(buf, wire.AppendFrame(nil, wire.KindStop, 1<<40+6, []byte{77})...) // unknown reason
		if err := s.writeControl(buf); err != nil {
			return failf("%v", err)
		}
		for i := 0; i < 3; i++ {
			if err := echo(ctx, s, value{desc: "\"after stale stops\"", v: "after stale stops"}, false); err != nil {
				return err
			}
		}
		return nil
	})
}

func checkControlEOF(ctx context.Context, k *kit, c string) error {
	if err := k.controlOn(); err != nil {
		return err
	}
	return k.with(ctx, c, nil, func(s *session) error {
		ids, err := s.send(taskSpec{fn: "conf.sleep", payload: s.encode(600000)})
		if err != nil {
			return failf("%v", err)
		}
		if _, err := s.begun(ctx, ids[0]); err != nil {
			return err
		}
		s.ctl.Close()
		if !s.waitExit(ctx) {
			return failf("the control pipe ended (the parent is gone) while task %d ran, and the worker was still running %v later (protocol.md, Control pipe: on end of file ... exit, whatever its task is doing)", ids[0], s.tout)
		}
		return passf("%s", s.exitText())
	})
}

func checkNoJournal(ctx context.Context, k *kit, c string) error {
	return k.with(ctx, c, func(o *opts) { o.journal, o.control = false, false }, func(s *session) error {
		ids, err := s.send(
			taskSpec{fn: "conf.echo", payload: s.encode("first")},
			taskSpec{fn: "conf.sleep", payload: s.encode(600000)},
		)
		if err != nil {
			return failf("%v", err)
		}
		f, err := s.answer(ctx)
		if err != nil {
			var o *outcome
			if errors.As(err, &o) && strings.Contains(o.detail, "no frame within") {
				return failf("without a journal, the answer to task %d did not come while task %d (conf.sleep(600000)) ran: %s (protocol.md, Session: without a journal the worker writes each answer to fd 4 before it begins its next task)", ids[0], ids[1], o.detail)
			}
			return err
		}
		var got string
		if err := s.result(f, "conf.echo(\"first\")", &got); err != nil {
			return err
		}
		if got != "first" {
			return failf("conf.echo(\"first\") returned %q", got)
		}
		return nil
	})
}

func checkSIGTERM(ctx context.Context, k *kit, c string) error {
	return k.with(ctx, c, nil, func(s *session) error {
		if err := echo(ctx, s, value{desc: "\"ready\"", v: "ready"}, false); err != nil {
			return err
		}
		if err := supervise.KillGroup(s.pid, syscall.SIGTERM); err != nil {
			return failf("kill: %v", err)
		}
		if !s.waitExit(ctx) {
			return warnf("an idle worker was still running %v after SIGTERM to its group; the parent would SIGKILL it (protocol.md, Signals)", s.tout)
		}
		return passf("%s", s.exitText())
	})
}

func checkSIGINT(ctx context.Context, k *kit, c string) error {
	return k.with(ctx, c, nil, func(s *session) error {
		if err := echo(ctx, s, value{desc: "\"ready\"", v: "ready"}, false); err != nil {
			return err
		}
		if err := s.signalDelivered(ctx, syscall.SIGINT); err != nil {
			return failf("kill: %v", err)
		}
		if err := echo(ctx, s, value{desc: "\"after SIGINT\"", v: "after SIGINT"}, false); err != nil {
			var o *outcome
			if !errors.As(err, &o) {
				return err
			}
			return warnf("after SIGINT: %s; a worker should ignore SIGINT (protocol.md, Signals)", o.detail)
		}
		return nil
	})
}

func checkSIGWINCH(ctx context.Context, k *kit, c string) error {
	return k.with(ctx, c, nil, func(s *session) error {
		if err := echo(ctx, s, value{desc: "\"ready\"", v: "ready"}, false); err != nil {
			return err
		}
		if err := s.signalDelivered(ctx, syscall.SIGWINCH); err != nil {
			return failf("kill: %v", err)
		}
		if err := echo(ctx, s, value{desc: "\"after SIGWINCH\"", v: "after SIGWINCH"}, false); err != nil {
			var o *outcome
			if !errors.As(err, &o) {
				return err
			}
			return warnf("after SIGWINCH (the parent-death signal) with the parent alive: %s; SIGWINCH means the parent's death only if getppid() has changed (protocol.md, Signals)", o.detail)
		}
		return nil
	})
}
