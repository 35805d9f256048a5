// Package policy holds twostep's pure decisions: which rule a request falls
// under, and what a request carrying a given session may do there. It uses
// the standard library only and takes time as a parameter.
package policy

import (
	"net/netip"
	"time"
)

// Level is what a rule demands.
type Level uint8

const (
	// TwoFactor is the zero value so that a forgotten level is the strict one.
	TwoFactor Level = iota
	// OneFactor demands a password (or an identity provider's sign-in).
	OneFactor
	// Bypass lets anyone through, signed in or not.
	Bypass
	// Deny refuses everyone with 403.
	Deny
)

// String returns the Caddyfile spelling.
func (l Level) String() string {
	switch l {
	case Bypass:
		return "bypass"
	case OneFactor:
		return "one_factor"
	case TwoFactor:
		return "two_factor"
	case Deny:
		return "deny"
	}
	return "invalid"
}

// ParseLevel reads a Caddyfile level name.
func ParseLevel(s string) (Level, bool) {
	switch s {
	case "bypass":
		return Bypass, true
	case "one_factor":
		return OneFactor, true
	case "two_factor":
		return TwoFactor, true
	case "deny":
		return Deny, true
	}
	return TwoFactor, false
}

// Rule is one `rule` line. Matchers (Hosts, Paths, PathRegexps, Methods,
// Networks) select the rule; every non-empty matcher must match (each matcher
// matches if any of its values does). Groups and Users are requirements
// checked after selection.
type Rule struct {
	Level       Level
	Hosts       []string
	Paths       []string
	PathRegexps []string
	Methods     []string
	Networks    []netip.Prefix
	Groups      []string
	Users       []string
	// MaxAge demands that the second factor was given within this duration.
	MaxAge time.Duration
	// NoTrustedDevice refuses a trusted device in place of the second factor.
	NoTrustedDevice bool
}

// Request is the canonical view of a request that rules match against.
type Request struct {
	// Host is canonical: lower-case, no port, no trailing dot (CanonicalHost).
	Host string
	// Path is canonical (CanonicalPath).
	Path string
	// Method is the request method; rules compare it ignoring ASCII case.
	Method string
	// ClientIP is the client address as Caddy's trusted_proxies resolves it;
	// the zero Addr matches no network.
	ClientIP netip.Addr
}

// Subject is what the session says about the requester.
type Subject struct {
	// State is the sign-in state; Stranger when there is no valid session.
	State SubjectState
	// User is the user name; rules' user requirements compare it ignoring case.
	User string
	// Groups of the user, as the users file says now.
	Groups []string
	// SecondFactorAt is when the second factor was last given.
	SecondFactorAt time.Time
	// ViaTrustedDevice: a trusted device stood in for the second factor.
	ViaTrustedDevice bool
}

// SubjectState is how far the requester has signed in.
type SubjectState uint8

const (
	// Stranger: no valid session.
	Stranger SubjectState = iota
	// HalfSignedIn: password given, second factor pending.
	HalfSignedIn
	// Enrolling: password given, but a second factor must be enrolled
	// before anything else.
	Enrolling
	// SignedInOneFactor: signed in with the password only (two-step off).
	SignedInOneFactor
	// SignedInTwoFactor: signed in with password and second factor (or a
	// trusted device).
	SignedInTwoFactor
)

// Outcome is what the handler does with a request.
type Outcome uint8

const (
	// Allow: pass the request on with the identity headers.
	Allow Outcome = iota
	// Forbid: 403.
	Forbid
	// SignIn: stranger; 302 to the login page or 401 unauthenticated.
	SignIn
	// SecondFactor: half signed in, step-up (max_age) or a trusted device on a
	// no_trusted_device rule; 302 to the challenge or 401 second_factor_required.
	SecondFactor
	// Enroll: signed in at one_factor on a two_factor rule; 302 to settings?enroll=1
	// or 401 enrollment_required.
	Enroll
)

// String names the outcome for logs and tests.
func (o Outcome) String() string {
	switch o {
	case Allow:
		return "allow"
	case Forbid:
		return "forbid"
	case SignIn:
		return "sign_in"
	case SecondFactor:
		return "second_factor"
	case Enroll:
		return "enroll"
	}
	return "invalid"
}
