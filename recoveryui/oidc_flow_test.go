package recoveryui

import (
	"context"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twostep-auth/twostep/account"
	"github.com/twostep-auth/twostep/internal/oidc"
	"github.com/twostep-auth/twostep/internal/oidc/oidctest"
	"github.com/twostep-auth/twostep/internal/store/bolt"
	"github.com/twostep-auth/twostep/internal/users"
)

// The provider sign-in flow through the portal, against an in-process OP.

type staticUsers struct{ db *users.DB }

func (d staticUsers) DB() *users.DB { return d.db }

const flowHost = "app.example.test"

// oidcPortal is a portal on https://app.example.test with one provider
// ("example", unknown users allowed) at an in-process OP that knows the
// user mallory.
func oidcPortal(t *testing.T) (*Portal, *oidctest.Server, *account.Service) {
	t.Helper()
	return oidcPortalWith(t, "",
		[]oidctest.User{{Username: "mallory", Password: "pw-mallory", Email: "mallory@example.test", EmailVerified: true}},
		func(c *oidc.Config, _ *users.DB) { c.AllowUnknownUsers = true })
}

// aliceEntry is the users-file entry of alice (password never used here).
const aliceEntry = "users:\n  alice:\n    password: \"$2a$04$0123456789012345678901uQ9Q9lq0Ew6xQn5Y8m0C9bQ1i3rHq3a\"\n"

