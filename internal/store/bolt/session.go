package bolt

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.etcd.io/bbolt"

	"github.com/twostep-auth/twostep/internal/store"
)

func invalid(format string, args ...any) error { return store.Invalid(format, args...) }

// sessionExpired reports whether s is no longer valid at now.
func sessionExpired(s *store.Session, now time.Time) bool {
	return !now.Before(s.ExpiresAt())
}

// PutSession creates or replaces a session. It fails with an ErrInvalid
// error on a nil record, an empty or oversized ID or User, a User containing
// NUL, an invalid State or a zero Expires; the store is then unchanged.
func (db *DB) PutSession(ctx context.Context, s *store.Session) error {
	return db.putSession(ctx, s, false)
}

// ReplaceSession replaces the session stored under s.ID, in the same
// write transaction that finds it there; store.ErrNotFound when it is not.
func (db *DB) ReplaceSession(ctx context.Context, s *store.Session) error {
	return db.putSession(ctx, s, true)
}

func (db *DB) putSession(ctx context.Context, s *store.Session, replace bool) error {
	if err := db.check(ctx); err != nil {
		return err
	}
	if err := store.ValidateSession(s); err != nil {
		return err
	}
	enc, err := encodeWithin(s)
	if err != nil {
		return err
	}
	return db.update(func(tx *bbolt.Tx) error {
		if replace && tx.Bucket(bucketSessions).Get([]byte(s.ID)) == nil {
			return store.ErrNotFound
		}
		return putSessionTx(tx, s.ID, s.User, s.ExpiresAt(), enc)
	})
}

// encodeWithin encodes a validated session, refusing one over MaxValueLen.
func encodeWithin(s *store.Session) ([]byte, error) {
	enc := encodeSession(s)
	if len(enc) > MaxValueLen {
		return nil, invalid("session %q encodes to %d bytes (max %d)", s.ID, len(enc), MaxValueLen)
	}
	return enc, nil
}

// SwapSession puts next in place of the session oldID in one write
// transaction: store.ErrNotFound (nothing written) when oldID is absent
// or expired at now.
func (db *DB) SwapSession(ctx context.Context, oldID string, next *store.Session, now time.Time) error {
	if err := db.check(ctx); err != nil {
		return err
	}
	if err := store.ValidateSwap(oldID, next); err != nil {
		return err
	}
	enc, err := encodeWithin(next)
	if err != nil {
		return err
	}
	if oldID == "" || len(oldID) > MaxKeyLen {
		return store.ErrNotFound
	}
	return db.update(func(tx *bbolt.Tx) error {
		idb := []byte(oldID)
		v := tx.Bucket(bucketSessions).Get(idb)
		if v == nil {
			return store.ErrNotFound
		}
		old, err := loadSession(v, idb)
		if err != nil {
			return fmt.Errorf("bolt: swap session %q: %w", oldID, err)
		}
		if old.User != next.User {
			return invalid("swapping a session of %q for one of %q", old.User, next.User)
		}
		if sessionExpired(old, now) {
			return store.ErrNotFound
		}
		if err := deleteSessionTx(tx, idb, old); err != nil {
			return err
		}
		return putSessionTx(tx, next.ID, next.User, next.ExpiresAt(), enc)
	})
}

// putSessionTx stores the encoded session enc and its index entries,
// replacing any previous record under id and its index entries.
func putSessionTx(tx *bbolt.Tx, id, user string, expiresAt time.Time, enc []byte) error {
	sb := tx.Bucket(bucketSessions)
	ub := tx.Bucket(bucketUserSessions)
	eb := tx.Bucket(bucketExpiry)
	idb := []byte(id)
	uk := userKey(user, id)
	ek := expiryKey(expiryNanos(expiresAt), kindSession, idb)
	if old := sb.Get(idb); old != nil {
		// A corrupt old record leaves its index entries behind; Sweep and
		// DeleteUserSessions tolerate entries that point nowhere.
		if prev, err := loadSession(old, idb); err == nil {
			if prevUK := userKey(prev.User, id); !bytes.Equal(prevUK, uk) {
				if err := ub.Delete(prevUK); err != nil {
					return err
				}
			}
			if prevEK := expiryKey(expiryNanos(prev.ExpiresAt()), kindSession, idb); !bytes.Equal(prevEK, ek) {
				if err := eb.Delete(prevEK); err != nil {
					return err
				}
			}
		}
	}
	if err := sb.Put(idb, enc); err != nil {
		return err
	}
	if err := ub.Put(uk, nil); err != nil {
		return err
	}
	return eb.Put(ek, nil)
}

// deleteSessionTx removes the session under idb with its index entries.
// prev is the decoded record, or nil if it could not be decoded (then only
// the record itself is removed).
func deleteSessionTx(tx *bbolt.Tx, idb []byte, prev *store.Session) error {
	if prev != nil {
		if err := tx.Bucket(bucketUserSessions).Delete(userKey(prev.User, string(idb))); err != nil {
			return err
		}
		if err := tx.Bucket(bucketExpiry).Delete(expiryKey(expiryNanos(prev.ExpiresAt()), kindSession, idb)); err != nil {
			return err
		}
	}
	return tx.Bucket(bucketSessions).Delete(idb)
}

