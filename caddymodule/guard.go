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
	"path"
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
	pin := strings.ToLower(sc.Instance) // hex, as the store holds it
	for _, k := range sc.instanceKeys() {
		got, err := st.Get(ctx, k, now)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return "", fmt.Errorf("twostep: %w: reading the %s's instance record: %w", errStoreUnread, desc, err)
		}
		if string(got) != pin {
			what := "holds another instance record"
			if got == nil {
				what = "has no instance record: it lost its records, or is not the store the configuration names"
			}
			return "", fmt.Errorf("twostep: %w: the %s %s, and the configuration pins instance %s. "+
				"Users' two-step settings and trusted devices live in the store, so running on it would let every user sign in with the password alone. "+
				"Restore the store from a backup; or, to start afresh and lose every user's two-step settings, remove the store's instance setting (and %s from Caddy's storage)",
				errStoreReplaced, desc, what, pin, place)
		}
	}
	if raw, err := storage.Load(ctx, key); err == nil {
		var m storeMarker
		if json.Unmarshal(raw, &m) == nil && m.Instance == pin {
			return pin, nil
		}
	}
	m, _ := json.Marshal(storeMarker{Instance: pin, Store: desc, FirstSeen: now.UTC().Truncate(time.Second)})
	if err := storage.Store(ctx, key, m); err != nil {
		return "", fmt.Errorf("twostep: writing the marker of the %s to Caddy's storage (%s): %w", desc, place, err)
	}
	if err := storage.Store(ctx, lastUsedKey, []byte(key)); err != nil {
		return "", fmt.Errorf("twostep: writing %s to Caddy's storage: %w", markerPlace(storage, lastUsedKey), err)
	}
	return pin, nil
}

// checkNewStore refuses an empty store (no instance record) when this
// server has used another store before: that is most likely the same
// store, lost or written another way in the configuration (localhost for
// 127.0.0.1, a relative path from another directory), not a new one.
func checkNewStore(ctx context.Context, storage certmagic.Storage, st store.Store, key, desc string, now time.Time) error {
	others, err := otherMarkers(ctx, storage, key)
	if err != nil {
		return err
	}
	if len(others) == 0 {
		return nil
	}
	if _, err := st.Get(ctx, instanceKey, now); err == nil {
		return nil // it holds records: a store moved or shared, not lost
	} else if !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("twostep: %w: reading the %s's instance record: %w", errStoreUnread, desc, err)
	}
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

// lastUsedKey names, in Caddy's storage, the marker of the store recorded
// last: read with Load, which every storage module implements alike, where
// listing differs between them (object stores list "directories" as
// prefixes).
const lastUsedKey = markerDir + "/last-used"

// otherMarkers returns the keys of the markers of stores other than the
// one at key that are still in Caddy's storage, the last one recorded
// first. Any error but "none" refuses.
func otherMarkers(ctx context.Context, storage certmagic.Storage, key string) ([]string, error) {
	var others []string
	raw, err := storage.Load(ctx, lastUsedKey)
	switch {
	case err == nil:
		if k := strings.TrimSpace(string(raw)); k != key && strings.HasPrefix(k, markerDir+"/") {
			if _, err := storage.Load(ctx, k); err == nil {
				others = append(others, k)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("twostep: reading a store marker from Caddy's storage (%s): %w", markerPlace(storage, k), err)
			}
		}
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("twostep: reading %s from Caddy's storage: %w", markerPlace(storage, lastUsedKey), err)
	}
	listed, err := storage.List(ctx, markerDir, true)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("twostep: listing the store markers in Caddy's storage (%s): %w", markerPlace(storage, markerDir), err)
	}
	slices.Sort(listed)
	for _, k := range listed {
		if path.Base(k) != path.Base(key) && strings.HasSuffix(k, ".json") && !slices.Contains(others, k) {
			others = append(others, k)
		}
	}
	return others, nil
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
	if created {
		// Loud, for alerts, and before anything else can fail: on a store
		// that held users before, this is where their two-step settings
		// were lost (with the marker).
		log.Warn("new store: no instance record, one was created (a first start; if the store held users before, their two-step settings are gone; pin it with the store's instance setting)",
			zap.String("store", desc), zap.String("instance", string(v)), zap.String("marker", place))
	}
	if len(keys) > 1 {
		if err := copyInstance(ctx, st, keys, v, created, desc, now); err != nil {
			return "", err
		}
	}
	m, _ := json.Marshal(storeMarker{Instance: string(v), Store: desc, FirstSeen: now.UTC().Truncate(time.Second)})
	if err := storage.Store(ctx, key, m); err != nil {
		return "", fmt.Errorf("twostep: writing the marker of the %s to Caddy's storage (%s): %w", desc, place, err)
	}
	if err := storage.Store(ctx, lastUsedKey, []byte(key)); err != nil {
		return "", fmt.Errorf("twostep: writing %s to Caddy's storage: %w", markerPlace(storage, lastUsedKey), err)
	}
	if !created {
		log.Info("store recorded in Caddy's storage (a new node or data directory)",
			zap.String("store", desc), zap.String("instance", string(v)), zap.String("marker", place))
	}
	return string(v), nil
}

// copiesKey marks a Cluster store whose spread copies of the instance
// record were all written: from then on a missing copy is a master that
// lost its data, not a first start still under way on another node.
const copiesKey = instanceKey + ":copies"

// copyInstance writes the spread copies of the instance record v (keys[1:])
// on a store that is new or whose first start has not finished them, and
// otherwise checks them.
func copyInstance(ctx context.Context, st store.Store, keys []string, v []byte, created bool, desc string, now time.Time) error {
	done := false
	if !created {
		_, err := st.Get(ctx, copiesKey, now)
		switch {
		case err == nil:
			done = true
		case !errors.Is(err, store.ErrNotFound):
			return fmt.Errorf("twostep: %w: reading the %s's instance record: %w", errStoreUnread, desc, err)
		}
	}
	for _, k := range keys[1:] {
		var got []byte
		var err error
		if done {
			got, err = st.Get(ctx, k, now)
			if errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("twostep: %w: the %s has lost part of its records (the instance record %s is missing: a master lost its data); restore it from a backup", errStoreReplaced, desc, k)
			}
		} else {
			got, _, err = st.PutIfAbsent(ctx, k, v, 0, now)
		}
		if err != nil {
			return fmt.Errorf("twostep: %w: writing the %s's instance record: %w", errStoreUnread, desc, err)
		}
		if string(got) != string(v) {
			return fmt.Errorf("twostep: %w: the %s's instance records disagree (%s); restore the store from a backup", errStoreReplaced, desc, k)
		}
	}
	if !done {
		if err := st.Put(ctx, copiesKey, []byte("1"), 0, now); err != nil {
			return fmt.Errorf("twostep: %w: writing the %s's instance record: %w", errStoreUnread, desc, err)
		}
	}
	return nil
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
