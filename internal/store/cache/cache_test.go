package cache

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twostep-auth/twostep/internal/store"
	"github.com/twostep-auth/twostep/internal/store/bolt"
	"github.com/twostep-auth/twostep/internal/store/storetest"
)

func openBolt(t testing.TB) *bolt.DB {
	t.Helper()
	db, err := bolt.Open(filepath.Join(t.TempDir(), "t.db"), bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// The cache must not change what the store means: the whole conformance
// suite passes through it.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return New(openBolt(t), time.Minute) })
}

// counting counts the store's GetSession calls.
type counting struct {
	store.Store
	gets atomic.Int64
}

func (c *counting) GetSession(ctx context.Context, id string, now time.Time) (*store.Session, error) {
	c.gets.Add(1)
	return c.Store.GetSession(ctx, id, now)
}

func session(id, user string, now time.Time) *store.Session {
	return &store.Session{ID: id, User: user, State: store.StateOneFactor, Created: now, LastSeen: now,
		Expires: now.Add(time.Hour), Idle: 30 * time.Minute}
}

func TestHitsAndRevocation(t *testing.T) {
	ctx := context.Background()
	inner := &counting{Store: openBolt(t)}
	c := New(inner, time.Minute)
	now := time.Now()
	for _, s := range []*store.Session{session("a", "alice", now), session("b", "alice", now), session("c", "bob", now)} {
		if err := c.PutSession(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 10; i++ {
		if _, err := c.GetSession(ctx, "a", now); err != nil {
			t.Fatal(err)
		}
	}
	if n := inner.gets.Load(); n != 1 {
		t.Fatalf("10 reads cost %d store reads, want 1", n)
	}
	// A copy: changing it does not change the cache.
	s, _ := c.GetSession(ctx, "a", now)
	s.State = store.StateTwoFactor
	if again, _ := c.GetSession(ctx, "a", now); again.State != store.StateOneFactor {
		t.Fatal("the cache handed out its own record")
	}
	if _, err := c.GetSession(ctx, "b", now); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DeleteUserSessions(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a", "b"} {
		if _, err := c.GetSession(ctx, id, now); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("%s after DeleteUserSessions: %v", id, err)
		}
	}
	if _, err := c.GetSession(ctx, "c", now); err != nil {
		t.Fatalf("bob's session went too: %v", err)
	}
	if err := c.DeleteSession(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetSession(ctx, "c", now); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("after DeleteSession: %v", err)
	}
}

func TestExpiryAndTTL(t *testing.T) {
	ctx := context.Background()
	inner := &counting{Store: openBolt(t)}
	c := New(inner, time.Second)
	now := time.Now()
	s := session("a", "alice", now)
	s.Expires = now.Add(2 * time.Second)
	if err := c.PutSession(ctx, s); err != nil {
		t.Fatal(err)
	}
	c.GetSession(ctx, "a", now)
	c.GetSession(ctx, "a", now.Add(1500*time.Millisecond)) // past the TTL: asks the store
	if n := inner.gets.Load(); n != 2 {
		t.Fatalf("store reads %d, want 2", n)
	}
	if _, err := c.GetSession(ctx, "a", now.Add(3*time.Second)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("an expired session from the cache: %v", err)
	}
}

func BenchmarkGetSessionCached(b *testing.B) {
	ctx := context.Background()
	c := New(openBolt(b), time.Hour)
	now := time.Now()
	c.PutSession(ctx, session("a", "alice", now))
	c.GetSession(ctx, "a", now)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.GetSession(ctx, "a", now); err != nil {
			b.Fatal(err)
		}
	}
}

// memBus is an in-process Bus: what one cache publishes, every cache hears.
type memBus struct {
	mu   sync.Mutex
	subs []func(string)
}

func (b *memBus) Publish(_ context.Context, msg string) error {
	b.mu.Lock()
	subs := append([]func(string){}, b.subs...)
	b.mu.Unlock()
	for _, fn := range subs {
		fn(msg)
	}
	return nil
}

func (b *memBus) Subscribe(_ context.Context, fn func(string)) {
	b.mu.Lock()
	b.subs = append(b.subs, fn)
	b.mu.Unlock()
}

// Two nodes over one store: a delete on one is seen by the other at once,
// although its entry's time to live has not run out.
func TestInvalidationAcrossNodes(t *testing.T) {
	ctx := context.Background()
	shared := openBolt(t)
	bus := &memBus{}
	a, b := New(shared, time.Hour), New(shared, time.Hour)
	a.Listen(ctx, bus)
	b.Listen(ctx, bus)
	now := time.Now()
	if err := a.PutSession(ctx, session("s1", "alice", now)); err != nil {
		t.Fatal(err)
	}
	if err := a.PutSession(ctx, session("s2", "alice", now)); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"s1", "s2"} {
		if _, err := b.GetSession(ctx, id, now); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.DeleteSession(ctx, "s1"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.GetSession(ctx, "s1", now); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("node b still serves a session deleted on node a: %v", err)
	}
	if _, err := a.DeleteUserSessions(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.GetSession(ctx, "s2", now); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("node b still serves a session of a user signed out everywhere on node a: %v", err)
	}
}
