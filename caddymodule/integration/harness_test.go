// Package integration drives a real Caddy (in-process, through its admin
// API, as caddytest does) with the twostep module loaded. The tests bind
// fixed ports (admin 2999, sites 9080–9082) and must run serially.
package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/twostep-auth/twostep"
	"github.com/twostep-auth/twostep/internal/users"
)

const site = "http://localhost:9080"

// echo is the protected "legacy app": it answers with the identity headers
// it received and counts requests.
type echo struct {
	srv  *httptest.Server
	hits atomic.Int64
	mu   sync.Mutex
	last http.Header
}

func newEcho(t *testing.T) *echo {
	e := &echo{}
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.hits.Add(1)
		e.mu.Lock()
		e.last = r.Header.Clone()
		e.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if cc := r.URL.Query().Get("cache_control"); cc != "" {
			w.Header().Set("Cache-Control", cc) // as the app chose
		}
		_ = json.NewEncoder(w).Encode(map[string]any{
			"path":    r.URL.Path,
			"user":    r.Header.Values("Remote-User"),
			"groups":  r.Header.Get("Remote-Groups"),
			"email":   r.Header.Get("Remote-Email"),
			"name":    r.Header.Get("Remote-Name"),
			"headers": r.Header,
		})
	}))
	t.Cleanup(e.srv.Close)
	return e
}

func (e *echo) addr() string { return strings.TrimPrefix(e.srv.URL, "http://") }

func (e *echo) lastHeader() http.Header {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.last
}

// fixture is one running configuration.
type fixture struct {
	t         *testing.T
	tester    *caddytest.Tester
	dir       string
	usersFile string
	echo      *echo
}

const (
	alicePassword = "correct horse battery staple"
	bobPassword   = "bob's long password 42"
)

var hashes struct {
	once       sync.Once
	alice, bob string
}

