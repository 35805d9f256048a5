// Package browser is twostep's browser end-to-end test: it builds
// ./cmd/caddy, runs it on http://localhost:9180 in front of a demo "legacy
// app" on 127.0.0.1:9181 (the shape of the top-level demo Caddyfile), and
// drives a headless Chromium through the sign-in pages with chromedp.
//
// Run it with `go test ./test/browser/ -count=1 -v`. It needs Chromium
// (`apt-get install -y chromium`; env CHROMIUM overrides /usr/bin/chromium);
// without one it skips, unless TWOSTEP_REQUIRE_BROWSER=1, when it fails.
// Set TWOSTEP_SCREENSHOTS to a directory to keep full-page PNG screenshots.
// It binds the fixed ports 9180 and 9181 (on 127.0.0.1 and [::1]: the
// developer outbox, which the two-step journeys read codes from, runs on
// loopback only).
package browser

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/twostep-auth/twostep/internal/users"
)

const (
	site      = "http://localhost:9180"
	sitePort  = "9180"
	appPort   = "9181"
	appAddr   = "127.0.0.1:" + appPort
	siteName  = "Browser Test Corp"
	userName  = "alice"
	password  = "correct horse battery staple"
	wrongPass = "not the right password"

	buildTimeout   = 5 * time.Minute
	startTimeout   = 30 * time.Second
	journeyTimeout = 60 * time.Second
)

// TestBrowser starts one Caddy with twostep and runs every journey against
// it, each in a fresh browser with a fresh profile.
func TestBrowser(t *testing.T) {
	chromium := findChromium(t)
	// The OpenID provider first: Caddy discovers it at start.
	idp := startIdP(t)
	startCaddy(t, idp.Issuer)

	t.Run("a browser sent to a protected page lands on the login page, signs in, and sees the app with its user name", func(t *testing.T) {
		ctx := newBrowser(t, chromium)
		journeySignInAndOut(t, ctx)
	})
	t.Run("the login page fits a phone screen and signs in with JavaScript disabled", func(t *testing.T) {
		ctx := newBrowser(t, chromium)
		journeyMobileNoScript(t, ctx)
	})
	t.Run("a user adds a phone in Login & security, then signs in with a texted code, and with a call from the help page", func(t *testing.T) {
		ctx := newBrowser(t, chromium)
		journeyPhoneTwoStep(t, ctx)
	})
	t.Run("a user trusts this browser, signs in with the password only, revokes it in Login & security, and signs out everywhere", func(t *testing.T) {
		ctx := newBrowser(t, chromium)
		journeyTrustedDevice(t, ctx, chromium)
	})
	t.Run("a user without her phone sends a blacked-out ID photo, a reviewer approves it, and she signs in with the password alone", func(t *testing.T) {
		journeyRecovery(t, chromium)
	})
	t.Run("a user signs in with Example ID, enters the texted code as two-step is on, reaches the app, and signs out", func(t *testing.T) {
		ctx := newBrowser(t, chromium)
		journeyOIDC(t, ctx, idp)
	})
	t.Run("a user who exists only at Example ID turns two-step on and confirms with Example ID instead of a password to make new backup codes", func(t *testing.T) {
		ctx := newBrowser(t, chromium)
		journeyOIDCConfirm(t, ctx, idp)
	})
}

