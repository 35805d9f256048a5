package oidc

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"
)

// Defaults that New applies to empty Config fields, and the package's limits.
const (
	// DefaultUsernameClaim is the claim read for the user name when
	// Config.UsernameClaim is empty; `email` is the fallback (verified only).
	DefaultUsernameClaim = "preferred_username"
	// DefaultGroupsClaim is the claim read for groups when Config.GroupsClaim is empty.
	DefaultGroupsClaim = "groups"
	// FlowLifetime is how long a Flow returned by Start may be finished.
	FlowLifetime = 10 * time.Minute
	// RetryInterval is the least time between two discovery attempts after a failure.
	RetryInterval = 10 * time.Second
	// DefaultHTTPTimeout bounds every request to the provider made with the
	// default HTTP client, and every discovery attempt whatever the client.
	DefaultHTTPTimeout = 15 * time.Second
)

// DefaultScopes are the scopes requested when Config.Scopes is empty.
var DefaultScopes = []string{"openid", "email", "profile"}

// nameRE is what a provider name (the word after `oidc` in the Caddyfile)
// may look like; it ends up in URL paths and cookie names.
var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

// Config is one `oidc <name> { … }` block of the Caddyfile, plus the hooks
// that the caller wires in.
type Config struct {
	// Name identifies the provider in URLs and logs: lower-case letters,
	// digits, '-' and '_', at most 64 characters.
	Name string
	// Issuer is the provider's issuer URL; discovery fetches
	// Issuer + "/.well-known/openid-configuration". It must be https, except
	// for loopback hosts (127.0.0.0/8, ::1, localhost), which tests use.
	Issuer string
	// ClientID is this relying party's client id at the provider.
	ClientID string
	// ClientSecret is the client secret; it may be empty for a public client
	// (the flow always uses PKCE).
	ClientSecret string
	// Scopes requested; default DefaultScopes. "openid" is added when missing.
	Scopes []string
	// Label is the text of the login button; default "Sign in with <Name>".
	Label string
	// TrustIdPMFA makes an ID token whose amr lists mfa, otp, hwk or swk (or
	// whose acr is one of ACRs) count as two factors.
	TrustIdPMFA bool
	// ACRs are acr values that count as multi-factor when TrustIdPMFA is set.
	ACRs []string
	// UsernameClaim names the claim that holds the user name; default
	// DefaultUsernameClaim, with a fallback to a verified `email`.
	UsernameClaim string
	// GroupsClaim names the claim that holds the groups; default DefaultGroupsClaim.
	GroupsClaim string
	// AllowUnknownUsers admits users that are not in the users file; by
	// default they are refused with ErrUnknownUser.
	AllowUnknownUsers bool
	// KnownUser reports whether a user name is in the users file. Finish
	// calls it; when it is nil every user counts as unknown, so only
	// AllowUnknownUsers lets anyone in (fail closed).
	KnownUser func(username string) bool
	// HTTPClient is used for every request to the provider (discovery, JWKS,
	// token and userinfo endpoints); default a client with DefaultHTTPTimeout.
	HTTPClient *http.Client
}

// Validate checks the configuration without any network I/O.
func (c *Config) Validate() error {
	if c == nil {
		return errors.New("oidc: nil config")
	}
	if !nameRE.MatchString(c.Name) {
		return fmt.Errorf("oidc: invalid provider name %q: use 1-64 lower-case letters, digits, '-' or '_'", c.Name)
	}
	if err := validateIssuer(c.Issuer); err != nil {
		return fmt.Errorf("oidc %s: %w", c.Name, err)
	}
	if strings.TrimSpace(c.ClientID) == "" {
		return fmt.Errorf("oidc %s: client_id is required", c.Name)
	}
	if hasSpaceOrControl(c.ClientID) {
		return fmt.Errorf("oidc %s: client_id contains whitespace or control characters", c.Name)
	}
	if hasControl(c.ClientSecret) {
		return fmt.Errorf("oidc %s: client_secret contains control characters", c.Name)
	}
	for _, s := range c.Scopes {
		if s == "" || hasSpaceOrControl(s) || strings.ContainsAny(s, `"\`) {
			return fmt.Errorf("oidc %s: invalid scope %q", c.Name, s)
		}
	}
	if hasControl(c.Label) {
		return fmt.Errorf("oidc %s: label contains control characters", c.Name)
	}
	for _, a := range c.ACRs {
		if a == "" || hasSpaceOrControl(a) {
			return fmt.Errorf("oidc %s: invalid acr value %q", c.Name, a)
		}
	}
	for what, claim := range map[string]string{"username_claim": c.UsernameClaim, "groups_claim": c.GroupsClaim} {
		if claim != "" && hasSpaceOrControl(claim) {
			return fmt.Errorf("oidc %s: invalid %s %q", c.Name, what, claim)
		}
	}
	return nil
}

// validateIssuer accepts an absolute https URL without query, fragment or
// user info, or an http URL whose host is a loopback address.
func validateIssuer(issuer string) error {
	if issuer == "" {
		return errors.New("issuer is required")
	}
	u, err := url.Parse(issuer)
	if err != nil {
		return fmt.Errorf("invalid issuer %q: %v", issuer, err)
	}
	if u.Host == "" || u.Opaque != "" {
		return fmt.Errorf("invalid issuer %q: not an absolute URL", issuer)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" || strings.ContainsAny(issuer, "?#") {
		return fmt.Errorf("invalid issuer %q: no user info, query or fragment allowed", issuer)
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !isLoopbackHost(u.Hostname()) {
			return fmt.Errorf("invalid issuer %q: must be https (http is allowed only for loopback hosts)", issuer)
		}
	default:
		return fmt.Errorf("invalid issuer %q: must be https", issuer)
	}
	return nil
}

// isLoopbackHost reports whether host is localhost or a loopback IP.
func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// withDefaults returns a copy of c with defaults filled in.
func (c Config) withDefaults() Config {
	if len(c.Scopes) == 0 {
		c.Scopes = slices.Clone(DefaultScopes)
	} else {
		scopes := make([]string, 0, len(c.Scopes)+1)
		if !slices.Contains(c.Scopes, "openid") {
			scopes = append(scopes, "openid")
		}
		for _, s := range c.Scopes {
			if !slices.Contains(scopes, s) {
				scopes = append(scopes, s)
			}
		}
		c.Scopes = scopes
	}
	c.ACRs = slices.Clone(c.ACRs)
	if c.Label == "" {
		c.Label = "Sign in with " + c.Name
	}
	if c.UsernameClaim == "" {
		c.UsernameClaim = DefaultUsernameClaim
	}
	if c.GroupsClaim == "" {
		c.GroupsClaim = DefaultGroupsClaim
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: DefaultHTTPTimeout}
	}
	return c
}

func hasControl(s string) bool {
	return strings.IndexFunc(s, unicode.IsControl) >= 0
}

func hasSpaceOrControl(s string) bool {
	return strings.IndexFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0
}
