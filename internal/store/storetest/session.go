package storetest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twostep-auth/twostep/internal/store"
)

var sessionTests = []testCase{
	{"PutGet", testSessionPutGet},
	{"GetReturnsCopy", testSessionGetReturnsCopy},
	{"MinimalFields", testSessionMinimalFields},
	{"Replace", testSessionReplace},
	{"ReplaceChangesUser", testSessionReplaceChangesUser},
	{"Delete", testSessionDelete},
	{"GetMissing", testSessionGetMissing},
	{"AbsoluteExpiry", testSessionAbsoluteExpiry},
	{"IdleExpiry", testSessionIdleExpiry},
	{"Touch", testSessionTouch},
	{"TouchMissing", testSessionTouchMissing},
	{"TouchNeverBackwards", testSessionTouchNeverBackwards},
	{"ReplaceExisting", testSessionReplaceExisting},
	{"ReplaceNeverRevives", testSessionReplaceNeverRevives},
	{"TouchConcurrent", testSessionTouchConcurrent},
	{"Swap", testSessionSwap},
	{"SwapNeverRevives", testSessionSwapNeverRevives},
	{"SwapValidation", testSessionSwapValidation},
	{"SwapConcurrent", testSessionSwapConcurrent},
	{"SwapDuringDeleteUserSessions", testSessionSwapDuringDeleteUserSessions},
	{"TouchExpired", testSessionTouchExpired},
	{"DeleteUserSessions", testDeleteUserSessions},
	{"ListUserSessions", testListUserSessions},
	{"Validation", testSessionValidation},
	{"Concurrent", testSessionConcurrent},
}

func testSessionPutGet(t *testing.T, s store.Store) {
	base := now()
	want := newSession("3f9a0c5e8b7d41e2a6c4f0b9d8e7a6c53f9a0c5e8b7d41e2a6c4f0b9d8e7a6c5", "jürgen", base)
	putSession(t, s, want)
	checkSession(t, "GetSession right after PutSession", getSession(t, s, want.ID, base), want)
	// Another session must not be confused with it.
	other := newSession("other", "jürgen", base)
	other.State = store.StateSecondFactor
	putSession(t, s, other)
	checkSession(t, "GetSession of the first of two sessions", getSession(t, s, want.ID, base), want)
	checkSession(t, "GetSession of the second of two sessions", getSession(t, s, other.ID, base), other)
}

func testSessionGetReturnsCopy(t *testing.T, s store.Store) {
	base := now()
	orig := newSession("copy-1", "alice", base)
	want := cloneSession(orig)
	putSession(t, s, orig)
	// Changing the caller's record after PutSession must not change the store.
	orig.User = "mallory"
	orig.State = store.StateSecondFactor
	orig.Pending["return"] = "https://evil.example/"
	checkSession(t, "GetSession after the caller changed the record it stored", getSession(t, s, want.ID, base), want)
	// Nor may changing a record GetSession returned.
	got := getSession(t, s, want.ID, base)
	got.State = store.StateSecondFactor
	got.Expires = base.Add(1000 * time.Hour)
	got.Pending["return"] = "https://evil.example/"
	checkSession(t, "GetSession after the caller changed a returned record", getSession(t, s, want.ID, base), want)
}

func testSessionMinimalFields(t *testing.T, s store.Store) {
	base := now()
	want := &store.Session{ID: "min-1", User: "bob", State: store.StateSecondFactor, Expires: base.Add(time.Hour)}
	putSession(t, s, want)
	got := getSession(t, s, want.ID, base)
	checkSession(t, "GetSession of a session with only the required fields", got, want)
	if len(got.Pending) != 0 {
		t.Errorf("Pending = %v, want empty", got.Pending)
	}
	// Idle 0 means no idle timeout: the session lives until Expires.
	got = getSession(t, s, want.ID, base.Add(59*time.Minute))
	checkSession(t, "GetSession of a session without idle timeout just before Expires", got, want)
	sessionNotFound(t, s, want.ID, base.Add(time.Hour), "at Expires of a session without idle timeout")
}

