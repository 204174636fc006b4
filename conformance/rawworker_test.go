//go:build unix

package conformance_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/procpool/procpool/codec"
	"github.com/procpool/procpool/internal/wire"
)

// rawWorker is a worker written by hand from docs/protocol.md, with none of
// procpool's worker code: it speaks the frames with internal/wire, keeps
// no journal and reads no control pipe (the minimal worker the protocol
// allows), and, when flaws names them (comma-separated), breaks one rule
// each, so that the tests can show that the kit catches each break with
// the right check. It returns the exit status.
func rawWorker(flaws string) int {
	has := func(f string) bool { return strings.Contains(","+flaws+",", ","+f+",") }
	if !has("sigint-dies") {
		signal.Ignore(os.Interrupt)
	}
	fail := func(format string, args ...any) int {
		fmt.Fprintf(os.Stderr, "raw worker: "+format+"\n", args...)
		return 2
	}
	maxFrame := wire.DefaultMaxFrame
	if v := os.Getenv("PROCPOOL_MAX_FRAME"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return fail("bad PROCPOOL_MAX_FRAME %q", v)
		}
		maxFrame = n
	}
	if v := os.Getenv("PROCPOOL_RLIMITS"); v != "" && !has("ignore-rlimits") {
		for _, e := range strings.Split(v, ",") {
			var res int
			var l syscall.Rlimit
			if _, err := fmt.Sscanf(e, "%d:%d:%d", &res, &l.Cur, &l.Max); err != nil {
				return fail("bad PROCPOOL_RLIMITS entry %q", e)
			}
			if err := syscall.Setrlimit(res, &l); err != nil {
				return fail("setrlimit %s: %v", e, err)
			}
		}
	}
	results := os.NewFile(4, "results")
	write := func(b []byte) {
		if _, err := results.Write(b); err != nil {
			os.Exit(fail("writing results: %v", err))
		}
	}
	hello := map[string]any{"protocol": 1, "pid": os.Getpid(), "functions": []string{"conf.echo", "conf.fail", "conf.sleep", "conf.exit", "conf.len", "conf.pid"}}
	c, err := codec.ByName(os.Getenv("PROCPOOL_CODEC"))
	if err != nil {
		if !has("no-empty-codec") {
			hello["codec"] = ""
			b, _ := json.Marshal(hello)
			write(wire.AppendFrame(nil, wire.KindHello, 0, b))
		}
		return fail("%v", err)
	}
	hello["codec"] = c.Name()
	if has("hello-no-protocol") {
		delete(hello, "protocol")
	}
	if has("journal-lies") && os.Getenv("PROCPOOL_JOURNAL") != "" {
		hello["journal"] = true
	}
	if has("control-lies") && os.Getenv("PROCPOOL_CONTROL") != "" {
		hello["control"] = true
	}
	var shm []byte
	if v := os.Getenv("PROCPOOL_SHM"); v != "" {
		size, err := strconv.Atoi(v)
		if err != nil {
			return fail("bad PROCPOOL_SHM %q", v)
		}
		if shm, err = syscall.Mmap(3+2, 0, size, syscall.PROT_READ, syscall.MAP_SHARED); err != nil {
			return fail("mapping fd 5: %v", err)
		}
	}
	b, _ := json.Marshal(hello)
	write(wire.AppendFrame(nil, wire.KindHello, 0, b))

	w := &rawServer{c: c, max: maxFrame, has: has}
	r := wire.NewReader(os.NewFile(3, "tasks"), 0, maxFrame)
	var held []byte // an answer held back (flaws out-of-order, batch)
	for {
		f, err := r.Next()
		if err == io.EOF {
			write(held)
			switch {
			case has("no-exit-on-eof"):
				for {
					time.Sleep(time.Hour)
				}
			case has("exit-1-on-eof"):
				return 1
			}
			return 0
		}
		if err != nil {
			return fail("reading tasks: %v", err)
		}
		switch f.Kind {
		case wire.KindCancel:
			continue // best effort: this worker never skips
		case wire.KindTask, wire.KindInit:
		default:
			if has("ignore-wrong-kind") {
				continue
			}
			return fail("unexpected %s frame", f.Kind)
		}
		h, payload, err := wire.ParseTaskHeader(f.Body)
		if err == nil && h.Flags&wire.FlagShared != 0 {
			var off, n int
			if off, n, err = wire.ParseSharedRef(payload, len(shm)); err == nil {
				payload = shm[off : off+n]
			}
		}
		if err != nil {
			if has("answer-malformed") {
				write(w.errorFrame(f.ID, wire.ErrorBody{Message: err.Error(), Type: "malformed"}))
				continue
			}
			return fail("%v", err)
		}
		ans := w.run(f.Kind, f.ID, h, payload)
		switch {
		case has("out-of-order") && held == nil && r.Buffered() > 0:
			held = ans // answered after the next task's answer
		case has("batch") && held == nil:
			held = ans // written with the next answer
		default:
			write(append(ans, held...))
			held = nil
		}
	}
}

