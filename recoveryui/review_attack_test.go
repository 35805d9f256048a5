package recoveryui

import (
	"bytes"
	"context"
	"errors"
	"image"
	"image/png"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/twostep-auth/twostep/account"
	"github.com/twostep-auth/twostep/internal/oidc"
	"github.com/twostep-auth/twostep/internal/oidc/oidctest"
	"github.com/twostep-auth/twostep/internal/users"
)

// Attacks on the portal's HTTP surface, each written as the attacker
// would run it.

// attackSite is a portal on https://app.example.test, under the cookie
// domain example.test when shared, whose user bob (password
// "bob-password", phone on file, two-step required) is half signed in
// after his password; recovery is on.
type attackSite struct {
	p   *Portal
	svc *account.Service
	sms *smsBox
}

func newAttackSite(t *testing.T, shared bool) *attackSite {
	t.Helper()
	box := &smsBox{}
	svc := bobService(t, "    phone: \"+15551234567\"\n", account.Config{
		PendingLifetime: 10 * time.Minute,
		TwoStepRequired: true,
		Senders:         account.Senders{SMS: box},
		Recovery:        account.RecoveryConfig{Enabled: true, ReviewGroup: "admins", Approvals: 1, MaxSize: 1 << 20, Expected: "about two days", Expiry: 30 * 24 * time.Hour},
	}, nil)
	client := account.Client{IP: netip.MustParseAddr("192.0.2.1"), UserAgent: "test"}
	p := &Portal{Account: svc, Env: func(*http.Request) Env { return Env{Secure: true, Client: client} }}
	if shared {
		p.CookieDomain = "example.test"
	}
	return &attackSite{p: p, svc: svc, sms: box}
}

// signIn gives bob's password and returns his (half signed-in) session token.
func (s *attackSite) signIn(t *testing.T) string {
	t.Helper()
	res, err := s.svc.SignIn(context.Background(), "bob", "bob-password", account.Client{IP: netip.MustParseAddr("192.0.2.1")})
	if err != nil {
		t.Fatal(err)
	}
	return res.Token
}

