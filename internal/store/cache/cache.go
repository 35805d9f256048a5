// Package cache keeps recently read sessions in memory in front of any
// store, so that a signed-in request usually costs no store round trip.
//
// Every session write and delete made through the cache updates or drops
// its entry at once, so on one node a revocation takes effect on the very
// next request. Writes made by other nodes (a shared Redis) are seen when
// an entry's time to live runs out: that bound is the staleness the caller
// accepts (one second for Redis; the embedded store has no other writer).
package cache

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/twostep-auth/twostep/internal/store"
)

// MaxEntries bounds the cache; beyond it the cache is cleared and refills.
const MaxEntries = 100_000

// Store is a store.Store with an in-memory session cache.
type Store struct {
	store.Store
	ttl time.Duration

	mu     sync.RWMutex
	byID   map[string]entry
	byUser map[string]map[string]struct{}
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

type entry struct {
	s     store.Session
	until time.Time // the entry's own time to live
}

var _ store.Store = (*Store)(nil)

// New wraps st; ttl bounds how long an entry is trusted without asking st.
func New(st store.Store, ttl time.Duration) *Store {
	return &Store{Store: st, ttl: ttl, byID: map[string]entry{}, byUser: map[string]map[string]struct{}{}}
}

// GetSession answers from memory while the entry is fresh and the session
// unexpired, else from the store (and remembers the answer).
func (c *Store) GetSession(ctx context.Context, id string, now time.Time) (*store.Session, error) {
	c.mu.RLock()
	e, ok := c.byID[id]
	gen := c.gen
	c.mu.RUnlock()
	if ok && now.Before(e.until) && now.Before(e.s.ExpiresAt()) {
		return clone(&e.s), nil
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

func (c *Store) put(s *store.Session, now time.Time, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen {
		return // an invalidation happened while we read: do not cache
	}
	if len(c.byID) >= MaxEntries {
		c.byID = map[string]entry{}
		c.byUser = map[string]map[string]struct{}{}
	}
	if old, ok := c.byID[s.ID]; ok && old.s.User != s.User {
		delete(c.byUser[old.s.User], s.ID)
	}
	c.byID[s.ID] = entry{s: *clone(s), until: now.Add(c.ttl)}
	set := c.byUser[s.User]
	if set == nil {
		set = map[string]struct{}{}
		c.byUser[s.User] = set
	}
	set[s.ID] = struct{}{}
}

// clone copies a session deeply enough that neither side can change the
// other (Pending is the only reference field).
func clone(s *store.Session) *store.Session {
	c := *s
	if s.Pending != nil {
		c.Pending = make(map[string]string, len(s.Pending))
		for k, v := range s.Pending {
			c.Pending[k] = v
		}
	}
	return &c
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
		delete(c.byUser[e.s.User], id)
		delete(c.byID, id)
	}
}

// PutSession writes through and forgets the old entry (the next read
// fetches what the store kept).
func (c *Store) PutSession(ctx context.Context, s *store.Session) error {
	if s == nil {
		return c.Store.PutSession(ctx, s)
	}
	c.dropLocal(s.ID)
	err := c.Store.PutSession(ctx, s)
	c.drop(s.ID) // after the write, so other nodes re-read the new record
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
	c.mu.Unlock()
	return c.Store.Close()
}

// Sweep sweeps the store and forgets every entry (the store may have
// removed sessions the cache still holds).
func (c *Store) Sweep(ctx context.Context, now time.Time) (int, error) {
	n, err := c.Store.Sweep(ctx, now)
	c.mu.Lock()
	c.gen++
	c.byID = map[string]entry{}
	c.byUser = map[string]map[string]struct{}{}
	c.mu.Unlock()
	return n, err
}
