package account

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
	"github.com/twostep-auth/twostep/internal/store/cache"
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

// gatedTouch counts TouchSession calls and holds the first until released.
type gatedTouch struct {
	store.Store
	touches          atomic.Int64
	started, release chan struct{}
}

func (g *gatedTouch) TouchSession(ctx context.Context, id string, at time.Time) error {
	if g.touches.Add(1) == 1 {
		close(g.started)
		<-g.release
	}
	return g.Store.TouchSession(ctx, id, at)
}

// The first requests of a busy session after a minute: one touches it,
// the others go on at once with the session as read; none fails.
func TestConcurrentRequestsTouchOnce(t *testing.T) {
	st, err := bolt.Open(filepath.Join(t.TempDir(), "t.db"), bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	g := &gatedTouch{Store: st, started: make(chan struct{}), release: make(chan struct{})}
	e := newEnvWith(t, cache.New(g, 5*time.Minute, CachedPrefixes...))
	ctx := context.Background()
	res, err := e.svc.SignIn(ctx, "alice", "alice-password", ip1)
	if err != nil {
		t.Fatal(err)
	}
	e.clock.add(2 * time.Minute)
	first := make(chan error, 1)
	go func() {
		_, err := e.svc.ResolveShared(ctx, res.Token)
		first <- err
	}()
	<-g.started // the first request is touching
	const others = 16
	var wg sync.WaitGroup
	errs := make(chan error, others)
	for range others {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := e.svc.ResolveShared(ctx, res.Token)
			errs <- err
		}()
	}
	wg.Wait() // they do not wait for the touch
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("a request during the touch: %v", err)
		}
	}
	close(g.release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if n := g.touches.Load(); n != 1 {
		t.Fatalf("%d touches for one session in one instant, want 1", n)
	}
	// The touch landed, and the next minute's touch happens again.
	r, _ := e.svc.ResolveShared(ctx, res.Token)
	if !r.Session.LastSeen.Equal(e.clock.now()) {
		t.Fatalf("LastSeen %v, want %v", r.Session.LastSeen, e.clock.now())
	}
	e.clock.add(2 * time.Minute)
	if _, err := e.svc.ResolveShared(ctx, res.Token); err != nil || g.touches.Load() != 2 {
		t.Fatalf("the next touch: %v, %d touches", err, g.touches.Load())
	}
}

// A request that read its session just before "sign out everywhere" must
// not write it back: confirming a phone with that stale session fails and
// leaves no session behind.
func TestSignOutEverywhereIsFinal(t *testing.T) {
	e := newTSEnv(t)
	ctx := context.Background()
	res := e.signIn(t, "bob", "bob-password") // two-step off: signed in
	if _, err := e.svc.SetPhone(ctx, res, "+15551234567", MethodSMS, ip1); err != nil {
		t.Fatal(err)
	}
	code := e.sms.last(t).Code
	stale := *res // what the confirming request read
	if err := e.svc.RevokeAll(ctx, "bob", ip1); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.ConfirmPhone(ctx, &stale, code, ip1); err == nil {
		t.Fatal("confirming with a session that was signed out everywhere succeeded")
	}
	if _, err := e.st.GetSession(ctx, res.Session.ID, e.clock.now()); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the session came back after sign out everywhere: %v", err)
	}
}

// A device-raised session whose device is revoked together with its
// sessions is not written back as a half-signed-in one.
func TestDowngradeNeverRevives(t *testing.T) {
	e, toks := hotPath(t)
	ctx := context.Background()
	tok := toks["trusted_device"]
	res, err := e.svc.Resolve(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	// The device goes and the session with it (as "sign out everywhere"
	// does), but this request's cache still has the session.
	if err := e.svc.revokeDevices(ctx, "bob", "test"); err != nil {
		t.Fatal(err)
	}
	inner := e.st
	if c, ok := e.st.(*cache.Store); ok {
		inner = c.Store
	}
	if _, err := inner.DeleteUserSessions(ctx, "bob"); err != nil { // behind the cache's back
		t.Fatal(err)
	}
	if _, err := e.svc.ResolveShared(ctx, tok); !errors.Is(err, ErrNoSession) {
		t.Fatalf("resolving the revoked device's session: %v, want ErrNoSession", err)
	}
	if _, err := inner.GetSession(ctx, res.Session.ID, e.clock.now()); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the downgrade wrote the session back: %v", err)
	}
}

// Passing the second factor with a half-signed-in session that "sign out
// everywhere" ended meanwhile (the request read it just before) issues no
// session: the new one may only replace the old one while it is stored.
func TestSecondFactorAfterSignOutEverywhere(t *testing.T) {
	e := newTSEnv(t)
	ctx := context.Background()
	e.enrolPhone(t)
	half := e.signIn(t, "bob", "bob-password")
	if half.Session.State != store.StateSecondFactor {
		t.Fatalf("state after password: %v", half.Session.State)
	}
	if _, err := e.svc.SendCode(ctx, half, MethodSMS, ip1); err != nil {
		t.Fatal(err)
	}
	code := e.sms.last(t).Code
	stale := *half // what the verifying request read
	if err := e.svc.RevokeAll(ctx, "bob", ip1); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.VerifyCode(ctx, &stale, MethodSMS, code, false, ip1); !errors.Is(err, ErrNoSession) {
		t.Fatalf("a code for a session signed out everywhere: %v, want ErrNoSession", err)
	}
	left, err := e.st.ListUserSessions(ctx, "bob", e.clock.now())
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 0 {
		t.Fatalf("%d session(s) survived sign out everywhere: %+v", len(left), left[0])
	}
}

// Two second factors passed at once for one half-signed-in session (a
// backup code and an SMS code, say) make one session, not two.
func TestSecondFactorOnceConcurrently(t *testing.T) {
	e := newTSEnv(t)
	ctx := context.Background()
	backup := e.enrolPhone(t)
	half := e.signIn(t, "bob", "bob-password")
	before, err := e.st.ListUserSessions(ctx, "bob", e.clock.now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.SendCode(ctx, half, MethodSMS, ip1); err != nil {
		t.Fatal(err)
	}
	sms := e.sms.last(t).Code
	var wg sync.WaitGroup
	results := make([]error, 2)
	for i, c := range []struct{ method, code string }{{MethodSMS, sms}, {MethodBackup, backup[0]}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stale := *half
			_, results[i] = e.svc.VerifyCode(ctx, &stale, c.method, c.code, false, ip1)
		}()
	}
	wg.Wait()
	ok := 0
	for _, err := range results {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, ErrNoSession):
			t.Fatalf("the other verification: %v, want ErrNoSession", err)
		}
	}
	left, err := e.st.ListUserSessions(ctx, "bob", e.clock.now())
	if err != nil {
		t.Fatal(err)
	}
	if ok != 1 || len(left) != len(before) {
		t.Fatalf("%d verifications passed, %d sessions (%d before); want 1 pass and the half session replaced by one", ok, len(left), len(before))
	}
}
