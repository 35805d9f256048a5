package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/twostep-auth/twostep/internal/store"
	"github.com/twostep-auth/twostep/internal/store/bolt"
	redisstore "github.com/twostep-auth/twostep/internal/store/redis"
)

func openBolt(t *testing.T, path string) *bolt.DB {
	t.Helper()
	db, err := bolt.Open(path, bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// A store that lost its records (deleted file, flushed Redis) looks like
// one whose users never turned two-step on. The guard refuses it, and a
// store that holds another instance, and accepts the same store again.
func TestGuardStore(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	dir := t.TempDir()
	storage := &certmagic.FileStorage{Path: filepath.Join(dir, "caddy")}
	path := filepath.Join(dir, "twostep.db")
	sc := &StoreConfig{Type: "bolt", Path: path}

	db := openBolt(t, path)
	core, logs := observer.New(zap.InfoLevel)
	first, err := guardStore(ctx, storage, db, sc, now, zap.New(core))
	if err != nil || !validInstance(first) {
		t.Fatalf("first start: %q, %v", first, err)
	}
	// Creating an instance record is said loudly (an alert on it catches
	// a store lost together with its marker).
	if w := logs.FilterLevelExact(zap.WarnLevel).FilterMessageSnippet("new store").All(); len(w) != 1 || w[0].ContextMap()["instance"] != first {
		t.Fatalf("first start logged %v", logs.All())
	}
	again, err := guardStore(ctx, storage, db, sc, now.Add(time.Hour), zap.NewNop())
	if err != nil || again != first {
		t.Fatalf("same store again: %q, %v (want %q)", again, err, first)
	}
	// Spelled another way, it is the same file and the same marker.
	other := &StoreConfig{Type: "bolt", Path: filepath.Join(dir, ".", "twostep.db")}
	if got, err := guardStore(ctx, storage, db, other, now, zap.NewNop()); err != nil || got != first {
		t.Fatalf("same file, other spelling: %q, %v", got, err)
	}
	db.Close()

	// The file is lost and a new, empty one takes its place.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	empty := openBolt(t, path)
	_, err = guardStore(ctx, storage, empty, sc, now.Add(2*time.Hour), zap.NewNop())
	if !errors.Is(err, errStoreReplaced) {
		t.Fatalf("emptied store accepted: %v", err)
	}
	marker := storage.Filename(markerKey("bolt:" + path))
	for _, want := range []string{"lost its records", path, marker, "2026-12-01 10:00 UTC", "Restore the store from a backup"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if _, err := empty.Get(ctx, instanceKey, now); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a refused store was given an instance record: %v", err)
	}
	// Another store's records restored into it: refused as well.
	if err := empty.Put(ctx, instanceKey, []byte(strings.Repeat("ab", 16)), 0, now); err != nil {
		t.Fatal(err)
	}
	if _, err := guardStore(ctx, storage, empty, sc, now, zap.NewNop()); !errors.Is(err, errStoreReplaced) || !strings.Contains(err.Error(), "another store's") {
		t.Fatalf("another store's instance accepted: %v", err)
	}
	// Restored from a backup: accepted.
	if err := empty.Put(ctx, instanceKey, []byte(first), 0, now); err != nil {
		t.Fatal(err)
	}
	if got, err := guardStore(ctx, storage, empty, sc, now, zap.NewNop()); err != nil || got != first {
		t.Fatalf("restored store: %q, %v", got, err)
	}
	// The operator starts afresh by removing the marker.
	if err := empty.Delete(ctx, instanceKey); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(marker); err != nil {
		t.Fatal(err)
	}
	fresh, err := guardStore(ctx, storage, empty, sc, now, zap.NewNop())
	if err != nil || fresh == first || !validInstance(fresh) {
		t.Fatalf("after removing the marker: %q, %v", fresh, err)
	}
}

func TestGuardStoreRefuses(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	for _, c := range []struct {
		name  string
		setup func(t *testing.T, storage *certmagic.FileStorage, key string, db *bolt.DB)
		want  string
	}{
		{"damaged marker", func(t *testing.T, s *certmagic.FileStorage, key string, _ *bolt.DB) {
			if err := s.Store(ctx, key, []byte(`{"instance":"not hex"}`)); err != nil {
				t.Fatal(err)
			}
		}, "is damaged; remove it"},
		{"marker unreadable", func(t *testing.T, s *certmagic.FileStorage, key string, _ *bolt.DB) {
			if err := os.MkdirAll(s.Filename(key), 0o700); err != nil { // a directory where the file should be
				t.Fatal(err)
			}
		}, "reading the marker"},
		{"storage not writable", func(t *testing.T, s *certmagic.FileStorage, key string, _ *bolt.DB) {
			// A dangling link where the directory should be: nothing to
			// read, and nowhere to write.
			if err := os.MkdirAll(s.Path, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(filepath.Join(s.Path, "gone"), filepath.Join(s.Path, "twostep")); err != nil {
				t.Fatal(err)
			}
		}, "writing the marker"},
		{"damaged instance record", func(t *testing.T, _ *certmagic.FileStorage, _ string, db *bolt.DB) {
			if err := db.Put(ctx, instanceKey, []byte("short"), 0, now); err != nil {
				t.Fatal(err)
			}
		}, "instance record (config:instance) is damaged"},
		{"store closed", func(t *testing.T, _ *certmagic.FileStorage, _ string, db *bolt.DB) { db.Close() }, "instance record"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			storage := &certmagic.FileStorage{Path: filepath.Join(dir, "caddy")}
			path := filepath.Join(dir, "s.db")
			db := openBolt(t, path)
			c.setup(t, storage, markerKey("bolt:"+path), db)
			got, err := guardStore(ctx, storage, db, &StoreConfig{Type: "bolt", Path: path}, now, zap.NewNop())
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %q, %v; want an error saying %q", got, err, c.want)
			}
		})
	}
	if _, err := guardStore(ctx, nil, nil, &StoreConfig{Type: "bolt", Path: "/x"}, now, zap.NewNop()); err == nil {
		t.Fatal("no storage accepted")
	}
}

// The marker names the Redis servers, not how they are spelled: the order
// of addrs and the credentials do not make another store.
func TestStoreIdentity(t *testing.T) {
	a, _, err := (&StoreConfig{Type: "redis", Addrs: []string{"10.0.0.1:6379", "10.0.0.2:6379"}, DB: 2}).identity()
	if err != nil {
		t.Fatal(err)
	}
	b, desc, err := (&StoreConfig{Type: "redis", Addrs: []string{"10.0.0.2:6379", "10.0.0.1:6379"}, DB: 2, Password: "s3cret"}).identity()
	if err != nil || a != b {
		t.Fatalf("%q != %q (%v)", a, b, err)
	}
	if strings.Contains(desc, "s3cret") || strings.Contains(b, "s3cret") {
		t.Fatal("the identity carries the password")
	}
	u, desc, err := (&StoreConfig{Type: "redis", URL: "redis://user:s3cret@10.0.0.1:6379/2"}).identity()
	if err != nil || strings.Contains(u+desc, "s3cret") {
		t.Fatalf("%q %q %v", u, desc, err)
	}
	if c, _, _ := (&StoreConfig{Type: "redis", Addrs: []string{"10.0.0.1:6379", "10.0.0.2:6379"}, DB: 3}).identity(); c == a {
		t.Fatal("another database is the same store")
	}
	// Stores with their own key prefix share a server and a database.
	p1, _, _ := (&StoreConfig{Type: "redis", URL: "redis://10.0.0.1:6379/2"}).identity()
	p2, desc, err := (&StoreConfig{Type: "redis", URL: "redis://10.0.0.1:6379/2?key_prefix=other:"}).identity()
	if err != nil || p1 == p2 || !strings.Contains(desc, `key_prefix "other:"`) {
		t.Fatalf("key prefixes: %q %q %q %v", p1, p2, desc, err)
	}
	if p3, _, _ := (&StoreConfig{Type: "redis", URL: "redis://10.0.0.1:6379/2?key_prefix=" + redisstore.DefaultKeyPrefix}).identity(); p3 != p1 {
		t.Fatal("the default prefix spelled out is another store")
	}
}

// While running, a store that loses its instance record (a Redis flushed
// or restarted without persistence) is reported replaced, and recovers
// when it is restored.
func TestStoreHealthReplaced(t *testing.T) {
	db := openBolt(t, filepath.Join(t.TempDir(), "s.db"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const id = "0123456789abcdef0123456789abcdef"
	if err := db.Put(ctx, instanceKey, []byte(id), 0, time.Now()); err != nil {
		t.Fatal(err)
	}
	h := new(storeHealth)
	h.expect(id)
	done := make(chan struct{})
	go func() { h.watch(ctx, db, 5*time.Millisecond, zap.NewNop()); close(done) }()
	wait := func(replaced bool) {
		t.Helper()
		for i := 0; i < 400 && h.Replaced() != replaced; i++ {
			time.Sleep(5 * time.Millisecond)
		}
		if h.Replaced() != replaced || h.Down() != replaced {
			t.Fatalf("Replaced() = %v, Down() = %v, want %v", h.Replaced(), h.Down(), replaced)
		}
	}
	wait(false)
	if err := db.Delete(ctx, instanceKey); err != nil {
		t.Fatal(err)
	}
	wait(true)
	if err := db.Put(ctx, instanceKey, []byte(strings.Repeat("f", 32)), 0, time.Now()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	wait(true)
	if err := db.Put(ctx, instanceKey, []byte(id), 0, time.Now()); err != nil {
		t.Fatal(err)
	}
	wait(false)
	cancel()
	<-done
}

// A store that cannot be checked at start (Redis starting after Caddy)
// reads as down until the guard has checked it at a ping; a guard that
// then refuses the store leaves it replaced.
func TestStoreHealthPendingGuard(t *testing.T) {
	db := openBolt(t, filepath.Join(t.TempDir(), "s.db"))
	const id = "0123456789abcdef0123456789abcdef"
	if err := db.Put(context.Background(), instanceKey, []byte(id), 0, time.Now()); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name     string
		verdict  error // what the guard says once the store answers
		replaced bool
	}{
		{"store checks out", nil, false},
		{"store refused", fmt.Errorf("twostep: %w: lost", errStoreReplaced), true},
		{"marker damaged", errors.New("twostep: the marker is damaged"), true},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var calls atomic.Int32
			var answering atomic.Bool
			h := new(storeHealth)
			h.pending(func(context.Context) (string, error) {
				calls.Add(1)
				if !answering.Load() {
					return "", fmt.Errorf("twostep: %w: dial tcp: connection refused", errStoreUnread)
				}
				return id, c.verdict
			}, "")
			if !h.Down() || !h.Replaced() {
				t.Fatal("a store not checked yet reads as up, or as ours")
			}
			done := make(chan struct{})
			go func() { h.watch(ctx, db, 5*time.Millisecond, zap.NewNop()); close(done) }()
			for i := 0; i < 400 && calls.Load() < 3; i++ {
				time.Sleep(5 * time.Millisecond)
			}
			if !h.Down() || !h.Replaced() || calls.Load() < 3 {
				t.Fatalf("while the guard cannot read the store: down %v replaced %v after %d tries", h.Down(), h.Replaced(), calls.Load())
			}
			answering.Store(true)
			for i := 0; i < 400 && (h.Down() != c.replaced || h.Replaced() != c.replaced); i++ {
				time.Sleep(5 * time.Millisecond)
			}
			if h.Down() != c.replaced || h.Replaced() != c.replaced {
				t.Fatalf("down %v replaced %v, want both %v", h.Down(), h.Replaced(), c.replaced)
			}
			if n := calls.Load(); !c.replaced {
				time.Sleep(20 * time.Millisecond)
				if calls.Load() != n {
					t.Fatal("the guard runs again once it passed")
				}
			}
			cancel()
			<-done
		})
	}
}

// On a Redis Cluster the instance record has a copy under every spread
// tag (one per slot range): a master that loses its data alone takes some
// copies with it and the store is refused. (The store here is a bolt file
// standing in for the cluster: the keys are the same; that the tags land
// on every master is tested against a real cluster in the redis package.)
func TestGuardStoreClusterCopies(t *testing.T) {
	t.Run("first start on another node still writing the copies", func(t *testing.T) {
		ctx := context.Background()
		dir := t.TempDir()
		db := openBolt(t, filepath.Join(dir, "s.db"))
		sc := &StoreConfig{Type: "redis", Addrs: []string{"127.0.0.1:7001", "127.0.0.1:7002"}}
		// Another node created the record and has written no copy yet.
		const id = "0123456789abcdef0123456789abcdef"
		if err := db.Put(ctx, instanceKey, []byte(id), 0, time.Now()); err != nil {
			t.Fatal(err)
		}
		got, err := guardStore(ctx, &certmagic.FileStorage{Path: filepath.Join(dir, "caddy")}, db, sc, time.Now(), zap.NewNop())
		if err != nil || got != id {
			t.Fatalf("%q %v", got, err)
		}
		for _, k := range sc.instanceKeys() {
			if v, err := db.Get(ctx, k, time.Now()); err != nil || string(v) != id {
				t.Fatalf("%s: %q %v", k, v, err)
			}
		}
	})
	ctx := context.Background()
	now := time.Now()
	dir := t.TempDir()
	storage := &certmagic.FileStorage{Path: filepath.Join(dir, "caddy")}
	sc := &StoreConfig{Type: "redis", Addrs: []string{"127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"}}
	keys := sc.instanceKeys()
	if len(keys) != 1+redisstore.SpreadTags || keys[0] != instanceKey {
		t.Fatalf("cluster keys %q", keys)
	}
	if single := (&StoreConfig{Type: "redis", Addrs: []string{"127.0.0.1:7001"}}).instanceKeys(); len(single) != 1 {
		t.Fatalf("one server: %q", single)
	}
	if sentinel := (&StoreConfig{Type: "redis", Addrs: []string{"127.0.0.1:7001", "127.0.0.1:7002"}, MasterName: "m"}).instanceKeys(); len(sentinel) != 1 {
		t.Fatalf("sentinel: %q", sentinel)
	}
	db := openBolt(t, filepath.Join(dir, "s.db"))
	id, err := guardStore(ctx, storage, db, sc, now, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if v, err := db.Get(ctx, k, now); err != nil || string(v) != id {
			t.Fatalf("%s: %q %v", k, v, err)
		}
	}
	h := &storeHealth{keys: keys}
	h.expect(id)
	if err := h.check(ctx, db); err != nil {
		t.Fatal(err)
	}
	// One master's slots lose their data.
	lost := keys[5]
	if err := db.Delete(ctx, lost); err != nil {
		t.Fatal(err)
	}
	if err := h.check(ctx, db); !errors.Is(err, errStoreReplaced) || !strings.Contains(err.Error(), lost) {
		t.Fatalf("running check after losing %s: %v", lost, err)
	}
	if _, err := guardStore(ctx, storage, db, sc, now, zap.NewNop()); !errors.Is(err, errStoreReplaced) {
		t.Fatalf("start after losing %s: %v", lost, err)
	}
	// A new node (no marker) does not fill the copy in: the store's first
	// start wrote all the copies, so a missing one is a master's lost data.
	fresh := &certmagic.FileStorage{Path: filepath.Join(dir, "new-node")}
	if _, err := guardStore(ctx, fresh, db, sc, now, zap.NewNop()); !errors.Is(err, errStoreReplaced) || !strings.Contains(err.Error(), "lost part of its records") {
		t.Fatalf("new node on a cluster that lost a master: %v", err)
	}
	if _, err := db.Get(ctx, lost, now); !errors.Is(err, store.ErrNotFound) {
		t.Fatal("the new node filled the lost copy in")
	}
	// A copy that disagrees: refused when recording too (a new node).
	if err := db.Put(ctx, lost, []byte(strings.Repeat("e", 32)), 0, now); err != nil {
		t.Fatal(err)
	}
	other := &certmagic.FileStorage{Path: filepath.Join(dir, "other-node")}
	if _, err := guardStore(ctx, other, db, sc, now, zap.NewNop()); err == nil || !strings.Contains(err.Error(), "disagree") {
		t.Fatalf("new node on disagreeing copies: %v", err)
	}
}

// An empty store is refused when this server has used another store: it
// is most likely the same one, lost, or written another way (a relative
// path from another directory, localhost for 127.0.0.1).
func TestGuardStoreEmptyAfterAnother(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	dir := t.TempDir()
	storage := &certmagic.FileStorage{Path: filepath.Join(dir, "caddy")}
	first := &StoreConfig{Type: "bolt", Path: filepath.Join(dir, "a", "store.db")}
	if err := os.MkdirAll(filepath.Join(dir, "a"), 0o700); err != nil {
		t.Fatal(err)
	}
	db := openBolt(t, first.Path)
	id, err := guardStore(ctx, storage, db, first, now, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	// The same file name from another working directory: a new, empty file.
	second := &StoreConfig{Type: "bolt", Path: filepath.Join(dir, "store.db")}
	empty := openBolt(t, second.Path)
	_, err = guardStore(ctx, storage, empty, second, now, zap.NewNop())
	oldMarker := storage.Filename(markerKey("bolt:" + first.Path))
	if !errors.Is(err, errStoreReplaced) {
		t.Fatalf("empty store after another: %v", err)
	}
	for _, want := range []string{"is empty", "bolt store " + first.Path, "2026-12-01 10:00 UTC", "remove " + oldMarker} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q does not say %q", err, want)
		}
	}
	if _, err := empty.Get(ctx, instanceKey, now); !errors.Is(err, store.ErrNotFound) {
		t.Fatal("the refused store was written")
	}
	// A store moved with its records (it holds the instance): accepted.
	if err := empty.Put(ctx, instanceKey, []byte(id), 0, now); err != nil {
		t.Fatal(err)
	}
	if got, err := guardStore(ctx, storage, empty, second, now, zap.NewNop()); err != nil || got != id {
		t.Fatalf("moved store: %q %v", got, err)
	}
	// Starting afresh on purpose: remove the old marker.
	third := &StoreConfig{Type: "bolt", Path: filepath.Join(dir, "fresh.db")}
	fresh := openBolt(t, third.Path)
	if _, err := guardStore(ctx, storage, fresh, third, now, zap.NewNop()); !errors.Is(err, errStoreReplaced) {
		t.Fatalf("empty store after two others: %v", err)
	}
	for _, m := range []string{oldMarker, storage.Filename(markerKey("bolt:" + second.Path))} {
		if err := os.Remove(m); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := guardStore(ctx, storage, fresh, third, now, zap.NewNop()); err != nil {
		t.Fatalf("after removing the markers: %v", err)
	}
}

// A pinned instance catches what the marker cannot: a store lost together
// with Caddy's data directory, or a new node on a Redis that lost its data.
func TestGuardStorePinned(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	dir := t.TempDir()
	path := filepath.Join(dir, "s.db")
	db := openBolt(t, path)
	id, err := guardStore(ctx, &certmagic.FileStorage{Path: filepath.Join(dir, "first")}, db, &StoreConfig{Type: "bolt", Path: path}, now, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	pinned := &StoreConfig{Type: "bolt", Path: path, Instance: strings.ToUpper(id)} // hex in either case
	// A new data directory (no marker): the pin says this is the store.
	fresh := &certmagic.FileStorage{Path: filepath.Join(dir, "new-node")}
	if got, err := guardStore(ctx, fresh, db, pinned, now, zap.NewNop()); err != nil || got != id {
		t.Fatalf("pinned, new data directory: %q %v", got, err)
	}
	if _, err := os.Stat(fresh.Filename(markerKey("bolt:" + path))); err != nil {
		t.Fatalf("no marker recorded: %v", err)
	}
	// Store and data directory lost together.
	db.Close()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	empty := openBolt(t, path)
	lostToo := &certmagic.FileStorage{Path: filepath.Join(dir, "lost-too")}
	_, err = guardStore(ctx, lostToo, empty, pinned, now, zap.NewNop())
	if !errors.Is(err, errStoreReplaced) || !strings.Contains(err.Error(), "pins instance "+id) || !strings.Contains(err.Error(), "has no instance record") {
		t.Fatalf("pinned, store lost with the data directory: %v", err)
	}
	if _, err := empty.Get(ctx, instanceKey, now); !errors.Is(err, store.ErrNotFound) {
		t.Fatal("a refused store was given an instance record")
	}
	if err := empty.Put(ctx, instanceKey, []byte(strings.Repeat("c", 32)), 0, now); err != nil {
		t.Fatal(err)
	}
	if _, err := guardStore(ctx, lostToo, empty, pinned, now, zap.NewNop()); !errors.Is(err, errStoreReplaced) || !strings.Contains(err.Error(), "holds another instance record") {
		t.Fatalf("pinned, another store: %v", err)
	}
}

func TestStoreInstanceConfig(t *testing.T) {
	const id = "0123456789abcdef0123456789abcdef"
	for _, c := range []struct {
		name, store, want string
	}{
		{"bolt", "store bolt /var/lib/t.db {\n\t\t\tinstance " + id + "\n\t\t}", id},
		{"redis", "store redis {\n\t\t\taddrs 10.0.0.1:6379\n\t\t\tinstance " + id + "\n\t\t}", id},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := caddyfile.NewTestDispenser("twostep {\n\t\tusers_file u.yml\n\t\t" + c.store + "\n\t}")
			v, err := parseGlobal(d, nil)
			if err != nil {
				t.Fatal(err)
			}
			var app App
			if err := json.Unmarshal(v.(httpcaddyfile.App).Value, &app); err != nil {
				t.Fatal(err)
			}
			if app.Store == nil || app.Store.Instance != c.want {
				t.Fatalf("store %+v", app.Store)
			}
		})
	}
	d := caddyfile.NewTestDispenser("twostep {\n\t\tusers_file u.yml\n\t\tstore bolt {\n\t\t\tinstance a\n\t\t\tinstance b\n\t\t}\n\t}")
	if _, err := parseGlobal(d, nil); err == nil || !strings.Contains(err.Error(), "set twice") {
		t.Fatalf("instance twice: %v", err)
	}
	a := &App{UsersFile: "u.yml", Store: &StoreConfig{Type: "bolt", Path: "/x.db", Instance: "not-hex"}}
	if err := a.Validate(); err == nil || !strings.Contains(err.Error(), "instance \"not-hex\"") {
		t.Fatalf("bad instance: %v", err)
	}
}