type rawServer struct {
	c   codec.Codec
	max int
	has func(string) bool
}

// errorFrame encodes an error frame, cutting the message to fit.
func (w *rawServer) errorFrame(id uint64, eb wire.ErrorBody) []byte {
	for {
		b, _ := json.Marshal(eb)
		f := wire.AppendFrame(nil, wire.KindError, id, b)
		if wire.Fits(wire.LengthOf(f, 0), w.max) || eb.Message == "" {
			return f
		}
		cut := len(eb.Message) * 3 / 4
		for cut > 0 && !utf8.RuneStart(eb.Message[cut]) {
			cut--
		}
		eb.Message = eb.Message[:cut]
	}
}

type codedError struct{ code, msg string }

func (e *codedError) Error() string { return e.msg }

func toInt(v any) int {
	switch v := v.(type) {
	case int64:
		return int(v)
	case float64:
		return int(v)
	}
	return -1
}

// call runs one of the contract's functions.
func (w *rawServer) call(fn string, arg any) (any, error) {
	switch fn {
	case "conf.echo":
		return arg, nil
	case "conf.fail":
		msg, _ := arg.(string)
		if w.has("fail-message") {
			msg = "ValueError: " + msg
		}
		return nil, errors.New(msg)
	case "conf.sleep":
		time.Sleep(time.Duration(toInt(arg)) * time.Millisecond)
		return arg, nil
	case "conf.exit":
		os.Exit(toInt(arg))
	case "conf.len":
		switch v := arg.(type) {
		case string:
			if w.has("len-utf16") {
				return len(utf16.Encode([]rune(v))), nil
			}
			return utf8.RuneCountInString(v), nil
		case []byte:
			return len(v), nil
		}
		return nil, fmt.Errorf("conf.len of a %T", arg)
	case "conf.pid":
		return os.Getpid(), nil
	}
	return nil, &codedError{"unknown_function", "no function " + strconv.Quote(fn)}
}

func (w *rawServer) fail(kind wire.Kind, id uint64, err error) []byte {
	eb := wire.ErrorBody{Message: err.Error(), Type: fmt.Sprintf("%T", err)}
	var ce *codedError
	if errors.As(err, &ce) {
		eb.Code = ce.code
	} else if kind == wire.KindInit {
		eb.Code = "init"
	}
	return w.errorFrame(id, eb)
}

// run answers one task or init.
func (w *rawServer) run(kind wire.Kind, id uint64, h wire.TaskHeader, payload []byte) []byte {
	fn := string(h.Fn)
	var body []byte
	if h.Chunk() {
		var list []any
		if err := w.c.Unmarshal(payload, &list); err != nil {
			return w.fail(kind, id, &codedError{"decode", err.Error()})
		}
		if h.From > len(list) {
			return w.fail(kind, id, &codedError{"decode", "from past the end"})
		}
		var errs []wire.ItemError
		out := make([]any, 0, len(list)-h.From)
		for i, arg := range list[h.From:] {
			v, err := w.call(fn, arg)
			var ce *codedError
			if errors.As(err, &ce) && ce.code == "unknown_function" {
				return w.fail(kind, id, err)
			}
			if err != nil {
				errs = append(errs, wire.ItemError{Index: i, Err: wire.ErrorBody{Message: err.Error(), Type: "error"}})
			}
			out = append(out, v)
		}
		body, _ = wire.AppendChunkResultHeader(nil, errs)
		var err error
		if body, err = w.c.Append(body, out); err != nil {
			return w.fail(kind, id, &codedError{"encode", err.Error()})
		}
	} else {
		var arg any
		if err := w.c.Unmarshal(payload, &arg); err != nil {
			return w.fail(kind, id, &codedError{"decode", err.Error()})
		}
		v, err := w.call(fn, arg)
		if err != nil {
			return w.fail(kind, id, err)
		}
		if body, err = w.c.Append(nil, v); err != nil {
			return w.fail(kind, id, &codedError{"encode", err.Error()})
		}
	}
	f := wire.AppendFrame(nil, wire.KindResult, id, body)
	if !wire.Fits(wire.LengthOf(f, 0), w.max) && !w.has("oversize") {
		return w.fail(kind, id, &codedError{"encode", "the result does not fit the frame limit"})
	}
	return f
}
