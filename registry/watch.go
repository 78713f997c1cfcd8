package registry

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tokenbroker/tokenbroker/wire"
)

// Update is one event of Watch: Entry is the credential Name now has, or
// nil when it was removed. The zero Update (no Name) marks the end of the
// initial values.
type Update struct {
	Name  string
	Entry *Entry
}

// Watch delivers the registry as every broker's writes change it: first
// every current entry, then the zero Update{}, which says the initial
// values are complete (a broker can then drop the credentials it served
// from the registry that are not among them), then every change as it
// happens: an Update with the new Entry for a put, with a nil Entry for a
// removal. Entries that cannot be read are skipped and logged by name, in
// the initial values and among the changes alike. The channel is closed
// when ctx ends or the connection closes; a consumer that misses the
// marker before the close has not seen the registry whole.
//
// The changes come from a watch that starts before the initial values are
// read, so no write in between is missed; a change already covered by the
// initial values is not delivered twice. The initial values are read as
// List reads them, so that an entry the server cannot read back (damaged
// on disk) does not hold up the marker.
func (r *Registry) Watch(ctx context.Context) (<-chan Update, error) {
	w, err := r.kv.WatchAll(ctx, jetstream.UpdatesOnly())
	if err != nil {
		return nil, fmt.Errorf("registry: watch bucket %s: %w", r.bucket, err)
	}
	var initial []Update
	sent := map[string]uint64{} // name -> revision of the initial value delivered
	err = r.scan(ctx, func(s scanned) error {
		if e := r.readable(s.key, s.value, s.rev); e != nil {
			initial = append(initial, Update{Name: s.key, Entry: e})
		}
		// An unreadable value counts as delivered too: the watch would
		// only log it a second time.
		sent[s.key] = s.rev
		return nil
	})
	if err != nil {
		stopWatcher(w)
		return nil, fmt.Errorf("registry: watch bucket %s: %w", r.bucket, err)
	}
	out := make(chan Update)
	go func() {
		defer close(out)
		defer stopWatcher(w)
		send := func(u Update) bool {
			select {
			case out <- u:
				return true
			case <-ctx.Done():
				return false
			}
		}
		for _, u := range initial {
			if !send(u) {
				return
			}
		}
		initial = nil
		if !send(Update{}) {
			return
		}
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e == nil {
					continue // an updates-only watch has no initial values to end
				}
				if rev, ok := sent[e.Key()]; ok {
					if e.Revision() <= rev {
						continue // in the initial values already, or older
					}
					delete(sent, e.Key()) // later revisions are all newer
				}
				u, ok := r.update(e)
				if ok && !send(u) {
					return
				}
			}
		}
	}()
	return out, nil
}

// update turns a change the watch saw into the Update to deliver, or false
// when there is none to deliver: a value that cannot be read (logged), or
// a key that is not a credential's name.
func (r *Registry) update(e jetstream.KeyValueEntry) (Update, bool) {
	switch e.Operation() {
	case jetstream.KeyValueDelete, jetstream.KeyValuePurge:
		if !wire.ValidName(e.Key()) {
			return Update{}, false
		}
		return Update{Name: e.Key()}, true
	}
	entry := r.readable(e.Key(), e.Value(), e.Revision())
	if entry == nil {
		return Update{}, false
	}
	return Update{Name: e.Key(), Entry: entry}, true
}

// stopWatcher stops w and drains its channel until the client closes it:
// the client's delivery goroutine may be blocked sending to a full channel
// and would otherwise never exit.
func stopWatcher(w jetstream.KeyWatcher) {
	_ = w.Stop()
	for range w.Updates() {
	}
}
