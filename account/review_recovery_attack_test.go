package account

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twostep-auth/twostep/internal/store"
	"github.com/twostep-auth/twostep/internal/store/bolt"
	"github.com/twostep-auth/twostep/internal/users"
)

// Attacks on the account recovery, each failing on the code before its fix.

// A provider account that merely bears a users-file name gets a
// half-signed-in session as that user (it is stopped at the second factor,
// and bound only once it passes it). Attack: mallory names her provider
// account "bob" (preferred_username she picked) and, from that session,
// files a recovery for bob with a forged ID: she never knew bob's
// password, which the recovery needs (SPEC §4: "Recovery needs the
// account's password"). Once it is approved, two-step is off and her next
// provider sign-in binds her account to bob for good. Expected: a
// session whose provider account is not (yet) the user's cannot file.
func TestRecoveryNotFiledByUnboundProviderAccount(t *testing.T) {
	e, _, _ := recoveryEnv(t, nil)
	ctx := context.Background()
	out, err := e.svc.SignInExternal(ctx, ExternalIdentity{Provider: "idp", Subject: "sub-mallory", Username: "bob"}, ip2)
	if err != nil {
		t.Fatal(err)
	}
	if out.Session.State != store.StateSecondFactor {
		t.Fatalf("mallory as bob: %v, want second_factor", out.Session.State)
	}
	mallory, err := e.svc.Resolve(ctx, out.Token)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.svc.RecoveryAllowed(ctx, mallory); err == nil {
		t.Error("RecoveryAllowed lets an unbound provider account file for bob")
	}
	if r, err := e.svc.RequestRecovery(ctx, mallory, "passport", bytes.NewReader(pngBytes(t)), ip2); err == nil {
		t.Fatalf("an unbound provider account filed recovery %s for bob without his password", r.ID)
	} else if !errors.Is(err, ErrForbidden) {
		t.Fatalf("refusal: %v, want ErrForbidden", err)
	}
	// Bob himself, with his password, still can.
	bob := e.signIn(t, "bob", "bob-password")
	if _, err := e.svc.RequestRecovery(ctx, bob, "passport", bytes.NewReader(pngBytes(t)), ip1); err != nil {
		t.Fatalf("bob with his password: %v", err)
	}
}

// The same unbound provider account must not read bob's recovery status
// either: whether he has a request open, approved or denied, and the
// reviewer's reason (which may quote his ID). Attack: mallory, who knows
// only the name "bob", signs in at the provider as "bob" and polls
// GET recovery (MyRecovery) to learn when bob's account goes password-only.
func TestRecoveryStatusNotShownToUnboundProviderAccount(t *testing.T) {
	e, bob, alice := recoveryEnv(t, nil)
	ctx := context.Background()
	r, err := e.svc.RequestRecovery(ctx, bob, "passport", bytes.NewReader(pngBytes(t)), ip1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Decide(ctx, alice, r.ID, "deny", "the photo shows passport number X123", ip1); err != nil {
		t.Fatal(err)
	}
	out, err := e.svc.SignInExternal(ctx, ExternalIdentity{Provider: "idp", Subject: "sub-mallory", Username: "bob"}, ip2)
	if err != nil {
		t.Fatal(err)
	}
	mallory, err := e.svc.Resolve(ctx, out.Token)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"", r.ID} {
		if got, err := e.svc.MyRecovery(ctx, mallory, id); !errors.Is(err, ErrNotFound) {
			t.Errorf("MyRecovery(%q) for an unbound provider account as bob: %+v %v, want ErrNotFound", id, got, err)
		}
	}
	// Bob sees his own.
	if got, err := e.svc.MyRecovery(ctx, e.signIn(t, "bob", "bob-password"), ""); err != nil || got.ID != r.ID {
		t.Fatalf("bob's own status: %+v %v", got, err)
	}
}

