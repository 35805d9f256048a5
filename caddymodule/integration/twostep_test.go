package integration

// Two-step verification end to end (SPEC §2 totp/code/sms/voice/email/
// dev_outbox/two_step, §3, §4 JSON API, "Behaviour that spans the pages",
// §6a): real Caddy, real HTTP to a Twilio look-alike and a webhook
// receiver, real SMTP.

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"image/png"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"
	"github.com/pquerna/otp/totp"
)

const api = "/.twostep/api/"

// bobPhone is bob's confirmed number in the users-file variant.
const bobPhone = "+15551234567"

// tsConfig is a configuration variant for the two-step tests.
type tsConfig struct {
	// caddyGlobal is added to Caddy's global options (e.g. default_bind).
	caddyGlobal string
	// twostep is added to the twostep global block (sms, voice, email, …).
	twostep string
	// bobPhone gives bob `phone: "+15551234567"` in the users file.
	bobPhone bool
	// carol adds a third user, carol (bob's password), without a phone.
	carol bool
}

// startTS is start() with a configuration variant of the harness Caddyfile.
func startTS(t *testing.T, c tsConfig) *fixture {
	t.Helper()
	f := &fixture{t: t, tester: caddytest.NewTester(t), dir: t.TempDir(), echo: newEcho(t)}
	f.usersFile = f.dir + "/users.yml"
	writeUsers(t, f.usersFile, alicePassword, false) // also computes the hashes
	if c.bobPhone || c.carol {
		if err := writeFile(f.usersFile, usersYAML(c.bobPhone, c.carol)); err != nil {
			t.Fatal(err)
		}
	}
	f.load(f.tsCaddyfile(c))
	t.Cleanup(func() { f.load(emptyConfig) })
	return f
}

func (f *fixture) tsCaddyfile(c tsConfig) string {
	f.t.Helper()
	cfg := f.caddyfile(c.twostep, siteRules)
	if c.caddyGlobal != "" {
		const anchor = "\tgrace_period 1s\n"
		if !strings.Contains(cfg, anchor) {
			f.t.Fatal("harness Caddyfile changed: no grace_period line to add global options after")
		}
		cfg = strings.Replace(cfg, anchor, anchor+"\t"+c.caddyGlobal+"\n", 1)
	}
	return cfg
}

func usersYAML(bobHasPhone, carol bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, `users:
  alice:
    displayname: Alice Example
    password: "%s"
    email: alice@example.com
    groups: [admins, staff]
  bob:
    displayname: Bob Builder
    password: "%s"
    email: bob@example.com
    groups: [staff]
`, hashes.alice, hashes.bob)
	if bobHasPhone {
		fmt.Fprintf(&b, "    phone: \"%s\"\n", bobPhone)
	}
	if carol {
		fmt.Fprintf(&b, `  carol:
    displayname: Carol Example
    password: "%s"
    email: carol@example.com
    groups: [staff]
`, hashes.bob)
	}
	return b.String()
}

// --- API helpers ---

func (c *client) api(path string, v any, hdr ...string) *response {
	c.t.Helper()
	return c.postJSON(api+path, v, hdr...)
}

func (c *client) me() *response {
	c.t.Helper()
	return c.get(site + api + "me")
}

func wantJSON(t *testing.T, r *response, status int) map[string]any {
	t.Helper()
	wantStatus(t, r, status)
	return r.json(t)
}

func strList(t *testing.T, v any, what string) []string {
	t.Helper()
	l, ok := v.([]any)
	if !ok {
		t.Fatalf("%s is %T (%v), want a JSON list", what, v, v)
	}
	out := make([]string, 0, len(l))
	for _, x := range l {
		s, ok := x.(string)
		if !ok {
			t.Fatalf("%s holds %T (%v), want strings", what, x, x)
		}
		out = append(out, s)
	}
	return out
}

func hasAll(list []string, want ...string) bool {
	for _, w := range want {
		if !slices.Contains(list, w) {
			return false
		}
	}
	return true
}

// wantCodes checks {"codes":[10 distinct backup codes]} and returns them.
func wantCodes(t *testing.T, m map[string]any) []string {
	t.Helper()
	codes := strList(t, m["codes"], "codes")
	if len(codes) != 10 {
		t.Fatalf("%d backup codes, want 10: %v", len(codes), codes)
	}
	seen := map[string]bool{}
	for _, c := range codes {
		if len(strings.TrimSpace(c)) < 8 || seen[c] {
			t.Fatalf("backup codes must be distinct and not short: %v", codes)
		}
		seen[c] = true
	}
	return codes
}

// twoStepOf returns me's two_step.enabled and two_step.methods.
func twoStepOf(t *testing.T, me map[string]any) (bool, []string) {
	t.Helper()
	ts, ok := me["two_step"].(map[string]any)
	if !ok {
		t.Fatalf("me without a two_step object: %v", me)
	}
	en, ok := ts["enabled"].(bool)
	if !ok {
		t.Fatalf("two_step.enabled is not a boolean: %v", ts)
	}
	return en, strList(t, ts["methods"], "two_step.methods")
}

func sessionCookie(c *client) string {
	u, _ := url.Parse(site)
	for _, ck := range c.http.Jar.Cookies(u) {
		if ck.Name == "twostep" {
			return ck.Value
		}
	}
	return ""
}

// halfSignIn signs in with the password and expects the second-factor
// state; it returns the offered methods.
func (c *client) halfSignIn(user, pw string) []string {
	c.t.Helper()
	m := wantJSON(c.t, c.login(user, pw), http.StatusOK)
	if m["state"] != "second_factor" {
		c.t.Fatalf("login %s: %v, want state second_factor", user, m)
	}
	return strList(c.t, m["methods"], "methods")
}

func (c *client) verify(method, code string, hdr ...string) *response {
	c.t.Helper()
	return c.api("code/verify", map[string]any{"method": method, "code": code}, hdr...)
}

func wantAuthenticated(t *testing.T, r *response, level string) map[string]any {
	t.Helper()
	m := wantJSON(t, r, http.StatusOK)
	if m["state"] != "authenticated" || m["level"] != level {
		t.Fatalf("%s: %v, want state authenticated, level %s", r.Request.URL.Path, m, level)
	}
	return m
}

// pacer keeps sends of one user and channel resend_after apart, so that
// only the tests of the cooldown meet it.
type pacer struct {
	gap  time.Duration
	last map[string]time.Time
}

func newPacer(gap time.Duration) *pacer { return &pacer{gap: gap, last: map[string]time.Time{}} }

func (p *pacer) wait(key string) {
	if at, ok := p.last[key]; ok {
		if d := time.Until(at.Add(p.gap + 100*time.Millisecond)); d > 0 {
			time.Sleep(d)
		}
	}
}

func (p *pacer) mark(key string) { p.last[key] = time.Now() }

// send asks for a code by method (after the user's cooldown for it) and
// expects 202.
func (p *pacer) send(t *testing.T, c *client, user, method string) map[string]any {
	t.Helper()
	p.wait(user + "/" + method)
	r := c.api("code/send", map[string]string{"method": method})
	p.mark(user + "/" + method)
	return wantJSON(t, r, http.StatusAccepted)
}

func wantSent(t *testing.T, m map[string]any, sentTo string, resendAfter float64) {
	t.Helper()
	if m["sent_to"] != sentTo || m["resend_after"] != resendAfter {
		t.Fatalf("send answer %v, want sent_to %q and resend_after %v", m, sentTo, resendAfter)
	}
}

