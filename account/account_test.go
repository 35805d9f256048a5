package account

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/sync/semaphore"

	"github.com/twostep-auth/twostep/internal/store"
	"github.com/twostep-auth/twostep/internal/store/bolt"
	"github.com/twostep-auth/twostep/internal/store/cache"
	"github.com/twostep-auth/twostep/internal/users"
	"github.com/twostep-auth/twostep/policy"
)

type staticDir struct{ db atomic.Pointer[users.DB] }

func (d *staticDir) DB() *users.DB { return d.db.Load() }

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

var (
	hashOnce  sync.Once
	aliceHash string
	bobHash   string
)

func usersYAML(t testing.TB, aliceHashValue string, aliceDisabled bool) *users.DB {
	t.Helper()
	hashOnce.Do(func() {
		// The lowest bcrypt cost keeps the many sign-ins of these tests fast;
		// the code under test is the same for every cost.
		a, err := bcrypt.GenerateFromPassword([]byte("alice-password"), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		b, err := bcrypt.GenerateFromPassword([]byte("bob-password"), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		aliceHash, bobHash = string(a), string(b)
	})
	if aliceHashValue == "" {
		aliceHashValue = aliceHash
	}
	db, err := users.Parse([]byte(fmt.Sprintf(`users:
  alice:
    displayname: Alice
    password: "%s"
    email: alice@example.com
    groups: [admins]
    disabled: %v
  bob:
    password: "%s"
`, aliceHashValue, aliceDisabled, bobHash)))
	if err != nil {
		t.Fatal(err)
	}
	return db
}

type env struct {
	svc   *Service
	st    store.Store
	dir   *staticDir
	clock *clock
}

func newEnv(t testing.TB) *env {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "t.db"), bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if bareStore() {
		return newEnvWith(t, st)
	}
	// As in production: the cache in front of the store.
	return newEnvWith(t, cache.New(st, 5*time.Minute, CachedPrefixes...))
}

func newEnvWith(t testing.TB, st store.Store) *env {
	t.Helper()
	dir := &staticDir{}
	dir.db.Store(usersYAML(t, "", false))
	c := &clock{t: time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)}
	svc, err := New(Config{
		SessionIdle:     30 * time.Minute,
		SessionLifetime: 12 * time.Hour,
		Regulation:      Regulation{MaxRetries: 3, FindTime: 10 * time.Minute, BanTime: 15 * time.Minute},
		Secret:          []byte("0123456789abcdef0123456789abcdef"),
	}, st, dir, c.now, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &env{svc: svc, st: st, dir: dir, clock: c}
}

var ip1 = Client{IP: netip.MustParseAddr("192.0.2.1"), UserAgent: "test"}
var ip2 = Client{IP: netip.MustParseAddr("192.0.2.2"), UserAgent: "test"}

func TestSignIn(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	cases := []struct {
		name, user, pw string
		want           error
	}{
		{"right password", "alice", "alice-password", nil},
		{"user name is case-insensitive", "ALICE", "alice-password", nil},
		{"wrong password", "alice", "nope", ErrInvalidCredentials},
		{"unknown user", "mallory", "alice-password", ErrInvalidCredentials},
		{"empty password", "alice", "", ErrInvalidCredentials},
		{"empty user", "", "x", ErrInvalidCredentials},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res, err := e.svc.SignIn(ctx, tc.user, tc.pw, ip1)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
			if tc.want != nil {
				return
			}
			if len(res.Token) != 43 || res.Session.User != "alice" || res.Session.State != store.StateOneFactor {
				t.Fatalf("result %+v", res.Session)
			}
			got, err := e.svc.Resolve(ctx, res.Token)
			if err != nil || got.User.Name != "alice" {
				t.Fatalf("resolve: %v %+v", err, got)
			}
			if sub := got.Subject(); sub.State != policy.SignedInOneFactor || sub.User != "alice" || sub.Groups[0] != "admins" {
				t.Fatalf("subject %+v", sub)
			}
		})
	}
	t.Run("the token is not stored", func(t *testing.T) {
		res, err := e.svc.SignIn(ctx, "bob", "bob-password", ip1)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.st.GetSession(ctx, res.Token, e.clock.now()); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("the raw token is a store key: %v", err)
		}
	})
}

