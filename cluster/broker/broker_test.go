package broker_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/procpool/procpool/cluster/broker"
	"go.uber.org/goleak"
)

// TestMain checks that no test leaves a goroutine behind: a closed broker
// (or a failed Start) must have stopped every nats-server goroutine.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func start(t *testing.T, cfg broker.Config) *broker.Broker {
	t.Helper()
	b, err := broker.Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return b
}

func connect(t *testing.T, url string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// tmpdirEntries points os.TempDir at a fresh directory for the test and
// returns a function listing what is in it, to see what Start makes there.
func tmpdirEntries(t *testing.T) func() []string {
	dir := t.TempDir()
	t.Setenv("TMPDIR", dir)
	return func() []string {
		es, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range es {
			names = append(names, e.Name())
		}
		return names
	}
}

// A stream, its messages and its durable consumer survive Close and a
// Start with the same Dir and Port, and a client that kept reconnecting
// finds the new broker.
func TestRestartKeepsStreams(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	b1, err := broker.Start(ctx, broker.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	url1 := b1.URL()
	if !strings.HasPrefix(url1, "nats://127.0.0.1:") {
		t.Errorf("URL %q, want nats://127.0.0.1:PORT", url1)
	}

	reconnected := make(chan struct{}, 1)
	nc := connect(t, url1, nats.MaxReconnects(-1), nats.ReconnectWait(10*time.Millisecond),
		nats.ReconnectHandler(func(*nats.Conn) {
			select {
			case reconnected <- struct{}{}:
			default:
			}
		}))
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name:      "TASKS",
		Subjects:  []string{"tasks.>"},
		Storage:   jetstream.FileStorage,
		Retention: jetstream.WorkQueuePolicy,
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateOrUpdateConsumer(ctx, "TASKS", jetstream.ConsumerConfig{
		Durable:   "workers",
		AckPolicy: jetstream.AckExplicitPolicy,
	}); err != nil {
		t.Fatal(err)
	}
	ack, err := js.Publish(ctx, "tasks.a", []byte("queued"))
	if err != nil {
		t.Fatal(err)
	}
	if ack.Stream != "TASKS" || ack.Sequence != 1 {
		t.Fatalf("PubAck %+v, want stream TASKS sequence 1", ack)
	}

	if err := b1.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("Close removed the given Dir: %v", err)
	}

	b2 := start(t, broker.Config{Dir: dir, Port: b1.Port()})
	if b2.URL() != url1 {
		t.Errorf("restarted URL %q, want %q", b2.URL(), url1)
	}
	<-reconnected

	s, err := js.Stream(ctx, "TASKS")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Fatalf("restarted stream holds %d messages, want 1", info.State.Msgs)
	}
	m, err := s.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if string(m.Data) != "queued" || m.Subject != "tasks.a" {
		t.Fatalf("message %q on %q, want %q on tasks.a", m.Data, m.Subject, "queued")
	}

	// The durable consumer survived too and delivers the queued message.
	c, err := js.Consumer(ctx, "TASKS", "workers")
	if err != nil {
		t.Fatal(err)
	}
	batch, err := c.FetchNoWait(1)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for m := range batch.Messages() {
		got = append(got, string(m.Data()))
		if err := m.Ack(); err != nil {
			t.Fatal(err)
		}
	}
	if err := batch.Error(); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != "queued" {
		t.Fatalf("consumer delivered %q, want [queued]", got)
	}
}

