package redis

import (
	"context"
	"errors"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twostep-auth/twostep/internal/store"
)

// methods names every method but Close, for callOne.
var methods = []string{"PutSession", "GetSession", "TouchSession", "ListUserSessions", "DeleteUserSessions",
	"DeleteSession", "Put", "Get", "PutIfAbsent", "Take", "Delete", "Incr", "Sweep", "Ping"}

// wantAllFail calls every method and checks that each fails with an error
// that is neither ErrNotFound nor ErrClosed, each within bound.
func wantAllFail(t *testing.T, s *Store, why string, bound time.Duration) {
	t.Helper()
	now := time.Now()
	ctx := context.Background()
	var slowest time.Duration
	for _, name := range methods {
		start := time.Now()
		err := callOne(s, ctx, name, now)
		d := time.Since(start)
		slowest = max(slowest, d)
		switch {
		case err == nil:
			t.Errorf("%s: %s succeeded", why, name)
		case errors.Is(err, store.ErrNotFound):
			t.Errorf("%s: %s returned ErrNotFound (%v); want another error, so that callers deny", why, name, err)
		case errors.Is(err, store.ErrClosed):
			t.Errorf("%s: %s returned ErrClosed", why, name)
		}
		if d > bound {
			t.Errorf("%s: %s took %v, want at most %v", why, name, d, bound)
		}
	}
	t.Logf("%s: every call failed, the slowest in %v", why, slowest)
}

// callOne calls the method name, as allCalls does.
func callOne(s *Store, ctx context.Context, name string, now time.Time) error {
	sess := &store.Session{ID: "down", User: "alice", State: store.StateTwoFactor, LastSeen: now, Idle: time.Hour, Expires: now.Add(time.Hour)}
	var err error
	switch name {
	case "PutSession":
		err = s.PutSession(ctx, sess)
	case "GetSession":
		_, err = s.GetSession(ctx, "down", now)
	case "TouchSession":
		err = s.TouchSession(ctx, "down", now)
	case "ListUserSessions":
		_, err = s.ListUserSessions(ctx, "alice", now)
	case "DeleteUserSessions":
		_, err = s.DeleteUserSessions(ctx, "alice")
	case "DeleteSession":
		err = s.DeleteSession(ctx, "down")
	case "Put":
		err = s.Put(ctx, "k", []byte("v"), time.Hour, now)
	case "Get":
		_, err = s.Get(ctx, "k", now)
	case "PutIfAbsent":
		_, _, err = s.PutIfAbsent(ctx, "k2", []byte("v"), time.Hour, now)
	case "Take":
		_, err = s.Take(ctx, "k", now)
	case "Delete":
		err = s.Delete(ctx, "k2")
	case "Incr":
		_, _, err = s.Incr(ctx, "c", time.Minute, now)
	case "Sweep":
		_, err = s.Sweep(ctx, now)
	case "Ping":
		err = s.Ping(ctx)
	default:
		panic("unknown method " + name)
	}
	return err
}

// wantWorking checks that the store answers again, polling Ping for at most
// timeout first (the client reconnects by itself), then runs a round of
// every method.
func wantWorking(t *testing.T, s *Store, why string, timeout time.Duration) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(timeout)
	start := time.Now()
	for {
		err := s.Ping(ctx)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: Ping still fails %v later: %v", why, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("%s: Ping answered after %v", why, time.Since(start).Round(time.Millisecond))
	now := time.Now()
	round := strconv.FormatInt(now.UnixNano(), 36)
	user := "bob-" + round
	sess := &store.Session{ID: "back-" + round, User: user, State: store.StateTwoFactor, LastSeen: now, Idle: time.Hour, Expires: now.Add(time.Hour)}
	if err := s.PutSession(ctx, sess); err != nil {
		t.Fatalf("%s: PutSession: %v", why, err)
	}
	if got, err := s.GetSession(ctx, sess.ID, now); err != nil || got.User != user {
		t.Fatalf("%s: GetSession = %v, %v", why, got, err)
	}
	if err := s.TouchSession(ctx, sess.ID, now.Add(time.Minute)); err != nil {
		t.Fatalf("%s: TouchSession: %v", why, err)
	}
	if list, err := s.ListUserSessions(ctx, user, now); err != nil || len(list) != 1 {
		t.Fatalf("%s: ListUserSessions = %d sessions, %v", why, len(list), err)
	}
	if err := s.Put(ctx, "code-"+round, []byte("123456"), time.Minute, now); err != nil {
		t.Fatalf("%s: Put: %v", why, err)
	}
	if v, err := s.Take(ctx, "code-"+round, now); err != nil || string(v) != "123456" {
		t.Fatalf("%s: Take = %q, %v", why, v, err)
	}
	if n, _, err := s.Incr(ctx, "ctr-"+round, time.Minute, now); err != nil || n != 1 {
		t.Fatalf("%s: Incr = %d, %v", why, n, err)
	}
	if n, err := s.DeleteUserSessions(ctx, user); err != nil || n != 1 {
		t.Fatalf("%s: DeleteUserSessions = %d, %v", why, n, err)
	}
	if _, err := s.Sweep(ctx, now); err != nil {
		t.Fatalf("%s: Sweep: %v", why, err)
	}
}

