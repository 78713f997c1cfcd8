// Package audit is the broker's audit trail (AUDIT). A Sink takes the
// records that tokenbroker.Auditor callers make — the Router for every
// answer it gives, cache hits included, and the transports for requests
// they refuse themselves — and writes them on a goroutine of its own: an
// Info line "audit" in the broker's log and, with AUDIT=nats, a JSON
// document on <prefix>.audit.<credential_id>.
//
// Audit is called on the cache-hit path, so it never blocks and never
// allocates: it copies the record into a buffered channel, and when the
// channel is full the record is dropped and counted (Dropped, and
// tokenbroker_audit_dropped_total). A trail with gaps that are counted is
// better than a broker that slows down, or stalls, because its log or NATS
// does.
//
// A record holds no token, password or username (see
// tokenbroker.AuditRecord); the sink writes only the record's fields, and
// escapes whatever text they hold.
package audit

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/metrics"
	"github.com/tokenbroker/tokenbroker/wire"
)

// DefaultBuffer is how many records a Sink queues by default: at 100,000
// answers a second, most of a tenth of a second of the writer falling
// behind, for about 1 MiB.
const DefaultBuffer = 8192

// NoCredential is the subject token of records whose credential id is empty
// (a request that named no credential the broker could resolve, or one the
// gateway refused before reading it) or cannot be a subject token: a
// subject token cannot be empty, and an id is never allowed to add tokens
// or wildcards to the subject. Such records go to <prefix>.audit._none.
const NoCredential = "_none"

// UnknownCaller stands for an empty AuditRecord.Caller in what the sink
// writes. On NATS it means the request did not come through a service
// import with share: true, so nats-server told the broker nothing about
// who sent it.
const UnknownCaller = "unknown"

// warnEvery bounds how often the sink warns about drops and failed
// publishes: once the queue is full it may drop thousands of records a
// second, and one line per record would only make it worse.
const warnEvery = 10 * time.Second

// batchPause is how long the writer pauses between batches while records
// keep coming (see run). It delays a record by as much at most, and the
// queue holds DefaultBuffer records: 8192 in 2 ms is 4 million a second,
// far beyond what a broker answers.
const batchPause = 2 * time.Millisecond

// subjectCacheSize bounds the writer's cache of audit subjects: username
// credentials are unbounded in number, and the cache only saves an
// allocation per record for the credentials in heavy use.
const subjectCacheSize = 1024

// lineCacheSize bounds the writer's cache of handlers with a line's
// attributes (see logLine), for the same reason: one per credential and
// outcome in heavy use is what pays.
const lineCacheSize = 1024

// Options configure a Sink.
type Options struct {
	// Logger gets one Info line "audit" per record, through its handler,
	// so that LOG_FORMAT applies; and the sink's own warnings (drops,
	// failed publishes). Nil writes no lines.
	Logger *slog.Logger
	// Conn, when set, also gets each record as a JSON document on
	// Subjects.Audit(credential_id) (AUDIT=nats).
	Conn *nats.Conn
	// Subjects gives the audit subjects their prefix (SUBJECT_PREFIX).
	Subjects wire.Subjects
	// Buffer is how many records may wait for the writer; 0 means
	// DefaultBuffer.
	Buffer int
	// Metrics counts dropped records; nil counts them in Dropped only.
	Metrics *metrics.Metrics
}

// Sink is a tokenbroker.Auditor that writes records on its own goroutine.
// Create it with New and stop it with Stop.
type Sink struct {
	ch      chan tokenbroker.AuditRecord
	quit    chan struct{} // closed by Stop: drain and return
	abort   chan struct{} // closed when Stop's context ends: return now
	done    chan struct{} // closed when the writer has returned
	stop    sync.Once
	giveUp  sync.Once
	stopped atomic.Bool
	dropped atomic.Uint64

	log      *slog.Logger // nil: no lines
	nc       *nats.Conn   // nil: no documents
	subjects wire.Subjects
	metrics  *metrics.Metrics

	// The writer goroutine's own state: no locks.
	buf        []byte
	subjectFor map[string]string
	// handler is the logger's; lineHandlers are it with the attributes of
	// the lines written lately (see logLine).
	handler      slog.Handler
	lineHandlers map[lineKey]slog.Handler
	reported     uint64    // Dropped as of the last warning
	lastWarn     time.Time // of drops
	pubErrs      uint64    // failed publishes not yet warned about
	pubErr       error     // the last of them
	lastPubErr   time.Time
}