func writeUsers(t *testing.T, path string, alicePw string, aliceDisabled bool) {
	t.Helper()
	hashes.once.Do(func() {
		var err error
		if hashes.alice, err = users.Hash(alicePassword, "argon2id"); err != nil {
			t.Fatal(err)
		}
		if hashes.bob, err = users.Hash(bobPassword, "argon2id"); err != nil {
			t.Fatal(err)
		}
	})
	ah := hashes.alice
	if alicePw != alicePassword {
		var err error
		if ah, err = users.Hash(alicePw, "argon2id"); err != nil {
			t.Fatal(err)
		}
	}
	body := fmt.Sprintf(`users:
  alice:
    displayname: Alice Example
    password: "%s"
    email: alice@example.com
    groups: [admins, staff]
    disabled: %v
  bob:
    displayname: Bob Builder
    password: "%s"
    email: bob@example.com
    groups: [staff]
`, ah, aliceDisabled, hashes.bob)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// siteRules is the protected site's directive body used by most tests.
const siteRules = `
		rule bypass path /health /public/*
		rule deny path /internal/*
		rule one_factor path /admin/* group admins
		rule one_factor path /bob/* user bob
		rule two_factor path /secure/*
		default one_factor`

func (f *fixture) caddyfile(extraGlobal, rules string) string {
	return fmt.Sprintf(`{
	skip_install_trust
	admin localhost:2999
	http_port 9080
	https_port 9443
	grace_period 1s
	storage file_system %s
	servers {
		trusted_proxies static 127.0.0.1/32 ::1/128
	}
	twostep {
		users_file %s
		store bolt %s
		site_name "Integration Corp"
		regulation {
			max_retries 5
			find_time 10m
			ban_time 15m
		}
		%s
	}
}

http://localhost:9080 {
	route {
		twostep {%s
		}
		header X-Seen-User "{http.auth.user.id}"
		reverse_proxy %s
	}
}
`, f.storage(), f.usersFile, filepath.Join(f.dir, "twostep.db"), extraGlobal, rules, f.echo.addr())
}

// storage is the fixture's own Caddy storage (certificates and store
// markers): another test's markers there would make its fresh store look
// like a lost one.
func (f *fixture) storage() string { return filepath.Join(f.dir, "caddy-data") }

// start loads a fresh configuration with its own users file and store.
func start(t *testing.T) *fixture {
	t.Helper()
	return startEdited(t, func(cfg string) string { return cfg })
}

// startEdited is start with edit applied to the Caddyfile.
func startEdited(t *testing.T, edit func(cfg string) string) *fixture {
	t.Helper()
	f := &fixture{t: t, tester: caddytest.NewTester(t), dir: t.TempDir(), echo: newEcho(t)}
	f.usersFile = filepath.Join(f.dir, "users.yml")
	writeUsers(t, f.usersFile, alicePassword, false)
	f.load(edit(f.caddyfile("", siteRules)))
	t.Cleanup(func() { f.load(emptyConfig) })
	return f
}

const emptyConfig = `{
	skip_install_trust
	admin localhost:2999
}
`

func (f *fixture) load(cfg string) {
	f.t.Helper()
	f.tester.InitServer(cfg, "caddyfile")
	if f.t.Failed() {
		f.t.FailNow()
	}
}

// client is a browser-like client with its own cookie jar that does not
// follow redirects.
type client struct {
	t    *testing.T
	http *http.Client
	// host, when set, is the Host header of every request (the URL's
	// host still picks the cookies).
	host string
}

func newClient(t *testing.T) *client {
	jar, _ := cookiejar.New(nil)
	return &client{t: t, http: &http.Client{
		Jar:     jar,
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				_, port, _ := net.SplitHostPort(addr)
				return (&net.Dialer{}).DialContext(ctx, network, "127.0.0.1:"+port)
			},
			// A new connection per request: the tests reload Caddy's
			// configuration often (rf.sweep, f.load), and a reload closes
			// the old server's kept-alive connections; a request sent on
			// one as it closed failed with EOF (TestRecoveryDenialAndRetention,
			// once in a dozen runs), which says nothing about twostep.
			DisableKeepAlives: true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

type response struct {
	*http.Response
	body []byte
}

func (r *response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("response is not JSON (%v): %s", err, r.body)
	}
	return m
}

func (c *client) do(method, target string, body io.Reader, hdr ...string) *response {
	c.t.Helper()
	req, err := http.NewRequest(method, target, body)
	if err != nil {
		c.t.Fatal(err)
	}
	if c.host != "" {
		req.Host = c.host
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if strings.EqualFold(hdr[i], "Host") {
			req.Host = hdr[i+1]
			continue
		}
		req.Header.Add(hdr[i], hdr[i+1])
	}
	res, err := c.http.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, target, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return &response{Response: res, body: b}
}

func (c *client) get(target string, hdr ...string) *response {
	c.t.Helper()
	return c.do(http.MethodGet, target, nil, hdr...)
}

func (c *client) browse(target string) *response {
	c.t.Helper()
	return c.get(target, "Accept", "text/html,application/xhtml+xml")
}

func (c *client) postJSON(path string, v any, hdr ...string) *response {
	c.t.Helper()
	var b []byte
	switch x := v.(type) {
	case string:
		b = []byte(x)
	case []byte:
		b = x
	default:
		b, _ = json.Marshal(v)
	}
	return c.do(http.MethodPost, site+path, bytes.NewReader(b), append([]string{"Content-Type", "application/json"}, hdr...)...)
}

func (c *client) login(user, pw string) *response {
	c.t.Helper()
	return c.postJSON("/.twostep/api/login", map[string]string{"username": user, "password": pw})
}

func (c *client) mustLogin(user, pw string) {
	c.t.Helper()
	r := c.login(user, pw)
	if r.StatusCode != 200 {
		c.t.Fatalf("login %s: %d %s", user, r.StatusCode, r.body)
	}
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// formLogin signs in through the HTML form, as a browser without
// JavaScript does, and returns the final response (a 303).
func (c *client) formLogin(user, pw, ret string) *response {
	c.t.Helper()
	page := c.browse(site + "/.twostep/login?return=" + url.QueryEscape(ret))
	if page.StatusCode != 200 {
		c.t.Fatalf("login page: %d %s", page.StatusCode, page.body)
	}
	m := csrfField.FindSubmatch(page.body)
	if m == nil {
		c.t.Fatalf("no csrf field on the login page: %s", page.body)
	}
	form := url.Values{"username": {user}, "password": {pw}, "csrf": {string(m[1])}, "return": {ret}}
	return c.do(http.MethodPost, site+"/.twostep/login", strings.NewReader(form.Encode()),
		// What Chromium sends for a form on a page with Referrer-Policy: no-referrer.
		"Content-Type", "application/x-www-form-urlencoded", "Origin", "null", "Sec-Fetch-Site", "same-origin", "Accept", "text/html")
}

func wantStatus(t *testing.T, r *response, want int) {
	t.Helper()
	if r.StatusCode != want {
		t.Fatalf("%s %s: status %d, want %d; body %s", r.Request.Method, r.Request.URL, r.StatusCode, want, r.body)
	}
}

func wantError(t *testing.T, r *response, status int, code string) {
	t.Helper()
	wantStatus(t, r, status)
	if got := r.json(t)["error"]; got != code {
		t.Fatalf("%s %s: error %v, want %q; body %s", r.Request.Method, r.Request.URL, got, code, r.body)
	}
	if msg, _ := r.json(t)["message"].(string); msg == "" {
		t.Fatalf("%s %s: error without a message: %s", r.Request.Method, r.Request.URL, r.body)
	}
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("not within %s: %s", within, what)
}

func writeFile(path, body string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(body), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// rawGet sends a request line as written (Go's client would refuse or
// re-encode some of the paths worth testing) and returns the status code.
func rawGet(t *testing.T, addr, target string, hdr ...string) int {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	req := "GET " + target + " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
	for i := 0; i+1 < len(hdr); i += 2 {
		req += hdr[i] + ": " + hdr[i+1] + "\r\n"
	}
	if _, err := io.WriteString(conn, req+"\r\n"); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading the answer to %q: %v", target, err)
	}
	res.Body.Close()
	return res.StatusCode
}

func bytesReader(s string) io.Reader { return strings.NewReader(s) }

func parseURL(s string) (*url.URL, error) { return url.Parse(s) }
