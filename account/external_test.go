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
	res, _ := e.signInExternal(t, "zoe", "sub-zoe")
	if _, err := e.svc.SetPhone(ctx, res, "+15551234567", MethodSMS, ip1); err != nil {
		t.Fatal(err)
	}
	out, err := e.svc.ConfirmPhone(ctx, res, e.sms.last(t).Code, ip1)
	if err != nil || !out.TurnedOn {
		t.Fatalf("confirm: %+v, %v", out, err)
	}
	// Confirming the method gave the session a new token.
	res, err = e.svc.Resolve(ctx, out.Token)
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

// A provider's user name is not unique forever (OIDC Core 5.7: only iss
// and sub are): the first provider account to sign in as a name owns it.
// Another subject claiming it — at the same provider, or, for a user who
// exists only upstream, at another provider — is refused, and does not
// disturb the owner.
func TestExternalNameBoundToSubject(t *testing.T) {
	e := newTSEnv(t)
	e.svc.cfg.Providers = []string{"idp", "evil", "other"}
	ctx := context.Background()
	signIn := func(id ExternalIdentity) (*SignInResult, error) {
		return e.svc.SignInExternal(ctx, id, ip1)
	}
	// A local user (alice, in the users file) at provider idp.
	if _, err := signIn(ExternalIdentity{Provider: "idp", Subject: "sub-alice", Username: "alice"}); err != nil {
		t.Fatal(err)
	}
	if _, err := signIn(ExternalIdentity{Provider: "idp", Subject: "sub-mallory", Username: "Alice", MFA: true}); !errors.Is(err, ErrAccountLinked) {
		t.Fatalf("another subject of idp as alice: %v, want ErrAccountLinked", err)
	}
	if _, err := signIn(ExternalIdentity{Provider: "idp", Subject: "sub-alice", Username: "alice"}); err != nil {
		t.Fatalf("alice again: %v", err)
	}
	// A provider-only user: one provider account owns the name.
	zoe, tok := e.signInExternal(t, "zoe", "sub-zoe")
	for _, id := range []ExternalIdentity{
		{Provider: "idp", Subject: "sub-mallory", Username: "ZOE", AllowUnknown: true},
		{Provider: "evil", Subject: "sub-zoe", Username: "zoe", AllowUnknown: true, MFA: true, Groups: []string{"admins"}},
	} {
		if _, err := signIn(id); !errors.Is(err, ErrAccountLinked) {
			t.Fatalf("%+v as zoe: %v, want ErrAccountLinked", id, err)
		}
	}
	// zoe's session is untouched.
	if _, err := e.svc.Resolve(ctx, tok); err != nil {
		t.Fatalf("zoe's session after the attempts: %v", err)
	}
	if zoe.User.Credential != externalCredential("idp", "sub-zoe") {
		t.Fatalf("zoe's credential %q", zoe.User.Credential)
	}
	// reset-2sv frees the names (a provider that re-created its user).
	if err := e.svc.ResetTwoStep(ctx, "alice", "root"); err != nil {
		t.Fatal(err)
	}
	if _, err := signIn(ExternalIdentity{Provider: "idp", Subject: "sub-alice-2", Username: "alice"}); err != nil {
		t.Fatalf("alice's new subject after reset-2sv: %v", err)
	}
	if err := e.svc.ResetTwoStep(ctx, "zoe", "root"); err != nil {
		t.Fatalf("reset-2sv of a provider-only user: %v", err)
	}
	if _, err := e.svc.Resolve(ctx, tok); !errors.Is(err, ErrNoSession) {
		t.Fatalf("zoe's session after reset-2sv: %v", err)
	}
	if _, err := signIn(ExternalIdentity{Provider: "other", Subject: "sub-zoe-2", Username: "zoe", AllowUnknown: true}); err != nil {
		t.Fatalf("zoe at another provider after reset-2sv: %v", err)
	}
}

// A trusted provider MFA counts from the provider's auth_time: an old
// login there does not pass a max_age step-up as if it had just happened.
func TestExternalMFAFromAuthTime(t *testing.T) {
	e := newTSEnv(t)
	ctx := context.Background()
	now := e.clock.now()
	for _, c := range []struct {
		name     string
		authTime time.Time
		want     time.Time
	}{
		{"ten hours ago", now.Add(-10 * time.Hour), now.Add(-10 * time.Hour)},
		{"just now", now, now},
		{"no auth_time", time.Time{}, time.Time{}},
		{"in the future", now.Add(time.Hour), time.Time{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, err := e.svc.SignInExternal(ctx, ExternalIdentity{Provider: "idp", Subject: "sub-alice", Username: "alice", MFA: true, AuthTime: c.authTime}, ip1)
			if err != nil {
				t.Fatal(err)
			}
			if out.Session.State != store.StateTwoFactor || !out.Session.SecondFactorAt.Equal(c.want) {
				t.Fatalf("session %v, second factor at %v; want two_factor at %v", out.Session.State, out.Session.SecondFactorAt, c.want)
			}
		})
	}
}
