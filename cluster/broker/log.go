package broker

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
)

// natsLogger is the server.Logger Start installs: it forwards nats-server's
// log to an optional slog.Logger and keeps the first fatal error, which is
// how nats-server's Start reports a failure. Unlike nats-server's own
// logger, its Fatalf does not exit the process.
type natsLogger struct {
	log *slog.Logger // nil: forward nothing

	mu       sync.Mutex
	first    fatal
	hasFatal bool
}

// fatal is one Fatalf call.
type fatal struct {
	format string
	msg    string
	cause  error // the first error among the arguments, if any
}

// err classifies f by nats-server's message: the client listener
// ("Error listening on port: ...") or JetStream ("Can't start JetStream:
// ..."), else a failure of another part of the start.
func (f fatal) err() error {
	kind := ErrStart
	switch lower := strings.ToLower(f.format); {
	case strings.Contains(lower, "jetstream"):
		kind = ErrJetStream
	case strings.Contains(lower, "listening on port"):
		kind = ErrListen
	}
	return &startError{kind: kind, msg: f.msg, cause: f.cause}
}

// startError is a failure nats-server reported: its message (which
// already quotes the cause) wrapping the kind and the cause.
type startError struct {
	kind  error
	msg   string
	cause error // nil if none
}

func (e *startError) Error() string { return e.kind.Error() + ": " + e.msg }

func (e *startError) Unwrap() []error {
	if e.cause == nil {
		return []error{e.kind}
	}
	return []error{e.kind, e.cause}
}

func (l *natsLogger) fatal() (fatal, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.first, l.hasFatal
}

func (l *natsLogger) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	l.mu.Lock()
	if !l.hasFatal {
		l.hasFatal = true
		l.first = fatal{format: format, msg: msg}
		for _, a := range v {
			if err, ok := a.(error); ok {
				l.first.cause = err
				break
			}
		}
	}
	l.mu.Unlock()
	if l.log != nil {
		l.log.Error(msg)
	}
}

func (l *natsLogger) Noticef(format string, v ...any) { l.logf(slog.LevelInfo, format, v) }
func (l *natsLogger) Warnf(format string, v ...any)   { l.logf(slog.LevelWarn, format, v) }
func (l *natsLogger) Errorf(format string, v ...any)  { l.logf(slog.LevelError, format, v) }
func (l *natsLogger) Debugf(format string, v ...any)  { l.logf(slog.LevelDebug, format, v) }

// Tracef is never called: Start leaves nats-server's protocol tracing off.
func (l *natsLogger) Tracef(format string, v ...any) { l.logf(slog.LevelDebug, format, v) }

func (l *natsLogger) logf(level slog.Level, format string, v []any) {
	if l.log == nil || !l.log.Enabled(context.Background(), level) {
		return
	}
	l.log.Log(context.Background(), level, fmt.Sprintf(format, v...))
}