func testSessionReplace(t *testing.T, s store.Store) {
	base := now()
	first := newSession("rep-1", "alice", base)
	first.State = store.StateSecondFactor
	first.Pending = map[string]string{"return": "/first"}
	putSession(t, s, first)
	second := newSession("rep-1", "alice", base)
	second.State = store.StateTwoFactor
	second.Pending = nil
	second.Device = ""
	second.Epoch = 8
	second.Expires = base.Add(3 * time.Hour)
	putSession(t, s, second)
	checkSession(t, "GetSession after PutSession replaced the record", getSession(t, s, "rep-1", base), second)
	if ids := listIDs(t, s, "alice", base); !slices.Equal(ids, []string{"rep-1"}) {
		t.Errorf("ListUserSessions after a replace = %q, want exactly [rep-1] (a replace must not duplicate the session)", ids)
	}
	// The replacement's expiry is the one that counts, in both directions.
	third := newSession("rep-1", "alice", base)
	third.Idle = 0
	third.Expires = base.Add(30 * time.Minute)
	putSession(t, s, third)
	sessionNotFound(t, s, "rep-1", base.Add(45*time.Minute), "after a replace shortened its life to 30m, at 45m")
}

func testSessionReplaceChangesUser(t *testing.T, s store.Store) {
	base := now()
	putSession(t, s, newSession("move-1", "alice", base))
	moved := newSession("move-1", "bob", base)
	putSession(t, s, moved)
	checkSession(t, "GetSession after the record was replaced with another user's", getSession(t, s, "move-1", base), moved)
	if ids := listIDs(t, s, "alice", base); len(ids) != 0 {
		t.Errorf("ListUserSessions(alice) = %q after her session was replaced by bob's, want none", ids)
	}
	if ids := listIDs(t, s, "bob", base); !slices.Equal(ids, []string{"move-1"}) {
		t.Errorf("ListUserSessions(bob) = %q, want [move-1]", ids)
	}
	n, err := s.DeleteUserSessions(bg, "alice")
	if err != nil || n != 0 {
		t.Errorf("DeleteUserSessions(alice) = %d, %v; want 0, nil (the session is bob's now)", n, err)
	}
	checkSession(t, "bob's session after DeleteUserSessions(alice)", getSession(t, s, "move-1", base), moved)
}

func testSessionDelete(t *testing.T, s store.Store) {
	base := now()
	putSession(t, s, newSession("del-1", "alice", base))
	keep := newSession("del-2", "alice", base)
	putSession(t, s, keep)
	if err := s.DeleteSession(bg, "del-1"); err != nil {
		t.Fatalf("DeleteSession(del-1): %v", err)
	}
	sessionNotFound(t, s, "del-1", base, "after DeleteSession")
	checkSession(t, "the other session after DeleteSession", getSession(t, s, "del-2", base), keep)
	if ids := listIDs(t, s, "alice", base); !slices.Equal(ids, []string{"del-2"}) {
		t.Errorf("ListUserSessions after DeleteSession(del-1) = %q, want [del-2]", ids)
	}
	if err := s.DeleteSession(bg, "del-1"); err != nil {
		t.Errorf("DeleteSession of an already deleted session: %v, want nil", err)
	}
	if err := s.DeleteSession(bg, "never-existed"); err != nil {
		t.Errorf("DeleteSession of a missing session: %v, want nil", err)
	}
	if err := s.TouchSession(bg, "del-1", base.Add(time.Minute)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("TouchSession of a deleted session: %v, want store.ErrNotFound (a touch must not recreate it)", err)
	}
	sessionNotFound(t, s, "del-1", base.Add(time.Minute), "after TouchSession on the deleted session")
}

func testSessionGetMissing(t *testing.T, s store.Store) {
	base := now()
	sessionNotFound(t, s, "missing", base, "in an empty store")
	putSession(t, s, newSession("present", "alice", base))
	sessionNotFound(t, s, "missing", base, "with another session stored")
	sessionNotFound(t, s, "presen", base, "(a prefix of a stored ID)")
	sessionNotFound(t, s, "present2", base, "(a stored ID plus a suffix)")
}

func testSessionAbsoluteExpiry(t *testing.T, s store.Store) {
	base := now()
	sess := newSession("abs-1", "alice", base)
	sess.Idle = 0
	sess.Expires = base.Add(time.Hour)
	putSession(t, s, sess)
	checkSession(t, "GetSession 1ms before the absolute expiry", getSession(t, s, "abs-1", sess.Expires.Add(-time.Millisecond)), sess)
	sessionNotFound(t, s, "abs-1", sess.Expires, "exactly at its absolute expiry")
	sessionNotFound(t, s, "abs-1", base.Add(2*time.Hour), "an hour after its absolute expiry")
	if ids := listIDs(t, s, "alice", base.Add(2*time.Hour)); len(ids) != 0 {
		t.Errorf("ListUserSessions after the absolute expiry = %q, want none", ids)
	}

	// The absolute expiry also caps a session whose idle timeout is longer.
	capped := newSession("abs-2", "alice", base)
	capped.Idle = 10 * time.Hour
	capped.Expires = base.Add(2 * time.Hour)
	putSession(t, s, capped)
	getSession(t, s, "abs-2", base.Add(time.Hour))
	sessionNotFound(t, s, "abs-2", base.Add(2*time.Hour), "at Expires although LastSeen+Idle is later")
}

