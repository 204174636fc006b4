package cluster

import (
	"time"

	"github.com/nats-io/nats.go"
)

// Connect connects to the NATS server at url (several, comma-separated,
// for a cluster of servers) as a pool's client or host should be
// connected: it reconnects for ever (nats.MaxReconnects(-1)) every 250 ms,
// since a host or client that gave up reconnecting would drop its tasks'
// answers, and names the connection "procpool". opts come after these and
// override them; TLS (nats.Secure, nats.RootCAs, nats.ClientCert),
// credentials (nats.UserCredentials, nats.UserInfo, nats.Token) and NKeys
// (nats.NkeyOptionFromSeed) are nats.go's options.
//
// Connect blocks until the first connection is made, and fails with
// nats.go's error if none can be. The caller closes the connection after
// the pools and Serve calls that use it.
func Connect(url string, opts ...nats.Option) (*nats.Conn, error) {
	all := append([]nats.Option{
		nats.Name("procpool"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
	}, opts...)
	return nats.Connect(url, all...)
}
