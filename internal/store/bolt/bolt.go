// Package bolt is the embedded store backend: one bbolt file per node.
//
// Layout (all buckets at the top level of the file):
//
//	meta           "version" → format version (1 byte)
//	sessions       id → encoded store.Session (see codec.go)
//	user_sessions  user + 0x00 + id → empty (per-user index)
//	kv             key → 8-byte big-endian expiry (unix nanos, 0 = none) + value
//	expiry         8-byte big-endian expiry + kind byte + key → empty
//
// The expiry index holds one entry for every record that can expire (every
// session, at its ExpiresAt, and every key with a TTL or counter window), so
// Sweep finds expired records with a cursor scan from the start of the index
// up to now instead of reading every record. Every write updates the records
// and both indexes in the same transaction.
//
// A bbolt file can be open only once at a time (it takes a file lock): a
// second Open of the same path waits at most Options.Timeout and then fails.
// Share one *DB between users of the same file.
package bolt

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/bbolt"

	"github.com/twostep-auth/twostep/internal/store"
)

const (
	// MaxKeyLen is the longest key (and session ID or user name) accepted,
	// in bytes.
	MaxKeyLen = store.MaxKeyLen
	// MaxValueLen is the largest value (or encoded session) accepted, in
	// bytes.
	MaxValueLen = store.MaxValueLen
	// DefaultTimeout is how long Open waits for the file lock when
	// Options.Timeout is zero.
	DefaultTimeout = time.Second
	// DefaultSweepBatch is how many expired records Sweep deletes per write
	// transaction: at a million records a deletion costs tens of
	// microseconds, so a batch holds the write lock for tens of
	// milliseconds (bench/scale).
	DefaultSweepBatch = 1000

	formatVersion = 1
)

// ErrInvalid is wrapped by the errors returned for records or arguments that
// cannot be stored (empty ID or user, invalid state, oversized key, ...).
var ErrInvalid = store.ErrInvalid

// ErrCorrupt is wrapped by the errors returned when a stored record cannot be
// decoded. Such a record is never returned as valid.
var ErrCorrupt = errors.New("bolt: corrupt record")

var (
	bucketMeta         = []byte("meta")
	bucketSessions     = []byte("sessions")
	bucketUserSessions = []byte("user_sessions")
	bucketKV           = []byte("kv")
	bucketExpiry       = []byte("expiry")

	keyVersion = []byte("version")
)

// Options configures Open.
type Options struct {
	// Timeout is how long Open waits for the file lock held by another open
	// of the same file (another process, or a *DB in this process that was
	// not closed). Zero or negative means DefaultTimeout. Open never waits
	// forever.
	Timeout time.Duration
	// NoSync skips fsync after each commit. Only for tests: a crash can lose
	// or corrupt data.
	NoSync bool
}

// mapAhead is the least that Open maps of a store file: 1 GiB of address
// space on 64-bit platforms that map past the end of a file. Windows
// cannot (bbolt would make the file that large at once), nor can 32-bit
// address spaces spare it; there it is 0 and bbolt maps the file as it
// grows.
var mapAhead = func() int {
	if strconv.IntSize < 64 || runtime.GOOS == "windows" {
		return 0
	}
	return 1 << 30
}()

// initialMap is what Open asks bbolt to map of the file at path:
// mapAhead, or twice the file's size when that is more, so that a large
// store has as much room to grow before its first remap.
func initialMap(path string) int {
	if mapAhead == 0 {
		return 0
	}
	if fi, err := os.Stat(path); err == nil && fi.Size() > int64(mapAhead)/2 && fi.Size() < 1<<45 {
		return int(2 * fi.Size())
	}
	return mapAhead
}

// DB is a store.Store on a bbolt file. It is safe for concurrent use.
type DB struct {
	bdb  *bbolt.DB
	path string

	closed atomic.Bool
	mu     sync.Mutex // orders StartSweeper's wg.Add against Close
	done   chan struct{}
	wg     sync.WaitGroup

	sweepBatch int
}

var _ store.Store = (*DB)(nil)

