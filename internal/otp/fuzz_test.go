package otp

import (
	"strings"
	"testing"
	"time"
)

// FuzzNormalizeCode: never panics (invalid UTF-8 included); an accepted code
// is exactly digits ASCII digits and normalises to itself; input over
// MaxInputLen bytes is always refused.
func FuzzNormalizeCode(f *testing.F) {
	for _, s := range []string{
		"123456", " 123 456 ", "123-456", "１２３４５６", "١٢٣٤٥٦", "12345",
		"1234567", "94287082", "\xef\xbc", "\xef\xbc\x99\xef\xbc\x90", "123\xff456",
		"", "-", strings.Repeat("1", 65), "\t\n123456\r\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, digits := range []int{6, 8, 10} {
			got, ok := NormalizeCode(s, digits)
			if !ok {
				if got != "" {
					t.Fatalf("refused %q but returned %q", s, got)
				}
				continue
			}
			if len(s) > MaxInputLen {
				t.Fatalf("accepted %d bytes", len(s))
			}
			if len(got) != digits {
				t.Fatalf("NormalizeCode(%q, %d) = %q: wrong length", s, digits, got)
			}
			for i := 0; i < len(got); i++ {
				if got[i] < '0' || got[i] > '9' {
					t.Fatalf("NormalizeCode(%q, %d) = %q: not ASCII digits", s, digits, got)
				}
			}
			if again, ok := NormalizeCode(got, digits); !ok || again != got {
				t.Fatalf("not idempotent: %q -> %q -> %q, %v", s, got, again, ok)
			}
		}
	})
}

// FuzzNormalizeBackupCode: never panics; an accepted code is BackupCodeLen
// symbols of the alphabet and normalises to itself, as does its display form.
func FuzzNormalizeBackupCode(f *testing.F) {
	for _, s := range []string{
		"abcde-fghjk", "ABCDE FGHJK", "iloio-00000", "uuuuu-uuuuu", "abcdefghjk",
		"abcde-fghj", "abcdé-fghjk", "\xff", "", strings.Repeat("a", 65),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := NormalizeBackupCode(s)
		if !ok {
			if got != "" {
				t.Fatalf("refused %q but returned %q", s, got)
			}
			return
		}
		if len(got) != BackupCodeLen || len(s) > MaxInputLen {
			t.Fatalf("NormalizeBackupCode(%q) = %q", s, got)
		}
		for i := 0; i < len(got); i++ {
			if strings.IndexByte(backupAlphabet, got[i]) < 0 {
				t.Fatalf("NormalizeBackupCode(%q) = %q: %q outside the alphabet", s, got, got[i])
			}
		}
		if again, ok := NormalizeBackupCode(got); !ok || again != got {
			t.Fatalf("not idempotent: %q -> %q -> %q, %v", s, got, again, ok)
		}
		display := got[:5] + "-" + got[5:]
		if again, ok := NormalizeBackupCode(display); !ok || again != got {
			t.Fatalf("display form %q -> %q, %v", display, again, ok)
		}
	})
}

// FuzzMatchTOTP: never panics, at any time; never accepts a step <= lastStep,
// a negative step or one outside the window; what it accepts is the right
// code for the step it returns.
func FuzzMatchTOTP(f *testing.F) {
	for _, t := range []int64{59, 1111111109, 1234567890, 20000000000, 0, -1, -31, 1 << 62, -1 << 62, 9223372036854775807, -9223372036854775808} {
		for _, c := range []string{"287082", "081804", "005924", "353130", "000000", "１２３４５６", "12345", "\xff"} {
			f.Add(c, t)
		}
	}
	f.Fuzz(func(t *testing.T, code string, unix int64) {
		now := time.Unix(unix, 0)
		cur := TOTPStep(now)
		const skew = 1
		for _, last := range []int64{-1 << 63, cur - 2, cur - 1, cur, cur + 1} {
			step, ok := MatchTOTP(rfcSecret, code, now, skew, last)
			if !ok {
				if step != 0 {
					t.Fatalf("refused with step %d", step)
				}
				continue
			}
			if step <= last || step < 0 || step < cur-skew || step > cur+skew {
				t.Fatalf("code %q at %d (step %d), last %d: accepted step %d", code, unix, cur, last, step)
			}
			norm, good := NormalizeCode(code, TOTPDigits)
			if !good || norm != codeAt(t, rfcSecret, step) {
				t.Fatalf("code %q accepted for step %d whose code is %s", code, step, codeAt(t, rfcSecret, step))
			}
		}
	})
}
