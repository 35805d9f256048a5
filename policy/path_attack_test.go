package policy

// Attacks on the sidecar and the identity headers. Each test failed on
// the code before its fix.

import (
	"testing"
	"time"
)

// An empty segment followed by ".." is resolved merge-first here
// ("/admin//../public/x" is "/public/x"), while RFC 3986
// remove_dot_segments and the WHATWG URL parser give "/admin/public/x".
// Upstreams disagree, so the path is ambiguous and must be refused, as
// ";" on an empty segment already is.
func TestEmptySegmentBeforeDotDotIsAmbiguous(t *testing.T) {
	for _, p := range []string{"/admin//../public/x", "/admin/users//..//../public/x", "/a//%2e%2e/b"} {
		if c, err := CanonicalPath(p, false); err == nil {
			t.Errorf("CanonicalPath(%q) = %q; RFC 3986/WHATWG resolve it differently, want ErrAmbiguousPath", p, c)
		}
	}
}

// `user sam` is compared with strings.EqualFold, which folds "ſ" (U+017F)
// to "s"; the account key is strings.ToLower, which keeps "ſ". An OIDC user
// (allow_unknown_users) whose preferred_username is "ſam" is a different
// account, yet satisfies the requirement written for "sam". The method
// matcher already avoids EqualFold for this reason (rules.go).
func TestUserRequirementIsTheAccountKey(t *testing.T) {
	rule := &Rule{Level: TwoFactor, Users: []string{"sam"}}
	sub := &Subject{State: SignedInTwoFactor, User: "ſam", SecondFactorAt: time.Now()}
	if got := Decide(rule, sub, time.Now()); got != Forbid {
		t.Fatalf("user ſam on a `user sam` rule: %v, want Forbid", got)
	}
	// The same account in another case is still let in.
	sub.User = "SAM"
	if got := Decide(rule, sub, time.Now()); got != Allow {
		t.Fatalf("SAM: %v, want Allow", got)
	}
}

// CanonicalHost lower-cases with strings.ToLower, which maps the non-ASCII
// "İ" (U+0130) to "i" and the Kelvin sign (U+212A) to "k". A Host no DNS
// name or front proxy treats as public.example.com (nginx lower-cases
// ASCII only and sends it to its default or wildcard server, and passes it
// on in X-Original-URL) then matches `rule bypass host public.example.com`.
func TestCanonicalHostFoldsASCIIOnly(t *testing.T) {
	for in, rule := range map[string]string{
		"PUBL\u0130C.example.com":    "public.example.com",
		"\u212Aey.example.com":       "key.example.com",
		"w\u0130k\u0130.example.com": "wiki.example.com",
	} {
		if got := CanonicalHost(in); got == rule {
			t.Errorf("CanonicalHost(%q) = %q: a non-ASCII host matches the rule for %q", in, got, rule)
		}
	}
}

// ResolveDotSegments resolves what the handler forwards, leaving every
// other byte as sent.
func TestResolveDotSegments(t *testing.T) {
	for _, c := range []struct {
		in, want string
		changed  bool
		err      bool
	}{
		{"/a/b", "/a/b", false, false},
		{"/a/./b", "/a/b", true, false},
		{"/a/../b;jsessionid=x", "/b;jsessionid=x", true, false},
		{"/admin/%2e%2E/public/x", "/public/x", true, false},
		{"/a/b/..", "/a/", true, false},
		{"/a/%41//x/../y", "/a/%41//y", true, false},
		{"/a//../b", "", false, true},
		{"/..", "", false, true},
		{"a/b", "", false, true},
	} {
		got, changed, err := ResolveDotSegments(c.in)
		if (err != nil) != c.err || got != c.want || changed != c.changed {
			t.Errorf("ResolveDotSegments(%q) = %q, %v, %v; want %q, %v, error %v", c.in, got, changed, err, c.want, c.changed, c.err)
		}
	}
}