// New starts a Sink's writer and returns the Sink.
func New(o Options) *Sink {
	n := o.Buffer
	if n <= 0 {
		n = DefaultBuffer
	}
	s := &Sink{
		ch:   make(chan tokenbroker.AuditRecord, n),
		quit: make(chan struct{}), abort: make(chan struct{}), done: make(chan struct{}),
		log: o.Logger, nc: o.Conn, subjects: o.Subjects, metrics: o.Metrics,
		buf:        make([]byte, 0, 512),
		subjectFor: make(map[string]string),
	}
	if s.log != nil {
		s.handler, s.lineHandlers = s.log.Handler(), make(map[lineKey]slog.Handler)
	}
	go s.run()
	return s
}

// Audit implements tokenbroker.Auditor: it queues rec for the writer, or
// drops and counts it when the queue is full or the Sink is stopped. It
// never blocks and does not allocate.
func (s *Sink) Audit(rec tokenbroker.AuditRecord) {
	if !s.stopped.Load() {
		select {
		case s.ch <- rec:
			return
		default:
		}
	}
	s.dropped.Add(1)
	s.metrics.AuditDropped()
}

// Dropped is how many records were dropped since New: given when the queue
// was full, or after Stop.
func (s *Sink) Dropped() uint64 { return s.dropped.Load() }

// Stop stops taking records, writes those queued, and returns when the
// writer has returned and, with a Conn, NATS has the documents. If ctx
// ends first, the writer gives up on the records left, and Stop says how
// many. Records given to Audit after Stop are dropped. Stop may be called
// more than once.
func (s *Sink) Stop(ctx context.Context) error {
	s.stop.Do(func() {
		s.stopped.Store(true)
		close(s.quit)
	})
	select {
	case <-s.done:
	case <-ctx.Done():
		s.giveUp.Do(func() { close(s.abort) })
		return fmt.Errorf("audit: stopped with %d records unwritten: %w", len(s.ch), ctx.Err())
	}
	if s.nc == nil || !s.nc.IsConnected() {
		return nil
	}
	// Publish only hands the documents to the connection's buffer; the
	// trail is complete once the server has them.
	if _, ok := ctx.Deadline(); ok {
		return s.nc.FlushWithContext(ctx)
	}
	return s.nc.FlushTimeout(5 * time.Second)
}

// run is the writer. Idle, it waits on the queue. Busy, it writes what is
// queued and then pauses for batchPause rather than waiting on the queue
// again: a writer waiting on the queue is woken by the first record sent,
// and under load that is a goroutine wake-up, paid on the sender's side,
// per handful of cache hits. Pausing, it takes a batch of records per
// wake-up instead, and the senders never have a goroutine to wake.
func (s *Sink) run() {
	defer close(s.done)
	pause := time.NewTimer(batchPause)
	pause.Stop()
	for {
		select {
		case rec := <-s.ch:
			s.write(&rec)
		case <-s.quit:
			s.drain()
			return
		}
		for {
			n := len(s.ch)
			for range n {
				rec := <-s.ch
				s.write(&rec)
			}
			s.warnDrops(false)
			if n == 0 {
				break // idle again
			}
			pause.Reset(batchPause)
			select {
			case <-pause.C:
			case <-s.quit:
				pause.Stop()
				s.drain()
				return
			}
		}
	}
}

// drain writes what is queued, unless Stop gives up on it, and the last
// warnings.
func (s *Sink) drain() {
	for len(s.ch) > 0 {
		select {
		case <-s.abort:
			return
		case rec := <-s.ch:
			s.write(&rec)
		}
	}
	s.warnDrops(true)
	s.warnPublish(true)
}

// write writes one record: the log line, then the NATS document.
func (s *Sink) write(rec *tokenbroker.AuditRecord) {
	if rec.Time.IsZero() {
		rec.Time = time.Now() // a record must say when; the caller forgot
	}
	caller := rec.Caller
	if caller == "" {
		caller = UnknownCaller
	}
	if s.log != nil {
		s.logLine(rec, caller)
	}
	if s.nc != nil {
		s.buf = AppendJSON(s.buf[:0], rec)
		if err := s.nc.Publish(s.subject(rec.CredentialID), s.buf); err != nil {
			s.pubErrs, s.pubErr = s.pubErrs+1, err
			s.warnPublish(false)
		}
	}
}

