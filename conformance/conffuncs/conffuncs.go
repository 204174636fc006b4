// Package conffuncs registers the functions of the conformance contract
// (conf.echo, conf.fail, conf.sleep, conf.exit, conf.len, conf.pid) with
// procpool.Register, so that a Go program that imports it and calls
// procpool.Main first is a worker the conformance kit can check.
//
// Importing the package is all it takes: the functions are registered by
// its package-level variables. Nothing else should import it, since every
// process of a program that does registers the six functions.
package conffuncs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"
	"unicode/utf8"

	"github.com/procpool/procpool"
)

// The handles of the contract's functions, for a parent that calls them.
var (
	// Echo returns its argument unchanged.
	Echo = procpool.Register("conf.echo", func(_ context.Context, v any) (any, error) { return v, nil })
	// Fail returns an error whose message is exactly its argument.
	Fail = procpool.Register("conf.fail", func(_ context.Context, msg string) (any, error) { return nil, errors.New(msg) })
	// Sleep waits ms milliseconds, or until its task is stopped (then it
	// returns the context's error), and returns ms.
	Sleep = procpool.Register("conf.sleep", func(ctx context.Context, ms int) (int, error) {
		t := time.NewTimer(time.Duration(ms) * time.Millisecond)
		defer t.Stop()
		select {
		case <-t.C:
			return ms, nil
		case <-ctx.Done():
			return 0, context.Cause(ctx)
		}
	})
	// Exit ends the worker process at once with its argument as status.
	Exit = procpool.Register("conf.exit", func(_ context.Context, code int) (int, error) {
		os.Exit(code)
		return 0, nil
	})
	// Len returns the number of bytes of a byte string or of code points
	// of a text string.
	Len = procpool.Register("conf.len", func(_ context.Context, v any) (int, error) {
		switch v := v.(type) {
		case string:
			return utf8.RuneCountInString(v), nil
		case []byte:
			return len(v), nil
		}
		return 0, fmt.Errorf("conf.len: a %T has no length", v)
	})
	// Pid returns the worker's process id.
	Pid = procpool.Register("conf.pid", func(context.Context, any) (int, error) { return os.Getpid(), nil })
)
