package wire

import (
	"bytes"
	"errors"
	"testing"
)

// taskFrame builds a complete task frame as the parent does.
func taskFrame(id uint64, chunk bool, fn string, from int, deadline, timeout int64, payload []byte) []byte {
	frame, start := BeginFrame(nil, KindTask, id)
	frame = AppendTaskHeaderExt(frame, chunk, fn, from, deadline, timeout)
	frame = append(frame, payload...)
	if err := EndFrame(frame, start); err != nil {
		panic(err)
	}
	return frame
}

// parseFrame reads one frame back, as a worker's reader would.
func parseFrame(t *testing.T, b []byte) (Frame, TaskHeader, []byte) {
	t.Helper()
	f, err := NewReader(bytes.NewReader(b), 0, 0).Next()
	if err != nil {
		t.Fatalf("reading the frame back: %v", err)
	}
	h, payload, err := ParseTaskHeader(f.Body)
	if err != nil {
		t.Fatalf("ParseTaskHeader: %v", err)
	}
	return f, h, payload
}

func TestAppendSharedTask(t *testing.T) {
	payload := bytes.Repeat([]byte{0xab}, 300)
	for _, tc := range []struct {
		name              string
		chunk             bool
		from              int
		deadline, timeout int64
	}{
		{"plain", false, 0, 0, 0},
		{"chunk", true, 0, 0, 0},
		{"chunk from", true, 7, 0, 0},
		{"deadline", false, 0, 1_700_000_000_000_000_000, 0},
		{"chunk from deadline timeout", true, 3, 1_700_000_000_000_000_000, 5e9},
	} {
		t.Run(tc.name, func(t *testing.T) {
			task := taskFrame(42, tc.chunk, "square", tc.from, tc.deadline, tc.timeout, payload)
			got, err := TaskPayload(task)
			if err != nil || !bytes.Equal(got, payload) {
				t.Fatalf("TaskPayload = %d bytes, %v", len(got), err)
			}
			prefix := []byte("kept")
			out, err := AppendSharedTask(prefix, task, 4096)
			if err != nil || !bytes.HasPrefix(out, []byte("kept")) {
				t.Fatalf("AppendSharedTask: %v", err)
			}
			f, h, ref := parseFrame(t, out[len(prefix):])
			if f.Kind != KindTask || f.ID != 42 || !h.Shared() || h.Chunk() != tc.chunk || string(h.Fn) != "square" ||
				h.From != tc.from || h.Deadline != tc.deadline || h.Timeout != tc.timeout {
				t.Fatalf("shared frame: %v %d %+v", f.Kind, f.ID, h)
			}
			off, n, err := ParseSharedRef(ref, 1<<20)
			if err != nil || off != 4096 || n != len(payload) {
				t.Fatalf("reference: %d %d %v", off, n, err)
			}
			// A frame that is already shared, or not a task, is refused.
			if _, err := AppendSharedTask(nil, out[len(prefix):], 0); !errors.Is(err, ErrMalformed) {
				t.Fatalf("sharing a shared frame: %v", err)
			}
		})
	}
	for _, bad := range [][]byte{
		nil,
		AppendFrame(nil, KindResult, 1, []byte{1, 2, 3}),
		taskFrame(1, false, "f", 0, 0, 0, []byte{1})[:HeaderSize+2],
		append(taskFrame(1, false, "f", 0, 0, 0, []byte{1}), 9), // a byte past the frame
	} {
		if _, err := TaskPayload(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("TaskPayload(%x): %v, want ErrMalformed", bad, err)
		}
		if out, err := AppendSharedTask([]byte("x"), bad, 0); !errors.Is(err, ErrMalformed) || string(out) != "x" {
			t.Errorf("AppendSharedTask(%x): %q %v, want ErrMalformed and dst unchanged", bad, out, err)
		}
	}
}

