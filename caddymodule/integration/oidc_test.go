package integration

// Upstream OpenID Connect as the first factor (SPEC §2 `oidc`, §4 login
// page): a real zitadel OP (oidc_op_test.go) on 127.0.0.1, a real Caddy,
// and the browser played by hand: the login page's button, the redirect to
// the OP, the OP's login form, the redirects back, and twostep's callback.
//
// Covered by internal/oidc's unit tests and not repeated here: a token
// issued to another client (wrong audience: zitadel always adds the
// requesting client to aud, so only the unit test's credential swap makes
// one), a bad signature, a wrong client secret, the flow lifetime, claims
// from userinfo. The wrong nonce and the expired token are repeated here
// end to end, since the browser can tamper with the authorization request
// and the OP's token lifetime is ours to set.

import (
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/twostep-auth/twostep/internal/oidc/oidctest"
)

const (
	oidcStartPath    = "/.twostep/oidc/example"
	oidcCallbackPath = "/.twostep/oidc/example/callback"
	oidcFlowCookie   = "twostep_oidc"
)

var opFormID = regexp.MustCompile(`name="id" value="([^"]*)"`)

// oidcUsers are the OP's accounts: alice and bob also exist in the users
// file (with other names, groups and emails there), mallory exists only at
// the OP.
func oidcUsers(o *oidctest.Server) {
	o.AddUser(oidctest.User{Username: "alice", Password: "alice at Example ID", Email: "alice@idp.example", EmailVerified: true,
		Name: "Alice at the IdP", Groups: []string{"idp-group"}, AMR: []string{"pwd"}})
	o.AddUser(oidctest.User{Username: "bob", Password: "bob at Example ID", Email: "bob@idp.example", EmailVerified: true,
		Name: "Bob at the IdP", Groups: []string{"idp-group"}, AMR: []string{"pwd", "otp"}})
	o.AddUser(oidctest.User{Username: "mallory", Password: "mallory at Example ID", Email: "mallory@idp.example", EmailVerified: true,
		Name: "Mallory Contractor", Groups: []string{"contractors", "idp-group"}, AMR: []string{"pwd"}})
}

// postButton submits the provider's button form of the login page, as
// Chromium does (see formLogin).
func (c *client) postButton(csrf, ret string) *response {
	c.t.Helper()
	form := url.Values{"csrf": {csrf}, "return": {ret}}
	return c.do(http.MethodPost, site+oidcStartPath, strings.NewReader(form.Encode()),
		"Content-Type", "application/x-www-form-urlencoded", "Origin", "null", "Sec-Fetch-Site", "same-origin", "Accept", "text/html")
}

// oidcButton loads the login page and clicks "Sign in with Example".
func (c *client) oidcButton(ret string) *response {
	c.t.Helper()
	page := c.browse(site + "/.twostep/login?return=" + url.QueryEscape(ret))
	wantStatus(c.t, page, http.StatusOK)
	if !strings.Contains(string(page.body), `action="`+oidcStartPath+`"`) {
		c.t.Fatalf("the login page has no form for the provider: %s", page.body)
	}
	m := csrfField.FindSubmatch(page.body)
	if m == nil {
		c.t.Fatalf("no csrf field on the login page: %s", page.body)
	}
	return c.postButton(string(m[1]), ret)
}

// startFlow clicks the button and checks the 303 to the OP's authorization
// endpoint; it returns that URL.
func (c *client) startFlow(o *oidctest.Server, ret string) string {
	c.t.Helper()
	r := c.oidcButton(ret)
	wantStatus(c.t, r, http.StatusSeeOther)
	loc := r.Header.Get("Location")
	if _, err := url.Parse(loc); err != nil || !strings.HasPrefix(loc, o.Issuer+"/") {
		c.t.Fatalf("the button sent the browser to %q, want the OP at %s", loc, o.Issuer)
	}
	return loc
}