// otherCode is a 6-digit code different from code.
func otherCode(code string, i int) string {
	n, _ := strconv.Atoi(code)
	for k := 1; ; k++ {
		s := fmt.Sprintf("%06d", (n+k*7919+i*104729)%1000000)
		if s != code {
			return s
		}
	}
}

func totpAt(t *testing.T, secret string, at time.Time) string {
	t.Helper()
	c, err := totp.GenerateCode(secret, at)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// wrongTOTP is a code no step near now has.
func wrongTOTP(t *testing.T, secret string) string {
	t.Helper()
	near := map[string]bool{}
	for s := -3; s <= 3; s++ {
		near[totpAt(t, secret, time.Now().Add(time.Duration(s)*30*time.Second))] = true
	}
	for i := 0; ; i++ {
		c := fmt.Sprintf("%06d", (123456+i*111111)%1000000)
		if !near[c] {
			return c
		}
	}
}

// enrolTOTP adds an authenticator to c's account (which has two-step off)
// and returns the secret, the backup codes and when the confirming code
// was computed.
func enrolTOTP(t *testing.T, c *client) (string, []string, time.Time) {
	t.Helper()
	m := wantJSON(t, c.api("totp/enroll", "{}"), http.StatusOK)
	secret, _ := m["secret"].(string)
	if secret == "" {
		t.Fatalf("totp/enroll: no secret: %v", m)
	}
	at := time.Now()
	m = wantJSON(t, c.api("totp/confirm", map[string]string{"code": totpAt(t, secret, at)}), http.StatusOK)
	return secret, wantCodes(t, m), at
}

// enableWithFilePhone turns two-step on for bob, whose phone comes from the
// users file, and returns the methods the answer lists.
func enableWithFilePhone(t *testing.T) []string {
	t.Helper()
	c := newClient(t)
	wantAuthenticatedLogin(t, c, "bob", bobPassword, "one_factor")
	r := wantJSON(t, c.api("two_step", map[string]any{"enabled": true}), http.StatusOK)
	if r["enabled"] != true {
		t.Fatalf("two_step enabled:true answered %v", r)
	}
	return strList(t, r["methods"], "methods")
}

func wantAuthenticatedLogin(t *testing.T, c *client, user, pw, level string) map[string]any {
	t.Helper()
	return wantAuthenticated(t, c.login(user, pw), level)
}

// rawVerify is code/verify for use off the test goroutine.
func (c *client) rawVerify(method, code string) (int, []byte, error) {
	body := fmt.Sprintf(`{"method":%q,"code":%q}`, method, code)
	req, err := http.NewRequest(http.MethodPost, site+api+"code/verify", strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := c.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res.StatusCode, b, err
}

// wantNotAtRest checks that none of secrets appears in the store file
// (SPEC §8: phone numbers and TOTP secrets encrypted, backup codes hashed).
func wantNotAtRest(t *testing.T, f *fixture, secrets ...string) {
	t.Helper()
	db, err := os.ReadFile(filepath.Join(f.dir, "twostep.db"))
	if err != nil || len(db) == 0 {
		t.Fatalf("reading the store file: %v (%d bytes)", err, len(db))
	}
	for _, s := range secrets {
		for _, v := range []string{s, strings.ReplaceAll(s, "-", ""), strings.TrimPrefix(s, "+")} {
			if len(v) >= 8 && bytes.Contains(db, []byte(v)) {
				t.Errorf("%q is stored in plain text in the store", v)
			}
		}
	}
}

var (
	onSubject  = regexp.MustCompile(`(?i)\bon\b`)
	offSubject = regexp.MustCompile(`(?i)\boff\b`)
)

// --- 1, 2, 3, 11, 12: phone enrolment through the API (and a change of
// number), sign-in by SMS, voice and backup codes, new backup codes,
// turning two-step off and on ---

func TestTwoStepPhoneEnrolmentAndSignIn(t *testing.T) {
	tw := newTwilioFake(t)
	mail := newSMTPFake(t)
	f := startTS(t, tsConfig{twostep: tw.block("sms") + "\n\t\t" + tw.block("voice") + "\n\t\t" + mail.block() + `
		code {
			resend_after 1s
			max_sends_per_hour 100
		}`})
	p := newPacer(time.Second)
	const alicePhone = "+15559874567"
	var backup []string

	notice := func(t *testing.T, re *regexp.Regexp, nth int) mailMsg {
		t.Helper()
		var got mailMsg
		eventually(t, 5*time.Second, fmt.Sprintf("notice #%d to alice matching %s", nth+1, re), func() bool {
			n := 0
			for _, m := range mail.all() {
				if len(m.EnvTo) == 1 && m.EnvTo[0] == "alice@example.com" && re.MatchString(m.Subject) &&
					strings.Contains(strings.ToLower(m.Subject+m.Body), "two-step") {
					if n == nth {
						got = m
						return true
					}
					n++
				}
			}
			return false
		})
		checkNotice(t, got, "alice@example.com")
		return got
	}

	if !t.Run("1 enrol a phone via the API", func(t *testing.T) {
		alice := newClient(t)
		wantAuthenticatedLogin(t, alice, "alice", alicePassword, "one_factor")
		m := wantJSON(t, alice.api("phone", map[string]string{"phone": alicePhone, "method": "sms"}), http.StatusAccepted)
		p.mark("alice/sms")
		wantSent(t, m, "•••• 4567", 1)
		sms := tw.nth(t, "sms", 1)
		if sms.To != alicePhone {
			t.Fatalf("SMS to %s, want %s", sms.To, alicePhone)
		}
		code := smsCode(t, sms.Body)
		if strings.Contains(fmt.Sprint(m["sent_to"]), alicePhone) {
			t.Fatal("sent_to shows the whole number")
		}

		wantError(t, alice.api("phone/confirm", map[string]string{"code": otherCode(code, 0)}), http.StatusUnauthorized, "invalid_code")
		if en, _ := twoStepOf(t, wantJSON(t, alice.me(), http.StatusOK)); en {
			t.Fatal("two-step is on before the phone was confirmed")
		}
		backup = wantCodes(t, wantJSON(t, alice.api("phone/confirm", map[string]string{"code": code}), http.StatusOK))

		me := wantJSON(t, alice.me(), http.StatusOK)
		en, methods := twoStepOf(t, me)
		if !en || !hasAll(methods, "sms", "voice", "backup_code") {
			t.Fatalf("me after phone/confirm: %v; want enabled with sms, voice, backup_code", me)
		}
		if me["level"] != "two_factor" {
			t.Fatalf("me level %v after confirming a factor, want two_factor", me["level"])
		}
		notice(t, onSubject, 0)
	}) {
		return
	}

	if !t.Run("2 next sign-in needs the second factor on every route; SMS code", func(t *testing.T) {
		c := newClient(t)
		methods := c.halfSignIn("alice", alicePassword)
		if !hasAll(methods, "sms", "voice", "backup_code") {
			t.Fatalf("methods %v, want sms, voice, backup_code", methods)
		}
		before := f.echo.hits.Load()
		wantError(t, c.get(site+"/reports"), http.StatusUnauthorized, "second_factor_required")
		wantError(t, c.get(site+"/admin/x"), http.StatusUnauthorized, "second_factor_required")
		br := c.browse(site + "/admin/x")
		wantStatus(t, br, http.StatusFound)
		if loc := br.Header.Get("Location"); !strings.HasPrefix(loc, "/.twostep/challenge") {
			t.Fatalf("browser Location %q, want the challenge page", loc)
		}
		wantError(t, c.me(), http.StatusUnauthorized, "second_factor_required")
		if f.echo.hits.Load() != before {
			t.Fatal("a half-signed-in request reached the upstream")
		}

		half := sessionCookie(c)
		wantSent(t, p.send(t, c, "alice", "sms"), "•••• 4567", 1)
		// The challenge page, opened again, asks for the text's code (and
		// offers to call, since no call was made).
		if pg := c.browse(site + "/.twostep/challenge?method=sms"); !strings.Contains(string(pg.body), `name="code"`) {
			t.Fatalf("challenge page after a text was sent has no code field: %d %s", pg.StatusCode, pg.body)
		}
		if pg := c.browse(site + "/.twostep/challenge?method=voice"); strings.Contains(string(pg.body), `name="code"`) || !strings.Contains(string(pg.body), "Call me") {
			t.Fatalf("challenge page for a call not made: %d %s", pg.StatusCode, pg.body)
		}
		sms := tw.nth(t, "sms", 2)
		if sms.To != alicePhone {
			t.Fatalf("SMS to %s", sms.To)
		}
		r := c.verify("sms", smsCode(t, sms.Body))
		wantAuthenticated(t, r, "two_factor")
		if !strings.Contains(strings.Join(r.Header.Values("Set-Cookie"), "\n"), "twostep=") {
			t.Fatalf("code/verify set no session cookie: %v", r.Header.Values("Set-Cookie"))
		}
		full := sessionCookie(c)
		if full == "" || full == half {
			t.Fatal("code/verify did not issue a new session cookie")
		}
		page := wantJSON(t, c.get(site+"/reports"), http.StatusOK)
		if u := strList(t, page["user"], "user"); len(u) != 1 || u[0] != "alice" {
			t.Fatalf("upstream saw Remote-User %v", u)
		}
		wantStatus(t, c.get(site+"/admin/x"), http.StatusOK)
		if me := wantJSON(t, c.me(), http.StatusOK); me["level"] != "two_factor" {
			t.Fatalf("me level %v", me["level"])
		}
		// The half-signed-in token died with the upgrade.
		stale := newClient(t)
		wantError(t, stale.get(site+"/reports", "Cookie", "twostep="+half), http.StatusUnauthorized, "unauthenticated")
	}) {
		return
	}

	var phoneChanger *client
	if !t.Run("3 voice call reads the digits one by one, twice", func(t *testing.T) {
		c := newClient(t)
		c.halfSignIn("alice", alicePassword)
		wantSent(t, p.send(t, c, "alice", "voice"), "•••• 4567", 1)
		call := tw.nth(t, "voice", 1)
		if call.To != alicePhone {
			t.Fatalf("call to %s", call.To)
		}
		r := c.api("code/verify", map[string]any{"method": "voice", "code": voiceCode(t, call.Twiml), "trust_device": false})
		wantAuthenticated(t, r, "two_factor")
		phoneChanger = c
	}) {
		return
	}

	t.Run("changing the phone while two-step is on: {} and an email", func(t *testing.T) {
		const newPhone = "+15550009999"
		p.wait("alice/voice")
		r := phoneChanger.api("phone", map[string]string{"phone": newPhone, "method": "voice"})
		p.mark("alice/voice")
		wantSent(t, wantJSON(t, r, http.StatusAccepted), "•••• 9999", 1)
		call := tw.nth(t, "voice", 2)
		if call.To != newPhone {
			t.Fatalf("confirmation call to %s, want the new number %s", call.To, newPhone)
		}
		r = phoneChanger.api("phone/confirm", map[string]string{"code": voiceCode(t, call.Twiml)})
		wantStatus(t, r, http.StatusOK)
		if strings.TrimSpace(string(r.body)) != "{}" {
			t.Fatalf("phone/confirm with two-step already on: %s, want {}", r.body)
		}
		var got mailMsg
		eventually(t, 5*time.Second, "an email about the phone change", func() bool {
			for _, m := range mail.all() {
				if len(m.EnvTo) == 1 && m.EnvTo[0] == "alice@example.com" && strings.Contains(strings.ToLower(m.Subject+" "+m.Body), "phone") {
					got = m
					return true
				}
			}
			return false
		})
		checkNotice(t, got, "alice@example.com")
		if en, methods := twoStepOf(t, wantJSON(t, phoneChanger.me(), http.StatusOK)); !en || !hasAll(methods, "sms", "voice", "backup_code") {
			t.Fatalf("me after the phone change: %v %v", en, methods)
		}
		c := newClient(t)
		c.halfSignIn("alice", alicePassword)
		p.send(t, c, "alice", "sms")
		if sms := tw.nth(t, "sms", 3); sms.To != newPhone {
			t.Fatalf("sign-in SMS to %s, want the new number", sms.To)
		} else {
			wantAuthenticated(t, c.verify("sms", smsCode(t, sms.Body)), "two_factor")
		}
	})

	var full *client // signed in at two_factor, for 12
	var fresh []string
	if !t.Run("11 backup codes: single use, regenerated with the password", func(t *testing.T) {
		a := newClient(t)
		a.halfSignIn("alice", alicePassword)
		wantAuthenticated(t, a.verify("backup_code", backup[0]), "two_factor")
		b := newClient(t)
		b.halfSignIn("alice", alicePassword)
		wantError(t, b.verify("backup_code", backup[0]), http.StatusUnauthorized, "invalid_code")

		wantError(t, a.api("backup_codes", map[string]string{"password": "not the password"}), http.StatusUnauthorized, "invalid_credentials")
		fresh = wantCodes(t, wantJSON(t, a.api("backup_codes", map[string]string{"password": alicePassword}), http.StatusOK))
		for _, c := range fresh {
			if slices.Contains(backup, c) {
				t.Fatalf("new backup code %s was in the old set", c)
			}
		}
		got := mail.waitMail(t, "alice@example.com", "backup", 0)
		checkNotice(t, got, "alice@example.com")

		wantError(t, b.verify("backup_code", backup[1]), http.StatusUnauthorized, "invalid_code")
		wantAuthenticated(t, b.verify("backup_code", fresh[0]), "two_factor")
		full = a
	}) {
		return
	}

	t.Run("12 turning two-step off and on", func(t *testing.T) {
		wantError(t, full.api("two_step", map[string]any{"enabled": false, "password": alicePassword, "code": "000000"}),
			http.StatusUnauthorized, "invalid_code")
		if en, _ := twoStepOf(t, wantJSON(t, full.me(), http.StatusOK)); !en {
			t.Fatal("a wrong code turned two-step off")
		}
		wantError(t, full.api("two_step", map[string]any{"enabled": false, "password": "not the password", "code": fresh[1]}),
			http.StatusUnauthorized, "invalid_credentials")
		if en, _ := twoStepOf(t, wantJSON(t, full.me(), http.StatusOK)); !en {
			t.Fatal("a wrong password turned two-step off")
		}

		p.send(t, full, "alice", "sms")
		code := smsCode(t, tw.nth(t, "sms", 4).Body)
		m := wantJSON(t, full.api("two_step", map[string]any{"enabled": false, "password": alicePassword, "code": code}), http.StatusOK)
		if m["enabled"] != false {
			t.Fatalf("two_step off answered %v", m)
		}
		if en, _ := twoStepOf(t, wantJSON(t, full.me(), http.StatusOK)); en {
			t.Fatal("me still says enabled")
		}
		notice(t, offSubject, 0)

		c := newClient(t)
		wantAuthenticatedLogin(t, c, "alice", alicePassword, "one_factor")
		wantStatus(t, c.get(site+"/reports"), http.StatusOK)

		// The phone stays confirmed: turning it back on needs nothing more.
		m = wantJSON(t, c.api("two_step", map[string]any{"enabled": true}), http.StatusOK)
		if m["enabled"] != true {
			t.Fatalf("two_step on answered %v", m)
		}
		notice(t, onSubject, 1)
		c.halfSignIn("alice", alicePassword)

		bob := newClient(t)
		wantAuthenticatedLogin(t, bob, "bob", bobPassword, "one_factor")
		wantError(t, bob.api("two_step", map[string]any{"enabled": true}), http.StatusConflict, "conflict")
		if en, _ := twoStepOf(t, wantJSON(t, bob.me(), http.StatusOK)); en {
			t.Fatal("bob's two-step turned on without a method")
		}
	})

	t.Run("no phone number or backup code in plain text at rest", func(t *testing.T) {
		wantNotAtRest(t, f, append(append([]string{alicePhone, "+15550009999"}, backup...), fresh...)...)
	})
}

// --- 4 and expiry: cooldown, hourly cap (enrolment included), lifetime;
// email codes ---

func TestCodeCooldownCapAndLifetime(t *testing.T) {
	tw := newTwilioFake(t)
	mail := newSMTPFake(t)
	const lifetime, cooldown = 2 * time.Second, 2 * time.Second
	const alicePhone = "+15559874567"
	startTS(t, tsConfig{twostep: tw.block("sms") + "\n\t\t" + tw.block("voice") + "\n\t\t" + mail.block() + `
		code {
			lifetime 2s
			resend_after 2s
			max_sends_per_hour 4
			email_codes on
		}`})

	// Send 1 of the hour: the enrolment code.
	a := newClient(t)
	wantAuthenticatedLogin(t, a, "alice", alicePassword, "one_factor")
	enrolSent := time.Now()
	wantSent(t, wantJSON(t, a.api("phone", map[string]string{"phone": alicePhone, "method": "sms"}), http.StatusAccepted), "•••• 4567", 2)
	wantCodes(t, wantJSON(t, a.api("phone/confirm", map[string]string{"code": smsCode(t, tw.nth(t, "sms", 1).Body)}), http.StatusOK))

	h := newClient(t)
	if m := h.halfSignIn("alice", alicePassword); !hasAll(m, "sms", "voice", "email", "backup_code") {
		t.Fatalf("methods %v, want sms, voice, email, backup_code", m)
	}
	var voiceSent time.Time
	t.Run("a second send on the same channel within resend_after is 429 with Retry-After", func(t *testing.T) {
		voiceSent = time.Now()
		wantSent(t, wantJSON(t, h.api("code/send", map[string]string{"method": "voice"}), http.StatusAccepted), "•••• 4567", 2)
		voiceCode(t, tw.nth(t, "voice", 1).Twiml)
		r := h.api("code/send", map[string]string{"method": "voice"})
		wantError(t, r, http.StatusTooManyRequests, "rate_limited")
		if ra := r.Header.Get("Retry-After"); ra != "1" && ra != "2" {
			t.Fatalf("Retry-After %q, want 1 or 2 (resend_after 2s)", ra)
		}
		if n := tw.count("voice"); n != 1 {
			t.Fatalf("twilio got %d calls, want 1", n)
		}
	})
	t.Run("email codes: another channel, sent, masked, and usable", func(t *testing.T) {
		m := wantJSON(t, h.api("code/send", map[string]string{"method": "email"}), http.StatusAccepted)
		if to, _ := m["sent_to"].(string); to == "" || strings.Contains(to, "alice@example.com") {
			t.Fatalf("email sent_to %v: want a masked address", m["sent_to"])
		}
		got := mail.waitMail(t, "alice@example.com", "code", 0)
		checkNotice(t, got, "alice@example.com")
		code := smsCode(t, got.Body)
		// Only the newest code counts: the voice one was replaced.
		wantAuthenticated(t, h.verify("email", code), "two_factor")
	})
	t.Run("an expired code is invalid_code", func(t *testing.T) {
		c := newClient(t)
		c.halfSignIn("alice", alicePassword)
		time.Sleep(time.Until(enrolSent.Add(cooldown + 100*time.Millisecond)))
		wantJSON(t, c.api("code/send", map[string]string{"method": "sms"}), http.StatusAccepted)
		sent := time.Now()
		code := smsCode(t, tw.nth(t, "sms", 2).Body)
		time.Sleep(time.Until(sent.Add(lifetime + 500*time.Millisecond)))
		wantError(t, c.verify("sms", code), http.StatusUnauthorized, "invalid_code")
	})
	t.Run("max_sends_per_hour counts every channel and the enrolment code: the 5th send is 429", func(t *testing.T) {
		c := newClient(t)
		c.halfSignIn("alice", alicePassword)
		time.Sleep(time.Until(voiceSent.Add(cooldown + 100*time.Millisecond)))
		r := c.api("code/send", map[string]string{"method": "voice"})
		wantError(t, r, http.StatusTooManyRequests, "rate_limited")
		ra, err := strconv.Atoi(r.Header.Get("Retry-After"))
		if err != nil || ra <= 60 || ra > 3600 {
			t.Fatalf("Retry-After %q, want the rest of the hour", r.Header.Get("Retry-After"))
		}
		if n := tw.count("voice"); n != 1 {
			t.Fatalf("twilio got %d calls, want 1", n)
		}
	})
}

// --- 5: single use, five wrong tries ---

func TestCodeSingleUseAndTries(t *testing.T) {
	tw := newTwilioFake(t)
	startTS(t, tsConfig{bobPhone: true, twostep: tw.block("sms") + `
		code {
			resend_after 1s
			max_sends_per_hour 100
		}`})
	enableWithFilePhone(t)
	p := newPacer(time.Second)
	n := 0
	nextCode := func(t *testing.T, c *client) string {
		t.Helper()
		p.send(t, c, "bob", "sms")
		n++
		return smsCode(t, tw.nth(t, "sms", n).Body)
	}

	t.Run("the same code twice: the second is invalid_code", func(t *testing.T) {
		a, b := newClient(t), newClient(t)
		a.halfSignIn("bob", bobPassword)
		b.halfSignIn("bob", bobPassword)
		code := nextCode(t, a)
		wantAuthenticated(t, a.verify("sms", code), "two_factor")
		wantError(t, b.verify("sms", code), http.StatusUnauthorized, "invalid_code")
		wantError(t, b.get(site+"/reports"), http.StatusUnauthorized, "second_factor_required")
	})
	t.Run("four wrong tries leave the code usable", func(t *testing.T) {
		c := newClient(t)
		c.halfSignIn("bob", bobPassword)
		code := nextCode(t, c)
		for i := range 4 {
			wantError(t, c.verify("sms", otherCode(code, i)), http.StatusUnauthorized, "invalid_code")
		}
		wantAuthenticated(t, c.verify("sms", code), "two_factor")
	})
	t.Run("five wrong tries kill the code", func(t *testing.T) {
		c := newClient(t)
		c.halfSignIn("bob", bobPassword)
		code := nextCode(t, c)
		// Each wrong try is invalid_code, the fifth too; after it the code
		// is dead and every try, the right code included, is 429 "too many
		// code tries" (SPEC §3).
		for i := range 5 {
			wantError(t, c.verify("sms", otherCode(code, i)), http.StatusUnauthorized, "invalid_code")
		}
		r := c.verify("sms", code)
		wantError(t, r, http.StatusTooManyRequests, "rate_limited")
		if r.Header.Get("Retry-After") == "" {
			t.Fatal("429 without Retry-After")
		}
		// A new code works.
		wantAuthenticated(t, c.verify("sms", nextCode(t, c)), "two_factor")
	})
}

// --- 6: one code, 50 sessions submitting it at once ---

func TestCodeConcurrentSubmission(t *testing.T) {
	tw := newTwilioFake(t)
	startTS(t, tsConfig{bobPhone: true, twostep: tw.block("sms")})
	enableWithFilePhone(t)
	const n = 50
	clients := make([]*client, n)
	for i := range clients {
		clients[i] = newClient(t)
		clients[i].halfSignIn("bob", bobPassword)
	}
	wantJSON(t, clients[n-1].api("code/send", map[string]string{"method": "sms"}), http.StatusAccepted)
	code := smsCode(t, tw.nth(t, "sms", 1).Body)

	type result struct {
		status int
		body   []byte
		err    error
	}
	results := make([]result, n)
	var wg sync.WaitGroup
	gate := make(chan struct{})
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			st, b, err := c.rawVerify("sms", code)
			results[i] = result{st, b, err}
		}()
	}
	close(gate)
	wg.Wait()
	ok := 0
	for i, r := range results {
		switch {
		case r.err != nil:
			t.Errorf("session %d: %v", i, r.err)
		case r.status == http.StatusOK:
			ok++
		case r.status == http.StatusUnauthorized && bytes.Contains(r.body, []byte(`"invalid_code"`)):
		default:
			t.Errorf("session %d: %d %s, want 200 or 401 invalid_code", i, r.status, r.body)
		}
	}
	if ok != 1 {
		t.Fatalf("%d sessions passed with one code, want exactly 1", ok)
	}
	passed := 0
	for _, c := range clients {
		if c.get(site+"/reports").StatusCode == http.StatusOK {
			passed++
		}
	}
	if passed != 1 {
		t.Fatalf("%d sessions reach the upstream, want 1", passed)
	}
}

