package registry

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// scanBatch is how many entries one pull request of a scan asks for.
const scanBatch = 256

// scanned is one entry as a scan reads it from the bucket.
type scanned struct {
	key   string
	value []byte
	rev   uint64
}

// scan passes the current value of every key of the bucket to fn, in
// revision order, skipping deleted keys, and stops at fn's first error. It
// reads the entries there were when it began (what the server then counted
// as pending); a write made while it runs may or may not be among them.
func (r *Registry) scan(ctx context.Context, fn func(scanned) error) error {
	return r.scanKeys(ctx, ">", fn)
}

// scanKeys is scan of the keys that match filter.
//
// It reads through an ephemeral pull consumer, asking for batches with
// no_wait, and also ends when the server answers that nothing more is
// there. A KV watcher (jetstream's Watch, ListKeys) instead ends its initial
// values only once the server's count of pending messages reaches zero, and
// a message the server cannot read back, damaged on disk, is counted but
// never delivered: the watcher then waits until its context ends, and one
// flipped bit would hold up every broker's start. Such messages are logged
// as a count (the server does not say which key they were).
func (r *Registry) scanKeys(ctx context.Context, filter string, fn func(scanned) error) error {
	var seen uint64 // messages delivered, deletions included
	stream := "KV_" + r.bucket
	prefix := "$KV." + r.bucket + "."
	cons, err := r.js.CreateConsumer(ctx, stream, jetstream.ConsumerConfig{
		DeliverPolicy: jetstream.DeliverLastPerSubjectPolicy,
		FilterSubject: prefix + filter,
		AckPolicy:     jetstream.AckNonePolicy,
		// Deleted below; the server removes it on its own should that
		// fail or this process die first.
		InactiveThreshold: time.Minute,
		MemoryStorage:     true,
		Replicas:          1,
	})
	if err != nil {
		return err
	}
	// An empty bucket still gets one pull, which the server answers at
	// once: so that Open's access check covers it.
	name, want := cons.CachedInfo().Name, cons.CachedInfo().NumPending
	defer func() {
		// Under ctx, so that a refused delete fails Open like any other
		// refusal; once ctx has ended the server removes the consumer.
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_ = r.js.DeleteConsumer(dctx, stream, name)
	}()
	undelivered := func() {
		if n := want - min(seen, want); n > 0 {
			r.log.Warn("the NATS server holds credentials in the registry that it cannot read back (damaged on disk?); they are treated as absent",
				"bucket", r.bucket, "entries", n)
		}
	}

	nc := r.js.Conn()
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return err
	}
	defer func() { _ = sub.Unsubscribe() }()
	next := apiPrefix(r.js) + "CONSUMER.MSG.NEXT." + stream + "." + name
	request := fmt.Appendf(nil, `{"batch":%d,"no_wait":true}`, scanBatch)
	retry := 10 * time.Millisecond
	for {
		if err := nc.PublishRequest(next, inbox, request); err != nil {
			return err
		}
		for got := 0; got < scanBatch; {
			m, err := sub.NextMsgWithContext(ctx)
			if errors.Is(err, nats.ErrNoResponders) {
				// On a cluster the consumer's leader may not listen yet
				// right after the consumer was created: ask again.
				select {
				case <-ctx.Done():
					return err
				case <-time.After(retry):
				}
				retry = min(2*retry, time.Second)
				break
			}
			if err != nil {
				return err
			}
			if status := m.Header.Get(statusHdr); status != "" {
				switch status {
				case "404", "408": // nothing more: some could not be read
					undelivered()
					return nil
				case "100": // a heartbeat; none is asked for
					continue
				}
				return fmt.Errorf("status %s %s", status, m.Header.Get(descrHdr))
			}
			got++
			seen++
			md, err := m.Metadata()
			if err != nil {
				return err
			}
			key, ok := strings.CutPrefix(m.Subject, prefix)
			if op := m.Header.Get(kvOperationHdr); ok && op != "DEL" && op != "PURGE" {
				err := fn(scanned{key: key, value: m.Data, rev: md.Sequence.Stream})
				if err != nil {
					return err
				}
			}
			if seen >= want {
				return nil // every message counted at the start
			}
		}
		// A full batch, or no answer to retry: ask (again).
	}
}

// Headers of the server's status messages, which end a pull request.
const (
	statusHdr = "Status"
	descrHdr  = "Description"
)

// kvOperationHdr is the header by which a KV bucket marks a deletion
// ("DEL") or purge ("PURGE") of a key.
const kvOperationHdr = "KV-Operation"

// apiPrefix returns the JetStream API prefix js sends its requests to, with
// the final dot, for the one request the registry makes without the
// client's API (a scan's pull requests).
func apiPrefix(js jetstream.JetStream) string {
	o := js.Options()
	switch {
	case o.Domain != "":
		return "$JS." + o.Domain + ".API."
	case o.APIPrefix != "":
		return strings.TrimSuffix(o.APIPrefix, ".") + "."
	}
	return jetstream.DefaultAPIPrefix
}
