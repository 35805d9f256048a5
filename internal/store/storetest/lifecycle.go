package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twostep-auth/twostep/internal/store"
)

var sweepTests = []testCase{
	{"RemovesExpiredKeepsLive", testSweep},
	{"Empty", testSweepEmpty},
}

func sweep(t *testing.T, s store.Store, at time.Time, want int, why string) {
	t.Helper()
	n, err := s.Sweep(bg, at)
	if err != nil {
		t.Fatalf("Sweep %s: %v", why, err)
	}
	if n != want {
		t.Errorf("Sweep %s = %d, want %d", why, n, want)
	}
}

func testSweep(t *testing.T, s store.Store) {
	base := now()
	at := base.Add(90 * time.Minute) // the first sweep
	user := "sweepy"

	abs := newSession("sw-abs", user, base)
	abs.Idle = 0
	abs.Expires = base.Add(time.Hour)
	idle := newSession("sw-idle", user, base)
	idle.LastSeen = base
	idle.Idle = 30 * time.Minute
	live := newSession("sw-live", user, base)
	live.Idle = 0
	live.Expires = base.Add(24 * time.Hour)
	// Would expire at 1h, but a touch at 50m moves that to 1h50m.
	touched := newSession("sw-touched", user, base)
	touched.LastSeen = base
	touched.Idle = time.Hour
	// Stored to expire at 1h, then replaced by a record that lives 3h.
	replaced := newSession("sw-replaced", user, base)
	replaced.Idle = 0
	replaced.Expires = base.Add(time.Hour)
	for _, sess := range []*store.Session{abs, idle, live, touched, replaced} {
		putSession(t, s, sess)
	}
	if err := s.TouchSession(bg, "sw-touched", base.Add(50*time.Minute)); err != nil {
		t.Fatalf("TouchSession(sw-touched): %v", err)
	}
	replaced = cloneSession(replaced)
	replaced.Expires = base.Add(3 * time.Hour)
	putSession(t, s, replaced)

	putKV(t, s, "sw-k-exp", []byte("x"), time.Hour, base)
	putKV(t, s, "sw-k-live", []byte("live"), 24*time.Hour, base)
	putKV(t, s, "sw-k-forever", []byte("forever"), 0, base)
	putKV(t, s, "sw-k-was-short", []byte("a"), time.Hour, base)
	putKV(t, s, "sw-k-was-short", []byte("b"), 0, base)
	incr(t, s, "sw-ctr", time.Hour, base)
	putIfAbsent(t, s, "sw-pia", "p", time.Hour, base)
	putKV(t, s, "sw-taken", []byte("t"), time.Hour, base)
	if _, err := s.Take(bg, "sw-taken", base); err != nil {
		t.Fatalf("Take(sw-taken): %v", err)
	}

	// Expired at 1h30m: 2 sessions (sw-abs, sw-idle) and 3 keys (sw-k-exp,
	// sw-ctr, sw-pia).
	sweep(t, s, at, 5, "at 1h30m (2 expired sessions, 3 expired keys)")
	sweep(t, s, at, 0, "a second time at 1h30m")

	// Swept records are gone, not just hidden: even at an earlier now.
	sessionNotFound(t, s, "sw-abs", base, "at issue time after Sweep removed it")
	sessionNotFound(t, s, "sw-idle", base, "at issue time after Sweep removed it")
	wantNoValue(t, s, "sw-k-exp", base, "at Put time after Sweep removed it")
	wantNoValue(t, s, "sw-pia", base, "at Put time after Sweep removed it")
	if ids := listIDs(t, s, user, base); !slices.Equal(ids, []string{"sw-live", "sw-replaced", "sw-touched"}) {
		t.Errorf("ListUserSessions at issue time after Sweep = %q, want the 3 live ones [sw-live sw-replaced sw-touched]", ids)
	}

	// Live records are intact.
	checkSession(t, "sw-live after Sweep", getSession(t, s, "sw-live", at), live)
	checkSession(t, "sw-replaced after Sweep (its first record's expiry must not count)", getSession(t, s, "sw-replaced", at), replaced)
	gotTouched := getSession(t, s, "sw-touched", at)
	if !gotTouched.LastSeen.Equal(base.Add(50 * time.Minute)) {
		t.Errorf("sw-touched LastSeen after Sweep = %v, want %v", gotTouched.LastSeen, base.Add(50*time.Minute))
	}
	wantValue(t, s, "sw-k-live", at, []byte("live"), "after Sweep")
	wantValue(t, s, "sw-k-forever", at, []byte("forever"), "after Sweep")
	wantValue(t, s, "sw-k-was-short", at, []byte("b"), "after Sweep (its first ttl must not count)")
	// The counter was removed: a new one starts at 1 although its old window
	// (base..base+1h) would still hold base+10m.
	if n, _ := incr(t, s, "sw-ctr", time.Hour, base.Add(10*time.Minute)); n != 1 {
		t.Errorf("Incr of a swept counter = %d, want 1", n)
	}

	// At 2h: sw-touched (1h50m) and the new counter (1h10m).
	sweep(t, s, base.Add(2*time.Hour), 2, "at 2h (a touched session and a counter)")
	sessionNotFound(t, s, "sw-touched", base.Add(time.Hour), "after Sweep removed it")
	checkSession(t, "sw-replaced after the second Sweep", getSession(t, s, "sw-replaced", base.Add(2*time.Hour)), replaced)
	checkSession(t, "sw-live after the second Sweep", getSession(t, s, "sw-live", base.Add(2*time.Hour)), live)
	wantValue(t, s, "sw-k-forever", base.Add(2*time.Hour), []byte("forever"), "after the second Sweep")
}

