package users

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"go.uber.org/zap"
)

const (
	// pollInterval is how often Watch looks at the file even without a
	// change notification.
	pollInterval = 2 * time.Second
	// settleDelay lets a burst of change notifications (an editor writing a
	// file in several steps) end before the file is read.
	settleDelay = 100 * time.Millisecond
)

// File is a users file that follows its changes. DB always returns the last
// copy that loaded without error. A File is safe for concurrent use.
type File struct {
	path string
	log  *zap.Logger
	cur  atomic.Pointer[DB]

	// mu serialises loads and guards what follows.
	mu        sync.Mutex
	goodSum   [sha256.Size]byte // content of cur
	badSum    [sha256.Size]byte // content the watcher last refused (and logged)
	hasBad    bool
	readErr   string      // last read error the watcher logged
	pending   string      // problem seen once, logged if seen again
	pendingAt time.Time   // when pending was first seen
	seen      os.FileInfo // the file as last read
	callbacks []func(old, new *DB)

	// Set before Watch; tests shorten them.
	poll     time.Duration
	settle   time.Duration
	noNotify bool // poll only

	life    sync.Mutex
	started bool
	closed  bool
	cancel  context.CancelFunc
	done    chan struct{}
}

// Open reads and parses the users file at path. It fails if the file is
// missing or invalid. log may be nil.
func Open(path string, log *zap.Logger) (*File, error) {
	if log == nil {
		log = zap.NewNop()
	}
	f := &File{path: path, log: log, poll: pollInterval, settle: settleDelay}
	info, data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	db, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	f.cur.Store(db)
	f.goodSum = sha256.Sum256(data)
	f.seen = info
	return f, nil
}

// Path returns the path the File was opened with.
func (f *File) Path() string { return f.path }

// DB returns the current snapshot; never nil.
func (f *File) DB() *DB { return f.cur.Load() }

// OnChange registers fn to be called after each successful reload that
// changed the file's content, with the snapshots before and after. Callbacks
// run one at a time, in the order of the reloads, on the goroutine that
// reloaded; they must not call Reload.
func (f *File) OnChange(fn func(old, new *DB)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.callbacks = append(f.callbacks, fn)
}

// Reload reads the file now. On error (missing, unreadable or invalid file)
// the last good copy stays in use and the error is returned.
func (f *File) Reload() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	info, data, err := readFile(f.path)
	if err != nil {
		return err
	}
	f.seen = info
	return f.apply(data, sha256.Sum256(data))
}

// apply parses data and, if it is valid and new, makes it current. f.mu is
// held.
func (f *File) apply(data []byte, sum [sha256.Size]byte) error {
	if sum == f.goodSum {
		return nil
	}
	db, err := Parse(data)
	if err != nil {
		return fmt.Errorf("%s: %w", f.path, err)
	}
	old := f.cur.Swap(db)
	f.goodSum, f.hasBad = sum, false
	f.log.Info("users file reloaded", zap.String("path", f.path), zap.Int("users", db.Len()))
	for _, fn := range f.callbacks {
		fn(old, db)
	}
	return nil
}

// readFile reads a users file, refusing one that is too large, and returns
// what it read with the file's metadata at that time.
func readFile(path string) (os.FileInfo, []byte, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer fh.Close()
	info, err := fh.Stat()
	if err != nil {
		return nil, nil, err
	}
	if !info.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("%s: not a regular file", path)
	}
	data, err := io.ReadAll(io.LimitReader(fh, maxFileSize+1))
	if err != nil {
		return nil, nil, err
	}
	if len(data) > maxFileSize {
		return nil, nil, fmt.Errorf("%s: larger than %d MiB", path, maxFileSize>>20)
	}
	return info, data, nil
}

// Watch follows the file until ctx is done or Close is called: it watches
// the file's directory (so that editors that rename a new file over it, and
// symlink swaps such as Kubernetes ConfigMap updates, are seen) and also
// looks at the file every 2 seconds in case notifications are lost or
// unavailable. A change is loaded as Reload does; when the new content is
// invalid, the last good copy stays in use and the reason is logged once
// (Warn, with the path). Watch returns at once; calling it again does
// nothing.
func (f *File) Watch(ctx context.Context) {
	f.life.Lock()
	defer f.life.Unlock()
	if f.started || f.closed {
		return
	}
	f.started = true
	ctx, f.cancel = context.WithCancel(ctx)
	f.done = make(chan struct{})
	var w *fsnotify.Watcher
	if !f.noNotify {
		var err error
		w, err = fsnotify.NewWatcher()
		if err != nil {
			f.log.Warn("cannot watch users file for changes; polling only", zap.String("path", f.path), zap.Error(err))
			w = nil
		} else {
			for _, dir := range f.watchDirs() {
				if err := w.Add(dir); err != nil {
					f.log.Warn("cannot watch users file directory; polling", zap.String("path", f.path), zap.String("dir", dir), zap.Error(err))
				}
			}
		}
	}
	go f.loop(ctx, w)
}

