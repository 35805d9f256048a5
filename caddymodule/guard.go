package caddymodule

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/twostep-auth/twostep/internal/store"
	redisstore "github.com/twostep-auth/twostep/internal/store/redis"
)

// A store that lost its records cannot be told from a new one by looking
// at it, and both look like users who never turned two-step on: every
// sign-in would ask for the password alone. So the store carries an
// instance record, and Caddy's own storage (where it keeps certificates)
// a marker naming the instance this server found there first. A store
// whose instance is missing or another is refused at start, and answers
// 503 when that happens while running, until it is restored or the
// operator removes the marker to start afresh.

// instanceKey holds the store's instance id (32 hex digits, no expiry).
const instanceKey = "config:instance"

// errStoreReplaced: the store no longer holds the instance record this
// server recorded.
var errStoreReplaced = errors.New("the store was emptied or replaced")

// errStoreUnread: the guard could not read or write the store (it may be
// unreachable for now); the check is tried again.
var errStoreUnread = errors.New("the store could not be checked")

// storeMarker is what Caddy's storage keeps about one store.
type storeMarker struct {
	Instance  string    `json:"instance"`
	Store     string    `json:"store"`
	FirstSeen time.Time `json:"first_seen"`
}

// identity names the store for its marker, without credentials: the file,
// or the Redis servers (in any order), master name, database and key
// prefix.
func (sc *StoreConfig) identity() (id, desc string, err error) {
	if sc.Type != "redis" {
		p := strings.TrimPrefix(sc.poolKey(), "bolt:")
		return "bolt:" + p, "bolt store " + p, nil
	}
	opts, err := sc.redisOptions()
	if err != nil {
		return "", "", err
	}
	addrs := slices.Clone(opts.Addrs)
	slices.Sort(addrs)
	prefix := opts.KeyPrefix
	if prefix == "" {
		prefix = redisstore.DefaultKeyPrefix
	}
	desc = "redis store " + strings.Join(addrs, ",") + " db " + strconv.Itoa(opts.DB)
	if opts.MasterName != "" {
		desc += " (master " + opts.MasterName + ")"
	}
	if prefix != redisstore.DefaultKeyPrefix {
		desc += " key_prefix " + strconv.Quote(prefix)
	}
	return "redis:" + strings.Join(addrs, ",") + "|" + opts.MasterName + "|" + strconv.Itoa(opts.DB) + "|" + prefix, desc, nil
}

// instanceKeys are the keys that hold the instance record: one, and on a
// Redis Cluster a copy under every spread tag as well, so that a master
// that loses its data alone is noticed too.
func (sc *StoreConfig) instanceKeys() []string {
	keys := []string{instanceKey}
	if sc.Type != "redis" {
		return keys
	}
	if opts, err := sc.redisOptions(); err == nil && opts.IsCluster() {
		for _, tag := range redisstore.ClusterSpreadTags() {
			keys = append(keys, instanceKey+":{"+tag+"}")
		}
	}
	return keys
}

// markerKey is where the marker of the store named id lives in Caddy's
// storage.
func markerKey(id string) string {
	sum := sha256.Sum256([]byte(id))
	return markerDir + "/" + hex.EncodeToString(sum[:16]) + ".json"
}

// markerDir holds the markers in Caddy's storage.
const markerDir = "twostep/stores"

// markerPlace says where key is, as an operator would look for it.
func markerPlace(storage certmagic.Storage, key string) string {
	if fsys, ok := storage.(*certmagic.FileStorage); ok {
		return fsys.Filename(key)
	}
	return fmt.Sprintf("the key %q", key)
}