// atOP plays the browser at the provider: it follows authURL to the OP's
// login page, signs in there as user and follows the redirects until one
// leads back to the site; it returns that URL (the callback).
func (c *client) atOP(o *oidctest.Server, authURL, user, pw string) string {
	c.t.Helper()
	next := authURL
	for hop := 0; ; hop++ {
		if hop > 10 {
			c.t.Fatalf("too many redirects at the OP, last %s", next)
		}
		r := c.browse(next)
		if r.StatusCode == http.StatusOK && r.Request.URL.Path == "/login" {
			m := opFormID.FindSubmatch(r.body)
			if m == nil {
				c.t.Fatalf("no login form at the OP: %s", r.body)
			}
			form := url.Values{"id": {string(m[1])}, "username": {user}, "password": {pw}}
			r = c.do(http.MethodPost, o.Issuer+"/login", strings.NewReader(form.Encode()),
				"Content-Type", "application/x-www-form-urlencoded", "Accept", "text/html")
			if r.StatusCode != http.StatusFound {
				c.t.Fatalf("signing in at the OP as %s: %d %s", user, r.StatusCode, r.body)
			}
		} else if r.StatusCode/100 != 3 {
			c.t.Fatalf("GET %s at the OP: %d %s", next, r.StatusCode, r.body)
		}
		loc, err := r.Request.URL.Parse(r.Header.Get("Location"))
		if err != nil {
			c.t.Fatalf("Location %q: %v", r.Header.Get("Location"), err)
		}
		if strings.HasPrefix(loc.String(), site+"/") {
			return loc.String()
		}
		next = loc.String()
	}
}

// authorizeAt returns the callback URL of a flow started with startFlow.
func (c *client) authorizeAt(o *oidctest.Server, user, ret string) string {
	c.t.Helper()
	return c.atOP(o, c.startFlow(o, ret), user, o.Password(user))
}

// oidcSignIn runs the whole browser journey and returns the callback's
// answer.
func (c *client) oidcSignIn(o *oidctest.Server, user, ret string) *response {
	c.t.Helper()
	cb := c.authorizeAt(o, user, ret)
	if !strings.HasPrefix(cb, site+oidcCallbackPath+"?") {
		c.t.Fatalf("the OP sent the browser back to %q, want %s", cb, site+oidcCallbackPath)
	}
	return c.browse(cb)
}

// in returns the same browser (cookie jar) for another (sub)test.
func (c *client) in(t *testing.T) *client { return &client{t: t, http: c.http} }

func flowCookie(c *client) *http.Cookie {
	u, _ := url.Parse(site + oidcCallbackPath)
	for _, ck := range c.http.Jar.Cookies(u) {
		if ck.Name == oidcFlowCookie {
			return ck
		}
	}
	return nil
}

// wantRefused checks a refused callback: a 4xx page that says why, and no
// session for the browser.
func wantRefused(t *testing.T, c *client, r *response, status int, says string) {
	t.Helper()
	if r.StatusCode != status {
		t.Errorf("GET %s: status %d, want %d; body %s", r.Request.URL, r.StatusCode, status, pageText(r.body))
	}
	if r.StatusCode < 400 || r.StatusCode > 499 {
		t.Fatalf("GET %s: status %d, want a refusal (4xx); Location %q", r.Request.URL, r.StatusCode, r.Header.Get("Location"))
	}
	if !strings.Contains(string(r.body), says) {
		t.Errorf("the refusal does not say %q: %s", says, pageText(r.body))
	}
	wantNoSession(t, c)
}

func wantNoSession(t *testing.T, c *client) {
	t.Helper()
	if tok := sessionCookie(c); tok != "" {
		t.Errorf("the browser holds a session cookie %q", tok)
	}
	wantError(t, c.me(), http.StatusUnauthorized, "unauthenticated")
	wantError(t, c.get(site+"/reports"), http.StatusUnauthorized, "unauthenticated")
}

// wantApp checks what the protected app sees for path.
func wantApp(t *testing.T, c *client, path, user, groups, email, name string) {
	t.Helper()
	r := c.get(site + path)
	wantStatus(t, r, http.StatusOK)
	m := r.json(t)
	if u, _ := m["user"].([]any); len(u) != 1 || u[0] != user {
		t.Errorf("the app sees Remote-User %v, want [%s]", m["user"], user)
	}
	if m["groups"] != groups || m["email"] != email || m["name"] != name {
		t.Errorf("the app sees groups %q, email %q, name %q; want %q, %q, %q", m["groups"], m["email"], m["name"], groups, email, name)
	}
}

