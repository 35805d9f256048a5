package bolt

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/twostep-auth/twostep/internal/store"
	"github.com/twostep-auth/twostep/internal/store/storetest"
)

var bg = context.Background()

// openTest opens a fresh store in a temporary directory. At cleanup it
// checks that records and indexes agree (unless the test closed the store)
// and closes it.
func openTest(t testing.TB) *DB {
	t.Helper()
	db, err := Open(filepath.Join(t.TempDir(), "twostep.db"), Options{NoSync: true})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	t.Cleanup(func() { checkConsistency(t, db) })
	return db
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return openTest(t) })
}

func TestPersistence(t *testing.T) {
	storetest.RunPersistence(t, func(t *testing.T, dir string) store.Store {
		db, err := Open(filepath.Join(dir, "twostep.db"), Options{NoSync: true})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	})
}

// checkConsistency verifies that every record has exactly the index entries
// it should and every index entry names a record that has it.
func checkConsistency(t testing.TB, db *DB) {
	t.Helper()
	if db.closed.Load() {
		return
	}
	err := db.bdb.View(func(tx *bbolt.Tx) error {
		sb, ub := tx.Bucket(bucketSessions), tx.Bucket(bucketUserSessions)
		kb, eb := tx.Bucket(bucketKV), tx.Bucket(bucketExpiry)
		sb.ForEach(func(k, v []byte) error {
			s, err := decodeSession(v)
			if err != nil {
				t.Errorf("consistency: session %q: %v", k, err)
				return nil
			}
			if s.ID != string(k) {
				t.Errorf("consistency: session under %q has ID %q", k, s.ID)
			}
			if ub.Get(userKey(s.User, s.ID)) == nil {
				t.Errorf("consistency: session %q has no user index entry for %q", k, s.User)
			}
			if eb.Get(expiryKey(expiryNanos(s.ExpiresAt()), kindSession, k)) == nil {
				t.Errorf("consistency: session %q has no expiry index entry at %v", k, s.ExpiresAt())
			}
			return nil
		})
		ub.ForEach(func(k, _ []byte) error {
			user, id, ok := bytes.Cut(k, []byte{0})
			if !ok {
				t.Errorf("consistency: user index key %q without NUL", k)
				return nil
			}
			v := sb.Get(id)
			if v == nil {
				t.Errorf("consistency: user index entry %q names a missing session", k)
				return nil
			}
			if s, err := decodeSession(v); err == nil && s.User != string(user) {
				t.Errorf("consistency: user index entry %q names a session of %q", k, s.User)
			}
			return nil
		})
		kb.ForEach(func(k, v []byte) error {
			exp, err := kvExpiry(v)
			if err != nil {
				t.Errorf("consistency: key %q: %v", k, err)
				return nil
			}
			if exp != 0 && eb.Get(expiryKey(exp, kindKV, k)) == nil {
				t.Errorf("consistency: key %q has no expiry index entry", k)
			}
			return nil
		})
		eb.ForEach(func(k, _ []byte) error {
			if len(k) < 9 {
				t.Errorf("consistency: short expiry index key %x", k)
				return nil
			}
			exp, key := int64(binary.BigEndian.Uint64(k)), k[9:]
			switch k[8] {
			case kindSession:
				v := sb.Get(key)
				if v == nil {
					t.Errorf("consistency: expiry entry for missing session %q", key)
				} else if s, err := decodeSession(v); err == nil && expiryNanos(s.ExpiresAt()) != exp {
					t.Errorf("consistency: stale expiry entry for session %q", key)
				}
			case kindKV:
				v := kb.Get(key)
				if v == nil {
					t.Errorf("consistency: expiry entry for missing key %q", key)
				} else if e, err := kvExpiry(v); err == nil && e != exp {
					t.Errorf("consistency: stale expiry entry for key %q", key)
				}
			default:
				t.Errorf("consistency: expiry entry of kind %q", k[8])
			}
			return nil
		})
		return nil
	})
	if err != nil {
		t.Errorf("consistency: %v", err)
	}
}

func TestOpenCreatesDirsAndFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	path := filepath.Join(dir, "store.db")
	db, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatalf("Open with missing parent directories: %v", err)
	}
	defer db.Close()
	for _, c := range []struct {
		path string
		mode os.FileMode
	}{{filepath.Dir(dir), 0o700}, {dir, 0o700}, {path, 0o600}} {
		fi, err := os.Stat(c.path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != c.mode {
			t.Errorf("mode of %s = %v, want %v", c.path, got, c.mode)
		}
	}
	if db.Path() != path {
		t.Errorf("Path() = %q, want %q", db.Path(), path)
	}
	if _, err := Open("", Options{}); err == nil {
		t.Error("Open(\"\") succeeded, want an error")
	}
}

func TestOpenGarbageFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "garbage.db")
	if err := os.WriteFile(path, bytes.Repeat([]byte("not a bolt file "), 1024), 0o600); err != nil {
		t.Fatal(err)
	}
	db, err := Open(path, Options{Timeout: 100 * time.Millisecond})
	if err == nil {
		db.Close()
		t.Fatal("Open of a file that is not a bbolt database succeeded")
	}
}

// openWithin opens path in a goroutine and fails the test if that takes
// longer than limit (a hang on the file lock).
func openWithin(t *testing.T, path string, opts Options, limit time.Duration) (*DB, error, time.Duration) {
	t.Helper()
	type result struct {
		db  *DB
		err error
	}
	ch := make(chan result, 1)
	start := time.Now()
	go func() {
		db, err := Open(path, opts)
		ch <- result{db, err}
	}()
	select {
	case r := <-ch:
		return r.db, r.err, time.Since(start)
	case <-time.After(limit):
		t.Fatalf("Open of %s did not return within %v: it hangs on the file lock", path, limit)
		return nil, nil, 0
	}
}

func TestOpenLockedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "locked.db")
	first, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		timeout, want time.Duration
	}{{300 * time.Millisecond, 300 * time.Millisecond}, {0, DefaultTimeout}} {
		second, err, took := openWithin(t, path, Options{Timeout: c.timeout}, c.want+5*time.Second)
		if err == nil {
			second.Close()
			t.Fatalf("second Open (Timeout %v) of a file that is open succeeded", c.timeout)
		}
		if !errors.Is(err, bbolt.ErrTimeout) || !strings.Contains(err.Error(), "locked") {
			t.Errorf("second Open error = %q; want a wrapped bbolt.ErrTimeout that says the file is locked", err)
		}
		if took < c.want-50*time.Millisecond {
			t.Errorf("second Open (Timeout %v) gave up after %v, before the timeout", c.timeout, took)
		}
		t.Logf("second Open (Timeout %v) failed after %v: %v", c.timeout, took.Round(time.Millisecond), err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	third, err, _ := openWithin(t, path, Options{Timeout: time.Second}, 10*time.Second)
	if err != nil {
		t.Fatalf("Open after the first store was closed: %v", err)
	}
	third.Close()
}

// bulkSessions stores n sessions in one transaction (the tests need many;
// one transaction per PutSession would be slow).
func bulkSessions(t testing.TB, db *DB, prefix string, n int, mk func(i int) *store.Session) {
	t.Helper()
	err := db.bdb.Update(func(tx *bbolt.Tx) error {
		for i := range n {
			s := mk(i)
			s.ID = fmt.Sprintf("%s-%06d", prefix, i)
			if err := store.ValidateSession(s); err != nil {
				return err
			}
			if err := putSessionTx(tx, s.ID, s.User, s.ExpiresAt(), encodeSession(s)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func testSession(base time.Time, user string, life time.Duration) *store.Session {
	return &store.Session{
		User: user, State: store.StateTwoFactor, Created: base, LastSeen: base,
		Expires: base.Add(life), Idle: 0, Credential: "c", Epoch: 1,
		IP: "192.0.2.1", UserAgent: "Mozilla/5.0",
	}
}

func TestSweepLargeUsesIndexAndBatches(t *testing.T) {
	db := openTest(t)
	base := time.Now()
	at := base.Add(2 * time.Hour)
	const expired, live, expiredKV = 20000, 20000, 5000
	bulkSessions(t, db, "old", expired, func(i int) *store.Session {
		return testSession(base, fmt.Sprintf("user%d", i%100), time.Hour)
	})
	bulkSessions(t, db, "new", live, func(i int) *store.Session {
		return testSession(base, fmt.Sprintf("user%d", i%100), 24*time.Hour)
	})
	err := db.bdb.Update(func(tx *bbolt.Tx) error {
		for i := range expiredKV {
			if err := putKVTx(tx, fmt.Appendf(nil, "kv-%d", i), []byte("v"), expiryNanos(base.Add(time.Minute))); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	n, st, err := db.sweep(bg, at)
	if err != nil {
		t.Fatalf("Sweep: %v", err)
	}
	if n != expired+expiredKV {
		t.Errorf("Sweep deleted %d records, want %d", n, expired+expiredKV)
	}
	// 25,000 entries in batches of DefaultSweepBatch.
	if want := (expired + expiredKV + DefaultSweepBatch - 1) / DefaultSweepBatch; st.batches != want {
		t.Errorf("Sweep used %d write transactions, want %d (batches of %d)", st.batches, want, DefaultSweepBatch)
	}
	// Only the expired entries are read, not the 20,000 live ones.
	if st.visited != expired+expiredKV || st.stale != 0 {
		t.Errorf("Sweep read %d index entries (%d stale), want exactly the %d expired ones", st.visited, st.stale, expired+expiredKV)
	}
	for i := 0; i < live; i += 997 {
		id := fmt.Sprintf("new-%06d", i)
		if _, err := db.GetSession(bg, id, at); err != nil {
			t.Errorf("live session %s after Sweep: %v", id, err)
		}
	}
	for i := 0; i < expired; i += 997 {
		id := fmt.Sprintf("old-%06d", i)
		if _, err := db.GetSession(bg, id, base); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("expired session %s after Sweep: %v, want ErrNotFound", id, err)
		}
	}
	list, err := db.ListUserSessions(bg, "user7", base)
	if err != nil || len(list) != live/100 {
		t.Errorf("ListUserSessions(user7) after Sweep: %d sessions, %v; want %d", len(list), err, live/100)
	}
	n, st, err = db.sweep(bg, at)
	if err != nil || n != 0 || st.batches != 1 || st.visited != 0 {
		t.Errorf("second Sweep = %d, %+v, %v; want 0 deletions in 1 transaction reading no entries", n, st, err)
	}
	checkConsistency(t, db)
}

func TestSweepSmallBatches(t *testing.T) {
	db := openTest(t)
	db.sweepBatch = 7
	base := time.Now()
	bulkSessions(t, db, "s", 30, func(int) *store.Session { return testSession(base, "u", time.Minute) })
	bulkSessions(t, db, "l", 5, func(int) *store.Session { return testSession(base, "u", time.Hour) })
	n, st, err := db.sweep(bg, base.Add(time.Minute))
	if err != nil || n != 30 || st.batches != 5 {
		t.Errorf("Sweep with batches of 7 = %d, %+v, %v; want 30 deletions in 5 transactions", n, st, err)
	}
	if list, err := db.ListUserSessions(bg, "u", base); err != nil || len(list) != 5 {
		t.Errorf("ListUserSessions after Sweep: %d, %v; want the 5 live sessions", len(list), err)
	}
}

func TestSweepStops(t *testing.T) {
	db := openTest(t)
	db.sweepBatch = 3
	base := time.Now()
	bulkSessions(t, db, "s", 10, func(int) *store.Session { return testSession(base, "u", time.Minute) })
	ctx, cancel := context.WithCancel(bg)
	cancel()
	if n, err := db.Sweep(ctx, base.Add(time.Hour)); !errors.Is(err, context.Canceled) || n != 0 {
		t.Errorf("Sweep with a canceled context = %d, %v; want 0, context.Canceled", n, err)
	}
}

func TestSweepRepairsStaleIndex(t *testing.T) {
	db := openTest(t)
	base := time.Now()
	live := testSession(base, "alice", 24*time.Hour)
	live.ID = "live"
	if err := db.PutSession(bg, live); err != nil {
		t.Fatal(err)
	}
	if err := db.Put(bg, "k", []byte("v"), 24*time.Hour, base); err != nil {
		t.Fatal(err)
	}
	if err := db.Put(bg, "forever", []byte("v"), 0, base); err != nil {
		t.Fatal(err)
	}
	past := expiryNanos(base.Add(-time.Hour))
	err := db.bdb.Update(func(tx *bbolt.Tx) error {
		eb := tx.Bucket(bucketExpiry)
		for _, k := range [][]byte{
			expiryKey(past, kindSession, []byte("live")),    // wrong time for a live session
			expiryKey(past, kindSession, []byte("missing")), // no such session
			expiryKey(past, kindKV, []byte("k")),            // wrong time for a live key
			expiryKey(past, kindKV, []byte("forever")),      // key without ttl
			expiryKey(past, kindKV, []byte("missing")),      // no such key
			expiryKey(past, 'x', []byte("unknown kind")),
			{0, 0, 0, 1}, // too short
		} {
			if err := eb.Put(k, nil); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	n, st, err := db.sweep(bg, base)
	if err != nil || n != 0 || st.stale != 7 {
		t.Errorf("Sweep over 7 stale index entries = %d, %+v, %v; want 0 deletions, 7 stale", n, st, err)
	}
	if _, err := db.GetSession(bg, "live", base); err != nil {
		t.Errorf("live session after Sweep of stale entries: %v", err)
	}
	for _, k := range []string{"k", "forever"} {
		if _, err := db.Get(bg, k, base); err != nil {
			t.Errorf("key %q after Sweep of stale entries: %v", k, err)
		}
	}
	checkConsistency(t, db)
}

// putRaw stores a raw session record and its index entries, bypassing the
// encoder.
func putRaw(t *testing.T, db *DB, id, user string, raw []byte, exp time.Time) {
	t.Helper()
	err := db.bdb.Update(func(tx *bbolt.Tx) error {
		if err := tx.Bucket(bucketSessions).Put([]byte(id), raw); err != nil {
			return err
		}
		if err := tx.Bucket(bucketUserSessions).Put(userKey(user, id), nil); err != nil {
			return err
		}
		return tx.Bucket(bucketExpiry).Put(expiryKey(expiryNanos(exp), kindSession, []byte(id)), nil)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func garbageSessions(base time.Time) map[string][]byte {
	valid := testSession(base, "alice", time.Hour)
	valid.ID = "bad"
	valid.Pending = map[string]string{"k": "v"}
	enc := encodeSession(valid)
	js, _ := json.Marshal(valid)
	cases := map[string][]byte{
		"empty":           {},
		"one byte":        {sessionFormat},
		"json":            js,
		"text":            []byte("hello, world"),
		"wrong format":    append([]byte{99}, enc[1:]...),
		"state none":      append([]byte{enc[0], 0}, enc[2:]...),
		"state 200":       append([]byte{enc[0], 200}, enc[2:]...),
		"bad flags":       append([]byte{enc[0], enc[1], 0xff}, enc[3:]...),
		"trailing byte":   append(bytes.Clone(enc), 'x'),
		"all 0xff":        bytes.Repeat([]byte{0xff}, 64),
		"overlong varint": append([]byte{sessionFormat, 1, 1}, bytes.Repeat([]byte{0x80}, 20)...),
	}
	for i := range len(enc) {
		cases[fmt.Sprintf("truncated to %d", i)] = bytes.Clone(enc[:i])
	}
	other := *valid
	other.ID = "someone-else"
	cases["ID mismatch"] = encodeSession(&other)
	return cases
}

func TestCorruptSession(t *testing.T) {
	base := time.Now()
	for name, raw := range garbageSessions(base) {
		t.Run(strings.ReplaceAll(name, " ", "_"), func(t *testing.T) {
			db := openTest(t)
			putRaw(t, db, "bad", "alice", raw, base.Add(time.Minute))
			s, err := db.GetSession(bg, "bad", base)
			if err == nil || s != nil {
				t.Fatalf("GetSession of a corrupt record = %+v, %v; want an error and no session", s, err)
			}
			if errors.Is(err, store.ErrNotFound) || !errors.Is(err, ErrCorrupt) {
				t.Errorf("GetSession of a corrupt record: %v, want an ErrCorrupt error (not ErrNotFound)", err)
			}
			if err := db.TouchSession(bg, "bad", base); err == nil || errors.Is(err, store.ErrNotFound) {
				t.Errorf("TouchSession of a corrupt record: %v, want an ErrCorrupt error", err)
			}
			if list, err := db.ListUserSessions(bg, "alice", base); err == nil {
				t.Errorf("ListUserSessions over a corrupt record = %d sessions, no error; want an error", len(list))
			}
			// Sweep removes it once its index entry says it expired.
			if n, err := db.Sweep(bg, base.Add(time.Minute)); err != nil || n != 1 {
				t.Errorf("Sweep of an expired corrupt record = %d, %v; want 1, nil", n, err)
			}
			if _, err := db.GetSession(bg, "bad", base); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("GetSession after Sweep removed the corrupt record: %v, want ErrNotFound", err)
			}
			// DeleteSession and DeleteUserSessions remove one too.
			putRaw(t, db, "bad", "alice", raw, base.Add(time.Minute))
			if err := db.DeleteSession(bg, "bad"); err != nil {
				t.Errorf("DeleteSession of a corrupt record: %v", err)
			}
			if _, err := db.GetSession(bg, "bad", base); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("GetSession after DeleteSession of the corrupt record: %v, want ErrNotFound", err)
			}
			putRaw(t, db, "bad2", "alice", raw, base.Add(time.Minute))
			if n, err := db.DeleteUserSessions(bg, "alice"); err != nil || n != 1 {
				t.Errorf("DeleteUserSessions over a corrupt record = %d, %v; want 1, nil", n, err)
			}
			// A valid PutSession replaces a corrupt record.
			putRaw(t, db, "bad3", "alice", raw, base.Add(time.Minute))
			good := testSession(base, "alice", time.Hour)
			good.ID = "bad3"
			if err := db.PutSession(bg, good); err != nil {
				t.Fatalf("PutSession over a corrupt record: %v", err)
			}
			if _, err := db.GetSession(bg, "bad3", base); err != nil {
				t.Errorf("GetSession after a valid record replaced a corrupt one: %v", err)
			}
			// Leave the indexes clean for the consistency check: sweep the
			// leftovers of the corrupt record's entries.
			db.DeleteSession(bg, "bad3")
			db.Sweep(bg, base.Add(2*time.Minute))
		})
	}
}

func TestCorruptKV(t *testing.T) {
	db := openTest(t)
	err := db.bdb.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketKV).Put([]byte("short"), []byte{1, 2, 3})
	})
	if err != nil {
		t.Fatal(err)
	}
	base := time.Now()
	if v, err := db.Get(bg, "short", base); !errors.Is(err, ErrCorrupt) || v != nil {
		t.Errorf("Get of a corrupt kv record = %q, %v; want an ErrCorrupt error", v, err)
	}
	if _, err := db.Take(bg, "short", base); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Take of a corrupt kv record: %v, want an ErrCorrupt error", err)
	}
	if _, _, err := db.Incr(bg, "short", time.Minute, base); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Incr of a corrupt kv record: %v, want an ErrCorrupt error", err)
	}
	if err := db.Delete(bg, "short"); err != nil {
		t.Errorf("Delete of a corrupt kv record: %v", err)
	}
	if _, err := db.Get(bg, "short", base); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get after Delete of a corrupt kv record: %v, want ErrNotFound", err)
	}
	// Incr on a value that is not a counter fails instead of misreading it.
	if err := db.Put(bg, "text", []byte("hello"), time.Hour, base); err != nil {
		t.Fatal(err)
	}
	if _, _, err := db.Incr(bg, "text", time.Minute, base); err == nil {
		t.Error("Incr of a key holding a 5-byte value succeeded")
	}
}

func TestCodecRoundTrip(t *testing.T) {
	utc := func(y int, mo time.Month, d, h, mi, s, ns int) time.Time {
		return time.Date(y, mo, d, h, mi, s, ns, time.UTC)
	}
	cases := []*store.Session{
		{ID: "a", User: "b", State: store.StateSecondFactor, Expires: utc(2030, 1, 1, 0, 0, 0, 0)},
		{
			ID: strings.Repeat("f", 64), User: "jürgen", State: store.StateTwoFactor,
			Created: utc(2026, 3, 4, 5, 6, 7, 123456789), LastSeen: utc(2026, 3, 4, 6, 0, 0, 1),
			Expires: utc(9999, 12, 31, 23, 59, 59, 999999999), Idle: 90 * time.Minute,
			SecondFactorAt: utc(1960, 1, 1, 0, 0, 0, 5), Device: "dev", Credential: "cred",
			Epoch: 1<<64 - 1, Pending: map[string]string{"": "", "return": "/x", "ü": strings.Repeat("v", 300)},
			IP: "2001:db8::1", UserAgent: "UA\x00with NUL",
		},
		{ID: "neg", User: "u", State: store.StateEnrollment, Expires: utc(1, 1, 1, 0, 0, 0, 1), Idle: -time.Second},
	}
	for _, want := range cases {
		got, err := decodeSession(encodeSession(want))
		if err != nil {
			t.Errorf("decode(encode(%q)): %v", want.ID, err)
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("decode(encode(x)) = %+v\nwant %+v", got, want)
		}
	}
}

func FuzzDecodeSession(f *testing.F) {
	base := time.Now()
	for _, raw := range garbageSessions(base) {
		f.Add(raw)
	}
	s := testSession(base, "alice", time.Hour)
	s.ID = "x"
	s.Pending = map[string]string{"a": "b", "c": ""}
	f.Add(encodeSession(s))
	f.Fuzz(func(t *testing.T, raw []byte) {
		s, err := decodeSession(raw)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) || s != nil {
				t.Fatalf("decode failure = %v, %v; want nil, ErrCorrupt", s, err)
			}
			return
		}
		if !s.State.Valid() || s.ID == "" || s.User == "" || s.Expires.IsZero() {
			t.Fatalf("decoded an invalid session %+v", s)
		}
		again, err := decodeSession(encodeSession(s))
		if err != nil || !reflect.DeepEqual(again, s) {
			t.Fatalf("re-encoding changed the session: %+v, %v; was %+v", again, err, s)
		}
	})
}

func TestValidation(t *testing.T) {
	db := openTest(t)
	base := time.Now()
	for name, s := range map[string]*store.Session{
		"long ID":       {ID: strings.Repeat("i", MaxKeyLen+1), User: "u", State: store.StateOneFactor, Expires: base.Add(time.Hour)},
		"long user":     {ID: "i", User: strings.Repeat("u", MaxKeyLen+1), State: store.StateOneFactor, Expires: base.Add(time.Hour)},
		"NUL in user":   {ID: "i", User: "a\x00b", State: store.StateOneFactor, Expires: base.Add(time.Hour)},
		"huge pending":  {ID: "i", User: "u", State: store.StateOneFactor, Expires: base.Add(time.Hour), Pending: map[string]string{"big": strings.Repeat("p", MaxValueLen)}},
		"state unknown": {ID: "i", User: "u", State: 5, Expires: base.Add(time.Hour)},
	} {
		if err := db.PutSession(bg, s); !errors.Is(err, ErrInvalid) {
			t.Errorf("PutSession with %s: %v, want an ErrInvalid error", name, err)
		}
	}
	if _, err := db.GetSession(bg, "i", base); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetSession after rejected PutSession calls: %v, want ErrNotFound", err)
	}
}

func TestStartSweeper(t *testing.T) {
	db := openTest(t)
	base := time.Now()
	bulkSessions(t, db, "s", 10, func(int) *store.Session { return testSession(base, "u", time.Minute) })
	if err := db.Put(bg, "k", []byte("v"), time.Minute, base); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var errs []error
	ctx, cancel := context.WithCancel(bg)
	db.StartSweeper(ctx, 5*time.Millisecond, func() time.Time { return base.Add(time.Hour) }, func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err1 := db.GetSession(bg, "s-000009", base)
		_, err2 := db.Get(bg, "k", base)
		if errors.Is(err1, store.ErrNotFound) && errors.Is(err2, store.ErrNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the sweeper did not remove expired records within 10s: %v, %v", err1, err2)
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	waitGroup(t, &db.wg, "the sweeper to stop after its context was canceled")

	// Close stops (and waits for) a running sweeper.
	db.StartSweeper(bg, time.Millisecond, nil, nil)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	waitGroup(t, &db.wg, "the sweeper to stop after Close")
	// Starting one after Close does nothing.
	db.StartSweeper(bg, time.Millisecond, nil, nil)
	waitGroup(t, &db.wg, "no sweeper after Close")
	mu.Lock()
	defer mu.Unlock()
	for _, err := range errs {
		t.Errorf("sweeper reported: %v", err)
	}
}

func waitGroup(t *testing.T, wg *sync.WaitGroup, what string) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

func benchID(i int) string {
	h := sha256.Sum256(fmt.Appendf(nil, "token-%d", i))
	return hex.EncodeToString(h[:])
}

func benchSession(i int, base time.Time) *store.Session {
	return &store.Session{
		ID: benchID(i), User: fmt.Sprintf("user%d", i%50), State: store.StateTwoFactor,
		Created: base, LastSeen: base, Expires: base.Add(12 * time.Hour), Idle: time.Hour,
		SecondFactorAt: base, Device: "", Credential: "3q2+7w", Epoch: 3,
		IP: "203.0.113.7", UserAgent: "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0",
	}
}

func benchDB(b *testing.B, noSync bool, sessions int) (*DB, time.Time) {
	b.Helper()
	db, err := Open(filepath.Join(b.TempDir(), "bench.db"), Options{NoSync: noSync})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	base := time.Now()
	if sessions > 0 {
		err = db.bdb.Update(func(tx *bbolt.Tx) error {
			for i := range sessions {
				s := benchSession(i, base)
				if err := putSessionTx(tx, s.ID, s.User, s.ExpiresAt(), encodeSession(s)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	return db, base
}

func BenchmarkGetSession(b *testing.B) {
	const n = 1000
	db, base := benchDB(b, true, n)
	ids := make([]string, n)
	for i := range ids {
		ids[i] = benchID(i)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := db.GetSession(bg, ids[i%n], base); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func BenchmarkGetSessionParallel(b *testing.B) {
	const n = 1000
	db, base := benchDB(b, true, n)
	ids := make([]string, n)
	for i := range ids {
		ids[i] = benchID(i)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := db.GetSession(bg, ids[i%n], base); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
}

func BenchmarkPutSession(b *testing.B) {
	for _, noSync := range []bool{true, false} {
		b.Run(map[bool]string{true: "nosync", false: "fsync"}[noSync], func(b *testing.B) {
			db, base := benchDB(b, noSync, 1000)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if err := db.PutSession(bg, benchSession(i%5000, base)); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

func BenchmarkTouchSession(b *testing.B) {
	const n = 1000
	db, base := benchDB(b, true, n)
	ids := make([]string, n)
	for i := range ids {
		ids[i] = benchID(i)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if err := db.TouchSession(bg, ids[i%n], base.Add(time.Duration(i)*time.Millisecond)); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func BenchmarkIncr(b *testing.B) {
	for _, noSync := range []bool{true, false} {
		b.Run(map[bool]string{true: "nosync", false: "fsync"}[noSync], func(b *testing.B) {
			db, base := benchDB(b, noSync, 0)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, _, err := db.Incr(bg, fmt.Sprintf("fail:user%d", i%100), time.Hour, base); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// BenchmarkDecodeSession compares the record codec with encoding/json, the
// obvious alternative.
func BenchmarkDecodeSession(b *testing.B) {
	s := benchSession(1, time.Now())
	s.Pending = map[string]string{"return": "/app/dashboard"}
	b.Run("binary", func(b *testing.B) {
		enc := encodeSession(s)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decodeSession(enc); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("json", func(b *testing.B) {
		enc, _ := json.Marshal(s)
		b.ReportAllocs()
		for b.Loop() {
			var out store.Session
			if err := json.Unmarshal(enc, &out); err != nil {
				b.Fatal(err)
			}
		}
	})
}
