package caddymodule

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/twostep-auth/twostep/internal/store"
	"github.com/twostep-auth/twostep/internal/store/bolt"
)

func latencyCount(t *testing.T, op string) uint64 {
	t.Helper()
	var m dto.Metric
	if err := metricStoreLatency.WithLabelValues(op).(prometheus.Histogram).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount()
}

// SPEC §7a: store latency and errors, of every operation that reaches the
// backend (before, six of them went unmeasured).
func TestMeasuredStoreTimesEveryOperation(t *testing.T) {
	db, err := bolt.Open(filepath.Join(t.TempDir(), "t.db"), bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	m := measured{db}
	ctx := context.Background()
	now := time.Now()
	sess := &store.Session{ID: "s1", User: "alice", State: store.StateOneFactor, Created: now, LastSeen: now, Expires: now.Add(time.Hour)}
	for _, tc := range []struct {
		op  string
		run func() error
	}{
		{"put_session", func() error { return m.PutSession(ctx, sess) }},
		{"get_session", func() error { _, err := m.GetSession(ctx, "s1", now); return err }},
		{"replace_session", func() error { return m.ReplaceSession(ctx, sess) }},
		{"touch_session", func() error { return m.TouchSession(ctx, "s1", now.Add(time.Second)) }},
		{"list_user_sessions", func() error { _, err := m.ListUserSessions(ctx, "alice", now); return err }},
		{"swap_session", func() error {
			next := *sess
			next.ID = "s2"
			return m.SwapSession(ctx, "s1", &next, now)
		}},
		{"delete_session", func() error { return m.DeleteSession(ctx, "s2") }},
		{"delete_user_sessions", func() error { _, err := m.DeleteUserSessions(ctx, "alice"); return err }},
		{"put", func() error { return m.Put(ctx, "k", []byte("v"), time.Hour, now) }},
		{"get", func() error { _, err := m.Get(ctx, "k", now); return err }},
		{"replace", func() error { return m.Replace(ctx, "k", []byte("w"), time.Hour, now) }},
		{"put_if_absent", func() error { _, _, err := m.PutIfAbsent(ctx, "k2", []byte("v"), time.Hour, now); return err }},
		{"take", func() error { _, err := m.Take(ctx, "k2", now); return err }},
		{"delete", func() error { return m.Delete(ctx, "k") }},
		{"incr", func() error { _, _, err := m.Incr(ctx, "n", time.Hour, now); return err }},
		{"sweep", func() error { _, err := m.Sweep(ctx, now); return err }},
		{"ping", func() error { return m.Ping(ctx) }},
	} {
		t.Run(tc.op, func(t *testing.T) {
			before := latencyCount(t, tc.op)
			if err := tc.run(); err != nil {
				t.Fatal(err)
			}
			if n := latencyCount(t, tc.op) - before; n != 1 {
				t.Fatalf("%s: %d latency samples, want 1", tc.op, n)
			}
		})
	}
}
