package filewatch

import (
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// DefaultInterval is the poll interval when Options.Interval is not set:
// a rotated secret is in use within a second, for a few stat calls.
const DefaultInterval = time.Second

const (
	// racyWindow is how long after a file's modification time its
	// metadata alone cannot prove it unchanged: a rewrite within the same
	// timestamp tick keeps the same mtime. Two seconds covers FAT's
	// granularity; the extra second allows for a file server's clock
	// being a little ahead of ours.
	racyWindow = 3 * time.Second

	// maxHashed bounds what one poll reads of a file. Secrets, certificates
	// and keys are far smaller; a larger file's tail is covered by its size
	// and mtime only.
	maxHashed = 1 << 20

	// attempts bounds how often one path is looked at again in a poll when
	// it changed while being looked at, so that a swap in progress is
	// reported once, as its end state, rather than half-seen.
	attempts = 3
)

// Options configure a Watcher.
type Options struct {
	// Interval between polls in Run; DefaultInterval when zero or negative.
	Interval time.Duration

	// OnChange is called by Run with the watched paths that changed
	// (including those that appeared or disappeared) since the previous
	// poll, sorted. It is called from Run's goroutine and never concurrently
	// with itself, even if Run is running more than once; it may call Set.
	// Polling waits while it runs. Nil means Run only keeps the baseline
	// current.
	OnChange func(paths []string)

	// Logger receives one line per change, naming the path and never the
	// contents; nil discards.
	Logger *slog.Logger
}

// Watcher polls a set of paths for changes. Its methods are safe for
// concurrent use.
type Watcher struct {
	interval time.Duration
	onChange func([]string)
	log      *slog.Logger

	// mu serialises polls and Set, so that a path's baseline is compared
	// and replaced by one of them at a time and no change is reported twice
	// or lost between them. It is held while stating, never while calling
	// OnChange, which may call Set.
	mu    sync.Mutex
	files map[string]state

	// cbMu keeps OnChange from running concurrently with itself.
	cbMu sync.Mutex
}

// New returns a Watcher watching nothing; call Set, then Run.
func New(o Options) *Watcher {
	w := &Watcher{
		interval: o.Interval,
		onChange: o.OnChange,
		log:      o.Logger,
		files:    map[string]state{},
	}
	if w.interval <= 0 {
		w.interval = DefaultInterval
	}
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	return w
}

// Set replaces the watched paths. A path newly added is looked at now, and
// its state then is its baseline, so adding it reports nothing; a path that
// stays keeps its baseline, so a change not yet reported is still reported
// by the next poll; a removed path is forgotten. Duplicates count once. Paths
// are reported exactly as given here.
func (w *Watcher) Set(paths []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	next := make(map[string]state, len(paths))
	for _, p := range paths {
		if _, dup := next[p]; dup {
			continue
		}
		if s, ok := w.files[p]; ok {
			next[p] = s
			continue
		}
		s := observe(p, nil)
		s.settle()
		next[p] = s
	}
	w.files = next
}

// Check polls once, now, and returns the watched paths that changed since
// the previous poll (by Check or Run), sorted, or nil. It does not call
// OnChange: the caller acts on what it returns, and Run will not report
// those changes again. Tests use it, and so can a reload on SIGHUP that
// wants to know which files changed.
func (w *Watcher) Check() []string {
	return w.poll()
}

// Run polls every Interval until ctx ends, calling OnChange with what each
// poll found changed. Changes found by a poll that ends after ctx does are
// not passed to OnChange.
func (w *Watcher) Run(ctx context.Context) {
	t := time.NewTicker(w.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		changed := w.poll()
		if len(changed) == 0 || w.onChange == nil || ctx.Err() != nil {
			continue
		}
		w.notify(changed)
	}
}

func (w *Watcher) notify(changed []string) {
	w.cbMu.Lock()
	defer w.cbMu.Unlock()
	w.onChange(changed)
}

// poll looks at every watched path once, reports those that changed and
// makes what it saw the new baseline.
func (w *Watcher) poll() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var changed []string
	for p, old := range w.files {
		s := observe(p, &old)
		if differs(old, s) {
			changed = append(changed, p)
			w.logChange(p, old, s)
		}
		s.settle()
		w.files[p] = s
	}
	slices.Sort(changed)
	return changed
}

