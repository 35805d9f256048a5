package otp

import (
	"crypto/rand"
	"fmt"
	"io"
)

// Backup codes are 10 characters of Crockford's base32 in lower case (50
// bits), shown as two groups of five: "xxxxx-xxxxx".
const (
	// BackupCodeLen is the number of symbols in a backup code.
	BackupCodeLen = 10
	// DefaultBackupCodes is how many codes NewBackupCodes makes when asked
	// for n <= 0.
	DefaultBackupCodes = 10
	// MaxBackupCodes is the most codes NewBackupCodes makes at once.
	MaxBackupCodes = 100
)

// backupAlphabet is Crockford's base32 in lower case: no i, l, o or u.
const backupAlphabet = "0123456789abcdefghjkmnpqrstvwxyz"

// NewBackupCodes returns n distinct backup codes (DefaultBackupCodes when
// n <= 0, at most MaxBackupCodes), each BackupCodeLen symbols drawn uniformly
// from crypto/rand, formatted for display as "xxxxx-xxxxx". Store them with
// Hasher.Hash(PurposeBackup, user, code).
func NewBackupCodes(n int) ([]string, error) {
	return newBackupCodes(rand.Reader, n)
}

func newBackupCodes(r io.Reader, n int) ([]string, error) {
	if n <= 0 {
		n = DefaultBackupCodes
	}
	if n > MaxBackupCodes {
		return nil, fmt.Errorf("otp: %d backup codes asked for, at most %d", n, MaxBackupCodes)
	}
	codes := make([]string, 0, n)
	seen := make(map[string]bool, n)
	var raw [BackupCodeLen]byte
	// With 2^50 codes a collision is all but impossible; the bound only
	// turns a broken random source into an error instead of a hang.
	for tries := 0; len(codes) < n; tries++ {
		if tries > 4*n+16 {
			return nil, fmt.Errorf("otp: random source keeps repeating backup codes")
		}
		if _, err := io.ReadFull(r, raw[:]); err != nil {
			return nil, fmt.Errorf("otp: reading random bytes: %w", err)
		}
		var c [BackupCodeLen + 1]byte
		j := 0
		for i, b := range raw {
			if i == BackupCodeLen/2 {
				c[j] = '-'
				j++
			}
			c[j] = backupAlphabet[b&31] // 256 is a multiple of 32: no bias
			j++
		}
		code := string(c[:])
		if seen[code] {
			continue
		}
		seen[code] = true
		codes = append(codes, code)
	}
	return codes, nil
}

// NormalizeBackupCode turns what a user typed into the canonical form of a
// backup code: BackupCodeLen lower-case Crockford base32 symbols, without the
// hyphen. Input longer than MaxInputLen bytes is refused; leading and
// trailing ASCII white space is trimmed; ASCII spaces and hyphens are removed
// anywhere; letters are lower-cased; the look-alikes i and l become 1, and o
// becomes 0. Anything else (u, punctuation, any non-ASCII byte) is refused.
// The result is a fixed point: NormalizeBackupCode is idempotent.
func NormalizeBackupCode(s string) (string, bool) {
	if len(s) > MaxInputLen {
		return "", false
	}
	s = trimASCIISpace(s)
	var buf [BackupCodeLen]byte
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == ' ' || c == '-' {
			continue
		}
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		switch c {
		case 'i', 'l':
			c = '1'
		case 'o':
			c = '0'
		}
		if !isBackupSymbol(c) || n == BackupCodeLen {
			return "", false
		}
		buf[n] = c
		n++
	}
	if n != BackupCodeLen {
		return "", false
	}
	return string(buf[:]), true
}

// isBackupSymbol reports whether c is in backupAlphabet.
func isBackupSymbol(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z' && c != 'i' && c != 'l' && c != 'o' && c != 'u')
}
