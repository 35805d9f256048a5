package otp

import (
	"bytes"
	"net/url"
	"testing"
	"time"
)

// Attacks on the primitives, kept as regression guards (they pass: the
// review found nothing exploitable here).

// A code hashed for one purpose or one user never verifies for another,
// however the caller's strings are split (purpose "a:b" + subject "c" vs
// purpose "a" + subject "b:c"; NUL injection).
func TestReviewHashDomainSeparation(t *testing.T) {
	h, err := NewHasher(bytes.Repeat([]byte{7}, MinHasherKeyLen))
	if err != nil {
		t.Fatal(err)
	}
	stored := h.Hash("phone:s1", "bob", "123456")
	for _, c := range []struct{ purpose, subject string }{
		{"phone:s2", "bob"}, {"login", "bob"}, {"phone", "s1:bob"}, {"phone:s1", "alice"},
		{"phone:s1\x00bob", ""}, {"phone:s1", "bob\x00"}, {PurposeBackup, "bob"},
	} {
		if h.Equal(stored, c.purpose, c.subject, "123456") {
			t.Errorf("a code hashed for phone:s1/bob verifies for %q/%q", c.purpose, c.subject)
		}
	}
	if !h.Equal(stored, "phone:s1", "bob", " 123-456 ") {
		t.Error("the same code, typed with separators, does not verify")
	}
}

// The replay guard holds for every step of the window: once step s was
// stored, no code of step <= s passes at any time in the window, and a
// skew above MaxSkew refuses everything rather than widening the window.
func TestReviewMatchTOTPReplayEveryStep(t *testing.T) {
	key, err := NewTOTPKey("Example", "bob")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	code := func(at time.Time) string { return codeAt(t, key.Secret, TOTPStep(at)) }
	const skew = 2
	for off := -skew; off <= skew; off++ {
		at := now.Add(time.Duration(off) * TOTPPeriod * time.Second)
		step, ok := MatchTOTP(key.Secret, code(at), now, skew, -1)
		if !ok || step != TOTPStep(at) {
			t.Fatalf("step %+d: %d %v", off, step, ok)
		}
		for back := 0; back <= skew; back++ {
			earlier := at.Add(-time.Duration(back) * TOTPPeriod * time.Second)
			if got, ok := MatchTOTP(key.Secret, code(earlier), now, skew, step); ok && got <= step {
				t.Errorf("after step %d, the code of step %d passed as step %d", step, TOTPStep(earlier), got)
			}
		}
	}
	if _, ok := MatchTOTP(key.Secret, code(now), now, MaxSkew+1, -1); ok {
		t.Error("a skew above MaxSkew accepted a code")
	}
	// REQ-10: the secret in the otpauth URL is the full 160 bits.
	u, err := url.Parse(key.URL)
	if err != nil {
		t.Fatal(err)
	}
	raw, ok := decodeSecret(u.Query().Get("secret"))
	if !ok || len(raw) < TOTPSecretSize {
		t.Errorf("otpauth secret of %d bytes", len(raw))
	}
}