// oidcPortalWith is oidcPortal with alice's entry followed by extra, the
// OP's users, and the provider's configuration changed by provider.
func oidcPortalWith(t *testing.T, extra string, opUsers []oidctest.User, provider func(*oidc.Config, *users.DB)) (*Portal, *oidctest.Server, *account.Service) {
	t.Helper()
	callback := "https://" + flowHost + Prefix + "oidc/example/callback"
	op := oidctest.NewServer(t, oidctest.Options{
		Clients: []oidctest.Client{{ID: "twostep", Secret: "client-secret", RedirectURIs: []string{callback}}},
		Users:   opUsers,
	})
	st, err := bolt.Open(filepath.Join(t.TempDir(), "t.db"), bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	db, err := users.Parse([]byte(aliceEntry + extra))
	if err != nil {
		t.Fatal(err)
	}
	svc, err := account.New(account.Config{
		SessionIdle: 30 * time.Minute, SessionLifetime: 12 * time.Hour,
		Regulation: account.Regulation{MaxRetries: 3, FindTime: 10 * time.Minute, BanTime: 15 * time.Minute},
		Secret:     []byte("0123456789abcdef0123456789abcdef"),
		Providers:  []string{"example"},
	}, st, staticUsers{db}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := oidc.Config{Name: "example", Issuer: op.Issuer, ClientID: "twostep", ClientSecret: "client-secret"}
	provider(&cfg, db)
	pr, err := oidc.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p := &Portal{Account: svc, Providers: []*oidc.Provider{pr}, Env: func(*http.Request) Env { return Env{Secure: true} }}
	return p, op, svc
}

// startFlow presses the login button and returns the portal's answer.
func startFlow(t *testing.T, p *Portal, svc *account.Service) *httptest.ResponseRecorder {
	t.Helper()
	csrf := strings.Repeat("c", 43)
	form := url.Values{"csrf": {svc.CSRFToken(csrf)}, "return": {"/"}}
	r := httptest.NewRequest(http.MethodPost, "https://"+flowHost+Prefix+"oidc/example", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.AddCookie(&http.Cookie{Name: csrfCookieName(true), Value: csrf})
	w := httptest.NewRecorder()
	p.ServeHTTP(w, r)
	if w.Code != http.StatusSeeOther {
		t.Fatalf("login button: %d %s", w.Code, w.Body)
	}
	return w
}

// atProvider plays mallory's own browser at the OP and stops at the
// redirect back to the portal: the callback URL with her code and state.
func atProvider(t *testing.T, op *oidctest.Server, authURL, user, pw string) *url.URL {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	var back *url.URL
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second, CheckRedirect: func(req *http.Request, _ []*http.Request) error {
		if req.URL.Host == flowHost {
			back = req.URL
			return http.ErrUseLastResponse
		}
		return nil
	}}
	resp, err := c.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	id := resp.Request.URL.Query().Get("authRequestID")
	if id == "" {
		t.Fatalf("no login page at the OP: %s", resp.Request.URL)
	}
	resp, err = c.PostForm(op.Issuer+"/login", url.Values{"id": {id}, "username": {user}, "password": {pw}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if back == nil || back.Query().Get("code") == "" {
		t.Fatalf("the OP did not redirect back with a code (%s)", resp.Status)
	}
	return back
}

// Login CSRF by cookie tossing. The flow cookie is the only thing that
// binds a callback to the browser that started the flow, yet on HTTPS it is
// a plain `twostep_oidc` cookie, which any sibling subdomain
// (Domain=example.test) or a network attacker over plain http can plant,
// with a longer Path so that it is sent first. The session and device
// cookies are __Host- for exactly this reason. Attack: mallory starts a
// flow in her browser, signs in at the provider, stops before the callback,
// plants her flow key in the victim's browser and sends the victim to the
// callback URL: the victim is now signed in as mallory (and types her data
// into mallory's account). Expected: on HTTPS without cookie_domain the flow
// cookie is __Host- prefixed, and a plain `twostep_oidc` is not honoured.
func TestOIDCFlowCookieCannotBeTossed(t *testing.T) {
	p, op, _ := oidcPortal(t)
	svc := p.Account

	// Mallory, in her own browser.
	w := startFlow(t, p, svc)
	var key string
	for _, c := range w.Result().Cookies() {
		if strings.HasSuffix(c.Name, oidcCookie) {
			key = c.Value
			if c.Name != "__Host-"+oidcCookie || c.Path != "/" || c.Domain != "" {
				t.Errorf("flow cookie on HTTPS: name %q path %q domain %q, want __Host-%s, Path=/, no Domain", c.Name, c.Path, c.Domain, oidcCookie)
			}
		}
	}
	if key == "" {
		t.Fatal("no flow cookie")
	}
	back := atProvider(t, op, w.Header().Get("Location"), "mallory", "pw-mallory")

	// The victim's browser: a tossed cookie, as a sibling subdomain sets it
	// (Set-Cookie: twostep_oidc=KEY; Domain=example.test; Path=/.twostep/oidc/example/callback; Secure).
	r := httptest.NewRequest(http.MethodGet, back.String(), nil)
	r.Header.Set("Accept", "text/html")
	r.Header.Set("Cookie", oidcCookie+"="+key)
	w = httptest.NewRecorder()
	p.ServeHTTP(w, r)
	for _, c := range w.Result().Cookies() {
		if c.Name == SessionCookieName(true, "") && c.Value != "" {
			res, err := svc.Resolve(context.Background(), c.Value)
			if err == nil {
				t.Errorf("a tossed flow cookie signed the victim's browser in as %q (%v, status %d)", res.Session.User, res.Session.State, w.Code)
			}
		}
	}
}

// Over HTTPS the CSRF token is bound to a __Host- cookie: one planted as
// twostep_csrf (by a sibling subdomain under cookie_domain, whose forms
// the portal accepts, or over plain HTTP) does not make a token valid.
func TestCSRFCookieCannotBeTossed(t *testing.T) {
	p, _, svc := oidcPortal(t)
	csrf := strings.Repeat("c", 43)
	form := url.Values{"csrf": {svc.CSRFToken(csrf)}, "return": {"/"}}
	r := httptest.NewRequest(http.MethodPost, "https://"+flowHost+Prefix+"oidc/example", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.AddCookie(&http.Cookie{Name: csrfCookie, Value: csrf})
	w := httptest.NewRecorder()
	p.ServeHTTP(w, r)
	if w.Code != http.StatusForbidden {
		t.Fatalf("a form with a planted twostep_csrf cookie over HTTPS: %d, want 403", w.Code)
	}
	// The cookie the portal sets over HTTPS is the __Host- one.
	page := httptest.NewRequest(http.MethodGet, "https://"+flowHost+Prefix+"login", nil)
	w = httptest.NewRecorder()
	p.ServeHTTP(w, page)
	var found bool
	for _, c := range w.Result().Cookies() {
		if c.Name == csrfCookieName(true) {
			found = c.Path == "/" && c.Secure && c.Domain == ""
		}
	}
	if !found {
		t.Fatalf("login page over HTTPS: no __Host-twostep_csrf cookie with Path=/, Secure: %q", w.Header().Values("Set-Cookie"))
	}
}
