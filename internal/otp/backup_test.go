package otp

import (
	"regexp"
	"testing"
)

var backupDisplay = regexp.MustCompile(`^[0-9a-hjkmnp-tv-z]{5}-[0-9a-hjkmnp-tv-z]{5}$`)

func TestNewBackupCodes(t *testing.T) {
	tests := []struct {
		n, want int
	}{
		{0, DefaultBackupCodes},
		{-3, DefaultBackupCodes},
		{1, 1},
		{16, 16},
		{MaxBackupCodes, MaxBackupCodes},
	}
	for _, tt := range tests {
		codes, err := NewBackupCodes(tt.n)
		if err != nil {
			t.Fatalf("NewBackupCodes(%d): %v", tt.n, err)
		}
		if len(codes) != tt.want {
			t.Fatalf("NewBackupCodes(%d): %d codes, want %d", tt.n, len(codes), tt.want)
		}
		seen := map[string]bool{}
		for _, c := range codes {
			if !backupDisplay.MatchString(c) {
				t.Errorf("code %q not in the display form", c)
			}
			norm, ok := NormalizeBackupCode(c)
			if !ok || len(norm) != BackupCodeLen {
				t.Errorf("code %q does not normalise: %q, %v", c, norm, ok)
			}
			if seen[norm] {
				t.Errorf("code %q repeated", c)
			}
			seen[norm] = true
		}
	}
	if _, err := NewBackupCodes(MaxBackupCodes + 1); err == nil {
		t.Error("more than MaxBackupCodes accepted")
	}
}

// TestBackupCodeEntropy: the alphabet has 32 symbols, so each code carries
// 5 bits per symbol, at least 40 bits.
func TestBackupCodeEntropy(t *testing.T) {
	if len(backupAlphabet) != 32 {
		t.Fatalf("alphabet of %d symbols", len(backupAlphabet))
	}
	seen := map[byte]bool{}
	for i := 0; i < len(backupAlphabet); i++ {
		c := backupAlphabet[i]
		if seen[c] || !isBackupSymbol(c) {
			t.Fatalf("symbol %q repeated or refused", c)
		}
		seen[c] = true
	}
	if bits := 5 * BackupCodeLen; bits < 40 {
		t.Fatalf("%d bits", bits)
	}
}

func TestNewBackupCodesRandomSource(t *testing.T) {
	// A stuck source repeats itself: an error, not a hang or duplicates.
	if codes, err := newBackupCodes(&fixedReader{b: []byte{7}}, 2); err == nil {
		t.Fatalf("stuck source gave %v", codes)
	}
	if _, err := newBackupCodes(errReader{}, 2); err == nil {
		t.Fatal("failing source gave codes")
	}
	// Every symbol is reachable and maps byte&31 to the alphabet.
	b := make([]byte, 32)
	for i := range b {
		b[i] = byte(i) | 0xe0 // high bits ignored
	}
	codes, err := newBackupCodes(&fixedReader{b: b}, 3)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"01234-56789", "abcde-fghjk", "mnpqr-stvwx"}
	for i := range want {
		if codes[i] != want[i] {
			t.Errorf("code %d = %q, want %q", i, codes[i], want[i])
		}
	}
}