func wantLevel(t *testing.T, c *client, user, level string) {
	t.Helper()
	m := wantJSON(t, c.me(), http.StatusOK)
	if m["user"] != user || m["level"] != level {
		t.Fatalf("me: %v, want user %s at level %s", m, user, level)
	}
}

func TestOIDCSignIn(t *testing.T) {
	f := start(t)
	o := startOP(t)
	oidcUsers(o)
	f.load(f.caddyfile(oidcBlock(o.Issuer), siteRules))

	t.Run("the login page shows the provider's button next to the password form", func(t *testing.T) {
		c := newClient(t)
		var body string
		eventually(t, 10*time.Second, "the button is enabled (discovery done)", func() bool {
			r := c.browse(site + "/.twostep/login?return=%2Freports")
			body = string(r.body)
			return r.StatusCode == http.StatusOK && !strings.Contains(body, "problem-example")
		})
		for _, want := range []string{`name="password"`, `<form method="post" action="/.twostep/oidc/example"`, `>Sign in with Example</button>`, `name="return" value="/reports"`} {
			if !strings.Contains(body, want) {
				t.Errorf("the login page lacks %q: %s", want, body)
			}
		}
		if strings.Count(body, `name="csrf"`) < 2 {
			t.Errorf("the provider's form carries no CSRF token: %s", body)
		}
	})

	t.Run("the button sends the browser to the provider with state, nonce and PKCE, and a flow cookie", func(t *testing.T) {
		c := newClient(t)
		r := c.oidcButton("/reports")
		wantStatus(t, r, http.StatusSeeOther)
		u, err := url.Parse(r.Header.Get("Location"))
		if err != nil || !strings.HasPrefix(u.String(), o.Issuer+"/authorize?") {
			t.Fatalf("Location %q, want %s/authorize?…", r.Header.Get("Location"), o.Issuer)
		}
		q := u.Query()
		for k, want := range map[string]string{"client_id": opClientID, "redirect_uri": opRedirectURI, "response_type": "code", "code_challenge_method": "S256"} {
			if q.Get(k) != want {
				t.Errorf("authorization request %s = %q, want %q", k, q.Get(k), want)
			}
		}
		for _, k := range []string{"state", "nonce", "code_challenge"} {
			if len(q.Get(k)) < 43 {
				t.Errorf("authorization request %s = %q, want a random value of at least 43 characters", k, q.Get(k))
			}
		}
		if scope := strings.Fields(q.Get("scope")); !hasAll(scope, "openid", "email", "profile", "groups") {
			t.Errorf("scope %q", q.Get("scope"))
		}
		var fc *http.Cookie
		for _, ck := range r.Cookies() {
			if ck.Name == oidcFlowCookie {
				fc = ck
			}
		}
		if fc == nil || !fc.HttpOnly || fc.SameSite != http.SameSiteLaxMode || fc.Path != "/.twostep/oidc/" || fc.MaxAge <= 0 || fc.MaxAge > 600 {
			t.Fatalf("flow cookie %+v", fc)
		}
		if strings.Contains(u.RawQuery, fc.Value) {
			t.Error("the flow cookie's value is sent to the provider")
		}
	})

	t.Run("the button refuses a forged CSRF token", func(t *testing.T) {
		c := newClient(t)
		c.browse(site + "/.twostep/login")
		r := c.postButton("forged", "/reports")
		wantStatus(t, r, http.StatusForbidden)
		if loc := r.Header.Get("Location"); loc != "" {
			t.Fatalf("Location %q", loc)
		}
	})

	var alice *client
	t.Run("alice, who is in the users file, signs in; the app sees her users-file identity", func(t *testing.T) {
		alice = newClient(t)
		tokens := o.Hits("/oauth/token")
		r := alice.oidcSignIn(o, "alice", "/reports/q1?x=1")
		wantStatus(t, r, http.StatusSeeOther)
		if loc := r.Header.Get("Location"); loc != "/reports/q1?x=1" {
			t.Fatalf("callback Location %q, want the return URL /reports/q1?x=1", loc)
		}
		if got := o.Hits("/oauth/token") - tokens; got != 1 {
			t.Errorf("twostep called the OP's token endpoint %d times, want 1", got)
		}
		if fc := flowCookie(alice); fc != nil {
			t.Errorf("the flow cookie outlived the callback: %+v", fc)
		}
		var cookie *http.Cookie
		for _, ck := range r.Cookies() {
			if ck.Name == "twostep" {
				cookie = ck
			}
		}
		if cookie == nil || !cookie.HttpOnly || cookie.SameSite != http.SameSiteLaxMode || cookie.Value == "" {
			t.Fatalf("session cookie %+v", cookie)
		}
		// Remote-* come from the users file (SPEC §2: the claim names a
		// users-file user), not from the provider's claims.
		wantApp(t, alice, "/reports/q1?x=1", "alice", "admins,staff", "alice@example.com", "Alice Example")
		wantLevel(t, alice, "alice", "one_factor")
		wantStatus(t, alice.get(site+"/admin/x"), http.StatusOK) // group admins, from the users file
	})

	t.Run("a tampered state is refused before any code exchange", func(t *testing.T) {
		c := newClient(t)
		cb := c.authorizeAt(o, "alice", "/reports")
		u, _ := url.Parse(cb)
		q := u.Query()
		q.Set("state", strings.Repeat("A", len(q.Get("state"))))
		u.RawQuery = q.Encode()
		tokens := o.Hits("/oauth/token")
		r := c.browse(u.String())
		wantRefused(t, c, r, http.StatusUnauthorized, "did not belong to this sign-in")
		if o.Hits("/oauth/token") != tokens {
			t.Error("twostep exchanged the code of a callback with a wrong state")
		}
		// The flow is single use: the genuine answer cannot be used after that.
		r = c.browse(cb)
		wantRefused(t, c, r, http.StatusBadRequest, "Try again")
	})

	t.Run("a callback without state is refused", func(t *testing.T) {
		c := newClient(t)
		cb := c.authorizeAt(o, "alice", "/reports")
		u, _ := url.Parse(cb)
		q := u.Query()
		q.Del("state")
		u.RawQuery = q.Encode()
		wantRefused(t, c, c.browse(u.String()), http.StatusUnauthorized, "did not belong to this sign-in")
	})

	t.Run("a callback in a browser that did not start the sign-in is refused (login CSRF)", func(t *testing.T) {
		victim := newClient(t)
		attacker := newClient(t)
		cb := attacker.authorizeAt(o, "mallory", "/reports")
		wantRefused(t, victim, victim.browse(cb), http.StatusBadRequest, "did not start on this browser")
	})

	t.Run("a replayed callback is refused: the flow is single use", func(t *testing.T) {
		c := newClient(t)
		cb := c.authorizeAt(o, "alice", "/reports")
		fc := flowCookie(c)
		if fc == nil {
			t.Fatal("no flow cookie after the button")
		}
		wantStatus(t, c.browse(cb), http.StatusSeeOther)
		wantLevel(t, c, "alice", "one_factor")

		// The same browser again: its flow cookie was cleared.
		tokens := o.Hits("/oauth/token")
		again := c.browse(cb)
		if again.StatusCode/100 != 4 {
			t.Errorf("the same callback a second time: %d (Location %q), want a refusal", again.StatusCode, again.Header.Get("Location"))
		}
		// Someone who copied the flow cookie and the callback URL.
		thief := newClient(t)
		u, _ := url.Parse(site + oidcCallbackPath)
		thief.http.Jar.SetCookies(u, []*http.Cookie{{Name: oidcFlowCookie, Value: fc.Value, Path: "/.twostep/oidc/"}})
		wantRefused(t, thief, thief.browse(cb), http.StatusBadRequest, "expired or was already used")
		if o.Hits("/oauth/token") != tokens {
			t.Error("a replayed callback reached the OP's token endpoint")
		}

		// The code injected into a sign-in the thief started himself (his
		// own flow cookie and state): the OP refuses the used code and its
		// PKCE verifier does not match.
		authURL := thief.startFlow(o, "/reports")
		au, _ := url.Parse(authURL)
		cu, _ := url.Parse(cb)
		q := cu.Query()
		q.Set("state", au.Query().Get("state"))
		cu.RawQuery = q.Encode()
		wantRefused(t, thief, thief.browse(cu.String()), http.StatusUnauthorized, "refused the sign-in code")
	})

	t.Run("a nonce changed on the way to the provider is refused", func(t *testing.T) {
		c := newClient(t)
		authURL := c.startFlow(o, "/reports")
		u, _ := url.Parse(authURL)
		q := u.Query()
		q.Set("nonce", strings.Repeat("n", 43))
		u.RawQuery = q.Encode()
		cb := c.atOP(o, u.String(), "alice", o.Password("alice"))
		wantRefused(t, c, c.browse(cb), http.StatusUnauthorized, "token did not check out")
	})

	t.Run("an expired ID token is refused", func(t *testing.T) {
		o.SetIDTokenLifetime(opClientID, -5*time.Minute)
		defer o.SetIDTokenLifetime(opClientID, time.Hour)
		c := newClient(t)
		cb := c.authorizeAt(o, "alice", "/reports")
		wantRefused(t, c, c.browse(cb), http.StatusUnauthorized, "token did not check out")
	})

	t.Run("a user who exists only at the provider is refused", func(t *testing.T) {
		c := newClient(t)
		r := c.oidcSignIn(o, "mallory", "/reports")
		// The product's own wording for this case (recoveryui/oidc.go):
		// 403, "Your Sign in with Example account (mallory) has no access to this site."
		wantRefused(t, c, r, http.StatusForbidden, "has no access")
	})

	t.Run("logout ends the local session", func(t *testing.T) {
		if alice == nil {
			t.Skip("no signed-in alice")
		}
		alice := alice.in(t)
		tok := sessionCookie(alice)
		page := alice.browse(site + "/.twostep/logout")
		wantStatus(t, page, http.StatusOK)
		m := csrfField.FindSubmatch(page.body)
		if m == nil {
			t.Fatal("no csrf on the logout page")
		}
		form := url.Values{"csrf": {string(m[1])}}
		r := alice.do(http.MethodPost, site+"/.twostep/logout", strings.NewReader(form.Encode()),
			"Content-Type", "application/x-www-form-urlencoded", "Origin", "null", "Sec-Fetch-Site", "same-origin", "Accept", "text/html")
		if r.StatusCode != http.StatusSeeOther && r.StatusCode != http.StatusOK {
			t.Fatalf("POST logout: %d %s", r.StatusCode, r.body)
		}
		t.Logf("POST /.twostep/logout after an OIDC sign-in: %d %q", r.StatusCode, pageText(r.body))
		if r.StatusCode == http.StatusOK {
			// Signed in through a provider with end_session_endpoint: the page
			// offers to sign out there too.
			if !strings.Contains(string(r.body), o.Issuer+"/end_session") {
				t.Errorf("the signed-out page does not link to the provider's end_session: %s", pageText(r.body))
			}
		}
		wantNoSession(t, alice)
		// The old token is dead server-side, not only forgotten by the browser.
		replay := newClient(t)
		u, _ := url.Parse(site)
		replay.http.Jar.SetCookies(u, []*http.Cookie{{Name: "twostep", Value: tok, Path: "/"}})
		wantError(t, replay.get(site+"/reports"), http.StatusUnauthorized, "unauthenticated")

		// The JSON API's logout, after a second sign-in.
		wantStatus(t, alice.oidcSignIn(o, "alice", "/"), http.StatusSeeOther)
		wantLevel(t, alice, "alice", "one_factor")
		wantStatus(t, alice.postJSON("/.twostep/api/logout", ""), http.StatusNoContent)
		wantNoSession(t, alice)
	})
}