func validInstance(s string) bool {
	if len(s) != 32 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// guardStore checks st against its marker in Caddy's storage and returns
// the store's instance id. With no marker yet (a first start, or a new
// node), it records the store's instance, creating it in a store that has
// none. Any error refuses the store; one that is errStoreUnread may pass
// once the store answers.
func guardStore(ctx context.Context, storage certmagic.Storage, st store.Store, sc *StoreConfig, now time.Time, log *zap.Logger) (string, error) {
	if storage == nil {
		return "", errors.New("twostep: Caddy has no storage to keep the store's marker in")
	}
	id, desc, err := sc.identity()
	if err != nil {
		return "", err
	}
	key := markerKey(id)
	place := markerPlace(storage, key)
	if sc.Instance != "" {
		return guardPinned(ctx, storage, st, sc, key, place, desc, now)
	}
	raw, err := storage.Load(ctx, key)
	if errors.Is(err, fs.ErrNotExist) {
		if err := checkNewStore(ctx, storage, st, key, desc, now); err != nil {
			return "", err
		}
		return recordStore(ctx, storage, st, sc.instanceKeys(), key, place, desc, now, log)
	}
	if err != nil {
		return "", fmt.Errorf("twostep: reading the marker of the %s from Caddy's storage (%s): %w", desc, place, err)
	}
	var m storeMarker
	if err := json.Unmarshal(raw, &m); err != nil || !validInstance(m.Instance) {
		return "", fmt.Errorf("twostep: the marker of the %s in Caddy's storage (%s) is damaged; remove it to accept the store as it is now", desc, place)
	}
	for _, k := range sc.instanceKeys() {
		got, err := st.Get(ctx, k, now)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return "", fmt.Errorf("twostep: %w: reading the %s's instance record: %w", errStoreUnread, desc, err)
		}
		if string(got) != m.Instance {
			return "", replacedError(desc, place, m, got == nil)
		}
	}
	return m.Instance, nil
}

// guardPinned checks st against the instance the configuration pins, and
// records it as the store's marker.
func guardPinned(ctx context.Context, storage certmagic.Storage, st store.Store, sc *StoreConfig, key, place, desc string, now time.Time) (string, error) {
	for _, k := range sc.instanceKeys() {
		got, err := st.Get(ctx, k, now)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return "", fmt.Errorf("twostep: %w: reading the %s's instance record: %w", errStoreUnread, desc, err)
		}
		if string(got) != sc.Instance {
			what := "holds another instance record"
			if got == nil {
				what = "has no instance record: it lost its records, or is not the store the configuration names"
			}
			return "", fmt.Errorf("twostep: %w: the %s %s, and the configuration pins instance %s. "+
				"Users' two-step settings and trusted devices live in the store, so running on it would let every user sign in with the password alone. "+
				"Restore the store from a backup; or, to start afresh and lose every user's two-step settings, remove the store's instance setting (and %s from Caddy's storage)",
				errStoreReplaced, desc, what, sc.Instance, place)
		}
	}
	if raw, err := storage.Load(ctx, key); err == nil {
		var m storeMarker
		if json.Unmarshal(raw, &m) == nil && m.Instance == sc.Instance {
			return sc.Instance, nil
		}
	}
	m, _ := json.Marshal(storeMarker{Instance: sc.Instance, Store: desc, FirstSeen: now.UTC().Truncate(time.Second)})
	if err := storage.Store(ctx, key, m); err != nil {
		return "", fmt.Errorf("twostep: writing the marker of the %s to Caddy's storage (%s): %w", desc, place, err)
	}
	return sc.Instance, nil
}

// checkNewStore refuses an empty store (no instance record) when this
// server has used another store before: that is most likely the same
// store, lost or written another way in the configuration (localhost for
// 127.0.0.1, a relative path from another directory), not a new one.
func checkNewStore(ctx context.Context, storage certmagic.Storage, st store.Store, key, desc string, now time.Time) error {
	others, err := storage.List(ctx, markerDir, false)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("twostep: listing the store markers in Caddy's storage (%s): %w", markerPlace(storage, markerDir), err)
	}
	others = slices.DeleteFunc(others, func(k string) bool { return k == key || !strings.HasSuffix(k, ".json") })
	if len(others) == 0 {
		return nil
	}
	if _, err := st.Get(ctx, instanceKey, now); err == nil {
		return nil // it holds records: a store moved or shared, not lost
	} else if !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("twostep: %w: reading the %s's instance record: %w", errStoreUnread, desc, err)
	}
	slices.Sort(others)
	prev := "another store"
	if raw, err := storage.Load(ctx, others[0]); err == nil {
		var m storeMarker
		if json.Unmarshal(raw, &m) == nil && m.Store != "" {
			prev = fmt.Sprintf("the %s, first used on %s", m.Store, m.FirstSeen.Format("2006-01-02 15:04 MST"))
		}
	}
	return fmt.Errorf("twostep: %w: the %s is empty, and this server has used %s. "+
		"If that store was lost, or this is it written another way, every user's two-step settings are gone with it and the password alone would sign them in. "+
		"Restore the store from a backup or correct its address; or, to start afresh on this one, remove %s from Caddy's storage",
		errStoreReplaced, desc, prev, markerPlace(storage, others[0]))
}

