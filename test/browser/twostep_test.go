package browser

// The two-step journeys: a phone added in Login & security, sign-in codes
// by text message and by a call, read from the developer outbox.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

const (
	// phoneUser turns two-step on; alice, whom the other journeys sign in
	// with the password only, keeps it off.
	phoneUser   = "carol"
	phoneNumber = "+15551234567"
	phoneMasked = "•••• 4567"

	// resendAfter is the test Caddyfile's code cooldown (code.resend_after).
	resendAfter = "1ms"

	// outboxTimeout bounds the wait for a message to show in the outbox.
	outboxTimeout = 5 * time.Second
)

func journeyPhoneTwoStep(t *testing.T, ctx context.Context) {
	began := time.Now()
	lap := func(what string) { t.Logf("%-40s %6v", what, time.Since(began).Round(time.Millisecond)) }

	// Sign in with the password: two-step is off, so that is enough.
	do(t, ctx, "open the protected page",
		chromedp.Navigate(site+"/reports"),
		chromedp.WaitVisible(chromedp.CSS(`input[name=username]`)),
	)
	wantPath(t, ctx, "/.twostep/login")
	signInWithPassword(t, ctx, phoneUser)
	wantPath(t, ctx, "/reports")
	wantUser(t, ctx, phoneUser)
	lap("signed in with the password")

	// Login & security: two-step is off; add a phone for text messages.
	do(t, ctx, "open Login & security",
		chromedp.Navigate(site+"/.twostep/settings"),
		chromedp.WaitVisible(chromedp.CSS(`input[name=phone]`)),
	)
	wantPath(t, ctx, "/.twostep/settings")
	wantBodyContains(t, ctx, "Login & security")
	wantBodyContains(t, ctx, "Phone for text messages and calls")
	wantBodyContains(t, ctx, "Off. Anyone with your password can sign in.")
	if typ := run(t, ctx, "read the phone field's type",
		chromedp.Evaluate[string](`document.querySelector('input[name=phone]').type`)); typ != "tel" {
		t.Errorf("the phone field has type %q, want tel", typ)
	}
	if n := run(t, ctx, "count QR codes",
		chromedp.Evaluate[int](`document.querySelectorAll('img').length`)); n != 0 {
		t.Errorf("the settings page shows %d images before any authenticator app is set up, want none", n)
	}
	do(t, ctx, "type the phone number and choose text message",
		chromedp.SendKeys(chromedp.CSS(`input[name=phone]`), phoneNumber),
		chromedp.Click(chromedp.CSS(`input[name=method][value=sms]`)),
	)
	if !run(t, ctx, "read the text-message radio",
		chromedp.Evaluate[bool](`document.querySelector('input[name=method][value=sms]').checked`)) {
		t.Fatalf("the text-message radio is not checked (page: %s)", pageState(ctx))
	}
	screenshot(t, ctx, "05-settings-phone.png")

	prev := newestOutbox(t, ctx, "sms", phoneNumber)
	submit(t, ctx, `click "Send a code"`, button("Send a code"), http.StatusOK)
	wantPath(t, ctx, "/.twostep/settings")
	wantBodyContains(t, ctx, "We sent a code to "+phoneMasked+".")
	msg := waitOutbox(t, ctx, "sms", phoneNumber, prev)
	wantCodeText(t, msg)
	lap("enrolment code texted")

	do(t, ctx, "type the enrolment code",
		chromedp.WaitVisible(chromedp.CSS(`input[name=code]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name=code]`), msg.Code),
	)
	submit(t, ctx, `click "Confirm the number"`, button("Confirm the number"), http.StatusOK)
	wantPath(t, ctx, "/.twostep/settings")
	wantBodyContains(t, ctx, "Your phone number is confirmed.")
	codes := run(t, ctx, "read the backup codes", chromedp.Evaluate[[]string](
		`Array.from(document.querySelectorAll('ul.backup code'), c => c.textContent.trim())`))
	if len(codes) != 10 {
		t.Fatalf("the page shows %d backup codes, want 10: %q (page: %s)", len(codes), codes, pageState(ctx))
	}
	seen := map[string]bool{}
	for _, c := range codes {
		if c == "" || seen[c] {
			t.Errorf("backup codes %q: an empty or repeated code", codes)
			break
		}
		seen[c] = true
	}
	status := run(t, ctx, "read the two-step status", chromedp.Text(chromedp.CSS(`.status`)))
	if !strings.HasPrefix(strings.TrimSpace(status), "On.") {
		t.Fatalf("two-step status reads %q, want it to start with \"On.\"", status)
	}
	wantBodyContains(t, ctx, "Your number: "+phoneMasked)
	screenshot(t, ctx, "06-backup-codes.png")
	lap("phone confirmed, two-step on")

	// Signing in now takes the password and a texted code.
	signOut(t, ctx)
	signInToChallenge(t, ctx)
	wantBodyContains(t, ctx, "Two-step verification")
	wantBodyContains(t, ctx, "We'll text a code to the phone number on your account.")
	wantBodyContains(t, ctx, "Other ways to verify")
	wantLink(t, ctx, "Call me with a code")
	wantLink(t, ctx, "Use a backup code")
	wantLink(t, ctx, "Didn't get the code?")
	screenshot(t, ctx, "07-challenge.png")
	lap("password taken, on the challenge page")

	prev = newestOutbox(t, ctx, "sms", phoneNumber)
	submit(t, ctx, `click "Text me a code"`, button("Text me a code"), http.StatusOK)
	wantPath(t, ctx, "/.twostep/challenge")
	wantBodyContains(t, ctx, "We sent a code to "+phoneMasked+".")
	msg = waitOutbox(t, ctx, "sms", phoneNumber, prev)
	wantCodeText(t, msg)
	screenshot(t, ctx, "07b-challenge-code-sent.png")
	verifyCode(t, ctx, msg.Code)
	wantPath(t, ctx, "/reports")
	wantUser(t, ctx, phoneUser)
	lap("signed in with a texted code")

	// "Didn't get the code?": ask for a call instead.
	signOut(t, ctx)
	signInToChallenge(t, ctx)
	submit(t, ctx, `follow "Didn't get the code?"`, link("Didn't get the code?"), http.StatusOK)
	wantPath(t, ctx, "/.twostep/help")
	wantBodyContains(t, ctx, "Didn't get the code?")
	wantButton(t, ctx, "Send the code again")
	wantButton(t, ctx, "Call me instead")
	wantLink(t, ctx, "Use a backup code")
	screenshot(t, ctx, "08-help.png")
	lap("on the help page")

	prev = newestOutbox(t, ctx, "voice", phoneNumber)
	submit(t, ctx, `click "Call me instead"`, button("Call me instead"), http.StatusOK)
	wantPath(t, ctx, "/.twostep/challenge")
	wantBodyContains(t, ctx, "We are calling "+phoneMasked+" to read you a code.")
	msg = waitOutbox(t, ctx, "voice", phoneNumber, prev)
	if want := spokenCode(msg.Code); msg.Body != want {
		t.Errorf("the call reads %q, want %q", msg.Body, want)
	}
	verifyCode(t, ctx, msg.Code)
	wantPath(t, ctx, "/reports")
	wantUser(t, ctx, phoneUser)
	lap("signed in with a code read out by a call")
}

