// Package cache keeps recently read sessions, and decoded records under
// chosen key prefixes, in memory in front of any store, so that a signed-in
// request usually costs no store round trip.
//
// Every write and delete made through the cache updates or drops the
// entries it touches at once, so on one node a revocation takes effect on
// the very next request. Writes made by other nodes (a shared Redis) arrive
// over a Bus; an entry's time to live bounds what a lost message costs (one
// second for Redis; the embedded store has no other writer).
package cache

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/twostep-auth/twostep/internal/store"
)

// MaxEntries bounds each of the cache's tables. A full table forgets an
// eighth of its entries, chosen at random (Go's map order), and refills:
// with more active sessions than that the cache still serves most requests.
const MaxEntries = 100_000

// Store is a store.Store with an in-memory session cache.
type Store struct {
	store.Store
	ttl      time.Duration
	prefixes []string
	max      int // MaxEntries (smaller in tests)

	mu     sync.RWMutex
	byID   map[string]entry
	byUser map[string]map[string]struct{}
	views  map[viewKey]view
	// gen counts invalidations: a read that raced with one (it began
	// before and ends after) must not put what it read into the cache.
	gen uint64

	bus Bus
}

// Bus carries invalidations between nodes (Redis pub/sub): what one node
// drops, every node drops.
type Bus interface {
	Publish(ctx context.Context, msg string) error
	Subscribe(ctx context.Context, fn func(msg string))
}

// Listen makes the cache publish its invalidations on bus and apply those
// of other nodes, until ctx ends.
func (c *Store) Listen(ctx context.Context, bus Bus) {
	c.mu.Lock()
	c.bus = bus
	c.mu.Unlock()
	bus.Subscribe(ctx, func(msg string) {
		switch {
		case strings.HasPrefix(msg, "s:"):
			c.dropLocal(msg[2:])
		case strings.HasPrefix(msg, "u:"):
			c.forgetUserLocal(msg[2:])
		case strings.HasPrefix(msg, "k:"):
			if k, ok := c.viewKey(msg[2:]); ok {
				c.dropViewLocal(k)
			}
		}
	})
}

// announce tells the other nodes (best effort: the entries' time to live
// bounds what a lost message costs).
func (c *Store) announce(msg string) {
	c.mu.RLock()
	bus := c.bus
	c.mu.RUnlock()
	if bus != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = bus.Publish(ctx, msg)
		cancel()
	}
}

// entry holds a session that nobody modifies after it is cached.
type entry struct {
	s     *store.Session
	until time.Time // the entry's own time to live
}

// viewKey is a record's key split at its prefix, so that a lookup needs no
// concatenation.
type viewKey struct{ prefix, name string }

type view struct {
	v       any
	missing bool // the store had no such record (store.ErrNotFound)
	until   time.Time
}

var _ store.Store = (*Store)(nil)

// New wraps st; ttl bounds how long an entry is trusted without asking st.
// View caches the decoded records whose keys start with one of prefixes.
func New(st store.Store, ttl time.Duration, prefixes ...string) *Store {
	return &Store{
		Store: st, ttl: ttl, prefixes: prefixes, max: MaxEntries,
		byID: map[string]entry{}, byUser: map[string]map[string]struct{}{}, views: map[viewKey]view{},
	}
}

// GetSession answers from memory while the entry is fresh and the session
// unexpired, else from the store (and remembers the answer). The session
// returned is the caller's own copy.
func (c *Store) GetSession(ctx context.Context, id string, now time.Time) (*store.Session, error) {
	s, err := c.ViewSession(ctx, id, now)
	if err != nil {
		return nil, err
	}
	return s.Clone(), nil
}

// ViewSession is GetSession without the copy: the session returned is
// shared with the cache and other callers, and must not be modified (Clone
// it first).
func (c *Store) ViewSession(ctx context.Context, id string, now time.Time) (*store.Session, error) {
	c.mu.RLock()
	e, ok := c.byID[id]
	gen := c.gen
	c.mu.RUnlock()
	if ok && now.Before(e.until) && now.Before(e.s.ExpiresAt()) {
		return e.s, nil
	}
	s, err := c.Store.GetSession(ctx, id, now)
	if err != nil {
		if ok {
			c.dropLocal(id)
		}
		return nil, err
	}
	c.put(s, now, gen)
	return s, nil
}

