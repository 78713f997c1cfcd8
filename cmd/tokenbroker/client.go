package main

import (
	"crypto/rand"
	"encoding/base64"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/client"
	"github.com/tokenbroker/tokenbroker/messaging"
	"github.com/tokenbroker/tokenbroker/wire"
)

// clientFlags are the flags of the commands that talk to a running broker.
type clientFlags struct {
	url     *string
	prefix  *string
	timeout *time.Duration
}

func registerClientFlags(fs *flag.FlagSet, e env) clientFlags {
	url := e.getenv("NATS_URL")
	if url == "" {
		url = nats.DefaultURL
	}
	prefix := e.getenv("SUBJECT_PREFIX")
	if prefix == "" {
		prefix = wire.DefaultPrefix
	}
	return clientFlags{
		url:     fs.String("nats-url", url, "`URL` of the NATS server the broker uses (env NATS_URL)"),
		prefix:  fs.String("subject-prefix", prefix, "`prefix` of the broker's subjects (env SUBJECT_PREFIX)"),
		timeout: fs.Duration("timeout", 35*time.Second, "how long to wait for the broker"),
	}
}

// connect connects to the broker's NATS with the same credentials
// variables as the broker itself (NATS_CREDS, NATS_NKEY, NATS_USER and
// NATS_PASSWORD, NATS_TOKEN, NATS_CA, NATS_CERT and NATS_KEY).
func (c clientFlags) connect(e env) (*nats.Conn, error) {
	secret := func(name string) string {
		if v := e.getenv(name); v != "" {
			return v
		}
		if path := e.getenv(name + "_FILE"); path != "" {
			b, err := os.ReadFile(path)
			if err == nil {
				return strings.TrimSpace(string(b))
			}
		}
		return ""
	}
	return messaging.Connect(*c.url, messaging.ConnectOptions{
		Name:      "tokenbroker-cli",
		CredsFile: e.getenv("NATS_CREDS"), NKeyFile: e.getenv("NATS_NKEY"),
		User: e.getenv("NATS_USER"), Password: secret("NATS_PASSWORD"), Token: secret("NATS_TOKEN"),
		CAFile: e.getenv("NATS_CA"), CertFile: e.getenv("NATS_CERT"), KeyFile: e.getenv("NATS_KEY"),
	})
}

func randomSecret() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func tokenbrokerSecret(s string) tokenbroker.Secret { return tokenbroker.Secret(s) }

// newClient is the Go client over nc with the flags' subject prefix and
// timeout, so that the commands speak the broker's protocol through the
// same code as any Go caller.
func (c clientFlags) newClient(nc *nats.Conn) *client.Client {
	return client.New(nc, client.WithSubjectPrefix(*c.prefix), client.WithTimeout(*c.timeout))
}

// describe formats a broker's refusal for a terminal: its code, its OAuth
// error and its description.
func describe(e *tokenbroker.Error) string {
	if e.Description == "" {
		return fmt.Sprintf("error %d %s", e.Code, e.OAuth)
	}
	return fmt.Sprintf("error %d %s: %s", e.Code, e.OAuth, e.Description)
}