// --- 7: brute force is bounded ---

func TestSecondFactorBruteForceBounded(t *testing.T) {
	startTS(t, tsConfig{carol: true})
	type acct struct {
		user, pw, secret string
		backup           []string
	}
	accts := map[string]*acct{}
	for _, u := range []struct{ user, pw string }{{"alice", alicePassword}, {"bob", bobPassword}, {"carol", bobPassword}} {
		c := newClient(t)
		wantAuthenticatedLogin(t, c, u.user, u.pw, "one_factor")
		secret, codes, _ := enrolTOTP(t, c)
		accts[u.user] = &acct{u.user, u.pw, secret, codes}
	}
	guess := func(i int) string { return fmt.Sprintf("zzzzz-%05d", i) }
	from := func(ip string) []string { return []string{"X-Forwarded-For", ip} }

	t.Run("99 consecutive failures do not lock; a success resets the count", func(t *testing.T) {
		c := newClient(t)
		c.halfSignIn("alice", alicePassword)
		for i := range 99 {
			r := c.verify("backup_code", guess(i), from(fmt.Sprintf("10.1.0.%d", i%4+1))...)
			wantError(t, r, http.StatusUnauthorized, "invalid_code")
		}
		wantAuthenticated(t, c.verify("backup_code", accts["alice"].backup[0], from("10.1.0.1")...), "two_factor")
	})
	t.Run("100 consecutive failures lock the second factor, even with the right code", func(t *testing.T) {
		c := newClient(t)
		c.halfSignIn("alice", alicePassword)
		for i := range 99 {
			r := c.verify("backup_code", guess(1000+i), from(fmt.Sprintf("10.2.0.%d", i%4+1))...)
			wantError(t, r, http.StatusUnauthorized, "invalid_code")
		}
		r := c.verify("backup_code", guess(2000), from("10.2.0.4")...)
		if r.StatusCode != http.StatusUnauthorized && r.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("100th failure: %d %s", r.StatusCode, r.body)
		}
		locked := func(r *response, what string) {
			t.Helper()
			wantError(t, r, http.StatusTooManyRequests, "rate_limited")
			if ra, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || ra < 1 {
				t.Fatalf("%s: Retry-After %q", what, r.Header.Get("Retry-After"))
			}
		}
		locked(c.verify("backup_code", accts["alice"].backup[1], from("10.2.0.1")...), "right backup code")
		locked(c.verify("totp", totpAt(t, accts["alice"].secret, time.Now().Add(30*time.Second)), from("10.2.0.1")...), "right TOTP code")
		// Per account, not per address or session.
		d := newClient(t)
		d.halfSignIn("alice", alicePassword)
		locked(d.verify("backup_code", accts["alice"].backup[1], from("10.3.0.1")...), "right backup code, new session and address")
		wantError(t, d.get(site+"/reports"), http.StatusUnauthorized, "second_factor_required")
		// Another account from the same addresses is not affected.
		b := newClient(t)
		b.halfSignIn("bob", bobPassword)
		wantAuthenticated(t, b.verify("backup_code", accts["bob"].backup[0], from("10.2.0.1")...), "two_factor")
	})
	t.Run("per client IP: 100 failures from one address over two accounts", func(t *testing.T) {
		b, c := newClient(t), newClient(t)
		b.halfSignIn("bob", bobPassword)
		c.halfSignIn("carol", bobPassword)
		const ip = "10.9.9.9"
		for i := range 50 {
			wantError(t, b.verify("backup_code", guess(3000+i), from(ip)...), http.StatusUnauthorized, "invalid_code")
			wantError(t, c.verify("backup_code", guess(4000+i), from(ip)...), http.StatusUnauthorized, "invalid_code")
		}
		r := b.verify("backup_code", accts["bob"].backup[1], from(ip)...)
		t.Logf("OBSERVED: after 100 second-factor failures from %s spread over bob and carol (50 each), bob's right backup code from %s answered %d %s (Retry-After %q)",
			ip, ip, r.StatusCode, r.body, r.Header.Get("Retry-After"))
		if r.StatusCode != http.StatusOK && r.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("want 200 (no per-IP lock) or 429 (per-IP lock), got %d %s", r.StatusCode, r.body)
		}
		if r.StatusCode == http.StatusTooManyRequests {
			// The accounts themselves are not locked: from another address it works.
			wantAuthenticated(t, b.verify("backup_code", accts["bob"].backup[1], from("10.9.9.8")...), "two_factor")
		}
		wantAuthenticated(t, c.verify("backup_code", accts["carol"].backup[0], from("10.9.9.8")...), "two_factor")
	})
}

