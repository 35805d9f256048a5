package otp

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"
)

func TestNewCode(t *testing.T) {
	for length := MinCodeLength; length <= MaxCodeLength; length++ {
		c, err := NewCode(length)
		if err != nil {
			t.Fatalf("NewCode(%d): %v", length, err)
		}
		if n, ok := NormalizeCode(c, length); !ok || n != c {
			t.Errorf("NewCode(%d) = %q: not %d ASCII digits", length, c, length)
		}
	}
	for _, length := range []int{-1, 0, 5, 11, 100} {
		if c, err := NewCode(length); err == nil {
			t.Errorf("NewCode(%d) = %q, want an error", length, c)
		}
	}
}

// TestNewCodeUniform: over 20,000 codes, every position's digit counts pass a
// chi-square test at a bound so loose it never flakes (the 9-degree-of-freedom
// statistic exceeds 60 with probability about 4e-9) yet catches any gross
// bias, such as a modulo bias of a few percent or a stuck digit.
func TestNewCodeUniform(t *testing.T) {
	const n, length = 20000, 6
	var counts [length][10]int
	seen := make(map[string]bool, n)
	for range n {
		c, err := NewCode(length)
		if err != nil {
			t.Fatal(err)
		}
		seen[c] = true
		for i := range length {
			counts[i][c[i]-'0']++
		}
	}
	for i := range length {
		exp := float64(n) / 10
		chi2 := 0.0
		for _, o := range counts[i] {
			d := float64(o) - exp
			chi2 += d * d / exp
		}
		if chi2 > 60 {
			t.Errorf("position %d: chi-square %.1f over counts %v", i, chi2, counts[i])
		}
	}
	// Birthday bound: 20,000 draws from 10^6 give about 200 repeats.
	if dups := n - len(seen); dups > 400 {
		t.Errorf("%d repeated codes out of %d", dups, n)
	}
}

// fixedReader yields its bytes, then cycles them.
type fixedReader struct {
	b []byte
	i int
}

func (r *fixedReader) Read(p []byte) (int, error) {
	for j := range p {
		p[j] = r.b[r.i%len(r.b)]
		r.i++
	}
	return len(p), nil
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("no entropy") }

