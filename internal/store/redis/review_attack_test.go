package redis

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twostep-auth/twostep/internal/store"
	"github.com/twostep-auth/twostep/internal/store/cache"
)

// Two nodes, each with its own client and its own cache (TTL 1 s, as in
// production), over one Redis. A session that node A has in memory must
// stop resolving there once node B ends it: at once through pub/sub, and
// within the cache's TTL when A hears nothing (its subscription is down).
// Nor may a touch or a device downgrade on A write back a session that B
// deleted.
func TestReviewRevocationAcrossNodes(t *testing.T) {
	addr := standalone(t)
	prefix := testPrefix("review")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	node := func(listen bool) *cache.Store {
		c := cache.New(openOn(t, []string{addr}, prefix, false), time.Second, "device:", "epoch:")
		if listen {
			st := c.Store.(*Store)
			c.Listen(ctx, st)
		}
		return c
	}
	a, deaf, b := node(true), node(false), node(true)
	time.Sleep(200 * time.Millisecond) // the subscriptions are made

	now := time.Now()
	sess := &store.Session{ID: "s1", User: "bob", State: store.StateTwoFactor, Created: now, LastSeen: now,
		Expires: now.Add(time.Hour), Idle: 30 * time.Minute}
	if err := b.PutSession(ctx, sess); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*cache.Store{a, deaf} {
		if _, err := n.ViewSession(ctx, "s1", now); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.DeleteUserSessions(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(500 * time.Millisecond)
	for {
		_, err := a.ViewSession(ctx, "s1", time.Now())
		if errors.Is(err, store.ErrNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node A still serves a session node B ended 500 ms ago: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The node that heard nothing: within the TTL at most.
	if _, err := deaf.ViewSession(ctx, "s1", now.Add(1100*time.Millisecond)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a node without invalidations serves an ended session past the cache TTL: %v", err)
	}
	// Writes of the read copy do not bring it back.
	stale := sess.Clone()
	stale.State = store.StateSecondFactor
	if err := a.ReplaceSession(ctx, stale); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("ReplaceSession of an ended session: %v, want ErrNotFound", err)
	}
	if err := deaf.TouchSession(ctx, "s1", now.Add(2*time.Minute)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("TouchSession of an ended session: %v, want ErrNotFound", err)
	}
	if _, err := b.GetSession(ctx, "s1", now); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the ended session is back: %v", err)
	}

	// A revoked device (its key deleted on B) stops being served on A.
	if err := b.Put(ctx, "device:h1", []byte("live"), time.Hour, now); err != nil {
		t.Fatal(err)
	}
	dec := func(v []byte) (any, error) { s := string(v); return &s, nil }
	if _, err := a.View(ctx, "device:", "h1", now, dec); err != nil {
		t.Fatal(err)
	}
	if err := b.Delete(ctx, "device:h1"); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(500 * time.Millisecond)
	for {
		_, err := a.View(ctx, "device:", "h1", time.Now(), dec)
		if errors.Is(err, store.ErrNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node A still serves a device node B revoked 500 ms ago: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