func TestDisabledUser(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	res, err := e.svc.SignIn(ctx, "alice", "alice-password", ip1)
	if err != nil {
		t.Fatal(err)
	}
	e.dir.db.Store(usersYAML(t, "", true))
	if _, err := e.svc.Resolve(ctx, res.Token); !errors.Is(err, ErrNoSession) {
		t.Fatalf("disabled user's session still resolves: %v", err)
	}
	if _, err := e.svc.SignIn(ctx, "alice", "alice-password", ip1); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("disabled user signed in: %v", err)
	}
}

func TestPasswordChangeEndsSessions(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	res, err := e.svc.SignIn(ctx, "alice", "alice-password", ip1)
	if err != nil {
		t.Fatal(err)
	}
	nh, _ := bcrypt.GenerateFromPassword([]byte("new-password"), bcrypt.MinCost)
	newHash := string(nh)
	e.dir.db.Store(usersYAML(t, newHash, false))
	if _, err := e.svc.Resolve(ctx, res.Token); !errors.Is(err, ErrNoSession) {
		t.Fatalf("session survived a password change: %v", err)
	}
	if _, err := e.st.GetSession(ctx, res.Session.ID, e.clock.now()); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the ended session is still stored: %v", err)
	}
}

func TestSessionLifetimes(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	res, err := e.svc.SignIn(ctx, "bob", "bob-password", ip1)
	if err != nil {
		t.Fatal(err)
	}
	// Used every 20 minutes, the session lives until its absolute lifetime.
	for i := 0; i < 35; i++ {
		e.clock.add(20 * time.Minute)
		if _, err := e.svc.Resolve(ctx, res.Token); err != nil {
			t.Fatalf("after %d×20m: %v", i+1, err)
		}
	}
	e.clock.add(20 * time.Minute) // 12h20m after sign-in
	if _, err := e.svc.Resolve(ctx, res.Token); !errors.Is(err, ErrNoSession) {
		t.Fatalf("past the absolute lifetime: %v", err)
	}

	res, err = e.svc.SignIn(ctx, "bob", "bob-password", ip1)
	if err != nil {
		t.Fatal(err)
	}
	e.clock.add(31 * time.Minute)
	if _, err := e.svc.Resolve(ctx, res.Token); !errors.Is(err, ErrNoSession) {
		t.Fatalf("past the idle timeout: %v", err)
	}
}

func TestTouchAtMostOnceAMinute(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	res, err := e.svc.SignIn(ctx, "bob", "bob-password", ip1)
	if err != nil {
		t.Fatal(err)
	}
	e.clock.add(30 * time.Second)
	if _, err := e.svc.Resolve(ctx, res.Token); err != nil {
		t.Fatal(err)
	}
	s, _ := e.st.GetSession(ctx, res.Session.ID, e.clock.now())
	if !s.LastSeen.Equal(res.Session.Created) {
		t.Fatalf("touched after 30s: %v", s.LastSeen)
	}
	e.clock.add(31 * time.Second)
	if _, err := e.svc.Resolve(ctx, res.Token); err != nil {
		t.Fatal(err)
	}
	s, _ = e.st.GetSession(ctx, res.Session.ID, e.clock.now())
	if !s.LastSeen.Equal(e.clock.now()) {
		t.Fatalf("not touched after 61s: %v", s.LastSeen)
	}
}

func TestBadTokens(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	res, _ := e.svc.SignIn(ctx, "bob", "bob-password", ip1)
	flipped := []byte(res.Token)
	flipped[10] ^= 1
	for _, tok := range []string{"", "x", res.Token + "A", res.Token[:42], string(flipped), "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"} {
		if _, err := e.svc.Resolve(ctx, tok); !errors.Is(err, ErrNoSession) {
			t.Errorf("token %q: %v", tok, err)
		}
	}
}

func TestSignOut(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	res, _ := e.svc.SignIn(ctx, "bob", "bob-password", ip1)
	if err := e.svc.SignOut(ctx, res.Token, ip1); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Resolve(ctx, res.Token); !errors.Is(err, ErrNoSession) {
		t.Fatalf("after sign-out: %v", err)
	}
	if err := e.svc.SignOut(ctx, "garbage", ip1); err != nil {
		t.Fatalf("signing out a bad token: %v", err)
	}
}

