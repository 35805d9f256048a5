package caddymodule

// Attacks on the sidecar and the identity headers. Each test failed on
// the code before its fix.

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/twostep-auth/twostep/policy"
)

// phpServerKey is the $_SERVER key PHP gives a request header that Caddy's
// php_fastcgi (or FrankenPHP) passes on: Caddy upper-cases the name and
// turns "-" into "_" ("HTTP_REMOTE.USER"), then PHP's
// php_register_variable_ex turns " " and "." into "_" ("HTTP_REMOTE_USER").
func phpServerKey(name string) string {
	return strings.NewReplacer("-", "_", ".", "_", " ", "_").Replace("HTTP_" + strings.ToUpper(name))
}

// urlRecorder is nextRecorder that also keeps the URL the upstream gets.
type urlRecorder struct {
	nextRecorder
	path string
}

func (n *urlRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	n.path = r.URL.EscapedPath()
	return n.nextRecorder.ServeHTTP(w, r)
}

// A client header "Remote.User" is not stripped (isIdentity folds only "_"
// to "-"). Behind `php_fastcgi` it becomes $_SERVER['HTTP_REMOTE_USER'],
// competing with the value twostep sets (Go map order: about one request in
// two) and standing alone on bypass routes.
func TestDotVariantOfIdentityHeaderStripped(t *testing.T) {
	h, svc, _ := testHandler(t, []RuleConfig{{Level: "bypass", Path: []string{"/public/*"}}}, "one_factor")
	tok := signIn(t, svc)
	for _, tc := range []struct{ name, target, cookie string }{
		{"signed in", "/app", tok},
		{"bypass route", "/public/x", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRequest(tc.target, tc.cookie)
			r.Header["Remote.user"] = []string{"admin"}      // as Go canonicalises "Remote.User"
			r.Header["X-Forwarded.user"] = []string{"admin"} // an alias, same trick
			r.Header["Remote.groups"] = []string{"admins"}
			next := &nextRecorder{}
			w := httptest.NewRecorder()
			if err := h.ServeHTTP(w, r, next); err != nil || !next.called {
				t.Fatalf("not passed on: %d %v", w.Code, err)
			}
			for k, v := range next.header {
				switch phpServerKey(k) {
				case "HTTP_REMOTE_USER", "HTTP_REMOTE_GROUPS", "HTTP_X_FORWARDED_USER":
					if k == "Remote-User" || k == "Remote-Groups" {
						continue // ours
					}
					t.Errorf("client header %q: %v reaches the upstream; PHP reads it as $_SERVER[%q]", k, v, phpServerKey(k))
				}
			}
		})
	}
}

// The sidecar reads nginx's X-Original-URL with url.Parse and decides on
// u.RequestURI(), which re-escapes the decoded path whenever the raw one
// holds a byte Go escapes ({, ", |, raw UTF-8…): "%2F" becomes "/". The
// encoded slash SPEC §2 refuses is then resolved as a separator, while
// nginx passes $request_uri, "%2F" and all, to the app.
func TestSidecarNginxEncodedSlashNotReescaped(t *testing.T) {
	h, _, _ := testHandler(t, []RuleConfig{{Level: "bypass", Path: []string{"/public/*"}}}, "two_factor")
	for _, raw := range []string{
		"https://app.example.com/admin%2F..%2Fpublic/x{",
		"https://app.example.com/admin%2F..%2Fpublic/caf\xc3\xa9",
		"https://app.example.com/admin%2Fsecret%2F..%2F..%2Fpublic/x|",
	} {
		t.Run(raw, func(t *testing.T) {
			w := verifyRequest(t, h, map[string]string{"X-Original-URL": raw, "X-Original-Method": "GET"})
			if w.Code == http.StatusOK {
				t.Fatalf("verify answered 200 (bypass) for an encoded slash; want 400 invalid_path: %s", w.Body)
			}
		})
	}
	// Without the extra byte the same path is refused, as it should be.
	w := verifyRequest(t, h, map[string]string{"X-Original-URL": "https://app.example.com/admin%2F..%2Fpublic/x", "X-Original-Method": "GET"})
	if w.Code != http.StatusBadRequest {
		t.Fatalf("control: %d", w.Code)
	}
}