// --- 8: delivery failure without a fallback ---

func TestCodeDeliveryFailure(t *testing.T) {
	tw := newTwilioFake(t)
	tw.smsStatus.Store(http.StatusBadRequest)
	startTS(t, tsConfig{bobPhone: true, twostep: tw.block("sms") + "\n\t\t" + tw.block("voice")})
	enableWithFilePhone(t)
	c := newClient(t)
	c.halfSignIn("bob", bobPassword)

	r := c.api("code/send", map[string]string{"method": "sms"})
	wantError(t, r, http.StatusBadGateway, "delivery_failed")
	alts := strList(t, r.json(t)["alternatives"], "alternatives")
	if !slices.Contains(alts, "voice") || slices.Contains(alts, "sms") {
		t.Fatalf("alternatives %v, want voice (and not sms)", alts)
	}
	if m := tw.nth(t, "sms", 1); m.Status != http.StatusBadRequest || m.To != bobPhone {
		t.Fatalf("twilio fake: %+v", m)
	}
	// Voice at once.
	wantJSON(t, c.api("code/send", map[string]string{"method": "voice"}), http.StatusAccepted)
	wantAuthenticated(t, c.verify("voice", voiceCode(t, tw.nth(t, "voice", 1).Twiml)), "two_factor")
	// A failed delivery does not start the cooldown: SMS may be retried at once.
	retry := c.api("code/send", map[string]string{"method": "sms"})
	t.Logf("OBSERVED: retrying sms at once after its failed delivery answered %d %s", retry.StatusCode, retry.body)
	if retry.StatusCode == http.StatusTooManyRequests {
		t.Error("a failed delivery started the sms cooldown")
	}
}

