package integration

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// SPEC §3: what a protected request gets, row by row.
func TestProtectedRequestStates(t *testing.T) {
	f := start(t)
	stranger := newClient(t)

	t.Run("stranger browser is sent to the login page with a relative return URL", func(t *testing.T) {
		r := stranger.browse(site + "/reports/q1?x=1")
		wantStatus(t, r, http.StatusFound)
		if got, want := r.Header.Get("Location"), "/.twostep/login?return="+url.QueryEscape("/reports/q1?x=1"); got != want {
			t.Fatalf("Location %q, want %q", got, want)
		}
	})
	t.Run("stranger API client gets 401 unauthenticated", func(t *testing.T) {
		wantError(t, stranger.get(site+"/reports/q1"), http.StatusUnauthorized, "unauthenticated")
	})
	t.Run("bypass needs no sign-in", func(t *testing.T) {
		wantStatus(t, stranger.get(site+"/public/page"), http.StatusOK)
		wantStatus(t, stranger.get(site+"/health"), http.StatusOK)
	})
	t.Run("deny is 403 for everyone", func(t *testing.T) {
		wantError(t, stranger.get(site+"/internal/x"), http.StatusForbidden, "forbidden")
	})

	alice := newClient(t)
	alice.mustLogin("alice", alicePassword)
	bob := newClient(t)
	bob.mustLogin("bob", bobPassword)

	t.Run("signed in: allowed with Remote-* headers and placeholders", func(t *testing.T) {
		before := f.echo.hits.Load()
		r := alice.get(site + "/reports/q1")
		wantStatus(t, r, http.StatusOK)
		m := r.json(t)
		if u := m["user"].([]any); len(u) != 1 || u[0] != "alice" {
			t.Fatalf("Remote-User %v, want exactly [alice]", u)
		}
		if m["groups"] != "admins,staff" || m["email"] != "alice@example.com" || m["name"] != "Alice Example" {
			t.Fatalf("identity headers: %v", m)
		}
		if got := r.Header.Get("X-Seen-User"); got != "alice" {
			t.Fatalf("{http.auth.user.id} = %q, want alice", got)
		}
		if f.echo.hits.Load() != before+1 {
			t.Fatal("upstream did not see the request")
		}
	})
	t.Run("group requirement: member allowed, non-member 403", func(t *testing.T) {
		wantStatus(t, alice.get(site+"/admin/x"), http.StatusOK)
		wantError(t, bob.get(site+"/admin/x"), http.StatusForbidden, "forbidden")
		r := bob.browse(site + "/admin/x")
		wantStatus(t, r, http.StatusForbidden)
		if !strings.Contains(r.Header.Get("Content-Type"), "text/html") {
			t.Fatalf("browser 403 should be a page, got %s", r.Header.Get("Content-Type"))
		}
	})
	t.Run("user requirement", func(t *testing.T) {
		wantStatus(t, bob.get(site+"/bob/x"), http.StatusOK)
		wantError(t, alice.get(site+"/bob/x"), http.StatusForbidden, "forbidden")
	})
	t.Run("a stranger on a group rule is asked to sign in, not refused", func(t *testing.T) {
		wantError(t, stranger.get(site+"/admin/x"), http.StatusUnauthorized, "unauthenticated")
	})
	t.Run("one_factor session on a two_factor rule must enrol", func(t *testing.T) {
		wantError(t, alice.get(site+"/secure/x"), http.StatusUnauthorized, "enrollment_required")
		r := alice.browse(site + "/secure/x")
		wantStatus(t, r, http.StatusFound)
		if got := r.Header.Get("Location"); got != "/.twostep/settings?enroll=1&return="+url.QueryEscape("/secure/x") {
			t.Fatalf("Location %q", got)
		}
	})
	t.Run("ambiguous paths are 400 on every route, bypass included", func(t *testing.T) {
		before := f.echo.hits.Load()
		for _, p := range []string{"/public/..%2Finternal/x", "/public/%2e%2e/%2e%2e/x", "/public/a%5cb", "/public/%00", "/public/%zz", "/public/%252e%252e/internal/x", "/public/a\\b", "/public/%C0%AE%C0%AE/internal", "/../internal/x"} {
			if got := rawGet(t, "127.0.0.1:9080", p); got != http.StatusBadRequest {
				t.Errorf("%s: status %d, want 400", p, got)
			}
		}
		if f.echo.hits.Load() != before {
			t.Fatal("an ambiguous path reached the upstream")
		}
	})
	t.Run("canonicalisation: dot segments and encoded dots cannot reach a denied path", func(t *testing.T) {
		for _, p := range []string{"/public/../internal/x", "/public/%2e%2e/internal/x", "//internal/x", "/public/..;/internal/x", "/internal;x=1/y"} {
			r := alice.get(site + p)
			if r.StatusCode != http.StatusForbidden && r.StatusCode != http.StatusBadRequest {
				t.Errorf("%s: status %d, want 403 (or 400); body %s", p, r.StatusCode, r.body)
			}
		}
	})
}