func TestOIDCUnknownUsersAllowed(t *testing.T) {
	f := start(t)
	o := startOP(t)
	oidcUsers(o)
	f.load(f.caddyfile(oidcBlock(o.Issuer, "allow_unknown_users"), siteRules))

	t.Run("a user who exists only at the provider signs in with the provider's identity", func(t *testing.T) {
		c := newClient(t)
		r := c.oidcSignIn(o, "mallory", "/reports")
		wantStatus(t, r, http.StatusSeeOther)
		if loc := r.Header.Get("Location"); loc != "/reports" {
			t.Fatalf("callback Location %q", loc)
		}
		wantApp(t, c, "/reports", "mallory", "contractors,idp-group", "mallory@idp.example", "Mallory Contractor")
		wantLevel(t, c, "mallory", "one_factor")
		// Not a member of admins, whatever the provider says.
		wantStatus(t, c.get(site+"/admin/x"), http.StatusForbidden)
	})
	t.Run("a users-file user still gets the users-file identity", func(t *testing.T) {
		c := newClient(t)
		wantStatus(t, c.oidcSignIn(o, "alice", "/reports"), http.StatusSeeOther)
		wantApp(t, c, "/reports", "alice", "admins,staff", "alice@example.com", "Alice Example")
	})
	t.Run("a user disabled in the users file is not let in as an unknown user", func(t *testing.T) {
		writeUsers(t, f.usersFile, alicePassword, true)
		defer writeUsers(t, f.usersFile, alicePassword, false)
		eventually(t, 10*time.Second, "the users file is re-read", func() bool {
			return newClient(t).login("alice", alicePassword).StatusCode == http.StatusUnauthorized
		})
		c := newClient(t)
		r := c.oidcSignIn(o, "alice", "/reports")
		wantRefused(t, c, r, http.StatusForbidden, "has no access")
	})
}

