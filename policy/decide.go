package policy

import (
	"time"
	"unicode"
	"unicode/utf8"
)

// Decide says what a request under rule, made by sub, may do at now:
//
//   - bypass: Allow, whoever asks; deny: Forbid.
//   - a stranger: SignIn; half signed in: SecondFactor; enrolling: Enroll.
//   - signed in but not in any of the rule's groups, or not one of its users
//     (compared case-insensitively): Forbid. These requirements are checked
//     before the level, so a non-member never sees an enrolment prompt.
//   - one_factor: Allow.
//   - two_factor: signed in at one factor: Enroll; at two factors: a trusted
//     device on a no_trusted_device rule, or a second factor older than
//     max_age (or never given): SecondFactor; otherwise Allow.
//
// Anything else (an unknown level or state, a nil rule or subject) is
// Forbid. Decide does not allocate.
func Decide(rule *Rule, sub *Subject, now time.Time) Outcome {
	if rule == nil {
		return Forbid
	}
	switch rule.Level {
	case Bypass:
		return Allow
	case Deny:
		return Forbid
	case OneFactor, TwoFactor:
	default:
		return Forbid
	}
	if sub == nil {
		return Forbid
	}
	switch sub.State {
	case Stranger:
		return SignIn
	case HalfSignedIn:
		return SecondFactor
	case Enrolling, SignedInOneFactor, SignedInTwoFactor:
	default:
		return Forbid
	}
	// Requirements before the level: a non-member is refused, never
	// prompted to enrol.
	if len(rule.Groups) > 0 && !inAnyGroup(rule.Groups, sub.Groups) {
		return Forbid
	}
	if len(rule.Users) > 0 && !isOneOf(rule.Users, sub.User) {
		return Forbid
	}
	if sub.State == Enrolling {
		return Enroll
	}
	if rule.Level == OneFactor {
		return Allow
	}
	if sub.State == SignedInOneFactor {
		return Enroll
	}
	if rule.NoTrustedDevice && sub.ViaTrustedDevice {
		return SecondFactor
	}
	if rule.MaxAge > 0 && (sub.SecondFactorAt.IsZero() || now.Sub(sub.SecondFactorAt) > rule.MaxAge) {
		return SecondFactor
	}
	return Allow
}

func inAnyGroup(want, have []string) bool {
	for _, w := range want {
		for _, h := range have {
			if w == h {
				return true
			}
		}
	}
	return false
}

func isOneOf(users []string, user string) bool {
	if user == "" {
		return false
	}
	for _, u := range users {
		// The account's own key (users.Canonical: strings.ToLower), not
		// EqualFold, which also folds "ſ" to "s": "ſam" is another account.
		if equalLower(u, user) {
			return true
		}
	}
	return false
}

// equalLower reports strings.ToLower(a) == strings.ToLower(b) without
// allocating.
func equalLower(a, b string) bool {
	for a != "" && b != "" {
		ra, na := utf8.DecodeRuneInString(a)
		rb, nb := utf8.DecodeRuneInString(b)
		if unicode.ToLower(ra) != unicode.ToLower(rb) {
			return false
		}
		a, b = a[na:], b[nb:]
	}
	return a == "" && b == ""
}