// signInWithPassword fills in the login page and submits it.
func signInWithPassword(t *testing.T, ctx context.Context, user string) {
	t.Helper()
	do(t, ctx, "type "+user+"'s password",
		chromedp.WaitVisible(chromedp.CSS(`input[name=username]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name=username]`), user),
		chromedp.SendKeys(chromedp.CSS(`input[name=password]`), password),
	)
	submit(t, ctx, "sign in as "+user, signInButton, http.StatusOK)
}

// signOut signs out on the confirmation page.
func signOut(t *testing.T, ctx context.Context) {
	t.Helper()
	do(t, ctx, "open the sign-out page",
		chromedp.Navigate(site+"/.twostep/logout"),
		chromedp.WaitVisible(signOutButton),
	)
	submit(t, ctx, "click Sign out", signOutButton, http.StatusOK)
	wantPath(t, ctx, "/.twostep/login")
	wantBodyContains(t, ctx, "You have signed out.")
}

// signInToChallenge opens the protected page, signs in with the password
// and checks that the browser lands on the challenge page.
func signInToChallenge(t *testing.T, ctx context.Context) {
	t.Helper()
	do(t, ctx, "open the protected page",
		chromedp.Navigate(site+"/reports"),
		chromedp.WaitVisible(chromedp.CSS(`input[name=username]`)),
	)
	wantPath(t, ctx, "/.twostep/login")
	signInWithPassword(t, ctx, phoneUser)
	wantPath(t, ctx, "/.twostep/challenge")
	wantReturn(t, ctx, "/reports")
}

// verifyCode types a code on the challenge page and submits it.
func verifyCode(t *testing.T, ctx context.Context, code string) {
	t.Helper()
	do(t, ctx, "type the code",
		chromedp.WaitVisible(chromedp.CSS(`input[name=code]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name=code]`), code),
	)
	submit(t, ctx, `click "Verify"`, button("Verify"), http.StatusOK)
}

// wantReturn checks the page's return query parameter.
func wantReturn(t *testing.T, ctx context.Context, want string) {
	t.Helper()
	got := run(t, ctx, "read the return parameter",
		chromedp.Evaluate[string](`new URLSearchParams(location.search).get("return") || ""`))
	if got != want {
		t.Errorf("the page's return parameter is %q, want %q (page: %s)", got, want, pageState(ctx))
	}
}