func journeySignInAndOut(t *testing.T, ctx context.Context) {
	// A protected page sends the browser to the login page.
	do(t, ctx, "open the protected page", chromedp.Navigate(site+"/reports"))
	wantPath(t, ctx, "/.twostep/login")
	do(t, ctx, "wait for the login form", chromedp.WaitVisible(chromedp.CSS(`input[name=username]`)))
	wantBodyContains(t, ctx, siteName)
	screenshot(t, ctx, "01-login.png")

	// A wrong password: the form comes back with a plain message.
	do(t, ctx, "type a wrong password",
		chromedp.SendKeys(chromedp.CSS(`input[name=username]`), userName),
		chromedp.SendKeys(chromedp.CSS(`input[name=password]`), wrongPass),
	)
	submit(t, ctx, "sign in with a wrong password", signInButton, http.StatusUnauthorized)
	wantPath(t, ctx, "/.twostep/login")
	wantBodyContains(t, ctx, "Incorrect username or password.")
	screenshot(t, ctx, "02-login-error.png")

	// The right password: back at the page first asked for, as alice.
	do(t, ctx, "type the right password",
		chromedp.Clear(chromedp.CSS(`input[name=username]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name=username]`), userName),
		chromedp.SendKeys(chromedp.CSS(`input[name=password]`), password),
	)
	submit(t, ctx, "sign in with the right password", signInButton, http.StatusOK)
	wantPath(t, ctx, "/reports")
	wantUser(t, ctx, userName)
	screenshot(t, ctx, "03-signed-in.png")

	// Sign out: the confirmation page, its button, the login page again.
	do(t, ctx, "open the sign-out page",
		chromedp.Navigate(site+"/.twostep/logout"),
		chromedp.WaitVisible(signOutButton),
	)
	submit(t, ctx, "click Sign out", signOutButton, http.StatusOK)
	wantPath(t, ctx, "/.twostep/login")
	wantBodyContains(t, ctx, "You have signed out.")

	// The session is gone: the protected page asks for a sign-in again.
	do(t, ctx, "open the protected page after signing out",
		chromedp.Navigate(site+"/reports"),
		chromedp.WaitVisible(chromedp.CSS(`input[name=username]`)),
	)
	wantPath(t, ctx, "/.twostep/login")
}

func journeyMobileNoScript(t *testing.T, ctx context.Context) {
	do(t, ctx, "emulate a phone", chromedp.EmulateViewport(375, 812))
	if _, err := chromedp.Call(ctx, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true}); err != nil {
		t.Fatalf("disable JavaScript: %v", err)
	}
	// Make sure the page really runs no script of its own.
	do(t, ctx, "open a page with a script",
		chromedp.Navigate(`data:text/html,<title>before</title><script>document.title="script ran"</script>`))
	if title := run(t, ctx, "read the title", chromedp.Title()); title != "before" {
		t.Fatalf("JavaScript is still on: the page's script set the title to %q", title)
	}

	do(t, ctx, "open the protected page",
		chromedp.Navigate(site+"/reports"),
		chromedp.WaitVisible(chromedp.CSS(`input[name=username]`)),
	)
	wantPath(t, ctx, "/.twostep/login")
	wantBodyContains(t, ctx, siteName)

	type widths struct {
		Scroll int `json:"scroll"`
		Inner  int `json:"inner"`
	}
	w := run(t, ctx, "measure the page", chromedp.Evaluate[widths](
		`({scroll: document.documentElement.scrollWidth, inner: window.innerWidth})`))
	if w.Inner != 375 {
		t.Errorf("window.innerWidth = %d, want 375 (the emulated phone)", w.Inner)
	}
	if w.Scroll > w.Inner {
		t.Errorf("the login page overflows sideways on a phone: scrollWidth %d > innerWidth %d", w.Scroll, w.Inner)
	}
	screenshot(t, ctx, "04-login-mobile-nojs.png")

	do(t, ctx, "type the password",
		chromedp.SendKeys(chromedp.CSS(`input[name=username]`), userName),
		chromedp.SendKeys(chromedp.CSS(`input[name=password]`), password),
	)
	submit(t, ctx, "sign in without JavaScript", signInButton, http.StatusOK)
	wantPath(t, ctx, "/reports")
	wantUser(t, ctx, userName)
}

var (
	signInButton  = chromedp.Search(`//button[normalize-space()="Sign in"]`)
	signOutButton = chromedp.Search(`//button[normalize-space()="Sign out"]`)
)

// do runs steps and stops the test at the first error.
func do(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v (page: %s)", what, err, pageState(ctx))
	}
}

// submit clicks a form's button, waits for the page that the submission
// loads (after any redirect) and checks its HTTP status.
func submit(t *testing.T, ctx context.Context, what string, button chromedp.Search, wantStatus int) {
	t.Helper()
	res, err := chromedp.RunResponse(ctx, chromedp.Click(button))
	if err != nil {
		t.Fatalf("%s: %v (page: %s)", what, err, pageState(ctx))
	}
	if res == nil || res.Status != int64(wantStatus) {
		var status int64
		if res != nil {
			status = res.Status
		}
		t.Fatalf("%s: the page loaded with HTTP status %d, want %d (page: %s)", what, status, wantStatus, pageState(ctx))
	}
}

