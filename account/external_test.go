package account

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twostep-auth/twostep/internal/store"
)

// signInExternal signs in a user who exists only at provider "idp".
func (e *tsEnv) signInExternal(t *testing.T, name, subject string) (*Resolved, string) {
	t.Helper()
	ctx := context.Background()
	out, err := e.svc.SignInExternal(ctx, ExternalIdentity{Provider: "idp", Subject: subject, Username: name,
		Email: name + "@example.com", AllowUnknown: true}, ip1)
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.svc.Resolve(ctx, out.Token)
	if err != nil {
		t.Fatal(err)
	}
	if !res.External {
		t.Fatalf("%s is not external", name)
	}
	return res, out.Token
}

// A user who exists only at the identity provider has no password here:
// the actions that ask for one ask for a fresh confirmation at the
// provider instead, by the same provider account, for ReauthWindow.
func TestReauthStandsInForThePassword(t *testing.T) {
	e := newTSEnv(t)
	ctx := context.Background()
	res, tok := e.signInExternal(t, "zoe", "sub-zoe")
	if _, err := e.svc.RegenerateBackupCodes(ctx, res, "", ip1); !errors.Is(err, ErrReauthRequired) {
		t.Fatalf("new backup codes without a confirmation: %v, want ErrReauthRequired", err)
	}
	if _, err := e.svc.RegenerateBackupCodes(ctx, res, "guess", ip1); !errors.Is(err, ErrReauthRequired) {
		t.Fatalf("a made-up password for a user without one: %v, want ErrReauthRequired", err)
	}
	// Another provider account (or another provider) cannot confirm zoe.
	for _, id := range []ExternalIdentity{
		{Provider: "idp", Subject: "sub-mallory", Username: "zoe"},
		{Provider: "other", Subject: "sub-zoe", Username: "zoe"},
	} {
		if err := e.svc.Reauthenticated(ctx, res, id, ip1); !errors.Is(err, ErrForbidden) {
			t.Fatalf("confirmation by %+v: %v, want ErrForbidden", id, err)
		}
	}
	if err := e.svc.Reauthenticated(ctx, res, ExternalIdentity{Provider: "idp", Subject: "sub-zoe", Username: "zoe"}, ip1); err != nil {
		t.Fatal(err)
	}
	// The mark is on the stored session: the next request sees it.
	again, err := e.svc.Resolve(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	if !e.svc.RecentlyReauthenticated(again) {
		t.Fatal("the next request does not see the confirmation")
	}
	codes, err := e.svc.RegenerateBackupCodes(ctx, again, "", ip1)
	if err != nil || len(codes) != 10 {
		t.Fatalf("new backup codes after a confirmation: %d, %v", len(codes), err)
	}
	e.clock.add(ReauthWindow + time.Second)
	again, err = e.svc.Resolve(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.RegenerateBackupCodes(ctx, again, "", ip1); !errors.Is(err, ErrReauthRequired) {
		t.Fatalf("after the window: %v, want ErrReauthRequired", err)
	}
	// Users with a password here use it; a confirmation is not for them.
	bob := e.signIn(t, "bob", "bob-password")
	if err := e.svc.Reauthenticated(ctx, bob, ExternalIdentity{Provider: "idp", Subject: "sub-bob", Username: "bob"}, ip1); !errors.Is(err, ErrForbidden) {
		t.Fatalf("confirming a users-file user: %v, want ErrForbidden", err)
	}
}

// Turning two-step off: a code and, for a user without a password, the
// confirmation.
func TestReauthTurnsTwoStepOff(t *testing.T) {
	e := newTSEnv(t)
	ctx := context.Background()
	res, tok := e.signInExternal(t, "zoe", "sub-zoe")
	if _, err := e.svc.SetPhone(ctx, res, "+15551234567", MethodSMS, ip1); err != nil {
		t.Fatal(err)
	}
	out, err := e.svc.ConfirmPhone(ctx, res, e.sms.last(t).Code, ip1)
	if err != nil || !out.TurnedOn {
		t.Fatalf("confirm: %+v, %v", out, err)
	}
	res, err = e.svc.Resolve(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.svc.SetTwoStep(ctx, res, false, "", out.BackupCodes[0], ip1); !errors.Is(err, ErrReauthRequired) {
		t.Fatalf("off without a confirmation: %v, want ErrReauthRequired", err)
	}
	if err := e.svc.Reauthenticated(ctx, res, ExternalIdentity{Provider: "idp", Subject: "sub-zoe", Username: "zoe"}, ip1); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.SetTwoStep(ctx, res, false, "", out.BackupCodes[1], ip1); err != nil {
		t.Fatalf("off after a confirmation: %v", err)
	}
	info, err := e.svc.TwoStep(ctx, res.User)
	if err != nil || info.Enabled {
		t.Fatalf("two-step after turning off: %+v, %v", info, err)
	}
}

// A confirmation for a session that ended meanwhile writes nothing back.
func TestReauthAfterSignOut(t *testing.T) {
	e := newTSEnv(t)
	ctx := context.Background()
	res, _ := e.signInExternal(t, "zoe", "sub-zoe")
	if _, err := e.st.DeleteUserSessions(ctx, "zoe"); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.Reauthenticated(ctx, res, ExternalIdentity{Provider: "idp", Subject: "sub-zoe", Username: "zoe"}, ip1); !errors.Is(err, ErrNoSession) {
		t.Fatalf("confirming an ended session: %v, want ErrNoSession", err)
	}
	if _, err := e.st.GetSession(ctx, res.Session.ID, e.clock.now()); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the session came back: %v", err)
	}
}
