package account

import (
	"bytes"
	"context"
	"errors"
	"image"
	"image/color"
	"image/png"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twostep-auth/twostep/internal/documents"
	"github.com/twostep-auth/twostep/internal/store"
	"github.com/twostep-auth/twostep/internal/store/bolt"
	"github.com/twostep-auth/twostep/internal/users"
)

func pngBytes(t *testing.T) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 20, 10))
	for x := 0; x < 20; x++ {
		img.Set(x, 5, color.RGBA{200, 0, 0, 255})
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// recoveryEnv: bob has two-step on and is half signed in; alice is a
// reviewer (group admins) signed in with two factors.
func recoveryEnv(t *testing.T, mutate func(*RecoveryConfig)) (e *tsEnv, bob, alice *Resolved) {
	t.Helper()
	e = newTSEnv(t)
	bob, alice = enableRecovery(t, e, mutate)
	return e, bob, alice
}

// enableRecovery turns recovery on (alice reviews), gives bob two-step
// with a phone and alice a phone, and returns bob half signed in and
// alice signed in.
func enableRecovery(t *testing.T, e *tsEnv, mutate func(*RecoveryConfig)) (bob, alice *Resolved) {
	t.Helper()
	rc := RecoveryConfig{Enabled: true, ReviewGroup: "admins", Approvals: 1, MaxSize: 1 << 20, Expected: "about two days",
		Retention: time.Hour, AfterApproval: "password_only", Expiry: 30 * 24 * time.Hour, MaxPerAccount: 5, MaxPerIP: 20}
	if mutate != nil {
		mutate(&rc)
	}
	e.svc.cfg.Recovery = rc
	ctx := context.Background()
	e.enrolPhone(t)
	bob = e.signIn(t, "bob", "bob-password")
	a := e.signIn(t, "alice", "alice-password")
	if _, err := e.svc.SetPhone(ctx, a, "+15557654321", MethodSMS, ip1); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.ConfirmPhone(ctx, a, e.sms.last(t).Code, ip1); err != nil {
		t.Fatal(err)
	}
	return bob, a
}

func TestRecoveryApproval(t *testing.T) {
	e, bob, alice := recoveryEnv(t, nil)
	ctx := context.Background()
	bobToken := mustToken(t, e, "bob")
	r, err := e.svc.RequestRecovery(ctx, bob, "passport", bytes.NewReader(pngBytes(t)), ip1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.RequestRecovery(ctx, bob, "passport", bytes.NewReader(pngBytes(t)), ip1); !errors.Is(err, ErrConflict) {
		t.Fatalf("second open request: %v", err)
	}
	// The document is encrypted at rest.
	blob, _ := e.st.Get(ctx, recoveryDocKey(r.ID), e.clock.now())
	if bytes.Contains(blob, []byte("IHDR")) {
		t.Fatal("the document is stored in plaintext")
	}
	q, err := e.svc.ReviewQueue(ctx, alice)
	if err != nil || len(q) != 1 || q[0].User != "bob" {
		t.Fatalf("queue %+v %v", q, err)
	}
	if _, err := e.svc.ReviewQueue(ctx, bob); !errors.Is(err, ErrForbidden) {
		t.Fatalf("bob is no reviewer: %v", err)
	}
	doc, err := e.svc.ReviewDocument(ctx, alice, r.ID, ip1)
	if err != nil || doc.Kind != documents.Kind("png") {
		t.Fatalf("document %v %v", doc, err)
	}
	if _, err := e.svc.Decide(ctx, alice, r.ID, "deny", "", ip1); err == nil {
		t.Fatal("denial without a reason")
	}
	if _, err := e.svc.Decide(ctx, alice, r.ID, "approve", "", ip1); err != nil {
		t.Fatal(err)
	}
	// The phone that was a method hears of it, although applying the
	// approval (no cooling-off) removed it.
	if m := e.sms.last(t); m.To != "+15551234567" || !strings.Contains(m.Body, "recovery of your account was approved") {
		t.Fatalf("last SMS %+v, want the approval notice to bob's phone", m)
	}
	// Two-step is off, methods gone, sessions ended.
	if _, err := e.svc.Resolve(ctx, bobToken); !errors.Is(err, ErrNoSession) {
		t.Fatalf("bob's session survived the approval: %v", err)
	}
	got := e.signIn(t, "bob", "bob-password")
	if got.Session.State != store.StateOneFactor {
		t.Fatalf("after approval: %v", got.Session.State)
	}
	info, _ := e.svc.TwoStep(ctx, &users.User{Name: "bob"})
	if info.Enabled || len(info.Methods) != 0 {
		t.Fatalf("two-step after approval: %+v", info)
	}
	if _, err := e.svc.MyRecovery(ctx, alice, r.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("alice sees bob's request: %v", err)
	}
}

func mustToken(t *testing.T, e *tsEnv, user string) string {
	t.Helper()
	res, err := e.svc.SignIn(context.Background(), user, user+"-password", ip1)
	if err != nil {
		t.Fatal(err)
	}
	return res.Token
}

func TestRecoveryOwnAndTwoApprovals(t *testing.T) {
	e, bob, alice := recoveryEnv(t, func(rc *RecoveryConfig) { rc.Approvals = 2 })
	decisions := &decisionCounter{}
	e.svc.SetMetrics(decisions)
	ctx := context.Background()
	r, err := e.svc.RequestRecovery(ctx, bob, "national_id", bytes.NewReader(pngBytes(t)), ip1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Decide(ctx, alice, r.ID, "approve", "", ip1); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Decide(ctx, alice, r.ID, "approve", "", ip1); !errors.Is(err, ErrAlreadyApproved) || !errors.Is(err, ErrConflict) {
		t.Fatalf("the same reviewer twice: %v", err)
	}
	if decisions.n["approve"] != 1 {
		t.Fatalf("decisions counted: %v; the refused second approval counts for nothing", decisions.n)
	}
	if got := e.signIn(t, "bob", "bob-password"); got.Session.State != store.StateSecondFactor {
		t.Fatal("one approval of two turned two-step off")
	}
	if _, err := e.svc.DecideAsOperator(ctx, "root", r.ID, "approve", ""); err != nil {
		t.Fatal(err)
	}
	if got := e.signIn(t, "bob", "bob-password"); got.Session.State != store.StateOneFactor {
		t.Fatalf("after two approvals: %v", got.Session.State)
	}
	// Decided: any further decision is refused, and not counted.
	if _, err := e.svc.Decide(ctx, alice, r.ID, "deny", "too late", ip1); !errors.Is(err, ErrAlreadyDecided) || !errors.Is(err, ErrConflict) {
		t.Fatalf("deciding a decided request: %v", err)
	}
	if decisions.n["approve"] != 2 || decisions.n["deny"] != 0 {
		t.Fatalf("decisions counted: %v, want 2 approvals", decisions.n)
	}
	// alice's own request cannot be decided by alice.
	half := e.signIn(t, "alice", "alice-password")
	own, err := e.svc.RequestRecovery(ctx, half, "passport", bytes.NewReader(pngBytes(t)), ip1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Decide(ctx, alice, own.ID, "approve", "", ip1); !errors.Is(err, ErrForbidden) {
		t.Fatalf("reviewing one's own request: %v", err)
	}
	if _, err := e.svc.ReviewDocument(ctx, alice, own.ID, ip1); !errors.Is(err, ErrForbidden) {
		t.Fatalf("viewing one's own document: %v", err)
	}
}

func TestRecoveryCoolingOffCancelAndSweep(t *testing.T) {
	e, bob, alice := recoveryEnv(t, func(rc *RecoveryConfig) { rc.CoolingOff = time.Hour })
	ctx := context.Background()
	r, _ := e.svc.RequestRecovery(ctx, bob, "passport", bytes.NewReader(pngBytes(t)), ip1)
	if _, err := e.svc.Decide(ctx, alice, r.ID, "approve", "", ip1); err != nil {
		t.Fatal(err)
	}
	if got := e.signIn(t, "bob", "bob-password"); got.Session.State != store.StateSecondFactor {
		t.Fatal("two-step went off before the cooling-off ended")
	}
	link := e.svc.RecoveryCancelURL("https://x", r.ID)
	sig := link[strings.Index(link, "sig=")+4:]
	if err := e.svc.CancelRecoveryLink(ctx, r.ID, sig+"x"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("forged link: %v", err)
	}
	if err := e.svc.CancelRecoveryLink(ctx, r.ID, sig); err != nil {
		t.Fatal(err)
	}
	e.clock.add(2 * time.Hour)
	if err := e.svc.SweepRecovery(ctx); err != nil {
		t.Fatal(err)
	}
	if got := e.signIn(t, "bob", "bob-password"); got.Session.State != store.StateSecondFactor {
		t.Fatal("a cancelled approval took effect")
	}
	// A second request, not cancelled, takes effect when the sweeper runs.
	half := e.signIn(t, "bob", "bob-password")
	r2, err := e.svc.RequestRecovery(ctx, half, "passport", bytes.NewReader(pngBytes(t)), ip1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Decide(ctx, alice, r2.ID, "approve", "", ip1); err != nil {
		t.Fatal(err)
	}
	e.clock.add(61 * time.Minute)
	if err := e.svc.SweepRecovery(ctx); err != nil {
		t.Fatal(err)
	}
	if got := e.signIn(t, "bob", "bob-password"); got.Session.State != store.StateOneFactor {
		t.Fatalf("after cooling-off: %v", got.Session.State)
	}
	// Retention: the document goes an hour after the decision.
	e.clock.add(2 * time.Hour)
	if err := e.svc.SweepRecovery(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.Get(ctx, recoveryDocKey(r2.ID), e.clock.now()); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("document kept past retention: %v", err)
	}
}

func TestRecoveryCancelledBySecondFactor(t *testing.T) {
	e, bob, _ := recoveryEnv(t, nil)
	ctx := context.Background()
	r, _ := e.svc.RequestRecovery(ctx, bob, "passport", bytes.NewReader(pngBytes(t)), ip1)
	if _, err := e.svc.SendCode(ctx, bob, MethodSMS, ip1); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.VerifyCode(ctx, bob, MethodSMS, e.sms.last(t).Code, false, ip1); err != nil {
		t.Fatal(err)
	}
	got, err := e.svc.loadRecovery(ctx, r.ID)
	if err != nil || got.Status != RecoveryCancelled {
		t.Fatalf("after a second factor: %+v %v", got, err)
	}
}

func TestRecoveryExpiryAndEnroll(t *testing.T) {
	e, bob, alice := recoveryEnv(t, func(rc *RecoveryConfig) { rc.AfterApproval = "enroll" })
	ctx := context.Background()
	r, _ := e.svc.RequestRecovery(ctx, bob, "passport", bytes.NewReader(pngBytes(t)), ip1)
	e.clock.add(31 * 24 * time.Hour)
	if err := e.svc.SweepRecovery(ctx); err != nil {
		t.Fatal(err)
	}
	if got, _ := e.svc.loadRecovery(ctx, r.ID); got.Status != RecoveryExpired {
		t.Fatalf("after 31 days: %v", got.Status)
	}
	half := e.signIn(t, "bob", "bob-password")
	r2, err := e.svc.RequestRecovery(ctx, half, "passport", bytes.NewReader(pngBytes(t)), ip1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Decide(ctx, alice, r2.ID, "approve", "", ip1); err != nil {
		t.Fatal(err)
	}
	if got := e.signIn(t, "bob", "bob-password"); got.Session.State != store.StateEnrollment {
		t.Fatalf("after_approval enroll: %v", got.Session.State)
	}
}

func TestRecoveryRejectsBadUploads(t *testing.T) {
	e, bob, _ := recoveryEnv(t, func(rc *RecoveryConfig) { rc.MaxSize = 1024 })
	ctx := context.Background()
	if _, err := e.svc.RequestRecovery(ctx, bob, "passport", strings.NewReader("<html>not an image</html>"), ip1); !errors.Is(err, documents.ErrUnsupported) {
		t.Fatalf("HTML: %v", err)
	}
	if _, err := e.svc.RequestRecovery(ctx, bob, "passport", bytes.NewReader(make([]byte, 2048)), ip1); !errors.Is(err, documents.ErrTooLarge) {
		t.Fatalf("too large: %v", err)
	}
	var in *InvalidInputError
	if _, err := e.svc.RequestRecovery(ctx, bob, "library_card", bytes.NewReader(pngBytes(t)), ip1); !errors.As(err, &in) {
		t.Fatalf("unknown document type: %v", err)
	}
	// Nothing was filed: a good upload now succeeds.
	if _, err := e.svc.RequestRecovery(ctx, bob, "passport", bytes.NewReader(pngBytes(t)), ip1); err != nil {
		t.Fatalf("after refusals: %v", err)
	}
}

// decisionCounter counts review decisions (the other metrics are dropped).
type decisionCounter struct {
	noMetrics
	n map[string]int
}

func (d *decisionCounter) Decision(decision string) {
	if d.n == nil {
		d.n = map[string]int{}
	}
	d.n[decision]++
}

// hookStore runs one-shot hooks at chosen store calls: a deterministic
// stand-in for another request that runs at that moment. A pattern ending
// in ":" matches every key it begins; any other only itself.
type hookStore struct {
	store.Store
	mu     sync.Mutex
	writes map[string]func() // before a Put or PutIfAbsent
	reads  map[string]func() // after a Get
	busy   map[string]func() // after a PutIfAbsent that found the key taken
	lists  map[string]func() // before a ListUserSessions of the user
}

func (h *hookStore) take(m map[string]func(), key string) func() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for p, fn := range m {
		if p == key || strings.HasSuffix(p, ":") && strings.HasPrefix(key, p) {
			delete(m, p)
			return fn
		}
	}
	return nil
}

func (h *hookStore) on(m *map[string]func(), pattern string, fn func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if *m == nil {
		*m = map[string]func(){}
	}
	(*m)[pattern] = fn
}

func (h *hookStore) beforeWrite(pattern string, fn func()) { h.on(&h.writes, pattern, fn) }
func (h *hookStore) afterRead(pattern string, fn func())   { h.on(&h.reads, pattern, fn) }
func (h *hookStore) whenBusy(pattern string, fn func())    { h.on(&h.busy, pattern, fn) }
func (h *hookStore) beforeList(user string, fn func())     { h.on(&h.lists, user, fn) }

func (h *hookStore) ListUserSessions(ctx context.Context, user string, now time.Time) ([]*store.Session, error) {
	if fn := h.take(h.lists, user); fn != nil {
		fn()
	}
	return h.Store.ListUserSessions(ctx, user, now)
}

func (h *hookStore) Put(ctx context.Context, key string, value []byte, ttl time.Duration, now time.Time) error {
	if fn := h.take(h.writes, key); fn != nil {
		fn()
	}
	return h.Store.Put(ctx, key, value, ttl, now)
}

func (h *hookStore) PutIfAbsent(ctx context.Context, key string, value []byte, ttl time.Duration, now time.Time) ([]byte, bool, error) {
	if fn := h.take(h.writes, key); fn != nil {
		fn()
	}
	stored, created, err := h.Store.PutIfAbsent(ctx, key, value, ttl, now)
	if err == nil && !created {
		if fn := h.take(h.busy, key); fn != nil {
			fn()
		}
	}
	return stored, created, err
}

func (h *hookStore) Get(ctx context.Context, key string, now time.Time) ([]byte, error) {
	b, err := h.Store.Get(ctx, key, now)
	if fn := h.take(h.reads, key); fn != nil {
		fn()
	}
	return b, err
}

// hookedTSEnv is newTSEnv over a hookStore (bare bolt underneath, so that
// the hooks see every read).
func hookedTSEnv(t *testing.T) (*tsEnv, *hookStore) {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "t.db"), bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	hs := &hookStore{Store: st}
	e := &tsEnv{env: newEnvWith(t, hs), sms: &recorder{}, voice: &recorder{}, mail: &recorder{}}
	e.svc.senders = Senders{SMS: e.sms, Voice: e.voice, Email: e.mail}
	e.svc.cfg.TOTP.Skew = 1
	return e, hs
}

// hookedRecoveryEnv is recoveryEnv over a hookStore.
func hookedRecoveryEnv(t *testing.T, mutate func(*RecoveryConfig)) (e *tsEnv, hs *hookStore, bob, alice *Resolved) {
	t.Helper()
	e, hs = hookedTSEnv(t)
	_, alice = enableRecovery(t, e, mutate)
	e.clock.add(time.Minute)
	return e, hs, e.signIn(t, "bob", "bob-password"), alice
}

// signInWithCode is the owner signing in with a code sent by SMS, from any
// goroutine (it reports instead of failing the test).
func signInWithCode(e *tsEnv, user string) error {
	ctx := context.Background()
	res, err := e.svc.SignIn(ctx, user, user+"-password", ip1)
	if err != nil {
		return err
	}
	half, err := e.svc.Resolve(ctx, res.Token)
	if err != nil {
		return err
	}
	if _, err := e.svc.SendCode(ctx, half, MethodSMS, ip1); err != nil {
		return err
	}
	e.sms.mu.Lock()
	code := e.sms.msgs[len(e.sms.msgs)-1].Code
	e.sms.mu.Unlock()
	_, err = e.svc.VerifyCode(ctx, half, MethodSMS, code, false, ip1)
	return err
}

// waitFor fails the test unless ch is closed within a few seconds.
func waitFor(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(4 * time.Second):
		t.Fatalf("timed out waiting: %s", what)
	}
}

// An attacker who has bob's password files a request and polls the status
// page while it is being stored, at every step: a second request is
// still refused, and bob's sign-in with a code leaves nothing a reviewer
// could approve.
func TestRecoveryStatusPollWhileFilingKeepsOneOpen(t *testing.T) {
	e, hs, attacker, alice := hookedRecoveryEnv(t, nil)
	ctx := context.Background()
	poll := func() {
		_, _ = e.svc.MyRecovery(ctx, attacker, "") // GET recovery/status
		_ = e.svc.RecoveryAllowed(ctx, attacker)
	}
	for _, at := range []string{"recovery-doc:", "recovery:", "recovery-open:bob", "recovery-last:bob", "recovery-index"} {
		hs.beforeWrite(at, poll)
	}
	r1, err := e.svc.RequestRecovery(ctx, attacker, "passport", bytes.NewReader(pngBytes(t)), ip2)
	if err != nil {
		t.Fatal(err)
	}
	if r2, err := e.svc.RequestRecovery(ctx, attacker, "passport", bytes.NewReader(pngBytes(t)), ip2); !errors.Is(err, ErrConflict) {
		t.Fatalf("a second request beside %s: %v %v (SPEC: one open request per account, 409)", r1.ID, r2, err)
	}
	if err := signInWithCode(e, "bob"); err != nil {
		t.Fatal(err)
	}
	q, err := e.svc.ReviewQueue(ctx, alice)
	if err != nil || len(q) != 0 {
		t.Fatalf("after bob signed in with his code the queue is %+v %v", q, err)
	}
	if got, _ := e.svc.loadRecovery(ctx, r1.ID); got.Status != RecoveryCancelled {
		t.Fatalf("request %q after bob's sign-in with a code", got.Status)
	}
}

// Two open requests of one account (as an earlier version could leave):
// a sign-in with a code cancels both, not only the one the marker names.
func TestRecoverySignInCancelsEveryOpenRequest(t *testing.T) {
	e, bob, alice := recoveryEnv(t, func(rc *RecoveryConfig) { rc.CoolingOff = time.Hour })
	ctx := context.Background()
	r1, err := e.svc.RequestRecovery(ctx, bob, "passport", bytes.NewReader(pngBytes(t)), ip1)
	if err != nil {
		t.Fatal(err)
	}
	// The second, not named by the marker: pending, and a third approved
	// and not yet applied (cooling-off).
	var others []string
	for _, st := range []string{RecoveryPending, RecoveryApproved} {
		r := *r1
		r.ID, r.Status = "0000000000000000000000"+st[:2], st
		if st == RecoveryApproved {
			r.Decided, r.EffectiveAt = e.clock.now(), e.clock.now().Add(time.Hour)
		}
		if err := e.svc.saveRecovery(ctx, &r); err != nil {
			t.Fatal(err)
		}
		if err := e.svc.indexRecovery(ctx, r.ID); err != nil {
			t.Fatal(err)
		}
		others = append(others, r.ID)
	}
	if err := signInWithCode(e, "bob"); err != nil {
		t.Fatal(err)
	}
	for _, id := range append(others, r1.ID) {
		if got, _ := e.svc.loadRecovery(ctx, id); got.Status != RecoveryCancelled {
			t.Errorf("request %s is %q after bob signed in with a code", id, got.Status)
		}
	}
	if q, _ := e.svc.ReviewQueue(ctx, alice); len(q) != 0 {
		t.Fatalf("queue after the sign-in: %+v", q)
	}
	e.clock.add(2 * time.Hour)
	if err := e.svc.SweepRecovery(ctx); err != nil {
		t.Fatal(err)
	}
	if got := e.signIn(t, "bob", "bob-password"); got.Session.State != store.StateSecondFactor {
		t.Fatalf("a request that was open at the sign-in took effect: %v", got.Session.State)
	}
}

// An open marker naming a request the store does not have holds the
// account's slot for a while (it may be an earlier version's filing in
// flight), then no longer; one naming a closed request holds nothing.
func TestRecoveryStaleOpenMarker(t *testing.T) {
	e, bob, _ := recoveryEnv(t, nil)
	ctx := context.Background()
	if err := e.st.Put(ctx, recoveryOpenKey("bob"), []byte("feedfacefeedfacefeedface"), 0, e.clock.now()); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.RequestRecovery(ctx, bob, "passport", bytes.NewReader(pngBytes(t)), ip1); !errors.Is(err, ErrConflict) {
		t.Fatalf("beside a marker just seen without its record: %v", err)
	}
	if ids, _ := e.svc.recoveryIndex(ctx); len(ids) != 0 {
		t.Fatalf("a refused request was indexed: %v", ids)
	}
	e.clock.add(openMarkerGrace + time.Minute)
	bob = e.signIn(t, "bob", "bob-password")
	r, err := e.svc.RequestRecovery(ctx, bob, "passport", bytes.NewReader(pngBytes(t)), ip1)
	if err != nil {
		t.Fatalf("the stale marker still holds: %v", err)
	}
	// A marker left naming a closed request is replaced at once.
	done := *r
	done.ID, done.Status = "c10sedc10sedc10sedc10sed", RecoveryDenied
	if err := e.svc.saveRecovery(ctx, &done); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.DecideAsOperator(ctx, "root", r.ID, "deny", "blurred"); err != nil {
		t.Fatal(err)
	}
	if err := e.st.Put(ctx, recoveryOpenKey("bob"), []byte(done.ID), 0, e.clock.now()); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.RequestRecovery(ctx, bob, "passport", bytes.NewReader(pngBytes(t)), ip1); err != nil {
		t.Fatalf("beside a marker of a closed request: %v", err)
	}
}

// Two accounts file at the same moment: the index is changed under its
// lock, so neither filing loses the other's id; both are reviewed, expire
// and lose their document in time (SPEC §8: deleted `retention` after the
// decision).
func TestRecoveryIndexKeepsConcurrentFilings(t *testing.T) {
	e, hs, bob, _ := hookedRecoveryEnv(t, nil)
	ctx := context.Background()
	aliceHalf := e.signIn(t, "alice", "alice-password")
	var ra *Recovery
	var aerr error
	blocked, filed := make(chan struct{}), make(chan struct{})
	hs.beforeWrite("recovery-index", func() {
		// bob's filing holds the index lock: alice's waits for it.
		hs.whenBusy("recovery-index-lock", func() { close(blocked) })
		go func() {
			defer close(filed)
			ra, aerr = e.svc.RequestRecovery(ctx, aliceHalf, "passport", bytes.NewReader(pngBytes(t)), ip2)
		}()
		waitFor(t, blocked, "alice's filing at the index lock")
	})
	rb, err := e.svc.RequestRecovery(ctx, bob, "passport", bytes.NewReader(pngBytes(t)), ip1)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, filed, "alice's filing")
	if aerr != nil {
		t.Fatal(aerr)
	}
	ids, err := e.svc.recoveryIndex(ctx)
	if err != nil || !slices.Contains(ids, ra.ID) || !slices.Contains(ids, rb.ID) {
		t.Fatalf("index %v %v, want both %s and %s", ids, err, ra.ID, rb.ID)
	}
	e.clock.add(31 * 24 * time.Hour)
	for range 2 {
		if err := e.svc.SweepRecovery(ctx); err != nil {
			t.Fatal(err)
		}
		e.clock.add(2 * time.Hour)
	}
	for _, r := range []*Recovery{ra, rb} {
		got, _ := e.svc.loadRecovery(ctx, r.ID)
		if _, err := e.st.Get(ctx, recoveryDocKey(r.ID), e.clock.now()); !errors.Is(err, store.ErrNotFound) || got.Status != RecoveryExpired {
			t.Fatalf("%s's request is %q after 31 days, document: %v", r.User, got.Status, err)
		}
	}
}

// The owner signs in with a code while a reviewer's approval is being
// saved: the cancel waits for the decision and then cancels what it saved
// (cooling-off), or, when the approval took effect at once, finds nothing
// to cancel; it is never overwritten, so nobody is told "two-step stays
// on" and then has it turned off.
func TestRecoveryCancelDuringDecisionIsKept(t *testing.T) {
	for _, cooling := range []time.Duration{time.Hour, 0} {
		t.Run(cooling.String(), func(t *testing.T) {
			e, hs, attacker, alice := hookedRecoveryEnv(t, func(rc *RecoveryConfig) { rc.CoolingOff = cooling })
			ctx := context.Background()
			r, err := e.svc.RequestRecovery(ctx, attacker, "passport", bytes.NewReader(pngBytes(t)), ip2)
			if err != nil {
				t.Fatal(err)
			}
			var serr error
			blocked, signedIn := make(chan struct{}), make(chan struct{})
			hs.beforeWrite(recoveryKey(r.ID), func() {
				hs.whenBusy(recoveryLockKey(r.ID), func() { close(blocked) })
				go func() {
					defer close(signedIn)
					serr = signInWithCode(e, "bob")
				}()
				waitFor(t, blocked, "the sign-in's cancel at the request's lock")
			})
			if _, err := e.svc.Decide(ctx, alice, r.ID, "approve", "", ip1); err != nil {
				t.Fatal(err)
			}
			waitFor(t, signedIn, "the sign-in")
			got, _ := e.svc.loadRecovery(ctx, r.ID)
			if cooling == 0 {
				if got.Status != RecoveryApproved || !got.Applied {
					t.Fatalf("approved at once, then the late cancel: %+v", got)
				}
				return
			}
			if serr != nil {
				t.Fatal(serr)
			}
			if got.Status != RecoveryCancelled {
				t.Fatalf("the owner's cancel was overwritten: request %q", got.Status)
			}
			e.clock.add(2 * time.Hour)
			if err := e.svc.SweepRecovery(ctx); err != nil {
				t.Fatal(err)
			}
			if st := e.signIn(t, "bob", "bob-password").Session.State; st != store.StateSecondFactor {
				t.Fatalf("a cancelled approval took effect: %v", st)
			}
		})
	}
}

// The "this wasn't me" link is used just as the sweeper, having read the
// approval as due, is about to apply it: the sweeper applies it only
// after reading it again under the request's lock, and it is cancelled.
func TestRecoverySweepDoesNotApplyACancelledApproval(t *testing.T) {
	e, hs, attacker, alice := hookedRecoveryEnv(t, func(rc *RecoveryConfig) { rc.CoolingOff = time.Hour })
	ctx := context.Background()
	r, err := e.svc.RequestRecovery(ctx, attacker, "passport", bytes.NewReader(pngBytes(t)), ip2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Decide(ctx, alice, r.ID, "approve", "", ip1); err != nil {
		t.Fatal(err)
	}
	e.clock.add(61 * time.Minute)
	link := e.svc.RecoveryCancelURL("https://x", r.ID)
	hs.afterRead(recoveryKey(r.ID), func() {
		if err := e.svc.CancelRecoveryLink(ctx, r.ID, link[strings.Index(link, "sig=")+4:]); err != nil {
			t.Error(err)
		}
	})
	if err := e.svc.SweepRecovery(ctx); err != nil {
		t.Fatal(err)
	}
	if got, _ := e.svc.loadRecovery(ctx, r.ID); got.Status != RecoveryCancelled || got.Applied {
		t.Fatalf("after the cancel link: %+v", got)
	}
	if st := e.signIn(t, "bob", "bob-password").Session.State; st != store.StateSecondFactor {
		t.Fatalf("the sweeper applied a cancelled approval: %v", st)
	}
}

// Locks wait a bounded time, and one left by a node that died expires.
func TestRecoveryLocksAreBounded(t *testing.T) {
	e, bob, alice := recoveryEnv(t, nil)
	ctx := context.Background()
	r, err := e.svc.RequestRecovery(ctx, bob, "passport", bytes.NewReader(pngBytes(t)), ip1)
	if err != nil {
		t.Fatal(err)
	}
	unlock, err := e.svc.storeLock(ctx, recoveryLockKey(r.ID), recoveryLockTTL, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := e.svc.storeLock(ctx, recoveryLockKey(r.ID), recoveryLockTTL, 50*time.Millisecond); !errors.Is(err, ErrBusy) {
		t.Fatalf("a held lock: %v", err)
	}
	if waited := time.Since(start); waited > time.Second {
		t.Fatalf("waited %v for a held lock", waited)
	}
	_ = unlock // the holder dies
	e.clock.add(recoveryLockTTL + time.Second)
	if _, err := e.svc.Decide(ctx, alice, r.ID, "deny", "blurred", ip1); err != nil {
		t.Fatalf("after the dead holder's lock expired: %v", err)
	}
}