// Every client-sent variant of an identity header is removed, on every
// route, before the upstream sees the request.
func TestIdentityHeadersStripped(t *testing.T) {
	f := start(t)
	spoof := []string{
		"Remote-User", "evil", "Remote_User", "evil", "REMOTE-USER", "evil", "remote_groups", "admins",
		"X-Forwarded-User", "evil", "X-Auth-Request-User", "evil", "X-Remote-User", "evil", "X-WEBAUTH-USER", "evil",
		"Remote-Email", "evil@example.com", "Remote-Name", "Evil",
	}
	check := func(t *testing.T, wantUser string) {
		t.Helper()
		h := f.echo.lastHeader()
		for k, v := range h {
			n := strings.ToLower(strings.ReplaceAll(k, "_", "-"))
			if strings.Contains(n, "user") || strings.Contains(n, "remote") || strings.Contains(n, "auth-request") {
				if wantUser != "" && k == "Remote-User" && len(v) == 1 && v[0] == wantUser {
					continue
				}
				if k == "Remote-Groups" || k == "Remote-Email" || k == "Remote-Name" {
					if wantUser != "" && !strings.Contains(strings.Join(v, ","), "evil") && !strings.Contains(strings.Join(v, ","), "Evil") {
						continue
					}
				}
				if k == "User-Agent" {
					continue
				}
				t.Errorf("upstream received %s: %v", k, v)
			}
		}
	}
	t.Run("bypass route", func(t *testing.T) {
		c := newClient(t)
		wantStatus(t, c.get(site+"/public/x", spoof...), http.StatusOK)
		check(t, "")
	})
	t.Run("signed-in route", func(t *testing.T) {
		c := newClient(t)
		c.mustLogin("bob", bobPassword)
		r := c.get(site+"/reports", spoof...)
		wantStatus(t, r, http.StatusOK)
		check(t, "bob")
		if g := f.echo.lastHeader().Get("Remote-Groups"); g != "staff" {
			t.Fatalf("Remote-Groups %q, want staff", g)
		}
	})
	t.Run("Connection cannot remove our headers", func(t *testing.T) {
		c := newClient(t)
		c.mustLogin("bob", bobPassword)
		wantStatus(t, c.get(site+"/reports", "Connection", "Remote-User, Remote-Groups"), http.StatusOK)
		if u := f.echo.lastHeader().Get("Remote-User"); u != "bob" {
			t.Fatalf("Remote-User %q after a Connection trick, want bob", u)
		}
	})
	t.Run("forwarded-URI headers do not change the decision", func(t *testing.T) {
		c := newClient(t)
		r := c.get(site+"/internal/x", "X-Forwarded-Uri", "/public/x", "X-Original-URL", "http://localhost:9080/public/x", "X-Rewrite-URL", "/public/x")
		wantStatus(t, r, http.StatusForbidden)
		wantError(t, c.get(site+"/reports", "X-Forwarded-Uri", "/public/x"), http.StatusUnauthorized, "unauthenticated")
	})
}

