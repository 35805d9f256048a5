package caddymodule

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/twostep-auth/twostep/account"
	"github.com/twostep-auth/twostep/internal/store/bolt"
	"github.com/twostep-auth/twostep/internal/store/cache"
	"github.com/twostep-auth/twostep/internal/users"
	"github.com/twostep-auth/twostep/policy"
	"github.com/twostep-auth/twostep/recoveryui"
)

// testHandler builds a handler around a real bolt store and users file,
// without a running Caddy.
func testHandler(tb testing.TB, rules []RuleConfig, def string) (*Handler, *account.Service, *bolt.DB) {
	tb.Helper()
	dir := tb.TempDir()
	hash, err := users.Hash("pw-for-tests", users.Algorithm("bcrypt"))
	if err != nil {
		tb.Fatal(err)
	}
	uf := filepath.Join(dir, "users.yml")
	if err := os.WriteFile(uf, []byte("users:\n  alice:\n    displayname: Alice\n    email: a@example.com\n    groups: [admins, staff]\n    password: \""+hash+"\"\n"), 0o600); err != nil {
		tb.Fatal(err)
	}
	f, err := users.Open(uf, zap.NewNop())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { f.Close() })
	st, err := bolt.Open(filepath.Join(dir, "t.db"), bolt.Options{NoSync: true})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	svc, err := account.New(account.Config{
		SessionIdle: time.Hour, SessionLifetime: 12 * time.Hour,
		Regulation: account.Regulation{MaxRetries: 5, FindTime: time.Minute, BanTime: time.Minute},
		Secret:     []byte("0123456789abcdef0123456789abcdef"),
	}, cache.New(st, 5*time.Minute, account.CachedPrefixes...), f, nil, nil)
	if err != nil {
		tb.Fatal(err)
	}
	h := &Handler{Rules: rules, Default: def}
	if h.policy, err = h.compile(); err != nil {
		tb.Fatal(err)
	}
	if h.set, err = newHeaderSet(nil); err != nil {
		tb.Fatal(err)
	}
	h.logger = zap.NewNop()
	h.app = &App{run: new(appRun)}
	h.app.run.service.Store(svc)
	h.portal = &recoveryui.Portal{Env: requestEnv, Log: zap.NewNop()}
	return h, svc, st
}

type nextRecorder struct {
	called bool
	header http.Header
}

func (n *nextRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	n.called = true
	n.header = r.Header
	return nil
}

func newRequest(target, cookie string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, target, nil)
	if cookie != "" {
		r.Header.Set("Cookie", "twostep="+cookie)
	}
	repl := caddy.NewReplacer()
	ctx := context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl)
	ctx = context.WithValue(ctx, caddyhttp.VarsCtxKey, map[string]any{caddyhttp.ClientIPVarKey: "192.0.2.10"})
	return r.WithContext(ctx)
}

func signIn(tb testing.TB, svc *account.Service) string {
	tb.Helper()
	res, err := svc.SignIn(context.Background(), "alice", "pw-for-tests", account.Client{})
	if err != nil {
		tb.Fatal(err)
	}
	return res.Token
}