func testSessionIdleExpiry(t *testing.T, s store.Store) {
	base := now()
	sess := newSession("idle-1", "alice", base)
	sess.LastSeen = base
	sess.Idle = 10 * time.Minute
	sess.Expires = base.Add(24 * time.Hour)
	putSession(t, s, sess)
	checkSession(t, "GetSession 9m after LastSeen (idle 10m)", getSession(t, s, "idle-1", base.Add(9*time.Minute)), sess)
	sessionNotFound(t, s, "idle-1", base.Add(10*time.Minute), "exactly at LastSeen+Idle")
	sessionNotFound(t, s, "idle-1", base.Add(5*time.Hour), "hours after LastSeen+Idle, before Expires")
	if ids := listIDs(t, s, "alice", base.Add(11*time.Minute)); len(ids) != 0 {
		t.Errorf("ListUserSessions after the idle timeout = %q, want none", ids)
	}
}

func testSessionTouch(t *testing.T, s store.Store) {
	base := now()
	sess := newSession("touch-1", "alice", base)
	sess.LastSeen = base
	sess.Idle = 10 * time.Minute
	sess.Expires = base.Add(30 * time.Minute)
	putSession(t, s, sess)

	touched := base.Add(9 * time.Minute)
	if err := s.TouchSession(bg, "touch-1", touched); err != nil {
		t.Fatalf("TouchSession 9m after LastSeen (idle 10m): %v", err)
	}
	want := cloneSession(sess)
	want.LastSeen = touched
	// Without the touch it would have expired at 10m; now it lives until 19m.
	checkSession(t, "GetSession 15m after issue, 6m after a touch (only LastSeen may change)", getSession(t, s, "touch-1", base.Add(15*time.Minute)), want)
	sessionNotFound(t, s, "touch-1", touched.Add(10*time.Minute), "at the new LastSeen+Idle after a touch")

	// Touches keep it going, but never past the absolute expiry.
	for _, m := range []time.Duration{18, 27} {
		at := base.Add(m * time.Minute)
		if err := s.TouchSession(bg, "touch-1", at); err != nil {
			t.Fatalf("TouchSession at %v: %v", m*time.Minute, err)
		}
	}
	want.LastSeen = base.Add(27 * time.Minute)
	checkSession(t, "GetSession at 29m after touches at 18m and 27m", getSession(t, s, "touch-1", base.Add(29*time.Minute)), want)
	sessionNotFound(t, s, "touch-1", base.Add(30*time.Minute), "at its absolute expiry, although touched 3m before")
	if ids := listIDs(t, s, "alice", base.Add(29*time.Minute)); !slices.Equal(ids, []string{"touch-1"}) {
		t.Errorf("ListUserSessions after touches = %q, want [touch-1]", ids)
	}
}

// ReplaceSession changes a stored session in place (state, fields,
// expiry); the session stays listed under its user.
func testSessionReplaceExisting(t *testing.T, s store.Store) {
	base := now()
	sess := newSession("repl-1", "alice", base)
	putSession(t, s, sess)
	next := cloneSession(sess)
	next.State = store.StateTwoFactor
	next.SecondFactorAt = base.Add(time.Minute)
	next.Expires = sess.Expires.Add(time.Hour)
	next.Pending = map[string]string{"return": "/x"}
	if err := s.ReplaceSession(bg, next); err != nil {
		t.Fatalf("ReplaceSession of a stored session: %v", err)
	}
	checkSession(t, "after ReplaceSession", getSession(t, s, "repl-1", base.Add(2*time.Minute)), next)
	if ids := listIDs(t, s, "alice", base); !slices.Equal(ids, []string{"repl-1"}) {
		t.Errorf("ListUserSessions after ReplaceSession = %q, want [repl-1]", ids)
	}
	bad := cloneSession(next)
	bad.State = store.StateNone
	if err := s.ReplaceSession(bg, bad); err == nil {
		t.Error("ReplaceSession with an invalid state succeeded")
	}
	checkSession(t, "after a refused ReplaceSession", getSession(t, s, "repl-1", base.Add(2*time.Minute)), next)
}