func TestLoginForm(t *testing.T) {
	f := start(t)
	_ = f
	c := newClient(t)

	t.Run("page", func(t *testing.T) {
		r := c.browse(site + "/.twostep/login")
		wantStatus(t, r, http.StatusOK)
		body := string(r.body)
		for _, want := range []string{"Integration Corp", `name="username"`, `type="password"`, `name="csrf"`, `name="viewport"`} {
			if !strings.Contains(body, want) {
				t.Errorf("login page lacks %q", want)
			}
		}
		if strings.Contains(body, "<script") {
			t.Error("login page must work without JavaScript and has no inline script")
		}
	})
	t.Run("security headers on every portal response", func(t *testing.T) {
		for _, p := range []string{"/.twostep/login", "/.twostep/logout", "/.twostep/api/me", "/.twostep/nope"} {
			r := c.browse(site + p)
			csp := r.Header.Get("Content-Security-Policy")
			if !strings.Contains(csp, "default-src 'none'") || strings.Contains(csp, "unsafe-inline") {
				t.Errorf("%s: CSP %q", p, csp)
			}
			if r.Header.Get("X-Frame-Options") != "DENY" || r.Header.Get("Referrer-Policy") != "no-referrer" || r.Header.Get("Cache-Control") != "no-store" {
				t.Errorf("%s: headers %v", p, r.Header)
			}
		}
	})
	t.Run("wrong password re-renders the form with a clear error", func(t *testing.T) {
		r := c.formLogin("alice", "wrong", "/reports")
		wantStatus(t, r, http.StatusUnauthorized)
		if !strings.Contains(string(r.body), "Incorrect username or password.") {
			t.Fatalf("no error on the page: %s", r.body)
		}
	})
	t.Run("success redirects to the return URL and the app sees the user", func(t *testing.T) {
		r := c.formLogin("alice", alicePassword, "/reports/q1?x=1")
		wantStatus(t, r, http.StatusSeeOther)
		if loc := r.Header.Get("Location"); loc != "/reports/q1?x=1" {
			t.Fatalf("Location %q", loc)
		}
		var cookie *http.Cookie
		for _, ck := range r.Cookies() {
			if ck.Name == "twostep" {
				cookie = ck
			}
		}
		if cookie == nil || !cookie.HttpOnly || cookie.SameSite != http.SameSiteLaxMode || len(cookie.Value) != 43 {
			t.Fatalf("session cookie %+v", cookie)
		}
		got := c.get(site + "/reports/q1?x=1")
		wantStatus(t, got, http.StatusOK)
		if u := got.json(t)["user"].([]any); u[0] != "alice" {
			t.Fatalf("user %v", u)
		}
	})
	t.Run("each sign-in issues a new token (no fixation)", func(t *testing.T) {
		c2 := newClient(t)
		first := c2.login("bob", bobPassword)
		second := c2.login("bob", bobPassword)
		var a, b string
		for _, ck := range first.Cookies() {
			if ck.Name == "twostep" {
				a = ck.Value
			}
		}
		for _, ck := range second.Cookies() {
			if ck.Name == "twostep" {
				b = ck.Value
			}
		}
		if a == "" || a == b {
			t.Fatalf("tokens %q and %q", a, b)
		}
	})
	t.Run("missing or wrong CSRF token is 403", func(t *testing.T) {
		c3 := newClient(t)
		c3.browse(site + "/.twostep/login")
		form := url.Values{"username": {"alice"}, "password": {alicePassword}, "csrf": {"forged"}}
		r := c3.do(http.MethodPost, site+"/.twostep/login", strings.NewReader(form.Encode()), "Content-Type", "application/x-www-form-urlencoded", "Accept", "text/html")
		wantStatus(t, r, http.StatusForbidden)
		form.Del("csrf")
		r = c3.do(http.MethodPost, site+"/.twostep/login", strings.NewReader(form.Encode()), "Content-Type", "application/x-www-form-urlencoded")
		wantError(t, r, http.StatusForbidden, "forbidden")
	})
	t.Run("open redirects fall back to /", func(t *testing.T) {
		for _, ret := range []string{"//evil.example/", "/\\evil.example", "https://evil.example/", "/%2F%2Fevil.example", "javascript:alert(1)", "/%09/evil.example", "http://localhost:9080.evil.example/"} {
			c4 := newClient(t)
			r := c4.formLogin("bob", bobPassword, ret)
			wantStatus(t, r, http.StatusSeeOther)
			if loc := r.Header.Get("Location"); loc != "/" {
				t.Errorf("return %q → Location %q, want /", ret, loc)
			}
		}
	})
	t.Run("an absolute return URL on this site is honoured", func(t *testing.T) {
		c5 := newClient(t)
		r := c5.formLogin("bob", bobPassword, site+"/reports")
		if loc := r.Header.Get("Location"); loc != site+"/reports" {
			t.Fatalf("Location %q", loc)
		}
	})
	t.Run("logout: GET asks, POST signs out", func(t *testing.T) {
		c6 := newClient(t)
		c6.formLogin("bob", bobPassword, "/")
		page := c6.browse(site + "/.twostep/logout")
		wantStatus(t, page, http.StatusOK)
		wantStatus(t, c6.get(site+"/reports"), http.StatusOK) // GET changed nothing
		m := csrfField.FindSubmatch(page.body)
		if m == nil {
			t.Fatal("no csrf on the logout page")
		}
		form := url.Values{"csrf": {string(m[1])}}
		r := c6.do(http.MethodPost, site+"/.twostep/logout", strings.NewReader(form.Encode()), "Content-Type", "application/x-www-form-urlencoded", "Origin", site)
		wantStatus(t, r, http.StatusSeeOther)
		wantError(t, c6.get(site+"/reports"), http.StatusUnauthorized, "unauthenticated")
	})
}