func TestHandlerDecisions(t *testing.T) {
	h, svc, _ := testHandler(t, []RuleConfig{
		{Level: "bypass", Path: []string{"/public/*"}},
		{Level: "deny", Path: []string{"/internal/*"}},
		{Level: "one_factor", Path: []string{"/staff/*"}, Group: []string{"nobody"}},
	}, "one_factor")
	tok := signIn(t, svc)
	cases := []struct {
		name, target, cookie string
		status               int
		next                 bool
	}{
		{"bypass without session", "/public/a", "", 200, true},
		{"deny", "/internal/a", tok, 403, false},
		{"stranger", "/app", "", 401, false},
		{"bad cookie is a stranger", "/app", "garbage", 401, false},
		{"signed in", "/app", tok, 200, true},
		{"group requirement", "/staff/a", tok, 403, false},
		{"ambiguous path", "/public/..%2Finternal", tok, 400, false},
		{"; parameters: bypass only if both views bypass", "/public;x/a", "", 401, false},
		{"; parameters: signed in passes both views", "/public;x/a", tok, 200, true},
		{"; parameters: Java view of a denied path", "/internal;x=1/a", tok, 403, false},
		{"jsessionid on a bypass page stays bypass", "/public/a;jsessionid=1", "", 200, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			next := &nextRecorder{}
			r := newRequest(tc.target, tc.cookie)
			r.Header.Set("Remote_User", "mallory")
			if err := h.ServeHTTP(w, r, next); err != nil {
				t.Fatal(err)
			}
			if next.called != tc.next || (!tc.next && w.Code != tc.status) {
				t.Fatalf("status %d next %v, want %d next %v: %s", w.Code, next.called, tc.status, tc.next, w.Body)
			}
			if tc.next {
				for k := range next.header {
					if strings.EqualFold(strings.ReplaceAll(k, "_", "-"), "remote-user") && k != "Remote-User" {
						t.Fatalf("client header %s survived", k)
					}
				}
				want := ""
				if tc.cookie != "" {
					want = "alice"
				}
				if got := next.header.Get("Remote-User"); got != want {
					t.Fatalf("Remote-User %q, want %q", got, want)
				}
			}
		})
	}
	t.Run("store down answers 503, never allow", func(t *testing.T) {
		h2, svc2, st := testHandler(t, []RuleConfig{{Level: "bypass", Path: []string{"/public/*"}}, {Level: "deny", Path: []string{"/internal/*"}}}, "one_factor")
		tok2 := signIn(t, svc2)
		// Closing the store makes every call fail as a dead backend would.
		st.Close()
		w := httptest.NewRecorder()
		next := &nextRecorder{}
		if err := h2.ServeHTTP(w, newRequest("/app", tok2), next); err != nil {
			t.Fatal(err)
		}
		if next.called || w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), `"unavailable"`) {
			t.Fatalf("store down: %d next=%v %s", w.Code, next.called, w.Body)
		}
		for target, want := range map[string]int{"/public/x": 200, "/internal/x": 403} {
			w := httptest.NewRecorder()
			next := &nextRecorder{}
			_ = h2.ServeHTTP(w, newRequest(target, tok2), next)
			if (want == 200) != next.called || (want == 403 && w.Code != 403) {
				t.Fatalf("%s with the store down: %d next=%v", target, w.Code, next.called)
			}
		}
	})
	t.Run("app not running answers 503", func(t *testing.T) {
		h3, _, _ := testHandler(t, nil, "one_factor")
		h3.app.run.service.Store(nil)
		w := httptest.NewRecorder()
		next := &nextRecorder{}
		_ = h3.ServeHTTP(w, newRequest("/app", "x"), next)
		if next.called || w.Code != http.StatusServiceUnavailable {
			t.Fatalf("%d next=%v", w.Code, next.called)
		}
	})
}

func TestHeaderStrip(t *testing.T) {
	hs, _ := newHeaderSet(nil)
	h := http.Header{
		"Remote-User": {"a", "b"}, "Remote_user": {"c"}, "REMOTE_GROUPS": {"admins"}, "X-Forwarded-User": {"x"},
		"X-Webauth-User": {"x"}, "Accept": {"*/*"}, "Connection": {"keep-alive, Remote-User", "remote_groups"},
	}
	hs.strip(h)
	hs.apply(h, "alice", "g", "e", "n")
	if len(h["Remote-User"]) != 1 || h["Remote-User"][0] != "alice" {
		t.Fatalf("Remote-User %v", h["Remote-User"])
	}
	for _, k := range []string{"Remote_user", "REMOTE_GROUPS", "X-Forwarded-User", "X-Webauth-User"} {
		if _, ok := h[k]; ok {
			t.Errorf("%s survived", k)
		}
	}
	if got := h["Connection"]; len(got) != 1 || got[0] != "keep-alive" {
		t.Errorf("Connection %v", got)
	}
	if h.Get("Accept") != "*/*" {
		t.Error("an unrelated header was removed")
	}
	// The values share one array: appending to one must not reach another.
	h["Remote-User"] = append(h["Remote-User"], "mallory")
	if g := h["Remote-Groups"]; len(g) != 1 || g[0] != "g" {
		t.Errorf("Remote-Groups %v after an append to Remote-User", g)
	}
}