// ReplaceSession never brings back a session that is gone: deleted,
// signed out everywhere, or never stored. (A request that read the session
// just before "sign out everywhere" must not write it back.)
func testSessionReplaceNeverRevives(t *testing.T, s store.Store) {
	base := now()
	if err := s.ReplaceSession(bg, newSession("repl-none", "alice", base)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ReplaceSession of a session never stored: %v, want store.ErrNotFound", err)
	}
	sessionNotFound(t, s, "repl-none", base, "after ReplaceSession of a session never stored")

	a := newSession("repl-a", "alice", base)
	putSession(t, s, a)
	if err := s.DeleteSession(bg, "repl-a"); err != nil {
		t.Fatal(err)
	}
	up := cloneSession(a)
	up.State = store.StateTwoFactor
	if err := s.ReplaceSession(bg, up); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ReplaceSession after DeleteSession: %v, want store.ErrNotFound", err)
	}
	sessionNotFound(t, s, "repl-a", base, "after ReplaceSession of a deleted session")

	b := newSession("repl-b", "bob", base)
	putSession(t, s, b)
	if _, err := s.DeleteUserSessions(bg, "bob"); err != nil {
		t.Fatal(err)
	}
	up = cloneSession(b)
	up.State = store.StateTwoFactor
	if err := s.ReplaceSession(bg, up); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ReplaceSession after DeleteUserSessions: %v, want store.ErrNotFound", err)
	}
	sessionNotFound(t, s, "repl-b", base, "after ReplaceSession of a session signed out everywhere")
	if ids := listIDs(t, s, "bob", base); len(ids) != 0 {
		t.Errorf("ListUserSessions(bob) = %q, want none", ids)
	}
}

// A touch with an earlier time than the stored LastSeen (a request that
// was slower than another one) leaves LastSeen where it is.
func testSessionTouchNeverBackwards(t *testing.T, s store.Store) {
	base := now()
	sess := newSession("touch-back", "alice", base)
	sess.LastSeen = base
	sess.Idle = 10 * time.Minute
	sess.Expires = base.Add(time.Hour)
	putSession(t, s, sess)
	later, earlier := base.Add(5*time.Minute), base.Add(3*time.Minute)
	if err := s.TouchSession(bg, "touch-back", later); err != nil {
		t.Fatal(err)
	}
	if err := s.TouchSession(bg, "touch-back", earlier); err != nil {
		t.Fatalf("TouchSession with an earlier time: %v, want nil (nothing to do)", err)
	}
	want := cloneSession(sess)
	want.LastSeen = later
	checkSession(t, "after touches at 5m then 3m", getSession(t, s, "touch-back", base.Add(6*time.Minute)), want)
}

// Many requests of one session touch it at the same moment (the first
// requests after a minute): every touch succeeds, none is an error.
func testSessionTouchConcurrent(t *testing.T, s store.Store) {
	base := now()
	sess := newSession("touch-many", "alice", base)
	sess.LastSeen = base
	sess.Idle = 10 * time.Minute
	sess.Expires = base.Add(time.Hour)
	putSession(t, s, sess)
	const n = 32
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Two nodes' clocks: half the touches carry one time, half another.
			at := base.Add(2 * time.Minute)
			if i%2 == 1 {
				at = at.Add(time.Millisecond)
			}
			errs[i] = s.TouchSession(bg, "touch-many", at)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("concurrent TouchSession %d: %v", i, err)
		}
	}
	want := cloneSession(sess)
	want.LastSeen = base.Add(2*time.Minute + time.Millisecond)
	checkSession(t, "after concurrent touches", getSession(t, s, "touch-many", base.Add(3*time.Minute)), want)
}

func testSessionTouchMissing(t *testing.T, s store.Store) {
	base := now()
	err := s.TouchSession(bg, "missing", base)
	wantNotFound(t, "TouchSession of a missing session", err)
	sessionNotFound(t, s, "missing", base, "after TouchSession of a missing session (a touch must not create it)")
}

func testSessionTouchExpired(t *testing.T, s store.Store) {
	base := now()
	sess := newSession("touch-exp", "alice", base)
	sess.LastSeen = base
	sess.Idle = 10 * time.Minute
	sess.Expires = base.Add(24 * time.Hour)
	putSession(t, s, sess)
	err := s.TouchSession(bg, "touch-exp", base.Add(11*time.Minute))
	wantNotFound(t, "TouchSession 11m after LastSeen of a session with idle 10m (a touch must not revive an expired session)", err)
	sessionNotFound(t, s, "touch-exp", base.Add(11*time.Minute), "after a touch of the idle-expired session")
}

