// Package storetest is the conformance suite every store.Store backend
// passes. A backend's tests call Run with a function that opens a fresh,
// empty store (and registers its cleanup with t.Cleanup), and, if the backend
// keeps data on disk, RunPersistence.
//
// The suite passes explicit times to the store, all chosen relative to
// time.Now() and with every record expiring in the future in real time, so a
// backend that also expires records by the wall clock (such as Redis TTLs)
// passes too: "expired" in the suite always means "expired at the now given
// to the call".
package storetest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twostep-auth/twostep/internal/store"
)

// The limits every backend enforces on keys and values.
const (
	// MaxKeyLen is the longest key a backend must accept.
	MaxKeyLen = store.MaxKeyLen
	// MaxValueLen is the largest value a backend must accept.
	MaxValueLen = store.MaxValueLen
)

type testCase struct {
	name string
	fn   func(t *testing.T, s store.Store)
}

// Run runs the conformance suite against the stores open returns. open is
// called once per subtest and must return a new, empty store; the caller
// closes it through t.Cleanup (the suite may close it first: Close must be
// idempotent).
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	t.Helper()
	groups := []struct {
		name  string
		cases []testCase
	}{
		{"Session", sessionTests},
		{"KV", kvTests},
		{"PutIfAbsent", putIfAbsentTests},
		{"Replace", replaceTests},
		{"Take", takeTests},
		{"Incr", incrTests},
		{"Sweep", sweepTests},
		{"Lifecycle", lifecycleTests},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			for _, c := range g.cases {
				t.Run(c.name, func(t *testing.T) {
					s := open(t)
					if s == nil {
						t.Fatal("open returned a nil store")
					}
					c.fn(t, s)
				})
			}
		})
	}
}

var bg = context.Background()

// now is the suite's reference time: the wall clock, at millisecond
// precision so that backends storing milliseconds round-trip it exactly.
func now() time.Time { return time.Now().Truncate(time.Millisecond) }

// newSession returns a valid two-factor session issued at base, with every
// field set: it lives 12h, or 1h idle.
func newSession(id, user string, base time.Time) *store.Session {
	return &store.Session{
		ID:             id,
		User:           user,
		State:          store.StateTwoFactor,
		Created:        base.Add(-time.Minute),
		LastSeen:       base,
		Expires:        base.Add(12 * time.Hour),
		Idle:           time.Hour,
		SecondFactorAt: base.Add(-30 * time.Second),
		Device:         "device-" + id,
		Credential:     "cred-" + user,
		Epoch:          7,
		Pending:        map[string]string{"return": "/app?x=1&y=%2F", "nonce": "n-" + id, "empty": ""},
		IP:             "192.0.2.10",
		UserAgent:      "Mozilla/5.0 (storetest)",
	}
}

func cloneSession(s *store.Session) *store.Session {
	c := *s
	c.Pending = maps.Clone(s.Pending)
	return &c
}

// sessionDiff lists the fields in which got differs from want (times by
// instant, Pending nil and empty alike).
func sessionDiff(got, want *store.Session) []string {
	var d []string
	str := func(name, g, w string) {
		if g != w {
			d = append(d, fmt.Sprintf("%s = %q, want %q", name, g, w))
		}
	}
	tm := func(name string, g, w time.Time) {
		if !g.Equal(w) {
			d = append(d, fmt.Sprintf("%s = %v, want %v", name, g, w))
		}
	}
	str("ID", got.ID, want.ID)
	str("User", got.User, want.User)
	if got.State != want.State {
		d = append(d, fmt.Sprintf("State = %v, want %v", got.State, want.State))
	}
	tm("Created", got.Created, want.Created)
	tm("LastSeen", got.LastSeen, want.LastSeen)
	tm("Expires", got.Expires, want.Expires)
	if got.Idle != want.Idle {
		d = append(d, fmt.Sprintf("Idle = %v, want %v", got.Idle, want.Idle))
	}
	tm("SecondFactorAt", got.SecondFactorAt, want.SecondFactorAt)
	if got.SecondFactorAt.IsZero() != want.SecondFactorAt.IsZero() {
		d = append(d, fmt.Sprintf("SecondFactorAt.IsZero() = %v, want %v", got.SecondFactorAt.IsZero(), want.SecondFactorAt.IsZero()))
	}
	str("Device", got.Device, want.Device)
	str("Credential", got.Credential, want.Credential)
	if got.Epoch != want.Epoch {
		d = append(d, fmt.Sprintf("Epoch = %d, want %d", got.Epoch, want.Epoch))
	}
	if !maps.Equal(got.Pending, want.Pending) {
		d = append(d, fmt.Sprintf("Pending = %v, want %v", got.Pending, want.Pending))
	}
	str("IP", got.IP, want.IP)
	str("UserAgent", got.UserAgent, want.UserAgent)
	return d
}

