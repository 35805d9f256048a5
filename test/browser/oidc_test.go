package browser

// The upstream OpenID Connect journey: "Sign in with Example" on the login
// page, the provider's own login page, twostep's second factor (a texted
// code: the user has two-step on), the app, and signing out.
//
// The provider is internal/oidc/oidctest's zitadel/oidc v3 OP, in-process
// on 127.0.0.1 with in-memory storage and a minimal login page. It must be
// running before Caddy starts: Caddy discovers it at start.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/twostep-auth/twostep/internal/oidc/oidctest"
)

const (
	// oidcUser is in the users file and, under the same name, at the
	// provider; the journey turns two-step on for her first.
	oidcUser        = "olivia"
	oidcIdPPassword = "olivia's password at Example ID"
	oidcPhone       = "+15550007777"
	oidcPhoneMasked = "•••• 7777"

	idpClientID     = "twostep-browser"
	idpClientSecret = "browser test client secret"
	idpRedirectURI  = site + "/.twostep/oidc/example/callback"
	idpLabel        = "Sign in with Example"

	// quinn exists only at the provider (allow_unknown_users): she has no
	// password here, and confirms with the provider instead.
	idpOnlyUser     = "quinn"
	idpOnlyPassword = "quinn's password at Example ID"
	idpOnlyPhone    = "+15550008888"
)

// oidcUsersEntry is olivia's users-file entry (the shared test password).
func oidcUsersEntry(hash string) string {
	return fmt.Sprintf(`  %s:
    displayname: Olivia Example
    password: "%s"
    email: olivia@example.com
`, oidcUser, hash)
}

// oidcCaddyBlock is the `oidc example { … }` global option for the OP.
func oidcCaddyBlock(issuer string) string {
	return fmt.Sprintf(`# Upstream OpenID Connect as the first factor; twostep's own
		# second factor still applies to users who turned it on.
		oidc example {
			issuer %s
			client_id %s
			client_secret "%s"
			scopes openid email profile
			label "%s"
			allow_unknown_users
		}`, issuer, idpClientID, idpClientSecret, idpLabel)
}

func journeyOIDC(t *testing.T, ctx context.Context, idp *oidctest.Server) {
	began := time.Now()
	lap := func(what string) { t.Logf("%-48s %6v", what, time.Since(began).Round(time.Millisecond)) }
	turnOnTwoStepByAPI(t, ctx, oidcUser, oidcPhone)
	lap("two-step on for " + oidcUser + " (JSON API)")

	// The login page offers the provider's button under the password form.
	do(t, ctx, "open the protected page",
		chromedp.Navigate(site+"/reports"),
		chromedp.WaitVisible(chromedp.CSS(`input[name=username]`)),
	)
	wantPath(t, ctx, "/.twostep/login")
	wantButton(t, ctx, idpLabel)
	if disabled := run(t, ctx, "read the provider button's state", chromedp.Evaluate[bool](
		`Array.from(document.querySelectorAll("button")).find(b => b.textContent.trim() === `+jsString(idpLabel)+`).disabled`)); disabled {
		t.Fatalf("the %q button is disabled (page: %s)", idpLabel, pageState(ctx))
	}
	screenshot(t, ctx, "20-login-oidc-button.png")

	// The button leads to the provider's own login page.
	clickTo(t, ctx, "click "+idpLabel, button(idpLabel), http.StatusOK)
	loc := run(t, ctx, "read the location", chromedp.Location())
	if !strings.HasPrefix(loc, idp.Issuer+"/login?") {
		t.Fatalf("after %q the browser is at %s, want the provider's login page %s/login (page: %s)", idpLabel, loc, idp.Issuer, pageState(ctx))
	}
	wantBodyContains(t, ctx, "Example ID")
	do(t, ctx, "wait for the provider's form", chromedp.WaitVisible(chromedp.CSS(`#op-username`)))
	screenshot(t, ctx, "21-provider-login.png")
	lap("at the provider's login page")

	// Sign in there: the provider sends the browser back to twostep, which
	// asks for olivia's second factor.
	do(t, ctx, "type the provider credentials",
		chromedp.SendKeys(chromedp.CSS(`#op-username`), oidcUser),
		chromedp.SendKeys(chromedp.CSS(`#op-password`), oidcIdPPassword),
	)
	clickTo(t, ctx, "sign in at the provider", button("Continue"), http.StatusOK)
	wantPath(t, ctx, "/.twostep/challenge")
	wantReturn(t, ctx, "/reports")
	wantBodyContains(t, ctx, "Two-step verification")
	screenshot(t, ctx, "22-oidc-challenge.png")
	lap("back from the provider, on the challenge page")

	prev := newestOutbox(t, ctx, "sms", oidcPhone)
	submit(t, ctx, `click "Text me a code"`, button("Text me a code"), http.StatusOK)
	wantPath(t, ctx, "/.twostep/challenge")
	wantBodyContains(t, ctx, "We sent a code to "+oidcPhoneMasked+".")
	msg := waitOutbox(t, ctx, "sms", oidcPhone, prev)
	verifyCode(t, ctx, msg.Code)
	wantPath(t, ctx, "/reports")
	wantUser(t, ctx, oidcUser)
	screenshot(t, ctx, "23-oidc-signed-in.png")
	lap("signed in: provider + texted code")

	// Sign out: the local session ends (the page may offer to sign out at
	// the provider too).
	do(t, ctx, "open the sign-out page",
		chromedp.Navigate(site+"/.twostep/logout"),
		chromedp.WaitVisible(signOutButton),
	)
	wantBodyContains(t, ctx, "Olivia Example")
	submit(t, ctx, "click Sign out", signOutButton, http.StatusOK)
	wantBodyContains(t, ctx, "signed out")
	screenshot(t, ctx, "24-oidc-signed-out.png")
	do(t, ctx, "open the protected page after signing out",
		chromedp.Navigate(site+"/reports"),
		chromedp.WaitVisible(chromedp.CSS(`input[name=username]`)),
	)
	wantPath(t, ctx, "/.twostep/login")
	lap("signed out")
}

