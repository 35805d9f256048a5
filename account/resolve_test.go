package account

import (
	"context"
	"testing"

	"github.com/twostep-auth/twostep/internal/store"
)

// hotPath returns a session token for each kind of signed-in request:
// alice's password-only session and bob's session raised by his trusted
// device.
func hotPath(tb testing.TB) (*tsEnv, map[string]string) {
	e := newTSEnv(tb)
	ctx := context.Background()
	_, c := trustedBob(tb, e)
	dev, err := e.svc.SignIn(ctx, "bob", "bob-password", c)
	if err != nil || dev.Session.Device == "" {
		tb.Fatalf("device sign-in: %v %+v", err, dev)
	}
	pw, err := e.svc.SignIn(ctx, "alice", "alice-password", ip1)
	if err != nil {
		tb.Fatal(err)
	}
	return e, map[string]string{"password": pw.Token, "trusted_device": dev.Token}
}

// The request path allocates once (the session id) whatever raised the
// session: the session, device record and epoch come from the cache.
func TestResolveSharedAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	if bareStore() {
		t.Skip("the bare store decodes every read")
	}
	e, toks := hotPath(t)
	ctx := context.Background()
	for name, tok := range toks {
		if _, err := e.svc.ResolveShared(ctx, tok); err != nil {
			t.Fatal(name, err)
		}
		n := testing.AllocsPerRun(200, func() {
			if _, err := e.svc.ResolveShared(ctx, tok); err != nil {
				t.Fatal(name, err)
			}
		})
		if n > 1 {
			t.Errorf("%s: %.1f allocations per ResolveShared, want at most 1", name, n)
		}
	}
}

// Resolve hands out a copy of its own; ResolveShared the cache's, which
// still says what the store says after the copy is changed.
func TestResolveCopies(t *testing.T) {
	e, toks := hotPath(t)
	ctx := context.Background()
	tok := toks["trusted_device"]
	own, err := e.svc.Resolve(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	own.Session.State, own.Session.Device, own.Session.User = store.StateSecondFactor, "", "mallory"
	shared, err := e.svc.ResolveShared(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	if shared.Session.User != "bob" || shared.Session.State != store.StateTwoFactor || shared.Session.Device == "" {
		t.Fatalf("a change to Resolve's copy reached the cache: %+v", shared.Session)
	}
	again, _ := e.svc.ResolveShared(ctx, tok)
	if !bareStore() && again.Session != shared.Session {
		t.Error("ResolveShared did not share the cached session")
	}
}

func BenchmarkResolveShared(b *testing.B) {
	e, toks := hotPath(b)
	ctx := context.Background()
	for _, name := range []string{"password", "trusted_device"} {
		tok := toks[name]
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := e.svc.ResolveShared(ctx, tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
