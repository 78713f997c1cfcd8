// Package testkit holds the small helpers every package's tests share: a
// log buffer safe for a broker's concurrent writes, a bounded wait for a
// condition, since tests never sleep to wait for something, and generated
// TLS certificates.
package testkit

import (
	"bytes"
	"log/slog"
	"sync"
	"testing"
	"time"
)

// LogBuffer is an io.Writer that collects log lines from any number of
// goroutines, for tests that check what was (and was not) logged.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write implements io.Writer.
func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Held is the memory the buffer holds, for tests that measure the heap a
// broker leaves behind and must not count its own log.
func (b *LogBuffer) Held() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Cap()
}

// Logger returns a debug-level text logger writing to b: debug, so that a
// check for secrets in logs sees every line there is.
func (b *LogBuffer) Logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// JSONLogger is Logger with one JSON object per line, for tests that read
// the records back.
func (b *LogBuffer) JSONLogger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// Eventually polls cond every few milliseconds until it returns nil, and
// fails tb with cond's last error if that takes longer than timeout.
func Eventually(tb testing.TB, timeout time.Duration, cond func() error) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("not within %s: %v", timeout, err)
		}
		<-tick.C
	}
}

// Until is Eventually for a condition that has no error to tell.
func Until(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	Eventually(tb, timeout, func() error {
		if cond() {
			return nil
		}
		return notYet(what)
	})
}

type notYet string

func (n notYet) Error() string { return "still waiting: " + string(n) }
