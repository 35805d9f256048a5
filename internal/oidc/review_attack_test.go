package oidc

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// Attacks on the claims mapping found in review; each failed on the code
// before its fix.

// The user name is lower-cased (strings.ToLower) to name a users-file user,
// and some non-ASCII letters lower-case to ASCII ones: KELVIN SIGN U+212A
// becomes "k". At the provider "Karl" with a Kelvin sign is another user
// name than "karl" (or the mailbox of another person, when the verified
// email is the user name), free for anyone to register. Attack: mallory
// registers "\u212Aarl" and is mapped to the users-file user karl: with
// two-step off for karl she is signed in as him and her account is bound
// to his name; with it on she reaches his second factor and his recovery.
// Expected: a name whose lower-casing turns a non-ASCII letter into an
// ASCII one is refused.
func TestUsernameFoldingToASCIIRefused(t *testing.T) {
	cfg := Config{Name: "x"}.withDefaults()
	for name, claims := range map[string]map[string]any{
		"kelvin preferred_username": {"preferred_username": "\u212Aarl"},
		"kelvin verified email":     {"email": "\u212Aarl@example.com", "email_verified": true},
		"kelvin email claim":        {"email": "\u212Aarl@example.com", "email_verified": true},
		"dotted capital I":          {"preferred_username": "\u0130van"},
	} {
		c := cfg
		if name == "kelvin email claim" {
			c.UsernameClaim = "email"
		}
		id, err := mapClaims(&c, claims)
		if err == nil {
			t.Errorf("%s: mapped to user %q; want ErrNoUsername", name, id.Username)
			continue
		}
		if !errors.Is(err, ErrNoUsername) {
			t.Errorf("%s: %v, want ErrNoUsername", name, err)
		}
	}
	// Non-ASCII names that stay non-ASCII, and ASCII capitals, still work.
	for in, want := range map[string]string{"Jörg": "jörg", "ÉLODIE": "élodie", "Karl": "karl"} {
		id, err := mapClaims(&cfg, map[string]any{"preferred_username": in})
		if err != nil || id.Username != want {
			t.Errorf("%q: %+v %v, want %q", in, id, err, want)
		}
	}
}

// The userinfo endpoint gets the access token and answers with claims
// that fill in the user name, email and groups the ID token lacks; only
// its sub is checked. The other endpoints of the discovery document must
// be https (or loopback); userinfo was taken as it came. Attack: a
// provider whose discovery names http://… for userinfo (a misconfigured
// proxy in front of it) sends the access token in clear, and anyone on the
// path answers with preferred_username "admin" for the user's sub: the
// sign-in maps to the users-file user admin. Expected: a userinfo endpoint
// that is not https (or loopback) is not used.
func TestUserInfoEndpointMustBeHTTPS(t *testing.T) {
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"issuer":                                srv.URL,
			"authorization_endpoint":                srv.URL + "/authorize",
			"token_endpoint":                        srv.URL + "/token",
			"jwks_uri":                              srv.URL + "/keys",
			"userinfo_endpoint":                     "http://userinfo.example.net/userinfo",
			"id_token_signing_alg_values_supported": []string{"RS256"},
		})
	}))
	t.Cleanup(srv.Close)
	p, err := New(Config{Name: "x", Issuer: srv.URL, ClientID: "c", ClientSecret: "s"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.Discover(ctx); err != nil {
		t.Fatal(err)
	}
	if p.discovered().hasUserInfo {
		t.Error("an http userinfo endpoint on a non-loopback host is used (the access token goes in clear, and its claims are trusted)")
	}
}
