package recoveryui

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestSameOrigin(t *testing.T) {
	plain := &Portal{}
	sso := &Portal{CookieDomain: "example.com"}
	cases := []struct {
		name   string
		p      *Portal
		secure bool
		host   string
		hdr    map[string]string
		want   bool
	}{
		{"no headers (script)", plain, false, "app.example.com", nil, true},
		{"same origin", plain, false, "app.example.com", map[string]string{"Origin": "http://app.example.com"}, true},
		{"same origin with port", plain, false, "localhost:8080", map[string]string{"Origin": "http://localhost:8080"}, true},
		{"other port", plain, false, "localhost:8080", map[string]string{"Origin": "http://localhost:8081"}, false},
		{"other scheme", plain, true, "app.example.com", map[string]string{"Origin": "http://app.example.com"}, false},
		{"other host", plain, false, "app.example.com", map[string]string{"Origin": "http://evil.example"}, false},
		{"null origin alone", plain, false, "app.example.com", map[string]string{"Origin": "null"}, false},
		{"null origin from our own form (no-referrer)", plain, false, "app.example.com", map[string]string{"Origin": "null", "Sec-Fetch-Site": "same-origin"}, true},
		{"null origin from a sandboxed frame elsewhere", plain, false, "app.example.com", map[string]string{"Origin": "null", "Sec-Fetch-Site": "cross-site"}, false},
		{"same-origin fetch with a foreign Origin", plain, false, "app.example.com", map[string]string{"Origin": "https://evil.example", "Sec-Fetch-Site": "same-origin"}, false},
		{"same-site fetch from outside the cookie domain", sso, true, "auth.example.com", map[string]string{"Origin": "https://evil.example", "Sec-Fetch-Site": "same-site"}, false},
		{"fetch same-origin", plain, false, "a", map[string]string{"Sec-Fetch-Site": "same-origin"}, true},
		{"fetch none", plain, false, "a", map[string]string{"Sec-Fetch-Site": "none"}, true},
		{"fetch same-site without cookie domain", plain, false, "a", map[string]string{"Sec-Fetch-Site": "same-site"}, false},
		{"fetch cross-site", plain, false, "a", map[string]string{"Sec-Fetch-Site": "cross-site"}, false},
		{"subdomain over https with cookie domain", sso, true, "auth.example.com", map[string]string{"Origin": "https://app.example.com"}, true},
		{"cookie domain itself", sso, true, "auth.example.com", map[string]string{"Origin": "https://example.com"}, true},
		{"subdomain over http is not allowed", sso, true, "auth.example.com", map[string]string{"Origin": "http://app.example.com"}, false},
		{"suffix is not a subdomain", sso, true, "auth.example.com", map[string]string{"Origin": "https://evilexample.com"}, false},
		{"fetch same-site with cookie domain", sso, true, "auth.example.com", map[string]string{"Sec-Fetch-Site": "same-site"}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "http://"+tc.host+"/.twostep/api/login", nil)
			for k, v := range tc.hdr {
				r.Header.Set(k, v)
			}
			if got := tc.p.sameOrigin(r, Env{Secure: tc.secure}); got != tc.want {
				t.Fatalf("sameOrigin = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestSecurityHeaders(t *testing.T) {
	h := http.Header{}
	setSecurityHeaders(h, "")
	csp := h.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "frame-ancestors 'none'", "form-action 'self'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "script-src") {
		t.Errorf("CSP allows script: %q", csp)
	}
	if h.Get("X-Frame-Options") != "DENY" || h.Get("Referrer-Policy") != "no-referrer" || h.Get("Cache-Control") != "no-store" {
		t.Errorf("headers %v", h)
	}
	h = http.Header{}
	setSecurityHeaders(h, "example.com")
	if !strings.Contains(h.Get("Content-Security-Policy"), "https://*.example.com") {
		t.Errorf("with a cookie domain, forms may post to its subdomains: %q", h.Get("Content-Security-Policy"))
	}
}

// Over HTTPS the cookies carry a prefix the browser enforces: __Host- (set
// by this origin only) without a cookie domain, __Secure- with one, so that
// no plain-HTTP response for any subdomain (one without HSTS, or a network
// attacker's) can plant a session of the attacker's, or a device cookie.
func TestCookieNames(t *testing.T) {
	for _, c := range []struct {
		secure          bool
		domain          string
		session, device string
	}{
		{true, "", "__Host-twostep", "__Host-twostep_device"},
		{true, "example.com", "__Secure-twostep", "__Secure-twostep_device"},
		{false, "", "twostep", "twostep_device"},
		{false, "example.com", "twostep", "twostep_device"},
	} {
		if got := SessionCookieName(c.secure, c.domain); got != c.session {
			t.Errorf("session cookie (secure %v, domain %q) = %q, want %q", c.secure, c.domain, got, c.session)
		}
		if got := DeviceCookieName(c.secure, c.domain); got != c.device {
			t.Errorf("device cookie (secure %v, domain %q) = %q, want %q", c.secure, c.domain, got, c.device)
		}
		if !IsOwnCookie(c.session) || !IsOwnCookie(c.device) {
			t.Errorf("%s or %s is not stripped before the upstream", c.session, c.device)
		}
	}
	// A planted unprefixed cookie is not the session over HTTPS.
	p := &Portal{CookieDomain: "example.com"}
	h := http.Header{"Cookie": {"twostep=planted"}}
	if got := p.SessionToken(&http.Request{Header: h}, true); got != "" {
		t.Errorf("over HTTPS with a cookie domain, a plain twostep cookie was read as the session: %q", got)
	}
}

func TestRetryAfter(t *testing.T) {
	for d, want := range map[time.Duration]string{0: "1", 300 * time.Millisecond: "1", time.Second: "1", 1500 * time.Millisecond: "2", 15 * time.Minute: "900"} {
		if got := retryAfterSeconds(d); got != want {
			t.Errorf("retryAfterSeconds(%v) = %s, want %s", d, got, want)
		}
	}
	if humanDuration(90*time.Second) != "2 minutes" || humanDuration(time.Second) != "1 second" {
		t.Error("humanDuration")
	}
}

func TestCookieValue(t *testing.T) {
	h := http.Header{"Cookie": {"a=1; twostep_device=dev; twostep=tok", "twostep=second"}}
	for name, want := range map[string]string{"twostep": "tok", "twostep_device": "dev", "a": "1", "twoste": "", "missing": ""} {
		if got := cookieValue(h, name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	if got := cookieValue(http.Header{"Cookie": {`twostep="quoted"`}}, "twostep"); got != "quoted" {
		t.Errorf("quoted value: %q", got)
	}
	// The same answers as net/http for well-formed cookies.
	r := httptest.NewRequest("GET", "/", nil)
	r.Header["Cookie"] = []string{"x=1;  twostep=abc ; y=2"}
	c, _ := r.Cookie("twostep")
	if got := cookieValue(r.Header, "twostep"); got != c.Value {
		t.Errorf("%q, net/http says %q", got, c.Value)
	}
}

func TestWantsHTML(t *testing.T) {
	for _, c := range []struct {
		accept []string
		want   bool
	}{
		{nil, false},
		{[]string{""}, false},
		{[]string{"application/json"}, false},
		{[]string{"*/*"}, false},
		{[]string{"text/html"}, true},
		{[]string{"TEXT/HTML"}, true},
		{[]string{"Text/Html; charset=utf-8"}, true},
		{[]string{"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}, true},
		{[]string{"application/json", "text/html;q=0.5"}, true},
		{[]string{"text/html;q=0"}, false},
		{[]string{"text/html; q=0.000, application/json"}, false},
		{[]string{"text/html;q=0, text/html;q=1"}, true},
		{[]string{"text/htmlx"}, false},
		{[]string{"application/text/html"}, false},
		{[]string{"text/html;q=bogus"}, true},
	} {
		h := http.Header{}
		for _, v := range c.accept {
			h.Add("Accept", v)
		}
		if got := WantsHTML(h); got != c.want {
			t.Errorf("WantsHTML(Accept: %q) = %v, want %v", c.accept, got, c.want)
		}
	}
}

// FuzzWantsHTML: any Accept header is read without a panic, and a header
// that does not mention text/html in any case is never a browser's.
func FuzzWantsHTML(f *testing.F) {
	f.Add("text/html,application/xhtml+xml;q=0.9")
	f.Add("text/html;q=0")
	f.Add(";;,,=q")
	f.Fuzz(func(t *testing.T, accept string) {
		got := WantsHTML(http.Header{"Accept": {accept}})
		if got && !strings.Contains(strings.ToLower(accept), "text/html") {
			t.Fatalf("WantsHTML(%q) without text/html", accept)
		}
	})
}

// The session cookie is a browser-session cookie (REQ-48): no Expires or
// Max-Age, so closing the browser ends it; the trusted-device cookie is
// the one that outlives a restart. Deleting either sets Max-Age=0.
func TestSessionCookieLifetime(t *testing.T) {
	p := &Portal{}
	for _, secure := range []bool{false, true} {
		w := httptest.NewRecorder()
		p.setSession(w, Env{Secure: secure}, "tok", time.Now().Add(12*time.Hour))
		p.setDevice(w, Env{Secure: secure}, "dev", time.Now().Add(30*24*time.Hour))
		set := w.Header().Values("Set-Cookie")
		if len(set) != 2 {
			t.Fatalf("Set-Cookie %q", set)
		}
		if strings.Contains(set[0], "Expires=") || strings.Contains(set[0], "Max-Age") || !strings.HasPrefix(set[0], SessionCookieName(secure, "")+"=tok") {
			t.Errorf("session cookie (secure %v): %q, want no Expires or Max-Age", secure, set[0])
		}
		if !strings.Contains(set[1], "Expires=") {
			t.Errorf("device cookie (secure %v): %q, want an Expires", secure, set[1])
		}
		w = httptest.NewRecorder()
		p.setSession(w, Env{Secure: secure}, "", time.Time{})
		if got := w.Header().Get("Set-Cookie"); !strings.Contains(got, "Max-Age=0") {
			t.Errorf("deleting the session cookie: %q", got)
		}
	}
}

// Pages reached over HTTPS ask the browser to stay on HTTPS (HSTS,
// REQ-88); over plain HTTP the header would be ignored and is not sent.
func TestTransportSecurity(t *testing.T) {
	for _, secure := range []bool{false, true} {
		p := &Portal{Env: func(*http.Request) Env { return Env{Secure: secure} }}
		w := httptest.NewRecorder()
		p.RenderError(w, httptest.NewRequest(http.MethodGet, "/app", nil), http.StatusForbidden, "forbidden", "no")
		got := w.Header().Get("Strict-Transport-Security")
		if secure && got != "max-age=31536000" || !secure && got != "" {
			t.Errorf("secure %v: Strict-Transport-Security %q", secure, got)
		}
	}
}