// --- 9: a fallback provider ---

func TestCodeFallbackProvider(t *testing.T) {
	tw := newTwilioFake(t)
	tw.smsStatus.Store(http.StatusInternalServerError)
	const secret = "webhook-secret-for-integration-tests"
	wh := newWebhookFake(t, secret)
	startTS(t, tsConfig{bobPhone: true, twostep: tw.block("sms") + fmt.Sprintf(`
		sms webhook %s {
			secret %s
		}
		voice webhook %s {
			secret %s
		}
		code {
			resend_after 1s
		}`, wh.url(), secret, wh.url(), secret)})
	enableWithFilePhone(t)

	c := newClient(t)
	c.halfSignIn("bob", bobPassword)
	wantSent(t, wantJSON(t, c.api("code/send", map[string]string{"method": "sms"}), http.StatusAccepted), "•••• 4567", 1)
	sent := time.Now()
	if m := tw.nth(t, "sms", 1); m.Status != http.StatusInternalServerError {
		t.Fatalf("twilio fake answered %d", m.Status)
	}
	got := wh.received()
	if len(got) != 1 {
		t.Fatalf("webhook received %d signed messages, want 1", len(got))
	}
	m := got[0]
	if m.Channel != "sms" || m.To != bobPhone || m.User != "bob" || !regexp.MustCompile(`^[0-9]{6}$`).MatchString(m.Code) || !strings.HasPrefix(m.Body, "Your code is "+m.Code) {
		t.Fatalf("webhook message %+v, want the body to start %q (SPEC §6a)", m, "Your code is "+m.Code)
	}
	wantAuthenticated(t, c.verify("sms", m.Code), "two_factor")

	t.Run("voice by webhook: the body reads the digits one by one", func(t *testing.T) {
		d := newClient(t)
		d.halfSignIn("bob", bobPassword)
		wantJSON(t, d.api("code/send", map[string]string{"method": "voice"}), http.StatusAccepted)
		got := wh.received()
		if len(got) != 2 {
			t.Fatalf("webhook received %d signed messages, want 2", len(got))
		}
		v := got[1]
		spelled := strings.Join(strings.Split(v.Code, ""), " ")
		if v.Channel != "voice" || v.To != bobPhone || v.User != "bob" || len(v.Code) != 6 || !strings.Contains(v.Body, spelled) {
			t.Fatalf("voice webhook message %+v, want the body to read %q (SPEC: \"Your code is 1 2 3 4 5 6.\")", v, spelled)
		}
		wantAuthenticated(t, d.verify("voice", v.Code), "two_factor")
	})
	t.Run("every provider failing is 502 delivery_failed", func(t *testing.T) {
		wh.status.Store(http.StatusServiceUnavailable)
		d := newClient(t)
		d.halfSignIn("bob", bobPassword)
		time.Sleep(time.Until(sent.Add(1100 * time.Millisecond)))
		r := d.api("code/send", map[string]string{"method": "sms"})
		wantError(t, r, http.StatusBadGateway, "delivery_failed")
		if alts := strList(t, r.json(t)["alternatives"], "alternatives"); slices.Contains(alts, "sms") {
			t.Fatalf("alternatives %v name the failed channel", alts)
		}
		if tw.count("sms") != 2 || wh.hitCount() != 3 {
			t.Fatalf("twilio got %d, webhook %d requests; want both tried again", tw.count("sms"), wh.hitCount())
		}
	})
}