// logLine writes rec through the logger's handler, with the record's own
// time as the line's time: a second "time" attribute would make two
// "time" keys in a JSON line.
//
// Formatting six attributes costs the handler more than anything else the
// writer does, and records repeat: a busy credential's cache hits differ
// only in time and, over HTTP, in caller. So the line's attributes but the
// caller are given to the handler once, with WithAttrs, which slog's
// handlers format ahead, and the handler is kept for the next record like
// it; the caller is the record's one attribute. A JSON line holds the same
// keys either way; the caller comes last.
func (s *Sink) logLine(rec *tokenbroker.AuditRecord, caller string) {
	ctx := context.Background()
	if !s.handler.Enabled(ctx, slog.LevelInfo) {
		return
	}
	k := lineKey{rec.CredentialID, rec.Transport, rec.Outcome, rec.Source, rec.Action}
	h, ok := s.lineHandlers[k]
	if !ok {
		h = s.handler.WithAttrs([]slog.Attr{
			slog.String("credential_id", rec.CredentialID),
			slog.String("transport", rec.Transport),
			slog.String("outcome", rec.Outcome),
			slog.String("source", rec.Source),
			slog.String("action", rec.Action),
		})
		if len(s.lineHandlers) >= lineCacheSize {
			clear(s.lineHandlers)
		}
		s.lineHandlers[k] = h
	}
	r := slog.NewRecord(rec.Time, slog.LevelInfo, "audit", 0)
	r.AddAttrs(slog.String("caller", caller))
	_ = h.Handle(ctx, r) // a handler that cannot write has nowhere to say so
}

// lineKey is what an audit line holds but its time and caller.
type lineKey struct{ credentialID, transport, outcome, source, action string }

// subject is the audit subject of credential id, cached: building it costs
// an allocation, and most records are for a few busy credentials.
func (s *Sink) subject(id string) string {
	if subj, ok := s.subjectFor[id]; ok {
		return subj
	}
	token := id
	if !wire.ValidName(token) {
		token = NoCredential
	}
	subj := s.subjects.Audit(token)
	if len(s.subjectFor) >= subjectCacheSize {
		clear(s.subjectFor)
	}
	s.subjectFor[id] = subj
	return subj
}

// warnDrops logs how many records were dropped since the last warning, at
// most every warnEvery unless final.
func (s *Sink) warnDrops(final bool) {
	d := s.dropped.Load()
	if d == s.reported || s.log == nil || !final && time.Since(s.lastWarn) < warnEvery {
		return
	}
	s.log.Warn("audit records dropped: the audit queue was full; the trail has gaps",
		"dropped", d-s.reported, "dropped_total", d)
	s.reported, s.lastWarn = d, time.Now()
}

// warnPublish logs failed publishes, at most every warnEvery unless final.
func (s *Sink) warnPublish(final bool) {
	if s.pubErrs == 0 || s.log == nil || !final && time.Since(s.lastPubErr) < warnEvery {
		return
	}
	s.log.Warn("audit records not published on NATS", "failed", s.pubErrs, "err", s.pubErr)
	s.pubErrs, s.lastPubErr = 0, time.Now()
}

// AppendJSON appends rec to dst as the compact JSON document published on
// the audit subjects: {"time","credential_id","caller","transport",
// "outcome","source","action"}, time in RFC 3339 with nanoseconds in UTC,
// an empty caller as UnknownCaller, every field present. It is written by
// hand, without reflection, so that the writer keeps up with cache hits.
func AppendJSON(dst []byte, rec *tokenbroker.AuditRecord) []byte {
	caller := rec.Caller
	if caller == "" {
		caller = UnknownCaller
	}
	dst = append(dst, `{"time":"`...)
	dst = rec.Time.UTC().AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, `","credential_id":`...)
	dst = appendString(dst, rec.CredentialID)
	dst = append(dst, `,"caller":`...)
	dst = appendString(dst, caller)
	dst = append(dst, `,"transport":`...)
	dst = appendString(dst, rec.Transport)
	dst = append(dst, `,"outcome":`...)
	dst = appendString(dst, rec.Outcome)
	dst = append(dst, `,"source":`...)
	dst = appendString(dst, rec.Source)
	dst = append(dst, `,"action":`...)
	dst = appendString(dst, rec.Action)
	return append(dst, '}')
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string. strconv.AppendQuote is not JSON:
// it writes \x01 for a control character and \xff for a byte that is not
// UTF-8, which no JSON parser takes. Here control characters become \u00XX
// (or \n, \r, \t), invalid UTF-8 becomes U+FFFD, and U+2028 and U+2029 are
// escaped, as encoding/json does, for consumers that paste JSON into
// JavaScript.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\u202`...)
			dst = append(dst, hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// Compile-time check: a Sink is what the Router and the transports take.
var _ tokenbroker.Auditor = (*Sink)(nil)