func TestJSONAPI(t *testing.T) {
	start(t)
	c := newClient(t)

	t.Run("login, me, logout", func(t *testing.T) {
		r := c.login("Alice", alicePassword) // user names are case-insensitive
		wantStatus(t, r, http.StatusOK)
		if m := r.json(t); m["state"] != "authenticated" || m["level"] != "one_factor" {
			t.Fatalf("login: %s", r.body)
		}
		me := c.get(site + "/.twostep/api/me")
		wantStatus(t, me, http.StatusOK)
		m := me.json(t)
		if m["user"] != "alice" || m["name"] != "Alice Example" || m["email"] != "alice@example.com" || m["level"] != "one_factor" {
			t.Fatalf("me: %s", me.body)
		}
		if ts := m["two_step"].(map[string]any); ts["enabled"] != false {
			t.Fatalf("two_step: %v", ts)
		}
		r = c.postJSON("/.twostep/api/logout", "")
		wantStatus(t, r, http.StatusNoContent)
		wantError(t, c.get(site+"/.twostep/api/me"), http.StatusUnauthorized, "unauthenticated")
	})
	t.Run("wrong password and unknown user look the same", func(t *testing.T) {
		a := c.login("alice", "nope")
		b := c.login("nobody-here", "nope")
		wantError(t, a, http.StatusUnauthorized, "invalid_credentials")
		wantError(t, b, http.StatusUnauthorized, "invalid_credentials")
		if string(a.body) != string(b.body) {
			t.Fatalf("bodies differ: %s vs %s", a.body, b.body)
		}
	})
	t.Run("bad input is refused with a clear error", func(t *testing.T) {
		cases := []struct {
			name, ct, body string
			status         int
			code           string
		}{
			{"malformed JSON", "application/json", `{"username":`, 400, "invalid_request"},
			{"not an object", "application/json", `["alice"]`, 400, "invalid_request"},
			{"wrong type", "application/json", `{"username":1,"password":"x"}`, 400, "invalid_request"},
			{"empty password", "application/json", `{"username":"alice","password":""}`, 400, "invalid_request"},
			{"missing username", "application/json", `{"password":"x"}`, 400, "invalid_request"},
			{"unknown field", "application/json", `{"username":"alice","password":"x","admin":true}`, 400, "invalid_request"},
			{"trailing data", "application/json", `{"username":"alice","password":"x"} {}`, 400, "invalid_request"},
			{"not JSON", "text/plain", `{"username":"alice","password":"x"}`, 415, "unsupported_media_type"},
			{"oversized", "application/json", `{"username":"alice","password":"` + strings.Repeat("a", 70<<10) + `"}`, 413, "too_large"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				r := c.do(http.MethodPost, site+"/.twostep/api/login", strings.NewReader(tc.body), "Content-Type", tc.ct)
				wantError(t, r, tc.status, tc.code)
				if len(r.Cookies()) != 0 {
					t.Fatal("a refused request set a cookie")
				}
			})
		}
	})
	t.Run("foreign origin is refused", func(t *testing.T) {
		r := c.postJSON("/.twostep/api/login", map[string]string{"username": "alice", "password": alicePassword}, "Origin", "https://evil.example")
		wantError(t, r, http.StatusForbidden, "forbidden")
		r = c.postJSON("/.twostep/api/login", map[string]string{"username": "alice", "password": alicePassword}, "Sec-Fetch-Site", "cross-site")
		wantError(t, r, http.StatusForbidden, "forbidden")
		r = c.postJSON("/.twostep/api/login", map[string]string{"username": "alice", "password": alicePassword}, "Sec-Fetch-Site", "same-site")
		wantError(t, r, http.StatusForbidden, "forbidden")
		r = c.postJSON("/.twostep/api/login", map[string]string{"username": "alice", "password": alicePassword}, "Origin", "https://localhost:9080")
		wantError(t, r, http.StatusForbidden, "forbidden") // another scheme is another origin
		r = c.postJSON("/.twostep/api/login", map[string]string{"username": "alice", "password": alicePassword}, "Origin", site, "Sec-Fetch-Site", "same-origin")
		wantStatus(t, r, http.StatusOK)
	})
	t.Run("GET never changes state", func(t *testing.T) {
		c2 := newClient(t)
		c2.mustLogin("bob", bobPassword)
		r := c2.get(site + "/.twostep/api/logout")
		wantStatus(t, r, http.StatusMethodNotAllowed)
		wantStatus(t, c2.get(site+"/reports"), http.StatusOK)
	})
	t.Run("unknown endpoint", func(t *testing.T) {
		wantError(t, c.get(site+"/.twostep/api/nope"), http.StatusNotFound, "not_found")
	})
}