// The zero Config stores in a temporary directory that Close removes.
func TestTempDirRemovedByClose(t *testing.T) {
	entries := tmpdirEntries(t)
	b, err := broker.Start(context.Background(), broker.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if len(entries()) != 1 {
		t.Fatalf("temporary directory holds %v, want the broker's store", entries())
	}
	nc := connect(t, b.URL())
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(context.Background(), jetstream.StreamConfig{
		Name: "S", Subjects: []string{"s"}, Storage: jetstream.FileStorage,
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(context.Background(), "s", []byte("x")); err != nil {
		t.Fatal(err)
	}
	nc.Close()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if e := entries(); len(e) != 0 {
		t.Fatalf("after Close the temporary directory holds %v", e)
	}
}

func TestPortInUse(t *testing.T) {
	entries := tmpdirEntries(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port

	b, err := broker.Start(context.Background(), broker.Config{Port: port})
	if err == nil {
		b.Close()
		t.Fatal("Start on a port in use succeeded")
	}
	if !errors.Is(err, broker.ErrListen) || !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("Start: %v; want ErrListen wrapping EADDRINUSE", err)
	}
	t.Log(err)
	if e := entries(); len(e) != 0 {
		t.Fatalf("failed Start left %v in the temporary directory", e)
	}
}

func TestDirNotADirectory(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := broker.Start(context.Background(), broker.Config{Dir: file})
	if err == nil {
		b.Close()
		t.Fatal("Start with a file as Dir succeeded")
	}
	if !errors.Is(err, broker.ErrJetStream) {
		t.Fatalf("Start: %v; want ErrJetStream", err)
	}
	t.Log(err)
}

func TestInvalidConfig(t *testing.T) {
	for _, cfg := range []broker.Config{
		{Port: -1}, {Port: 70000}, {MaxMemory: -1}, {MaxStore: -1}, {MaxPayload: -1},
	} {
		b, err := broker.Start(context.Background(), cfg)
		if err == nil {
			b.Close()
			t.Errorf("Start(%+v) succeeded", cfg)
		} else if !errors.Is(err, broker.ErrConfig) {
			t.Errorf("Start(%+v): %v; want ErrConfig", cfg, err)
		}
	}
}

func TestContextEndedBeforeStart(t *testing.T) {
	entries := tmpdirEntries(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	b, err := broker.Start(ctx, broker.Config{})
	if err == nil {
		b.Close()
		t.Fatal("Start with an ended ctx succeeded")
	}
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Start: %v; want context.Canceled", err)
	}
	if e := entries(); len(e) != 0 {
		t.Fatalf("Start left %v in the temporary directory", e)
	}
}

// cancelOn is a slog.Handler that calls cancel when nats-server logs a
// message containing match.
type cancelOn struct {
	match  string
	cancel context.CancelCauseFunc
}

var errCancelled = errors.New("cancelled while JetStream started")

func (h cancelOn) Enabled(context.Context, slog.Level) bool { return true }
func (h cancelOn) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, h.match) {
		h.cancel(errCancelled)
	}
	return nil
}
func (h cancelOn) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h cancelOn) WithGroup(string) slog.Handler      { return h }

// A ctx that ends while nats-server starts makes Start shut it down and
// return ctx's error and cause, leaving nothing behind.
func TestContextEndedDuringStart(t *testing.T) {
	entries := tmpdirEntries(t)
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	log := slog.New(cancelOn{match: "Starting JetStream", cancel: cancel})
	b, err := broker.Start(ctx, broker.Config{Logger: log})
	if err == nil {
		b.Close()
		t.Fatal("Start whose ctx ended during start-up succeeded")
	}
	if !errors.Is(err, context.Canceled) || !errors.Is(err, errCancelled) {
		t.Fatalf("Start: %v; want context.Canceled and its cause", err)
	}
	if e := entries(); len(e) != 0 {
		t.Fatalf("Start left %v in the temporary directory", e)
	}
}

func TestCloseIdempotent(t *testing.T) {
	b, err := broker.Start(context.Background(), broker.Config{})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			if err := b.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
	wg.Wait()
	if err := b.Close(); err != nil {
		t.Fatalf("Close again: %v", err)
	}
	if _, err := nats.Connect(b.URL(), nats.MaxReconnects(0)); err == nil {
		t.Fatal("connected to a closed broker")
	}
}