// --- 10: authenticator app ---

func TestTOTPEnrolmentAndSignIn(t *testing.T) {
	f := startTS(t, tsConfig{twostep: `totp {
			issuer "Integration Issuer"
			skew 1
		}`})
	alice := newClient(t)
	wantAuthenticatedLogin(t, alice, "alice", alicePassword, "one_factor")

	m := wantJSON(t, alice.api("totp/enroll", "{}"), http.StatusOK)
	secret, _ := m["secret"].(string)
	if !regexp.MustCompile(`^[A-Z2-7]{16,}=*$`).MatchString(secret) {
		t.Fatalf("secret %q is not base32", secret)
	}
	u, err := url.Parse(fmt.Sprint(m["otpauth_url"]))
	if err != nil || u.Scheme != "otpauth" || u.Host != "totp" || u.Query().Get("secret") != secret ||
		u.Query().Get("issuer") != "Integration Issuer" || !strings.Contains(u.Path, "alice") {
		t.Fatalf("otpauth_url %v", m["otpauth_url"])
	}
	pngBytes, err := base64.StdEncoding.DecodeString(fmt.Sprint(m["qr_png"]))
	if err != nil || !bytes.HasPrefix(pngBytes, []byte("\x89PNG\r\n\x1a\n")) {
		t.Fatalf("qr_png is not base64 of a PNG (%v)", err)
	}
	if _, err := png.Decode(bytes.NewReader(pngBytes)); err != nil {
		t.Fatalf("qr_png does not decode: %v", err)
	}

	wantError(t, alice.api("totp/confirm", map[string]string{"code": wrongTOTP(t, secret)}), http.StatusUnauthorized, "invalid_code")
	t0 := time.Now()
	wantCodes(t, wantJSON(t, alice.api("totp/confirm", map[string]string{"code": totpAt(t, secret, t0)}), http.StatusOK))
	me := wantJSON(t, alice.me(), http.StatusOK)
	if en, methods := twoStepOf(t, me); !en || !hasAll(methods, "totp", "backup_code") || me["level"] != "two_factor" {
		t.Fatalf("me after totp/confirm: %v", me)
	}

	next := totpAt(t, secret, t0.Add(30*time.Second))
	t.Run("sign-in with a TOTP code", func(t *testing.T) {
		c := newClient(t)
		if methods := c.halfSignIn("alice", alicePassword); !hasAll(methods, "totp", "backup_code") {
			t.Fatalf("methods %v", methods)
		}
		wantError(t, c.verify("totp", wrongTOTP(t, secret)), http.StatusUnauthorized, "invalid_code")
		// skew 1: three steps ahead is outside the window.
		if far := totpAt(t, secret, time.Now().Add(90*time.Second)); far != next {
			wantError(t, c.verify("totp", far), http.StatusUnauthorized, "invalid_code")
		}
		wantAuthenticated(t, c.verify("totp", next), "two_factor")
		wantStatus(t, c.get(site+"/secure/x"), http.StatusOK)
	})
	t.Run("the same TOTP code again is refused (replay)", func(t *testing.T) {
		c := newClient(t)
		c.halfSignIn("alice", alicePassword)
		wantError(t, c.verify("totp", next), http.StatusUnauthorized, "invalid_code")
	})
	t.Run("a code of an earlier step is refused", func(t *testing.T) {
		c := newClient(t)
		c.halfSignIn("alice", alicePassword)
		wantError(t, c.verify("totp", totpAt(t, secret, t0)), http.StatusUnauthorized, "invalid_code")
		if prev := totpAt(t, secret, t0.Add(-30*time.Second)); prev != next {
			wantError(t, c.verify("totp", prev), http.StatusUnauthorized, "invalid_code")
		}
	})
	t.Run("replacing the authenticator while two-step is on answers {}", func(t *testing.T) {
		m := wantJSON(t, alice.api("totp/enroll", "{}"), http.StatusOK)
		s2, _ := m["secret"].(string)
		if s2 == "" || s2 == secret {
			t.Fatalf("second enrolment secret %q", s2)
		}
		r := alice.api("totp/confirm", map[string]string{"code": totpAt(t, s2, time.Now())})
		wantStatus(t, r, http.StatusOK)
		if strings.TrimSpace(string(r.body)) != "{}" {
			t.Fatalf("totp/confirm with two-step already on: %s, want {}", r.body)
		}
		wantNotAtRest(t, f, secret, s2)
	})
}

