//go:build unix

package conformance

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"github.com/procpool/procpool/codec"
	"github.com/procpool/procpool/internal/wire"
)

// contract lists the functions every worker under test serves.
var contract = []string{"conf.echo", "conf.fail", "conf.sleep", "conf.exit", "conf.len", "conf.pid"}

var hexFingerprint = regexp.MustCompile(`^[0-9a-f]{16}$`)

// checkHello checks a hello frame's id and body against docs/protocol.md,
// "hello (1)", for a worker started with PROCPOOL_CODEC=want. It returns
// every problem found, and the hello as far as it could be read.
func checkHello(f wire.Frame, want string) (problems []string, h wire.Hello) {
	if f.ID != 0 {
		problems = append(problems, fmt.Sprintf("the hello frame has id %d, want 0", f.ID))
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(f.Body, &m); err != nil || m == nil {
		return append(problems, fmt.Sprintf("the body is not a JSON object: %q", clip(f.Body))), h
	}
	field := func(name string) (json.RawMessage, bool) {
		v, ok := m[name]
		if !ok {
			problems = append(problems, "missing field "+name)
		}
		return v, ok
	}
	if v, ok := field("protocol"); ok {
		var n json.Number
		d := json.NewDecoder(bytes.NewReader(v))
		d.UseNumber()
		if err := d.Decode(&n); err != nil {
			problems = append(problems, fmt.Sprintf("field protocol is %s, want the number %d", v, wire.Version))
		} else if i, err := n.Int64(); err != nil || i != wire.Version {
			problems = append(problems, fmt.Sprintf("protocol is %s, want %d (the version docs/protocol.md describes)", n, wire.Version))
		} else {
			h.Protocol = int(i)
		}
	}
	if v, ok := field("pid"); ok {
		var n json.Number
		d := json.NewDecoder(bytes.NewReader(v))
		d.UseNumber()
		i, err := int64(0), d.Decode(&n)
		if err == nil {
			i, err = n.Int64()
		}
		if err != nil || i <= 0 {
			problems = append(problems, fmt.Sprintf("field pid is %s, want the worker's process id (a positive integer)", v))
		} else {
			h.Pid = int(i)
		}
	}
	if v, ok := field("codec"); ok {
		if err := json.Unmarshal(v, &h.Codec); err != nil {
			problems = append(problems, fmt.Sprintf("field codec is %s, want a string", v))
		} else if h.Codec != "" && h.Codec != want {
			problems = append(problems, fmt.Sprintf("codec is %q, want PROCPOOL_CODEC %q (or \"\" for a codec the worker does not know)", h.Codec, want))
		}
	}
	known := h.Codec != ""
	if v, ok := m["functions"]; ok || known {
		if !ok {
			problems = append(problems, "missing field functions")
		} else if err := json.Unmarshal(v, &h.Functions); err != nil {
			problems = append(problems, fmt.Sprintf("field functions is %s, want an array of strings", clip(v)))
		} else if known {
			var lacks []string
			for _, name := range contract {
				if !contains(h.Functions, name) {
					lacks = append(lacks, name)
				}
			}
			if len(lacks) > 0 {
				problems = append(problems, fmt.Sprintf("functions lacks %s (the conformance contract: the worker serves conf.echo, conf.fail, conf.sleep, conf.exit, conf.len and conf.pid); it lists %q", strings.Join(lacks, ", "), h.Functions))
			}
		}
	}
	for _, name := range []string{"journal", "control"} {
		if v, ok := m[name]; ok {
			var b bool
			if err := json.Unmarshal(v, &b); err != nil || string(bytes.TrimSpace(v)) == "null" {
				problems = append(problems, fmt.Sprintf("field %s is %s, want true or false", name, v))
			} else if name == "journal" {
				h.Journal = b
			} else {
				h.Control = b
			}
		}
	}
	if v, ok := m["fingerprints"]; ok && string(bytes.TrimSpace(v)) != "null" {
		var fp map[string]json.RawMessage
		if err := json.Unmarshal(v, &fp); err != nil {
			problems = append(problems, fmt.Sprintf("field fingerprints is %s, want an object", clip(v)))
		} else {
			h.Fingerprints = map[string]string{}
			for name, raw := range fp {
				var s string
				if err := json.Unmarshal(raw, &s); err != nil || !hexFingerprint.MatchString(s) {
					problems = append(problems, fmt.Sprintf("the fingerprint of %q is %s, want 16 lower-case hex digits", name, raw))
					continue
				}
				h.Fingerprints[name] = s
			}
		}
	}
	return problems, h
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// value is one argument of the echo checks.
type value struct {
	desc  string
	v     any
	bytes bool // a byte string: only for codecs that carry them (not json)
}

func echoValues() []value {
	return []value{
		{desc: "null", v: nil},
		{desc: "true", v: true},
		{desc: "false", v: false},
		{desc: "0", v: 0},
		{desc: "1", v: 1},
		{desc: "-1", v: -1},
		{desc: "23", v: 23},
		{desc: "24", v: 24},
		{desc: "-24", v: -24},
		{desc: "-25", v: -25},
		{desc: "255", v: 255},
		{desc: "256", v: 256},
		{desc: "65536", v: 65536},
		{desc: "2^32", v: int64(1) << 32},
		{desc: "-2^32-1", v: -(int64(1) << 32) - 1},
		{desc: "2^53-1", v: int64(1)<<53 - 1},
		{desc: "-(2^53-1)", v: -(int64(1)<<53 - 1)},
		{desc: "1.5", v: 1.5},
		{desc: "-0.25", v: -0.25},
		{desc: "pi", v: 3.141592653589793},
		{desc: "1e300", v: 1e300},
		{desc: "empty text", v: ""},
		{desc: "ASCII text", v: "hello"},
		{desc: "non-ASCII text", v: "héllo wörld ✓ 😀 中文"},
		{desc: "text with NUL", v: "a\x00b"},
		{desc: "text of 1000 characters", v: strings.Repeat("ab€", 333) + "z"},
		{desc: "empty list", v: []any{}},
		{desc: "nested list", v: []any{1, "two", []any{3.5, nil, true}, []any{}}},
		{desc: "empty map", v: map[string]any{}},
		{desc: "nested map", v: map[string]any{"a": 1, "b": []any{"x", 2.5}, "c": map[string]any{"d": nil, "é": false}}},
		{desc: "empty bytes", v: []byte{}, bytes: true},
		{desc: "bytes", v: []byte{0, 1, 2, 0x7f, 0x80, 0xff}, bytes: true},
		{desc: "1000 bytes", v: bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef}, 250), bytes: true},
	}
}

