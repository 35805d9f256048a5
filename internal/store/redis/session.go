package redis

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/twostep-auth/twostep/internal/store"
)

func validID(id string) bool { return id != "" && len(id) <= MaxKeyLen }

func validUser(user string) bool {
	return user != "" && len(user) <= MaxKeyLen && strings.IndexByte(user, 0) < 0
}

// sessionExpired reports whether s is no longer valid at now.
func sessionExpired(s *store.Session, now time.Time) bool {
	return !now.Before(s.ExpiresAt())
}

// indexScore is the score of a session's entry in its user's index: the
// Redis expiry its record can have at the latest (touches never take a
// session past Expires).
func indexScore(s *store.Session) int64 { return pxat(expiryNanos(s.Expires)) }

// PutSession creates or replaces a session. It fails with an ErrInvalid
// error on a nil record, an empty or oversized ID or User, a User containing
// NUL, an invalid State or a zero Expires; the store is then unchanged.
//
// It writes the record (SET … PXAT), then adds it to its user's index. If
// the index cannot be updated the new record is deleted again (as far as
// Redis still answers) and the call fails. A record that belonged to another
// user before stays in that user's index, as a stale entry: the record's
// user is checked wherever the index is read, and removing the entry here
// could unindex a concurrent write of the same ID by that user.
func (s *Store) PutSession(ctx context.Context, sess *store.Session) error {
	return s.putSession(ctx, sess, false)
}

// ReplaceSession is PutSession with SET … XX: the record is written only
// if Redis still holds it, else store.ErrNotFound. A DeleteSession or
// DeleteUserSessions that removed the record first wins; one that comes
// after removes the replaced record as it would the old one.
func (s *Store) ReplaceSession(ctx context.Context, sess *store.Session) error {
	return s.putSession(ctx, sess, true)
}

func (s *Store) putSession(ctx context.Context, sess *store.Session, replace bool) error {
	ctx, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer s.mu.RUnlock()
	if err := store.ValidateSession(sess); err != nil {
		return err
	}
	enc, err := encodeWithin(sess)
	if err != nil {
		return err
	}
	return s.writeSession(ctx, sess, enc, replace)
}

// encodeWithin encodes a validated session, refusing one over MaxValueLen.
func encodeWithin(sess *store.Session) ([]byte, error) {
	enc := encodeSession(sess)
	if len(enc) > MaxValueLen {
		return nil, invalid("session encodes to %d bytes (max %d)", len(enc), MaxValueLen)
	}
	return enc, nil
}

// writeSession writes the encoded session and indexes it; s.mu is held.
func (s *Store) writeSession(ctx context.Context, sess *store.Session, enc []byte, replace bool) error {
	key := s.sessionKey(sess.ID)
	args := []any{"set", key, enc, "pxat", pxat(expiryNanos(sess.ExpiresAt()))}
	if replace {
		args = append(args, "xx")
	}
	if err := s.client.Do(ctx, args...).Err(); err != nil {
		if replace && errors.Is(err, goredis.Nil) {
			return store.ErrNotFound // not there: nothing was written
		}
		return fail("put session", err)
	}
	err := scriptIndexAdd.Run(ctx, s.client, []string{s.userKey(sess.User)}, sess.ID, indexScore(sess)).Err()
	if err != nil {
		// Unindexed, the session would escape DeleteUserSessions: take it
		// back unless it changed meanwhile.
		_ = scriptDeleteIf.Run(ctx, s.client, []string{key}, enc).Err()
		return fail("put session: index", err)
	}
	return nil
}

