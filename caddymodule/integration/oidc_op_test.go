package integration

// The in-process OpenID provider of the OIDC tests (oidc_test.go):
// internal/oidc/oidctest's zitadel OP on 127.0.0.1 with one confidential
// client, twostep on the integration site.

import (
	"fmt"
	"testing"

	"github.com/twostep-auth/twostep/internal/oidc/oidctest"
)

const (
	opClientID     = "twostep"
	opClientSecret = "twostep client secret at the OP"
	// opRedirectURI is the callback twostep sends for the provider named
	// "example" on the integration site.
	opRedirectURI = site + "/.twostep/oidc/example/callback"
)

// startOP starts the OP on 127.0.0.1 (a random port) with the login page
// at /login and one confidential client, opClientID, whose redirect URI is
// opRedirectURI. Its ID tokens last an hour (o.SetIDTokenLifetime(opClientID, …)
// changes that).
func startOP(t *testing.T) *oidctest.Server {
	t.Helper()
	return oidctest.NewServer(t, oidctest.Options{
		SiteName: "Integration Corp",
		Clients: []oidctest.Client{{
			ID:                     opClientID,
			Secret:                 opClientSecret,
			RedirectURIs:           []string{opRedirectURI},
			PostLogoutRedirectURIs: []string{site + "/.twostep/login?signed_out=1"},
			AllowedScopes:          []string{"groups"},
		}},
	})
}

// oidcBlock is the `oidc example { … }` block of the twostep global
// options for this OP (or any issuer), with extra lines.
func oidcBlock(issuer string, extra ...string) string {
	b := fmt.Sprintf(`oidc example {
			issuer %s
			client_id %s
			client_secret "%s"
			scopes openid email profile groups
			label "Sign in with Example"
`, issuer, opClientID, opClientSecret)
	for _, line := range extra {
		b += "\t\t\t" + line + "\n"
	}
	return b + "\t\t}\n"
}
