package cache

import (
	"context"
	"errors"
	"fmt"
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
	storetest.Run(t, func(t *testing.T) store.Store { return New(openBolt(t), time.Minute, "k", "device:") })
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

func (c *counting) Get(ctx context.Context, key string, now time.Time) ([]byte, error) {
	c.gets.Add(1)
	return c.Store.Get(ctx, key, now)
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

// decodeString is a View decoder: a fresh *string per decoding.
func decodeString(b []byte) (any, error) {
	if string(b) == "unreadable" {
		return nil, errors.New("unreadable")
	}
	v := string(b)
	return &v, nil
}

func viewString(t *testing.T, c *Store, prefix, name string, now time.Time) (string, error) {
	t.Helper()
	v, err := c.View(context.Background(), prefix, name, now, decodeString)
	if err != nil {
		return "", err
	}
	return *v.(*string), nil
}

// View answers from memory for its prefixes, and every kind of write
// through the cache drops the entry at once.
func TestView(t *testing.T) {
	ctx := context.Background()
	inner := &counting{Store: openBolt(t)}
	c := New(inner, time.Minute, "device:", "epoch:")
	now := time.Now()
	put := func(key, v string) {
		t.Helper()
		if err := c.Put(ctx, key, []byte(v), 0, now); err != nil {
			t.Fatal(err)
		}
	}
	want := func(prefix, name, v string) {
		t.Helper()
		got, err := viewString(t, c, prefix, name, now)
		if err != nil || got != v {
			t.Fatalf("View(%s%s) = %q, %v; want %q", prefix, name, got, err, v)
		}
	}
	put("device:d1", "one")
	want("device:", "d1", "one")
	before := inner.gets.Load()
	for i := 0; i < 5; i++ {
		want("device:", "d1", "one")
	}
	if n := inner.gets.Load() - before; n != 0 {
		t.Fatalf("%d store reads for a cached view", n)
	}
	v1, _ := c.View(ctx, "device:", "d1", now, decodeString)
	v2, _ := c.View(ctx, "device:", "d1", now, decodeString)
	if v1 != v2 {
		t.Fatal("a cached view is decoded again")
	}

	writes := []struct {
		name  string
		write func(key string) error
		after string // what View answers afterwards ("" = not found)
	}{
		{"Put", func(k string) error { return c.Put(ctx, k, []byte("two"), 0, now) }, "two"},
		{"Delete", func(k string) error { return c.Delete(ctx, k) }, ""},
		{"PutIfAbsent", func(k string) error { _, _, err := c.PutIfAbsent(ctx, k, []byte("three"), 0, now); return err }, "three"},
		{"Take", func(k string) error { _, err := c.Take(ctx, k, now); return err }, ""},
	}
	for _, w := range writes {
		if w.name != "PutIfAbsent" {
			put("device:d1", "cached")
		}
		_, _ = viewString(t, c, "device:", "d1", now) // cache whatever is there
		if err := w.write("device:d1"); err != nil {
			t.Fatalf("%s: %v", w.name, err)
		}
		got, err := viewString(t, c, "device:", "d1", now)
		switch {
		case w.after == "" && !errors.Is(err, store.ErrNotFound):
			t.Errorf("after %s: %q, %v; want not found", w.name, got, err)
		case w.after != "" && got != w.after:
			t.Errorf("after %s: %q, %v; want %q", w.name, got, err, w.after)
		}
	}
	// A counter: the second count is seen, not the cached first.
	_ = c.Delete(ctx, "device:n")
	if _, _, err := c.Incr(ctx, "device:n", time.Hour, now); err != nil {
		t.Fatal(err)
	}
	first, _ := viewString(t, c, "device:", "n", now)
	if _, _, err := c.Incr(ctx, "device:n", time.Hour, now); err != nil {
		t.Fatal(err)
	}
	if second, _ := viewString(t, c, "device:", "n", now); second == first {
		t.Error("after Incr the cached count is still served")
	}

	// Not found is cached like a value: no store read while it is fresh,
	// and every write through the cache ends it at once.
	if _, err := viewString(t, c, "epoch:", "nobody", now); !errors.Is(err, store.ErrNotFound) {
		t.Fatal(err)
	}
	before = inner.gets.Load()
	for i := 0; i < 5; i++ {
		if _, err := viewString(t, c, "epoch:", "nobody", now); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("a cached miss: %v, want not found", err)
		}
	}
	if n := inner.gets.Load() - before; n != 0 {
		t.Fatalf("%d store reads for a cached miss", n)
	}
	for _, w := range []struct {
		name  string
		write func(key string) error
	}{
		{"Put", func(k string) error { return c.Put(ctx, k, []byte("7"), 0, now) }},
		{"PutIfAbsent", func(k string) error { _, _, err := c.PutIfAbsent(ctx, k, []byte("7"), 0, now); return err }},
		{"Incr", func(k string) error { _, _, err := c.Incr(ctx, k, time.Hour, now); return err }},
	} {
		key := "epoch:new-" + w.name
		if _, err := viewString(t, c, "epoch:", "new-"+w.name, now); !errors.Is(err, store.ErrNotFound) {
			t.Fatal(err)
		}
		if err := w.write(key); err != nil {
			t.Fatalf("%s: %v", w.name, err)
		}
		if got, err := viewString(t, c, "epoch:", "new-"+w.name, now); err != nil {
			t.Errorf("after %s of a cached miss: %q, %v; want the new value", w.name, got, err)
		}
	}
	// Behind the cache's back (another node whose message was lost), the
	// miss lasts the entry's time to live.
	if err := inner.Put(ctx, "epoch:nobody", []byte("7"), 0, now); err != nil {
		t.Fatal(err)
	}
	if _, err := viewString(t, c, "epoch:", "nobody", now); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a cached miss within its time to live: %v", err)
	}
	if got, err := viewString(t, c, "epoch:", "nobody", now.Add(2*time.Minute)); err != nil || got != "7" {
		t.Fatalf("after the time to live: %q, %v; want 7", got, err)
	}
	// Undecodable values are not cached.
	put("epoch:bad", "unreadable")
	if _, err := viewString(t, c, "epoch:", "bad", now); err == nil {
		t.Fatal("an undecodable value decoded")
	}
	put("epoch:bad", "fine")
	want("epoch:", "bad", "fine")

	// A prefix the cache was not given is read from the store every time.
	put("other:x", "a")
	want("other:", "x", "a")
	if err := inner.Put(ctx, "other:x", []byte("b"), 0, now); err != nil {
		t.Fatal(err)
	}
	want("other:", "x", "b")

	// The entry's time to live bounds what the cache misses.
	if err := inner.Put(ctx, "device:d1", []byte("behind"), 0, now); err != nil {
		t.Fatal(err)
	}
	if got, _ := viewString(t, c, "device:", "d1", now.Add(2*time.Minute)); got != "behind" {
		t.Fatalf("after the time to live: %q", got)
	}
}

