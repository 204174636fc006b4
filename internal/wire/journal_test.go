package wire

import (
	"bytes"
	"errors"
	"testing"
)

// journalMem returns zeroed memory for a journal with a list area of n
// bytes; a fresh Go allocation of this size is 8-byte aligned.
func journalMem(n int) []byte { return make([]byte, JournalMin+n) }

func TestJournalAnswers(t *testing.T) {
	mem := journalMem(1 << 10)
	j := NewJournal(mem)
	j.SetRunning(7)
	a := AppendFrame(nil, KindResult, 5, []byte("five"))
	b := AppendFrame(nil, KindError, 6, []byte(`{"message":"six"}`))
	if !j.Append(a) || !j.Append(b) {
		t.Fatal("Append refused small frames")
	}
	st, err := ParseJournalHeader(mem, len(mem))
	if err != nil {
		t.Fatal(err)
	}
	if st.Running != 7 || st.Answers != len(a)+len(b) || st.Finished != -1 {
		t.Fatalf("state %+v", st)
	}
	if got := mem[JournalHeader : JournalHeader+st.Answers]; !bytes.Equal(got, append(append([]byte(nil), a...), b...)) {
		t.Fatalf("answer area %q", got)
	}
	if !bytes.Equal(j.Pending(), mem[JournalHeader:JournalHeader+st.Answers]) {
		t.Fatal("Pending differs from the published area")
	}
	j.Reset()
	if st, _ := ParseJournalHeader(mem, len(mem)); st.Answers != 0 {
		t.Fatalf("after Reset: %d answer bytes", st.Answers)
	}
	if j.Append(make([]byte, JournalAnswers+1)) {
		t.Fatal("Append took a frame larger than the area")
	}
}

func TestJournalItems(t *testing.T) {
	mem := journalMem(16)
	j := NewJournal(mem)
	j.SetRunning(9)
	list := j.StartItems()
	if st, _ := ParseJournalHeader(mem, len(mem)); st.Finished != 0 || st.Listed != 0 {
		t.Fatalf("after StartItems: %+v", st)
	}
	for i := range 4 { // 4 items of 3 bytes fit the 16-byte area
		list = append(list, byte(i), byte(i), byte(i))
		j.Finished(list, i+1)
	}
	j.ItemError(2, []byte(`{"message":"two"}`))
	st, err := ParseJournalHeader(mem, len(mem))
	if err != nil {
		t.Fatal(err)
	}
	if st.Finished != 4 || st.Listed != 4 || st.List != 12 {
		t.Fatalf("state %+v, want 4 finished and listed in 12 bytes", st)
	}
	// The fifth item fills 15 of the 16 bytes; the sixth and seventh
	// outgrow the area: the count goes on.
	for i := 4; i < 7; i++ {
		list = append(list, 1, 2, 3)
		j.Finished(list, i+1)
	}
	st, _ = ParseJournalHeader(mem, len(mem))
	if st.Finished != 7 || st.Listed != 5 || st.List != 15 {
		t.Fatalf("after overflow: %+v, want 7 finished, 5 listed in 15 bytes", st)
	}
	errs, err := ParseItemErrors(mem[JournalErrorsAt : JournalErrorsAt+st.Errors])
	if err != nil || len(errs) != 1 || string(errs[2]) != `{"message":"two"}` {
		t.Fatalf("item errors %v, %v", errs, err)
	}
	// A new task clears the item fields.
	j.SetRunning(10)
	if st, _ := ParseJournalHeader(mem, len(mem)); st.Running != 10 || st.Finished != -1 || st.Errors != 0 {
		t.Fatalf("after SetRunning: %+v", st)
	}
}

func TestJournalMalformed(t *testing.T) {
	mem := journalMem(16)
	NewJournal(mem)
	mem[8] = 0xff // answers length over the area
	mem[9] = 0xff
	mem[10] = 0xff
	if _, err := ParseJournalHeader(mem, len(mem)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("oversized answers: %v", err)
	}
	if _, err := ParseJournalHeader(mem[:10], len(mem)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("short header: %v", err)
	}
	if _, err := ParseItemErrors([]byte{1, 0, 0, 0, 9, 0, 0, 0, 'x'}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("cut item error: %v", err)
	}
}

func FuzzJournalHeader(f *testing.F) {
	mem := journalMem(64)
	j := NewJournal(mem)
	j.SetRunning(3)
	j.Finished(append(j.StartItems(), 1, 2), 1)
	f.Add(append([]byte(nil), mem[:JournalHeader]...), []byte{0, 0, 0, 0, 2, 0, 0, 0, '{', '}'})
	f.Fuzz(func(t *testing.T, hdr, errArea []byte) {
		st, err := ParseJournalHeader(hdr, len(mem))
		if err == nil && (st.Answers > JournalAnswers || st.List > len(mem)-JournalListAt || st.Listed > st.Finished && st.Finished >= 0) {
			t.Fatalf("accepted %+v", st)
		}
		errs, err := ParseItemErrors(errArea)
		if err == nil {
			n := 0
			for _, b := range errs {
				n += 8 + len(b)
			}
			if n > len(errArea) {
				t.Fatalf("item errors of %d bytes from %d", n, len(errArea))
			}
		}
	})
}

// An item error that does not fit stops the list: the item counts as
// finished but unrecorded, never as a success.
func TestJournalErrorAreaFull(t *testing.T) {
	mem := journalMem(1 << 10)
	j := NewJournal(mem)
	j.SetRunning(1)
	list := append(j.StartItems(), 1)
	j.Finished(list, 1)
	j.ItemError(1, make([]byte, journalErrors))
	list = append(list, 2)
	j.Finished(list, 2)
	st, _ := ParseJournalHeader(mem, len(mem))
	if st.Finished != 2 || st.Listed != 1 || st.Errors != 0 {
		t.Fatalf("state %+v, want 2 finished, 1 listed, no error recorded", st)
	}
}