// SwapSession puts next in place of the session oldID. Redis has no
// transaction across keys on a Cluster, so the order does the work:
//
//  1. read oldID (absent or expired at now: store.ErrNotFound, nothing
//     written; another user's: ErrInvalid);
//  2. write next and index it, as PutSession does;
//  3. take oldID (GETDEL). If it is gone, a DeleteSession, a
//     DeleteUserSessions or another swap took it first: next is deleted
//     again and the call answers store.ErrNotFound.
//
// Of concurrent swaps only one can take oldID. A DeleteUserSessions that
// removed oldID first makes the swap fail at 3; one that comes after 3
// finds next in the index, indexed at 2 before the swap took oldID, which
// is why DeleteUserSessions reads the index again after its first pass.
func (s *Store) SwapSession(ctx context.Context, oldID string, next *store.Session, now time.Time) error {
	ctx, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer s.mu.RUnlock()
	if err := store.ValidateSwap(oldID, next); err != nil {
		return err
	}
	enc, err := encodeWithin(next)
	if err != nil {
		return err
	}
	if !validID(oldID) {
		return store.ErrNotFound
	}
	oldKey := s.sessionKey(oldID)
	rec, err := s.client.Get(ctx, oldKey).Result()
	if errors.Is(err, goredis.Nil) {
		return store.ErrNotFound
	}
	if err != nil {
		return fail("swap session", err)
	}
	old, err := loadSession(rec, oldID)
	if err != nil {
		return fail("swap session", err)
	}
	if old.User != next.User {
		return invalid("swapping a session of %q for one of %q", old.User, next.User)
	}
	if sessionExpired(old, now) {
		return store.ErrNotFound
	}
	if err := s.writeSession(ctx, next, enc, false); err != nil {
		return err
	}
	taken, err := s.client.GetDel(ctx, oldKey).Result()
	if err != nil || sessionUser(taken) != next.User {
		// Lost (or not known whether won): next must not stay.
		if derr := s.deleteSession(ctx, next.ID); derr != nil {
			return fail("swap session: taking back the new session", derr)
		}
		if err == nil || errors.Is(err, goredis.Nil) {
			return store.ErrNotFound
		}
		return fail("swap session", err)
	}
	// The record is gone; a stale index entry is harmless.
	_ = s.client.ZRem(ctx, s.userKey(next.User), oldID).Err()
	return nil
}

// GetSession returns the session, or store.ErrNotFound if there is none or
// it expired at now: one GET. A record that cannot be decoded is an
// ErrCorrupt error.
func (s *Store) GetSession(ctx context.Context, id string, now time.Time) (*store.Session, error) {
	ctx, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	if !validID(id) {
		return nil, store.ErrNotFound
	}
	rec, err := s.client.Get(ctx, s.sessionKey(id)).Result()
	if errors.Is(err, goredis.Nil) {
		return nil, store.ErrNotFound
	}
	if err != nil {
		return nil, fail("get session", err)
	}
	sess, err := loadSession(rec, id)
	if err != nil {
		return nil, fail("get session", err)
	}
	if sessionExpired(sess, now) {
		return nil, store.ErrNotFound
	}
	return sess, nil
}

// TouchSession sets LastSeen to lastSeen and moves the record's Redis expiry
// with it. It returns store.ErrNotFound if the session is absent or already
// expired at lastSeen: a touch never revives an expired session.
//
// It reads the record, and replaces it with a script that does so only if
// the record is still the one read (or reads again and retries), so a touch
// never undoes a concurrent PutSession or resurrects a deleted session.
func (s *Store) TouchSession(ctx context.Context, id string, lastSeen time.Time) error {
	ctx, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer s.mu.RUnlock()
	if !validID(id) {
		return store.ErrNotFound
	}
	key := s.sessionKey(id)
	for range maxSwapTries {
		rec, err := s.client.Get(ctx, key).Result()
		if errors.Is(err, goredis.Nil) {
			return store.ErrNotFound
		}
		if err != nil {
			return fail("touch session", err)
		}
		sess, err := loadSession(rec, id)
		if err != nil {
			return fail("touch session", err)
		}
		if sessionExpired(sess, lastSeen) {
			return store.ErrNotFound
		}
		if !sess.LastSeen.Before(lastSeen) {
			// Touched as late already (a concurrent touch won the swap):
			// never backwards, and nothing left to do.
			return nil
		}
		sess.LastSeen = lastSeen
		enc := encodeSession(sess)
		ok, err := scriptSwap.Run(ctx, s.client, []string{key}, rec, enc, pxat(expiryNanos(sess.ExpiresAt()))).Int64()
		if err != nil {
			return fail("touch session", err)
		}
		if ok == 1 {
			return nil
		}
	}
	return fail("touch session", fmt.Errorf("the record changed under %d tries", maxSwapTries))
}

// DeleteSession removes one session; deleting a missing one is not an error.
// A record that cannot be decoded is removed too.
//
// It deletes the record (GETDEL), removes its index entry, and then deletes
// the record again if it is back (a concurrent PutSession of the same ID by
// the same user): a record written after that last step is also indexed
// again, so a session never outlives DeleteSession unindexed.
func (s *Store) DeleteSession(ctx context.Context, id string) error {
	ctx, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer s.mu.RUnlock()
	if !validID(id) {
		return nil
	}
	return s.deleteSession(ctx, id)
}