// Open opens (creating if needed) the store file at path. Missing parent
// directories are created with mode 0700 and a new file with mode 0600. If
// the file is locked by another open, Open fails after opts.Timeout.
func Open(path string, opts Options) (*DB, error) {
	if path == "" {
		return nil, fmt.Errorf("bolt: open: empty path: %w", ErrInvalid)
	}
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("bolt: open %s: %w", path, err)
	}
	bdb, err := bbolt.Open(path, 0o600, &bbolt.Options{
		Timeout: timeout,
		NoSync:  opts.NoSync,
		// As etcd runs bbolt: the free-page list lives in memory and is
		// rebuilt by scanning the file at open, rather than rewritten on
		// every commit. After a sweep frees many pages, writing the list
		// made each commit several times slower (bench/scale).
		NoFreelistSync: true,
		FreelistType:   bbolt.FreelistMapType,
		// Map ahead of the file, so that a long read transaction (a
		// backup streaming to a slow client) does not hold up the
		// writes that make the file grow: bbolt can only remap a growing
		// file while no read transaction is open. It also spares the
		// request path the remaps themselves (each one stops every
		// reader). Address space only: the file still grows as written.
		InitialMmapSize: initialMap(path),
	})
	if err != nil {
		if errors.Is(err, bbolt.ErrTimeout) {
			return nil, fmt.Errorf("bolt: open %s: file is locked by another open of the same file (another process, or a store in this process that was not closed); gave up after %s: %w", path, timeout, err)
		}
		return nil, fmt.Errorf("bolt: open %s: %w", path, err)
	}
	err = bdb.Update(func(tx *bbolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		switch v := meta.Get(keyVersion); {
		case v == nil:
			if err := meta.Put(keyVersion, []byte{formatVersion}); err != nil {
				return err
			}
		case len(v) != 1 || v[0] != formatVersion:
			return fmt.Errorf("unsupported store format version %v (this build reads %d)", v, formatVersion)
		}
		for _, name := range [][]byte{bucketSessions, bucketUserSessions, bucketKV, bucketExpiry} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		bdb.Close()
		return nil, fmt.Errorf("bolt: open %s: %w", path, err)
	}
	return &DB{bdb: bdb, path: path, done: make(chan struct{}), sweepBatch: DefaultSweepBatch}, nil
}

// Path returns the file the store was opened on.
func (db *DB) Path() string { return db.path }

// Close stops the sweepers, waits for them and for running transactions, and
// closes the file. Later calls to any method return store.ErrClosed; Close
// itself may be called again and then returns nil.
func (db *DB) Close() error {
	db.mu.Lock()
	if db.closed.Load() {
		db.mu.Unlock()
		return nil
	}
	db.closed.Store(true)
	close(db.done)
	db.mu.Unlock()
	db.wg.Wait()
	if err := db.bdb.Close(); err != nil {
		return fmt.Errorf("bolt: close %s: %w", db.path, err)
	}
	return nil
}

// Ping runs a read transaction.
func (db *DB) Ping(ctx context.Context) error {
	if err := db.check(ctx); err != nil {
		return err
	}
	return db.view(func(tx *bbolt.Tx) error {
		if tx.Bucket(bucketSessions) == nil {
			return fmt.Errorf("bolt: ping %s: sessions bucket missing", db.path)
		}
		return nil
	})
}

// check is the prelude of every method: closed store or finished context.
func (db *DB) check(ctx context.Context) error {
	if db.closed.Load() {
		return store.ErrClosed
	}
	if ctx != nil {
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return nil
}

// view runs fn in a read transaction, mapping bbolt's closed error.
func (db *DB) view(fn func(*bbolt.Tx) error) error {
	return mapErr(db.bdb.View(fn))
}

// update runs fn in a write transaction, mapping bbolt's closed error.
func (db *DB) update(fn func(*bbolt.Tx) error) error {
	return mapErr(db.bdb.Update(fn))
}

func mapErr(err error) error {
	if errors.Is(err, bbolt.ErrDatabaseNotOpen) {
		return store.ErrClosed
	}
	return err
}