// journeyOIDCConfirm: quinn, who exists only at the provider, signs in
// there, turns two-step on in Login & security, and makes new backup codes,
// which for others takes their password: she confirms with the provider
// instead, which asks for her credentials again.
func journeyOIDCConfirm(t *testing.T, ctx context.Context, idp *oidctest.Server) {
	began := time.Now()
	lap := func(what string) { t.Logf("%-48s %6v", what, time.Since(began).Round(time.Millisecond)) }
	atProvider := func(what string) {
		t.Helper()
		loc := run(t, ctx, "read the location", chromedp.Location())
		if !strings.HasPrefix(loc, idp.Issuer+"/login?") {
			t.Fatalf("%s: the browser is at %s, want the provider's login page (page: %s)", what, loc, pageState(ctx))
		}
		do(t, ctx, "type quinn's credentials at the provider",
			chromedp.WaitVisible(chromedp.CSS(`#op-username`)),
			chromedp.SendKeys(chromedp.CSS(`#op-username`), idpOnlyUser),
			chromedp.SendKeys(chromedp.CSS(`#op-password`), idpOnlyPassword),
		)
		clickTo(t, ctx, "sign in at the provider", button("Continue"), http.StatusOK)
	}
	do(t, ctx, "open the protected page",
		chromedp.Navigate(site+"/reports"),
		chromedp.WaitVisible(chromedp.CSS(`input[name=username]`)),
	)
	clickTo(t, ctx, "click "+idpLabel, button(idpLabel), http.StatusOK)
	atProvider("signing in")
	wantPath(t, ctx, "/reports")
	wantUser(t, ctx, idpOnlyUser)
	lap("signed in at the provider (no account here)")

	// Two-step on with a phone.
	do(t, ctx, "open Login & security and type the phone",
		chromedp.Navigate(site+"/.twostep/settings"),
		chromedp.WaitVisible(chromedp.CSS(`input[name=phone]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name=phone]`), idpOnlyPhone),
		chromedp.Click(chromedp.CSS(`input[name=method][value=sms]`)),
	)
	prev := newestOutbox(t, ctx, "sms", idpOnlyPhone)
	submit(t, ctx, `click "Send a code"`, button("Send a code"), http.StatusOK)
	msg := waitOutbox(t, ctx, "sms", idpOnlyPhone, prev)
	do(t, ctx, "type the enrolment code",
		chromedp.WaitVisible(chromedp.CSS(`input[name=code]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name=code]`), msg.Code),
	)
	submit(t, ctx, `click "Confirm the number"`, button("Confirm the number"), http.StatusOK)
	wantBodyContains(t, ctx, "Your phone number is confirmed.")
	lap("two-step on")

	// New backup codes: no password field, a confirmation with the provider.
	do(t, ctx, "reload Login & security", chromedp.Navigate(site+"/.twostep/settings"), chromedp.WaitVisible(button("Make new backup codes")))
	if n := run(t, ctx, "count password fields", chromedp.Evaluate[int](`document.querySelectorAll('input[type=password]').length`)); n != 0 {
		t.Fatalf("the settings page of an account without a password here has %d password fields (page: %s)", n, pageState(ctx))
	}
	if !run(t, ctx, "read the backup button's state", chromedp.Evaluate[bool](
		`Array.from(document.querySelectorAll("button")).find(b => b.textContent.trim() === "Make new backup codes").disabled`)) {
		t.Fatalf("new backup codes can be asked for before the confirmation (page: %s)", pageState(ctx))
	}
	wantBodyContains(t, ctx, "Your account has no password here.")
	screenshot(t, ctx, "25-oidc-confirm.png")
	confirm := chromedp.Search(`//section[h2[normalize-space()="Backup codes"]]//button[normalize-space()="Confirm with Example"]`)
	clickTo(t, ctx, `click "Confirm with Example"`, confirm, http.StatusOK)
	atProvider("confirming")
	wantPath(t, ctx, "/.twostep/settings")
	wantBodyContains(t, ctx, "Confirmed with Example")
	lap("confirmed at the provider")

	submit(t, ctx, `click "Make new backup codes"`, button("Make new backup codes"), http.StatusOK)
	wantBodyContains(t, ctx, "New backup codes are ready")
	codes := run(t, ctx, "read the backup codes", chromedp.Evaluate[[]string](
		`Array.from(document.querySelectorAll('ul.backup code'), c => c.textContent.trim())`))
	if len(codes) != 10 {
		t.Fatalf("the page shows %d backup codes, want 10 (page: %s)", len(codes), pageState(ctx))
	}
	screenshot(t, ctx, "26-oidc-confirmed-codes.png")
	lap("new backup codes")
}

