package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"go.etcd.io/bbolt"

	"github.com/twostep-auth/twostep/internal/store"
)

// ttlExpiry returns the expiry (unix nanos, 0 = never) of a value stored at
// now with ttl.
func ttlExpiry(ttl time.Duration, now time.Time) (int64, error) {
	switch {
	case ttl < 0:
		return 0, invalid("negative ttl %s", ttl)
	case ttl == 0:
		return 0, nil
	}
	return expiryNanos(now.Add(ttl)), nil
}

// checkWrite validates a write's key and value and returns its expiry.
func checkWrite(key string, value []byte, ttl time.Duration, now time.Time) (int64, error) {
	if err := store.ValidateKey(key); err != nil {
		return 0, err
	}
	if err := store.ValidateValue(value); err != nil {
		return 0, err
	}
	return ttlExpiry(ttl, now)
}

// expiredAt reports whether a record expiring at exp (0 = never) is expired
// at now.
func expiredAt(exp int64, now time.Time) bool {
	return exp != 0 && expiryNanos(now) >= exp
}

// liveKV returns the record under key if it is there and unexpired at now,
// else nil. A record too short to hold its expiry is an ErrCorrupt error.
func liveKV(b *bbolt.Bucket, key []byte, now time.Time) (v []byte, exp int64, err error) {
	v = b.Get(key)
	if v == nil {
		return nil, 0, nil
	}
	exp, err = kvExpiry(v)
	if err != nil {
		return nil, 0, fmt.Errorf("bolt: key %q: %w", key, err)
	}
	if expiredAt(exp, now) {
		return nil, 0, nil
	}
	return v, exp, nil
}

// putKVTx stores value under key expiring at exp (0 = never), replacing any
// previous record and its expiry index entry.
func putKVTx(tx *bbolt.Tx, key []byte, value []byte, exp int64) error {
	kb := tx.Bucket(bucketKV)
	eb := tx.Bucket(bucketExpiry)
	if old := kb.Get(key); len(old) >= 8 {
		if oldExp, err := kvExpiry(old); err == nil && oldExp != 0 && oldExp != exp {
			if err := eb.Delete(expiryKey(oldExp, kindKV, key)); err != nil {
				return err
			}
		}
	}
	if err := kb.Put(key, kvRecord(exp, value)); err != nil {
		return err
	}
	if exp == 0 {
		return nil
	}
	return eb.Put(expiryKey(exp, kindKV, key), nil)
}

// deleteKVTx removes the record under key and its expiry index entry.
func deleteKVTx(tx *bbolt.Tx, key []byte) error {
	kb := tx.Bucket(bucketKV)
	old := kb.Get(key)
	if old == nil {
		return nil
	}
	if exp, err := kvExpiry(old); err == nil && exp != 0 {
		if err := tx.Bucket(bucketExpiry).Delete(expiryKey(exp, kindKV, key)); err != nil {
			return err
		}
	}
	return kb.Delete(key)
}