// deleteSession is DeleteSession of a valid id; s.mu is held.
func (s *Store) deleteSession(ctx context.Context, id string) error {
	key := s.sessionKey(id)
	old, err := s.client.GetDel(ctx, key).Result()
	if errors.Is(err, goredis.Nil) {
		return nil
	}
	if err != nil {
		return fail("delete session", err)
	}
	user := sessionUser(old)
	if user == "" {
		return nil
	}
	if err := s.client.ZRem(ctx, s.userKey(user), id).Err(); err != nil {
		// The record is gone, and a stale entry is harmless.
		return nil
	}
	if err := scriptDeleteIfUser.Run(ctx, s.client, []string{key}, userTag(user)).Err(); err != nil {
		return fail("delete session", err)
	}
	return nil
}

// userIndex returns the session IDs the user's index lists.
func (s *Store) userIndex(ctx context.Context, user string) ([]string, error) {
	ids, err := s.client.ZRange(ctx, s.userKey(user), 0, -1).Result()
	if err != nil && !errors.Is(err, goredis.Nil) {
		return nil, err
	}
	return ids, nil
}

// DeleteUserSessions removes every session of user, expired or not, and
// returns how many records it removed.
//
// It reads the user's index, deletes each record with a script that does so
// only if the record is user's, and removes the entries; then reads the
// index again and does the same for what it lists now (a SwapSession that
// took one of the first records had indexed its new session before: see
// SwapSession), until the index lists nothing new (at most
// maxDeleteRounds reads). Last it runs the deleting script once more over
// every record, for those a concurrent write of the same ID put back
// meanwhile: a record written after that is indexed again. A session with
// a new ID put by a new sign-in while this runs may survive it.
func (s *Store) DeleteUserSessions(ctx context.Context, user string) (int, error) {
	ctx, err := s.begin(ctx)
	if err != nil {
		return 0, err
	}
	defer s.mu.RUnlock()
	if !validUser(user) {
		return 0, nil
	}
	tag := userTag(user)
	n := 0
	deleteRecords := func(keys []string) error {
		res, err := runEach(ctx, s.client, scriptDeleteIfUser, keys, tag)
		for _, r := range res {
			n += int(r)
		}
		return err
	}
	var all []string
	seen := map[string]bool{}
	for range maxDeleteRounds {
		ids, err := s.userIndex(ctx, user)
		if err != nil {
			return n, fail("delete user sessions", err)
		}
		var keys []string
		var members []any
		for _, id := range ids {
			if !seen[id] {
				seen[id] = true
				keys = append(keys, s.sessionKey(id))
				members = append(members, id)
			}
		}
		if len(keys) == 0 {
			break
		}
		all = append(all, keys...)
		if err := deleteRecords(keys); err != nil {
			return n, fail("delete user sessions", err)
		}
		// The records are gone; a stale entry left by a failed ZREM is
		// harmless (and read again below).
		_ = s.client.ZRem(ctx, s.userKey(user), members...).Err()
	}
	if len(all) == 0 {
		return 0, nil
	}
	if err := deleteRecords(all); err != nil {
		return n, fail("delete user sessions", err)
	}
	return n, nil
}

// maxDeleteRounds bounds the index reads of one DeleteUserSessions: each
// round after the first only finds sessions swapped in while it ran.
const maxDeleteRounds = 8

// ListUserSessions returns the sessions of user unexpired at now, oldest
// (by Created) first: the index, then the records (one pipeline). A record
// that cannot be decoded fails the call with an ErrCorrupt error.
func (s *Store) ListUserSessions(ctx context.Context, user string, now time.Time) ([]*store.Session, error) {
	ctx, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	if !validUser(user) {
		return nil, nil
	}
	ids, err := s.userIndex(ctx, user)
	if err != nil {
		return nil, fail("list user sessions", err)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	pipe := s.client.Pipeline()
	cmds := make([]*goredis.StringCmd, len(ids))
	for i, id := range ids {
		cmds[i] = pipe.Get(ctx, s.sessionKey(id))
	}
	_, _ = pipe.Exec(ctx) // errors are read per command below
	var out []*store.Session
	for i, cmd := range cmds {
		rec, err := cmd.Result()
		if errors.Is(err, goredis.Nil) {
			continue
		}
		if err != nil {
			return nil, fail("list user sessions", err)
		}
		sess, err := loadSession(rec, ids[i])
		if err != nil {
			return nil, fail("list user sessions", err)
		}
		if sess.User != user || sessionExpired(sess, now) {
			continue
		}
		out = append(out, sess)
	}
	slices.SortFunc(out, func(a, b *store.Session) int {
		return cmp.Or(a.Created.Compare(b.Created), strings.Compare(a.ID, b.ID))
	})
	return out, nil
}