// clickTo clicks and waits, at most 15 s, for the page the click loads,
// wherever the redirects lead, and checks its status. A navigation that
// the browser blocks (a CSP violation, say) fails here instead of hanging.
func clickTo(t *testing.T, ctx context.Context, what string, b chromedp.Search, wantStatus int) {
	t.Helper()
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	log := collectConsole(t, cctx)
	res, err := chromedp.RunResponse(cctx, chromedp.Click(b))
	if err != nil || res == nil || res.Status != int64(wantStatus) {
		var status int64
		if res != nil {
			status = res.Status
		}
		t.Fatalf("%s: status %d, err %v, want a page with status %d (page: %s; console: %s)", what, status, err, wantStatus, pageState(ctx), log.String())
	}
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// turnOnTwoStepByAPI signs user in with the password through the JSON API,
// confirms a phone for text messages and signs out: two-step is on.
func turnOnTwoStepByAPI(t *testing.T, ctx context.Context, user, phone string) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	post := func(path string, body any, want int) []byte {
		t.Helper()
		b, _ := json.Marshal(body)
		res, err := c.Post(site+"/.twostep/api/"+path, "application/json", bytes.NewReader(b))
		if err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		defer res.Body.Close()
		out, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
		if res.StatusCode != want {
			t.Fatalf("POST %s: %d %s, want %d", path, res.StatusCode, out, want)
		}
		return out
	}
	post("login", map[string]string{"username": user, "password": password}, http.StatusOK)
	prev := newestOutbox(t, ctx, "sms", phone)
	post("phone", map[string]string{"phone": phone, "method": "sms"}, http.StatusAccepted)
	msg := waitOutbox(t, ctx, "sms", phone, prev)
	post("phone/confirm", map[string]string{"code": msg.Code}, http.StatusOK)
	post("logout", map[string]string{}, http.StatusNoContent)
}

// --- The provider ---

// startIdP starts the provider on 127.0.0.1 (a random port), with olivia's
// account.
func startIdP(t *testing.T) *oidctest.Server {
	t.Helper()
	idp := oidctest.NewServer(t, oidctest.Options{
		SiteName: siteName,
		Clients: []oidctest.Client{{
			ID:                     idpClientID,
			Secret:                 idpClientSecret,
			RedirectURIs:           []string{idpRedirectURI},
			PostLogoutRedirectURIs: []string{site + "/.twostep/login?signed_out=1"},
		}},
		Users: []oidctest.User{
			{Username: oidcUser, Password: oidcIdPPassword,
				Email: "olivia@idp.example", EmailVerified: true, Name: "Olivia at Example ID", AMR: []string{"pwd"}},
			{Username: idpOnlyUser, Password: idpOnlyPassword,
				Email: "quinn@idp.example", EmailVerified: true, Name: "Quinn Contractor", AMR: []string{"pwd"}},
		},
	})

	// Discovery works before Caddy is started on it.
	res, err := (&http.Client{Timeout: 5 * time.Second}).Get(idp.Issuer + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatalf("the provider's discovery: %v", err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("the provider's discovery: %s", res.Status)
	}
	if u, _ := url.Parse(idp.Issuer); u.Hostname() != "127.0.0.1" {
		t.Fatalf("the provider runs on %s, want 127.0.0.1", idp.Issuer)
	}
	return idp
}