// FuzzHeaderSanitizer: after strip and apply, no header whose name
// normalises to an identity header survives except exactly our values.
func FuzzHeaderSanitizer(f *testing.F) {
	f.Add("Remote_User", "evil")
	f.Add("REMOTE-GROUPS", "admins")
	f.Add("x-forwarded-user", "x")
	f.Add("Connection", "Remote-User")
	hs, _ := newHeaderSet(nil)
	f.Fuzz(func(t *testing.T, name, value string) {
		h := http.Header{}
		h[name] = []string{value}
		h["Connection"] = []string{value}
		hs.strip(h)
		hs.apply(h, "alice", "g", "e", "n")
		for k, v := range h {
			if !naiveIdentity(k) {
				continue
			}
			switch k {
			case "Remote-User", "Remote-Groups", "Remote-Email", "Remote-Name":
				if len(v) != 1 {
					t.Fatalf("%s has %d values", k, len(v))
				}
			default:
				t.Fatalf("identity header %q survived", k)
			}
		}
		for _, c := range h["Connection"] {
			for _, tok := range strings.Split(c, ",") {
				if naiveIdentity(strings.TrimSpace(tok)) {
					t.Fatalf("Connection still names %q", tok)
				}
			}
		}
	})
}

// naiveIdentity is isIdentity written the slow, obvious way: the oracle of
// FuzzHeaderSanitizer.
func naiveIdentity(name string) bool {
	n := strings.Map(func(r rune) rune {
		switch {
		case r >= 'A' && r <= 'Z':
			return r + 'a' - 'A'
		case r == '_':
			return '-'
		}
		return r
	}, name)
	return slices.Contains(identityAliases, n)
}