func checkSession(t *testing.T, what string, got, want *store.Session) {
	t.Helper()
	if got == nil {
		t.Errorf("%s: got a nil session and no error", what)
		return
	}
	if d := sessionDiff(got, want); len(d) > 0 {
		t.Errorf("%s: the session read back differs from the one stored:\n\t%s", what, strings.Join(d, "\n\t"))
	}
}

func putSession(t *testing.T, s store.Store, sess *store.Session) {
	t.Helper()
	if err := s.PutSession(bg, sess); err != nil {
		t.Fatalf("PutSession(%q, user %q): %v", sess.ID, sess.User, err)
	}
}

func getSession(t *testing.T, s store.Store, id string, at time.Time) *store.Session {
	t.Helper()
	got, err := s.GetSession(bg, id, at)
	if err != nil {
		t.Fatalf("GetSession(%q, %v): %v; want the stored session", id, at, err)
	}
	if got == nil {
		t.Fatalf("GetSession(%q, %v) returned a nil session and no error", id, at)
	}
	return got
}

// wantNotFound fails unless err is store.ErrNotFound.
func wantNotFound(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, store.ErrNotFound) {
		if err == nil {
			t.Errorf("%s: got no error, want store.ErrNotFound", what)
		} else {
			t.Errorf("%s: got error %v, want store.ErrNotFound", what, err)
		}
	}
}

func sessionNotFound(t *testing.T, s store.Store, id string, at time.Time, why string) {
	t.Helper()
	got, err := s.GetSession(bg, id, at)
	wantNotFound(t, fmt.Sprintf("GetSession(%q) %s", id, why), err)
	if got != nil {
		t.Errorf("GetSession(%q) %s returned a session (%+v) with error %v", id, why, got, err)
	}
}

func sessionIDs(list []*store.Session) []string {
	ids := make([]string, 0, len(list))
	for _, s := range list {
		ids = append(ids, s.ID)
	}
	slices.Sort(ids)
	return ids
}

func listIDs(t *testing.T, s store.Store, user string, at time.Time) []string {
	t.Helper()
	list, err := s.ListUserSessions(bg, user, at)
	if err != nil {
		t.Fatalf("ListUserSessions(%q): %v", user, err)
	}
	for _, sess := range list {
		if sess == nil {
			t.Fatalf("ListUserSessions(%q) returned a nil session", user)
		}
		if sess.User != user {
			t.Errorf("ListUserSessions(%q) returned session %q of user %q", user, sess.ID, sess.User)
		}
	}
	return sessionIDs(list)
}

func putKV(t *testing.T, s store.Store, key string, value []byte, ttl time.Duration, at time.Time) {
	t.Helper()
	if err := s.Put(bg, key, value, ttl, at); err != nil {
		t.Fatalf("Put(%q, ttl %v): %v", key, ttl, err)
	}
}

func wantValue(t *testing.T, s store.Store, key string, at time.Time, want []byte, why string) {
	t.Helper()
	got, err := s.Get(bg, key, at)
	if err != nil {
		t.Errorf("Get(%q) %s: %v; want %q", key, why, err, want)
		return
	}
	if string(got) != string(want) {
		t.Errorf("Get(%q) %s = %q, want %q", key, why, got, want)
	}
}

func wantNoValue(t *testing.T, s store.Store, key string, at time.Time, why string) {
	t.Helper()
	got, err := s.Get(bg, key, at)
	wantNotFound(t, fmt.Sprintf("Get(%q) %s", key, why), err)
	if got != nil {
		t.Errorf("Get(%q) %s returned value %q with error %v", key, why, got, err)
	}
}

// start returns a channel that, once closed, releases goroutines waiting on
// it at the same moment, for the concurrency tests.
func start() chan struct{} { return make(chan struct{}) }