func TestRegulation(t *testing.T) {
	start(t)
	c := newClient(t)
	for i := 0; i < 5; i++ {
		wantError(t, c.login("bob", "wrong"), http.StatusUnauthorized, "invalid_credentials")
	}
	r := c.login("bob", bobPassword)
	wantError(t, r, http.StatusTooManyRequests, "rate_limited")
	ra := r.Header.Get("Retry-After")
	if ra == "" || ra == "0" {
		t.Fatalf("Retry-After %q", ra)
	}
	// The ban is per user (case-insensitively) and per IP: this client's IP
	// made 5 failures too, so even another user is refused from it.
	wantError(t, c.login("BOB", bobPassword), http.StatusTooManyRequests, "rate_limited")
	wantError(t, c.login("alice", alicePassword), http.StatusTooManyRequests, "rate_limited")
	// The HTML form says it plainly.
	page := c.formLogin("bob", bobPassword, "/")
	wantStatus(t, page, http.StatusTooManyRequests)
	if !strings.Contains(string(page.body), "Too many failed attempts") || page.Header.Get("Retry-After") == "" {
		t.Fatalf("form ban page: %s", page.body)
	}
}

// Sessions live in the store: they survive `caddy reload` and a full stop
// and start of the twostep app (the bolt file is closed and reopened).
func TestSessionsSurviveReloadAndRestart(t *testing.T) {
	f := start(t)
	c := newClient(t)
	c.mustLogin("alice", alicePassword)
	wantStatus(t, c.get(site+"/reports"), http.StatusOK)

	// Reload with a changed configuration (a new rule).
	f.load(f.caddyfile("", siteRules+"\n\t\trule deny path /reload-marker"))
	wantError(t, c.get(site+"/reload-marker"), http.StatusForbidden, "forbidden")
	wantStatus(t, c.get(site+"/reports"), http.StatusOK)

	// Stop everything (the store's last user goes, the file is closed), then start again.
	f.load(emptyConfig)
	if _, err := newClient(t).http.Get(site + "/reports"); err == nil {
		t.Fatal("site still served with an empty configuration")
	}
	f.load(f.caddyfile("", siteRules))
	wantStatus(t, c.get(site+"/reports"), http.StatusOK)
}