// carriesBytes reports whether codec c has byte strings of its own (JSON
// has not: a Go []byte becomes a base64 string).
func carriesBytes(c codec.Codec) bool { return c.Name() != "json" }

// roundTrip returns v as the kit's codec decodes its own encoding of it:
// what an echo must come back as.
func roundTrip(c codec.Codec, v any) (any, error) {
	b, err := c.Append(nil, v)
	if err != nil {
		return nil, err
	}
	var out any
	err = c.Unmarshal(b, &out)
	return out, err
}

// same reports whether two decoded values are equal, whatever width of
// integer or float the codec decoded them into (a MessagePack decoder
// gives the narrowest type that holds a number, and two encoders may pick
// different ones for the same value).
func same(a, b any) bool { return reflect.DeepEqual(normalize(a), normalize(b)) }

// normalize brings every integer to int64 (uint64 above its range), every
// float to float64 and every map to map[string]any where its keys are
// strings, recursively.
func normalize(v any) any {
	rv := reflect.ValueOf(v)
	if !rv.IsValid() {
		return nil
	}
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return rv.Int()
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		if u := rv.Uint(); u <= 1<<63-1 {
			return int64(u)
		}
		return rv.Uint()
	case reflect.Float32, reflect.Float64:
		return rv.Float()
	case reflect.Slice:
		if rv.Type().Elem().Kind() == reflect.Uint8 {
			return rv.Bytes()
		}
		out := make([]any, rv.Len())
		for i := range out {
			out[i] = normalize(rv.Index(i).Interface())
		}
		return out
	case reflect.Map:
		strs := make(map[string]any, rv.Len())
		others := make(map[any]any, rv.Len())
		it := rv.MapRange()
		for it.Next() {
			k, val := normalize(it.Key().Interface()), normalize(it.Value().Interface())
			if ks, ok := k.(string); ok {
				strs[ks] = val
			}
			others[k] = val
		}
		if len(strs) == len(others) {
			return strs
		}
		return others
	}
	return v
}

// show renders a decoded value for a message, with its Go type, cut short.
func show(v any) string {
	s := fmt.Sprintf("%#v", v)
	if len(s) > 120 {
		s = s[:120] + "…"
	}
	return s
}

func u64(v uint64) string { return strconv.FormatUint(v, 10) }