func testDeleteUserSessions(t *testing.T, s store.Store) {
	base := now()
	// Users whose names are prefixes or extensions of each other.
	users := map[string][]string{
		"alice":  {"a-1", "a-2", "a-3"},
		"alice2": {"a2-1"},
		"alic":   {"alic-1"},
		"bob":    {"b-1", "b-2"},
	}
	for user, ids := range users {
		for _, id := range ids {
			putSession(t, s, newSession(id, user, base))
		}
	}
	n, err := s.DeleteUserSessions(bg, "alice")
	if err != nil {
		t.Fatalf("DeleteUserSessions(alice): %v", err)
	}
	if n != 3 {
		t.Errorf("DeleteUserSessions(alice) = %d, want 3", n)
	}
	for _, id := range users["alice"] {
		sessionNotFound(t, s, id, base, "after DeleteUserSessions of its user")
	}
	for user, ids := range users {
		if user == "alice" {
			continue
		}
		for _, id := range ids {
			got, err := s.GetSession(bg, id, base)
			if err != nil || got == nil || got.User != user {
				t.Errorf("GetSession(%q) of user %q after DeleteUserSessions(alice) = %v, %v; want it intact", id, user, got, err)
			}
		}
		if got := listIDs(t, s, user, base); !slices.Equal(got, ids) {
			t.Errorf("ListUserSessions(%q) after DeleteUserSessions(alice) = %q, want %q", user, got, ids)
		}
	}
	if ids := listIDs(t, s, "alice", base); len(ids) != 0 {
		t.Errorf("ListUserSessions(alice) after DeleteUserSessions(alice) = %q, want none", ids)
	}
	if n, err := s.DeleteUserSessions(bg, "alice"); err != nil || n != 0 {
		t.Errorf("second DeleteUserSessions(alice) = %d, %v; want 0, nil", n, err)
	}
	if n, err := s.DeleteUserSessions(bg, "nobody"); err != nil || n != 0 {
		t.Errorf("DeleteUserSessions of a user without sessions = %d, %v; want 0, nil", n, err)
	}
	// A user can sign in again afterwards.
	putSession(t, s, newSession("a-4", "alice", base))
	if ids := listIDs(t, s, "alice", base); !slices.Equal(ids, []string{"a-4"}) {
		t.Errorf("ListUserSessions(alice) after a new sign-in = %q, want [a-4]", ids)
	}
	if n, err := s.DeleteUserSessions(bg, "bob"); err != nil || n != 2 {
		t.Errorf("DeleteUserSessions(bob) = %d, %v; want 2, nil", n, err)
	}
}

func testListUserSessions(t *testing.T, s store.Store) {
	base := now()
	at := base.Add(2 * time.Hour) // the time of the listing
	live1 := newSession("l-live-1", "alice", base)
	live1.Idle = 0
	live1.Expires = base.Add(3 * time.Hour)
	live2 := newSession("l-live-2", "alice", base)
	live2.State = store.StateSecondFactor
	live2.LastSeen = base.Add(90 * time.Minute)
	live2.Idle = time.Hour
	live2.Expires = base.Add(12 * time.Hour)
	absExpired := newSession("l-abs", "alice", base)
	absExpired.Idle = 0
	absExpired.Expires = base.Add(time.Hour)
	idleExpired := newSession("l-idle", "alice", base)
	idleExpired.LastSeen = base
	idleExpired.Idle = 30 * time.Minute
	idleExpired.Expires = base.Add(12 * time.Hour)
	exactly := newSession("l-exact", "alice", base)
	exactly.Idle = 0
	exactly.Expires = at
	for _, sess := range []*store.Session{live1, live2, absExpired, idleExpired, exactly,
		newSession("l-other", "alice2", base), newSession("l-bob", "bob", base)} {
		putSession(t, s, sess)
	}
	list, err := s.ListUserSessions(bg, "alice", at)
	if err != nil {
		t.Fatalf("ListUserSessions(alice): %v", err)
	}
	if ids := sessionIDs(list); !slices.Equal(ids, []string{"l-live-1", "l-live-2"}) {
		t.Errorf("ListUserSessions(alice) at 2h = %q, want exactly the two unexpired ones [l-live-1 l-live-2]", ids)
	}
	for _, got := range list {
		switch got.ID {
		case live1.ID:
			checkSession(t, "ListUserSessions entry l-live-1", got, live1)
		case live2.ID:
			checkSession(t, "ListUserSessions entry l-live-2", got, live2)
		}
	}
	// At issue time all five are unexpired.
	if ids := listIDs(t, s, "alice", base); len(ids) != 5 {
		t.Errorf("ListUserSessions(alice) at issue time = %q, want all 5 of her sessions", ids)
	}
	if ids := listIDs(t, s, "nobody", base); len(ids) != 0 {
		t.Errorf("ListUserSessions of a user without sessions = %q, want none", ids)
	}
	if ids := listIDs(t, s, "alic", base); len(ids) != 0 {
		t.Errorf("ListUserSessions(alic), a prefix of alice, = %q, want none", ids)
	}
}

