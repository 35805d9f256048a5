package oidc

import (
	"errors"
	"fmt"
	"net/mail"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// amrClass sorts RFC 8176 amr values into the factor classes they show
// (NIST 800-63B: something you know, have, are). One value alone is one
// factor, whatever it is ("otp" is also an emailed one-time passcode,
// "hwk" a security key without its PIN); MFA is "mfa", or two classes.
var amrClass = map[string]byte{
	"pwd": 'k', "pin": 'k', "kba": 'k',
	"otp": 'h', "hwk": 'h', "swk": 'h', "sms": 'h', "tel": 'h', "sc": 'h',
	"fpt": 'i', "face": 'i', "iris": 'i', "retina": 'i', "vbm": 'i',
}

// amrShowsMFA reports whether amr says the provider used more than one
// factor.
func amrShowsMFA(amr []string) bool {
	var first byte
	for _, a := range amr {
		if a == "mfa" {
			return true
		}
		c, ok := amrClass[a]
		switch {
		case !ok:
		case first == 0:
			first = c
		case c != first:
			return true
		}
	}
	return false
}

// maxUsernameLen bounds user names taken from a provider.
const maxUsernameLen = 256

// mapClaims maps verified ID token claims (possibly completed from userinfo)
// to an Identity; Subject, Provider, IDToken and Known are left to Finish.
func mapClaims(cfg *Config, claims map[string]any) (*Identity, error) {
	id := &Identity{}

	email, _ := claims["email"].(string)
	verified := claimBool(claims["email_verified"])
	if email != "" && verified && ParseEmail(email) == nil {
		id.Email, id.EmailVerified = email, true
	}

	username, err := pickUsername(cfg, claims, id.Email)
	if err != nil {
		return nil, err
	}
	id.Username = username

	if name, ok := claims["name"].(string); ok && utf8.ValidString(name) && !hasControl(name) {
		id.Name = strings.TrimSpace(name)
	}
	id.Groups = claimStrings(claims[cfg.GroupsClaim])

	id.AMR = claimStrings(claims["amr"])
	if acr, ok := claims["acr"].(string); ok && !hasSpaceOrControl(acr) {
		id.ACR = acr
	}
	if cfg.TrustIdPMFA {
		id.MFA = amrShowsMFA(id.AMR)
		if id.ACR != "" && slices.Contains(cfg.ACRs, id.ACR) {
			id.MFA = true
		}
	}
	return id, nil
}

// pickUsername applies the user name rule: the configured claim if it is a
// non-empty string; else, with the default claim, a verified email. An email
// used as user name (configured or fallback) must be verified. The result is
// lower-cased and must have no whitespace or control characters.
func pickUsername(cfg *Config, claims map[string]any, verifiedEmail string) (string, error) {
	claim := cfg.UsernameClaim
	if claim == "" {
		claim = DefaultUsernameClaim
	}
	var name string
	if claim == "email" {
		if verifiedEmail == "" {
			return "", fmt.Errorf("%w: the email is missing, invalid or not verified", ErrNoUsername)
		}
		name = verifiedEmail
	} else if v, ok := claims[claim].(string); ok && v != "" {
		// preferred_username is the provider's user's own choice (OIDC
		// Core 5.1, 5.7): shaped like an email it could name the
		// users-file user of that address, so it must be the verified one.
		if claim == DefaultUsernameClaim && strings.Contains(v, "@") && !strings.EqualFold(v, verifiedEmail) {
			return "", fmt.Errorf("%w: %s %q looks like an email address but is not the provider's verified email (set username_claim to a claim the provider controls)", ErrNoUsername, claim, clean(v, 100))
		}
		name = v
	} else if claim == DefaultUsernameClaim && verifiedEmail != "" {
		name = verifiedEmail
	} else {
		if claim == DefaultUsernameClaim {
			return "", fmt.Errorf("%w: no %s and no verified email", ErrNoUsername, claim)
		}
		return "", fmt.Errorf("%w: no %s claim", ErrNoUsername, claim)
	}
	// Lower-casing must not make a name at the provider read as another
	// one: KELVIN SIGN and DOTTED CAPITAL I lower-case to the ASCII "k"
	// and "i", so "\u212Aarl", a free name there, would be the user karl.
	if strings.IndexFunc(name, foldsToASCII) >= 0 {
		return "", fmt.Errorf("%w: the user name %q has a letter that lower-cases to another one", ErrNoUsername, clean(name, 100))
	}
	name = strings.ToLower(name)
	if err := checkUsername(name); err != nil {
		return "", err
	}
	return name, nil
}

func checkUsername(name string) error {
	switch {
	case !utf8.ValidString(name):
		return fmt.Errorf("%w: the user name is not valid UTF-8", ErrNoUsername)
	case len(name) > maxUsernameLen:
		return fmt.Errorf("%w: the user name is longer than %d bytes", ErrNoUsername, maxUsernameLen)
	case hasSpaceOrControl(name) || strings.IndexFunc(name, isInvisible) >= 0:
		return fmt.Errorf("%w: the user name %q contains whitespace or control characters", ErrNoUsername, clean(name, 100))
	}
	return nil
}

// foldsToASCII reports a non-ASCII rune whose lower case is ASCII.
func foldsToASCII(r rune) bool {
	return r >= utf8.RuneSelf && unicode.ToLower(r) < utf8.RuneSelf
}

// isInvisible reports format characters (zero-width space, bidi controls…)
// that would let two names look alike.
func isInvisible(r rune) bool {
	return unicode.Is(unicode.Cf, r)
}

// ParseEmail parses an email claim strictly: a bare addr-spec (no display
// name, angle brackets or comments) that net/mail accepts unchanged, with
// exactly one '@', a non-empty local part and a domain without a domain
// literal, no whitespace or control characters, at most 254 bytes.
func ParseEmail(s string) error {
	if s == "" || len(s) > 254 || !utf8.ValidString(s) {
		return errors.New("invalid email: empty, too long or not UTF-8")
	}
	if hasSpaceOrControl(s) || strings.IndexFunc(s, isInvisible) >= 0 {
		return errors.New("invalid email: whitespace or control characters")
	}
	if strings.Count(s, "@") != 1 {
		return errors.New("invalid email: need exactly one @")
	}
	local, domain, _ := strings.Cut(s, "@")
	if local == "" || domain == "" {
		return errors.New("invalid email: empty local part or domain")
	}
	if strings.ContainsAny(s, `"()<>[]\,;:`) {
		return errors.New("invalid email: quoted, commented or bracketed parts are not accepted")
	}
	if strings.HasPrefix(domain, ".") || strings.HasSuffix(domain, ".") || strings.Contains(domain, "..") {
		return errors.New("invalid email: bad domain")
	}
	addr, err := mail.ParseAddress(s)
	if err != nil {
		return fmt.Errorf("invalid email: %w", err)
	}
	if addr.Name != "" || addr.Address != s {
		return errors.New("invalid email: not a bare address")
	}
	return nil
}

// claimBool accepts true and "true" (some providers send strings).
func claimBool(v any) bool {
	switch b := v.(type) {
	case bool:
		return b
	case string:
		return strings.EqualFold(b, "true")
	}
	return false
}

// claimStrings reads a claim that is a list of strings or a single string,
// dropping empty values, non-strings, values with control characters and
// duplicates.
func claimStrings(v any) []string {
	var in []string
	switch x := v.(type) {
	case string:
		in = []string{x}
	case []string:
		in = x
	case []any:
		for _, e := range x {
			if s, ok := e.(string); ok {
				in = append(in, s)
			}
		}
	}
	var out []string
	for _, s := range in {
		// Remote-Groups is comma-separated: a group name with a comma (or
		// padding) would read as other groups at the app ("x,admins"), so
		// it is dropped, as the users file refuses it.
		if s == "" || !utf8.ValidString(s) || hasControl(s) || strings.ContainsRune(s, ',') ||
			strings.TrimSpace(s) != s || slices.Contains(out, s) {
			continue
		}
		out = append(out, s)
	}
	return out
}
