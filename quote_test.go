package procpool

import (
	"fmt"
	"strings"
	"testing"
)

// TestQuotes checks how start errors quote a worker's standard error.
func TestQuotes(t *testing.T) {
	if q := quoteTail(" \n\t"); q != "" {
		t.Errorf("blank: %q", q)
	}
	if q := quoteTail("a\nb\n"); q != "\ta\n\tb" {
		t.Errorf("short: %q", q)
	}
	var b strings.Builder
	for i := range 50 {
		fmt.Fprintf(&b, "line %d\n", i)
	}
	if q := quoteTail(b.String()); !strings.HasPrefix(q, "\tline 40\n") || !strings.HasSuffix(q, "\tline 49") {
		t.Errorf("last lines: %q", q)
	}
	if q := quoteHead(b.String()); !strings.HasPrefix(q, "\tline 0\n") || !strings.HasSuffix(q, "\tline 9") {
		t.Errorf("first lines: %q", q)
	}
	long := strings.Repeat("é", 2000)
	if q := quoteTail(long); len(q) > quoteBytes+1 || !strings.HasSuffix(q, "é") || strings.ContainsRune(q, '\uFFFD') {
		t.Errorf("one long line: %d bytes", len(q))
	}
	if q := quoteHead(long); len(q) > quoteBytes+1 || strings.ContainsRune(q, '\uFFFD') {
		t.Errorf("one long line, head: %d bytes", len(q))
	}
}
