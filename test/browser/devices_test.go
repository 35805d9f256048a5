package browser

// The trusted-browser journey: "Don't require a code on this browser" on
// the challenge, a password-only sign-in, the list of trusted browsers in
// Login & security, revoking one, and "Sign out everywhere".

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

const (
	// deviceUser has no phone in the users file; the journey adds one.
	deviceUser        = "dave"
	devicePhone       = "+15557654321"
	devicePhoneMasked = "•••• 4321"

	// deviceCookieName is the trusted-device cookie on plain HTTP.
	deviceCookieName = "twostep_device"
)

var (
	trustBox = chromedp.CSS(`input[name=trust]`)

	// revokeThisBrowser is the Revoke button in the row of the trusted
	// browsers table that is marked "this browser".
	revokeThisBrowser = chromedp.Search(`//table[contains(concat(" ", normalize-space(@class), " "), " devices ")]` +
		`//tr[.//span[contains(concat(" ", normalize-space(@class), " "), " tag ") and normalize-space()="this browser"]]` +
		`//button[normalize-space()="Revoke"]`)
)

func journeyTrustedDevice(t *testing.T, ctx context.Context, chromium string) {
	began := time.Now()
	lap := func(what string) { t.Logf("%-48s %6v", what, time.Since(began).Round(time.Millisecond)) }

	// Sign in with the password (two-step is off) and add a phone.
	openAndSignIn(t, ctx, deviceUser)
	wantPath(t, ctx, "/reports")
	wantUser(t, ctx, deviceUser)
	lap("signed in with the password")

	do(t, ctx, "open Login & security",
		chromedp.Navigate(site+"/.twostep/settings"),
		chromedp.WaitVisible(chromedp.CSS(`input[name=phone]`)),
	)
	wantPath(t, ctx, "/.twostep/settings")
	wantBodyContains(t, ctx, "Off. Anyone with your password can sign in.")
	do(t, ctx, "type the phone number and choose text message",
		chromedp.SendKeys(chromedp.CSS(`input[name=phone]`), devicePhone),
		chromedp.Click(chromedp.CSS(`input[name=method][value=sms]`)),
	)
	prev := newestOutbox(t, ctx, "sms", devicePhone)
	submit(t, ctx, `click "Send a code"`, button("Send a code"), http.StatusOK)
	wantPath(t, ctx, "/.twostep/settings")
	wantBodyContains(t, ctx, "We sent a code to "+devicePhoneMasked+".")
	msg := waitOutbox(t, ctx, "sms", devicePhone, prev)
	do(t, ctx, "type the enrolment code",
		chromedp.WaitVisible(chromedp.CSS(`input[name=code]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name=code]`), msg.Code),
	)
	submit(t, ctx, `click "Confirm the number"`, button("Confirm the number"), http.StatusOK)
	wantPath(t, ctx, "/.twostep/settings")
	wantBodyContains(t, ctx, "Your phone number is confirmed.")
	lap("phone confirmed, two-step on")

	// The first sign-in with two-step: tick "Don't require a code on this
	// browser" with the texted code.
	signOut(t, ctx)
	openAndSignIn(t, ctx, deviceUser)
	wantPath(t, ctx, "/.twostep/challenge")
	wantReturn(t, ctx, "/reports")
	code := textMeACode(t, ctx)
	if c := deviceCookie(t, ctx); c != nil {
		t.Errorf("the browser holds a %s cookie before it was trusted: %+v", deviceCookieName, c)
	}
	tickTrust(t, ctx)
	screenshot(t, ctx, "09-challenge-trust.png")
	verifyCode(t, ctx, code)
	wantPath(t, ctx, "/reports")
	wantUser(t, ctx, deviceUser)
	wantDeviceCookie(t, ctx)
	lap("signed in with a code, browser trusted")

	// Signed out, the trusted browser needs the password only.
	signOut(t, ctx)
	if deviceCookie(t, ctx) == nil {
		t.Fatalf("signing out dropped the %s cookie; a trusted browser keeps it", deviceCookieName)
	}
	openAndSignIn(t, ctx, deviceUser)
	wantPath(t, ctx, "/reports")
	wantUser(t, ctx, deviceUser)
	lap("signed in with the password only")

	// Another browser (its own profile) still needs a code: the trust is
	// this browser's, not the account's. It signs in fully, without
	// trusting itself, for "Sign out everywhere" below.
	other := newBrowser(t, chromium)
	openAndSignIn(t, other, deviceUser)
	wantPath(t, other, "/.twostep/challenge")
	wantReturn(t, other, "/reports")
	if c := deviceCookie(t, other); c != nil {
		t.Errorf("the second browser holds a %s cookie it was never given: %+v", deviceCookieName, c)
	}
	verifyCode(t, other, textMeACode(t, other))
	wantPath(t, other, "/reports")
	wantUser(t, other, deviceUser)
	if c := deviceCookie(t, other); c != nil {
		t.Errorf("the second browser got a %s cookie without ticking the box: %+v", deviceCookieName, c)
	}
	lap("a second browser needed a code")

	// Login & security lists the one trusted browser, as this browser.
	openDevices(t, ctx)
	rows := deviceRows(t, ctx)
	if len(rows) != 1 {
		t.Fatalf("the trusted browsers table has %d rows, want 1 (only the first browser ticked the box): %+v", len(rows), rows)
	}
	if !rows[0].Current {
		t.Fatalf("the trusted browser's row is not marked \"this browser\": %q", rows[0].Text)
	}
	if !strings.Contains(rows[0].Text, "Chrome") {
		t.Errorf("the trusted browser's row reads %q, want it to name Chrome", rows[0].Text)
	}
	t.Logf("trusted browsers: %q", rows[0].Text)
	screenshot(t, ctx, "10-settings-devices.png")

	// Revoke it: the notice, an empty list, and the very next request is
	// asked for a code, though the session is still there.
	submit(t, ctx, `click "Revoke" on this browser's row`, revokeThisBrowser, http.StatusOK)
	wantPath(t, ctx, "/.twostep/settings")
	wantBodyContains(t, ctx, "That browser will be asked for a code again.")
	if rows := deviceRows(t, ctx); len(rows) != 0 {
		t.Errorf("after revoking, the trusted browsers table still has %d rows: %+v", len(rows), rows)
	}
	wantBodyContains(t, ctx, "No browser skips the code.")
	screenshot(t, ctx, "11-device-revoked.png")
	lap("revoked this browser")

	openProtected(t, ctx, http.StatusOK)
	wantPath(t, ctx, "/.twostep/challenge")
	wantReturn(t, ctx, "/reports")
	wantButton(t, ctx, "Text me a code")
	lap("asked for a code again after revoking")

	// Part two: trust the browser again, then sign out everywhere.
	code = textMeACode(t, ctx)
	tickTrust(t, ctx)
	verifyCode(t, ctx, code)
	wantPath(t, ctx, "/reports")
	wantUser(t, ctx, deviceUser)
	wantDeviceCookie(t, ctx)

	openDevices(t, ctx)
	if rows := deviceRows(t, ctx); len(rows) != 1 || !rows[0].Current {
		t.Fatalf("after trusting it again, the trusted browsers table has %+v, want one row marked \"this browser\"", rows)
	}
	wantButton(t, ctx, "Sign out everywhere")
	submit(t, ctx, `click "Sign out everywhere"`, button("Sign out everywhere"), http.StatusOK)
	wantPath(t, ctx, "/.twostep/login")
	wantBodyContains(t, ctx, "You have signed out.")
	lap("signed out everywhere")

	// The device is forgotten: the password is not enough any more.
	signInWithPassword(t, ctx, deviceUser)
	wantPath(t, ctx, "/.twostep/challenge")
	wantButton(t, ctx, "Text me a code")

	// And the other browser's session ended too.
	openProtected(t, other, http.StatusOK)
	wantPath(t, other, "/.twostep/login")
	lap("device forgotten, other session ended")
}

