package account

import (
	"context"
	"errors"
	"testing"

	"github.com/twostep-auth/twostep/internal/store"
)

// Binding provider accounts to users-file users: attacks, each failing on
// the code before its fix, and the binding that follows the second factor.

// bindExternal links a users-file name to the first provider account that
// claims it, before that account has passed the user's own second factor.
// Attack: mallory, whose provider account says preferred_username "bob"
// (a name she picked, or bob's old name reassigned to her), signs in once;
// she is stopped at bob's second factor, but the link bob -> mallory's sub
// is written for good, so bob himself is refused (ErrAccountLinked) at that
// provider until an operator runs reset-2sv. Expected: a link to a user who
// has two-step on is made only once the second factor is passed.
func TestLinkNotSquattedBeforeSecondFactor(t *testing.T) {
	e := newTSEnv(t)
	e.enrolPhone(t) // bob: two-step on
	ctx := context.Background()
	out, err := e.svc.SignInExternal(ctx, ExternalIdentity{Provider: "idp", Subject: "sub-mallory", Username: "bob"}, ip2)
	if err != nil {
		t.Fatal(err)
	}
	if out.Session.State != store.StateSecondFactor {
		t.Fatalf("mallory as bob: %v, want second_factor", out.Session.State)
	}
	// Mallory cannot pass bob's second factor and gives up. Bob comes.
	if _, err := e.svc.SignInExternal(ctx, ExternalIdentity{Provider: "idp", Subject: "sub-bob", Username: "bob"}, ip1); err != nil {
		t.Errorf("bob's own provider account after mallory's failed attempt: %v (the link was squatted)", err)
	}
}

// The same link, with trust_idp_mfa: the provider's word that *its* account
// used MFA is taken as bob's second factor on the very sign-in that links
// that account to bob. Attack: mallory enrols her own authenticator at the
// provider (amr ["pwd","mfa"]) and names her account "bob"; she gets a
// two_factor session as bob, whose TOTP/SMS she never saw.
func TestFirstLinkIgnoresProviderMFA(t *testing.T) {
	e := newTSEnv(t)
	e.enrolPhone(t) // bob: two-step on
	ctx := context.Background()
	out, err := e.svc.SignInExternal(ctx, ExternalIdentity{Provider: "idp", Subject: "sub-mallory", Username: "bob", MFA: true}, ip2)
	if err != nil && !errors.Is(err, ErrAccountLinked) && !errors.Is(err, ErrInvalidCredentials) {
		t.Fatal(err)
	}
	if err == nil && out.Session.State == store.StateTwoFactor {
		t.Errorf("a provider account never linked to bob got a two_factor session as bob on the provider's MFA alone")
	}
}

// Bob's own provider account binds once he passes his second factor; from
// then on another account claiming "bob" is refused, and, with the
// provider's MFA trusted, his next provider sign-in needs no code here.
func TestLinkAfterSecondFactor(t *testing.T) {
	e := newTSEnv(t)
	e.enrolPhone(t) // bob: two-step on
	ctx := context.Background()
	bob := ExternalIdentity{Provider: "idp", Subject: "sub-bob", Username: "bob", MFA: true}
	out, err := e.svc.SignInExternal(ctx, bob, ip1)
	if err != nil || out.Session.State != store.StateSecondFactor {
		t.Fatalf("bob's first provider sign-in: %v %v, want second_factor", out, err)
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
	if _, err := e.svc.SignInExternal(ctx, ExternalIdentity{Provider: "idp", Subject: "sub-mallory", Username: "bob"}, ip2); !errors.Is(err, ErrAccountLinked) {
		t.Fatalf("another provider account as bob after the link: %v, want ErrAccountLinked", err)
	}
	again, err := e.svc.SignInExternal(ctx, bob, ip1)
	if err != nil || again.Session.State != store.StateTwoFactor {
		t.Fatalf("bob's linked account with the provider's MFA: %v %v, want two_factor", again, err)
	}
}
