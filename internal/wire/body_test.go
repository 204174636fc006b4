package wire

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestTaskRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		chunk   bool
		fn      string
		payload []byte
	}{
		{false, "square", []byte{0x07}},
		{true, "upper", []byte{0x82, 0x61, 'a', 0x61, 'b'}},
		{false, "f", nil},
		{true, strings.Repeat("x", MaxFuncName), []byte("p")},
	} {
		body := append(AppendTaskHeader(nil, tc.chunk, tc.fn), tc.payload...)
		chunk, fn, payload, err := ParseTask(body)
		if err != nil || chunk != tc.chunk || string(fn) != tc.fn || !bytes.Equal(payload, tc.payload) {
			t.Fatalf("ParseTask = %v %q %x %v, want %v %q %x", chunk, fn, payload, err, tc.chunk, tc.fn, tc.payload)
		}
		if cap(fn) != len(fn) {
			t.Fatalf("fn cap %d != len %d", cap(fn), len(fn))
		}
	}
}

func TestParseTaskMalformed(t *testing.T) {
	for _, body := range [][]byte{
		nil,
		{0},
		{0, 1},
		{0, 0, 0},              // empty name
		{0, 2, 0, 'a'},         // name overruns
		{0, 0xff, 0xff, 'a'},   // name length lies
		{2, 1, 0, 'a'},         // reserved flag bit
		{0x81, 1, 0, 'a', 'b'}, // reserved flag bit with chunk
	} {
		if _, _, _, err := ParseTask(body); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseTask(%x) err = %v, want ErrMalformed", body, err)
		}
	}
}

func TestAppendTaskHeaderPanics(t *testing.T) {
	for _, fn := range []string{"", strings.Repeat("x", MaxFuncName+1)} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("AppendTaskHeader with a %d-byte name did not panic", len(fn))
				}
			}()
			AppendTaskHeader(nil, false, fn)
		}()
	}
}

