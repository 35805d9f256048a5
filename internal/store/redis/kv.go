package redis

import (
	"context"
	"encoding/binary"
	"errors"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"

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

// pxArg is the scripts' PXAT argument for expiry exp: "" for none.
func pxArg(exp int64) string {
	if exp == 0 {
		return ""
	}
	return strconv.FormatInt(pxat(exp), 10)
}

// liveValue returns the value of record rec, or store.ErrNotFound if it is
// expired at now.
func liveValue(rec string, now time.Time) ([]byte, error) {
	exp, err := recordExpiry(rec)
	if err != nil {
		return nil, err
	}
	if expiredAt(exp, now) {
		return nil, store.ErrNotFound
	}
	return []byte(rec[expiryLen:]), nil
}

// Get returns a copy of the value stored under key, or store.ErrNotFound if
// it is absent or expired at now.
func (s *Store) Get(ctx context.Context, key string, now time.Time) ([]byte, error) {
	ctx, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	if err := store.ValidateKey(key); err != nil {
		return nil, err
	}
	rec, err := s.client.Get(ctx, s.kvKey(key)).Result()
	if errors.Is(err, goredis.Nil) {
		return nil, store.ErrNotFound
	}
	if err != nil {
		return nil, fail("get", err)
	}
	return liveValue(rec, now)
}

// Put stores a copy of value under key; ttl 0 keeps it until deleted. Keys
// are 1 to MaxKeyLen bytes, values at most MaxValueLen bytes; ttl must not be
// negative.
func (s *Store) Put(ctx context.Context, key string, value []byte, ttl time.Duration, now time.Time) error {
	ctx, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer s.mu.RUnlock()
	exp, err := checkWrite(key, value, ttl, now)
	if err != nil {
		return err
	}
	rec := kvRecord(exp, value)
	var cmd *goredis.Cmd
	if exp == 0 {
		cmd = s.client.Do(ctx, "set", s.kvKey(key), rec)
	} else {
		cmd = s.client.Do(ctx, "set", s.kvKey(key), rec, "pxat", pxat(exp))
	}
	if err := cmd.Err(); err != nil {
		return fail("put", err)
	}
	return nil
}

// Replace stores value under key only if a value unexpired at now is there,
// in one script; ErrNotFound otherwise.
func (s *Store) Replace(ctx context.Context, key string, value []byte, ttl time.Duration, now time.Time) error {
	ctx, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer s.mu.RUnlock()
	exp, err := checkWrite(key, value, ttl, now)
	if err != nil {
		return err
	}
	n, err := scriptReplace.Run(ctx, s.client, []string{s.kvKey(key)},
		be8(expiryNanos(now)), kvRecord(exp, value), pxArg(exp)).Int()
	if err != nil {
		return fail("replace", err)
	}
	if n != 1 {
		return store.ErrNotFound
	}
	return nil
}

// PutIfAbsent stores value unless a value unexpired at now exists, in one
// script. It returns (a copy of) the value now stored and whether this call
// created it.
func (s *Store) PutIfAbsent(ctx context.Context, key string, value []byte, ttl time.Duration, now time.Time) ([]byte, bool, error) {
	ctx, err := s.begin(ctx)
	if err != nil {
		return nil, false, err
	}
	defer s.mu.RUnlock()
	exp, err := checkWrite(key, value, ttl, now)
	if err != nil {
		return nil, false, err
	}
	res, err := scriptPutIfAbsent.Run(ctx, s.client, []string{s.kvKey(key)},
		be8(expiryNanos(now)), kvRecord(exp, value), pxArg(exp)).Slice()
	if err != nil {
		return nil, false, fail("put if absent", err)
	}
	if len(res) == 1 && res[0] == int64(1) {
		stored := make([]byte, len(value))
		copy(stored, value)
		return stored, true, nil
	}
	if len(res) == 2 && res[0] == int64(0) {
		if rec, ok := res[1].(string); ok {
			v, err := liveValue(rec, now)
			if err != nil {
				return nil, false, fail("put if absent", err)
			}
			return v, false, nil
		}
	}
	return nil, false, fail("put if absent", corrupt("unexpected script reply %v", res))
}

// Take returns the value under key and deletes it in one step (GETDEL): of
// concurrent callers exactly one gets the value, the others
// store.ErrNotFound. A value expired at now is deleted too.
func (s *Store) Take(ctx context.Context, key string, now time.Time) ([]byte, error) {
	ctx, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	if err := store.ValidateKey(key); err != nil {
		return nil, err
	}
	rec, err := s.client.GetDel(ctx, s.kvKey(key)).Result()
	if errors.Is(err, goredis.Nil) {
		return nil, store.ErrNotFound
	}
	if err != nil {
		return nil, fail("take", err)
	}
	return liveValue(rec, now)
}

// Delete removes key; deleting a missing key is not an error.
func (s *Store) Delete(ctx context.Context, key string) error {
	ctx, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer s.mu.RUnlock()
	if err := store.ValidateKey(key); err != nil {
		return err
	}
	if err := s.client.Del(ctx, s.kvKey(key)).Err(); err != nil {
		return fail("delete", err)
	}
	return nil
}

// Incr adds one to the counter under key and returns the new count and when
// its window ends, in one script. If the counter is absent or its window
// ended at now, a new window [now, now+window) starts with count 1.
//
// Counters share the key space of Get/Put: Delete resets a counter, and the
// stored value is the count as 8 big-endian bytes. Incr on a key holding a
// value without an expiry or of another length fails.
func (s *Store) Incr(ctx context.Context, key string, window time.Duration, now time.Time) (int64, time.Time, error) {
	ctx, err := s.begin(ctx)
	if err != nil {
		return 0, time.Time{}, err
	}
	defer s.mu.RUnlock()
	if err := store.ValidateKey(key); err != nil {
		return 0, time.Time{}, err
	}
	if window <= 0 {
		return 0, time.Time{}, invalid("counter window %s", window)
	}
	end := expiryNanos(now.Add(window))
	rec, err := scriptIncr.Run(ctx, s.client, []string{s.kvKey(key)},
		be8(expiryNanos(now)), be8(end), pxat(end)).Text()
	if err != nil {
		return 0, time.Time{}, fail("incr", err)
	}
	exp, err := recordExpiry(rec)
	if err != nil || len(rec) != expiryLen+8 {
		return 0, time.Time{}, fail("incr", corrupt("counter record of %d bytes", len(rec)))
	}
	count := int64(binary.BigEndian.Uint64([]byte(rec[expiryLen:])))
	return count, time.Unix(0, exp).UTC(), nil
}
