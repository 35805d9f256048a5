package redis

import (
	"errors"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/twostep-auth/twostep/internal/store"
)

func TestParseURL(t *testing.T) {
	good := []struct {
		url  string
		want Options
		tls  bool
	}{
		{"redis://127.0.0.1:6379/0", Options{Addrs: []string{"127.0.0.1:6379"}}, false},
		{"redis://localhost", Options{Addrs: []string{"localhost:6379"}}, false},
		{"redis://:s3cr%3At@redis.example:6380/2", Options{Addrs: []string{"redis.example:6380"}, Password: "s3cr:t", DB: 2}, false},
		{"redis://app:pw@[::1]:7000/", Options{Addrs: []string{"[::1]:7000"}, Username: "app", Password: "pw"}, false},
		{"rediss://u:p@secure.example/1", Options{Addrs: []string{"secure.example:6379"}, Username: "u", Password: "p", DB: 1}, true},
		{"redis://s1:26379?addr=s2:26379&addr=s3&master_name=mymaster", Options{Addrs: []string{"s1:26379", "s2:26379", "s3:6379"}, MasterName: "mymaster"}, false},
		{"redis://seed:7000?cluster=true&key_prefix=app1:&pool_size=20&dial_timeout=500ms&read_timeout=2s&write_timeout=3s",
			Options{Addrs: []string{"seed:7000"}, Cluster: true, KeyPrefix: "app1:", PoolSize: 20,
				DialTimeout: 500 * time.Millisecond, ReadTimeout: 2 * time.Second, WriteTimeout: 3 * time.Second}, false},
	}
	for _, c := range good {
		got, err := ParseURL(c.url)
		if err != nil {
			t.Errorf("ParseURL(%q): %v", c.url, err)
			continue
		}
		if (got.TLS != nil) != c.tls {
			t.Errorf("ParseURL(%q): TLS = %v, want %v", c.url, got.TLS != nil, c.tls)
		}
		if got.TLS != nil && (got.TLS.ServerName != "secure.example" || got.TLS.MinVersion == 0) {
			t.Errorf("ParseURL(%q): TLS config %+v", c.url, got.TLS)
		}
		got.TLS = nil
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("ParseURL(%q) = %+v, want %+v", c.url, got, c.want)
		}
		if _, err := New(got); err != nil {
			t.Errorf("New(ParseURL(%q)): %v", c.url, err)
		}
	}
	bad := []string{
		"", "127.0.0.1:6379", "http://host", "redis://", "redis:///0", "redis://host/abc", "redis://host/-1",
		"redis://host/01", "redis://host:0", "redis://host:99999", "redis://host:x", "redis://user@host",
		"redis://host?bogus=1", "redis://host?pool_size=0", "redis://host?dial_timeout=fast",
		"redis://host?cluster=maybe", "redis://host?master_name=a&master_name=b", "redis://host#frag",
		"redis://u:hunter2@host:bad",
	}
	for _, u := range bad {
		_, err := ParseURL(u)
		if err == nil {
			t.Errorf("ParseURL(%q): no error", u)
			continue
		}
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseURL(%q): %v, want an ErrInvalid error", u, err)
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("ParseURL(%q): the error %q shows the password", u, err)
		}
	}
}