func TestAliasLengths(t *testing.T) {
	for _, a := range identityAliases {
		if len(a) == 0 || len(a) > maxAliasLen || strings.ToLower(a) != a || strings.Contains(a, "_") {
			t.Errorf("alias %q: want 1 to %d bytes of lower case, with - not _", a, maxAliasLen)
		}
	}
	hs, _ := newHeaderSet(nil)
	for _, tc := range []struct {
		name string
		want bool
	}{
		{"Remote-User", true}, {"REMOTE_USER", true}, {"x-user", true}, {"X_Auth_Request_Preferred_Username", true},
		{"Accept", false}, {"Referer", false}, {"Remote-Users", false}, {"X-Use", false}, {"", false},
		{"remote-user\x00", false},
	} {
		if got := hs.isIdentity(tc.name); got != tc.want || got != naiveIdentity(tc.name) {
			t.Errorf("isIdentity(%q) = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// FuzzForwardedOriginal: the sidecar's reading of forwarded headers never
// panics, and what it accepts is a path on a plain host.
func FuzzForwardedOriginal(f *testing.F) {
	f.Add("https://app.example.com/x?y=1", "", "", "", "GET")
	f.Add("", "https", "app.example.com", "/a/b", "POST")
	f.Add("javascript:alert(1)", "", "", "", "")
	f.Fuzz(func(t *testing.T, original, proto, host, uri, method string) {
		r := httptest.NewRequest(http.MethodGet, "/.twostep/api/verify", nil)
		for k, v := range map[string]string{"X-Original-URL": original, "X-Forwarded-Proto": proto, "X-Forwarded-Host": host, "X-Forwarded-Uri": uri, "X-Forwarded-Method": method} {
			if v != "" {
				r.Header[k] = []string{v}
			}
		}
		r = r.WithContext(context.WithValue(r.Context(), caddyhttp.VarsCtxKey, map[string]any{caddyhttp.TrustedProxyVarKey: true}))
		o, err := forwardedOriginal(r)
		if err != nil {
			return
		}
		if !strings.HasPrefix(o.path, "/") || strings.ContainsAny(o.host, "/\\@ ") || (o.scheme != "http" && o.scheme != "https") {
			t.Fatalf("accepted %+v", o)
		}
	})
}

// caddyRequest is r as Caddy's server hands it to a handler: with a fresh
// replacer and vars in its context. Building it costs what Caddy itself
// spends on every request; the baseline below pays it too.
func caddyRequest(r *http.Request) *http.Request {
	ctx := context.WithValue(context.Background(), caddy.ReplacerCtxKey, caddy.NewReplacer())
	ctx = context.WithValue(ctx, caddyhttp.VarsCtxKey, map[string]any{caddyhttp.ClientIPVarKey: "192.0.2.10"})
	return r.WithContext(ctx)
}

// BenchmarkBaseline is the floor: a request as Caddy builds it, through
// the next handler alone.
func BenchmarkBaseline(b *testing.B) {
	next := &nextRecorder{}
	r := newRequest("/app/page", "")
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		_ = next.ServeHTTP(w, caddyRequest(r))
	}
}

// signedInRun returns one signed-in request through the handler (cookie,
// keyed hash, cached session, Decide, headers, placeholders) and the
// baseline's allocations per run.
func signedInRun(tb testing.TB) (run func(), baseline float64) {
	h, svc, _ := testHandler(tb, []RuleConfig{
		{Level: "bypass", Path: []string{"/health"}},
		{Level: "deny", Path: []string{"/internal/*"}},
	}, "one_factor")
	tok := signIn(tb, svc)
	next := &nextRecorder{}
	r := newRequest("/app/page", tok)
	cookie := r.Header["Cookie"] // the handler removes it before the upstream
	w := httptest.NewRecorder()
	run = func() {
		next.called = false
		r.Header["Cookie"] = cookie
		if err := h.ServeHTTP(w, caddyRequest(r), next); err != nil || !next.called {
			tb.Fatal("not allowed")
		}
		if next.header.Get("Remote-User") != "alice" {
			tb.Fatal("no Remote-User")
		}
	}
	run()
	baseline = testing.AllocsPerRun(100, func() { _ = next.ServeHTTP(w, caddyRequest(r)) })
	return run, baseline
}

// BenchmarkHandlerSignedIn is the hot path; "added-allocs/op" is what the
// handler allocates beyond BenchmarkBaseline's request.
func BenchmarkHandlerSignedIn(b *testing.B) {
	run, baseline := signedInRun(b)
	total := testing.AllocsPerRun(100, run)
	b.ReportAllocs()
	for b.Loop() {
		run()
	}
	b.ReportMetric(total-baseline, "added-allocs/op")
}

// The budget: at most 3 allocations per signed-in request over
// Caddy's own (the session id, the identity headers' values, and one to
// spare). Counting allocations is exact, not a timing.
func TestHandlerSignedInAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	run, baseline := signedInRun(t)
	if added := testing.AllocsPerRun(200, run) - baseline; added > 3 {
		t.Fatalf("the handler allocates %.1f times per signed-in request over Caddy's own; the budget is 3", added)
	}
}

// BenchmarkHandlerBypass: a bypass route costs no store lookup.
func BenchmarkHandlerBypass(b *testing.B) {
	h, _, _ := testHandler(b, []RuleConfig{{Level: "bypass", Path: []string{"/health"}}}, "one_factor")
	next := &nextRecorder{}
	r := newRequest("/health", "")
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		_ = h.ServeHTTP(w, r, next)
	}
}

// The sidecar reads one proxy's headers: a request that also carries the
// other family, or any of them twice, is refused (the extra one may be
// the client's, passed on by the proxy).
func TestForwardedOriginalAmbiguous(t *testing.T) {
	caddyHdr := [][2]string{{"X-Forwarded-Method", "GET"}, {"X-Forwarded-Proto", "https"}, {"X-Forwarded-Host", "app.example.com"}, {"X-Forwarded-Uri", "/reports"}}
	nginxHdr := [][2]string{{"X-Original-URL", "https://app.example.com/reports"}, {"X-Original-Method", "POST"}}
	for _, c := range []struct {
		name    string
		headers [][2]string
		want    error
		method  string
		path    string
	}{
		{"caddy", caddyHdr, nil, "GET", "/reports"},
		{"nginx", nginxHdr, nil, "POST", "/reports"},
		{"nginx without method", nginxHdr[:1], nil, "GET", "/reports"},
		{"caddy ignores X-Original-Method", append(slices.Clone(caddyHdr), [2]string{"X-Original-Method", "DELETE"}), nil, "GET", "/reports"},
		{"nginx ignores X-Forwarded-Host/Proto", append(slices.Clone(nginxHdr), [2]string{"X-Forwarded-Host", "evil.example"}, [2]string{"X-Forwarded-Proto", "http"}), nil, "POST", "/reports"},
		{"client X-Original-URL through Caddy", append(slices.Clone(caddyHdr), [2]string{"X-Original-URL", "https://app.example.com/public/x"}), errForwardedAmbiguous, "", ""},
		{"client X-Forwarded-Uri through nginx", append(slices.Clone(nginxHdr), [2]string{"X-Forwarded-Uri", "/public/x"}), errForwardedAmbiguous, "", ""},
		{"client X-Forwarded-Method through nginx", append(slices.Clone(nginxHdr), [2]string{"X-Forwarded-Method", "GET"}), errForwardedAmbiguous, "", ""},
		{"X-Forwarded-Uri twice", append(slices.Clone(caddyHdr), [2]string{"X-Forwarded-Uri", "/public/x"}), errForwardedAmbiguous, "", ""},
		{"X-Original-URL twice", append(slices.Clone(nginxHdr), [2]string{"X-Original-URL", "https://app.example.com/public/x"}), errForwardedAmbiguous, "", ""},
		{"X-Original-Method twice", append(slices.Clone(nginxHdr), [2]string{"X-Original-Method", "GET"}), errForwardedAmbiguous, "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/.twostep/api/verify", nil)
			for _, h := range c.headers {
				r.Header.Add(h[0], h[1])
			}
			r = r.WithContext(context.WithValue(r.Context(), caddyhttp.VarsCtxKey, map[string]any{caddyhttp.TrustedProxyVarKey: true}))
			o, err := forwardedOriginal(r)
			if !errors.Is(err, c.want) || (c.want == nil && err != nil) {
				t.Fatalf("forwardedOriginal = %+v, %v; want error %v", o, err, c.want)
			}
			if err == nil && (o.method != c.method || o.path != c.path) {
				t.Fatalf("read %s %s, want %s %s", o.method, o.path, c.method, c.path)
			}
		})
	}
}

// An encoded "/" is refused even when another byte in the path makes Go
// re-escape it (RawPath invalid), so that r.URL shows "/" instead.
func TestEncodedSeparatorHiddenByReescaping(t *testing.T) {
	for _, c := range []struct {
		target string
		hidden bool
	}{
		{"/internal%2Fx{", true},
		{"/internal%2Fx", true},
		{"/public/x%2F..%2Fy{", true},
		{"/a%5cb|", true},
		{"http://example.com/internal%2fx{", true},
		{"/internal/x{", false},
		{"/plain/path", false},
		{"/caf%C3%A9", false},
		{"/a%20b{", false},
	} {
		r := httptest.NewRequest(http.MethodGet, c.target, nil)
		_, err := policy.CanonicalPath(r.URL.EscapedPath(), false)
		if got := err != nil || hidesEncodedSeparator(r); got != c.hidden {
			t.Errorf("%s: refused = %v (URL.Path %q, RawPath %q), want %v", c.target, got, r.URL.Path, r.URL.RawPath, c.hidden)
		}
	}
}
