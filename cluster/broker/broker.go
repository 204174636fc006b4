// Package broker runs a NATS server with JetStream inside the calling
// process, for users of the cluster package who have no NATS deployment.
// Worker hosts on other machines join it by its URL as they would join any
// NATS server.
//
// It lives in a package of its own so that programs that only use the
// cluster client do not link nats-server.
//
//	b, err := broker.Start(ctx, broker.Config{Dir: "/var/lib/myapp/nats"})
//	if err != nil { ... }
//	defer b.Close()
//	// connect clients and hosts to b.URL()
//
// # Restarting with the same data
//
// Streams, their messages and durable consumers are kept in files under
// Config.Dir. A broker started again with the same Dir finds them again;
// give it the Port of the previous one as well (Broker.Port) so that
// clients reconnecting to the old URL find it:
//
//	b2, err := broker.Start(ctx, broker.Config{Dir: dir, Port: b1.Port()})
//
// Close flushes the store, so everything stored before Close survives it.
// The file store writes in the background and syncs to disk every two
// minutes (nats-server's default sync interval): a process killed without
// Close, or a machine that crashes, can lose the most recent writes.
//
// Only one broker at a time may use a Dir.
package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Defaults for the zero fields of Config.
const (
	// DefaultMaxMemory is the JetStream memory limit when Config.MaxMemory
	// is 0: 256 MiB. It caps what memory-storage streams may hold; nothing
	// is allocated up front.
	DefaultMaxMemory = 256 << 20
	// DefaultMaxStore is the JetStream file store limit when
	// Config.MaxStore is 0: 1 GiB of disk under Config.Dir. Nothing is
	// allocated up front.
	DefaultMaxStore = 1 << 30
	// DefaultHost is the listen address when Config.Host is "": the
	// loopback interface only. Set Config.Host to "0.0.0.0" (or a
	// specific interface's address) for hosts on other machines to join.
	DefaultHost = "127.0.0.1"
)

// Errors that Start wraps; test for them with errors.Is. Start's error
// also wraps the underlying cause where nats-server gives one (for
// example syscall.EADDRINUSE for a port in use), and ctx's error when ctx
// ended first.
var (
	// ErrConfig: the Config is invalid (a negative limit, or options
	// nats-server rejects).
	ErrConfig = errors.New("broker: invalid config")
	// ErrListen: the server could not listen on Config.Host:Config.Port,
	// typically because the port is in use.
	ErrListen = errors.New("broker: cannot listen for clients")
	// ErrJetStream: JetStream did not start, typically because Config.Dir
	// is not a writable directory or its store could not be recovered.
	ErrJetStream = errors.New("broker: JetStream did not start")
	// ErrStart: nats-server failed to start for another reason.
	ErrStart = errors.New("broker: nats-server did not start")
)

// Config configures a Broker. The zero value is usable: a broker on a
// random free port of 127.0.0.1 with its store in a new temporary
// directory that Close removes.
type Config struct {
	// Dir is the directory of the JetStream file store (nats-server puts
	// it in Dir/jetstream). It is created if missing. "" means a new
	// temporary directory that Close removes; a given Dir is never
	// removed.
	Dir string
	// Host is the address to listen on; "" means DefaultHost (loopback).
	Host string
	// Port is the client port; 0 means a random free port (read it back
	// with Broker.Port).
	Port int
	// Name is the server's name as clients and monitoring see it; ""
	// means nats-server's generated ID.
	Name string
	// MaxMemory is the JetStream memory-storage limit in bytes; 0 means
	// DefaultMaxMemory.
	MaxMemory int64
	// MaxStore is the JetStream file-storage limit in bytes; 0 means
	// DefaultMaxStore.
	MaxStore int64
	// MaxPayload is the largest message the server accepts, in bytes;
	// 0 means nats-server's default of 1 MiB.
	MaxPayload int32
	// Token, when not "", is required from every client
	// (nats.Token(token) in nats.go).
	Token string
	// TLS, when not nil, makes the server require TLS from every client
	// with this configuration; URL then starts with tls://.
	TLS *tls.Config
	// Logger receives nats-server's log: notices at Info, warnings at
	// Warn, errors at Error, debug lines at Debug (nats-server produces
	// them only when the logger has Debug enabled at Start). nil means
	// no logging.
	Logger *slog.Logger
}