// run runs one action and returns its value.
func run[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("%s: %v (page: %s)", what, err, pageState(ctx))
	}
	return v
}

// pageState describes where the browser is, for failure messages.
func pageState(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	loc, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		return "unknown: " + err.Error()
	}
	text, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
	if len(text) > 600 {
		text = text[:600] + "…"
	}
	return fmt.Sprintf("%s %q", loc, text)
}

func wantPath(t *testing.T, ctx context.Context, want string) {
	t.Helper()
	loc := run(t, ctx, "read the location", chromedp.Location())
	u, err := url.Parse(loc)
	if err != nil {
		t.Fatalf("location %q: %v", loc, err)
	}
	if u.Host != "localhost:"+sitePort || u.Path != want {
		t.Fatalf("the browser is at %s, want the path %s on %s", loc, want, site)
	}
}

func wantBodyContains(t *testing.T, ctx context.Context, want string) {
	t.Helper()
	text := run(t, ctx, "read the page", chromedp.Text(chromedp.CSS("body")))
	if !strings.Contains(text, want) {
		t.Fatalf("the page does not show %q; it shows:\n%s", want, text)
	}
}

func wantUser(t *testing.T, ctx context.Context, want string) {
	t.Helper()
	got := run(t, ctx, "read #user", chromedp.Text(chromedp.ID("user")))
	if strings.TrimSpace(got) != want {
		t.Fatalf("the app shows the user %q, want %q (page: %s)", got, want, pageState(ctx))
	}
}

// screenshot saves a full-page PNG into $TWOSTEP_SCREENSHOTS, when that is
// a directory.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	dir := os.Getenv("TWOSTEP_SCREENSHOTS")
	if dir == "" {
		return
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return
	}
	buf := run(t, ctx, "take a screenshot", chromedp.FullScreenshot(100))
	if err := os.WriteFile(filepath.Join(dir, name), buf, 0o644); err != nil {
		t.Errorf("save screenshot: %v", err)
	}
}

// findChromium returns the browser to drive, or skips (fails when
// TWOSTEP_REQUIRE_BROWSER=1) when there is none.
func findChromium(t *testing.T) string {
	t.Helper()
	path := os.Getenv("CHROMIUM")
	if path == "" {
		path = "/usr/bin/chromium"
	}
	found, err := exec.LookPath(path)
	if err == nil {
		return found
	}
	msg := fmt.Sprintf("no browser at %s (%v): install it with `apt-get install -y chromium` or set CHROMIUM", path, err)
	if os.Getenv("TWOSTEP_REQUIRE_BROWSER") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// newBrowser starts a headless Chromium with a fresh profile, and returns
// its context, bounded by journeyTimeout.
func newBrowser(t *testing.T, chromium string) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), journeyTimeout)
	t.Cleanup(cancel)
	var out syncBuffer
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(chromium),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.NoFirstRun,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.CombinedOutput(&out),
	)
	t.Cleanup(cancelAlloc)
	bctx, cancelBrowser := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancelBrowser()
		if t.Failed() {
			if log := quietChromiumLog(out.String()); log != "" {
				t.Logf("chromium output:\n%s", log)
			}
		}
	})
	// Start the browser now, so that a failure to start says so.
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("start %s: %v", chromium, err)
	}
	return bctx
}

