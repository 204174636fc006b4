//go:build unix

package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/procpool/procpool"
	_ "github.com/procpool/procpool/conformance/conffuncs"
)

// This test binary is also the Go worker: TestMain serves tasks when a
// pool (here, the kit) starts it.
func TestMain(m *testing.M) {
	procpool.Main()
	goleak.VerifyTestMain(m)
}

func runCmd(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestGoWorkerConforms(t *testing.T) {
	code, out, errs := runCmd(t, "-codec", "json,cbor,msgpack", "--", os.Args[0])
	if code != 0 {
		t.Fatalf("exit status %d\n%s\n%s", code, out, errs)
	}
	for _, want := range []string{"PASS  hello/json\n", "PASS  hello/msgpack\n", "PASS  echo/msgpack\n", "PASS  journal/death\n", "conforms — ", "0 failed", "(codecs: json, cbor, msgpack)"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "FAIL") || strings.Contains(out, "WARN") {
		t.Errorf("output has a failure or a warning:\n%s", out)
	}
}

func TestBrokenWorkerRejected(t *testing.T) {
	code, out, _ := runCmd(t, "-run", "^eof/idle$", "--", "/bin/sh", "-c", "echo not a worker >&2; exit 3")
	if code != 1 {
		t.Fatalf("exit status %d, want 1\n%s", code, out)
	}
	for _, want := range []string{
		"FAIL  hello/cbor\n      no hello: the result pipe (fd 4) ended while waiting for the hello: the worker exited with status 3",
		"not a worker",
		"(protocol.md: hello (1))",
		"FAIL  codecs\n",
		"SKIP  eof/idle\n      no codec passed the handshake",
		"DOES NOT CONFORM — 0 passed, 3 failed, 0 warnings, 1 skipped (codecs: none)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "journal/") {
		t.Errorf("-run ^eof/idle$ ran other checks:\n%s", out)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "no worker program given"},
		{[]string{"-bogus", "--", "x"}, "flag provided but not defined"},
		{[]string{"-run", "(", "--", "x"}, "-run: error parsing regexp"},
		{[]string{"-codec", ",", "--", "x"}, "-codec names no codec"},
		{[]string{"-timeout", "0s", "--", "x"}, "-timeout must be positive"},
		{[]string{"--", "/nonexistent/worker"}, "starting /nonexistent/worker"},
	} {
		code, _, errs := runCmd(t, tc.args...)
		if code != 2 || !strings.Contains(errs, tc.want) {
			t.Errorf("%q: exit status %d, stderr %q; want 2 and %q", tc.args, code, errs, tc.want)
		}
	}
}

func TestList(t *testing.T) {
	code, out, _ := runCmd(t, "-list")
	if code != 0 {
		t.Fatalf("exit status %d", code)
	}
	for _, want := range []string{"hello/<codec>", "malformed/length-over-limit", "control/eof", "(protocol.md: Journal)"} {
		if !strings.Contains(out, want) {
			t.Errorf("-list lacks %q:\n%s", want, out)
		}
	}
}