func TestOIDCSecondFactor(t *testing.T) {
	f := start(t)
	o := startOP(t)
	oidcUsers(o)
	f.load(f.outboxConfig(oidcBlock(o.Issuer)))

	// bob turns two-step on (text messages).
	c := newClient(t)
	c.mustLogin("bob", bobPassword)
	enrolSMS(t, c)
	wantStatus(t, c.postJSON("/.twostep/api/logout", ""), http.StatusNoContent)

	wantChallenge := func(t *testing.T, r *response) {
		t.Helper()
		wantStatus(t, r, http.StatusSeeOther)
		if loc := r.Header.Get("Location"); loc != "/.twostep/challenge?return=%2Freports" {
			t.Fatalf("callback Location %q, want /.twostep/challenge?return=%%2Freports", loc)
		}
	}

	t.Run("without trust_idp_mfa, bob (amr pwd+otp) lands on the challenge and must enter a texted code", func(t *testing.T) {
		b := newClient(t)
		wantChallenge(t, b.oidcSignIn(o, "bob", "/reports"))
		wantError(t, b.me(), http.StatusUnauthorized, "second_factor_required")
		wantError(t, b.get(site+"/reports"), http.StatusUnauthorized, "second_factor_required")
		page := b.browse(site + "/.twostep/challenge?return=%2Freports")
		wantStatus(t, page, http.StatusOK)
		if !strings.Contains(string(page.body), `name="code"`) && !strings.Contains(string(page.body), "Text me a code") {
			t.Errorf("the challenge page asks for no code: %s", pageText(page.body))
		}

		wantError(t, b.verify("sms", "000000"), http.StatusUnauthorized, "invalid_code")
		before := time.Now()
		wantStatus(t, b.api("code/send", map[string]string{"method": "sms"}), http.StatusAccepted)
		wantAuthenticated(t, b.verify("sms", lastCode(t, b, "sms", before)), "two_factor")
		wantApp(t, b, "/reports", "bob", "staff", "bob@example.com", "Bob Builder")
		wantLevel(t, b, "bob", "two_factor")
		wantStatus(t, b.get(site+"/secure/x"), http.StatusOK)
		time.Sleep(1100 * time.Millisecond) // past resend_after
	})

	f.load(f.outboxConfig(oidcBlock(o.Issuer, "trust_idp_mfa", "acr urn:example:mfa")))

	t.Run("with trust_idp_mfa, amr pwd+otp signs bob in at two_factor at once", func(t *testing.T) {
		o.SetAuthContext("bob", []string{"pwd", "otp"}, "")
		b := newClient(t)
		r := b.oidcSignIn(o, "bob", "/reports")
		wantStatus(t, r, http.StatusSeeOther)
		if loc := r.Header.Get("Location"); loc != "/reports" {
			t.Fatalf("callback Location %q, want /reports", loc)
		}
		wantLevel(t, b, "bob", "two_factor")
		wantApp(t, b, "/reports", "bob", "staff", "bob@example.com", "Bob Builder")
		wantStatus(t, b.get(site+"/secure/x"), http.StatusOK)
	})
	t.Run("with trust_idp_mfa, a configured acr counts as multi-factor", func(t *testing.T) {
		o.SetAuthContext("bob", []string{"pwd"}, "urn:example:mfa")
		b := newClient(t)
		r := b.oidcSignIn(o, "bob", "/reports")
		wantStatus(t, r, http.StatusSeeOther)
		if loc := r.Header.Get("Location"); loc != "/reports" {
			t.Fatalf("callback Location %q, want /reports", loc)
		}
		wantLevel(t, b, "bob", "two_factor")
	})
	t.Run("with trust_idp_mfa, amr pwd alone (and another acr) still needs the code", func(t *testing.T) {
		o.SetAuthContext("bob", []string{"pwd"}, "urn:example:loa1")
		b := newClient(t)
		wantChallenge(t, b.oidcSignIn(o, "bob", "/reports"))
		wantError(t, b.me(), http.StatusUnauthorized, "second_factor_required")
	})
}