func TestRegulation(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if _, err := e.svc.SignIn(ctx, "bob", "wrong", ip1); !errors.Is(err, ErrInvalidCredentials) {
			t.Fatalf("attempt %d: %v", i, err)
		}
	}
	var rl *RateLimitedError
	if _, err := e.svc.SignIn(ctx, "bob", "bob-password", ip2); !errors.As(err, &rl) {
		t.Fatalf("banned user with the right password from another IP: %v", err)
	}
	if rl.RetryAfter <= 0 || rl.RetryAfter > 15*time.Minute {
		t.Fatalf("retry after %v", rl.RetryAfter)
	}
	if _, err := e.svc.SignIn(ctx, "BOB", "bob-password", ip2); !errors.As(err, &rl) {
		t.Fatalf("the ban is per canonical user: %v", err)
	}
	// ip1 is banned too: another user from it is refused.
	if _, err := e.svc.SignIn(ctx, "alice", "alice-password", ip1); !errors.As(err, &rl) {
		t.Fatalf("banned IP: %v", err)
	}
	// alice from another IP is fine.
	if _, err := e.svc.SignIn(ctx, "alice", "alice-password", ip2); err != nil {
		t.Fatalf("alice from ip2: %v", err)
	}
	e.clock.add(15*time.Minute + time.Second)
	if _, err := e.svc.SignIn(ctx, "bob", "bob-password", ip2); err != nil {
		t.Fatalf("after the ban: %v", err)
	}
}

func TestRegulationWindow(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		e.svc.SignIn(ctx, "bob", "wrong", ip1)
	}
	e.clock.add(11 * time.Minute) // the window ended: the count starts again
	for i := 0; i < 2; i++ {
		e.svc.SignIn(ctx, "bob", "wrong", ip1)
	}
	if _, err := e.svc.SignIn(ctx, "bob", "bob-password", ip1); err != nil {
		t.Fatalf("2+2 failures in separate windows banned bob: %v", err)
	}
}

// failing is a store whose every call fails, as a dead Redis would.
type failing struct{ store.Store }

var errDown = errors.New("connection refused")

func (failing) GetSession(context.Context, string, time.Time) (*store.Session, error) {
	return nil, errDown
}
func (failing) Get(context.Context, string, time.Time) ([]byte, error) { return nil, errDown }
func (failing) PutSession(context.Context, *store.Session) error       { return errDown }
func (failing) Incr(context.Context, string, time.Duration, time.Time) (int64, time.Time, error) {
	return 0, time.Time{}, errDown
}

func TestStoreDownDenies(t *testing.T) {
	e := newEnvWith(t, failing{})
	ctx := context.Background()
	var un *UnavailableError
	if _, err := e.svc.SignIn(ctx, "bob", "bob-password", ip1); !errors.As(err, &un) {
		t.Fatalf("sign-in with the store down: %v", err)
	}
	tok, _, _ := e.svc.newToken()
	if _, err := e.svc.Resolve(ctx, tok); !errors.As(err, &un) {
		t.Fatalf("resolve with the store down: %v", err)
	}
}

func TestHashQueueBounded(t *testing.T) {
	e := newEnv(t)
	e.svc.cfg.MaxConcurrentHashes, e.svc.cfg.MaxQueuedHashes = 1, 0
	e.svc.hashSlots = semaphore.NewWeighted(1)
	e.svc.hashSlots.Acquire(context.Background(), 1) // one hash in flight
	e.svc.queued.Add(1)
	_, err := e.svc.SignIn(context.Background(), "bob", "bob-password", ip1)
	if !errors.Is(err, ErrBusy) {
		t.Fatalf("queue full: %v", err)
	}
}

// Hash slots stand for memory: an argon2id hash heavier than 64 MiB takes
// several (all of them at most, so it still runs alone), and the hashes in
// flight never hold more than the slots' memory between them.
func TestHashSlotsWeighMemory(t *testing.T) {
	e := newEnv(t)
	e.svc.cfg.MaxConcurrentHashes = 4
	for _, c := range []struct {
		hash string
		want int64
	}{
		{"$2a$04$0123456789012345678901uQ9Q9lq0Ew6xQn5Y8m0C9bQ1i3rHq3a", 1},
		{"$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA", 1},
		{"$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA", 1},
		{"$argon2id$v=19$m=131072,t=2,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA", 2},
		{"$argon2id$v=19$m=1048576,t=2,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA", 4},
		{"not a hash", 1},
	} {
		if got := e.svc.hashWeight(c.hash); got != c.want {
			t.Errorf("slots of %.40s…: %d, want %d", c.hash, got, c.want)
		}
	}
}