// put caches s, which from now on nobody modifies.
func (c *Store) put(s *store.Session, now time.Time, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen {
		return // an invalidation happened while we read: do not cache
	}
	if len(c.byID) >= c.max {
		c.evictSessions()
	}
	if old, ok := c.byID[s.ID]; ok && old.s.User != s.User {
		c.unindex(old.s.User, s.ID)
	}
	c.byID[s.ID] = entry{s: s, until: now.Add(c.ttl)}
	set := c.byUser[s.User]
	if set == nil {
		set = map[string]struct{}{}
		c.byUser[s.User] = set
	}
	set[s.ID] = struct{}{}
}

// evictions is how many entries a full table forgets at once.
func (c *Store) evictions() int { return max(1, c.max/8) }

// evictSessions forgets some sessions to make room; c.mu is held.
func (c *Store) evictSessions() {
	n := 0
	for id, e := range c.byID {
		if n == c.evictions() {
			break
		}
		delete(c.byID, id)
		c.unindex(e.s.User, id)
		n++
	}
}

// View returns decode(value under prefix+name), answering from memory
// while the entry is fresh when prefix is one of the cache's prefixes. The
// value returned is shared: decode must return something nobody modifies
// (a pointer to a fresh value). store.ErrNotFound is cached like a value
// (a user who never revoked a device has no epoch record, and the request
// path of a device-raised session asks for it every time); decode's errors
// are not cached.
func (c *Store) View(ctx context.Context, prefix, name string, now time.Time, decode func([]byte) (any, error)) (any, error) {
	k := viewKey{prefix, name}
	cached := c.cached(prefix)
	var gen uint64
	if cached {
		c.mu.RLock()
		e, ok := c.views[k]
		gen = c.gen
		c.mu.RUnlock()
		if ok && now.Before(e.until) {
			if e.missing {
				return nil, store.ErrNotFound
			}
			return e.v, nil
		}
	}
	b, err := c.Store.Get(ctx, prefix+name, now)
	missing := errors.Is(err, store.ErrNotFound)
	if err != nil && !(missing && cached) {
		return nil, err
	}
	var v any
	if !missing {
		if v, err = decode(b); err != nil || !cached {
			return v, err
		}
	}
	c.mu.Lock()
	if c.gen == gen {
		if len(c.views) >= c.max {
			n := 0
			for k := range c.views {
				if n == c.evictions() {
					break
				}
				delete(c.views, k)
				n++
			}
		}
		c.views[k] = view{v: v, missing: missing, until: now.Add(c.ttl)}
	}
	c.mu.Unlock()
	if missing {
		return nil, store.ErrNotFound
	}
	return v, nil
}

func (c *Store) cached(prefix string) bool {
	for _, p := range c.prefixes {
		if p == prefix {
			return true
		}
	}
	return false
}

// viewKey splits key at the cache's prefix it starts with, if any.
func (c *Store) viewKey(key string) (viewKey, bool) {
	for _, p := range c.prefixes {
		if strings.HasPrefix(key, p) {
			return viewKey{p, key[len(p):]}, true
		}
	}
	return viewKey{}, false
}

// writeKey runs a write to key, dropping the key's view before it (no
// request in between is served the old value) and after it (so that a
// read racing the write cannot keep it), and telling the other nodes.
func (c *Store) writeKey(key string, write func() error) error {
	k, ok := c.viewKey(key)
	if !ok {
		return write()
	}
	c.dropViewLocal(k)
	err := write()
	c.dropViewLocal(k)
	c.announce("k:" + key)
	return err
}

func (c *Store) dropViewLocal(k viewKey) {
	c.mu.Lock()
	c.gen++
	delete(c.views, k)
	c.mu.Unlock()
}

// Put writes through and forgets the key's view.
func (c *Store) Put(ctx context.Context, key string, value []byte, ttl time.Duration, now time.Time) error {
	return c.writeKey(key, func() error { return c.Store.Put(ctx, key, value, ttl, now) })
}

// Replace writes through and forgets the key's view.
func (c *Store) Replace(ctx context.Context, key string, value []byte, ttl time.Duration, now time.Time) error {
	return c.writeKey(key, func() error { return c.Store.Replace(ctx, key, value, ttl, now) })
}

// PutIfAbsent writes through and forgets the key's view.
func (c *Store) PutIfAbsent(ctx context.Context, key string, value []byte, ttl time.Duration, now time.Time) (stored []byte, created bool, err error) {
	err = c.writeKey(key, func() error {
		var err error
		stored, created, err = c.Store.PutIfAbsent(ctx, key, value, ttl, now)
		return err
	})
	return stored, created, err
}

