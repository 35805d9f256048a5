package redis

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/twostep-auth/twostep/internal/store"
	"github.com/twostep-auth/twostep/internal/store/storetest"
)

var prefixSeq atomic.Int64

// testPrefix is a key prefix no other store of this or another test run
// uses.
func testPrefix(kind string) string {
	return fmt.Sprintf("twostep-test:%d:%d:%s:%d:", os.Getpid(), time.Now().UnixNano(), kind, prefixSeq.Add(1))
}

// openOn returns a new, empty store on addrs (a fresh key prefix) whose keys
// are deleted when the test ends.
func openOn(t testing.TB, addrs []string, prefix string, keep bool) *Store {
	t.Helper()
	s, err := New(Options{Addrs: addrs, KeyPrefix: prefix})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		s.Close()
		if !keep {
			if err := purge(addrs, prefix); err != nil {
				t.Errorf("deleting the test's keys: %v", err)
			}
		}
	})
	return s
}

func TestConformance(t *testing.T) {
	addrs := []string{standalone(t)}
	storetest.Run(t, func(t *testing.T) store.Store {
		return openOn(t, addrs, testPrefix("run"), false)
	})
}

func TestConformanceCluster(t *testing.T) {
	addrs := cluster(t)
	storetest.Run(t, func(t *testing.T) store.Store {
		return openOn(t, addrs, testPrefix("cluster"), false)
	})
}

func TestConformanceSentinel(t *testing.T) {
	addrs := sentinel(t)
	storetest.Run(t, func(t *testing.T) store.Store {
		prefix := testPrefix("sentinel")
		s, err := New(Options{Addrs: addrs, MasterName: sentinelMaster, KeyPrefix: prefix})
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		t.Cleanup(func() {
			s.Close()
			if err := purgeMaster(addrs, sentinelMaster, prefix); err != nil {
				t.Errorf("deleting the test's keys: %v", err)
			}
		})
		return s
	})
}

// Redis keeps the data across clients: a "reopen" is a new client on the
// same prefix.
func TestPersistence(t *testing.T) {
	testPersistence(t, []string{standalone(t)})
}

func TestPersistenceCluster(t *testing.T) {
	testPersistence(t, cluster(t))
}

func testPersistence(t *testing.T, addrs []string) {
	base := testPrefix("persist")
	t.Cleanup(func() { purge(addrs, base) })
	storetest.RunPersistence(t, func(t *testing.T, dir string) store.Store {
		sum := sha256.Sum256([]byte(dir))
		return openOn(t, addrs, base+hex.EncodeToString(sum[:8])+":", true)
	})
}