func TestOIDCUnreachableProvider(t *testing.T) {
	f := start(t)
	closed := closedLoopback(t)
	f.load(f.caddyfile(oidcBlock("http://"+closed), siteRules))
	c := newClient(t)

	t.Run("the login page shows the provider's problem on its button", func(t *testing.T) {
		var body string
		eventually(t, 10*time.Second, "the button shows the provider's problem", func() bool {
			r := c.browse(site + "/.twostep/login")
			body = string(r.body)
			return strings.Contains(body, `id="problem-example"`)
		})
		if !strings.Contains(body, `disabled aria-describedby="problem-example"`) {
			t.Errorf("the provider's button is not disabled: %s", body)
		}
		text := pageText([]byte(body))
		for _, want := range []string{"Sign in with Example", "unreachable", "Sign in with your password instead."} {
			if !strings.Contains(text, strings.ToLower(want)) {
				t.Errorf("the login page does not say %q: %s", want, text)
			}
		}
	})
	t.Run("a submitted button says the provider is unavailable and does not redirect", func(t *testing.T) {
		page := c.browse(site + "/.twostep/login")
		m := csrfField.FindSubmatch(page.body)
		if m == nil {
			t.Fatal("no csrf")
		}
		r := c.postButton(string(m[1]), "/reports")
		wantStatus(t, r, http.StatusServiceUnavailable)
		if loc := r.Header.Get("Location"); loc != "" {
			t.Fatalf("Location %q", loc)
		}
		if !strings.Contains(pageText(r.body), "unavailable") || !strings.Contains(string(r.body), `name="password"`) {
			t.Errorf("the answer is not the login page with the problem: %s", pageText(r.body))
		}
	})
	t.Run("password sign-in still works", func(t *testing.T) {
		r := c.formLogin("alice", alicePassword, "/reports")
		wantStatus(t, r, http.StatusSeeOther)
		if loc := r.Header.Get("Location"); loc != "/reports" {
			t.Fatalf("Location %q", loc)
		}
		wantApp(t, c, "/reports", "alice", "admins,staff", "alice@example.com", "Alice Example")
		other := newClient(t)
		wantAuthenticated(t, other.login("bob", bobPassword), "one_factor")
	})
}