// A user who exists only at the provider is named by the provider's
// claim, which the users file's rules never saw. Reviewers are recorded by
// name, and the shell operator as "operator:<name>" (a name the users file
// refuses, since it has a ':'). Attack: a provider user named
// "operator:root" (allow_unknown_users, in the review group at the
// provider) approves a request: the audit log and the request's
// approvals say the shell operator root did it, and root's own approval
// is then refused as a duplicate. Expected: a name the users file would
// refuse is refused at the provider sign-in too.
func TestExternalNameFollowsUsersFileRules(t *testing.T) {
	e, _, _ := recoveryEnv(t, nil)
	ctx := context.Background()
	for _, name := range []string{"operator:root", "a:b"} {
		out, err := e.svc.SignInExternal(ctx, ExternalIdentity{Provider: "idp", Subject: "sub-" + name, Username: name,
			Groups: []string{"admins"}, MFA: true, AllowUnknown: true}, ip2)
		if err == nil {
			t.Errorf("provider user %q signed in (%v) with a name the users file refuses", name, out.Session.State)
		} else if !errors.Is(err, ErrInvalidCredentials) {
			t.Errorf("provider user %q: %v, want ErrInvalidCredentials", name, err)
		}
	}
	if _, err := e.svc.SignInExternal(ctx, ExternalIdentity{Provider: "idp", Subject: "sub-zed", Username: "zed", AllowUnknown: true}, ip2); err != nil {
		t.Fatalf("an ordinary provider user: %v", err)
	}
}

// A user who exists only at the provider is not in the users file, and
// the recovery looked only there for whom to tell: such a user heard of
// nothing, neither that a request was filed nor that it was approved, and
// got no "this wasn't me" link, not even by SMS. Attack: mallory, holding
// zoe's provider password (her first factor), files a recovery for zoe
// with a forged ID; zoe, who still has her phone, is never warned, and
// two-step goes off after the cooling-off. Expected: the email and the
// phone of the account hear of the filing and the approval, with the
// cancel link, even days later (the provider user's record here lasts a
// session lifetime).
func TestRecoveryTellsExternalUser(t *testing.T) {
	e := newTSEnv(t)
	_, alice := enableRecovery(t, e, func(rc *RecoveryConfig) { rc.CoolingOff = time.Hour })
	ctx := context.Background()
	r := providerUserFiles(t, e, "sub-zoe", "+15550002222",
		ExternalIdentity{Provider: "idp", Subject: "sub-zoe", Username: "zoe", Email: "zoe@example.com", AllowUnknown: true})
	mailed := func(subject string) bool {
		e.mail.mu.Lock()
		defer e.mail.mu.Unlock()
		for _, m := range e.mail.msgs {
			if m.To == "zoe@example.com" && strings.Contains(m.Subject, subject) {
				return true
			}
		}
		return false
	}
	if !mailed("We received your account recovery request") {
		t.Error("zoe was not told that a recovery was filed for her account")
	}
	e.clock.add(48 * time.Hour) // the review takes about two days
	if _, err := e.svc.Decide(ctx, alice, r.ID, "approve", "", Client{IP: ip1.IP, UserAgent: "test", Base: "https://x"}); err != nil {
		t.Fatal(err)
	}
	if !mailed("Account recovery approved") {
		t.Error("zoe was not told, with a link to stop it, that a recovery of her account was approved")
	}
	if m := e.sms.last(t); m.To != "+15550002222" || !strings.Contains(m.Body, "recovery of your account was approved") {
		t.Errorf("last SMS %+v, want the approval notice to zoe's phone", m)
	}
}