// startCaddy builds ./cmd/caddy, writes a Caddyfile and a users file into
// a temporary directory, runs Caddy and waits for the site to answer.
// oidcIssuer is the OpenID provider of the `oidc example` block.
func startCaddy(t *testing.T, oidcIssuer string) {
	t.Helper()
	for _, addr := range []string{"127.0.0.1:" + sitePort, appAddr} {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("port %s is taken (%v): is another twostep or test still running?", addr, err)
		}
		l.Close()
	}

	dir := t.TempDir()
	bin := filepath.Join(dir, "caddy")
	bctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	build := exec.CommandContext(bctx, "go", "build", "-o", bin, "./cmd/caddy")
	build.Dir = filepath.Join("..", "..") // the module root
	began := time.Now()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/caddy: %v\n%s", err, out)
	}
	t.Logf("built ./cmd/caddy in %v", time.Since(began).Round(time.Millisecond))

	hash, err := users.Hash(password, "argon2id")
	if err != nil {
		t.Fatal(err)
	}
	usersFile := filepath.Join(dir, "users.yml")
	writeFile(t, usersFile, fmt.Sprintf(`users:
  %s:
    displayname: Alice Example
    password: "%s"
    email: alice@example.com
    groups: [admins]
  %s:
    displayname: Carol Example
    password: "%s"
    email: carol@example.com
  %s:
    displayname: Dave Example
    password: "%s"
    email: dave@example.com
  %s:
    displayname: Erin Example
    password: "%s"
    email: %s
  %s:
    displayname: Rita Reviewer
    password: "%s"
    email: rita@example.com
    groups: [%s]
%s`, userName, hash, phoneUser, hash, deviceUser, hash,
		recoveryUser, hash, recoveryEmail, reviewerUser, hash, reviewGroup, oidcUsersEntry(hash)))

	caddyfile := filepath.Join(dir, "Caddyfile")
	writeFile(t, caddyfile, fmt.Sprintf(`{
	admin off
	# dev_outbox shows codes to whoever asks, so it runs on loopback only.
	default_bind 127.0.0.1 [::1]
	twostep {
		users_file %s
		store bolt %s
		site_name "%s"
		session {
			idle 30m
			lifetime 12h
		}
		regulation {
			max_retries 5
			find_time 10m
			ban_time 15m
		}
		code {
			# The journeys send several codes by one channel within
			# seconds; the 30 s default cooldown would refuse the second.
			resend_after %s
		}
		# Account recovery with an identity check: one reviewer, no
		# cooling-off, then the password alone (as the SPEC's defaults).
		recovery {
			review_group %s
			approvals 1
			cooling_off 0
			after_approval password_only
		}
		# Texts, calls and emails go to GET /.twostep/api/outbox.
		dev_outbox
		%s
	}
}

# The protected site.
%s {
	twostep {
		rule bypass path /health /public/*
		rule deny path /internal/*
		rule one_factor path /admin/* group admins
		default one_factor
	}
	reverse_proxy %s
}

# The "legacy app": no login of its own, it trusts Remote-User. Its site
# address has no host: reverse_proxy passes on the browser's Host
# (localhost:9180), which a host of 127.0.0.1 would not match.
http://:%s {
	bind 127.0.0.1
	header Content-Type "text/html; charset=utf-8"
	respond /health "ok" 200
	respond "<!doctype html><meta name=viewport content='width=device-width'><title>Legacy app</title><h1>Legacy app</h1><p>Signed in as <strong id=user>{http.request.header.Remote-User}</strong> ({http.request.header.Remote-Name}, {http.request.header.Remote-Email}).</p><p><a href=/.twostep/logout>Sign out</a></p>" 200
}
`, usersFile, filepath.Join(dir, "twostep.db"), siteName, resendAfter, reviewGroup, oidcCaddyBlock(oidcIssuer), site, appAddr, appPort))

	logPath := filepath.Join(dir, "caddy.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "--config", caddyfile, "--adapter", "caddyfile")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"XDG_DATA_HOME="+filepath.Join(dir, "data"),
		"XDG_CONFIG_HOME="+filepath.Join(dir, "config"),
	)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		t.Fatalf("start caddy: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		logFile.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("caddy log:\n%s", b)
		}
	})

	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(startTimeout)
	var last error
	for {
		select {
		case err := <-exited:
			exited <- err // for the cleanup
			t.Fatalf("caddy exited before it answered: %v", err)
		default:
		}
		res, err := client.Get(site + "/health")
		if err == nil {
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode == http.StatusOK && strings.TrimSpace(string(body)) == "ok" {
				return
			}
			err = fmt.Errorf("status %d: %q", res.StatusCode, body)
		}
		last = err
		if time.Now().After(deadline) {
			t.Fatalf("%s/health did not answer within %v: %v", site, startTimeout, last)
		}
		time.Sleep(100 * time.Millisecond) // poll interval, not an assertion
	}
}

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

// quietChromiumLog drops the lines that a container without D-Bus makes
// Chromium print on every start.
func quietChromiumLog(s string) string {
	var keep []string
	for _, line := range strings.Split(s, "\n") {
		if strings.TrimSpace(line) == "" || strings.Contains(line, "dbus") {
			continue
		}
		keep = append(keep, line)
	}
	return strings.Join(keep, "\n")
}

// syncBuffer is a bytes.Buffer that the browser's output goroutine and the
// test may use at once.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