// closedLoopback returns a loopback address where nothing listens.
func closedLoopback(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// A user who exists only at the provider has no password here: the
// actions that ask for one ask for a fresh confirmation at the provider
// (prompt=login), by the same provider account.
func TestOIDCReauth(t *testing.T) {
	f := start(t)
	o := startOP(t)
	oidcUsers(o)
	f.load(f.outboxConfig(oidcBlock(o.Issuer, "allow_unknown_users")))
	c := newClient(t)
	wantStatus(t, c.oidcSignIn(o, "mallory", "/reports"), http.StatusSeeOther)
	enrolSMS(t, c) // two-step on: the settings page offers turning it off and new backup codes
	wantError(t, c.postJSON("/.twostep/api/backup_codes", `{}`), http.StatusForbidden, "forbidden")
	// The settings page offers the confirmation in place of a password field.
	page := c.browse(site + "/.twostep/settings")
	wantStatus(t, page, http.StatusOK)
	if !strings.Contains(string(page.body), "Confirm with Example") || strings.Contains(string(page.body), `type="password"`) {
		t.Fatalf("the settings page of a provider-only account: %s", pageText(page.body))
	}
	m := csrfField.FindSubmatch(page.body)
	if m == nil {
		t.Fatal("no csrf field on the settings page")
	}
	confirm := func(as string) *response {
		t.Helper()
		form := url.Values{"csrf": {string(m[1])}, "reauth": {"1"}, "return": {"/.twostep/settings"}}
		r := c.do(http.MethodPost, site+oidcStartPath, strings.NewReader(form.Encode()),
			"Content-Type", "application/x-www-form-urlencoded", "Origin", "null", "Sec-Fetch-Site", "same-origin", "Accept", "text/html")
		wantStatus(t, r, http.StatusSeeOther)
		loc, _ := url.Parse(r.Header.Get("Location"))
		if q := loc.Query(); q.Get("prompt") != "login" || q.Get("max_age") != "0" {
			t.Fatalf("the confirmation does not make the provider ask again: %s", loc)
		}
		return c.browse(c.atOP(o, loc.String(), as, o.Password(as)))
	}
	// Someone else's provider account does not confirm mallory.
	wantStatus(t, confirm("alice"), http.StatusForbidden)
	wantError(t, c.postJSON("/.twostep/api/backup_codes", `{}`), http.StatusForbidden, "forbidden")
	r := confirm("mallory")
	wantStatus(t, r, http.StatusSeeOther)
	if loc := r.Header.Get("Location"); loc != "/.twostep/settings" {
		t.Fatalf("after the confirmation: Location %q", loc)
	}
	wantLevel(t, c, "mallory", "two_factor") // the same session, still signed in
	res := wantJSON(t, c.postJSON("/.twostep/api/backup_codes", `{}`), http.StatusOK)
	codes, _ := res["codes"].([]any)
	if len(codes) != 10 {
		t.Fatalf("backup codes after the confirmation: %v", res)
	}
	// Turning two-step off: a code, and the confirmation (still fresh).
	res = wantJSON(t, c.postJSON("/.twostep/api/two_step", map[string]any{"enabled": false, "code": codes[0]}), http.StatusOK)
	if res["enabled"] != false {
		t.Fatalf("two_step off after the confirmation: %v", res)
	}
	// A users-file user cannot ask for a confirmation instead of the password.
	a := newClient(t)
	wantStatus(t, a.oidcSignIn(o, "alice", "/reports"), http.StatusSeeOther)
	page = a.browse(site + "/.twostep/settings")
	m = csrfField.FindSubmatch(page.body)
	form := url.Values{"csrf": {string(m[1])}, "reauth": {"1"}, "return": {"/.twostep/settings"}}
	wantStatus(t, a.do(http.MethodPost, site+oidcStartPath, strings.NewReader(form.Encode()),
		"Content-Type", "application/x-www-form-urlencoded", "Origin", "null", "Sec-Fetch-Site", "same-origin", "Accept", "text/html"), http.StatusForbidden)
}
