package oidc

import (
	"errors"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Errors returned by Finish (wrapped: test with errors.Is). Their messages
// never contain tokens, codes, nonces or verifiers.
var (
	// ErrState: the callback's state is missing or does not match the stored
	// flow (or the flow belongs to another provider, or the callback names
	// another issuer).
	ErrState = errors.New("oidc: state mismatch")
	// ErrProviderError: the provider answered with error=… in the callback;
	// the provider's error code and description are included.
	ErrProviderError = errors.New("oidc: the provider refused the sign-in")
	// ErrExchange: the authorization code could not be exchanged for tokens
	// (for example a replayed or expired code, or a wrong client secret).
	ErrExchange = errors.New("oidc: code exchange failed")
	// ErrToken: the ID token is missing or invalid: signature, issuer,
	// audience, authorized party, expiry, nonce or at_hash. The go-oidc error
	// is wrapped too.
	ErrToken = errors.New("oidc: invalid ID token")
	// ErrNoUsername: no usable user name claim (an `email` used as the user
	// name must be verified).
	ErrNoUsername = errors.New("oidc: no usable user name in the ID token")
	// ErrFlowExpired: the flow is older than FlowLifetime.
	ErrFlowExpired = errors.New("oidc: sign-in took too long")
	// ErrUnknownUser: the user is not in the users file and unknown users are
	// not allowed.
	ErrUnknownUser = errors.New("oidc: user is not known here")
	// ErrStaleAuth: a re-authentication (StartReauth) came back without the
	// provider having asked the user again: no auth_time, or one from
	// before the flow started.
	ErrStaleAuth = errors.New("oidc: the provider did not ask for the credentials again")
	// ErrUnavailable: discovery has not succeeded (the provider is
	// unreachable or misconfigured). Returned by Discover, Start and Finish.
	ErrUnavailable = errors.New("oidc: provider unavailable")
)

// unavailableError is the error kept after a failed discovery; its message
// is meant for the login button.
type unavailableError struct {
	msg   string
	cause error
}

func (e *unavailableError) Error() string { return e.msg }

func (e *unavailableError) Unwrap() []error { return []error{ErrUnavailable, e.cause} }

// clean makes a string from a remote party safe to show and log: control
// characters become spaces, invalid UTF-8 is replaced, and it is cut to max
// bytes.
func clean(s string, max int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if len(s) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}
