package otp

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// Lengths accepted by NewCode (and by Hasher for numeric codes).
const (
	MinCodeLength = 6
	MaxCodeLength = 10
)

// MinHasherKeyLen is the shortest key NewHasher accepts, in bytes.
const MinHasherKeyLen = 32

// HashSize is the length of a Hasher.Hash value (HMAC-SHA256).
const HashSize = sha256.Size

// PurposeBackup is the Hasher purpose of backup codes: codes hashed for it are
// normalised with NormalizeBackupCode instead of as digits.
const PurposeBackup = "backup"

// NewCode returns a one-time code of length decimal digits (MinCodeLength to
// MaxCodeLength), each drawn uniformly from crypto/rand.
func NewCode(length int) (string, error) {
	return newCode(rand.Reader, length)
}

// newCode draws the digits from r by rejection sampling: a byte >= 250 is
// thrown away, so that byte%10 is exactly uniform.
func newCode(r io.Reader, length int) (string, error) {
	if length < MinCodeLength || length > MaxCodeLength {
		return "", fmt.Errorf("otp: code length %d outside %d..%d", length, MinCodeLength, MaxCodeLength)
	}
	out := make([]byte, 0, length)
	var buf [2 * MaxCodeLength]byte
	for len(out) < length {
		if _, err := io.ReadFull(r, buf[:]); err != nil {
			return "", fmt.Errorf("otp: reading random bytes: %w", err)
		}
		for _, b := range buf {
			if b >= 250 {
				continue
			}
			out = append(out, '0'+b%10)
			if len(out) == length {
				break
			}
		}
	}
	return string(out), nil
}

// Hasher turns codes into keyed hashes, so that one-time and backup codes are
// never stored in plaintext and a leaked store does not let anyone test
// guesses offline. A Hasher is immutable and safe for concurrent use.
type Hasher struct {
	key []byte
}

// NewHasher returns a Hasher keyed with (a copy of) key, which must be at
// least MinHasherKeyLen bytes and should be a secret derived for this use
// only.
func NewHasher(key []byte) (*Hasher, error) {
	if len(key) < MinHasherKeyLen {
		return nil, fmt.Errorf("otp: hasher key of %d bytes, need at least %d", len(key), MinHasherKeyLen)
	}
	return &Hasher{key: append([]byte(nil), key...)}, nil
}

// Hash returns HMAC-SHA256(key, purpose 0x00 subject 0x00 normalised code).
//
// purpose keeps codes of different flows apart (e.g. "sms-login",
// "phone-confirm", PurposeBackup); subject is the user, so that a hash made
// for alice is worthless for bob. The code is normalised with
// NormalizeBackupCode when purpose is PurposeBackup, and otherwise as a
// numeric code of MinCodeLength to MaxCodeLength digits (the NormalizeCode
// rule), so "123 456" and "123456" hash alike.
//
// Hash returns nil — which Equal never matches — when the code is not well
// formed for its purpose, or when purpose or subject is empty or contains a
// NUL byte (which would make the encoding ambiguous).
func (h *Hasher) Hash(purpose, subject, code string) []byte {
	norm, ok := normalizeFor(purpose, code)
	if !ok || purpose == "" || subject == "" ||
		strings.IndexByte(purpose, 0) >= 0 || strings.IndexByte(subject, 0) >= 0 {
		return nil
	}
	msg := make([]byte, 0, len(purpose)+len(subject)+len(norm)+2)
	msg = append(msg, purpose...)
	msg = append(msg, 0)
	msg = append(msg, subject...)
	msg = append(msg, 0)
	msg = append(msg, norm...)
	m := hmac.New(sha256.New, h.key)
	m.Write(msg)
	return m.Sum(make([]byte, 0, HashSize))
}

// Equal reports, in constant time, whether stored is Hash(purpose, subject,
// code). A stored value that is not HashSize bytes long never matches.
func (h *Hasher) Equal(stored []byte, purpose, subject, code string) bool {
	got := h.Hash(purpose, subject, code)
	if got == nil || len(stored) != HashSize {
		return false
	}
	return subtle.ConstantTimeCompare(got, stored) == 1
}

// normalizeFor normalises code as Hash does for purpose.
func normalizeFor(purpose, code string) (string, bool) {
	if purpose == PurposeBackup {
		return NormalizeBackupCode(code)
	}
	return normalizeDigits(code, MinCodeLength, MaxCodeLength)
}

// maskBullets is what Mask shows for anything it will not partly reveal.
const maskBullets = "••••"

// minPhoneDigits is the fewest digits a phone number needs for Mask to show
// its last four.
const minPhoneDigits = 8

// maxMaskInput bounds what Mask looks at (an e-mail address is at most 254
// bytes).
const maxMaskInput = 320

// Mask hides most of a destination so a page can say where a code went:
//
//   - a phone number (digits with optional '+', spaces, '-', '.', '(' and ')',
//     at least 8 digits) → "•••• 1234", its last four digits;
//   - an e-mail address → its first character, "•••", "@" and the domain:
//     "a•••@example.com";
//   - anything else — shorter numbers, empty parts, control characters,
//     invalid UTF-8, over 320 bytes — → "••••".
func Mask(destination string) string {
	if s, ok := mask(strings.TrimSpace(destination)); ok {
		return s
	}
	return maskBullets
}

// mask is Mask without the fallback: false means "show only bullets".
func mask(s string) (string, bool) {
	if s == "" || len(s) > maxMaskInput || !utf8.ValidString(s) {
		return "", false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return "", false
		}
	}
	if at := strings.LastIndexByte(s, '@'); at >= 0 {
		local, domain := s[:at], s[at+1:]
		if local == "" || domain == "" || strings.ContainsAny(domain, " @") {
			return "", false
		}
		first, _ := utf8.DecodeRuneInString(local)
		return string(first) + "•••@" + domain, true
	}
	var digits []byte
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			digits = append(digits, c)
		case c == '+' || c == ' ' || c == '-' || c == '.' || c == '(' || c == ')':
		default:
			return "", false
		}
	}
	if len(digits) < minPhoneDigits {
		return "", false
	}
	return maskBullets + " " + string(digits[len(digits)-4:]), true
}