func TestNewValidation(t *testing.T) {
	for _, o := range []Options{
		{},
		{Addrs: []string{" ", ""}},
		{Addrs: []string{":6379"}},
		{Addrs: []string{"host:0"}},
		{Addrs: []string{"a:1", "b:2"}, DB: 1},
		{Addrs: []string{"a:1"}, Cluster: true, DB: 1},
		{Addrs: []string{"a:1"}, MasterName: "m", Cluster: true},
		{Addrs: []string{"a:1"}, DB: -1},
		{Addrs: []string{"a:1"}, ReadTimeout: -1},
		{Addrs: []string{"a:1"}, PoolSize: -1},
		{Addrs: []string{"a:1"}, KeyPrefix: strings.Repeat("p", MaxKeyLen+1)},
	} {
		if s, err := New(o); err == nil {
			s.Close()
			t.Errorf("New(%+v): no error", o)
		} else if !errors.Is(err, ErrInvalid) {
			t.Errorf("New(%+v): %v, want an ErrInvalid error", o, err)
		}
	}
	s, err := New(Options{Addrs: []string{"a"}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Prefix() != DefaultKeyPrefix {
		t.Errorf("Prefix() = %q, want %q", s.Prefix(), DefaultKeyPrefix)
	}
}

func randomSession(r *rand.Rand) *store.Session {
	str := func(max int) string {
		b := make([]byte, r.IntN(max+1))
		for i := range b {
			b[i] = byte(r.IntN(256))
		}
		return string(b)
	}
	tm := func() time.Time {
		switch r.IntN(4) {
		case 0:
			return time.Time{}
		case 1:
			return time.Unix(r.Int64N(math.MaxInt64/2)-math.MaxInt64/4, r.Int64N(1e9)).UTC()
		}
		return time.Now().Add(time.Duration(r.Int64N(int64(48*time.Hour))) - 24*time.Hour).UTC()
	}
	s := &store.Session{
		ID:             "id-" + str(40),
		User:           "u" + strings.ReplaceAll(str(20), "\x00", ""),
		State:          store.SessionState(1 + r.IntN(4)),
		Created:        tm(),
		LastSeen:       tm(),
		Expires:        tm(),
		Idle:           time.Duration(r.Int64N(int64(48*time.Hour))) - time.Hour,
		SecondFactorAt: tm(),
		Device:         str(10),
		Credential:     str(10),
		Epoch:          r.Uint64(),
		IP:             str(16),
		UserAgent:      str(100),
	}
	if s.Expires.IsZero() {
		s.Expires = time.Now().Add(time.Hour)
	}
	if n := r.IntN(4); n > 0 {
		s.Pending = map[string]string{}
		for range n {
			s.Pending[str(8)] = str(30)
		}
	}
	return s
}

func TestSessionCodecRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		want := randomSession(r)
		enc := encodeSession(want)
		got, err := loadSession(string(enc), want.ID)
		if err != nil {
			t.Fatalf("#%d decode: %v", i, err)
		}
		if sessionUser(string(enc)) != want.User {
			t.Fatalf("#%d sessionUser = %q, want %q", i, sessionUser(string(enc)), want.User)
		}
		if !reflect.DeepEqual(normalize(got), normalize(want)) {
			t.Fatalf("#%d round trip:\n got %+v\nwant %+v", i, got, want)
		}
		// Every truncation is an error, never a panic or a session.
		for n := range len(enc) {
			if s, err := decodeSession(string(enc[:n])); err == nil {
				t.Fatalf("#%d: a record cut to %d of %d bytes decoded to %+v", i, n, len(enc), s)
			} else if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("#%d: %v, want ErrCorrupt", i, err)
			}
		}
	}
	if _, err := loadSession(string(encodeSession(&store.Session{ID: "a", User: "u", State: 1, Expires: time.Now()})), "b"); !errors.Is(err, ErrCorrupt) {
		t.Errorf("a record under another ID: %v, want ErrCorrupt", err)
	}
}

// normalize makes times comparable with DeepEqual (UTC, same location) and
// an empty Pending nil.
func normalize(s *store.Session) store.Session {
	c := *s
	for _, p := range sessionTimes(&c) {
		if p.IsZero() {
			*p = time.Time{}
		} else {
			*p = p.UTC()
		}
	}
	if len(c.Pending) == 0 {
		c.Pending = nil
	}
	return c
}

func FuzzDecodeSession(f *testing.F) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 8 {
		f.Add(encodeSession(randomSession(r)))
	}
	f.Add([]byte{})
	f.Add(make([]byte, 12))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := decodeSession(string(b))
		_ = sessionUser(string(b))
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v is not ErrCorrupt", err)
			}
			return
		}
		if s.ID == "" || s.User == "" || !s.State.Valid() || s.Expires.IsZero() {
			t.Fatalf("decoded an invalid session %+v", s)
		}
		again, err := decodeSession(string(encodeSession(s)))
		if err != nil {
			t.Fatalf("re-encoding a decoded session: %v", err)
		}
		if !reflect.DeepEqual(normalize(again), normalize(s)) {
			t.Fatalf("re-encoded session differs:\n got %+v\nwant %+v", again, s)
		}
	})
}

func TestHelpers(t *testing.T) {
	for _, c := range []struct{ ns, ms int64 }{
		{1, 1}, {1e6, 1}, {1e6 + 1, 2}, {2e6, 2}, {math.MaxInt64, math.MaxInt64/int64(time.Millisecond) + 1}, {0, 1}, {-5, 1},
	} {
		if got := pxat(c.ns); got != c.ms {
			t.Errorf("pxat(%d) = %d, want %d", c.ns, got, c.ms)
		}
	}
	if got := expiryNanos(time.Time{}); got != 1 {
		t.Errorf("expiryNanos(zero) = %d, want 1", got)
	}
	if got := expiryNanos(time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)); got != math.MaxInt64 {
		t.Errorf("expiryNanos(year 3000) = %d, want MaxInt64", got)
	}
	if got := globEscape(`a*b?c[d]e\f`); got != `a\*b\?c\[d\]e\\f` {
		t.Errorf("globEscape = %q", got)
	}
	if exp, err := recordExpiry(be8(12345) + "v"); err != nil || exp != 12345 {
		t.Errorf("recordExpiry = %d, %v", exp, err)
	}
	if _, err := recordExpiry("\xff\xff\xff\xff\xff\xff\xff\xff"); !errors.Is(err, ErrCorrupt) {
		t.Errorf("recordExpiry of a negative expiry: %v, want ErrCorrupt", err)
	}
}
