package redis

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twostep-auth/twostep/internal/store"
)

func benchSession(id string, now time.Time) *store.Session {
	return &store.Session{
		ID: id, User: "alice", State: store.StateTwoFactor,
		Created: now.Add(-time.Minute), LastSeen: now, Expires: now.Add(12 * time.Hour), Idle: time.Hour,
		SecondFactorAt: now.Add(-30 * time.Second), Credential: "cred-0123456789", Epoch: 3,
		IP: "192.0.2.10", UserAgent: "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
	}
}

// BenchmarkGetSession is the hot path: one GET and a decode per request.
func BenchmarkGetSession(b *testing.B) {
	s := openOn(b, []string{standalone(b)}, testPrefix("bench"), false)
	ctx := context.Background()
	now := time.Now()
	id := "3f9a0c5e8b7d41e2a6c4f0b9d8e7a6c53f9a0c5e8b7d41e2a6c4f0b9d8e7a6c5"
	if err := s.PutSession(ctx, benchSession(id, now)); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.GetSession(ctx, id, now); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGetSessionParallel is GetSession from many goroutines at once.
func BenchmarkGetSessionParallel(b *testing.B) {
	s := openOn(b, []string{standalone(b)}, testPrefix("bench"), false)
	ctx := context.Background()
	now := time.Now()
	const n = 64
	for i := range n {
		if err := s.PutSession(ctx, benchSession(fmt.Sprintf("sess-%d", i), now)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := s.GetSession(ctx, fmt.Sprintf("sess-%d", i%n), now); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
}

// BenchmarkDecodeSession is the decode alone.
func BenchmarkDecodeSession(b *testing.B) {
	now := time.Now()
	rec := string(encodeSession(benchSession("3f9a0c5e8b7d41e2a6c4f0b9d8e7a6c5", now)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeSession(rec); err != nil {
			b.Fatal(err)
		}
	}
}