// recordStore writes the first marker of a store, creating its instance
// record if it has none.
func recordStore(ctx context.Context, storage certmagic.Storage, st store.Store, keys []string, key, place, desc string, now time.Time, log *zap.Logger) (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	v, created, err := st.PutIfAbsent(ctx, keys[0], []byte(hex.EncodeToString(b)), 0, now)
	if err != nil {
		return "", fmt.Errorf("twostep: %w: writing the %s's instance record: %w", errStoreUnread, desc, err)
	}
	if !validInstance(string(v)) {
		return "", fmt.Errorf("twostep: the %s's instance record (%s) is damaged", desc, keys[0])
	}
	for _, k := range keys[1:] {
		copied, _, err := st.PutIfAbsent(ctx, k, v, 0, now)
		if err != nil {
			return "", fmt.Errorf("twostep: %w: writing the %s's instance record: %w", errStoreUnread, desc, err)
		}
		if string(copied) != string(v) {
			return "", fmt.Errorf("twostep: the %s's instance records disagree (%s); restore the store from a backup", desc, k)
		}
	}
	m, _ := json.Marshal(storeMarker{Instance: string(v), Store: desc, FirstSeen: now.UTC().Truncate(time.Second)})
	if err := storage.Store(ctx, key, m); err != nil {
		return "", fmt.Errorf("twostep: writing the marker of the %s to Caddy's storage (%s): %w", desc, place, err)
	}
	if created {
		// Loud, for alerts: on a store that held users before, this is
		// where their two-step settings were lost (with the marker).
		log.Warn("new store: no instance record, one was created (a first start; if the store held users before, their two-step settings are gone; pin it with the store's instance setting)",
			zap.String("store", desc), zap.String("instance", string(v)), zap.String("marker", place))
	} else {
		log.Info("store recorded in Caddy's storage (a new node or data directory)",
			zap.String("store", desc), zap.String("instance", string(v)), zap.String("marker", place))
	}
	return string(v), nil
}

func replacedError(desc, place string, m storeMarker, missing bool) error {
	first := m.FirstSeen.Format("2006-01-02 15:04 MST")
	what := fmt.Sprintf("holds another store's instance record, not the one this server found there first (on %s)", first)
	if missing {
		what = fmt.Sprintf("has lost its records (its instance record is missing) since this server first used it on %s", first)
	}
	return fmt.Errorf("twostep: %w: the %s %s. "+
		"Users' two-step settings and trusted devices live in the store, so running on it would let every user sign in with the password alone. "+
		"Restore the store from a backup; or, to start afresh and lose every user's two-step settings, remove %s from Caddy's storage and start Caddy again",
		errStoreReplaced, desc, what, place)
}

// checkInstance reports errStoreReplaced when s no longer holds want under
// every one of keys.
func checkInstance(ctx context.Context, s store.Store, want string, keys []string) error {
	for _, k := range keys {
		got, err := s.Get(ctx, k, time.Now())
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("%w: its instance record %s is missing", errStoreReplaced, k)
		}
		if err != nil {
			return err
		}
		if string(got) != want {
			return fmt.Errorf("%w: %s holds another instance record", errStoreReplaced, k)
		}
	}
	return nil
}
