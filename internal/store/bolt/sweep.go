package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"time"

	"go.etcd.io/bbolt"

	"github.com/twostep-auth/twostep/internal/store"
)

// sweepStats describes one Sweep, for tests.
type sweepStats struct {
	batches int // write transactions
	visited int // expiry index entries read
	stale   int // index entries that pointed at nothing or at a live record
}

// Sweep deletes every record expired at now and returns how many. It reads
// only the expiry index entries up to now and deletes in batches of
// DefaultSweepBatch records per write transaction, so a large sweep does not
// hold the write lock for long. On error, the records deleted by the
// committed batches stay deleted and their number is returned with it.
func (db *DB) Sweep(ctx context.Context, now time.Time) (int, error) {
	n, _, err := db.sweep(ctx, now)
	return n, err
}

func (db *DB) sweep(ctx context.Context, now time.Time) (int, sweepStats, error) {
	var st sweepStats
	total := 0
	limit := uint64(expiryNanos(now))
	batch := db.sweepBatch
	if batch <= 0 {
		batch = DefaultSweepBatch
	}
	for {
		if err := db.check(ctx); err != nil {
			return total, st, err
		}
		var n int
		var more bool
		err := db.update(func(tx *bbolt.Tx) error {
			n, more = 0, false
			var keys [][]byte
			c := tx.Bucket(bucketExpiry).Cursor()
			for k, _ := c.First(); k != nil; k, _ = c.Next() {
				if len(k) >= 8 && binary.BigEndian.Uint64(k) > limit {
					break
				}
				if len(keys) == batch {
					more = true
					break
				}
				keys = append(keys, bytes.Clone(k))
			}
			st.batches++
			st.visited += len(keys)
			for _, k := range keys {
				deleted, err := sweepEntry(tx, k, limit)
				if err != nil {
					return err
				}
				if deleted {
					n++
				} else {
					st.stale++
				}
			}
			return nil
		})
		if err != nil {
			return total, st, err
		}
		total += n
		if !more {
			return total, st, nil
		}
	}
}

// sweepEntry handles one expiry index entry at or before limit: it deletes
// the record it names if that is expired (reporting true) and the entry
// itself in every case. An entry that names a live record (which consistent
// writes never leave behind) is replaced by the record's real entry.
func sweepEntry(tx *bbolt.Tx, k []byte, limit uint64) (bool, error) {
	eb := tx.Bucket(bucketExpiry)
	if err := eb.Delete(k); err != nil {
		return false, err
	}
	if len(k) < 9 {
		return false, nil
	}
	key := k[9:]
	switch k[8] {
	case kindSession:
		v := tx.Bucket(bucketSessions).Get(key)
		if v == nil {
			return false, nil
		}
		s, err := loadSession(v, key)
		if err != nil {
			// Unreadable, and its index entry says it expired: remove it.
			return true, deleteSessionTx(tx, key, nil)
		}
		exp := expiryNanos(s.ExpiresAt())
		if uint64(exp) > limit {
			return false, eb.Put(expiryKey(exp, kindSession, key), nil)
		}
		return true, deleteSessionTx(tx, key, s)
	case kindKV:
		kb := tx.Bucket(bucketKV)
		v := kb.Get(key)
		if v == nil {
			return false, nil
		}
		exp, err := kvExpiry(v)
		if err != nil {
			return true, kb.Delete(key)
		}
		if exp == 0 {
			return false, nil
		}
		if uint64(exp) > limit {
			return false, eb.Put(expiryKey(exp, kindKV, key), nil)
		}
		return true, deleteKVTx(tx, key)
	}
	return false, nil
}

// StartSweeper runs Sweep(ctx, now()) every interval in a background
// goroutine until ctx is done or the store is closed (Close waits for it).
// every <= 0 means one minute; now nil means time.Now. Errors other than
// the store closing or ctx ending go to onError if it is not nil. The first
// sweep runs one interval after the start.
func (db *DB) StartSweeper(ctx context.Context, every time.Duration, now func() time.Time, onError func(error)) {
	if every <= 0 {
		every = time.Minute
	}
	if now == nil {
		now = time.Now
	}
	if ctx == nil {
		ctx = context.Background()
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.closed.Load() {
		return
	}
	db.wg.Add(1)
	go func() {
		defer db.wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-db.done:
				return
			case <-t.C:
			}
			_, err := db.Sweep(ctx, now())
			if err != nil && onError != nil && !errors.Is(err, store.ErrClosed) && ctx.Err() == nil {
				onError(err)
			}
		}
	}()
}
