package audit_test

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/tokenbroker/tokenbroker/audit"
	"github.com/tokenbroker/tokenbroker/internal/natstest"
)

// BenchmarkWrite is the writer's cost per record, with the log line
// formatted as LOG_FORMAT=json formats it and, for nats, the document
// published to a server without subscribers: what AUDIT adds to a cache
// hit, beyond the send in Audit.
func BenchmarkWrite(b *testing.B) {
	for _, mode := range []string{"log", "nats"} {
		b.Run(mode, func(b *testing.B) {
			// Room for every record: the benchmark times the writer
			// working through them, not the drops of a full queue.
			o := audit.Options{Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)), Buffer: b.N}
			if mode == "nats" {
				o.Conn = natstest.Connect(b, natstest.StartServer(b))
			}
			s := audit.New(o)
			rec := hit()
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				s.Audit(rec)
			}
			if err := s.Stop(context.Background()); err != nil {
				b.Fatal(err)
			}
			if s.Dropped() > 0 {
				b.Fatalf("%d dropped", s.Dropped())
			}
		})
	}
}

// BenchmarkAppendJSON is the document's encoding alone.
func BenchmarkAppendJSON(b *testing.B) {
	rec := hit()
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for range b.N {
		buf = audit.AppendJSON(buf[:0], &rec)
	}
}
