// Package redis is the shared store backend: a store.Store on Redis (one
// server, Sentinel, or Cluster), for several twostep nodes that share their
// sessions, codes and counters. It needs Redis 6.2 or later (PXAT, GETDEL,
// ZADD GT).
//
// Key layout (P is Options.KeyPrefix, "twostep:" by default):
//
//	P k:<key>   string: a key's record (8-byte expiry + value; see codec.go)
//	P s:<id>    string: a session record, under its ID alone, so that
//	            GetSession (every request) is one GET
//	P u:<user>  sorted set: the IDs of the user's sessions, each scored by
//	            the unix milliseconds of its Expires (the latest it can live)
//
// Every record carries its logical expiry and every read compares it with
// the now it is given, so records expire exactly as in the bolt backend;
// besides, each key has a Redis expiry (PXAT, rounded up to the millisecond)
// at that time, so expired records vanish on their own (Sweep need not run
// on a schedule). Redis goes by its own clock: with a node's clock behind the
// server's by d, records vanish d early for that node.
//
// Every operation that must be atomic touches one key: Take is GETDEL;
// PutIfAbsent and Incr are Lua scripts on that key; TouchSession is a GET and
// a compare-and-swap script (retried if the record changed in between, so a
// touch never undoes a concurrent write). No script needs two keys, so the
// layout works on Cluster as it is, without hash tags.
//
// A session record and its user's index entry live in different slots, so
// they cannot change together; the index is instead kept a superset of the
// live records by ordering: a record is written before its index entry is
// added; an entry is removed only after its record was deleted, and the
// delete is then repeated (so a concurrent rewrite of the same ID ends up
// either deleted or indexed again); otherwise entries go only once their
// score has passed by the server's clock (their records are gone by then).
// The index is never trusted on its own: ListUserSessions and
// DeleteUserSessions check each record's user, and skip missing records.
package redis

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/twostep-auth/twostep/internal/store"
)

const (
	// MaxKeyLen is the longest key (and session ID or user name) accepted,
	// in bytes.
	MaxKeyLen = store.MaxKeyLen
	// MaxValueLen is the largest value (or encoded session) accepted, in
	// bytes.
	MaxValueLen = store.MaxValueLen

	// DefaultKeyPrefix is the prefix of every key when Options.KeyPrefix is
	// empty.
	DefaultKeyPrefix = "twostep:"
	// DefaultDialTimeout is Options.DialTimeout when zero.
	DefaultDialTimeout = 2 * time.Second
	// DefaultReadTimeout is Options.ReadTimeout when zero.
	DefaultReadTimeout = time.Second
	// DefaultWriteTimeout is Options.WriteTimeout when zero.
	DefaultWriteTimeout = time.Second
	// DefaultPort is the port of an address or URL that names none.
	DefaultPort = "6379"

	// maxSwapTries bounds the read-modify-write loop of TouchSession.
	maxSwapTries = 10
	// scanCount is the COUNT hint of Sweep's SCAN calls, and so about the
	// number of records per pipeline.
	scanCount = 1000
)

// ErrInvalid is wrapped by the errors returned for records, arguments or
// options that cannot be used (empty ID or user, invalid state, oversized
// key, bad URL, ...).
var ErrInvalid = store.ErrInvalid

// ErrCorrupt is wrapped by the errors returned when a stored record cannot
// be decoded. Such a record is never returned as valid.
var ErrCorrupt = errors.New("redis store: corrupt record")

// Options configures New.
type Options struct {
	// Addrs are the host:port addresses: one server; the Sentinels, with
	// MasterName; or seed nodes of a Cluster (two or more without
	// MasterName, or one with Cluster set). A missing port is DefaultPort.
	Addrs []string
	// MasterName is the Sentinel master name; it makes Addrs the Sentinels.
	MasterName string
	// Cluster uses Redis Cluster even with a single seed address.
	Cluster bool
	// Username and Password authenticate to the server (ACL user, or
	// password alone for requirepass).
	Username, Password string
	// DB is the database number; Cluster has only database 0.
	DB int
	// DialTimeout bounds each connection attempt; zero means
	// DefaultDialTimeout.
	DialTimeout time.Duration
	// ReadTimeout and WriteTimeout bound each reply and each request on the
	// wire; zero means DefaultReadTimeout and DefaultWriteTimeout. A
	// context's deadline, if earlier, wins.
	ReadTimeout, WriteTimeout time.Duration
	// PoolSize is the number of connections per server; zero means the
	// client's default (10 per CPU).
	PoolSize int
	// KeyPrefix starts every key the store uses; empty means
	// DefaultKeyPrefix. Stores with different prefixes share a server
	// without seeing each other's records.
	KeyPrefix string
	// TLS, if not nil, is the TLS configuration of every connection
	// (ParseURL sets it for rediss://).
	TLS *tls.Config
}

// Store is a store.Store on Redis. It is safe for concurrent use.
type Store struct {
	client goredis.UniversalClient
	prefix string

	closed atomic.Bool
	// mu is held for reading by every call and for writing by Close, which
	// so waits for calls in flight before it closes the client.
	mu sync.RWMutex
}

