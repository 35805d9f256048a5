package integration

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const sidecar = "http://localhost:9081"

func (f *fixture) sidecarCaddyfile(trusted bool, portal string) string {
	tp := ""
	if trusted {
		tp = `servers {
		trusted_proxies static 127.0.0.1/32 ::1/128
	}`
	}
	portalLine := ""
	if portal != "" {
		portalLine = "portal " + portal
	}
	return fmt.Sprintf(`{
	skip_install_trust
	admin localhost:2999
	http_port 9080
	https_port 9443
	grace_period 1s
	storage file_system %s
	%s
	twostep {
		users_file %s
		store bolt %s
	}
}

http://localhost:9081 {
	twostep {
		rule bypass path /public/*
		rule deny path /internal/*
		rule one_factor path /admin/* group admins
		rule two_factor path /secure/*
		default one_factor
		%s
	}
	respond "sidecar" 404
}
`, f.storage(), tp, f.usersFile, filepath.Join(f.dir, "twostep.db"), portalLine)
}

// buildCaddy builds this module's Caddy once per test binary run.
func buildCaddy(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(os.TempDir(), "twostep-integration-caddy")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/twostep-auth/twostep/cmd/caddy")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building caddy: %v\n%s", err, out)
	}
	return bin
}

// A second Caddy process uses forward_auth against twostep's sidecar
// endpoint, and proxies /.twostep/* to it so that the portal shares the
// app's origin.
func TestSidecarForwardAuth(t *testing.T) {
	f := start(t)
	f.load(f.sidecarCaddyfile(true, "http://localhost:9082"))

	bin := buildCaddy(t)
	cfg := filepath.Join(f.dir, "Caddyfile.front")
	front := fmt.Sprintf(`{
	admin off
	skip_install_trust
	http_port 9082
	auto_https off
}

http://localhost:9082 {
	handle /.twostep/* {
		reverse_proxy 127.0.0.1:9081
	}
	handle {
		forward_auth 127.0.0.1:9081 {
			uri /.twostep/api/verify
			copy_headers Remote-User Remote-Groups Remote-Email Remote-Name
		}
		reverse_proxy %s
	}
}
`, f.echo.addr())
	if err := os.WriteFile(cfg, []byte(front), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	proc := exec.CommandContext(ctx, bin, "run", "--config", cfg, "--adapter", "caddyfile")
	proc.Env = append(os.Environ(), "XDG_DATA_HOME="+filepath.Join(f.dir, "front-data"), "XDG_CONFIG_HOME="+filepath.Join(f.dir, "front-config"))
	logf, _ := os.Create(filepath.Join(f.dir, "front.log"))
	proc.Stdout, proc.Stderr = logf, logf
	if err := proc.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = proc.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(f.dir, "front.log"))
			t.Logf("front Caddy log:\n%s", b)
		}
	})
	const app = "http://localhost:9082"
	c := newClient(t)
	eventually(t, 20*time.Second, "front Caddy answers", func() bool {
		res, err := c.http.Get(app + "/public/x")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	})

	t.Run("stranger browser goes to the portal with the absolute return URL", func(t *testing.T) {
		r := c.browse(app + "/reports?q=1")
		wantStatus(t, r, http.StatusFound)
		want := "http://localhost:9082/.twostep/login?return=" + url.QueryEscape("http://localhost:9082/reports?q=1")
		if got := r.Header.Get("Location"); got != want {
			t.Fatalf("Location %q, want %q", got, want)
		}
	})
	t.Run("stranger API client gets 401", func(t *testing.T) {
		wantError(t, c.get(app+"/reports"), http.StatusUnauthorized, "unauthenticated")
	})
	t.Run("deny is 403", func(t *testing.T) {
		wantStatus(t, c.get(app+"/internal/x"), http.StatusForbidden)
	})
	t.Run("bypass: a client-sent Remote-User does not reach the app", func(t *testing.T) {
		r := c.get(app+"/public/x", "Remote-User", "admin", "Remote-Groups", "admins")
		wantStatus(t, r, http.StatusOK)
		if u := r.json(t)["user"]; u != nil {
			t.Fatalf("the app saw Remote-User %v on a bypass route", u)
		}
	})
	// forward_auth passes the client's own headers on to the sidecar:
	// one naming another URL (nginx's header, or a second copy of
	// Caddy's) must not choose the URL that is judged.
	t.Run("client-sent X-Original-URL or a second X-Forwarded-Uri does not choose the URL", func(t *testing.T) {
		for _, hdr := range [][]string{
			{"X-Original-URL", "http://localhost:9082/public/x"},
			{"X-Original-URL", "http://localhost:9082/public/x", "X-Original-Method", "GET"},
			{"X-Forwarded-Uri", "/public/x"},
			{"X-Forwarded-Method", "GET", "X-Original-Method", "GET"},
		} {
			r := c.get(app+"/reports", hdr...)
			if r.StatusCode == http.StatusOK {
				t.Fatalf("a stranger sending %q reached the app: %d %s", hdr, r.StatusCode, r.body)
			}
			if got := c.get(app+"/internal/x", hdr...); got.StatusCode != http.StatusForbidden && got.StatusCode != http.StatusBadRequest {
				t.Fatalf("/internal/x with %q: %d %s", hdr, got.StatusCode, got.body)
			}
		}
	})
	t.Run("sign in through the portal, then the app sees the user", func(t *testing.T) {
		page := c.browse(app + "/.twostep/login?return=" + url.QueryEscape(app+"/reports"))
		wantStatus(t, page, http.StatusOK)
		m := csrfField.FindSubmatch(page.body)
		if m == nil {
			t.Fatalf("no csrf: %s", page.body)
		}
		form := url.Values{"username": {"bob"}, "password": {bobPassword}, "csrf": {string(m[1])}, "return": {app + "/reports"}}
		r := c.do(http.MethodPost, app+"/.twostep/login", strings.NewReader(form.Encode()),
			"Content-Type", "application/x-www-form-urlencoded", "Origin", app)
		wantStatus(t, r, http.StatusSeeOther)
		if loc := r.Header.Get("Location"); loc != app+"/reports" {
			t.Fatalf("Location %q", loc)
		}
		got := c.get(app+"/reports", "Remote-User", "admin", "Remote_Groups", "admins")
		wantStatus(t, got, http.StatusOK)
		if u := got.json(t)["user"].([]any); len(u) != 1 || u[0] != "bob" {
			t.Fatalf("upstream saw Remote-User %v", u)
		}
		if g := got.json(t)["groups"]; g != "staff" {
			t.Fatalf("upstream saw Remote-Groups %v", g)
		}
		wantStatus(t, c.get(app+"/admin/x"), http.StatusForbidden)
	})
}