// A request names its account by user name only. Attack: with
// allow_unknown_users, mallory signs in at the provider as "zoe" (a name
// the users file does not have), turns two-step on and files a recovery;
// later the operator adds the users-file user zoe, a different person.
// When the old request is approved, it turned off the new zoe's two-step
// and ended her sessions, and, two-step off, mallory's provider account
// could bind to her on its next sign-in. Expected: an approval applies
// only to the account that filed it.
func TestRecoveryNotAppliedToAnotherAccountOfTheName(t *testing.T) {
	e := newTSEnv(t)
	_, alice := enableRecovery(t, e, nil)
	ctx := context.Background()
	r := providerUserFiles(t, e, "sub-mallory", "+15550003333",
		ExternalIdentity{Provider: "idp", Subject: "sub-mallory", Username: "zoe", AllowUnknown: true})
	// The operator adds zoe to the users file (bob's password hash will do).
	db, err := users.Parse([]byte("users:\n  alice:\n    password: \"" + aliceHash + "\"\n    groups: [admins]\n" +
		"  bob:\n    password: \"" + bobHash + "\"\n  zoe:\n    password: \"" + bobHash + "\"\n    email: zoe.file@example.com\n"))
	if err != nil {
		t.Fatal(err)
	}
	e.dir.db.Store(db)
	zoe, err := e.svc.SignIn(ctx, "zoe", "bob-password", ip1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Decide(ctx, alice, r.ID, "approve", "", ip1); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Resolve(ctx, zoe.Token); err != nil {
		t.Errorf("the users-file zoe's session after the approval of the provider user's request: %v", err)
	}
	if got, _ := e.svc.loadRecovery(ctx, r.ID); got.Applied {
		t.Errorf("the approval was applied to the users-file zoe: %+v", got)
	}
	for _, m := range e.mail.msgs {
		if m.To == "zoe.file@example.com" {
			t.Errorf("the users-file zoe was mailed about the provider user's request: %q", m.Subject)
		}
	}
}

// The upload turn is one per account: a provider account that only bears
// bob's name must not hold it (a slow upload of minutes, again and again,
// and bob's own uploads get 429).
func TestRecoveryUploadSlotNotHeldByUnboundProviderAccount(t *testing.T) {
	e, bob, _ := recoveryEnv(t, nil)
	ctx := context.Background()
	out, err := e.svc.SignInExternal(ctx, ExternalIdentity{Provider: "idp", Subject: "sub-mallory", Username: "bob"}, ip2)
	if err != nil {
		t.Fatal(err)
	}
	mallory, err := e.svc.Resolve(ctx, out.Token)
	if err != nil {
		t.Fatal(err)
	}
	release, err := e.svc.UploadSlot(ctx, mallory, ip2)
	if err == nil {
		defer release()
		t.Error("an unbound provider account holds bob's upload turn")
	} else if !errors.Is(err, ErrForbidden) {
		t.Fatalf("UploadSlot: %v, want ErrForbidden", err)
	}
	own, err := e.svc.UploadSlot(ctx, bob, ip1)
	if err != nil {
		t.Fatalf("bob's own upload: %v", err)
	}
	own()
}

// A trusted browser stands in for bob's second factor after bob's first
// factor. A provider account not bound to bob is no first factor of his
// (it only bears his name), yet SignInExternal let bob's trusted browser
// both sign it in at two_factor and bind it to bob for good. Attack:
// mallory, at bob's unlocked computer for a minute (or by a login CSRF at
// the provider), clicks "Sign in with the provider" and signs in there with
// her account named "bob": she is bob on that browser without his
// password, and from then on her provider account is bob's anywhere (with
// trust_idp_mfa, at two_factor without any code of his). Expected: a
// provider account is bound only by a code of bob's, typed in.
func TestTrustedBrowserDoesNotBindProviderAccount(t *testing.T) {
	e := newTSEnv(t)
	ctx := context.Background()
	_, browser := trustedBob(t, e)
	mallory := ExternalIdentity{Provider: "idp", Subject: "sub-mallory", Username: "bob", MFA: true}
	out, err := e.svc.SignInExternal(ctx, mallory, browser)
	if err != nil {
		t.Fatal(err)
	}
	if out.Session.State != store.StateSecondFactor {
		t.Errorf("an unbound provider account on bob's trusted browser: %v, want second_factor", out.Session.State)
	}
	// From elsewhere, with her provider's MFA.
	again, err := e.svc.SignInExternal(ctx, mallory, ip2)
	if err == nil && again.Session.State == store.StateTwoFactor {
		t.Fatal("mallory's provider account was bound to bob by his trusted browser: two_factor as bob from anywhere")
	}
	// Bob's own provider account binds with a code, as before.
	bob := ExternalIdentity{Provider: "idp", Subject: "sub-bob", Username: "bob"}
	out, err = e.svc.SignInExternal(ctx, bob, browser)
	if err != nil {
		t.Fatal(err)
	}
	half, err := e.svc.Resolve(ctx, out.Token)
	if err != nil {
		t.Fatal(err)
	}
	e.clock.add(time.Minute)
	if _, err := e.svc.SendCode(ctx, half, MethodSMS, ip1); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.VerifyCode(ctx, half, MethodSMS, e.sms.last(t).Code, false, ip1); err != nil {
		t.Fatal(err)
	}
	// Bound now: the trusted browser skips the code for it.
	if out, err = e.svc.SignInExternal(ctx, bob, browser); err != nil || out.Session.State != store.StateTwoFactor {
		t.Fatalf("bob's bound provider account on his trusted browser: %v %v, want two_factor", out, err)
	}
}

// One reviewer, two nodes over one store, the same approval sent to both at
// once (a double click behind a load balancer, or on purpose): with
// approvals 2 it must count once, so the request stays pending.
func TestRecoveryDoubleApprovalAcrossNodes(t *testing.T) {
	st, err := bolt.Open(filepath.Join(t.TempDir(), "t.db"), bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := &tsEnv{env: newEnvWith(t, st), sms: &recorder{}, voice: &recorder{}, mail: &recorder{}}
	e.svc.senders = Senders{SMS: e.sms, Voice: e.voice, Email: e.mail}
	bob, alice := enableRecovery(t, e, func(rc *RecoveryConfig) { rc.Approvals = 2 })
	other := newEnvWith(t, st)
	other.svc.senders = e.svc.senders
	other.svc.cfg.Recovery = e.svc.cfg.Recovery
	ctx := context.Background()
	r, err := e.svc.RequestRecovery(ctx, bob, "passport", bytes.NewReader(pngBytes(t)), ip1)
	if err != nil {
		t.Fatal(err)
	}
	for round := 0; round < 20; round++ {
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i, svc := range []*Service{e.svc, other.svc} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = svc.Decide(ctx, alice, r.ID, "approve", "", ip1)
			}()
		}
		wg.Wait()
		got, err := e.svc.loadRecovery(ctx, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != RecoveryPending || len(got.Approvals) != 1 {
			t.Fatalf("round %d: one reviewer's approval on two nodes: %+v (errors %v)", round, got, errs)
		}
	}
}

// With approvals 2 the request needs two reviewers who may review when it
// is approved. Attack: reviewer alice approves a forged request and is
// then taken out of the review group (found out, or leaving); her
// approval still counted, so one more approval, the operator's or a
// colleague's, turned two-step off on one current reviewer's word.
// Expected: an approval counts only while its reviewer still is one.
func TestRecoveryApprovalOfFormerReviewerDoesNotCount(t *testing.T) {
	e, bob, alice := recoveryEnv(t, func(rc *RecoveryConfig) { rc.Approvals = 2 })
	ctx := context.Background()
	r, err := e.svc.RequestRecovery(ctx, bob, "passport", bytes.NewReader(pngBytes(t)), ip1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Decide(ctx, alice, r.ID, "approve", "", ip1); err != nil {
		t.Fatal(err)
	}
	// alice leaves the review group.
	db, err := users.Parse([]byte("users:\n  alice:\n    password: \"" + aliceHash + "\"\n    email: alice@example.com\n" +
		"  bob:\n    password: \"" + bobHash + "\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	e.dir.db.Store(db)
	got, err := e.svc.DecideAsOperator(ctx, "root", r.ID, "approve", "")
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != RecoveryPending {
		t.Fatalf("approved by the operator and a former reviewer: %+v", got)
	}
	if st := e.signIn(t, "bob", "bob-password").Session.State; st != store.StateSecondFactor {
		t.Fatalf("bob after one current reviewer's approval: %v", st)
	}
}

// THREATS REQ-72: a filing is told at once on every channel of the
// account, with a one-click "this wasn't me" link: an attacker who knows
// the password files while the owner still has their phone, and the owner
// must be able to stop it without waiting for a decision.
func TestRecoveryFilingToldOnEveryChannelWithCancelLink(t *testing.T) {
	e, _, _ := recoveryEnv(t, nil)
	ctx := context.Background()
	alice := e.signIn(t, "alice", "alice-password") // half signed in: she has a phone
	c := ip2
	c.Base = "https://app.example.com"
	r, err := e.svc.RequestRecovery(ctx, alice, "passport", bytes.NewReader(pngBytes(t)), c)
	if err != nil {
		t.Fatal(err)
	}
	link := e.svc.RecoveryCancelURL(c.Base, r.ID)
	if m := e.mail.last(t); m.To != "alice@example.com" || !strings.Contains(m.Body, link) {
		t.Fatalf("the filing email %+v, want the cancel link %s", m, link)
	}
	if m := e.sms.last(t); m.To != "+15557654321" || !strings.Contains(m.Body, "recover your account") || !strings.Contains(m.Body, "email") {
		t.Fatalf("last SMS %+v, want the filing notice to alice's phone, pointing to the email's link", m)
	}
	// The link stops the pending request.
	if err := e.svc.CancelRecoveryLink(ctx, r.ID, strings.SplitN(link, "&sig=", 2)[1]); err != nil {
		t.Fatal(err)
	}
	if got, _ := e.svc.loadRecovery(ctx, r.ID); got.Status != RecoveryCancelled {
		t.Fatalf("after the link: %q, want cancelled", got.Status)
	}
}

// SPEC §4: "A sign-in that passes a second factor while a request is open
// cancels it". With trust_idp_mfa the provider's MFA is that second factor:
// the owner who still has it signs in there, and the request someone filed
// with their password stops.
func TestRecoveryCancelledByTrustedProviderMFA(t *testing.T) {
	e, _, _ := recoveryEnv(t, nil)
	ctx := context.Background()
	e.svc.cfg.Providers = []string{"idp"}
	// bob binds his provider account once, with a code of his.
	out, err := e.svc.SignInExternal(ctx, ExternalIdentity{Provider: "idp", Subject: "sub-bob", Username: "bob"}, ip1)
	if err != nil {
		t.Fatal(err)
	}
	half, err := e.svc.Resolve(ctx, out.Token)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.SendCode(ctx, half, MethodSMS, ip1); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.VerifyCode(ctx, half, MethodSMS, e.sms.last(t).Code, false, ip1); err != nil {
		t.Fatal(err)
	}
	// Someone with bob's password files.
	r, err := e.svc.RequestRecovery(ctx, e.signIn(t, "bob", "bob-password"), "passport", bytes.NewReader(pngBytes(t)), ip2)
	if err != nil {
		t.Fatal(err)
	}
	// bob signs in at the provider with its (trusted) MFA.
	out, err = e.svc.SignInExternal(ctx, ExternalIdentity{Provider: "idp", Subject: "sub-bob", Username: "bob", MFA: true, AuthTime: e.clock.now()}, ip1)
	if err != nil {
		t.Fatal(err)
	}
	if out.Session.State != store.StateTwoFactor {
		t.Fatalf("bob with the provider's MFA: %v, want two_factor", out.Session.State)
	}
	if got, _ := e.svc.loadRecovery(ctx, r.ID); got.Status != RecoveryCancelled {
		t.Fatalf("the open request after bob's sign-in with the provider's MFA: %q, want cancelled", got.Status)
	}
}

// An approval waiting out its cooling-off can still be stopped by a
// reviewer who spots the forgery (another reviewer, or the operator): a
// denial then ends it, and two-step stays on. An approval already applied
// cannot be denied.
func TestRecoveryApprovalDeniedDuringCoolingOff(t *testing.T) {
	e, bob, alice := recoveryEnv(t, func(rc *RecoveryConfig) { rc.CoolingOff = time.Hour })
	ctx := context.Background()
	r, err := e.svc.RequestRecovery(ctx, bob, "passport", bytes.NewReader(pngBytes(t)), ip1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Decide(ctx, alice, r.ID, "approve", "", ip1); err != nil {
		t.Fatal(err)
	}
	got, err := e.svc.DecideAsOperator(ctx, "root", r.ID, "deny", "the photo is of another person")
	if err != nil || got.Status != RecoveryDenied {
		t.Fatalf("denial during the cooling-off: %+v, %v; want denied", got, err)
	}
	e.clock.add(2 * time.Hour)
	if err := e.svc.SweepRecovery(ctx); err != nil {
		t.Fatal(err)
	}
	if s := e.signIn(t, "bob", "bob-password"); s.Session.State != store.StateSecondFactor {
		t.Fatalf("after a denied approval's cooling-off: %v, want two-step still on", s.Session.State)
	}
	// Applied approvals are final.
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
	if _, err := e.svc.DecideAsOperator(ctx, "root", r2.ID, "deny", "too late"); !errors.Is(err, ErrAlreadyDecided) {
		t.Fatalf("denying an applied approval: %v, want ErrAlreadyDecided", err)
	}
}

// THREATS §4.6 (four-eyes for privileged accounts; the MGM help-desk
// reset): with `approvals 1`, one reviewer's word recovered another
// reviewer's account, whose new owner then reviews too. A request for a
// member of review_group needs two approvals whatever `approvals` says.
func TestRecoveryOfAReviewerNeedsTwoApprovals(t *testing.T) {
	e, _, _ := recoveryEnv(t, nil) // approvals 1; alice reviews
	ctx := context.Background()
	half := e.signIn(t, "alice", "alice-password") // alice has a phone: half signed in
	r, err := e.svc.RequestRecovery(ctx, half, "passport", bytes.NewReader(pngBytes(t)), ip2)
	if err != nil {
		t.Fatal(err)
	}
	got, err := e.svc.DecideAsOperator(ctx, "root", r.ID, "approve", "")
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != RecoveryPending {
		t.Fatalf("a reviewer's request after one approval: %q, want still pending", got.Status)
	}
	got, err = e.svc.DecideAsOperator(ctx, "second-operator", r.ID, "approve", "")
	if err != nil || got.Status != RecoveryApproved {
		t.Fatalf("after a second approval: %+v, %v; want approved", got, err)
	}
}

// providerUserFiles gives the provider-only user zoe (subject sub) a phone,
// signs her in at the provider again as id (half signed in: two-step is on
// now) and files a recovery from that session.
func providerUserFiles(t *testing.T, e *tsEnv, sub, phone string, id ExternalIdentity) *Recovery {
	t.Helper()
	ctx := context.Background()
	res, _ := e.signInExternal(t, "zoe", sub)
	if _, err := e.svc.SetPhone(ctx, res, phone, MethodSMS, ip1); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.ConfirmPhone(ctx, res, e.sms.last(t).Code, ip1); err != nil {
		t.Fatal(err)
	}
	out, err := e.svc.SignInExternal(ctx, id, ip2)
	if err != nil || out.Session.State != store.StateSecondFactor {
		t.Fatalf("zoe's provider account with two-step on: %v %v", out, err)
	}
	half, err := e.svc.Resolve(ctx, out.Token)
	if err != nil {
		t.Fatal(err)
	}
	r, err := e.svc.RequestRecovery(ctx, half, "passport", bytes.NewReader(pngBytes(t)), ip2)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// Four eyes for a provider-only reviewer: whether the account reviews was
// read from the provider user's record, which lasts a session lifetime;
// two days later, when the review happens, it was gone, and one approval
// recovered a reviewer. It is decided at filing (and can only rise).
func TestRecoveryOfAProviderReviewerNeedsTwoApprovalsDaysLater(t *testing.T) {
	e := newTSEnv(t)
	enableRecovery(t, e, nil) // approvals 1
	ctx := context.Background()
	r := providerUserFiles(t, e, "sub-zoe", "+15550002222",
		ExternalIdentity{Provider: "idp", Subject: "sub-zoe", Username: "zoe", Email: "zoe@example.com", Groups: []string{"admins"}, AllowUnknown: true})
	e.clock.add(48 * time.Hour)
	got, err := e.svc.DecideAsOperator(ctx, "root", r.ID, "approve", "")
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != RecoveryPending {
		t.Fatalf("a provider-only reviewer's request after one approval, two days on: %q, want pending", got.Status)
	}
}

// An approval is dropped only on evidence that its reviewer no longer
// reviews: a provider-only reviewer's record expiring (a session lifetime
// after their last sign-in) is no such evidence, and with approvals 2 the
// first approval vanished when the second came 13 hours later.
func TestRecoveryApprovalOfAProviderReviewerKept(t *testing.T) {
	e, bob, _ := recoveryEnv(t, func(rc *RecoveryConfig) { rc.Approvals = 2 })
	ctx := context.Background()
	r, err := e.svc.RequestRecovery(ctx, bob, "passport", bytes.NewReader(pngBytes(t)), ip1)
	if err != nil {
		t.Fatal(err)
	}
	out, err := e.svc.SignInExternal(ctx, ExternalIdentity{Provider: "idp", Subject: "sub-rev", Username: "rev", Email: "rev@example.com",
		Groups: []string{"admins"}, MFA: true, AllowUnknown: true}, ip1)
	if err != nil {
		t.Fatal(err)
	}
	rev, err := e.svc.Resolve(ctx, out.Token)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Decide(ctx, rev, r.ID, "approve", "", ip1); err != nil {
		t.Fatal(err)
	}
	e.clock.add(13 * time.Hour)
	got, err := e.svc.DecideAsOperator(ctx, "root", r.ID, "approve", "")
	if err != nil || got.Status != RecoveryApproved {
		t.Fatalf("after rev's approval (13 h ago) and the operator's: %+v, %v; want approved", got, err)
	}
}

// Denying an approval in its cooling-off works to the end of it, also
// past the request's 30-day expiry (which applies to pending requests).
func TestRecoveryApprovalDeniedLateInCoolingOff(t *testing.T) {
	e, bob, alice := recoveryEnv(t, func(rc *RecoveryConfig) { rc.CoolingOff = 7 * 24 * time.Hour })
	ctx := context.Background()
	r, err := e.svc.RequestRecovery(ctx, bob, "passport", bytes.NewReader(pngBytes(t)), ip1)
	if err != nil {
		t.Fatal(err)
	}
	e.clock.add(28 * 24 * time.Hour)
	if _, err := e.svc.Decide(ctx, alice, r.ID, "approve", "", ip1); err != nil {
		t.Fatal(err)
	}
	e.clock.add(3 * 24 * time.Hour) // day 31, the approval takes effect on day 35
	if got, err := e.svc.DecideAsOperator(ctx, "root", r.ID, "deny", "forged"); err != nil || got.Status != RecoveryDenied {
		t.Fatalf("deny on day 31: %+v, %v; want denied", got, err)
	}
}

// A provider-only user's request filed before requests recorded that
// (no External flag, no contact kept) is applied as it was then, not
// silently cancelled as "the account changed".
func TestRecoveryLegacyProviderRequestApplied(t *testing.T) {
	e := newTSEnv(t)
	enableRecovery(t, e, nil)
	ctx := context.Background()
	r := providerUserFiles(t, e, "sub-zoe", "+15550002222",
		ExternalIdentity{Provider: "idp", Subject: "sub-zoe", Username: "zoe", Email: "zoe@example.com", AllowUnknown: true})
	if _, err := e.svc.withRecovery(ctx, r.ID, func(r *Recovery) error { r.External = false; return e.svc.saveRecovery(ctx, r) }); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.store.Delete(ctx, recoveryContactKey(r.ID)); err != nil {
		t.Fatal(err)
	}
	got, err := e.svc.DecideAsOperator(ctx, "root", r.ID, "approve", "")
	if err != nil || got.Status != RecoveryApproved || !got.Applied {
		t.Fatalf("a request filed before the upgrade: %+v, %v; want approved and applied", got, err)
	}
}