// watchDirs returns the directory of the path and, when the path is a
// symlink elsewhere, the directory of its target.
func (f *File) watchDirs() []string {
	dirs := []string{filepath.Dir(f.path)}
	if target, err := filepath.EvalSymlinks(f.path); err == nil {
		if d := filepath.Dir(target); d != dirs[0] {
			dirs = append(dirs, d)
		}
	}
	return dirs
}

// loop is Watch's goroutine; w is nil when notifications are unavailable.
func (f *File) loop(ctx context.Context, w *fsnotify.Watcher) {
	defer close(f.done)
	var (
		events <-chan fsnotify.Event
		errs   <-chan error
	)
	if w != nil {
		defer w.Close()
		events, errs = w.Events, w.Errors
	}
	ticker := time.NewTicker(f.poll)
	defer ticker.Stop()
	// One look f.settle after the first of a burst of notifications (not
	// after the last: a busy directory would postpone it forever).
	settle := time.NewTimer(time.Hour)
	settle.Stop()
	defer settle.Stop()
	armed := false
	arm := func() {
		if !armed {
			armed = true
			settle.Reset(f.settle)
		}
	}

	if f.check() { // whatever happened between Open and Watch
		arm()
	}
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			arm()
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			f.log.Warn("watching users file", zap.String("path", f.path), zap.Error(err))
			arm()
		case <-settle.C:
			armed = false
			if f.check() {
				arm()
			}
		case <-ticker.C:
			if f.statChanged() && f.check() {
				arm()
			}
		}
	}
}

// statChanged reports whether the file looks different from when it was
// last read: another file, size or modification time, or unreadable.
func (f *File) statChanged() bool {
	info, err := os.Stat(f.path)
	f.mu.Lock()
	defer f.mu.Unlock()
	if err != nil || f.seen == nil {
		return true
	}
	return !os.SameFile(info, f.seen) || info.Size() != f.seen.Size() || !info.ModTime().Equal(f.seen.ModTime())
}

// check loads the file if its content changed. A problem (unreadable or
// invalid file) is logged once, and only when a second look, after
// f.settle, finds the same problem: an editor writing the file in place
// shows a half-written file for a moment. check returns true when it wants
// that second look.
func (f *File) check() (retry bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	info, data, err := readFile(f.path)
	if err != nil {
		f.seen = nil
		msg := err.Error()
		if msg == f.readErr {
			return false // already logged
		}
		if !f.confirm("read: " + msg) {
			return true
		}
		f.readErr = msg
		f.log.Warn("cannot read users file; keeping the last good copy", zap.String("path", f.path), zap.Error(err))
		return false
	}
	f.readErr = ""
	f.seen = info
	sum := sha256.Sum256(data)
	switch {
	case sum == f.goodSum:
		f.pending = ""
		f.hasBad = false // back to the good copy: log the bad one again if it returns
		return false
	case f.hasBad && sum == f.badSum:
		return false // already logged
	}
	err = f.apply(data, sum)
	if err == nil {
		f.pending = ""
		return false
	}
	if !f.confirm(fmt.Sprintf("invalid: %x", sum)) {
		return true
	}
	f.badSum, f.hasBad = sum, true
	f.log.Warn("users file is invalid; keeping the last good copy", zap.String("path", f.path), zap.Error(err))
	return false
}

// confirm reports whether problem was already the problem of a look at
// least f.settle ago, and remembers it for the next. f.mu is held.
func (f *File) confirm(problem string) bool {
	if f.pending == problem && time.Since(f.pendingAt) >= f.settle {
		f.pending = ""
		return true
	}
	if f.pending != problem {
		f.pending, f.pendingAt = problem, time.Now()
	}
	return false
}

// Close stops Watch and waits for it to end. DB keeps working.
func (f *File) Close() error {
	f.life.Lock()
	if f.closed {
		f.life.Unlock()
		return nil
	}
	f.closed = true
	started := f.started
	f.life.Unlock()
	if started {
		f.cancel()
		<-f.done
	}
	return nil
}