// A dead server fails every call at once (never ErrNotFound), a frozen one
// within the timeouts; once it is back, on the same port, the same store
// works again without being reopened.
func TestServerFailure(t *testing.T) {
	bin := needBinary(t, "redis-server")
	srv, err := startServer(bin, false)
	if err != nil {
		t.Fatal(err)
	}
	const timeout = 300 * time.Millisecond
	s, err := New(Options{Addrs: []string{srv.addr()}, DialTimeout: timeout, ReadTimeout: timeout, WriteTimeout: timeout, KeyPrefix: testPrefix("failure")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	// Two tries (one retry) of dial, write and read, and slack.
	bound := 2*(3*timeout) + time.Second
	wantWorking(t, s, "at first", 5*time.Second)

	srv.stop()
	wantAllFail(t, s, "server stopped", bound)
	// Concurrent callers too.
	var wg sync.WaitGroup
	var ok, notFound atomic.Int64
	for range 20 {
		wg.Go(func() {
			_, err := s.GetSession(context.Background(), "back", time.Now())
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, store.ErrNotFound):
				notFound.Add(1)
			}
		})
	}
	wg.Wait()
	if ok.Load() > 0 || notFound.Load() > 0 {
		t.Errorf("concurrent GetSession with the server stopped: %d succeeded, %d ErrNotFound; want errors", ok.Load(), notFound.Load())
	}

	if err := srv.start(); err != nil {
		t.Fatalf("restarting redis-server on port %d: %v", srv.port, err)
	}
	wantWorking(t, s, "after a restart on the same port", 15*time.Second)

	// Frozen: the kernel still accepts connections, nothing answers.
	srv.mu.Lock()
	pid := srv.cmd.Process.Pid
	srv.mu.Unlock()
	if err := freeze(pid, false); err != nil {
		t.Logf("not testing a frozen server: %v", err)
		return
	}
	wantAllFail(t, s, "server frozen", bound)
	if err := freeze(pid, true); err != nil {
		t.Fatal(err)
	}
	wantWorking(t, s, "after the server thawed", 15*time.Second)
	srv.stop()
}

// A peer that accepts connections and never answers fails every call within
// the timeouts; no Redis needed.
func TestUnresponsivePeer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns sync.WaitGroup
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop); ln.Close(); conns.Wait() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Go(func() {
				<-stop
				c.Close()
			})
		}
	}()
	const timeout = 200 * time.Millisecond
	s, err := New(Options{Addrs: []string{ln.Addr().String()}, DialTimeout: timeout, ReadTimeout: timeout, WriteTimeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	wantAllFail(t, s, "peer silent", 2*(3*timeout)+time.Second)
	// A context deadline shorter than the timeouts wins.
	s2, err := New(Options{Addrs: []string{ln.Addr().String()}, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := s2.GetSession(ctx, "x", time.Now()); err == nil || errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetSession with a short deadline and a silent peer: %v; want an error", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("GetSession with a 200ms deadline took %v", d)
	}
}

// New and Close do no network I/O, whatever the mode.
func TestNewDoesNotDial(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var accepted atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	addr := ln.Addr().String()
	for _, o := range []Options{
		{Addrs: []string{addr}},
		{Addrs: []string{addr, addr}},
		{Addrs: []string{addr}, Cluster: true},
		{Addrs: []string{addr}, MasterName: "mymaster"},
	} {
		s, err := New(o)
		if err != nil {
			t.Fatalf("New(%+v): %v", o, err)
		}
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}
	time.Sleep(100 * time.Millisecond)
	if n := accepted.Load(); n != 0 {
		t.Errorf("New and Close made %d connections, want none", n)
	}
}

// A Cluster that lost a master answers only part of the keys: Ping must
// say so (the health check sends strangers 503 on it), not read PONG from
// one surviving node.
func TestPingClusterLostAMaster(t *testing.T) {
	if os.Getenv("TWOSTEP_REDIS_CLUSTER") != "" {
		t.Skip("needs a cluster of its own to break")
	}
	bin := needBinary(t, "redis-server")
	cli := needBinary(t, "redis-cli")
	addrs, srvs, err := startClusterServers(bin, cli)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, s := range srvs {
			s.stop()
		}
	}()
	timeout := 500 * time.Millisecond
	s, err := New(Options{Addrs: addrs, DialTimeout: timeout, ReadTimeout: timeout, WriteTimeout: timeout, KeyPrefix: testPrefix("cluster-ping")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Ping(context.Background()); err != nil {
		t.Fatalf("Ping of a whole cluster: %v", err)
	}
	srvs[1].stop()
	if err := s.Ping(context.Background()); err == nil {
		t.Fatal("Ping of a cluster without one of its masters succeeded")
	}
}
