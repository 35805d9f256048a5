package caddymodule

import (
	"context"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/twostep-auth/twostep/internal/store"
)

// storeHealth is whether the store answered its last ping. Requests that
// need no store lookup (a stranger's) ask it, so that while the store is
// unreachable they get 503 like everyone else instead of a sign-in page
// that cannot work.
type storeHealth struct {
	down atomic.Bool
}

// pingEvery is how often the store is pinged; pingTimeout bounds a ping
// of a store that does not answer.
const (
	pingEvery   = time.Second
	pingTimeout = time.Second
)

// Down reports whether the last ping failed. A nil health is never down.
func (h *storeHealth) Down() bool { return h != nil && h.down.Load() }

// watch pings s every interval until ctx ends, logging each change.
func (h *storeHealth) watch(ctx context.Context, s store.Store, interval time.Duration, log *zap.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, pingTimeout)
		err := s.Ping(pctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		switch was := h.down.Swap(err != nil); {
		case err != nil && !was:
			log.Error("store unreachable: answering 503 until it is back", zap.Error(err))
		case err == nil && was:
			log.Info("store reachable again")
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