func testSessionValidation(t *testing.T, s store.Store) {
	base := now()
	valid := newSession("v-keep", "victor", base)
	putSession(t, s, valid)

	mod := func(f func(*store.Session)) *store.Session {
		c := newSession("v-bad", "victor", base)
		f(c)
		return c
	}
	cases := []struct {
		name string
		sess *store.Session
	}{
		{"nil session", nil},
		{"empty ID", mod(func(c *store.Session) { c.ID = "" })},
		{"empty user", mod(func(c *store.Session) { c.User = "" })},
		{"StateNone", mod(func(c *store.Session) { c.State = store.StateNone })},
		{"unknown state 99", mod(func(c *store.Session) { c.State = 99 })},
		{"zero Expires", mod(func(c *store.Session) { c.Expires = time.Time{} })},
		{"replacing a valid session with StateNone", func() *store.Session {
			c := cloneSession(valid)
			c.State = store.StateNone
			return c
		}()},
		{"replacing a valid session with an empty user", func() *store.Session {
			c := cloneSession(valid)
			c.User = ""
			return c
		}()},
	}
	for _, c := range cases {
		err := s.PutSession(bg, c.sess)
		if err == nil {
			t.Errorf("PutSession with %s: no error, want a validation error", c.name)
		} else if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrClosed) {
			t.Errorf("PutSession with %s: %v; want a validation error, not ErrNotFound or ErrClosed", c.name, err)
		}
	}
	sessionNotFound(t, s, "v-bad", base, "after only invalid PutSession calls")
	sessionNotFound(t, s, "", base, "with the empty ID")
	checkSession(t, "the valid session after invalid replacements were rejected", getSession(t, s, "v-keep", base), valid)
	if ids := listIDs(t, s, "victor", base); !slices.Equal(ids, []string{"v-keep"}) {
		t.Errorf("ListUserSessions(victor) after invalid PutSession calls = %q, want only [v-keep]", ids)
	}
	if ids := listIDs(t, s, "", base); len(ids) != 0 {
		t.Errorf("ListUserSessions(\"\") = %q, want none", ids)
	}
}

func testSessionConcurrent(t *testing.T, s store.Store) {
	base := now()
	const workers, rounds = 8, 20
	go1 := start()
	var wg sync.WaitGroup
	errs := make(chan error, workers*rounds)
	for w := range workers {
		wg.Go(func() {
			<-go1
			user := fmt.Sprintf("user-%d", w%2)
			for r := range rounds {
				id := fmt.Sprintf("conc-%d-%d", w, r)
				sess := newSession(id, user, base)
				if err := s.PutSession(bg, sess); err != nil {
					errs <- fmt.Errorf("PutSession(%s): %w", id, err)
					return
				}
				if got, err := s.GetSession(bg, id, base); err != nil || got.ID != id || got.User != user {
					errs <- fmt.Errorf("GetSession(%s) right after PutSession = %v, %v", id, got, err)
					return
				}
				if err := s.TouchSession(bg, id, base.Add(time.Minute)); err != nil {
					errs <- fmt.Errorf("TouchSession(%s): %w", id, err)
					return
				}
				if r%2 == 1 {
					if err := s.DeleteSession(bg, id); err != nil {
						errs <- fmt.Errorf("DeleteSession(%s): %w", id, err)
						return
					}
				}
			}
		})
	}
	close(go1)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent session use: %v", err)
	}
	// Each worker kept its even rounds; the two users share the workers.
	for u := range 2 {
		user := fmt.Sprintf("user-%d", u)
		if ids := listIDs(t, s, user, base.Add(2*time.Minute)); len(ids) != workers/2*rounds/2 {
			t.Errorf("ListUserSessions(%s) after concurrent puts and deletes: %d sessions, want %d", user, len(ids), workers/2*rounds/2)
		}
	}
}

