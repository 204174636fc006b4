//go:build unix

package main

import (
	"bytes"
	"context"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/procpool/procpool"
	"github.com/procpool/procpool/internal/testenv"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	procpool.Main()
	goleak.VerifyTestMain(m)
}

func TestRun(t *testing.T) {
	python := testenv.LookPath(t, "python3", "the Python example")
	var out bytes.Buffer
	if err := run(context.Background(), &out, python); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	for _, want := range []string{
		"hamlet       4    34       26  that, question, whether",
		"tyger        4    20       18  tyger, burning, bright",
		`text.check("   ") raised builtins.ValueError: an empty document`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	// The statistics came from processes other than this one.
	for _, line := range strings.Split(strings.TrimSpace(got), "\n")[1:5] {
		f := strings.Fields(line)
		pid, err := strconv.Atoi(f[len(f)-1])
		if err != nil || pid == os.Getpid() || pid <= 0 {
			t.Errorf("line %q: worker pid %v", line, f[len(f)-1])
		}
	}
	t.Logf("\n%s", got)
}