func testSweepEmpty(t *testing.T, s store.Store) {
	base := now()
	sweep(t, s, base, 0, "of an empty store")
	putSession(t, s, newSession("only", "alice", base))
	putKV(t, s, "only", []byte("v"), time.Hour, base)
	sweep(t, s, base, 0, "with nothing expired")
	getSession(t, s, "only", base)
	wantValue(t, s, "only", base, []byte("v"), "after a Sweep with nothing expired")
}

var lifecycleTests = []testCase{
	{"Ping", testPing},
	{"CanceledContext", testCanceledContext},
	{"Close", testClose},
	{"CloseWhileInUse", testCloseWhileInUse},
}

func testPing(t *testing.T, s store.Store) {
	if err := s.Ping(bg); err != nil {
		t.Fatalf("Ping of an open store: %v", err)
	}
	putKV(t, s, "k", []byte("v"), 0, now())
	if err := s.Ping(bg); err != nil {
		t.Fatalf("Ping after a write: %v", err)
	}
}

func testCanceledContext(t *testing.T, s store.Store) {
	base := now()
	putSession(t, s, newSession("ctx", "alice", base))
	ctx, cancel := context.WithCancel(bg)
	cancel()
	got, err := s.GetSession(ctx, "ctx", base)
	if err == nil {
		t.Errorf("GetSession with a canceled context returned %v and no error; want an error (deny when in doubt)", got)
	}
}

// allMethods calls every method but Close and returns their errors by name.
func allMethods(s store.Store, at time.Time) map[string]error {
	errs := map[string]error{}
	errs["PutSession"] = s.PutSession(bg, newSession("closed", "alice", at))
	_, errs["GetSession"] = s.GetSession(bg, "closed", at)
	errs["TouchSession"] = s.TouchSession(bg, "closed", at)
	errs["ReplaceSession"] = s.ReplaceSession(bg, newSession("closed", "alice", at))
	errs["DeleteSession"] = s.DeleteSession(bg, "closed")
	_, errs["DeleteUserSessions"] = s.DeleteUserSessions(bg, "alice")
	_, errs["ListUserSessions"] = s.ListUserSessions(bg, "alice", at)
	_, errs["Get"] = s.Get(bg, "k", at)
	errs["Put"] = s.Put(bg, "k", []byte("v"), 0, at)
	_, _, errs["PutIfAbsent"] = s.PutIfAbsent(bg, "k", []byte("v"), 0, at)
	errs["Replace"] = s.Replace(bg, "k", []byte("v"), 0, at)
	_, errs["Take"] = s.Take(bg, "k", at)
	errs["Delete"] = s.Delete(bg, "k")
	_, _, errs["Incr"] = s.Incr(bg, "c", time.Minute, at)
	_, errs["Sweep"] = s.Sweep(bg, at)
	errs["Ping"] = s.Ping(bg)
	return errs
}

func testClose(t *testing.T, s store.Store) {
	base := now()
	putSession(t, s, newSession("closed", "alice", base))
	putKV(t, s, "k", []byte("v"), 0, base)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for name, err := range allMethods(s, base) {
		if !errors.Is(err, store.ErrClosed) {
			t.Errorf("%s after Close: %v, want store.ErrClosed", name, err)
		}
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v, want nil (Close is idempotent)", err)
	}
	if err := s.Ping(bg); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Ping after a second Close: %v, want store.ErrClosed", err)
	}
}

