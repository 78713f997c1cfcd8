package broker

import "testing"

// The start-up warning about passwords crossing the network in clear hangs
// on this: only addresses that cannot be reached from elsewhere count.
func TestLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:5000": true, "localhost:5000": true, "[::1]:5000": true, "127.1.2.3:0": true,
		"0.0.0.0:5000": false, ":5000": false, "[::]:5000": false, "10.0.0.5:5000": false,
		"tokenbroker.example:5000": false, "garbage": false,
	} {
		if got := loopback(addr); got != want {
			t.Errorf("loopback(%q) = %v, want %v", addr, got, want)
		}
	}
}
