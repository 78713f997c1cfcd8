package filewatch_test

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/filewatch"
)

// wait bounds how long a test waits for Run to report something; a poll
// every 10ms makes it a matter of milliseconds unless something is wrong.
const wait = 10 * time.Second

func write(t *testing.T, path, contents string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(contents), 0o600); err != nil {
		t.Fatal(err)
	}
}

// setMtime pins a file's modification time, so that a test can make a
// replacement or rewrite indistinguishable by mtime, as on a filesystem
// with coarse timestamps.
func setMtime(t *testing.T, path string, mtime time.Time) {
	t.Helper()
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

func expect(t *testing.T, w *filewatch.Watcher, want ...string) {
	t.Helper()
	if got := w.Check(); !slices.Equal(got, want) {
		t.Fatalf("Check() = %q, want %q", got, want)
	}
}

// TestInPlaceRewrite: the same size, the same mtime, the same inode; only
// the contents tell.
func TestInPlaceRewrite(t *testing.T) {
	p := filepath.Join(t.TempDir(), "password")
	write(t, p, "secret-1")
	now := time.Now().Truncate(time.Second)
	setMtime(t, p, now)
	w := filewatch.New(filewatch.Options{})
	w.Set([]string{p})

	write(t, p, "secret-2")
	setMtime(t, p, now)
	expect(t, w, p)
	expect(t, w)

	// And once more, so the baseline after a change is racy too.
	write(t, p, "secret-3")
	setMtime(t, p, now)
	expect(t, w, p)
	expect(t, w)
}

// TestOldFileRewritten: a file last written long ago is not read on every
// poll, and a rewrite moves its mtime.
func TestOldFileRewritten(t *testing.T) {
	p := filepath.Join(t.TempDir(), "password")
	write(t, p, "secret-1")
	setMtime(t, p, time.Now().Add(-time.Hour))
	w := filewatch.New(filewatch.Options{})
	w.Set([]string{p})
	expect(t, w)
	write(t, p, "secret-2")
	expect(t, w, p)
	expect(t, w)
}

// TestRenameOver: a temporary file of the same size and mtime renamed over
// the watched one.
func TestRenameOver(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "client_secret")
	write(t, p, "secret-1")
	mtime := time.Now().Add(-time.Hour)
	setMtime(t, p, mtime)
	w := filewatch.New(filewatch.Options{})
	w.Set([]string{p})

	tmp := filepath.Join(dir, ".client_secret.tmp")
	write(t, tmp, "secret-2")
	setMtime(t, tmp, mtime)
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
	expect(t, w, p)
	expect(t, w)
}

// TestKubernetesSwap builds the layout the kubelet writes for a mounted
// secret and swaps it the way the kubelet does.
func TestKubernetesSwap(t *testing.T) {
	dir := t.TempDir()
	mtime := time.Now().Add(-time.Hour)
	v1 := filepath.Join(dir, "..2026_12_02_v1")
	if err := os.Mkdir(v1, 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(v1, "password"), "secret-1")
	setMtime(t, filepath.Join(v1, "password"), mtime)
	symlink(t, "..2026_12_02_v1", filepath.Join(dir, "..data"))
	p := filepath.Join(dir, "password")
	symlink(t, filepath.Join("..data", "password"), p)

	w := filewatch.New(filewatch.Options{})
	w.Set([]string{p})
	expect(t, w)

	v2 := filepath.Join(dir, "..2026_12_02_v2")
	if err := os.Mkdir(v2, 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(v2, "password"), "secret-2")
	setMtime(t, filepath.Join(v2, "password"), mtime)
	expect(t, w) // the new directory alone changes nothing
	symlink(t, "..2026_12_02_v2", filepath.Join(dir, "..data_tmp"))
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(v1); err != nil {
		t.Fatal(err)
	}
	expect(t, w, p)
	expect(t, w)
	if b, err := os.ReadFile(p); err != nil || string(b) != "secret-2" {
		t.Fatalf("read %q, %v after the swap", b, err)
	}
}

func TestDisappearAndReappear(t *testing.T) {
	p := filepath.Join(t.TempDir(), "tls.key")
	write(t, p, "key-1")
	w := filewatch.New(filewatch.Options{})
	w.Set([]string{p})

	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	expect(t, w, p)
	expect(t, w)
	expect(t, w)
	write(t, p, "key-2")
	expect(t, w, p)
	expect(t, w)
}

// TestAbsentAtFirst: a path watched before its file exists is reported when
// the file appears, not when it is added.
func TestAbsentAtFirst(t *testing.T) {
	p := filepath.Join(t.TempDir(), "tls.crt")
	w := filewatch.New(filewatch.Options{})
	w.Set([]string{p})
	expect(t, w)
	write(t, p, "cert")
	expect(t, w, p)
	expect(t, w)
}