// GetSession returns the session, or store.ErrNotFound if there is none or
// it expired at now. A record that cannot be decoded is an ErrCorrupt error.
func (db *DB) GetSession(ctx context.Context, id string, now time.Time) (*store.Session, error) {
	if err := db.check(ctx); err != nil {
		return nil, err
	}
	if id == "" || len(id) > MaxKeyLen {
		return nil, store.ErrNotFound
	}
	var s *store.Session
	err := db.view(func(tx *bbolt.Tx) error {
		idb := []byte(id)
		v := tx.Bucket(bucketSessions).Get(idb)
		if v == nil {
			return store.ErrNotFound
		}
		var err error
		s, err = loadSession(v, idb)
		return err
	})
	if err != nil {
		return nil, err
	}
	if sessionExpired(s, now) {
		return nil, store.ErrNotFound
	}
	return s, nil
}

// TouchSession sets LastSeen to lastSeen (unless it is already as late:
// never backwards) and moves the session's expiry index entry. It returns store.ErrNotFound if the session is absent or
// already expired at lastSeen: a touch never revives an expired session.
func (db *DB) TouchSession(ctx context.Context, id string, lastSeen time.Time) error {
	if err := db.check(ctx); err != nil {
		return err
	}
	if id == "" || len(id) > MaxKeyLen {
		return store.ErrNotFound
	}
	return db.update(func(tx *bbolt.Tx) error {
		sb := tx.Bucket(bucketSessions)
		idb := []byte(id)
		v := sb.Get(idb)
		if v == nil {
			return store.ErrNotFound
		}
		s, err := loadSession(v, idb)
		if err != nil {
			return fmt.Errorf("bolt: touch session %q: %w", id, err)
		}
		if sessionExpired(s, lastSeen) {
			return store.ErrNotFound
		}
		if !s.LastSeen.Before(lastSeen) {
			return nil // touched as late already: never backwards
		}
		oldEK := expiryKey(expiryNanos(s.ExpiresAt()), kindSession, idb)
		s.LastSeen = lastSeen
		newEK := expiryKey(expiryNanos(s.ExpiresAt()), kindSession, idb)
		if err := sb.Put(idb, encodeSession(s)); err != nil {
			return err
		}
		if bytes.Equal(oldEK, newEK) {
			return nil
		}
		eb := tx.Bucket(bucketExpiry)
		if err := eb.Delete(oldEK); err != nil {
			return err
		}
		return eb.Put(newEK, nil)
	})
}

// DeleteSession removes one session; deleting a missing one is not an error.
// A record that cannot be decoded is removed too.
func (db *DB) DeleteSession(ctx context.Context, id string) error {
	if err := db.check(ctx); err != nil {
		return err
	}
	if id == "" || len(id) > MaxKeyLen {
		return nil
	}
	return db.update(func(tx *bbolt.Tx) error {
		idb := []byte(id)
		v := tx.Bucket(bucketSessions).Get(idb)
		if v == nil {
			return nil
		}
		prev, _ := loadSession(v, idb)
		return deleteSessionTx(tx, idb, prev)
	})
}

// userIndexIDs returns the session IDs the per-user index lists for user
// (copied: they outlive the cursor).
func userIndexIDs(tx *bbolt.Tx, user string) [][]byte {
	prefix := userKey(user, "")
	var ids [][]byte
	c := tx.Bucket(bucketUserSessions).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		ids = append(ids, bytes.Clone(k[len(prefix):]))
	}
	return ids
}

// DeleteUserSessions removes every session of user, expired or not, and
// returns how many records it removed.
func (db *DB) DeleteUserSessions(ctx context.Context, user string) (int, error) {
	if err := db.check(ctx); err != nil {
		return 0, err
	}
	if user == "" || len(user) > MaxKeyLen || strings.IndexByte(user, 0) >= 0 {
		return 0, nil
	}
	n := 0
	err := db.update(func(tx *bbolt.Tx) error {
		n = 0
		sb := tx.Bucket(bucketSessions)
		ub := tx.Bucket(bucketUserSessions)
		for _, idb := range userIndexIDs(tx, user) {
			// The index entry goes in every case; the record only if it
			// belongs to user (or is unreadable: its index says it is user's).
			if err := ub.Delete(userKey(user, string(idb))); err != nil {
				return err
			}
			v := sb.Get(idb)
			if v == nil {
				continue
			}
			prev, err := loadSession(v, idb)
			if err == nil && prev.User != user {
				continue
			}
			if err := deleteSessionTx(tx, idb, prev); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// ListUserSessions returns the sessions of user unexpired at now, oldest
// (by Created) first. A record that cannot be decoded fails the call with an
// ErrCorrupt error.
func (db *DB) ListUserSessions(ctx context.Context, user string, now time.Time) ([]*store.Session, error) {
	if err := db.check(ctx); err != nil {
		return nil, err
	}
	if user == "" || len(user) > MaxKeyLen || strings.IndexByte(user, 0) >= 0 {
		return nil, nil
	}
	var out []*store.Session
	err := db.view(func(tx *bbolt.Tx) error {
		out = nil
		prefix := userKey(user, "")
		sb := tx.Bucket(bucketSessions)
		c := tx.Bucket(bucketUserSessions).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			id := k[len(prefix):]
			v := sb.Get(id)
			if v == nil {
				continue
			}
			s, err := loadSession(v, id)
			if err != nil {
				return fmt.Errorf("bolt: list sessions of %q: session %q: %w", user, id, err)
			}
			if s.User != user || sessionExpired(s, now) {
				continue
			}
			out = append(out, s)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b *store.Session) int {
		return cmp.Or(a.Created.Compare(b.Created), strings.Compare(a.ID, b.ID))
	})
	return out, nil
}