func testCloseWhileInUse(t *testing.T, s store.Store) {
	base := now()
	putSession(t, s, newSession("busy", "alice", base))
	const workers = 4
	var ops atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			key := fmt.Sprintf("busy-%d", w)
			for {
				var err error
				switch ops.Add(1) % 4 {
				case 0:
					_, err = s.GetSession(bg, "busy", base)
				case 1:
					_, _, err = s.Incr(bg, key, time.Hour, base)
				case 2:
					err = s.Put(bg, key+"-kv", []byte("v"), time.Hour, base)
				case 3:
					_, err = s.Take(bg, key+"-kv", base)
					if errors.Is(err, store.ErrNotFound) {
						err = nil
					}
				}
				if errors.Is(err, store.ErrClosed) {
					// Once closed, it stays closed.
					if _, err := s.GetSession(bg, "busy", base); !errors.Is(err, store.ErrClosed) {
						errs <- fmt.Errorf("GetSession after another call returned ErrClosed: %v, want ErrClosed", err)
					}
					return
				}
				if err != nil {
					errs <- fmt.Errorf("a call while the store was being closed: %v, want success or ErrClosed", err)
					return
				}
			}
		})
	}
	deadline := time.Now().Add(10 * time.Second)
	for ops.Load() < 100 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close while in use: %v", err)
	}
	stopped := make(chan struct{})
	go func() { wg.Wait(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("calls made while the store was closed still had not returned ErrClosed 10s after Close")
	}
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// RunPersistence checks that records survive closing and reopening a store.
// open must return a store on the data in dir, the same data for the same
// dir (and register cleanup with t.Cleanup); RunPersistence opens dir twice,
// closing the first store before opening the second.
func RunPersistence(t *testing.T, open func(t *testing.T, dir string) store.Store) {
	t.Helper()
	dir := t.TempDir()
	base := now()

	s := open(t, dir)
	if s == nil {
		t.Fatal("open returned a nil store")
	}
	kept := newSession("p-kept", "alice", base)
	kept.Idle = 0
	putSession(t, s, kept)
	touched := newSession("p-touched", "alice", base)
	touched.LastSeen = base
	touched.Idle = time.Hour
	putSession(t, s, touched)
	if err := s.TouchSession(bg, "p-touched", base.Add(50*time.Minute)); err != nil {
		t.Fatalf("TouchSession: %v", err)
	}
	putSession(t, s, newSession("p-deleted", "alice", base))
	if err := s.DeleteSession(bg, "p-deleted"); err != nil {
		t.Fatalf("DeleteSession: %v", err)
	}
	putSession(t, s, newSession("p-bob", "bob", base))
	if n, err := s.DeleteUserSessions(bg, "bob"); err != nil || n != 1 {
		t.Fatalf("DeleteUserSessions(bob) = %d, %v", n, err)
	}
	putKV(t, s, "p-forever", []byte("forever"), 0, base)
	putKV(t, s, "p-ttl", []byte("ttl"), time.Hour, base)
	putKV(t, s, "p-taken", []byte("code"), time.Hour, base)
	if _, err := s.Take(bg, "p-taken", base); err != nil {
		t.Fatalf("Take: %v", err)
	}
	putKV(t, s, "p-deleted", []byte("x"), 0, base)
	if err := s.Delete(bg, "p-deleted"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	for range 3 {
		incr(t, s, "p-ctr", time.Hour, base)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s = open(t, dir)
	if s == nil {
		t.Fatal("reopen returned a nil store")
	}
	checkSession(t, "a session after reopening", getSession(t, s, "p-kept", base), kept)
	want := cloneSession(touched)
	want.LastSeen = base.Add(50 * time.Minute)
	checkSession(t, "a touched session after reopening", getSession(t, s, "p-touched", base.Add(100*time.Minute)), want)
	sessionNotFound(t, s, "p-deleted", base, "after reopening (it was deleted before)")
	sessionNotFound(t, s, "p-bob", base, "after reopening (DeleteUserSessions removed it before)")
	if ids := listIDs(t, s, "alice", base); !slices.Equal(ids, []string{"p-kept", "p-touched"}) {
		t.Errorf("ListUserSessions(alice) after reopening = %q, want [p-kept p-touched]", ids)
	}
	wantValue(t, s, "p-forever", base, []byte("forever"), "after reopening")
	wantValue(t, s, "p-ttl", base, []byte("ttl"), "after reopening")
	wantNoValue(t, s, "p-ttl", base.Add(time.Hour), "after reopening, at the end of its ttl")
	wantNoValue(t, s, "p-taken", base, "after reopening (a code taken before stays used)")
	wantNoValue(t, s, "p-deleted", base, "after reopening (it was deleted before)")
	if n, reset := incr(t, s, "p-ctr", time.Hour, base.Add(time.Minute)); n != 4 || !reset.Equal(base.Add(time.Hour)) {
		t.Errorf("Incr after reopening = %d, resetAt %v; want 4, %v (the counter and its window survive)", n, reset, base.Add(time.Hour))
	}
	// The expiry bookkeeping survives too: at 1h55m, p-ttl and p-ctr (1h)
	// and p-touched (50m + 1h idle) have expired.
	sweep(t, s, base.Add(115*time.Minute), 3, "after reopening")
	sessionNotFound(t, s, "p-touched", base, "after the Sweep after reopening")
	checkSession(t, "a live session after the Sweep after reopening", getSession(t, s, "p-kept", base), kept)
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}
