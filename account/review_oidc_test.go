package account

import (
	"context"
	"errors"
	"testing"

	"github.com/twostep-auth/twostep/internal/store"
)

// Security review (OIDC). Each test here fails on the code it was written
// against and names the flaw it shows.

// bindExternal links a users-file name to the first provider account that
// claims it, before that account has passed the user's own second factor.
// Attack: mallory, whose provider account says preferred_username "bob"
// (a name she picked, or bob's old name reassigned to her), signs in once;
// she is stopped at bob's second factor, but the link bob -> mallory's sub
// is written for good, so bob himself is refused (ErrAccountLinked) at that
// provider until an operator runs reset-2sv. Expected: a link to a user who
// has two-step on is made only once the second factor is passed.
func TestReviewLinkSquattedBeforeSecondFactor(t *testing.T) {
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
func TestReviewFirstLinkTrustsIdPMFAForUsersFileUser(t *testing.T) {
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