func TestCSRF(t *testing.T) {
	e := newEnv(t)
	cookie, _ := NewRandom(32)
	tok := e.svc.CSRFToken(cookie)
	if !e.svc.CheckCSRF(cookie, tok) {
		t.Fatal("valid token refused")
	}
	other, _ := NewRandom(32)
	for _, c := range []struct{ cookie, tok string }{{other, tok}, {cookie, ""}, {cookie, tok + "x"}, {"short", e.svc.CSRFToken("short")}} {
		if e.svc.CheckCSRF(c.cookie, c.tok) {
			t.Errorf("accepted %+v", c)
		}
	}
}

// FuzzTokenID: cookie decoding never panics, accepts only 43-character
// base64url tokens, and any change to a valid token changes its id.
func FuzzTokenID(f *testing.F) {
	svc, err := New(Config{
		SessionIdle: time.Hour, SessionLifetime: time.Hour,
		Regulation: Regulation{MaxRetries: 1, FindTime: time.Minute, BanTime: time.Minute},
		Secret:     []byte("0123456789abcdef0123456789abcdef"),
	}, failing{}, &staticDir{}, nil, nil)
	if err != nil {
		f.Fatal(err)
	}
	valid, validID, _ := svc.newToken()
	f.Add(valid)
	f.Add("")
	f.Add(valid[:42] + "=")
	f.Add("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA_")
	f.Fuzz(func(t *testing.T, tok string) {
		id, ok := svc.tokenID(tok)
		if !ok {
			return
		}
		if len(tok) != 43 || len(id) != 64 {
			t.Fatalf("accepted %q → %q", tok, id)
		}
		if tok != valid && id == validID {
			t.Fatalf("%q collides with a valid token", tok)
		}
	})
}

// TestWithoutCache runs the package's tests again on the bare store (the
// account service also works without a cache in front of it).
func TestWithoutCache(t *testing.T) {
	if bareStore() {
		t.Skip("this is the run without the cache")
	}
	if testing.Short() {
		t.Skip("-short")
	}
	cmd := exec.Command(os.Args[0], "-test.count=1", "-test.run=^Test")
	cmd.Env = append(os.Environ(), "TWOSTEP_ACCOUNT_NO_CACHE=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("tests on the bare store: %v\n%s", err, out)
	}
}

// bareStore: this is the run without the cache (TestWithoutCache).
func bareStore() bool { return os.Getenv("TWOSTEP_ACCOUNT_NO_CACHE") != "" }

// A name nobody has is often a password typed into the wrong field: the
// audit log keeps a keyed tag of it (the same for the same name, so
// repeated attempts still line up), never the name itself.
func TestAuditKeepsNoUnknownName(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	core, logs := observer.New(zapcore.InfoLevel)
	e.svc.audit = zap.New(core)
	const typed = "Correct-Horse-Battery-9"
	for range e.svc.cfg.Regulation.MaxRetries + 1 { // the last one is refused by the ban
		if _, err := e.svc.SignIn(ctx, typed, "whatever", ip1); err == nil {
			t.Fatal("signed in as nobody")
		}
	}
	if _, err := e.svc.SignIn(ctx, "alice", "wrong", ip2); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatal(err)
	}
	tags := map[string]bool{}
	for _, entry := range logs.All() {
		for k, v := range entry.ContextMap() {
			if s := fmt.Sprint(v); strings.Contains(strings.ToLower(s), strings.ToLower(typed)) {
				t.Errorf("audit %q: field %s holds the typed name %q", entry.Message, k, s)
			}
			if k == "unknown_user" {
				tags[fmt.Sprint(v)] = true
			}
		}
	}
	if len(tags) != 1 {
		t.Errorf("tags of the unknown name: %v, want one, the same on every line", tags)
	}
	// A known user is still named.
	if got := logs.FilterField(zap.String("user", "alice")).Len(); got != 1 {
		t.Errorf("audit lines naming alice: %d, want 1", got)
	}
}