func TestParseTaskNoAllocs(t *testing.T) {
	body := append(AppendTaskHeader(nil, true, "square"), 1, 2, 3)
	funcs := map[string]int{"square": 1}
	allocs := testing.AllocsPerRun(100, func() {
		_, fn, _, err := ParseTask(body)
		if err != nil || funcs[string(fn)] != 1 {
			t.Fatal("lookup failed")
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations, want 0", allocs)
	}
}

func TestChunkResultRoundTrip(t *testing.T) {
	many := make([]ItemError, 50)
	for i := range many {
		many[i] = ItemError{Index: i*3 + 1, Err: ErrorBody{Message: "bad <item> & \"quoted\"\n", Type: "T", Stack: "s", Panic: i%2 == 0, Code: "decode"}}
	}
	for _, errs := range [][]ItemError{
		nil,
		{{Index: 0, Err: ErrorBody{Message: "m", Type: "t"}}},
		{{Index: MaxItemIndex - 1, Err: ErrorBody{}}},
		many,
	} {
		for _, payload := range [][]byte{{}, {0x83, 1, 2, 3}} {
			body, err := AppendChunkResultHeader([]byte{}, errs)
			if err != nil {
				t.Fatal(err)
			}
			body = append(body, payload...)
			gotErrs, gotPayload, err := ParseChunkResult(body)
			if err != nil {
				t.Fatalf("%d errors: %v", len(errs), err)
			}
			if !reflect.DeepEqual(gotErrs, errs) || !bytes.Equal(gotPayload, payload) {
				t.Fatalf("round trip of %d errors: got %+v %x", len(errs), gotErrs, gotPayload)
			}
		}
	}
}

func TestChunkResultNoErrorsNoAllocs(t *testing.T) {
	body := []byte{0, 0, 0, 0, 0x82, 1, 2}
	allocs := testing.AllocsPerRun(100, func() {
		errs, payload, err := ParseChunkResult(body)
		if err != nil || errs != nil || len(payload) != 3 {
			t.Fatal("bad parse")
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations, want 0", allocs)
	}
}

func TestAppendChunkResultHeaderBadIndexes(t *testing.T) {
	tooBig := int64(MaxItemIndex) // wraps to a negative int on 32-bit platforms; still invalid
	for _, errs := range [][]ItemError{
		{{Index: -1}},
		{{Index: int(tooBig)}},
		{{Index: 2}, {Index: 2}},
		{{Index: 3}, {Index: 1}},
	} {
		dst := []byte("keep")
		out, err := AppendChunkResultHeader(dst, errs)
		if !errors.Is(err, ErrMalformed) || string(out) != "keep" {
			t.Errorf("%+v: out %q err %v, want dst unchanged and ErrMalformed", errs, out, err)
		}
	}
}

// entry encodes one item-error entry with arbitrary fields.
func entry(index, n uint32, js string) []byte {
	b := binary.LittleEndian.AppendUint32(nil, index)
	b = binary.LittleEndian.AppendUint32(b, n)
	return append(b, js...)
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func u32(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }

func TestParseChunkResultMalformed(t *testing.T) {
	ok := `{"message":"m","type":"t"}`
	for name, body := range map[string][]byte{
		"empty":               nil,
		"short count":         {1, 0, 0},
		"count lies":          u32(1),
		"huge count":          cat(u32(^uint32(0)), make([]byte, 64)),
		"count one too many":  cat(u32(2), entry(0, uint32(len(ok)), ok)),
		"json length lies":    cat(u32(1), entry(0, 1000, ok)),
		"json length max":     cat(u32(1), entry(0, ^uint32(0), ok)),
		"bad json":            cat(u32(1), entry(0, 3, "{x}")),
		"json null":           cat(u32(1), entry(0, 4, "null")),
		"json number":         cat(u32(1), entry(0, 1, "7")),
		"json wrong type":     cat(u32(1), entry(0, 15, `{"message":42}`+" ")),
		"index 2^31":          cat(u32(1), entry(1<<31, uint32(len(ok)), ok)),
		"index max":           cat(u32(1), entry(^uint32(0), uint32(len(ok)), ok)),
		"index repeated":      cat(u32(2), entry(1, uint32(len(ok)), ok), entry(1, uint32(len(ok)), ok)),
		"index decreasing":    cat(u32(2), entry(5, uint32(len(ok)), ok), entry(4, uint32(len(ok)), ok)),
		"second entry cut":    cat(u32(2), entry(0, uint32(len(ok)), ok), []byte{1, 0, 0, 0, 9, 0, 0}, make([]byte, 8)),
		"empty json in entry": cat(u32(1), entry(0, 0, "")),
	} {
		n := allocBytes(func() {
			if _, _, err := ParseChunkResult(body); !errors.Is(err, ErrMalformed) {
				t.Errorf("%s: err = %v, want ErrMalformed", name, err)
			}
		})
		if n > 16<<10 {
			t.Errorf("%s: allocated %d bytes", name, n)
		}
	}
}

func TestParseHelloAndError(t *testing.T) {
	h, err := ParseHello([]byte(`{"protocol":1,"pid":1234,"codec":"cbor","functions":["square","upper"],"extra":true}`))
	want := Hello{Protocol: 1, Pid: 1234, Codec: "cbor", Functions: []string{"square", "upper"}}
	if err != nil || !reflect.DeepEqual(h, want) {
		t.Fatalf("ParseHello = %+v, %v", h, err)
	}
	e, err := ParseError([]byte(` {"message":"no such function","type":"","code":"unknown_function"}`))
	if err != nil || e.Message != "no such function" || e.Code != "unknown_function" {
		t.Fatalf("ParseError = %+v, %v", e, err)
	}
	for _, body := range []string{"", "null", "[]", "1", "{", `{"protocol":"1"}`, `{"pid":1.5}`} {
		if _, err := ParseHello([]byte(body)); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseHello(%q) err = %v, want ErrMalformed", body, err)
		}
	}
	for _, body := range []string{"", "null", `"x"`, `{"panic":"yes"}`} {
		if _, err := ParseError([]byte(body)); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseError(%q) err = %v, want ErrMalformed", body, err)
		}
	}
}

func TestSharedTaskHeader(t *testing.T) {
	body := AppendTaskHeader(nil, true, "square")
	body[0] |= FlagShared
	body = AppendSharedRef(body, 4096, 1<<20)
	h, ref, err := ParseTaskHeader(body)
	flags, fn := h.Flags, h.Fn
	if err != nil || flags != FlagChunk|FlagShared || string(fn) != "square" {
		t.Fatalf("ParseTaskHeader: %#x %q %v", flags, fn, err)
	}
	off, n, err := ParseSharedRef(ref, 2<<20)
	if err != nil || off != 4096 || n != 1<<20 {
		t.Fatalf("ParseSharedRef: %d %d %v", off, n, err)
	}
	// A reference outside the segment, a short one, and ParseTask (which
	// knows no shared memory) all refuse.
	if _, _, err := ParseSharedRef(ref, 1<<20); !errors.Is(err, ErrMalformed) {
		t.Fatalf("reference past the segment: %v", err)
	}
	if _, _, err := ParseTaskHeader(body[:len(body)-1]); !errors.Is(err, ErrMalformed) {
		t.Fatalf("short reference: %v", err)
	}
	if _, _, _, err := ParseTask(body); !errors.Is(err, ErrMalformed) {
		t.Fatalf("ParseTask with FlagShared: %v", err)
	}
	big := AppendSharedRef(nil, 1<<63, 1<<63)
	if _, _, err := ParseSharedRef(big, 1<<20); !errors.Is(err, ErrMalformed) {
		t.Fatalf("overflowing reference: %v", err)
	}
}

func TestTaskHeaderExt(t *testing.T) {
	for _, tc := range []struct {
		chunk             bool
		from              int
		deadline, timeout int64
	}{
		{false, 0, 0, 0}, {true, 7, 0, 0}, {false, 0, 1_700_000_000_000_000_000, 0},
		{false, 0, 0, 250_000_000}, {true, 3, -5, 9}, {true, 0, 1, 1},
	} {
		body := append(AppendTaskHeaderExt(nil, tc.chunk, "fn", tc.from, tc.deadline, tc.timeout), 0xAA, 0xBB)
		h, payload, err := ParseTaskHeader(body)
		if err != nil || h.Chunk() != tc.chunk || string(h.Fn) != "fn" || h.From != tc.from || h.Deadline != tc.deadline || h.Timeout != tc.timeout || string(payload) != "\xaa\xbb" {
			t.Fatalf("%+v: %+v, %x, %v", tc, h, payload, err)
		}
		for cut := len(body) - 3; cut > 3+2; cut-- { // optional fields cut short
			if h2, _, err := ParseTaskHeader(body[:cut]); err == nil && (h2.From != tc.from || h2.Deadline != tc.deadline || h2.Timeout != tc.timeout) {
				t.Fatalf("%+v cut to %d: accepted %+v", tc, cut, h2)
			}
		}
	}
}

// The error body's identity fields and the hello's fingerprints survive a
// round trip, and bodies without them (older workers, other languages)
// still parse, with the fields empty.
func TestErrorIdentityAndFingerprintsRoundTrip(t *testing.T) {
	eb := ErrorBody{
		Message:   "open x: file does not exist",
		Type:      "*fmt.wrapError",
		Chain:     []string{"*fmt.wrapError", "*fs.PathError", "syscall.Errno"},
		Sentinels: []string{"io/fs.ErrNotExist"},
		Values:    []ErrorValue{{Type: "*example.com/app.TooBigError", Codec: "cbor", Data: []byte{0xa1, 0x61, 0x4e, 0x0c}}},
	}
	js, err := json.Marshal(eb)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(js, []byte(`"data":"oWFODA=="`)) {
		t.Errorf("value data is not standard base64 in %s", js)
	}
	got, err := ParseError(js)
	if err != nil || !reflect.DeepEqual(got, eb) {
		t.Fatalf("ParseError(%s) = %+v, %v", js, got, err)
	}
	old, err := ParseError([]byte(`{"message":"boom","type":"*errors.errorString"}`))
	if err != nil || old.Chain != nil || old.Sentinels != nil || old.Values != nil {
		t.Fatalf("a body without identity: %+v, %v", old, err)
	}
	if js, _ := json.Marshal(ErrorBody{Message: "m", Type: "t"}); string(js) != `{"message":"m","type":"t"}` {
		t.Errorf("an error without identity encodes as %s: the new keys must be omitted", js)
	}

	h := Hello{Protocol: 1, Pid: 1, Codec: "cbor", Functions: []string{"a"}, Fingerprints: map[string]string{"a": "0123456789abcdef"}}
	js, _ = json.Marshal(h)
	gotH, err := ParseHello(js)
	if err != nil || !reflect.DeepEqual(gotH, h) {
		t.Fatalf("ParseHello(%s) = %+v, %v", js, gotH, err)
	}
	if js, _ := json.Marshal(Hello{Protocol: 1}); bytes.Contains(js, []byte("fingerprints")) {
		t.Errorf("a hello without fingerprints encodes as %s", js)
	}
}
