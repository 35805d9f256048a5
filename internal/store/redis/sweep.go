package redis

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/twostep-auth/twostep/internal/store"
)

// Sweep deletes every key and session record expired at now and returns how
// many. Redis drops records by itself once they have expired by its clock,
// so a deployment need not call Sweep on a schedule; it is for a now ahead
// of that clock. It walks the store's keys with SCAN on every server (every
// master of a Cluster), so it costs time in proportion to the number of
// records, and runs one script per record, which deletes it only if it is
// still expired. Index entries of swept sessions are left to expire with
// their score. On error, the records already deleted stay deleted and their
// number is returned with it.
func (s *Store) Sweep(ctx context.Context, now time.Time) (int, error) {
	ctx, err := s.begin(ctx)
	if err != nil {
		return 0, err
	}
	defer s.mu.RUnlock()
	nowArg := be8(expiryNanos(now))
	patterns := []string{globEscape(s.prefix) + "k:*", globEscape(s.prefix) + "s:*"}
	var total atomic.Int64
	sweepNode := func(ctx context.Context, c *goredis.Client) error {
		for _, pattern := range patterns {
			var cursor uint64
			for {
				if s.closed.Load() {
					return store.ErrClosed
				}
				keys, next, err := c.Scan(ctx, cursor, pattern, scanCount).Result()
				if err != nil {
					return err
				}
				if len(keys) > 0 {
					res, err := runEach(ctx, c, scriptSweep, keys, nowArg)
					for _, r := range res {
						total.Add(r)
					}
					if err != nil {
						return err
					}
				}
				if next == 0 {
					break
				}
				cursor = next
			}
		}
		return nil
	}
	switch c := s.client.(type) {
	case *goredis.ClusterClient:
		err = c.ForEachMaster(ctx, sweepNode)
	case *goredis.Client:
		err = sweepNode(ctx, c)
	default:
		err = fmt.Errorf("client of type %T", s.client)
	}
	n := int(total.Load())
	if err != nil {
		if err == store.ErrClosed {
			return n, err
		}
		return n, fail("sweep", err)
	}
	return n, nil
}

// globEscape quotes the characters that SCAN MATCH patterns treat specially.
func globEscape(s string) string {
	if !strings.ContainsAny(s, `*?[]\`) {
		return s
	}
	var b strings.Builder
	for _, r := range []byte(s) {
		switch r {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteByte(r)
	}
	return b.String()
}