// --- 13: two_step required ---

func TestTwoStepRequired(t *testing.T) {
	tw := newTwilioFake(t)
	f := startTS(t, tsConfig{bobPhone: true, twostep: "two_step required\n\t\t" + tw.block("sms")})
	alice := newClient(t)
	r := alice.login("alice", alicePassword)
	wantStatus(t, r, http.StatusOK)
	if m := r.json(t); m["state"] != "enrollment_required" || len(m) != 1 {
		t.Fatalf("login: %s, want {\"state\":\"enrollment_required\"}", r.body)
	}
	me := wantJSON(t, alice.me(), http.StatusOK)
	if en, _ := twoStepOf(t, me); en || me["level"] != "enrollment" || me["user"] != "alice" {
		t.Fatalf("me: %v, want level enrollment, two-step off", me)
	}
	before := f.echo.hits.Load()
	for _, p := range []string{"/reports", "/admin/x", "/secure/x"} {
		wantError(t, alice.get(site+p), http.StatusUnauthorized, "enrollment_required")
		br := alice.browse(site + p)
		wantStatus(t, br, http.StatusFound)
		wantEnrolRedirect(t, br, p)
	}
	if f.echo.hits.Load() != before {
		t.Fatal("an enrolling session reached the upstream")
	}

	_, backup, _ := enrolTOTP(t, alice)
	me = wantJSON(t, alice.me(), http.StatusOK)
	if en, methods := twoStepOf(t, me); !en || me["level"] != "two_factor" || !hasAll(methods, "totp", "backup_code") {
		t.Fatalf("me after enrolment: %v", me)
	}
	page := wantJSON(t, alice.get(site+"/reports"), http.StatusOK)
	if u := strList(t, page["user"], "user"); len(u) != 1 || u[0] != "alice" {
		t.Fatalf("upstream saw %v", u)
	}
	wantStatus(t, alice.get(site+"/secure/x"), http.StatusOK)

	newClient(t).halfSignIn("alice", alicePassword)
	t.Run("two-step cannot be turned off", func(t *testing.T) {
		r := alice.api("two_step", map[string]any{"enabled": false, "password": alicePassword, "code": backup[0]})
		t.Logf("two_step off under two_step required answered %d %s", r.StatusCode, r.body)
		if r.StatusCode < 400 || r.StatusCode >= 500 {
			t.Fatalf("two_step off under two_step required: %d %s, want a refusal", r.StatusCode, r.body)
		}
		if en, _ := twoStepOf(t, wantJSON(t, alice.me(), http.StatusOK)); !en {
			t.Fatal("two-step turned off under two_step required")
		}
		newClient(t).halfSignIn("alice", alicePassword)
	})
	t.Run("a users-file phone counts as a method", func(t *testing.T) {
		if m := newClient(t).halfSignIn("bob", bobPassword); !slices.Contains(m, "sms") {
			t.Fatalf("bob's methods %v, want sms", m)
		}
	})
}

// wantEnrolRedirect: 302 to /.twostep/settings?enroll=1 (SPEC §3); a
// return parameter, if any, must be the request's own relative URL.
func wantEnrolRedirect(t *testing.T, r *response, requested string) {
	t.Helper()
	loc := r.Header.Get("Location")
	u, err := url.Parse(loc)
	if err != nil || u.Scheme != "" || u.Host != "" || u.Path != "/.twostep/settings" || u.Query().Get("enroll") != "1" {
		t.Fatalf("%s: Location %q, want /.twostep/settings?enroll=1", requested, loc)
	}
	if ret, ok := u.Query()["return"]; ok && (len(ret) != 1 || ret[0] != requested) {
		t.Fatalf("%s: Location %q returns elsewhere", requested, loc)
	}
}

// --- 14: bad input on the two-step endpoints ---

func TestTwoStepAPIBadInput(t *testing.T) {
	tw := newTwilioFake(t)
	startTS(t, tsConfig{bobPhone: true, twostep: tw.block("sms")})
	enableWithFilePhone(t)
	stranger := newClient(t)
	one := newClient(t)
	wantAuthenticatedLogin(t, one, "alice", alicePassword, "one_factor")
	half := newClient(t)
	half.halfSignIn("bob", bobPassword)

	valid := map[string]any{
		"code/send":     map[string]any{"method": "sms"},
		"code/verify":   map[string]any{"method": "sms", "code": "123456"},
		"two_step":      map[string]any{"enabled": false, "password": alicePassword, "code": "123456"},
		"totp/confirm":  map[string]any{"code": "123456"},
		"phone":         map[string]any{"phone": "+15557654321", "method": "sms"},
		"phone/confirm": map[string]any{"code": "123456"},
		"backup_codes":  map[string]any{"password": alicePassword},
	}
	endpoints := []string{"code/send", "code/verify", "two_step", "totp/confirm", "phone", "phone/confirm", "backup_codes"}

	t.Run("malformed JSON is 400 invalid_request", func(t *testing.T) {
		for _, ep := range endpoints {
			for _, body := range []string{`{"code":`, `not json`, `[]`, `{"code":"1"} {"code":"2"}`} {
				wantError(t, one.api(ep, body), http.StatusBadRequest, "invalid_request")
			}
		}
	})
	t.Run("a body that is not JSON is 415", func(t *testing.T) {
		for _, ep := range endpoints {
			b, _ := jsonBytes(valid[ep])
			r := one.do(http.MethodPost, site+api+ep, bytes.NewReader(b), "Content-Type", "text/plain")
			wantError(t, r, http.StatusUnsupportedMediaType, "unsupported_media_type")
		}
	})
	t.Run("a stranger is 401 unauthenticated", func(t *testing.T) {
		for _, ep := range endpoints {
			wantError(t, stranger.api(ep, valid[ep]), http.StatusUnauthorized, "unauthenticated")
		}
		wantError(t, stranger.api("totp/enroll", "{}"), http.StatusUnauthorized, "unauthenticated")
	})
	t.Run("unknown method is 400", func(t *testing.T) {
		wantError(t, half.api("code/send", map[string]any{"method": "fax"}), http.StatusBadRequest, "invalid_request")
		wantError(t, half.verify("fax", "123456"), http.StatusBadRequest, "invalid_request")
		wantError(t, one.api("phone", map[string]any{"phone": "+15557654321", "method": "fax"}), http.StatusBadRequest, "invalid_request")
	})
	t.Run("empty, missing or wrong-typed fields are 400", func(t *testing.T) {
		wantError(t, half.verify("sms", ""), http.StatusBadRequest, "invalid_request")
		wantError(t, half.api("code/verify", map[string]any{"method": "sms"}), http.StatusBadRequest, "invalid_request")
		wantError(t, half.api("code/verify", `{"method":"sms","code":123456}`), http.StatusBadRequest, "invalid_request")
		wantError(t, half.api("code/send", map[string]any{}), http.StatusBadRequest, "invalid_request")
		wantError(t, one.api("totp/confirm", map[string]any{"code": ""}), http.StatusBadRequest, "invalid_request")
		wantError(t, one.api("phone/confirm", map[string]any{"code": ""}), http.StatusBadRequest, "invalid_request")
		wantError(t, one.api("phone", map[string]any{"phone": "+15557654321"}), http.StatusBadRequest, "invalid_request")
		wantError(t, one.api("phone", map[string]any{"phone": "", "method": "sms"}), http.StatusBadRequest, "invalid_request")
		wantError(t, one.api("phone", map[string]any{"phone": "555-1234", "method": "sms"}), http.StatusBadRequest, "invalid_request")
		wantError(t, one.api("backup_codes", map[string]any{"password": ""}), http.StatusBadRequest, "invalid_request")
		wantError(t, one.api("two_step", map[string]any{}), http.StatusBadRequest, "invalid_request")
		wantError(t, one.api("two_step", map[string]any{"enabled": "yes"}), http.StatusBadRequest, "invalid_request")
		wantError(t, one.api("two_step", map[string]any{"enabled": false, "password": alicePassword, "code": ""}), http.StatusBadRequest, "invalid_request")
		wantError(t, one.api("two_step", map[string]any{"enabled": false, "password": "", "code": "123456"}), http.StatusBadRequest, "invalid_request")
	})
	t.Run("a half-signed-in session may not manage methods", func(t *testing.T) {
		wantError(t, half.api("totp/enroll", "{}"), http.StatusUnauthorized, "second_factor_required")
		wantError(t, half.api("phone", map[string]any{"phone": "+15557654321", "method": "sms"}), http.StatusUnauthorized, "second_factor_required")
		wantError(t, half.api("backup_codes", map[string]any{"password": bobPassword}), http.StatusUnauthorized, "second_factor_required")
		wantError(t, half.api("two_step", map[string]any{"enabled": false, "password": bobPassword, "code": "123456"}), http.StatusUnauthorized, "second_factor_required")
		if n := len(tw.all()); n != 0 {
			t.Fatalf("twilio got %d requests", n)
		}
	})
	t.Run("a method the account does not have is refused", func(t *testing.T) {
		r := half.verify("totp", "123456")
		if r.StatusCode < 400 || r.StatusCode >= 500 {
			t.Fatalf("code/verify totp without an authenticator: %d %s", r.StatusCode, r.body)
		}
		wantError(t, half.get(site+"/reports"), http.StatusUnauthorized, "second_factor_required")
	})
	t.Run("another site's POST is 403", func(t *testing.T) {
		wantError(t, half.verify("sms", "123456", "Origin", "https://evil.example"), http.StatusForbidden, "forbidden")
	})
	t.Run("no outbox without dev_outbox", func(t *testing.T) {
		wantStatus(t, one.get(site+api+"outbox"), http.StatusNotFound)
	})
}

