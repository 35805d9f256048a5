package account

import (
	"bytes"
	"context"
	"errors"
	"image"
	"image/color"
	"image/png"
	"strings"
	"testing"
	"time"

	"github.com/twostep-auth/twostep/internal/documents"
	"github.com/twostep-auth/twostep/internal/store"
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
	return e, bob, a
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