// wantLink checks that the loaded page has a link with this text.
func wantLink(t *testing.T, ctx context.Context, text string) {
	t.Helper()
	wantElement(t, ctx, "a", text)
}

// wantButton checks that the loaded page has a button with this text.
func wantButton(t *testing.T, ctx context.Context, text string) {
	t.Helper()
	wantElement(t, ctx, "button", text)
}

func wantElement(t *testing.T, ctx context.Context, tag, text string) {
	t.Helper()
	q, _ := json.Marshal(text)
	found := run(t, ctx, "look for the "+tag+" "+text, chromedp.Evaluate[bool](fmt.Sprintf(
		`Array.from(document.querySelectorAll(%q)).some(e => e.textContent.replace(/\s+/g, " ").trim() === %s)`, tag, q)))
	if !found {
		t.Fatalf("the page has no %s %q (page: %s)", tag, text, pageState(ctx))
	}
}

func button(text string) chromedp.Search {
	return chromedp.Search(`//button[normalize-space()=` + xpathString(text) + `]`)
}

func link(text string) chromedp.Search {
	return chromedp.Search(`//a[normalize-space()=` + xpathString(text) + `]`)
}

// xpathString quotes s for XPath 1.0, which has no escapes.
func xpathString(s string) string {
	if !strings.Contains(s, `"`) {
		return `"` + s + `"`
	}
	return `'` + s + `'`
}

// outboxEntry is one message of GET /.twostep/api/outbox.
type outboxEntry struct {
	Channel string    `json:"channel"`
	To      string    `json:"to"`
	Body    string    `json:"body"`
	Code    string    `json:"code"`
	Time    time.Time `json:"time"`
}

// readOutbox fetches the developer outbox, newest first.
func readOutbox(t *testing.T, ctx context.Context) []outboxEntry {
	t.Helper()
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, site+"/.twostep/api/outbox", nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET /.twostep/api/outbox: %v", err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		t.Fatalf("GET /.twostep/api/outbox: %v", err)
	}
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET /.twostep/api/outbox: status %d: %s", res.StatusCode, body)
	}
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("GET /.twostep/api/outbox: Content-Type %q, want application/json", ct)
	}
	var list []outboxEntry
	if err := json.Unmarshal(body, &list); err != nil {
		t.Fatalf("GET /.twostep/api/outbox: %v: %s", err, body)
	}
	for i := 1; i < len(list); i++ {
		if list[i].Time.After(list[i-1].Time) {
			t.Fatalf("the outbox is not newest first: entry %d (%v) is newer than entry %d (%v)", i, list[i].Time, i-1, list[i-1].Time)
		}
	}
	return list
}

// newestOutbox returns the newest message by channel to to, or the zero
// entry.
func newestOutbox(t *testing.T, ctx context.Context, channel, to string) outboxEntry {
	t.Helper()
	for _, e := range readOutbox(t, ctx) {
		if e.Channel == channel && e.To == to {
			return e
		}
	}
	return outboxEntry{}
}

// waitOutbox waits (up to outboxTimeout) for a message by channel to to
// that is newer than prev, and returns it.
func waitOutbox(t *testing.T, ctx context.Context, channel, to string, prev outboxEntry) outboxEntry {
	t.Helper()
	deadline := time.Now().Add(outboxTimeout)
	for {
		e := newestOutbox(t, ctx, channel, to)
		if e.Time.After(prev.Time) {
			if !codePattern.MatchString(e.Code) {
				t.Fatalf("the newest %s to %s carries the code %q, want 6 digits (message %q)", channel, to, e.Code, e.Body)
			}
			return e
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			t.Fatalf("no new %s to %s in the outbox within %v; it holds: %+v", channel, to, outboxTimeout, readOutbox(t, ctx))
		}
		time.Sleep(50 * time.Millisecond) // poll interval, not an assertion
	}
}

var codePattern = regexp.MustCompile(`^[0-9]{6}$`)

// wantCodeText checks a text message's wording.
func wantCodeText(t *testing.T, e outboxEntry) {
	t.Helper()
	want := fmt.Sprintf("Your code is %s for %s.", e.Code, siteName)
	if !strings.HasPrefix(e.Body, want) || !strings.HasSuffix(e.Body, "Don't share it.") {
		t.Errorf("the text message reads %q, want it to start %q and end \"Don't share it.\"", e.Body, want)
	}
}

// spokenCode is what a call reads: the digits one by one.
func spokenCode(code string) string {
	return "Your code is " + strings.Join(strings.Split(code, ""), ", ") + "."
}