var _ store.Store = (*Store)(nil)

func invalid(format string, args ...any) error { return store.Invalid(format, args...) }

// New returns a store on the servers opts names. It does no network I/O:
// connections are made by the first calls (and again after a failure, by
// themselves), so New succeeds while Redis is down; use Ping to check it.
func New(opts Options) (*Store, error) {
	var addrs []string
	for _, a := range opts.Addrs {
		a = strings.TrimSpace(a)
		if a == "" {
			continue
		}
		a, err := normalizeAddr(a)
		if err != nil {
			return nil, err
		}
		addrs = append(addrs, a)
	}
	if len(addrs) == 0 {
		return nil, invalid("no address")
	}
	cluster := opts.MasterName == "" && (len(addrs) > 1 || opts.Cluster)
	switch {
	case opts.DB < 0:
		return nil, invalid("database %d", opts.DB)
	case cluster && opts.DB != 0:
		return nil, invalid("database %d: Redis Cluster has only database 0", opts.DB)
	case opts.MasterName != "" && opts.Cluster:
		return nil, invalid("master name (Sentinel) and cluster are exclusive")
	case opts.DialTimeout < 0 || opts.ReadTimeout < 0 || opts.WriteTimeout < 0:
		return nil, invalid("negative timeout")
	case opts.PoolSize < 0:
		return nil, invalid("pool size %d", opts.PoolSize)
	}
	prefix := opts.KeyPrefix
	if prefix == "" {
		prefix = DefaultKeyPrefix
	}
	if len(prefix) > MaxKeyLen {
		return nil, invalid("key prefix of %d bytes (max %d)", len(prefix), MaxKeyLen)
	}
	orDefault := func(d, def time.Duration) time.Duration {
		if d == 0 {
			return def
		}
		return d
	}
	var tlsConf *tls.Config
	if opts.TLS != nil {
		tlsConf = opts.TLS.Clone()
	}
	client := goredis.NewUniversalClient(&goredis.UniversalOptions{
		Addrs:         addrs,
		MasterName:    opts.MasterName,
		IsClusterMode: cluster,
		ClientName:    "twostep",
		Username:      opts.Username,
		Password:      opts.Password,
		DB:            opts.DB,
		DialTimeout:   orDefault(opts.DialTimeout, DefaultDialTimeout),
		ReadTimeout:   orDefault(opts.ReadTimeout, DefaultReadTimeout),
		WriteTimeout:  orDefault(opts.WriteTimeout, DefaultWriteTimeout),
		PoolSize:      opts.PoolSize,
		TLSConfig:     tlsConf,
		// Fail fast on a dead server: one dial per connection, one retry of
		// a command (on a fresh connection, which is what a restarted
		// server needs). A retried command that had run counts twice (Incr)
		// or reports its own write as someone else's (PutIfAbsent): both
		// err on the side of denying.
		DialerRetries:         1,
		MaxRetries:            1,
		ContextTimeoutEnabled: true,
		MaintNotificationsConfig: &maintnotifications.Config{
			Mode: maintnotifications.ModeDisabled,
		},
	})
	return &Store{client: client, prefix: prefix}, nil
}

// normalizeAddr checks a host:port address and adds DefaultPort if it has
// no port.
func normalizeAddr(a string) (string, error) {
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		if strings.Contains(err.Error(), "missing port") {
			return normalizeAddr(net.JoinHostPort(strings.Trim(a, "[]"), DefaultPort))
		}
		return "", invalid("address %q: %v", a, err)
	}
	if host == "" {
		return "", invalid("address %q without host", a)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", invalid("address %q: bad port", a)
	}
	return net.JoinHostPort(host, port), nil
}

