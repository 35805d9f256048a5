package otp

import (
	"testing"
	"time"
)

func BenchmarkMatchTOTP(b *testing.B) {
	now := time.Unix(1_700_000_000, 0)
	k, err := NewTOTPKey("Example", "alice")
	if err != nil {
		b.Fatal(err)
	}
	code := codeAt(b, k.Secret, TOTPStep(now))
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := MatchTOTP(k.Secret, code, now, 1, -1); !ok {
			b.Fatal("refused")
		}
	}
}

func BenchmarkMatchTOTPWrong(b *testing.B) {
	now := time.Unix(1_700_000_000, 0)
	code := wrongCode(codeAt(b, rfcSecret, TOTPStep(now)))
	b.ReportAllocs()
	for b.Loop() {
		MatchTOTP(rfcSecret, code, now, 1, -1)
	}
}

func BenchmarkHasherEqual(b *testing.B) {
	h := testHasher(b)
	stored := h.Hash("sms-login", "alice", "123456")
	b.ReportAllocs()
	for b.Loop() {
		if !h.Equal(stored, "sms-login", "alice", "123456") {
			b.Fatal("no match")
		}
	}
}

func BenchmarkHasherEqualBackup(b *testing.B) {
	h := testHasher(b)
	stored := h.Hash(PurposeBackup, "alice", "abcde-fghjk")
	b.ReportAllocs()
	for b.Loop() {
		if !h.Equal(stored, PurposeBackup, "alice", "abcde-fghjk") {
			b.Fatal("no match")
		}
	}
}