// openAndSignIn opens the protected page, checks that it lands on the
// login page and signs in with the password.
func openAndSignIn(t *testing.T, ctx context.Context, user string) {
	t.Helper()
	do(t, ctx, "open the protected page",
		chromedp.Navigate(site+"/reports"),
		chromedp.WaitVisible(chromedp.CSS(`input[name=username]`)),
	)
	wantPath(t, ctx, "/.twostep/login")
	signInWithPassword(t, ctx, user)
}

// openProtected navigates to /reports and checks the status of the page
// it ends on, after any redirect.
func openProtected(t *testing.T, ctx context.Context, wantStatus int) {
	t.Helper()
	res, err := chromedp.RunResponse(ctx, chromedp.Navigate(site+"/reports"))
	if err != nil {
		t.Fatalf("open the protected page: %v (page: %s)", err, pageState(ctx))
	}
	if res == nil || res.Status != int64(wantStatus) {
		var status int64
		if res != nil {
			status = res.Status
		}
		t.Fatalf("open the protected page: HTTP status %d, want %d (page: %s)", status, wantStatus, pageState(ctx))
	}
}

// textMeACode clicks "Text me a code" on the challenge page and returns the
// code from the outbox.
func textMeACode(t *testing.T, ctx context.Context) string {
	t.Helper()
	prev := newestOutbox(t, ctx, "sms", devicePhone)
	submit(t, ctx, `click "Text me a code"`, button("Text me a code"), http.StatusOK)
	wantPath(t, ctx, "/.twostep/challenge")
	wantBodyContains(t, ctx, "We sent a code to "+devicePhoneMasked+".")
	return waitOutbox(t, ctx, "sms", devicePhone, prev).Code
}