// ParseURL parses a Redis URL into Options:
//
//	redis://[[user]:password@]host[:port][/db][?option=value&...]
//	rediss://...   the same over TLS
//
// Options: addr=host:port (repeatable: more Sentinels or Cluster seeds),
// master_name, cluster=true, dial_timeout, read_timeout, write_timeout (Go
// durations), pool_size, key_prefix. Unknown options are an error. Errors
// never quote the password.
func ParseURL(raw string) (Options, error) {
	var o Options
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return o, invalid("redis URL: %v", err)
	}
	switch u.Scheme {
	case "redis":
	case "rediss":
		o.TLS = &tls.Config{ServerName: u.Hostname(), MinVersion: tls.VersionTLS12}
	default:
		return o, invalid("redis URL: scheme %q (want redis or rediss)", u.Scheme)
	}
	if u.Opaque != "" || u.Host == "" {
		return o, invalid("redis URL without host")
	}
	if u.Fragment != "" {
		return o, invalid("redis URL with a fragment")
	}
	addr, err := normalizeAddr(u.Host)
	if err != nil {
		return o, err
	}
	o.Addrs = []string{addr}
	if u.User != nil {
		o.Username = u.User.Username()
		p, ok := u.User.Password()
		if !ok {
			return o, invalid("redis URL names a user without a password (write redis://:password@host for a password alone)")
		}
		o.Password = p
	}
	if db := strings.TrimPrefix(u.Path, "/"); db != "" {
		n, err := strconv.Atoi(db)
		if err != nil || n < 0 || strconv.Itoa(n) != db {
			return o, invalid("redis URL: database %q (want a number)", db)
		}
		o.DB = n
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return o, invalid("redis URL query: %v", err)
	}
	for name, vals := range q {
		if name != "addr" && len(vals) != 1 {
			return o, invalid("redis URL: option %s given %d times", name, len(vals))
		}
		v := vals[0]
		dur := func(d *time.Duration) error {
			x, err := time.ParseDuration(v)
			if err != nil || x <= 0 {
				return invalid("redis URL: %s=%q (want a positive duration such as 500ms)", name, v)
			}
			*d = x
			return nil
		}
		switch name {
		case "addr":
			for _, a := range vals {
				a, err := normalizeAddr(a)
				if err != nil {
					return o, err
				}
				o.Addrs = append(o.Addrs, a)
			}
		case "master_name":
			o.MasterName = v
		case "cluster":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return o, invalid("redis URL: cluster=%q (want true or false)", v)
			}
			o.Cluster = b
		case "dial_timeout":
			err = dur(&o.DialTimeout)
		case "read_timeout":
			err = dur(&o.ReadTimeout)
		case "write_timeout":
			err = dur(&o.WriteTimeout)
		case "pool_size":
			n, perr := strconv.Atoi(v)
			if perr != nil || n <= 0 {
				return o, invalid("redis URL: pool_size=%q (want a positive number)", v)
			}
			o.PoolSize = n
		case "key_prefix":
			o.KeyPrefix = v
		default:
			return o, invalid("redis URL: unknown option %q", name)
		}
		if err != nil {
			return o, err
		}
	}
	return o, nil
}

// Prefix returns the prefix of every key the store uses.
func (s *Store) Prefix() string { return s.prefix }

func (s *Store) kvKey(key string) string     { return s.prefix + "k:" + key }
func (s *Store) sessionKey(id string) string { return s.prefix + "s:" + id }
func (s *Store) userKey(user string) string  { return s.prefix + "u:" + user }

// begin is the prelude of every method: closed store or finished context,
// then the read lock that Close waits for. On success the caller must call
// s.mu.RUnlock.
func (s *Store) begin(ctx context.Context) (context.Context, error) {
	if s.closed.Load() {
		return nil, store.ErrClosed
	}
	if ctx == nil {
		ctx = context.Background()
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	if s.closed.Load() {
		s.mu.RUnlock()
		return nil, store.ErrClosed
	}
	return ctx, nil
}

// fail wraps an error of the client for the operation op. The client's
// "no such key" never gets here: callers map it to store.ErrNotFound first.
func fail(op string, err error) error {
	if errors.Is(err, goredis.ErrClosed) {
		return store.ErrClosed
	}
	if errors.Is(err, ErrCorrupt) || errors.Is(err, ErrInvalid) {
		return fmt.Errorf("%s: %w", op, err) // already says "redis store"
	}
	return fmt.Errorf("redis store: %s: %w", op, err)
}

// Close waits for the calls in flight and closes the client's connections.
// Later calls to any method return store.ErrClosed; Close itself may be
// called again and then returns nil.
func (s *Store) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.client.Close(); err != nil && !errors.Is(err, goredis.ErrClosed) {
		return fmt.Errorf("redis store: close: %w", err)
	}
	return nil
}

// Ping sends PING; on a Cluster to every master, so that a cluster that
// lost one (CLUSTERDOWN for part of the keys) does not read as up.
func (s *Store) Ping(ctx context.Context) error {
	ctx, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer s.mu.RUnlock()
	if cc, ok := s.client.(*goredis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, c *goredis.Client) error {
			return c.Ping(ctx).Err()
		})
	} else {
		err = s.client.Ping(ctx).Err()
	}
	if err != nil {
		return fail("ping", err)
	}
	return nil
}

// invalidationChannel carries the ids of sessions (and users) whose cached
// copies other nodes must drop.
func (s *Store) invalidationChannel() string { return s.prefix + "invalidate" }

// Publish tells every node subscribed with Subscribe to drop msg's entry.
func (s *Store) Publish(ctx context.Context, msg string) error {
	ctx, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer s.mu.RUnlock()
	if err := s.client.Publish(ctx, s.invalidationChannel(), msg).Err(); err != nil {
		return fail("publish", err)
	}
	return nil
}

// Subscribe calls fn with every message published on the invalidation
// channel until ctx ends; the client reconnects by itself after a failure.
func (s *Store) Subscribe(ctx context.Context, fn func(string)) {
	ps := s.client.Subscribe(ctx, s.invalidationChannel())
	go func() {
		defer ps.Close()
		ch := ps.Channel()
		for {
			select {
			case <-ctx.Done():
				return
			case m, ok := <-ch:
				if !ok {
					return
				}
				fn(m.Payload)
			}
		}
	}()
}