// "//" followed by ".." is resolved merge-first ("/admin//../public/x" is
// "/public/x"), but RFC 3986 remove_dot_segments and the WHATWG URL parser
// (Node's URL, Deno, Bun, Hono, browsers) pop the empty segment and give
// "/admin/public/x". The front proxy forwards the path as sent, so the
// sidecar allows, on a bypass rule, a request the app serves under /admin.
func TestSidecarRefusesDotSegments(t *testing.T) {
	h, _, _ := testHandler(t, []RuleConfig{{Level: "bypass", Path: []string{"/public/*"}}}, "two_factor")
	for _, uri := range []string{"/admin//../public/x", "/admin/users//..//../public/x"} {
		w := verifyRequest(t, h, map[string]string{
			"X-Forwarded-Method": "GET", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "app.example.com", "X-Forwarded-Uri": uri,
		})
		if w.Code == http.StatusOK {
			t.Errorf("%s: verify answered 200 (bypass), though RFC 3986/WHATWG upstreams route it under /admin/", uri)
		}
	}
}

// The handler matches the canonical path (dot segments resolved) but
// passes the request on unchanged: an upstream that routes the raw path
// (Express app.use("/admin", …), Flask "/admin/<path:p>", Laravel
// "admin/{any}" catch-alls: none resolves dot segments) serves
// /admin/… to a stranger through a bypass rule.
func TestHandlerForwardsResolvedDotSegments(t *testing.T) {
	h, _, _ := testHandler(t, []RuleConfig{{Level: "bypass", Path: []string{"/public/*"}}}, "two_factor")
	for _, target := range []string{"/admin/../public/x", "/admin/%2e%2e/public/x", "/admin//../public/x"} {
		r := newRequest(target, "")
		// httptest cleans nothing: r.URL is the path as sent.
		next := &urlRecorder{}
		w := httptest.NewRecorder()
		if err := h.ServeHTTP(w, r, next); err != nil {
			t.Fatal(err)
		}
		if !next.called {
			continue // refused: fine
		}
		canon, _ := policy.CanonicalPath(target, false)
		if next.path != canon {
			t.Errorf("%s: decided as %s (bypass) but the upstream gets %s", target, canon, next.path)
		}
	}
}

// nginx's X-Original-URL may carry a non-ASCII Host (nginx only checks
// for a few bytes and lower-cases ASCII; a Host matching no server_name
// goes to the default or wildcard server, the protected app).
// CanonicalHost folds "İ" to "i", so the sidecar applies the rules of
// public.example.com to it.
func TestSidecarRefusesNonASCIIHost(t *testing.T) {
	h, _, _ := testHandler(t, []RuleConfig{{Level: "bypass", Host: []string{"public.example.com"}}}, "two_factor")
	w := verifyRequest(t, h, map[string]string{"X-Original-URL": "https://PUBL\u0130C.example.com/admin/", "X-Original-Method": "GET"})
	if w.Code == http.StatusOK {
		t.Fatalf("verify answered 200 (bypass host public.example.com) for Host PUBL\u0130C.example.com")
	}
}

// verifyRequest asks h's sidecar endpoint, from a trusted proxy, with the
// given forwarded headers.
func verifyRequest(t *testing.T, h *Handler, hdr map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "/.twostep/api/verify", nil)
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	ctx := context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer())
	ctx = context.WithValue(ctx, caddyhttp.VarsCtxKey, map[string]any{caddyhttp.TrustedProxyVarKey: true, caddyhttp.ClientIPVarKey: "10.0.0.5"})
	r = r.WithContext(ctx)
	w := httptest.NewRecorder()
	next := &nextRecorder{}
	if err := h.ServeHTTP(w, r, next); err != nil {
		t.Fatal(err)
	}
	if next.called {
		t.Fatal("the verify endpoint reached the next handler")
	}
	return w
}
