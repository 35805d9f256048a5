package storetest_test

import (
	"context"
	"encoding/binary"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/twostep-auth/twostep/internal/store"
	"github.com/twostep-auth/twostep/internal/store/bolt"
	"github.com/twostep-auth/twostep/internal/store/storetest"
)

var epoch = time.Unix(0, 0)

type m struct {
	*bolt.DB
	kind string
}

func (s m) GetSession(ctx context.Context, id string, now time.Time) (*store.Session, error) {
	if s.kind == "getsession-noexpiry" {
		now = epoch
	}
	return s.DB.GetSession(ctx, id, now)
}
func (s m) ListUserSessions(ctx context.Context, u string, now time.Time) ([]*store.Session, error) {
	if s.kind == "list-noexpiry" {
		now = epoch
	}
	return s.DB.ListUserSessions(ctx, u, now)
}
func (s m) Get(ctx context.Context, k string, now time.Time) ([]byte, error) {
	if s.kind == "get-noexpiry" {
		now = epoch
	}
	return s.DB.Get(ctx, k, now)
}
func (s m) Take(ctx context.Context, k string, now time.Time) ([]byte, error) {
	if s.kind == "take-nonatomic" {
		v, err := s.DB.Get(ctx, k, now)
		if err != nil {
			return nil, err
		}
		runtime.Gosched()
		time.Sleep(time.Millisecond)
		return v, s.DB.Delete(ctx, k)
	}
	return s.DB.Take(ctx, k, now)
}
func (s m) PutIfAbsent(ctx context.Context, k string, v []byte, ttl time.Duration, now time.Time) ([]byte, bool, error) {
	if s.kind == "pia-nonatomic" {
		old, err := s.DB.Get(ctx, k, now)
		if err == nil {
			return old, false, nil
		}
		time.Sleep(time.Millisecond)
		return v, true, s.DB.Put(ctx, k, v, ttl, now)
	}
	if s.kind == "pia-noexpiry" {
		old, err := s.DB.Get(ctx, k, epoch)
		if err == nil {
			return old, false, nil
		}
	}
	return s.DB.PutIfAbsent(ctx, k, v, ttl, now)
}
func (s m) Incr(ctx context.Context, k string, w time.Duration, now time.Time) (int64, time.Time, error) {
	if s.kind == "incr-nonatomic" {
		v, err := s.DB.Get(ctx, k, now)
		var n int64
		if err == nil {
			n = int64(binary.BigEndian.Uint64(v))
		}
		time.Sleep(time.Millisecond)
		n++
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], uint64(n))
		return n, now.Add(w), s.DB.Put(ctx, k, b[:], w, now)
	}
	if s.kind == "incr-noreset" {
		now = now.Add(-time.Hour)
	}
	return s.DB.Incr(ctx, k, w, now)
}
func (s m) TouchSession(ctx context.Context, id string, ls time.Time) error {
	switch s.kind {
	case "touch-revives":
		x, err := s.DB.GetSession(ctx, id, epoch)
		if err != nil {
			return err
		}
		x.LastSeen = ls
		return s.DB.PutSession(ctx, x)
	case "touch-extends":
		x, err := s.DB.GetSession(ctx, id, ls)
		if err != nil {
			return err
		}
		x.LastSeen = ls
		x.Expires = x.Expires.Add(time.Hour)
		return s.DB.PutSession(ctx, x)
	case "touch-noop":
		_, err := s.DB.GetSession(ctx, id, ls)
		return err
	}
	return s.DB.TouchSession(ctx, id, ls)
}
func (s m) Sweep(ctx context.Context, now time.Time) (int, error) {
	switch s.kind {
	case "sweep-noop":
		return 0, nil
	case "sweep-count":
		n, err := s.DB.Sweep(ctx, now)
		return n + 1, err
	case "sweep-all":
		return s.DB.Sweep(ctx, now.Add(100*time.Hour))
	}
	return s.DB.Sweep(ctx, now)
}
func (s m) Close() error {
	if s.kind == "close-noop" {
		return nil
	}
	return s.DB.Close()
}
func (s m) DeleteUserSessions(ctx context.Context, u string) (int, error) {
	if s.kind == "dus-count" {
		n, err := s.DB.DeleteUserSessions(ctx, u)
		return 0 * n, err
	}
	if s.kind == "dus-noop" {
		return 1, nil
	}
	return s.DB.DeleteUserSessions(ctx, u)
}
func (s m) PutSession(ctx context.Context, x *store.Session) error {
	if s.kind == "put-novalidate" && x != nil && x.ID != "" && x.User != "" && !x.State.Valid() {
		c := *x
		c.State = store.StateOneFactor
		return s.DB.PutSession(ctx, &c)
	}
	if s.kind == "put-dropfield" && x != nil {
		c := *x
		c.Epoch = 0
		return s.DB.PutSession(ctx, &c)
	}
	return s.DB.PutSession(ctx, x)
}
func (s m) DeleteSession(ctx context.Context, id string) error {
	if s.kind == "delete-noop" {
		return nil
	}
	return s.DB.DeleteSession(ctx, id)
}
func (s m) Delete(ctx context.Context, k string) error {
	if s.kind == "kvdelete-noop" {
		return nil
	}
	return s.DB.Delete(ctx, k)
}
func (s m) Put(ctx context.Context, k string, v []byte, ttl time.Duration, now time.Time) error {
	if s.kind == "put-ttl-ignored" {
		ttl = 0
	}
	return s.DB.Put(ctx, k, v, ttl, now)
}

var kinds = []string{"getsession-noexpiry", "list-noexpiry", "get-noexpiry", "take-nonatomic", "pia-nonatomic", "pia-noexpiry",
	"incr-nonatomic", "incr-noreset", "touch-revives", "touch-extends", "touch-noop", "sweep-noop", "sweep-count", "sweep-all",
	"close-noop", "dus-count", "dus-noop", "put-novalidate", "put-dropfield", "delete-noop", "kvdelete-noop", "put-ttl-ignored"}

func TestMutations(t *testing.T) {
	for _, k := range kinds {
		t.Run(k, func(t *testing.T) {
			storetest.Run(t, func(t *testing.T) store.Store {
				db, err := bolt.Open(filepath.Join(t.TempDir(), "x.db"), bolt.Options{NoSync: true})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { db.Close() })
				return m{db, k}
			})
			storetest.RunPersistence(t, func(t *testing.T, dir string) store.Store {
				db, err := bolt.Open(filepath.Join(dir, "x.db"), bolt.Options{NoSync: true})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { db.Close() })
				return m{db, k}
			})
		})
	}
}