// Take takes from the store and forgets the key's view.
func (c *Store) Take(ctx context.Context, key string, now time.Time) (value []byte, err error) {
	err = c.writeKey(key, func() error {
		var err error
		value, err = c.Store.Take(ctx, key, now)
		return err
	})
	return value, err
}

// Delete deletes in the store and forgets the key's view.
func (c *Store) Delete(ctx context.Context, key string) error {
	return c.writeKey(key, func() error { return c.Store.Delete(ctx, key) })
}

// Incr counts in the store and forgets the key's view.
func (c *Store) Incr(ctx context.Context, key string, window time.Duration, now time.Time) (count int64, resetAt time.Time, err error) {
	err = c.writeKey(key, func() error {
		var err error
		count, resetAt, err = c.Store.Incr(ctx, key, window, now)
		return err
	})
	return count, resetAt, err
}

func (c *Store) drop(id string) {
	c.dropLocal(id)
	c.announce("s:" + id)
}

func (c *Store) dropLocal(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	if e, ok := c.byID[id]; ok {
		c.unindex(e.s.User, id)
		delete(c.byID, id)
	}
}

// unindex removes id from user's set (and an emptied set); c.mu is held.
func (c *Store) unindex(user, id string) {
	if set := c.byUser[user]; set != nil {
		delete(set, id)
		if len(set) == 0 {
			delete(c.byUser, user)
		}
	}
}

// PutSession writes through and forgets the old entry (the next read
// fetches what the store kept).
func (c *Store) PutSession(ctx context.Context, s *store.Session) error {
	return c.writeSession(ctx, s, c.Store.PutSession)
}

// ReplaceSession writes through and forgets the old entry.
func (c *Store) ReplaceSession(ctx context.Context, s *store.Session) error {
	return c.writeSession(ctx, s, c.Store.ReplaceSession)
}

func (c *Store) writeSession(ctx context.Context, s *store.Session, write func(context.Context, *store.Session) error) error {
	if s == nil {
		return write(ctx, s) // the store's own refusal
	}
	c.dropLocal(s.ID)
	err := write(ctx, s)
	c.drop(s.ID) // after the write, so other nodes re-read the new record
	return err
}

// SwapSession swaps in the store and forgets both entries (before, so no
// request in between is served the old one from memory, and after).
func (c *Store) SwapSession(ctx context.Context, oldID string, next *store.Session, now time.Time) error {
	c.dropLocal(oldID)
	if next != nil {
		c.dropLocal(next.ID)
	}
	err := c.Store.SwapSession(ctx, oldID, next, now)
	c.drop(oldID)
	if next != nil {
		c.drop(next.ID)
	}
	return err
}

// TouchSession writes through and forgets the entry.
func (c *Store) TouchSession(ctx context.Context, id string, lastSeen time.Time) error {
	err := c.Store.TouchSession(ctx, id, lastSeen)
	c.drop(id)
	return err
}

// DeleteSession deletes in the store and in memory.
func (c *Store) DeleteSession(ctx context.Context, id string) error {
	c.dropLocal(id)
	err := c.Store.DeleteSession(ctx, id)
	c.drop(id)
	return err
}

// DeleteUserSessions deletes every session of user, in memory first so no
// request in between is served from it.
func (c *Store) DeleteUserSessions(ctx context.Context, user string) (int, error) {
	c.forgetUserLocal(user)
	n, err := c.Store.DeleteUserSessions(ctx, user)
	c.forgetUser(user)
	return n, err
}

func (c *Store) forgetUser(user string) {
	c.forgetUserLocal(user)
	c.announce("u:" + user)
}

func (c *Store) forgetUserLocal(user string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	for id := range c.byUser[user] {
		delete(c.byID, id)
	}
	delete(c.byUser, user)
}

// Close empties the cache and closes the store.
func (c *Store) Close() error {
	c.mu.Lock()
	c.gen++
	c.byID = map[string]entry{}
	c.byUser = map[string]map[string]struct{}{}
	c.views = map[viewKey]view{}
	c.mu.Unlock()
	return c.Store.Close()
}

// Sweep sweeps the store and forgets every entry (the store may have
// removed records the cache still holds).
func (c *Store) Sweep(ctx context.Context, now time.Time) (int, error) {
	n, err := c.Store.Sweep(ctx, now)
	c.mu.Lock()
	c.gen++
	c.byID = map[string]entry{}
	c.byUser = map[string]map[string]struct{}{}
	c.views = map[viewKey]view{}
	c.mu.Unlock()
	return n, err
}