// nginx auth_request and Traefik forwardAuth, spoken directly.
func TestSidecarHeaders(t *testing.T) {
	f := start(t)
	f.load(f.sidecarCaddyfile(true, ""))
	c := newClient(t)
	verify := sidecar + "/.twostep/api/verify"

	t.Run("nginx X-Original-URL, stranger browser", func(t *testing.T) {
		r := c.get(verify, "X-Original-URL", "https://app.example.com/reports?a=b", "X-Original-Method", "GET", "Accept", "text/html")
		wantStatus(t, r, http.StatusFound)
		want := sidecar + "/.twostep/login?return=" + url.QueryEscape("https://app.example.com/reports?a=b")
		if got := r.Header.Get("Location"); got != want {
			t.Fatalf("Location %q, want %q", got, want)
		}
	})
	t.Run("Traefik X-Forwarded-*, bypass and deny", func(t *testing.T) {
		fw := []string{"X-Forwarded-Method", "GET", "X-Forwarded-Proto", "https", "X-Forwarded-Host", "app.example.com"}
		wantStatus(t, c.get(verify, append(fw, "X-Forwarded-Uri", "/public/x")...), http.StatusOK)
		wantStatus(t, c.get(verify, append(fw, "X-Forwarded-Uri", "/internal/x")...), http.StatusForbidden)
		wantError(t, c.get(verify, append(fw, "X-Forwarded-Uri", "/reports")...), http.StatusUnauthorized, "unauthenticated")
		wantError(t, c.get(verify, append(fw, "X-Forwarded-Uri", "/public/..%2Finternal")...), http.StatusBadRequest, "invalid_path")
	})
	t.Run("nginx: the 401 says where to send the browser", func(t *testing.T) {
		// nginx's auth_request passes on only 2xx, 401 and 403, so its
		// recipe asks for the API answer and redirects to its Location.
		orig := "http://localhost:9081/secure/x?a=b&c=d" // http: the session cookie is the plain one
		nginx := []string{"X-Original-URL", orig, "X-Original-Method", "GET", "Accept", "application/json"}
		r := c.get(verify, nginx...)
		wantError(t, r, http.StatusUnauthorized, "unauthenticated")
		if got, want := r.Header.Get("Location"), sidecar+"/.twostep/login?return="+url.QueryEscape(orig); got != want {
			t.Fatalf("stranger: Location %q, want %q", got, want)
		}
		// Signed in with the password only, on a two_factor route: the
		// sign-in page would send the browser straight back (a loop);
		// Location names the enrolment page instead.
		s := newClient(t)
		wantStatus(t, s.do(http.MethodPost, sidecar+"/.twostep/api/login", strings.NewReader(`{"username":"bob","password":"`+bobPassword+`"}`), "Content-Type", "application/json"), http.StatusOK)
		r = s.get(verify, nginx...)
		wantError(t, r, http.StatusUnauthorized, "enrollment_required")
		if got, want := r.Header.Get("Location"), sidecar+"/.twostep/settings?enroll=1&return="+url.QueryEscape(orig); got != want {
			t.Fatalf("one factor on two_factor: Location %q, want %q", got, want)
		}
	})
	t.Run("signed in: 200 with Remote-* headers", func(t *testing.T) {
		s := newClient(t)
		// sign in on the sidecar's own site
		lr := s.do(http.MethodPost, sidecar+"/.twostep/api/login", strings.NewReader(`{"username":"alice","password":"`+alicePassword+`"}`), "Content-Type", "application/json")
		wantStatus(t, lr, http.StatusOK)
		res := s.get(verify, "X-Forwarded-Method", "GET", "X-Forwarded-Proto", "http", "X-Forwarded-Host", "localhost:9081", "X-Forwarded-Uri", "/admin/x")
		wantStatus(t, res, http.StatusOK)
		if res.Header.Get("Remote-User") != "alice" || res.Header.Get("Remote-Groups") != "admins,staff" {
			t.Fatalf("headers %v", res.Header)
		}
	})
	t.Run("missing forwarded headers is 400", func(t *testing.T) {
		wantError(t, c.get(verify), http.StatusBadRequest, "invalid_request")
	})
	t.Run("from an untrusted peer the headers are ignored: 400", func(t *testing.T) {
		f.load(f.sidecarCaddyfile(false, ""))
		r := c.get(verify, "X-Forwarded-Method", "GET", "X-Forwarded-Proto", "https", "X-Forwarded-Host", "app.example.com", "X-Forwarded-Uri", "/public/x")
		wantError(t, r, http.StatusBadRequest, "invalid_request")
		r = c.get(verify, "X-Original-URL", "https://app.example.com/public/x")
		wantError(t, r, http.StatusBadRequest, "invalid_request")
	})
}