// upgraded is what passing a second factor makes of sess: a new ID at
// two_factor with a later expiry.
func upgraded(sess *store.Session, id string, base time.Time) *store.Session {
	next := cloneSession(sess)
	next.ID = id
	next.State = store.StateTwoFactor
	next.SecondFactorAt = base
	next.Expires = sess.Expires.Add(time.Hour)
	next.Device = ""
	return next
}

func testSessionSwap(t *testing.T, s store.Store) {
	base := now()
	half := newSession("swap-old", "alice", base)
	half.State = store.StateSecondFactor
	putSession(t, s, half)
	other := newSession("swap-other", "alice", base)
	putSession(t, s, other)
	next := upgraded(half, "swap-new", base)
	if err := s.SwapSession(bg, "swap-old", next, base); err != nil {
		t.Fatalf("SwapSession of a stored session: %v", err)
	}
	sessionNotFound(t, s, "swap-old", base, "after SwapSession replaced it")
	checkSession(t, "the new session after SwapSession", getSession(t, s, "swap-new", base), next)
	checkSession(t, "another session of the user after SwapSession", getSession(t, s, "swap-other", base), other)
	if ids := listIDs(t, s, "alice", base); !slices.Equal(ids, []string{"swap-new", "swap-other"}) && !slices.Equal(ids, []string{"swap-other", "swap-new"}) {
		t.Errorf("ListUserSessions after SwapSession = %q, want [swap-new swap-other]", ids)
	}
	// The old one is used up: swapping it again fails and writes nothing.
	if err := s.SwapSession(bg, "swap-old", upgraded(half, "swap-again", base), base); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second SwapSession of the same session: %v, want store.ErrNotFound", err)
	}
	sessionNotFound(t, s, "swap-again", base, "after a SwapSession of a used-up session")
	// The new session is an ordinary one: DeleteUserSessions ends it.
	if n, err := s.DeleteUserSessions(bg, "alice"); err != nil || n != 2 {
		t.Errorf("DeleteUserSessions after SwapSession = %d, %v; want 2, nil", n, err)
	}
	sessionNotFound(t, s, "swap-new", base, "after DeleteUserSessions")
}

// SwapSession never stands in for a session that is gone: never stored,
// deleted, signed out everywhere, or expired. (A request that read a
// half-signed-in session just before "sign out everywhere" must not get
// a signed-in one from it.)
func testSessionSwapNeverRevives(t *testing.T, s store.Store) {
	base := now()
	if err := s.SwapSession(bg, "swap-none", newSession("swap-none-new", "alice", base), base); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("SwapSession of a session never stored: %v, want store.ErrNotFound", err)
	}
	sessionNotFound(t, s, "swap-none-new", base, "after SwapSession of a session never stored")

	a := newSession("swap-del", "alice", base)
	putSession(t, s, a)
	if err := s.DeleteSession(bg, "swap-del"); err != nil {
		t.Fatal(err)
	}
	if err := s.SwapSession(bg, "swap-del", upgraded(a, "swap-del-new", base), base); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("SwapSession after DeleteSession: %v, want store.ErrNotFound", err)
	}
	sessionNotFound(t, s, "swap-del-new", base, "after SwapSession of a deleted session")

	b := newSession("swap-all", "bob", base)
	putSession(t, s, b)
	if _, err := s.DeleteUserSessions(bg, "bob"); err != nil {
		t.Fatal(err)
	}
	if err := s.SwapSession(bg, "swap-all", upgraded(b, "swap-all-new", base), base); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("SwapSession after DeleteUserSessions: %v, want store.ErrNotFound", err)
	}
	sessionNotFound(t, s, "swap-all-new", base, "after SwapSession of a session signed out everywhere")
	if ids := listIDs(t, s, "bob", base); len(ids) != 0 {
		t.Errorf("ListUserSessions(bob) = %q, want none", ids)
	}

	c := newSession("swap-exp", "carol", base)
	c.Expires = base.Add(time.Hour)
	putSession(t, s, c)
	late := base.Add(2 * time.Hour)
	if err := s.SwapSession(bg, "swap-exp", upgraded(c, "swap-exp-new", late), late); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("SwapSession of a session expired at now: %v, want store.ErrNotFound", err)
	}
	sessionNotFound(t, s, "swap-exp-new", late, "after SwapSession of an expired session")
}

