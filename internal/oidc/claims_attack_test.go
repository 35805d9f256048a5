package oidc

import (
	"errors"
	"testing"
	"time"

	"github.com/twostep-auth/twostep/internal/oidc/oidctest"
)

// Attacks on the claims mapping; each failed on the code before its fix.

// An email used as the user name must be verified (REQ-112, pickUsername's
// own rule). preferred_username is whatever the provider's user typed
// (OIDC Core 5.1: "MAY be any valid JSON string including … @ …", 5.7: not
// unique); an email-shaped preferred_username must not stand in for an
// unverified email. Attack: mallory registers at the provider with the user
// name "carol@example.com" (her own, unverified email is elsewhere, or the
// provider uses "email as username" without verification) and signs in as
// the users-file user carol@example.com.
func TestEmailShapedPreferredUsernameMustBeTheVerifiedEmail(t *testing.T) {
	f := newFixture(t)
	for _, u := range []oidctest.User{
		{Username: "carol@example.com", Subject: "sub-mallory-1", Email: "mallory@evil.test", EmailVerified: false},
		{Username: "Carol@Example.com", Subject: "sub-mallory-2"}, // no email at all
	} {
		u.Password = "pw-mallory"
		f.op.AddUser(u)
		p := f.provider(t, "twostep")
		flow, cb := f.signIn(t, p, u.Username)
		id, err := finish(t, p, flow, cb, time.Time{})
		if err == nil {
			t.Errorf("preferred_username %q (email %q, verified %v) signed in as %q (known %v); want ErrNoUsername",
				u.Username, u.Email, u.EmailVerified, id.Username, id.Known)
			continue
		}
		if !errors.Is(err, ErrNoUsername) {
			t.Errorf("preferred_username %q: err = %v, want ErrNoUsername", u.Username, err)
		}
	}
}

// trust_idp_mfa must count only what RFC 8176 calls multiple factors:
// "mfa", or methods of two different kinds. "otp", "hwk" and "swk" alone
// are one factor (Entra ID reports amr ["otp"] for an email one-time
// passcode sign-in, a FIDO key without PIN is "hwk"). Attack: someone who
// controls only the victim's mailbox signs in at the provider with an email
// code and is given a two_factor session here, skipping the TOTP the victim
// turned on.
func TestTrustIdPMFASingleFactorAMR(t *testing.T) {
	f := newFixture(t)
	for _, amr := range [][]string{{"otp"}, {"hwk"}, {"swk"}} {
		name := "single-" + amr[0]
		f.op.AddUser(oidctest.User{Username: name, Password: "pw", Email: name + "@example.com", EmailVerified: true, AMR: amr})
		p := f.provider(t, "twostep", func(c *Config) { c.TrustIdPMFA = true; c.AllowUnknownUsers = true })
		flow, cb := f.signIn(t, p, name)
		id, err := finish(t, p, flow, cb, time.Time{})
		if err != nil {
			t.Fatalf("%v: %v", amr, err)
		}
		if id.MFA {
			t.Errorf("amr %v (a single factor) counts as MFA", amr)
		}
	}
}
