package account

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/twostep-auth/twostep/internal/store"
)

// A sign-in from a trusted browser keeps an open request; a code cancels
// it. Deliberate: a user who lost the phone may still have a trusted
// laptop, which cannot add a new method (that needs a fresh code), so it
// must not stop their own recovery. The filing email tells an owner who
// did not file to sign in with a code; that cancels it (SPEC §4).
func TestRecoveryTrustedBrowserKeepsRequestCodeCancels(t *testing.T) {
	e := newTSEnv(t)
	e.svc.cfg.Recovery = RecoveryConfig{Enabled: true, ReviewGroup: "admins", Approvals: 1, MaxSize: 1 << 20, Expected: "x",
		Retention: time.Hour, AfterApproval: "password_only", Expiry: 30 * 24 * time.Hour, MaxPerAccount: 5, MaxPerIP: 20}
	ctx := context.Background()
	_, dev := trustedBob(t, e)
	attacker := e.signIn(t, "bob", "bob-password") // another browser: half signed in
	r, err := e.svc.RequestRecovery(ctx, attacker, "passport", bytes.NewReader(pngBytes(t)), ip2)
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.svc.SignIn(ctx, "bob", "bob-password", dev)
	if err != nil || res.Session.State != store.StateTwoFactor {
		t.Fatalf("trusted-device sign-in: %v %v", res, err)
	}
	got, err := e.svc.loadRecovery(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != RecoveryPending {
		t.Fatalf("after a trusted-browser sign-in the request is %q, want pending", got.Status)
	}
	half := e.signIn(t, "bob", "bob-password")
	e.clock.add(time.Minute) // past the resend cooldown of the code trustedBob used
	if _, err := e.svc.SendCode(ctx, half, MethodSMS, ip1); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.VerifyCode(ctx, half, MethodSMS, e.sms.last(t).Code, false, ip1); err != nil {
		t.Fatal(err)
	}
	if got, err = e.svc.loadRecovery(ctx, r.ID); err != nil || got.Status != RecoveryCancelled {
		t.Fatalf("after a sign-in with a code the request is %v (%v), want cancelled", got, err)
	}
}