// A read that races with a write must not put the old value back in the
// cache after the write dropped it.
func TestViewRaceWithWrite(t *testing.T) {
	ctx := context.Background()
	gate := &gatedGet{Store: openBolt(t), started: make(chan struct{}), release: make(chan struct{})}
	c := New(gate, time.Hour, "device:")
	now := time.Now()
	if err := c.Put(ctx, "device:d", []byte("old"), 0, now); err != nil {
		t.Fatal(err)
	}
	gate.armed.Store(true)
	done := make(chan string)
	go func() {
		v, _ := viewString(t, c, "device:", "d", now)
		done <- v
	}()
	<-gate.started // the read has the old value in hand
	if err := c.Put(ctx, "device:d", []byte("new"), 0, now); err != nil {
		t.Fatal(err)
	}
	close(gate.release)
	if v := <-done; v != "old" {
		t.Fatalf("racing read: %q", v)
	}
	if got, _ := viewString(t, c, "device:", "d", now); got != "new" {
		t.Fatalf("the racing read's old value was cached: %q", got)
	}
}

// gatedGet holds one Get (once armed) after reading, until released.
type gatedGet struct {
	store.Store
	armed            atomic.Bool
	started, release chan struct{}
}

func (g *gatedGet) Get(ctx context.Context, key string, now time.Time) ([]byte, error) {
	b, err := g.Store.Get(ctx, key, now)
	if g.armed.CompareAndSwap(true, false) {
		close(g.started)
		<-g.release
	}
	return b, err
}

