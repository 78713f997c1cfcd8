package natstest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// JetStream is an option for StartServer that enables JetStream with its
// data in dir. Pass the same dir to a later StartServer to restart a server
// over the same data.
func JetStream(dir string) func(*server.Options) {
	return func(o *server.Options) {
		o.JetStream = true
		o.StoreDir = dir
	}
}

// StartJetStream starts a single JetStream-enabled server on a random
// loopback port with its data in a fresh temporary directory, and shuts it
// down when tb ends. opts may adjust the options further.
func StartJetStream(tb testing.TB, opts ...func(*server.Options)) *server.Server {
	tb.Helper()
	return StartServer(tb, append([]func(*server.Options){JetStream(tb.TempDir())}, opts...)...)
}

// StartCluster starts an n-node JetStream cluster in-process: each node
// listens for clients and routes on random 127.0.0.1 ports, keeps its data
// in its own temporary directory and routes to every other node. It returns
// once the JetStream meta group has a leader that knows all n peers, so a
// stream with n replicas can be created right away. The nodes are shut down
// when tb ends; shutting one down earlier is fine.
func StartCluster(tb testing.TB, n int) []*server.Server {
	tb.Helper()
	if n < 1 {
		tb.Fatalf("natstest: cluster of %d nodes", n)
	}
	// JetStream clustering requires configured routes on every node, so the
	// route ports must be known before any node starts. They are reserved by
	// listening on port 0 and released right before the servers bind them;
	// another process could take one in between, which is unlikely enough
	// on loopback for tests.
	ports := make([]int, n)
	routes := make([]string, n)
	listeners := make([]net.Listener, n)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			for _, l := range listeners[:i] {
				l.Close()
			}
			tb.Fatalf("natstest: reserve route port: %v", err)
		}
		listeners[i] = l
		ports[i] = l.Addr().(*net.TCPAddr).Port
		routes[i] = fmt.Sprintf("nats-route://127.0.0.1:%d", ports[i])
	}
	for _, l := range listeners {
		l.Close()
	}
	// A node ignores the route that points at itself, so all nodes share one
	// route list, as they would share one cluster block in a config file.
	routeURLs := server.RoutesFromStr(strings.Join(routes, ","))

	servers := make([]*server.Server, n)
	for i := range servers {
		servers[i] = StartJetStream(tb, func(o *server.Options) {
			o.ServerName = fmt.Sprintf("n%d", i+1)
			o.Cluster.Name = "natstest"
			o.Cluster.Host = "127.0.0.1"
			o.Cluster.Port = ports[i]
			o.Routes = routeURLs
		})
	}
	WaitForJetStreamCluster(tb, servers, 30*time.Second)
	return servers
}

// WaitForJetStreamCluster waits up to timeout until one of servers leads the
// JetStream meta group, knows every one of them as a peer, and every server
// is current with it.
func WaitForJetStreamCluster(tb testing.TB, servers []*server.Server, timeout time.Duration) {
	tb.Helper()
	ready := func() bool {
		var leader *server.Server
		for _, s := range servers {
			if !s.JetStreamIsCurrent() {
				return false
			}
			if s.JetStreamIsLeader() {
				leader = s
			}
		}
		return leader != nil && len(leader.JetStreamClusterPeers()) == len(servers)
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !ready() {
		select {
		case <-tick.C:
		case <-deadline.C:
			tb.Fatalf("natstest: JetStream cluster of %d not ready after %v", len(servers), timeout)
		}
	}
}

// ClientURLs returns the client URLs of servers joined by commas, the form
// nats.Connect takes to fail over between them.
func ClientURLs(servers ...*server.Server) string {
	urls := make([]string, len(servers))
	for i, s := range servers {
		urls[i] = s.ClientURL()
	}
	return strings.Join(urls, ",")
}

// FlipOnDisk flips a bit in the middle of value where the JetStream message
// blocks under dir hold it, as a failing disk would, and fails t unless
// exactly one block holds it. Stop the server first.
func FlipOnDisk(t testing.TB, dir string, value []byte) {
	t.Helper()
	found := 0
	err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() || filepath.Ext(p) != ".blk" {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		i := bytes.Index(data, value)
		if i < 0 {
			return nil
		}
		found++
		data[i+len(value)/2] ^= 0x01
		return os.WriteFile(p, data, info.Mode())
	})
	if err != nil || found != 1 {
		t.Fatalf("value found in %d message blocks (%v), want 1", found, err)
	}
}