// signInFully signs bob in with his password and a texted code and
// returns his two_factor session token.
func (s *attackSite) signInFully(t *testing.T) string {
	t.Helper()
	ctx, c := context.Background(), account.Client{IP: netip.MustParseAddr("192.0.2.1")}
	res, err := s.svc.Resolve(ctx, s.signIn(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.svc.SendCode(ctx, res, account.MethodSMS, c); err != nil {
		t.Fatal(err)
	}
	out, err := s.svc.VerifyCode(ctx, res, account.MethodSMS, s.sms.lastCode(t), false, c)
	if err != nil {
		t.Fatal(err)
	}
	return out.Token
}

func (s *attackSite) alive(t *testing.T, token string) bool {
	t.Helper()
	_, err := s.svc.Resolve(context.Background(), token)
	if err != nil && !errors.Is(err, account.ErrNoSession) {
		t.Fatal(err)
	}
	return err == nil
}

// pngDocument is a small valid PNG, an accepted recovery document.
func pngDocument(t *testing.T) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, image.NewGray(image.Rect(0, 0, 64, 40))); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// The JSON API is for scripts, yet an HTML form can reach every API
// endpoint that takes no JSON body (logout, sessions/revoke_all,
// totp/enroll) and the multipart upload: a form sends only
// x-www-form-urlencoded, multipart/form-data or text/plain, and those
// endpoints never look at the content type. Two attackers can send such a
// form with the victim's cookies and pass the Origin / Sec-Fetch-Site
// check: any page under cookie_domain (same-site, which SPEC §4 counts as
// the site's own; the session cookie is SameSite=Lax), and scriptless HTML
// injection in the protected legacy app itself (same-origin: a stored
// "<form action=/.twostep/api/sessions/revoke_all method=post>" behind a
// button). The first signs the victim out everywhere and forgets every
// trusted browser; the upload files a recovery request with the
// attacker's "ID" on the account of a victim sitting at the code page
// (and blocks the victim's own, one being open). Expected: an API request
// that changes state is refused when it is a form navigation
// (Sec-Fetch-Mode: navigate) or, outside the upload, carries a non-JSON
// content type; none of them takes effect.
func TestAttackAPIReachableByHTMLForms(t *testing.T) {
	sibling := map[string]string{"Origin": "https://blog.example.test", "Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}
	injected := map[string]string{"Origin": "https://app.example.test", "Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}
	// A browser without Fetch Metadata sends Origin only.
	oldBrowser := map[string]string{"Origin": "https://app.example.test"}
	cases := []struct {
		name     string
		shared   bool
		endpoint string
		ct, body string
		hdr      map[string]string
	}{
		{"sibling text/plain form to revoke_all", true, "sessions/revoke_all", "text/plain", "x=1", sibling},
		{"sibling urlencoded form to logout", true, "logout", "application/x-www-form-urlencoded", "", sibling},
		{"injected form to revoke_all", false, "sessions/revoke_all", "application/x-www-form-urlencoded", "go=1", injected},
		{"injected multipart form to totp/enroll", false, "totp/enroll", "multipart/form-data; boundary=x", "--x--\r\n", injected},
		{"injected form to logout, old browser", false, "logout", "application/x-www-form-urlencoded", "", oldBrowser},
		{"injected text/plain form to revoke_all, old browser", false, "sessions/revoke_all", "text/plain", "a=b", oldBrowser},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newAttackSite(t, tc.shared)
			tok := s.signInFully(t)
			r := httptest.NewRequest(http.MethodPost, "https://app.example.test"+Prefix+"api/"+tc.endpoint, strings.NewReader(tc.body))
			r.Header.Set("Content-Type", tc.ct)
			for k, v := range tc.hdr {
				r.Header.Set(k, v)
			}
			r.AddCookie(&http.Cookie{Name: SessionCookieName(true, s.p.CookieDomain), Value: tok})
			w := httptest.NewRecorder()
			s.p.ServeHTTP(w, r)
			if w.Code != http.StatusForbidden && w.Code != http.StatusUnsupportedMediaType {
				t.Errorf("a form POST to api/%s: %d %s, want 403 or 415", tc.endpoint, w.Code, w.Body)
			}
			if !s.alive(t, tok) {
				t.Errorf("a form POST to api/%s ended the victim's session", tc.endpoint)
			}
		})
	}

	t.Run("sibling multipart form to recovery", func(t *testing.T) {
		s := newAttackSite(t, true)
		tok := s.signIn(t)
		var body bytes.Buffer
		mw := multipart.NewWriter(&body)
		_ = mw.WriteField("document_type", "passport")
		fw, _ := mw.CreateFormFile("document", "forged.png")
		_, _ = fw.Write(pngDocument(t))
		_ = mw.Close()
		r := httptest.NewRequest(http.MethodPost, "https://app.example.test"+Prefix+"api/recovery", &body)
		r.Header.Set("Content-Type", mw.FormDataContentType())
		for k, v := range sibling {
			r.Header.Set(k, v)
		}
		r.AddCookie(&http.Cookie{Name: SessionCookieName(true, s.p.CookieDomain), Value: tok})
		w := httptest.NewRecorder()
		s.p.ServeHTTP(w, r)
		if w.Code != http.StatusForbidden {
			t.Errorf("a sibling's form upload to api/recovery: %d %s, want 403", w.Code, w.Body)
		}
		res, err := s.svc.Resolve(context.Background(), tok)
		if err != nil {
			t.Fatal(err)
		}
		if rec, err := s.svc.MyRecovery(context.Background(), res, ""); !errors.Is(err, account.ErrNotFound) {
			t.Errorf("a sibling's form filed a recovery request on the victim's account: %+v (%v)", rec, err)
		}
	})

	// What scripts and the portal's own clients send still works.
	t.Run("scripts", func(t *testing.T) {
		s := newAttackSite(t, false)
		for _, ct := range []string{"", "application/json", "application/json; charset=utf-8"} {
			tok := s.signIn(t)
			r := httptest.NewRequest(http.MethodPost, "https://app.example.test"+Prefix+"api/logout", nil)
			if ct != "" {
				r.Header.Set("Content-Type", ct)
			}
			r.Header.Set("Sec-Fetch-Site", "same-origin")
			r.Header.Set("Sec-Fetch-Mode", "cors")
			r.AddCookie(&http.Cookie{Name: SessionCookieName(true, ""), Value: tok})
			w := httptest.NewRecorder()
			s.p.ServeHTTP(w, r)
			if w.Code != http.StatusNoContent || s.alive(t, tok) {
				t.Errorf("fetch() to api/logout with Content-Type %q: %d %s, want 204", ct, w.Code, w.Body)
			}
		}
	})
}

// alertText is the error alert of a rendered page.
var alertText = regexp.MustCompile(`<p class="alert error" role="alert">([^<]*)</p>`)

// Sign-in with a provider tells a stranger which names exist here. The
// login page answers an unknown name, a disabled user and a name another
// provider account owns alike (account.ErrInvalidCredentials /
// ErrAccountLinked), as the code says it must; but a name missing from
// the users file is refused earlier, by the provider step
// (oidc.ErrUnknownUser), with other words: "Your Example account has no
// access" against "Your Example account (alice) has no access". An
// attacker who can pick the user name at the provider (self-registration)
// probes names one sign-in each. Expected: the same page for all.
func TestAttackOIDCRefusalTellsWhichNamesExist(t *testing.T) {
	p, op, svc := oidcPortalWith(t, "    disabled: true\n", []oidctest.User{
		{Username: "alice", Password: "pw-alice", Email: "alice@idp.test", EmailVerified: true},
		{Username: "nobody", Password: "pw-nobody", Email: "nobody@idp.test", EmailVerified: true},
	}, func(c *oidc.Config, db *users.DB) {
		c.KnownUser = func(name string) bool { _, ok := db.Lookup(users.Canonical(name)); return ok }
	})

	answer := func(user, pw string) (int, string) {
		w := startFlow(t, p, svc)
		var flow *http.Cookie
		for _, c := range w.Result().Cookies() {
			if c.Name == "__Host-"+oidcCookie {
				flow = c
			}
		}
		back := atProvider(t, op, w.Header().Get("Location"), user, pw)
		r := httptest.NewRequest(http.MethodGet, back.String(), nil)
		r.Header.Set("Accept", "text/html")
		r.AddCookie(flow)
		w = httptest.NewRecorder()
		p.ServeHTTP(w, r)
		m := alertText.FindStringSubmatch(w.Body.String())
		if m == nil {
			t.Fatalf("%s: no error on the page: %d %s", user, w.Code, w.Body)
		}
		return w.Code, m[1]
	}
	disabledStatus, disabled := answer("alice", "pw-alice")
	unknownStatus, unknown := answer("nobody", "pw-nobody")
	if disabledStatus != unknownStatus || disabled != unknown {
		t.Errorf("a disabled user and an unknown name get different answers:\n %d %q\n %d %q", disabledStatus, disabled, unknownStatus, unknown)
	}
}

// The JSON boundary takes what a strict parser (and a WAF or log reader
// in front) refuses, so the two can disagree on what was asked:
// encoding/json matches keys case-insensitively, lets a later duplicate
// win, turns invalid UTF-8 into U+FFFD, and a body with trailing "}" or
// "]" after the object passes the "exactly one object" check. SPEC §4: malformed JSON is 400
// invalid_request. Expected: each of these is refused before it reaches
// the account.
func TestAttackJSONBodiesAreStrict(t *testing.T) {
	for _, body := range []string{
		`{"username":"bob","password":"bob-password"}}`,
		`{"username":"bob","password":"bob-password"}]`,
		`{"username":"bob","password":"bob-password"} }`,
		`{"username":"mallory","username":"bob","password":"bob-password"}`,
		`{"username":"mallory","USERNAME":"bob","password":"bob-password"}`,
		`{"Username":"bob","password":"bob-password"}`,
		`{"username":"bob","password":"bob-password","Password":"x"}`,
		"{\"username\":\"bob\xff\",\"password\":\"bob-password\"}",
	} {
		t.Run(body, func(t *testing.T) {
			tp := newTSPortal(t)
			w := tp.do(t, http.MethodPost, Prefix+"api/login", "application/json", body)
			wantCode(t, w, http.StatusBadRequest, "invalid_request")
			if tp.session != "" {
				t.Errorf("a session was issued for %s", body)
			}
		})
	}
	// Well-formed bodies still pass, whitespace and all.
	tp := newTSPortal(t)
	wantCode(t, tp.do(t, http.MethodPost, Prefix+"api/login", "application/json", " {\"username\" : \"bob\",\n\"password\":\"bob-password\"}\n "), http.StatusOK, "")
	wantCode(t, tp.do(t, http.MethodPost, Prefix+"api/two_step", "application/json", `{"enabled":true,"password":null}`), http.StatusConflict, "conflict")
}

// A portal whose glue gives no Env (an embedding, a test) reads the
// scheme from the connection: over TLS the CSRF cookie it sets is the
// __Host- one, yet checkCSRF looked for the plain `twostep_csrf`, which a
// sibling subdomain or a network attacker on plain HTTP can plant. With
// a planted cookie and its token, a cross-site login form then signs the
// victim in as the attacker (login CSRF); the same token passes every
// other form. Expected: the token is checked against the cookie the
// portal itself sets for that scheme.
func TestAttackCSRFCookieSchemeWithoutEnv(t *testing.T) {
	tp := newTSPortal(t)
	p := &Portal{Account: tp.svc}
	planted := strings.Repeat("p", 43)
	form := url.Values{"csrf": {tp.svc.CSRFToken(planted)}, "username": {"bob"}, "password": {"bob-password"}, "return": {"/"}}
	r := httptest.NewRequest(http.MethodPost, "https://app.example.test"+Prefix+"login", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.AddCookie(&http.Cookie{Name: csrfCookie, Value: planted})
	w := httptest.NewRecorder()
	p.ServeHTTP(w, r)
	if w.Code != http.StatusForbidden {
		t.Fatalf("login form over TLS with a planted twostep_csrf cookie: %d, want 403 (Set-Cookie %q)", w.Code, w.Header().Values("Set-Cookie"))
	}
}

// The "this wasn't me" page shows its alarm to any link: GET
// /.twostep/recovery/cancel?r=anything&sig=anything renders "Someone
// asked to turn off two-step verification on your account, and the
// request was approved" on the genuine origin, a lure for a phishing
// mail (the signature is checked only on POST). The revoke-device page
// checks its link on GET (account.CheckRevokeLink); the cancel link has
// no such check outside account. Expected: a link whose signature is
// wrong is 404 on GET too.
func TestAttackRecoveryCancelPageTrustsAnyLink(t *testing.T) {
	s := newAttackSite(t, false)
	r := httptest.NewRequest(http.MethodGet, "https://app.example.test"+Prefix+"recovery/cancel?r=0123456789abcdef01234567&sig=forged", nil)
	r.Header.Set("Accept", "text/html")
	w := httptest.NewRecorder()
	s.p.ServeHTTP(w, r)
	if w.Code != http.StatusNotFound || strings.Contains(w.Body.String(), "asked to recover your account") {
		t.Fatalf("a forged cancel link: %d, the page says a recovery was asked for", w.Code)
	}
}