// TestNewCodeRejectsBiasedBytes: bytes 250..255 would favour 0..5 under
// byte%10; they must be skipped, not folded.
func TestNewCodeRejectsBiasedBytes(t *testing.T) {
	tests := []struct {
		name  string
		bytes []byte
		want  string
	}{
		{"plain", []byte{0, 1, 2, 3, 4, 5}, "012345"},
		{"mod 10", []byte{10, 21, 32, 43, 54, 249}, "012349"},
		{"skips 250..255", []byte{250, 251, 7, 252, 253, 254, 255, 8}, "787878"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := newCode(&fixedReader{b: tt.bytes}, 6)
			if err != nil || got != tt.want {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
	if _, err := newCode(errReader{}, 6); err == nil {
		t.Error("failing random source gave a code")
	}
}

func testHasher(t testing.TB) *Hasher {
	t.Helper()
	h, err := NewHasher(bytes.Repeat([]byte{0x42}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestNewHasher(t *testing.T) {
	for _, n := range []int{0, 1, 31} {
		if _, err := NewHasher(make([]byte, n)); err == nil {
			t.Errorf("%d-byte key accepted", n)
		}
	}
	key := bytes.Repeat([]byte{1}, 32)
	h, err := NewHasher(key)
	if err != nil {
		t.Fatal(err)
	}
	before := h.Hash("sms-login", "alice", "123456")
	key[0] ^= 0xff // the Hasher keeps its own copy
	if after := h.Hash("sms-login", "alice", "123456"); !bytes.Equal(before, after) {
		t.Error("hash changed when the caller's key slice changed")
	}
}

func TestHasherKnownAnswer(t *testing.T) {
	key := bytes.Repeat([]byte{0x42}, 32)
	m := hmac.New(sha256.New, key)
	m.Write([]byte("sms-login\x00alice\x00123456"))
	want := m.Sum(nil)
	got := testHasher(t).Hash("sms-login", "alice", "123 456")
	if !bytes.Equal(got, want) {
		t.Fatalf("Hash = %x, want %x", got, want)
	}
	if len(got) != HashSize {
		t.Fatalf("len %d", len(got))
	}
}

func TestHasher(t *testing.T) {
	h := testHasher(t)
	other, err := NewHasher(bytes.Repeat([]byte{0x43}, 32))
	if err != nil {
		t.Fatal(err)
	}
	stored := h.Hash("sms-login", "alice", "123456")
	backup := h.Hash(PurposeBackup, "alice", "abcde-fghjk")
	tests := []struct {
		name    string
		h       *Hasher
		stored  []byte
		purpose string
		subject string
		code    string
		want    bool
	}{
		{"same", h, stored, "sms-login", "alice", "123456", true},
		{"spaced", h, stored, "sms-login", "alice", " 123 456 ", true},
		{"hyphenated", h, stored, "sms-login", "alice", "123-456", true},
		{"full-width", h, stored, "sms-login", "alice", "１２３４５６", true},
		{"wrong code", h, stored, "sms-login", "alice", "123457", false},
		{"other subject", h, stored, "sms-login", "bob", "123456", false},
		{"other purpose", h, stored, "phone-confirm", "alice", "123456", false},
		{"other key", other, stored, "sms-login", "alice", "123456", false},
		{"subject case matters", h, stored, "sms-login", "Alice", "123456", false},
		{"NUL shifts fields", h, stored, "sms-login\x00alice", "", "123456", false},
		{"truncated stored", h, stored[:16], "sms-login", "alice", "123456", false},
		{"nil stored", h, nil, "sms-login", "alice", "123456", false},
		{"malformed code", h, stored, "sms-login", "alice", "12345x", false},
		{"backup", h, backup, PurposeBackup, "alice", "abcde-fghjk", true},
		{"backup look-alikes", h, backup, PurposeBackup, "alice", "ABCDE FGHJK", true},
		{"backup other user", h, backup, PurposeBackup, "bob", "abcde-fghjk", false},
		{"backup as sms", h, backup, "sms-login", "alice", "abcde-fghjk", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.h.Equal(tt.stored, tt.purpose, tt.subject, tt.code); got != tt.want {
				t.Fatalf("Equal = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestHasherRefuses(t *testing.T) {
	h := testHasher(t)
	tests := []struct {
		name, purpose, subject, code string
	}{
		{"empty purpose", "", "alice", "123456"},
		{"empty subject", "sms-login", "", "123456"},
		{"NUL in purpose", "sms\x00login", "alice", "123456"},
		{"NUL in subject", "sms-login", "al\x00ice", "123456"},
		{"five digits", "sms-login", "alice", "12345"},
		{"eleven digits", "sms-login", "alice", "12345678901"},
		{"letters", "sms-login", "alice", "abcdef"},
		{"bad backup code", PurposeBackup, "alice", "uuuuu-uuuuu"},
		{"digits as backup", PurposeBackup, "alice", "123456"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := h.Hash(tt.purpose, tt.subject, tt.code); got != nil {
				t.Fatalf("Hash = %x, want nil", got)
			}
			if h.Equal(nil, tt.purpose, tt.subject, tt.code) || h.Equal([]byte{}, tt.purpose, tt.subject, tt.code) {
				t.Fatal("nil hash matched an empty stored value")
			}
		})
	}
}

func TestMask(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"+15550001234", "•••• 1234"},
		{"+1 (555) 000-1234", "•••• 1234"},
		{"0049 30 1234 5678", "•••• 5678"},
		{"030.1234.5678", "•••• 5678"},
		{"12345678", "•••• 5678"},
		{"1234567", "••••"},
		{"1234", "••••"},
		{"+", "••••"},
		{"alice@example.com", "a•••@example.com"},
		{"  alice@example.com ", "a•••@example.com"},
		{"a@example.com", "a•••@example.com"},
		{"Émile@example.fr", "É•••@example.fr"},
		{`"a@b"@example.com`, `"•••@example.com`},
		{"@example.com", "••••"},
		{"alice@", "••••"},
		{"alice@exa mple.com", "••••"},
		{"alice@example.com\n", "a•••@example.com"},
		{"alice\n@example.com", "••••"},
		{"\xffalice@example.com", "••••"},
		{"alice", "••••"},
		{"555-CALL-NOW", "••••"},
		{"", "••••"},
		{"a", "••••"},
		{strings.Repeat("a", 320) + "@example.com", "••••"},
	}
	for _, tt := range tests {
		if got := Mask(tt.in); got != tt.want {
			t.Errorf("Mask(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestHasherConcurrent: one Hasher serves many goroutines (run with -race).
func TestHasherConcurrent(t *testing.T) {
	h := testHasher(t)
	stored := h.Hash("sms-login", "alice", "123456")
	done := make(chan bool)
	for range 8 {
		go func() {
			ok := true
			for range 200 {
				ok = ok && h.Equal(stored, "sms-login", "alice", "123456") && !h.Equal(stored, "sms-login", "bob", "123456")
			}
			done <- ok
		}()
	}
	for range 8 {
		if !<-done {
			t.Error("wrong answer under concurrency")
		}
	}
}