// Broker is a running in-process NATS server with JetStream. Its methods
// are safe for concurrent use.
type Broker struct {
	srv    *server.Server
	url    string
	port   int
	tmpDir string // removed by Close; "" when Config.Dir was given

	closeOnce sync.Once
	closeErr  error
}

// Start starts a NATS server with JetStream as cfg says and returns once
// it accepts connections and JetStream is enabled. It blocks while
// nats-server starts: opening the listener and recovering the streams
// stored in cfg.Dir, which for a large store can take a while and cannot
// be interrupted; ctx is checked before and after that step. ctx bounds
// only the start: the broker runs until Close.
//
// On failure Start returns an error wrapping ErrConfig, ErrListen,
// ErrJetStream or ErrStart (and the underlying cause), or ctx's error, and
// leaves nothing running: the server is shut down and a temporary Dir it
// made is removed.
//
// An idle broker costs about ten goroutines and well under 1 MiB of heap
// (measured with nats-server v2.15.2); each client connection adds a few
// goroutines and buffers, memory-storage streams up to MaxMemory, and file
// streams up to MaxStore of disk under Dir.
func Start(ctx context.Context, cfg Config) (*Broker, error) {
	if err := ctx.Err(); err != nil {
		return nil, ctxError(ctx)
	}
	if err := cfg.check(); err != nil {
		return nil, err
	}

	b := &Broker{}
	dir := cfg.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "procpool-broker-")
		if err != nil {
			return nil, fmt.Errorf("broker: temporary store directory: %w", err)
		}
		dir, b.tmpDir = d, d
	}
	opts := cfg.options(dir)
	srv, err := server.NewServer(opts)
	if err != nil {
		b.removeTmp()
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	b.srv = srv
	log := &natsLogger{log: cfg.Logger}
	debug := cfg.Logger != nil && cfg.Logger.Enabled(context.Background(), slog.LevelDebug)
	srv.SetLoggerV2(log, debug, false, false)

	// Start runs nats-server's whole start-up synchronously (JetStream
	// first, then the client listener), reporting failures only through
	// the logger's Fatalf, after which it returns early.
	srv.Start()
	if err := b.started(ctx, log); err != nil {
		b.shutdown()
		b.removeTmp()
		return nil, err
	}
	addr, ok := srv.Addr().(*net.TCPAddr)
	if !ok {
		b.shutdown()
		b.removeTmp()
		return nil, fmt.Errorf("%w: no client listener address", ErrListen)
	}
	b.port = addr.Port
	b.url = clientURL(opts.Host, b.port, cfg.TLS != nil)
	return b, nil
}

// started reports why the server that Start has started is not usable,
// or nil.
func (b *Broker) started(ctx context.Context, log *natsLogger) error {
	if ctx.Err() != nil {
		return ctxError(ctx)
	}
	if f, ok := log.fatal(); ok {
		return f.err()
	}
	// After Start has returned without a fatal error the listener is up,
	// so this returns at once; the wait is only a bound for the unexpected.
	if !b.srv.ReadyForConnections(5 * time.Second) {
		return fmt.Errorf("%w: server not ready for connections", ErrListen)
	}
	if !b.srv.JetStreamEnabled() {
		return ErrJetStream
	}
	return nil
}

// ctxError is ctx's error, wrapping its cause too when that differs.
func ctxError(ctx context.Context) error {
	err, cause := ctx.Err(), context.Cause(ctx)
	if cause == nil || cause == err {
		return fmt.Errorf("broker: start: %w", err)
	}
	return fmt.Errorf("broker: start: %w: %w", err, cause)
}