func TestAppendTaskFrom(t *testing.T) {
	payload := []byte{0x83, 1, 2, 3}
	for _, tc := range []struct {
		name              string
		from, to          int
		deadline, timeout int64
	}{
		{"from 0 to 2", 0, 2, 0, 0},
		{"from 2 to 5", 2, 5, 0, 0},
		{"keeps the deadline", 1, 2, 1_700_000_000_000_000_000, 3e9},
		{"back to 0", 4, 0, 0, 1e9},
	} {
		t.Run(tc.name, func(t *testing.T) {
			task := taskFrame(9, true, "upper", tc.from, tc.deadline, tc.timeout, payload)
			out, err := AppendTaskFrom(nil, task, tc.to)
			if err != nil {
				t.Fatal(err)
			}
			f, h, got := parseFrame(t, out)
			if f.ID != 9 || !h.Chunk() || h.Shared() || string(h.Fn) != "upper" || h.From != tc.to ||
				h.Deadline != tc.deadline || h.Timeout != tc.timeout || !bytes.Equal(got, payload) {
				t.Fatalf("rebuilt frame: %d %+v %x", f.ID, h, got)
			}
			if (h.Flags&FlagFrom != 0) != (tc.to > 0) {
				t.Fatalf("FlagFrom %v for from %d", h.Flags&FlagFrom != 0, tc.to)
			}
		})
	}
	plain := taskFrame(1, false, "f", 0, 0, 0, payload)
	shared, _ := AppendSharedTask(nil, taskFrame(1, true, "f", 0, 0, 0, payload), 0)
	chunk := taskFrame(1, true, "f", 0, 0, 0, payload)
	for name, tc := range map[string]struct {
		frame []byte
		from  int
	}{
		"not a chunk":    {plain, 1},
		"shared":         {shared, 1},
		"negative from":  {chunk, -1},
		"from past 2^31": {chunk, MaxItemIndex},
		"not a frame":    {chunk[:5], 1},
	} {
		if out, err := AppendTaskFrom([]byte("x"), tc.frame, tc.from); !errors.Is(err, ErrMalformed) || string(out) != "x" {
			t.Errorf("%s: %q %v, want ErrMalformed and dst unchanged", name, out, err)
		}
	}
}

func TestSetChunkErrors(t *testing.T) {
	results := []byte{0x82, 0x01, 0x00}
	build := func(prefix string) ([]byte, int) {
		frame, start := BeginFrame([]byte(prefix), KindResult, 5)
		frame, _ = AppendChunkResultHeader(frame, nil)
		return append(frame, results...), start
	}
	frame, start := build("before")
	errs := []ItemError{{Index: 1, Err: ErrorBody{Message: "boom", Type: "*errors.errorString"}}}
	out, err := SetChunkErrors(frame, start, errs)
	if err != nil {
		t.Fatal(err)
	}
	if err := EndFrame(out, start); err != nil {
		t.Fatal(err)
	}
	if string(out[:start]) != "before" {
		t.Fatalf("bytes before the frame changed: %q", out[:start])
	}
	f, err := NewReader(bytes.NewReader(out[start:]), 0, 0).Next()
	if err != nil || f.Kind != KindResult || f.ID != 5 {
		t.Fatalf("frame back: %v %v", f.Kind, err)
	}
	gotErrs, payload, err := ParseChunkResult(f.Body)
	if err != nil || len(gotErrs) != 1 || gotErrs[0].Index != 1 || gotErrs[0].Err.Message != "boom" || !bytes.Equal(payload, results) {
		t.Fatalf("ParseChunkResult = %+v %x %v", gotErrs, payload, err)
	}

	// Indexes that break the rules: an error, and the frame as it was.
	frame, start = build("")
	want := append([]byte(nil), frame...)
	bad := []ItemError{{Index: 2}, {Index: 1}}
	if out, err := SetChunkErrors(frame, start, bad); !errors.Is(err, ErrMalformed) || !bytes.Equal(out, want) {
		t.Fatalf("decreasing indexes: %v, frame kept %v", err, bytes.Equal(out, want))
	}
	// Not a chunk result with an empty table.
	withErrs, _ := SetChunkErrors(frame, start, errs)
	for name, b := range map[string][]byte{
		"table not empty": withErrs,
		"short":           frame[:HeaderSize+2],
		"a task":          taskFrame(1, false, "f", 0, 0, 0, []byte{0, 0, 0, 0}),
	} {
		if _, err := SetChunkErrors(b, 0, errs); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
}

func TestTaskFrameRewritesAllocate(t *testing.T) {
	task := taskFrame(3, true, "square", 0, 1, 2, make([]byte, 1000))
	dst := make([]byte, 0, 2048)
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := TaskPayload(task); err != nil {
			t.Fatal(err)
		}
		if _, err := AppendSharedTask(dst, task, 64); err != nil {
			t.Fatal(err)
		}
		if _, err := AppendTaskFrom(dst, task, 1); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations with room in dst, want 0", allocs)
	}
}
