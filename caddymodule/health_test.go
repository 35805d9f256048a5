package caddymodule

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/twostep-auth/twostep/internal/store"
)

// pingStore answers Ping with whatever fail says; nothing else is called.
type pingStore struct {
	store.Store
	fail atomic.Bool
}

func (p *pingStore) Ping(context.Context) error {
	if p.fail.Load() {
		return errors.New("connection refused")
	}
	return nil
}

func TestStoreHealth(t *testing.T) {
	var nilHealth *storeHealth
	if nilHealth.Down() {
		t.Fatal("no health (no store yet) reads as down")
	}
	s := &pingStore{}
	h := new(storeHealth)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { h.watch(ctx, s, 5*time.Millisecond, zap.NewNop()); close(done) }()
	wait := func(down bool) {
		t.Helper()
		for i := 0; i < 400 && h.Down() != down; i++ {
			time.Sleep(5 * time.Millisecond)
		}
		if h.Down() != down {
			t.Fatalf("Down() = %v, want %v", h.Down(), down)
		}
	}
	wait(false)
	s.fail.Store(true)
	wait(true)
	s.fail.Store(false)
	wait(false)
	cancel()
	<-done
}