// prefixListing is Caddy's file storage listing as object-store modules do
// (certmagic-s3's non-recursive ListObjects): a "directory" comes back as
// its prefix, not as the keys under it.
type prefixListing struct{ *certmagic.FileStorage }

func (p prefixListing) List(_ context.Context, prefix string, _ bool) ([]string, error) {
	return []string{prefix + "/"}, nil
}

// Where listing does not show the markers, the last store recorded is
// still found (read with Load, which every storage implements alike).
func TestGuardStoreEmptyAfterAnotherWithoutListing(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	dir := t.TempDir()
	storage := prefixListing{&certmagic.FileStorage{Path: filepath.Join(dir, "caddy")}}
	first := &StoreConfig{Type: "bolt", Path: filepath.Join(dir, "a.db")}
	if _, err := guardStore(ctx, storage, openBolt(t, first.Path), first, now, zap.NewNop()); err != nil {
		t.Fatal(err)
	}
	second := &StoreConfig{Type: "bolt", Path: filepath.Join(dir, "b.db")}
	empty := openBolt(t, second.Path)
	if _, err := guardStore(ctx, storage, empty, second, now, zap.NewNop()); !errors.Is(err, errStoreReplaced) || !strings.Contains(err.Error(), "bolt store "+first.Path) {
		t.Fatalf("empty store after another, storage without listing: %v", err)
	}
}

// A reload that pins another instance while the store cannot be checked
// does not go on with the instance an earlier start checked.
func TestStoreHealthPendingNewPin(t *testing.T) {
	const old = "0123456789abcdef0123456789abcdef"
	h := new(storeHealth)
	h.expect(old)
	g := func(context.Context) (string, error) { return "", errStoreUnread }
	h.pending(g, "")
	h.pending(g, strings.ToUpper(old))
	if h.Down() || h.Replaced() {
		t.Fatal("the same store (no pin, or the same pin) is checked already")
	}
	h.pending(g, strings.Repeat("f", 32))
	if !h.Down() || !h.Replaced() || h.instance.Load() != nil {
		t.Fatal("another pin went on with the instance checked before")
	}
}