// Get returns a copy of the value stored under key, or store.ErrNotFound if
// it is absent or expired at now.
func (db *DB) Get(ctx context.Context, key string, now time.Time) ([]byte, error) {
	if err := db.check(ctx); err != nil {
		return nil, err
	}
	if err := store.ValidateKey(key); err != nil {
		return nil, err
	}
	var out []byte
	err := db.view(func(tx *bbolt.Tx) error {
		v, _, err := liveKV(tx.Bucket(bucketKV), []byte(key), now)
		if err != nil {
			return err
		}
		if v == nil {
			return store.ErrNotFound
		}
		out = bytes.Clone(v[8:])
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Put stores a copy of value under key; ttl 0 keeps it until deleted. Keys
// are 1 to MaxKeyLen bytes, values at most MaxValueLen bytes; ttl must not be
// negative.
func (db *DB) Put(ctx context.Context, key string, value []byte, ttl time.Duration, now time.Time) error {
	if err := db.check(ctx); err != nil {
		return err
	}
	exp, err := checkWrite(key, value, ttl, now)
	if err != nil {
		return err
	}
	return db.update(func(tx *bbolt.Tx) error {
		return putKVTx(tx, []byte(key), value, exp)
	})
}

// Replace stores value under key only if a value unexpired at now is there,
// in one transaction; ErrNotFound otherwise.
func (db *DB) Replace(ctx context.Context, key string, value []byte, ttl time.Duration, now time.Time) error {
	if err := db.check(ctx); err != nil {
		return err
	}
	exp, err := checkWrite(key, value, ttl, now)
	if err != nil {
		return err
	}
	return db.update(func(tx *bbolt.Tx) error {
		k := []byte(key)
		v, _, err := liveKV(tx.Bucket(bucketKV), k, now)
		if err != nil {
			return err
		}
		if v == nil {
			return store.ErrNotFound
		}
		return putKVTx(tx, k, value, exp)
	})
}

// PutIfAbsent stores value unless a value unexpired at now exists, in one
// transaction. It returns (a copy of) the value now stored and whether this
// call created it.
func (db *DB) PutIfAbsent(ctx context.Context, key string, value []byte, ttl time.Duration, now time.Time) ([]byte, bool, error) {
	if err := db.check(ctx); err != nil {
		return nil, false, err
	}
	exp, err := checkWrite(key, value, ttl, now)
	if err != nil {
		return nil, false, err
	}
	var stored []byte
	var created bool
	err = db.update(func(tx *bbolt.Tx) error {
		kb := tx.Bucket(bucketKV)
		k := []byte(key)
		v, _, err := liveKV(kb, k, now)
		if err != nil {
			return err
		}
		if v != nil {
			stored, created = bytes.Clone(v[8:]), false
			return nil
		}
		stored, created = bytes.Clone(value), true
		if stored == nil {
			stored = []byte{}
		}
		return putKVTx(tx, k, value, exp)
	})
	if err != nil {
		return nil, false, err
	}
	return stored, created, nil
}

// Take returns the value under key and deletes it in one write transaction:
// of concurrent callers exactly one gets the value, the others
// store.ErrNotFound.
func (db *DB) Take(ctx context.Context, key string, now time.Time) ([]byte, error) {
	if err := db.check(ctx); err != nil {
		return nil, err
	}
	if err := store.ValidateKey(key); err != nil {
		return nil, err
	}
	var out []byte
	err := db.update(func(tx *bbolt.Tx) error {
		k := []byte(key)
		v, _, err := liveKV(tx.Bucket(bucketKV), k, now)
		if err != nil {
			return err
		}
		if v == nil {
			// Absent, or expired: an expired record goes now rather than at
			// the next sweep.
			if err := deleteKVTx(tx, k); err != nil {
				return err
			}
			return store.ErrNotFound
		}
		out = bytes.Clone(v[8:])
		return deleteKVTx(tx, k)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Delete removes key; deleting a missing key is not an error.
func (db *DB) Delete(ctx context.Context, key string) error {
	if err := db.check(ctx); err != nil {
		return err
	}
	if err := store.ValidateKey(key); err != nil {
		return err
	}
	return db.update(func(tx *bbolt.Tx) error {
		return deleteKVTx(tx, []byte(key))
	})
}

// Incr adds one to the counter under key and returns the new count and when
// its window ends, in one write transaction. If the counter is absent or its
// window ended at now, a new window [now, now+window) starts with count 1.
//
// Counters share the key space of Get/Put: Delete resets a counter, and the
// stored value is the count as 8 big-endian bytes. Incr on a key holding a
// value without an expiry or of another length fails.
func (db *DB) Incr(ctx context.Context, key string, window time.Duration, now time.Time) (int64, time.Time, error) {
	if err := db.check(ctx); err != nil {
		return 0, time.Time{}, err
	}
	if err := store.ValidateKey(key); err != nil {
		return 0, time.Time{}, err
	}
	if window <= 0 {
		return 0, time.Time{}, invalid("counter window %s", window)
	}
	var count, exp int64
	err := db.update(func(tx *bbolt.Tx) error {
		kb := tx.Bucket(bucketKV)
		k := []byte(key)
		v, oldExp, err := liveKV(kb, k, now)
		if err != nil {
			return err
		}
		if v == nil {
			count, exp = 1, expiryNanos(now.Add(window))
			var val [8]byte
			binary.BigEndian.PutUint64(val[:], uint64(count))
			return putKVTx(tx, k, val[:], exp)
		}
		if len(v) != 16 || oldExp == 0 {
			return fmt.Errorf("bolt: incr %q: %w: key holds a value that is not a counter", key, ErrInvalid)
		}
		count, exp = int64(binary.BigEndian.Uint64(v[8:]))+1, oldExp
		// Same expiry: the index entry stays.
		val := kvRecord(exp, nil)
		val = binary.BigEndian.AppendUint64(val, uint64(count))
		return kb.Put(k, val)
	})
	if err != nil {
		return 0, time.Time{}, err
	}
	return count, time.Unix(0, exp).UTC(), nil
}