// The keys are where the package doc says, each with a Redis expiry unless
// stored with ttl 0, and sessions land on different Cluster nodes.
func TestKeyLayout(t *testing.T) {
	addrs := []string{standalone(t)}
	prefix := testPrefix("layout")
	s := openOn(t, addrs, prefix, false)
	ctx := context.Background()
	now := time.Now()
	sess := &store.Session{ID: "id1", User: "alice", State: store.StateTwoFactor, LastSeen: now, Idle: time.Hour, Expires: now.Add(12 * time.Hour)}
	if err := s.PutSession(ctx, sess); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "forever", []byte("v"), 0, now); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "brief", []byte("v"), time.Minute, now); err != nil {
		t.Fatal(err)
	}
	c := goredis.NewClient(&goredis.Options{Addr: addrs[0]})
	defer c.Close()
	ttl := func(key string) time.Duration {
		t.Helper()
		d, err := c.PTTL(ctx, prefix+key).Result()
		if err != nil {
			t.Fatalf("PTTL %s: %v", key, err)
		}
		return d
	}
	if d := ttl("s:id1"); d <= 59*time.Minute || d > time.Hour+time.Second {
		t.Errorf("session TTL = %v, want about the idle timeout (1h)", d)
	}
	if d := ttl("u:alice"); d <= 11*time.Hour || d > 12*time.Hour+time.Second {
		t.Errorf("user index TTL = %v, want about the session's lifetime (12h)", d)
	}
	if d := ttl("k:brief"); d <= 0 || d > time.Minute+time.Second {
		t.Errorf("key TTL = %v, want about 1m", d)
	}
	if d := ttl("k:forever"); d != -1 {
		t.Errorf("TTL of a key stored with ttl 0 = %v, want none (-1)", d)
	}
	if n := countKeys(t, addrs, prefix); n != 4 {
		t.Errorf("%d keys under the prefix, want 4", n)
	}
	// A touch moves the Redis expiry with the idle timeout.
	if err := s.TouchSession(ctx, "id1", now.Add(30*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if d := ttl("s:id1"); d <= 89*time.Minute || d > 90*time.Minute+time.Second {
		t.Errorf("session TTL after a touch 30m on = %v, want about 1h30m", d)
	}
	// Deleting the last session removes the index too.
	if err := s.DeleteSession(ctx, "id1"); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Exists(ctx, prefix+"u:alice", prefix+"s:id1").Result(); err != nil || n != 0 {
		t.Errorf("after DeleteSession, %d of the session's keys remain (%v)", n, err)
	}
}

// A record that is not ours under a session or key name is an error, never
// a session, a value or a panic.
func TestCorruptRecords(t *testing.T) {
	addrs := []string{standalone(t)}
	prefix := testPrefix("corrupt")
	s := openOn(t, addrs, prefix, false)
	ctx := context.Background()
	now := time.Now()
	c := goredis.NewClient(&goredis.Options{Addr: addrs[0]})
	defer c.Close()
	good := encodeSession(&store.Session{ID: "bad", User: "alice", State: store.StateTwoFactor, Expires: now.Add(time.Hour)})
	for i, v := range []string{"", "x", "12345678", string(good[:len(good)-1]), string(good) + "x", strings.Replace(string(good), "bad", "bax", 1)} {
		if err := c.Set(ctx, prefix+"s:bad", v, time.Hour).Err(); err != nil {
			t.Fatal(err)
		}
		if err := c.ZAdd(ctx, prefix+"u:alice", goredis.Z{Score: float64(now.Add(time.Hour).UnixMilli()), Member: "bad"}).Err(); err != nil {
			t.Fatal(err)
		}
		got, err := s.GetSession(ctx, "bad", now)
		if err == nil || errors.Is(err, store.ErrNotFound) || got != nil {
			t.Errorf("#%d GetSession of a corrupt record = %v, %v; want an error other than ErrNotFound", i, got, err)
		}
		if err := s.TouchSession(ctx, "bad", now); err == nil || errors.Is(err, store.ErrNotFound) {
			t.Errorf("#%d TouchSession of a corrupt record: %v; want an error other than ErrNotFound", i, err)
		}
		if _, err := s.ListUserSessions(ctx, "alice", now); err == nil {
			t.Errorf("#%d ListUserSessions with a corrupt record: no error", i)
		}
		if n, err := s.DeleteUserSessions(ctx, "alice"); err != nil || n != 1 {
			t.Errorf("#%d DeleteUserSessions with a corrupt record = %d, %v; want it removed (1, nil)", i, n, err)
		}
	}
	for i, v := range []string{"", "1234567"} {
		if err := c.Set(ctx, prefix+"k:bad", v, time.Hour).Err(); err != nil {
			t.Fatal(err)
		}
		if got, err := s.Get(ctx, "bad", now); err == nil || errors.Is(err, store.ErrNotFound) {
			t.Errorf("#%d Get of a corrupt record = %q, %v; want an error other than ErrNotFound", i, got, err)
		}
		if _, _, err := s.PutIfAbsent(ctx, "bad", []byte("v"), 0, now); err == nil {
			t.Errorf("#%d PutIfAbsent over a corrupt record: no error", i)
		}
		if _, _, err := s.Incr(ctx, "bad", time.Minute, now); err == nil {
			t.Errorf("#%d Incr of a corrupt record: no error", i)
		}
	}
	// A value is not a counter.
	if err := s.Put(ctx, "val", []byte("hello"), time.Hour, now); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Incr(ctx, "val", time.Minute, now); err == nil {
		t.Error("Incr of a key holding a value: no error")
	}
}

// Sweep finds records on every master of a Cluster.
func TestSweepCluster(t *testing.T) {
	addrs := cluster(t)
	prefix := testPrefix("sweep")
	s := openOn(t, addrs, prefix, false)
	ctx := context.Background()
	now := time.Now()
	const n = 60
	for i := range n {
		if err := s.Put(ctx, fmt.Sprintf("key-%d", i), []byte("v"), time.Hour, now); err != nil {
			t.Fatal(err)
		}
	}
	c := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: addrs})
	defer c.Close()
	var nodes atomic.Int64
	err := c.ForEachMaster(ctx, func(ctx context.Context, node *goredis.Client) error {
		keys, err := node.Keys(ctx, prefix+"*").Result()
		if len(keys) > 0 {
			nodes.Add(1)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if nodes.Load() < 2 {
		t.Errorf("the %d keys lie on %d masters; want them spread", n, nodes.Load())
	}
	if got, err := s.Sweep(ctx, now.Add(2*time.Hour)); err != nil || got != n {
		t.Errorf("Sweep = %d, %v; want %d, nil", got, err, n)
	}
	if left := countKeys(t, addrs, prefix); left != 0 {
		t.Errorf("%d keys left after Sweep", left)
	}
}

// Whatever the interleaving of puts, touches and deletes of the same IDs,
// every session record left is in its user's index, scored no earlier than
// its Redis expiry: DeleteUserSessions finds every live session.
func TestIndexCoversRecords(t *testing.T) {
	t.Run("Server", func(t *testing.T) { testIndexCoversRecords(t, []string{standalone(t)}) })
	t.Run("Cluster", func(t *testing.T) { testIndexCoversRecords(t, cluster(t)) })
}

func testIndexCoversRecords(t *testing.T, addrs []string) {
	prefix := testPrefix("index")
	s := openOn(t, addrs, prefix, false)
	ctx := context.Background()
	now := time.Now()
	const workers, ops, ids = 6, 150, 8
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 7))
			for range ops {
				id := fmt.Sprintf("id-%d", r.IntN(ids))
				user := []string{"alice", "bob"}[r.IntN(2)]
				var err error
				switch r.IntN(6) {
				case 0, 1:
					sess := &store.Session{ID: id, User: user, State: store.StateTwoFactor, LastSeen: now,
						Idle: time.Hour, Expires: now.Add(time.Duration(1+r.IntN(12)) * time.Hour)}
					err = s.PutSession(ctx, sess)
				case 2:
					err = s.TouchSession(ctx, id, now.Add(time.Duration(r.IntN(30))*time.Minute))
				case 3:
					err = s.DeleteSession(ctx, id)
				case 4:
					_, err = s.DeleteUserSessions(ctx, user)
				case 5:
					_, err = s.ListUserSessions(ctx, user, now)
				}
				if err != nil && !errors.Is(err, store.ErrNotFound) {
					t.Errorf("worker %d: %v", w, err)
					return
				}
			}
		})
	}
	wg.Wait()
	c := goredis.NewUniversalClient(&goredis.UniversalOptions{Addrs: addrs})
	defer c.Close()
	live := 0
	for i := range ids {
		id := fmt.Sprintf("id-%d", i)
		rec, err := c.Get(ctx, prefix+"s:"+id).Result()
		if errors.Is(err, goredis.Nil) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		live++
		sess, err := loadSession(rec, id)
		if err != nil {
			t.Fatalf("record %s: %v", id, err)
		}
		score, err := c.ZScore(ctx, prefix+"u:"+sess.User, id).Result()
		if err != nil {
			t.Errorf("session %s of %s is not in the index: %v", id, sess.User, err)
			continue
		}
		exp, err := c.PExpireTime(ctx, prefix+"s:"+id).Result()
		if err != nil {
			t.Fatal(err)
		}
		if int64(score) < exp.Milliseconds() {
			t.Errorf("session %s: index score %v before its Redis expiry %v", id, int64(score), exp.Milliseconds())
		}
	}
	t.Logf("%d of %d sessions left, all indexed", live, ids)
	// And DeleteUserSessions ends them all.
	for _, user := range []string{"alice", "bob"} {
		if _, err := s.DeleteUserSessions(ctx, user); err != nil {
			t.Fatal(err)
		}
	}
	for i := range ids {
		if _, err := s.GetSession(ctx, fmt.Sprintf("id-%d", i), now); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("session id-%d after DeleteUserSessions of both users: %v", i, err)
		}
	}
	if n := countKeys(t, addrs, prefix); n != 0 {
		t.Errorf("%d keys left after every session was deleted, want none (the indexes go with their last entry)", n)
	}
}
