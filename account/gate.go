package account

import (
	"context"
	"sync"
	"time"
)

// userGate lets one sign-in step per user run at a time in this process,
// so that each attempt sees the failures, bans and locks that the ones
// before it recorded: concurrent guesses cannot all pass a check made
// before any of them was counted. Other users are never held up.
type userGate struct {
	mu    sync.Mutex
	locks map[string]*gateLock
}

type gateLock struct {
	ch   chan struct{} // holds one token while the user's step runs
	refs int
}

// lock waits (at most wait, or until ctx ends) for the user's turn and
// returns the function that ends it; ErrBusy if the turn did not come.
func (g *userGate) lock(ctx context.Context, user string, wait time.Duration) (func(), error) {
	g.mu.Lock()
	if g.locks == nil {
		g.locks = map[string]*gateLock{}
	}
	l := g.locks[user]
	if l == nil {
		l = &gateLock{ch: make(chan struct{}, 1)}
		g.locks[user] = l
	}
	l.refs++
	g.mu.Unlock()
	release := func() {
		g.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(g.locks, user)
		}
		g.mu.Unlock()
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case l.ch <- struct{}{}:
		return func() { <-l.ch; release() }, nil
	case <-t.C:
	case <-ctx.Done():
	}
	release()
	return nil, ErrBusy
}