// A device revoked on one node is refused on the other at once.
func TestViewInvalidationAcrossNodes(t *testing.T) {
	ctx := context.Background()
	shared := openBolt(t)
	bus := &memBus{}
	a, b := New(shared, time.Hour, "device:"), New(shared, time.Hour, "device:")
	a.Listen(ctx, bus)
	b.Listen(ctx, bus)
	now := time.Now()
	if err := a.Put(ctx, "device:d", []byte("trusted"), 0, now); err != nil {
		t.Fatal(err)
	}
	if got, _ := viewString(t, b, "device:", "d", now); got != "trusted" {
		t.Fatal(got)
	}
	if err := a.Delete(ctx, "device:d"); err != nil {
		t.Fatal(err)
	}
	if _, err := viewString(t, b, "device:", "d", now); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("node b still serves a device deleted on node a: %v", err)
	}
}

// ViewSession shares one value between callers; GetSession copies it.
func TestViewSessionShared(t *testing.T) {
	ctx := context.Background()
	c := New(openBolt(t), time.Hour)
	now := time.Now()
	s := session("a", "alice", now)
	s.Pending = map[string]string{"return": "/x"}
	if err := c.PutSession(ctx, s); err != nil {
		t.Fatal(err)
	}
	v1, err := c.ViewSession(ctx, "a", now)
	if err != nil {
		t.Fatal(err)
	}
	v2, _ := c.ViewSession(ctx, "a", now)
	if v1 != v2 {
		t.Fatal("ViewSession decoded the session again")
	}
	g, _ := c.GetSession(ctx, "a", now)
	g.User, g.Pending["return"] = "mallory", "/evil"
	if v, _ := c.ViewSession(ctx, "a", now); v.User != "alice" || v.Pending["return"] != "/x" {
		t.Fatalf("changing GetSession's copy changed the cache: %+v", v)
	}
}

func BenchmarkView(b *testing.B) {
	ctx := context.Background()
	c := New(openBolt(b), time.Hour, "device:")
	now := time.Now()
	_ = c.Put(ctx, "device:d", []byte("v"), 0, now)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.View(ctx, "device:", "d", now, decodeString); err != nil {
			b.Fatal(err)
		}
	}
}

// A full cache forgets some entries, keeps its user index in step, and
// still answers right.
func TestEviction(t *testing.T) {
	ctx := context.Background()
	inner := &counting{Store: openBolt(t)}
	c := New(inner, time.Hour, "device:")
	c.max = 16
	now := time.Now()
	for i := 0; i < 50; i++ {
		id, user := fmt.Sprintf("s%02d", i), fmt.Sprintf("u%d", i%7)
		if err := c.PutSession(ctx, session(id, user, now)); err != nil {
			t.Fatal(err)
		}
		if _, err := c.GetSession(ctx, id, now); err != nil {
			t.Fatal(err)
		}
		if err := c.Put(ctx, "device:"+id, []byte(id), 0, now); err != nil {
			t.Fatal(err)
		}
		if got, err := viewString(t, c, "device:", id, now); err != nil || got != id {
			t.Fatal(got, err)
		}
	}
	c.mu.RLock()
	sessions, views := len(c.byID), len(c.views)
	indexed := 0
	for user, set := range c.byUser {
		if len(set) == 0 {
			t.Errorf("empty index set for %s", user)
		}
		for id := range set {
			if e, ok := c.byID[id]; !ok || e.s.User != user {
				t.Errorf("index %s → %s points at nothing", user, id)
			}
			indexed++
		}
	}
	c.mu.RUnlock()
	if sessions > 16 || views > 16 || indexed != sessions {
		t.Fatalf("%d sessions, %d views, %d indexed (max 16)", sessions, views, indexed)
	}
	for i := 0; i < 50; i++ {
		id := fmt.Sprintf("s%02d", i)
		if s, err := c.GetSession(ctx, id, now); err != nil || s.User != fmt.Sprintf("u%d", i%7) {
			t.Fatalf("%s after eviction: %+v %v", id, s, err)
		}
	}
	// Signing a user out everywhere still reaches every cached session.
	if _, err := c.DeleteUserSessions(ctx, "u3"); err != nil {
		t.Fatal(err)
	}
	for i := 3; i < 50; i += 7 {
		if _, err := c.GetSession(ctx, fmt.Sprintf("s%02d", i), now); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("s%02d survived: %v", i, err)
		}
	}
}