// A refused SwapSession changes nothing: the old session stays, usable.
func testSessionSwapValidation(t *testing.T, s store.Store) {
	base := now()
	old := newSession("swap-v", "victor", base)
	putSession(t, s, old)
	mod := func(f func(*store.Session)) *store.Session {
		c := upgraded(old, "swap-v-new", base)
		f(c)
		return c
	}
	cases := []struct {
		name string
		next *store.Session
	}{
		{"nil session", nil},
		{"empty ID", mod(func(c *store.Session) { c.ID = "" })},
		{"the old session's own ID", mod(func(c *store.Session) { c.ID = "swap-v" })},
		{"another user", mod(func(c *store.Session) { c.User = "mallory" })},
		{"StateNone", mod(func(c *store.Session) { c.State = store.StateNone })},
		{"zero Expires", mod(func(c *store.Session) { c.Expires = time.Time{} })},
	}
	for _, c := range cases {
		err := s.SwapSession(bg, "swap-v", c.next, base)
		if err == nil {
			t.Errorf("SwapSession with %s: no error, want a validation error", c.name)
		} else if !errors.Is(err, store.ErrInvalid) {
			t.Errorf("SwapSession with %s: %v; want an error wrapping store.ErrInvalid", c.name, err)
		}
	}
	checkSession(t, "the old session after refused swaps", getSession(t, s, "swap-v", base), old)
	sessionNotFound(t, s, "swap-v-new", base, "after only refused swaps")
	if ids := listIDs(t, s, "mallory", base); len(ids) != 0 {
		t.Errorf("ListUserSessions(mallory) = %q, want none", ids)
	}
	if err := s.SwapSession(bg, "swap-v", upgraded(old, "swap-v-ok", base), base); err != nil {
		t.Errorf("SwapSession after refused ones: %v", err)
	}
}

// Of concurrent swaps of one session exactly one succeeds, and only its
// new session is left.
func testSessionSwapConcurrent(t *testing.T, s store.Store) {
	base := now()
	old := newSession("swap-c", "alice", base)
	old.State = store.StateSecondFactor
	putSession(t, s, old)
	const n = 16
	var wg sync.WaitGroup
	errs := make([]error, n)
	go1 := start()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-go1
			errs[i] = s.SwapSession(bg, "swap-c", upgraded(old, fmt.Sprintf("swap-c-%d", i), base), base)
		}()
	}
	close(go1)
	wg.Wait()
	var won []string
	for i, err := range errs {
		switch {
		case err == nil:
			won = append(won, fmt.Sprintf("swap-c-%d", i))
		case !errors.Is(err, store.ErrNotFound):
			t.Errorf("concurrent SwapSession %d: %v, want nil or store.ErrNotFound", i, err)
		}
	}
	if len(won) != 1 {
		t.Fatalf("%d of %d concurrent swaps of one session succeeded (%q), want exactly 1", len(won), n, won)
	}
	if ids := listIDs(t, s, "alice", base); !slices.Equal(ids, won) {
		t.Errorf("ListUserSessions after concurrent swaps = %q, want only the winner %q", ids, won)
	}
}

// "Sign out everywhere" racing a second factor being passed: whichever
// comes first, no session of the user is left when both are done.
func testSessionSwapDuringDeleteUserSessions(t *testing.T, s store.Store) {
	base := now()
	const rounds = 40
	for i := range rounds {
		user := fmt.Sprintf("racer-%d", i)
		old := newSession(user+"-half", user, base)
		old.State = store.StateSecondFactor
		putSession(t, s, old)
		putSession(t, s, newSession(user+"-other", user, base))
		var wg sync.WaitGroup
		var swapErr, delErr error
		go1 := start()
		wg.Add(2)
		go func() {
			defer wg.Done()
			<-go1
			swapErr = s.SwapSession(bg, old.ID, upgraded(old, user+"-full", base), base)
		}()
		go func() {
			defer wg.Done()
			<-go1
			_, delErr = s.DeleteUserSessions(bg, user)
		}()
		close(go1)
		wg.Wait()
		if delErr != nil {
			t.Fatalf("round %d: DeleteUserSessions: %v", i, delErr)
		}
		if swapErr != nil && !errors.Is(swapErr, store.ErrNotFound) {
			t.Fatalf("round %d: SwapSession: %v, want nil or store.ErrNotFound", i, swapErr)
		}
		if ids := listIDs(t, s, user, base); len(ids) != 0 {
			t.Fatalf("round %d: %q left after sign out everywhere raced a swap (swap: %v)", i, ids, swapErr)
		}
		sessionNotFound(t, s, user+"-full", base, "after sign out everywhere raced its swap")
	}
}