func TestNothingChanged(t *testing.T) {
	dir := t.TempDir()
	recent := filepath.Join(dir, "recent")
	write(t, recent, "secret") // racy: read on every Check, still no change
	old := filepath.Join(dir, "old")
	write(t, old, "secret")
	setMtime(t, old, time.Now().Add(-time.Hour))
	link := filepath.Join(dir, "link")
	symlink(t, "recent", link)
	w := filewatch.New(filewatch.Options{})
	w.Set([]string{recent, old, link, dir, filepath.Join(dir, "absent")})
	for range 5 {
		expect(t, w)
	}
}

func TestSet(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	write(t, a, "a-1")
	write(t, b, "b-1")
	w := filewatch.New(filewatch.Options{})
	w.Set([]string{a})

	write(t, b, "b-22") // not watched yet
	expect(t, w)
	w.Set([]string{a, b, b}) // b baselined as it is now
	expect(t, w)

	write(t, b, "b-333")
	w.Set([]string{b, a}) // b kept: its pending change is still reported
	expect(t, w, b)

	w.Set([]string{b}) // a forgotten
	write(t, a, "a-22")
	expect(t, w)
	w.Set([]string{a, b}) // a baselined anew, not compared with its old state
	expect(t, w)

	write(t, a, "a-333")
	write(t, b, "b-4444")
	expect(t, w, a, b) // sorted

	w.Set(nil)
	write(t, a, "a-4444")
	expect(t, w)
}

// TestCheckDoesNotCallOnChange: Check returns its changes; Run does not
// report them again.
func TestCheckDoesNotCallOnChange(t *testing.T) {
	p := filepath.Join(t.TempDir(), "password")
	write(t, p, "secret-1")
	w := filewatch.New(filewatch.Options{OnChange: func(paths []string) {
		t.Errorf("OnChange(%q) called by Check", paths)
	}})
	w.Set([]string{p})
	write(t, p, "secret-22")
	expect(t, w, p)
}

func TestRunReportsChanges(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "password")
	write(t, p, "secret-1")
	changes := make(chan []string, 16)
	w := filewatch.New(filewatch.Options{
		Interval: 10 * time.Millisecond,
		OnChange: func(paths []string) { changes <- paths },
	})
	w.Set([]string{p})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	next := func(want ...string) {
		t.Helper()
		select {
		case got := <-changes:
			if !slices.Equal(got, want) {
				t.Fatalf("OnChange(%q), want %q", got, want)
			}
		case <-time.After(wait):
			t.Fatalf("no OnChange(%q) within %v", want, wait)
		}
	}
	write(t, p, "secret-22")
	next(p)
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	next(p)
	write(t, p, "secret-333")
	next(p)
}

func TestRunStopsWithContext(t *testing.T) {
	w := filewatch.New(filewatch.Options{Interval: 10 * time.Millisecond})
	w.Set([]string{filepath.Join(t.TempDir(), "x")})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	cancel()
	select {
	case <-done:
	case <-time.After(wait):
		t.Fatal("Run did not return after its context ended")
	}
}

// TestOnChangeSerialised runs two Runs on one Watcher while the file keeps
// changing and Set is called alongside, and checks that OnChange never
// overlaps itself. OnChange calls Set too, as a reload that finds a new
// secret file would.
func TestOnChangeSerialised(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "password")
	other := filepath.Join(dir, "other")
	write(t, p, "x")
	var inFlight, calls atomic.Int32
	enough := make(chan struct{})
	var once sync.Once
	var w *filewatch.Watcher
	w = filewatch.New(filewatch.Options{
		Interval: time.Millisecond,
		OnChange: func([]string) {
			if inFlight.Add(1) != 1 {
				t.Error("OnChange called concurrently with itself")
			}
			for range 10 {
				runtime.Gosched()
			}
			w.Set([]string{p, other})
			inFlight.Add(-1)
			if calls.Add(1) >= 20 {
				once.Do(func() { close(enough) })
			}
		},
	})
	w.Set([]string{p})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() { w.Run(ctx) })
	}
	wg.Go(func() {
		for ctx.Err() == nil {
			w.Set([]string{p, other})
			runtime.Gosched()
		}
	})
	deadline := time.After(wait)
	for i := 0; ; i++ {
		select {
		case <-enough:
		case <-deadline:
			cancel()
			wg.Wait()
			t.Fatalf("only %d OnChange calls within %v", calls.Load(), wait)
		default:
			write(t, p, strings.Repeat("x", 1+i%64)) // the size changes every time
			runtime.Gosched()
			continue
		}
		break
	}
	cancel()
	wg.Wait()
}

// TestLogNamesPathsOnly: the log says which file changed, never what it
// holds.
func TestLogNamesPathsOnly(t *testing.T) {
	p := filepath.Join(t.TempDir(), "password")
	write(t, p, "hunter2-old")
	var logs bytes.Buffer
	w := filewatch.New(filewatch.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	w.Set([]string{p})
	write(t, p, "hunter2-new")
	expect(t, w, p)
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	expect(t, w, p)
	out := logs.String()
	if !strings.Contains(out, p) {
		t.Errorf("log does not name %s:\n%s", p, out)
	}
	if strings.Contains(out, "hunter2") {
		t.Errorf("log holds the contents:\n%s", out)
	}
}