func (w *Watcher) logChange(path string, old, s state) {
	switch {
	case old.exists && !s.exists:
		if errors.Is(s.err, fs.ErrNotExist) {
			w.log.Info("watched file disappeared", "path", path)
		} else {
			w.log.Warn("watched file cannot be read", "path", path, "err", s.err)
		}
	case !old.exists && s.exists:
		w.log.Info("watched file appeared", "path", path)
	default:
		w.log.Info("watched file changed", "path", path)
	}
}

// state is what one poll saw of a path.
type state struct {
	exists bool
	err    error // why it does not exist, for the log

	target string      // the path with its symlinks resolved
	mode   fs.FileMode // type bits only
	hasID  bool
	dev    uint64
	ino    uint64
	size   int64
	mtime  time.Time

	// racy is true when the mtime was too recent, at the time of the stat,
	// to rule out a later rewrite within the same tick. The sum is kept in
	// the baseline only while the baseline is racy.
	racy   bool
	hasSum bool
	sum    [sha256.Size]byte
}

// sameMeta reports whether a and b agree on everything but contents.
func sameMeta(a, b state) bool {
	if a.exists != b.exists {
		return false
	}
	if !a.exists {
		return true
	}
	return a.target == b.target && a.mode == b.mode &&
		a.hasID == b.hasID && a.dev == b.dev && a.ino == b.ino &&
		a.size == b.size && a.mtime.Equal(b.mtime)
}

// differs reports whether s, the state seen now, is a change from the
// baseline old.
func differs(old, s state) bool {
	if !sameMeta(old, s) {
		return true
	}
	return old.hasSum && s.hasSum && old.sum != s.sum
}

// settle makes s fit to be a baseline: once its mtime is old enough that
// any later write must change it, the sum is no longer needed, and files
// are not read again until their metadata changes.
func (s *state) settle() {
	if !s.racy {
		s.hasSum, s.sum = false, [sha256.Size]byte{}
	}
}

// observe looks at path, taking again a look that changed under it (a swap
// between resolving the symlinks and the stat, or a replacement between the
// stat and the read), up to a bound. prev is the baseline, or nil.
func observe(path string, prev *state) state {
	var s state
	for range attempts {
		var stable bool
		if s, stable = observeOnce(path, prev); stable {
			break
		}
	}
	return s
}

func observeOnce(path string, prev *state) (state, bool) {
	// The clock is read before the stat, so that a file written just after
	// it counts as racy rather than not.
	now := time.Now()
	target, terr := filepath.EvalSymlinks(path)
	fi, err := os.Stat(path)
	if err != nil {
		return state{err: err}, terr != nil
	}
	s := fromInfo(fi)
	s.target = target
	s.racy = now.Sub(s.mtime) < racyWindow

	// Hash while the mtime cannot vouch for the contents, and once more
	// when a racy baseline looks unchanged, to compare with its sum.
	needSum := s.racy || (prev != nil && prev.hasSum && sameMeta(*prev, s))
	if fi.Mode().IsRegular() && needSum {
		sum, same, err := hashFile(path, s)
		switch {
		case err != nil:
			// Unreadable (permissions): compare metadata only.
		case !same:
			return s, false
		default:
			s.sum, s.hasSum = sum, true
		}
	}
	target2, terr2 := filepath.EvalSymlinks(path)
	return s, terr == nil && terr2 == nil && target == target2
}

func fromInfo(fi fs.FileInfo) state {
	s := state{
		exists: true,
		mode:   fi.Mode().Type(),
		size:   fi.Size(),
		mtime:  fi.ModTime(),
	}
	s.dev, s.ino, s.hasID = fileID(fi)
	return s
}

// hashFile hashes at most maxHashed bytes of path. same is false when the
// file opened is not the one want describes, having been replaced or
// written since the stat.
func hashFile(path string, want state) (sum [sha256.Size]byte, same bool, err error) {
	f, err := os.Open(path)
	if err != nil {
		return sum, false, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return sum, false, err
	}
	got := fromInfo(fi)
	got.target = want.target
	if !sameMeta(got, want) {
		return sum, false, nil
	}
	h := sha256.New()
	if _, err := io.CopyN(h, f, maxHashed); err != nil && err != io.EOF {
		return sum, false, err
	}
	h.Sum(sum[:0])
	return sum, true, nil
}