// The users file is followed: a password change or disabling the user ends
// the session on the next request; a bad file keeps the last good copy.
func TestUsersFileChanges(t *testing.T) {
	f := start(t)
	c := newClient(t)
	c.mustLogin("alice", alicePassword)
	b := newClient(t)
	b.mustLogin("bob", bobPassword)

	writeUsers(t, f.usersFile, "a brand new password 2026", false)
	eventually(t, 10*time.Second, "password change ends alice's session", func() bool {
		return c.get(site+"/reports").StatusCode == http.StatusUnauthorized
	})
	wantStatus(t, b.get(site+"/reports"), http.StatusOK) // bob's password did not change
	c.mustLogin("alice", "a brand new password 2026")

	// A syntax error: the last good copy stays in force.
	if err := writeFile(f.usersFile, "users: [this is: not: valid"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second) // give the watcher time to notice and refuse it
	wantStatus(t, c.get(site+"/reports"), http.StatusOK)
	wantStatus(t, newClient(t).login("alice", "a brand new password 2026"), http.StatusOK)

	writeUsers(t, f.usersFile, "a brand new password 2026", true)
	eventually(t, 10*time.Second, "disabling alice ends her session", func() bool {
		return c.get(site+"/reports").StatusCode == http.StatusUnauthorized
	})
	wantError(t, newClient(t).login("alice", "a brand new password 2026"), http.StatusUnauthorized, "invalid_credentials")
}

// The upstream gets the identity, never twostep's tokens: the session and
// device cookies are removed from what it receives; the app's own cookies
// pass (THREATS REQ-89).
func TestOwnCookiesNotForwarded(t *testing.T) {
	f := start(t)
	c := newClient(t)
	c.mustLogin("bob", bobPassword)
	for _, path := range []string{"/reports", "/public/x"} {
		wantStatus(t, c.get(site+path, "Cookie", "app_session=42; twostep_device=forged; theme=dark"), http.StatusOK)
		got := f.echo.lastHeader().Values("Cookie")
		joined := strings.Join(got, "; ")
		if strings.Contains(joined, "twostep") {
			t.Fatalf("%s: the upstream received twostep's cookies: %q", path, got)
		}
		if !strings.Contains(joined, "app_session=42") || !strings.Contains(joined, "theme=dark") {
			t.Fatalf("%s: the app's own cookies were lost: %q", path, got)
		}
	}
	// A request with only twostep's cookie reaches the upstream with none.
	wantStatus(t, c.get(site+"/reports"), http.StatusOK)
	if got := f.echo.lastHeader().Values("Cookie"); len(got) != 0 {
		t.Fatalf("the upstream received Cookie %q", got)
	}
}

// The README's recipe for apps that send no Cache-Control: a shared cache
// must not keep a signed-in user's page, and the app's own choice stands.
func TestCacheControlRecipe(t *testing.T) {
	const recipe = `header ?Cache-Control "private"`
	startEdited(t, func(cfg string) string {
		edited := strings.Replace(cfg, "header X-Seen-User", recipe+"\n\t\theader X-Seen-User", 1)
		if edited == cfg {
			t.Fatal("the site block changed: the recipe was not added")
		}
		return edited
	})
	alice := newClient(t)
	alice.mustLogin("alice", alicePassword)
	for _, c := range []struct{ query, want string }{
		{"", "private"},
		{"?cache_control=" + url.QueryEscape("public, max-age=60"), "public, max-age=60"},
		{"?cache_control=no-store", "no-store"},
	} {
		r := alice.get(site + "/reports/q1" + c.query)
		wantStatus(t, r, http.StatusOK)
		if got := r.Header.Values("Cache-Control"); len(got) != 1 || got[0] != c.want {
			t.Errorf("app sent %q: Cache-Control %q, want exactly %q", c.query, got, c.want)
		}
	}
}
