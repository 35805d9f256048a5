package account

import (
	"context"
	"errors"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Concurrent guesses cannot get past the ban: each attempt for a user sees
// the failures of the ones before it, so at most max_retries passwords are
// tried per window, and the right password after the ban is refused.
func TestConcurrentGuessesStopAtTheBan(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	var tried, banned atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			c := ip1
			c.IP = c.IP.Next() // a different address each: only the user's counter binds
			for j := 0; j < i; j++ {
				c.IP = c.IP.Next()
			}
			_, err := e.svc.SignIn(ctx, "alice", "wrong-password", c)
			var rl *RateLimitedError
			switch {
			case errors.Is(err, ErrInvalidCredentials):
				tried.Add(1)
			case errors.As(err, &rl):
				banned.Add(1)
			default:
				t.Errorf("attempt %d: %v", i, err)
			}
		}(i)
	}
	wg.Wait()
	if max := int64(e.svc.cfg.Regulation.MaxRetries); tried.Load() > max {
		t.Fatalf("%d wrong passwords were tried, %d refused; max_retries is %d", tried.Load(), banned.Load(), max)
	}
	if _, err := e.svc.SignIn(ctx, "alice", "alice-password", ip2); err == nil {
		t.Fatal("the right password signed in during the ban")
	}
}

func TestUserGate(t *testing.T) {
	var g userGate
	ctx := context.Background()
	unlock, err := g.lock(ctx, "alice", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// Another user is not held up; the same user waits, then gives up.
	u2, err := g.lock(ctx, "bob", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	u2()
	if _, err := g.lock(ctx, "alice", 20*time.Millisecond); !errors.Is(err, ErrBusy) {
		t.Fatalf("a second lock of alice: %v, want ErrBusy", err)
	}
	done := make(chan struct{})
	go func() {
		u, err := g.lock(ctx, "alice", time.Second)
		if err == nil {
			u()
		}
		close(done)
	}()
	unlock()
	<-done
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.locks) != 0 {
		t.Fatalf("%d locks left behind", len(g.locks))
	}
}

// Per-address limits count an IPv6 client's /64: taking a fresh address
// of one's own prefix for every guess does not escape the ban.
func TestIPv6BanCoversThe64(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	c := ip1
	c.IP = netip.MustParseAddr("2001:db8:1:2::1")
	max := e.svc.cfg.Regulation.MaxRetries
	for i := 0; i < max; i++ {
		c.IP = c.IP.Next()
		if _, err := e.svc.SignIn(ctx, "nobody"+strconv.Itoa(i), "x", c); !errors.Is(err, ErrInvalidCredentials) {
			t.Fatalf("guess %d: %v", i, err)
		}
	}
	c.IP = netip.MustParseAddr("2001:db8:1:2:ffff::9")
	var rl *RateLimitedError
	if _, err := e.svc.SignIn(ctx, "alice", "alice-password", c); !errors.As(err, &rl) {
		t.Fatalf("another address of the same /64: %v, want the ban", err)
	}
	c.IP = netip.MustParseAddr("2001:db8:1:3::1")
	if _, err := e.svc.SignIn(ctx, "alice", "alice-password", c); err != nil {
		t.Fatalf("another /64: %v", err)
	}
}

// The same for the second factor's lock: of many concurrent wrong codes
// for one account, no more than the lock allows are looked at.
func TestConcurrentCodesStopAtTheLock(t *testing.T) {
	e := newTSEnv(t)
	ctx := context.Background()
	e.enrolPhone(t)
	half := e.signIn(t, "bob", "bob-password")
	var tried, locked atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < maxFactorFailures+40; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := e.svc.VerifyCode(ctx, half, MethodBackup, "aaaaa-bbbbb", false, ip1)
			var rl *RateLimitedError
			switch {
			case errors.Is(err, ErrInvalidCode):
				tried.Add(1)
			case errors.As(err, &rl):
				locked.Add(1)
			case errors.Is(err, ErrBusy):
				// waited its turn too long: not looked at either
			default:
				t.Errorf("VerifyCode: %v", err)
			}
		}()
	}
	wg.Wait()
	if tried.Load() > maxFactorFailures {
		t.Fatalf("%d wrong codes were looked at (%d refused); the lock is at %d", tried.Load(), locked.Load(), maxFactorFailures)
	}
}