// tickTrust ticks "Don't require a code on this browser", which starts
// unticked.
func tickTrust(t *testing.T, ctx context.Context) {
	t.Helper()
	do(t, ctx, "wait for the trust checkbox", chromedp.WaitVisible(trustBox))
	wantElement(t, ctx, "label", "Don't require a code on this browser")
	type box struct {
		Type    string `json:"type"`
		Checked bool   `json:"checked"`
		Label   string `json:"label"`
	}
	const read = `(() => { const b = document.querySelector('input[name=trust]'); const l = b.closest('label');
		return {type: b.type, checked: b.checked, label: l ? l.textContent.replace(/\s+/g, " ").trim() : ""}; })()`
	b := run(t, ctx, "read the trust checkbox", chromedp.Evaluate[box](read))
	if b.Type != "checkbox" || b.Checked {
		t.Fatalf("the trust box is %+v, want an unticked checkbox", b)
	}
	if b.Label != "Don't require a code on this browser" {
		t.Errorf("the trust box's label reads %q", b.Label)
	}
	do(t, ctx, "tick the trust checkbox", chromedp.Click(trustBox))
	if b = run(t, ctx, "read the trust checkbox", chromedp.Evaluate[box](read)); !b.Checked {
		t.Fatalf("the trust box is not ticked after clicking it (page: %s)", pageState(ctx))
	}
}

// deviceCookie returns the browser's trusted-device cookie for the site,
// or nil.
func deviceCookie(t *testing.T, ctx context.Context) *network.Cookie {
	t.Helper()
	res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{site + "/"}})
	if err != nil {
		t.Fatalf("read the cookies: %v", err)
	}
	for _, c := range res.Cookies {
		if c.Name == deviceCookieName {
			return c
		}
	}
	return nil
}

// wantDeviceCookie checks that the browser holds a lasting, HttpOnly
// trusted-device cookie that the page's script cannot read.
func wantDeviceCookie(t *testing.T, ctx context.Context) {
	t.Helper()
	c := deviceCookie(t, ctx)
	if c == nil {
		t.Fatalf("no %s cookie after verifying with the box ticked (page: %s)", deviceCookieName, pageState(ctx))
	}
	if !c.HTTPOnly {
		t.Errorf("the %s cookie is not HttpOnly: %+v", deviceCookieName, c)
	}
	if c.Session || c.Expires <= float64(time.Now().Unix()) {
		t.Errorf("the %s cookie ends with the browser session (expires %v): a trusted browser should stay trusted after a restart", deviceCookieName, c.Expires)
	}
	if js := run(t, ctx, "read document.cookie", chromedp.Evaluate[string](`document.cookie`)); strings.Contains(js, deviceCookieName) {
		t.Errorf("the page's script can read the %s cookie: document.cookie = %q", deviceCookieName, js)
	}
}

// openDevices opens Login & security at its trusted browsers section.
func openDevices(t *testing.T, ctx context.Context) {
	t.Helper()
	do(t, ctx, "open Login & security",
		chromedp.Navigate(site+"/.twostep/settings"),
		chromedp.WaitVisible(chromedp.Search(`//h2[normalize-space()="Trusted browsers"]`)),
	)
	wantPath(t, ctx, "/.twostep/settings")
	wantBodyContains(t, ctx, "Login & security")
}

type deviceRow struct {
	Text    string `json:"text"`
	Current bool   `json:"current"`
}

// deviceRows reads the trusted browsers table.
func deviceRows(t *testing.T, ctx context.Context) []deviceRow {
	t.Helper()
	return run(t, ctx, "read the trusted browsers", chromedp.Evaluate[[]deviceRow](
		`Array.from(document.querySelectorAll('table.devices tr'), r => ({
			text: r.textContent.replace(/\s+/g, " ").trim(),
			current: Array.from(r.querySelectorAll('span.tag')).some(s => s.textContent.trim() === "this browser"),
		}))`))
}