func jsonBytes(v any) ([]byte, error) { return json.Marshal(v) }

// --- 15: developer outbox ---

func TestDevOutbox(t *testing.T) {
	fx := startTS(t, tsConfig{caddyGlobal: "default_bind 127.0.0.1", bobPhone: true, twostep: "dev_outbox"})
	if methods := enableWithFilePhone(t); !hasAll(methods, "sms", "voice") {
		t.Fatalf("methods %v, want sms and voice through the outbox", methods)
	}
	c := newClient(t)
	c.halfSignIn("bob", bobPassword)
	sent := time.Now()
	wantSent(t, wantJSON(t, c.api("code/send", map[string]string{"method": "sms"}), http.StatusAccepted), "•••• 4567", 30)

	outbox := func() []map[string]any {
		t.Helper()
		r := c.get(site + api + "outbox")
		wantStatus(t, r, http.StatusOK)
		var list []map[string]any
		if err := json.Unmarshal(r.body, &list); err != nil {
			t.Fatalf("outbox is not a JSON list: %s", r.body)
		}
		return list
	}
	check := func(m map[string]any, channel string) string {
		t.Helper()
		code, _ := m["code"].(string)
		body, _ := m["body"].(string)
		if m["channel"] != channel || m["to"] != bobPhone || !regexp.MustCompile(`^[0-9]{6}$`).MatchString(code) {
			t.Fatalf("outbox entry %v, want channel %s to %s with a code", m, channel, bobPhone)
		}
		if channel == "sms" && !strings.Contains(body, code) {
			t.Fatalf("SMS body %q does not hold the code %s", body, code)
		}
		if channel == "voice" && voiceCode(t, "<Response><Say>"+body+"</Say><Say>"+body+"</Say></Response>") != code {
			t.Fatalf("voice body %q does not read the code %s", body, code)
		}
		at, err := time.Parse(time.RFC3339Nano, fmt.Sprint(m["time"]))
		if err != nil || at.Before(sent.Add(-time.Minute)) || at.After(time.Now().Add(time.Minute)) {
			t.Fatalf("outbox time %v", m["time"])
		}
		return code
	}
	list := outbox()
	if len(list) == 0 {
		t.Fatal("outbox is empty after code/send")
	}
	check(list[0], "sms")

	wantJSON(t, c.api("code/send", map[string]string{"method": "voice"}), http.StatusAccepted)
	list = outbox()
	if len(list) < 2 {
		t.Fatalf("outbox %v", list)
	}
	code := check(list[0], "voice")
	check(list[1], "sms")
	wantAuthenticated(t, c.verify("voice", code), "two_factor")

	page := c.browse(site + "/.twostep/outbox")
	wantStatus(t, page, http.StatusOK)
	if !strings.Contains(page.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("outbox page Content-Type %q", page.Header.Get("Content-Type"))
	}

	t.Run("dev_outbox without loopback-only listeners does not load", func(t *testing.T) {
		cfg := fx.caddyfile("dev_outbox", siteRules)
		req, _ := http.NewRequest(http.MethodPost, "http://localhost:2999/load", strings.NewReader(cfg))
		req.Header.Set("Content-Type", "text/caddyfile")
		res, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode == http.StatusOK {
			t.Fatal("a config with dev_outbox on a non-loopback listener loaded")
		}
		if !strings.Contains(string(b), "dev_outbox") {
			t.Fatalf("load error does not name dev_outbox: %d %s", res.StatusCode, b)
		}
		// The running configuration is untouched.
		wantStatus(t, c.get(site+api+"outbox"), http.StatusOK)
	})
}

// The settings page, without JavaScript: a wrong first authenticator code
// shows the same QR code and key again, so that the user can scan again.
func TestSettingsWrongFirstTOTPCode(t *testing.T) {
	f := start(t)
	f.load(f.outboxConfig(""))
	c := newClient(t)
	c.mustLogin("alice", alicePassword)
	post := func(form url.Values) *response {
		t.Helper()
		page := c.browse(site + "/.twostep/settings")
		m := csrfField.FindSubmatch(page.body)
		if m == nil {
			t.Fatalf("no csrf on the settings page: %d %s", page.StatusCode, page.body)
		}
		form.Set("csrf", string(m[1]))
		return c.do(http.MethodPost, site+"/.twostep/settings", strings.NewReader(form.Encode()),
			"Content-Type", "application/x-www-form-urlencoded", "Origin", site, "Accept", "text/html")
	}
	key := regexp.MustCompile(`<code class="secret">([^<]+)</code>`)
	first := post(url.Values{"action": {"totp-enroll"}})
	m := key.FindSubmatch(first.body)
	if first.StatusCode != http.StatusOK || m == nil {
		t.Fatalf("totp-enroll: %d %s", first.StatusCode, first.body)
	}
	again := post(url.Values{"action": {"totp-confirm"}, "code": {"000000"}})
	m2 := key.FindSubmatch(again.body)
	if again.StatusCode == http.StatusOK || m2 == nil || !bytes.Equal(m[1], m2[1]) || !bytes.Contains(again.body, []byte(`class="qr"`)) {
		t.Fatalf("after a wrong first code: %d, key %q (was %q)\n%s", again.StatusCode, m2, m[1], again.body)
	}
}
