package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/twostep-auth/twostep/internal/store"
)

// storeHealth is whether the store answered its last ping and still holds
// the instance record this server found there (guard.go). Requests that
// need no store lookup (a stranger's) ask whether it is down, so that while
// the store is unreachable they get 503 like everyone else instead of a
// sign-in page that cannot work; every request asks whether it was
// replaced.
type storeHealth struct {
	state atomic.Int32 // healthUp, healthUnreachable or healthReplaced
	// instance is the store's instance id once the guard has checked it.
	instance atomic.Pointer[string]
	// keys hold the instance record (set before the watch starts); none
	// means instanceKey alone.
	keys []string
	// about names the store and its marker for the log.
	about atomic.Pointer[string]
	// guard, while the store could not be checked at start, is tried at
	// every ping until it can be (the store reads as down meanwhile).
	guard atomic.Pointer[guardFunc]
}

// guardFunc checks the store against its marker (guardStore).
type guardFunc func(context.Context) (string, error)

const (
	healthUp int32 = iota
	healthUnreachable
	healthReplaced
)

// pingEvery is how often the store is pinged; pingTimeout bounds a ping
// of a store that does not answer, guardTimeout a guard left to the pings.
const (
	pingEvery    = time.Second
	pingTimeout  = time.Second
	guardTimeout = 5 * time.Second
)

// Down reports whether the last ping failed or found the store replaced,
// or the store is not checked yet. A nil health is never down.
func (h *storeHealth) Down() bool { return h != nil && (h.state.Load() != healthUp || h.unchecked()) }

// Replaced reports whether the last ping found the store without this
// server's instance record, or the store is not checked yet: its records
// may not be this server's either.
func (h *storeHealth) Replaced() bool {
	return h != nil && (h.state.Load() == healthReplaced || h.unchecked())
}

// unchecked: a guard is left to the pings and has not passed.
func (h *storeHealth) unchecked() bool { return h.guard.Load() != nil && h.instance.Load() == nil }

// expect sets the instance id the store must hold from now on.
func (h *storeHealth) expect(instance string) {
	h.instance.Store(&instance)
	h.guard.Store(nil)
}

// pending leaves the guard to the pings: the store is down until g has
// checked it. pin is the instance the configuration pins, if any: an
// earlier start's check stands only for the same pin.
func (h *storeHealth) pending(g guardFunc, pin string) {
	if cur := h.instance.Load(); cur != nil && (pin == "" || strings.EqualFold(pin, *cur)) {
		return // checked already, by an earlier start
	}
	h.guard.Store(&g) // first: unchecked() holds from here on
	h.instance.Store(nil)
}

// check pings s and, once an instance is expected, reads it back.
func (h *storeHealth) check(ctx context.Context, s store.Store) error {
	if err := s.Ping(ctx); err != nil {
		return err
	}
	if g := h.guard.Load(); g != nil && h.instance.Load() == nil {
		gctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), guardTimeout)
		defer cancel()
		id, err := (*g)(gctx)
		switch {
		case errors.Is(err, errStoreUnread):
			return err
		case err != nil:
			return fmt.Errorf("%w: %w", errStoreReplaced, err)
		}
		h.expect(id)
		return nil
	}
	if want := h.instance.Load(); want != nil {
		return checkInstance(ctx, s, *want, h.instanceKeys())
	}
	return nil
}

func (h *storeHealth) instanceKeys() []string {
	if len(h.keys) == 0 {
		return []string{instanceKey}
	}
	return h.keys
}

// intact returns the check a sign-in without a second factor makes inline
// (account.Config.StoreIntact): between a store losing its records and the
// next ping, the password alone would otherwise let every user in.
func (h *storeHealth) intact(s store.Store) func(context.Context) error {
	return func(ctx context.Context) error {
		if h.Replaced() {
			return errStoreReplaced
		}
		want := h.instance.Load()
		if want == nil {
			return errStoreUnread // not checked yet
		}
		return checkInstance(ctx, s, *want, h.instanceKeys())
	}
}

// watch checks s every interval until ctx ends, logging each change.
func (h *storeHealth) watch(ctx context.Context, s store.Store, interval time.Duration, log *zap.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, pingTimeout)
		err := h.check(pctx, s)
		cancel()
		if ctx.Err() != nil {
			return
		}
		state := healthUp
		switch {
		case errors.Is(err, errStoreReplaced):
			state = healthReplaced
		case err != nil:
			state = healthUnreachable
		}
		if was := h.state.Swap(state); was != state {
			switch state {
			case healthReplaced:
				about := ""
				if p := h.about.Load(); p != nil {
					about = *p
				}
				log.Error("store emptied or replaced: answering 503 until it is restored from a backup; "+
					"to start afresh instead (every user's two-step settings lost), remove the marker and start Caddy again (or caddy reload --force)",
					zap.String("store", about), zap.Error(err))
			case healthUnreachable:
				log.Error("store unreachable: answering 503 until it is back", zap.Error(err))
			default:
				log.Info("store reachable again")
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