func TestLimitsAndName(t *testing.T) {
	b := start(t, broker.Config{Name: "hub", MaxMemory: 1 << 20, MaxStore: 2 << 20, MaxPayload: 4096})
	nc := connect(t, b.URL())
	if got := nc.MaxPayload(); got != 4096 {
		t.Errorf("MaxPayload %d, want 4096", got)
	}
	if got := nc.ConnectedServerName(); got != "hub" {
		t.Errorf("server name %q, want hub", got)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	// A stream may reserve at most MaxStore (MaxMemory) bytes.
	for _, c := range []struct {
		storage  jetstream.StorageType
		maxBytes int64
		code     jetstream.ErrorCode // 0: created
	}{
		{jetstream.FileStorage, 2 << 20, 0},
		{jetstream.FileStorage, 3 << 20, jsStorageResourcesExceeded},
		{jetstream.MemoryStorage, 1 << 20, 0},
		{jetstream.MemoryStorage, 2 << 20, jsMemoryResourcesExceeded},
	} {
		name := fmt.Sprintf("S%v%d", c.storage, c.maxBytes)
		_, err := js.CreateStream(context.Background(), jetstream.StreamConfig{
			Name: name, Subjects: []string{name}, Storage: c.storage, MaxBytes: c.maxBytes,
		})
		var apiErr *jetstream.APIError
		switch {
		case c.code == 0 && err != nil:
			t.Errorf("%s: %v", name, err)
		case c.code != 0 && !errors.As(err, &apiErr):
			t.Errorf("%s: %v, want the server's insufficient resources error", name, err)
		case c.code != 0 && apiErr.ErrorCode != c.code:
			t.Errorf("%s: %v, want error code %d", name, err, c.code)
		}
		if err := js.DeleteStream(context.Background(), name); c.code == 0 && err != nil {
			t.Error(err)
		}
	}
}

// nats-server's JSStorageResourcesExceededErr and
// JSMemoryResourcesExceededErr, which have no constants in nats.go.
const (
	jsStorageResourcesExceeded jetstream.ErrorCode = 10047
	jsMemoryResourcesExceeded  jetstream.ErrorCode = 10028
)

func TestAllInterfacesURLIsLoopback(t *testing.T) {
	b := start(t, broker.Config{Host: "0.0.0.0"})
	if !strings.HasPrefix(b.URL(), "nats://127.0.0.1:") {
		t.Fatalf("URL %q, want nats://127.0.0.1:PORT", b.URL())
	}
	connect(t, b.URL())
}

func TestToken(t *testing.T) {
	b := start(t, broker.Config{Token: "s3cret"})
	if nc, err := nats.Connect(b.URL(), nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Fatal("connected without the token")
	}
	connect(t, b.URL(), nats.Token("s3cret"))
}

func TestTLS(t *testing.T) {
	cert, pool := selfSigned(t)
	b := start(t, broker.Config{TLS: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}})
	if !strings.HasPrefix(b.URL(), "tls://127.0.0.1:") {
		t.Fatalf("URL %q, want tls://127.0.0.1:PORT", b.URL())
	}
	nc := connect(t, b.URL(), nats.Secure(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}))
	if !nc.TLSRequired() {
		t.Fatal("connection without TLS")
	}
}

// selfSigned returns a certificate for 127.0.0.1 and a pool trusting it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "broker test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// The Logger receives nats-server's notices at Info.
func TestLogger(t *testing.T) {
	var mu sync.Mutex
	var msgs []string
	h := recordHandler{add: func(r slog.Record) {
		mu.Lock()
		msgs = append(msgs, r.Level.String()+" "+r.Message)
		mu.Unlock()
	}}
	b, err := broker.Start(context.Background(), broker.Config{Logger: slog.New(h)})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, want := range []string{"INFO Server is ready", "INFO Server Exiting.."} {
		found := false
		for _, m := range msgs {
			found = found || m == want
		}
		if !found {
			t.Errorf("log lacks %q; got %q", want, msgs)
		}
	}
}

type recordHandler struct{ add func(slog.Record) }

func (h recordHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }
func (h recordHandler) Handle(_ context.Context, r slog.Record) error {
	h.add(r)
	return nil
}
func (h recordHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h recordHandler) WithGroup(string) slog.Handler      { return h }