func (cfg *Config) check() error {
	switch {
	case cfg.Port < 0 || cfg.Port > 65535:
		return fmt.Errorf("%w: Port %d out of range 0..65535", ErrConfig, cfg.Port)
	case cfg.MaxMemory < 0:
		return fmt.Errorf("%w: negative MaxMemory %d", ErrConfig, cfg.MaxMemory)
	case cfg.MaxStore < 0:
		return fmt.Errorf("%w: negative MaxStore %d", ErrConfig, cfg.MaxStore)
	case cfg.MaxPayload < 0:
		return fmt.Errorf("%w: negative MaxPayload %d", ErrConfig, cfg.MaxPayload)
	}
	return nil
}

// options are the nats-server options for cfg with its store in dir.
func (cfg *Config) options(dir string) *server.Options {
	o := &server.Options{
		ServerName:             cfg.Name,
		Host:                   cfg.Host,
		Port:                   cfg.Port,
		NoLog:                  true,
		NoSigs:                 true,
		MaxPayload:             cfg.MaxPayload,
		JetStream:              true,
		JetStreamMaxMemory:     cfg.MaxMemory,
		JetStreamMaxStore:      cfg.MaxStore,
		StoreDir:               dir,
		DisableJetStreamBanner: true,
		Authorization:          cfg.Token,
		TLSConfig:              cfg.TLS,
	}
	if o.Host == "" {
		o.Host = DefaultHost
	}
	if o.Port == 0 {
		o.Port = server.RANDOM_PORT
	}
	// Both limits must be set: with either at 0 nats-server sizes
	// JetStream from the machine's memory and disk instead.
	if o.JetStreamMaxMemory == 0 {
		o.JetStreamMaxMemory = DefaultMaxMemory
	}
	if o.JetStreamMaxStore == 0 {
		o.JetStreamMaxStore = DefaultMaxStore
	}
	return o
}

// clientURL is the URL clients on this machine use: a wildcard listen
// address is replaced by the loopback one.
func clientURL(host string, port int, tls bool) string {
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		if ip.To4() != nil {
			host = "127.0.0.1"
		} else {
			host = "::1"
		}
	}
	scheme := "nats"
	if tls {
		scheme = "tls"
	}
	return scheme + "://" + net.JoinHostPort(host, strconv.Itoa(port))
}

// URL returns the URL that clients on this machine connect to, such as
// nats://127.0.0.1:4222 (tls://... with Config.TLS). When the broker
// listens on all interfaces (Host "0.0.0.0" or "::") the URL names the
// loopback address; hosts on other machines use this machine's address
// with Port. It costs nothing and does not block.
func (b *Broker) URL() string { return b.url }

// Port returns the client port the broker listens on: Config.Port, or the
// free port chosen when that was 0. Pass it as Config.Port to restart a
// broker where its clients will look for it. It costs nothing and does
// not block.
func (b *Broker) Port() int { return b.port }

// Close shuts the broker down: it closes client connections, stops
// JetStream (flushing its store to Dir), and blocks until every server
// goroutine has ended. It then removes the temporary Dir if Start made
// one. It returns an error only if removing that directory fails. Close
// is idempotent: later and concurrent calls wait for the first and return
// its result.
func (b *Broker) Close() error {
	b.closeOnce.Do(func() {
		b.shutdown()
		b.closeErr = b.removeTmp()
	})
	return b.closeErr
}

func (b *Broker) shutdown() {
	b.srv.Shutdown()
	b.srv.WaitForShutdown()
}

func (b *Broker) removeTmp() error {
	if b.tmpDir == "" {
		return nil
	}
	if err := os.RemoveAll(b.tmpDir); err != nil {
		return fmt.Errorf("broker: removing temporary store directory: %w", err)
	}
	return nil
}
