package recoveryui

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"
	"golang.org/x/crypto/bcrypt"

	"github.com/twostep-auth/twostep/account"
	"github.com/twostep-auth/twostep/internal/notify"
	"github.com/twostep-auth/twostep/internal/store/bolt"
	"github.com/twostep-auth/twostep/internal/users"
)

// Changing sign-in methods through the portal: the API and the settings
// page ask a stale session for a code again, and a confirmed method goes
// on under a new session cookie.

// smsBox keeps the texts the portal sends.
type smsBox struct {
	mu   sync.Mutex
	msgs []notify.Message
}

func (b *smsBox) Name() string { return "box" }
func (b *smsBox) Send(_ context.Context, m notify.Message) error {
	b.mu.Lock()
	b.msgs = append(b.msgs, m)
	b.mu.Unlock()
	return nil
}

func (b *smsBox) lastCode(t *testing.T) string {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.msgs) == 0 {
		t.Fatal("no text was sent")
	}
	return b.msgs[len(b.msgs)-1].Code
}

type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// tsPortal is a portal on plain HTTP whose user bob (password
// "bob-password") has no method yet.
type tsPortal struct {
	p     *Portal
	svc   *account.Service
	sms   *smsBox
	clock *testClock
	// session is the browser's session cookie; csrf its CSRF cookie.
	session, csrf string
}

func newTSPortal(t *testing.T) *tsPortal {
	t.Helper()
	tp := &tsPortal{sms: &smsBox{}, clock: &testClock{t: time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)}, csrf: strings.Repeat("c", 43)}
	tp.svc = bobService(t, "", account.Config{Senders: account.Senders{SMS: tp.sms}}, tp.clock.now)
	client := account.Client{IP: netip.MustParseAddr("192.0.2.1"), UserAgent: "test"}
	tp.p = &Portal{Account: tp.svc, Env: func(*http.Request) Env { return Env{Client: client} }}
	return tp
}

// bobService is an account service over a fresh store whose users file
// holds bob (password "bob-password") with extra fields appended to his
// entry; cfg gets the tests' session, regulation and secret settings.
func bobService(t *testing.T, extra string, cfg account.Config, now func() time.Time) *account.Service {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "t.db"), bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	h, err := bcrypt.GenerateFromPassword([]byte("bob-password"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	db, err := users.Parse([]byte("users:\n  bob:\n    password: \"" + string(h) + "\"\n" + extra))
	if err != nil {
		t.Fatal(err)
	}
	cfg.SessionIdle, cfg.SessionLifetime = 30*time.Minute, 12*time.Hour
	cfg.Regulation = account.Regulation{MaxRetries: 3, FindTime: 10 * time.Minute, BanTime: 15 * time.Minute}
	cfg.Secret = []byte("0123456789abcdef0123456789abcdef")
	svc, err := account.New(cfg, st, staticUsers{db}, now, nil)
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

// do sends a request with the browser's cookies and keeps a new session
// cookie.
func (tp *tsPortal) do(t *testing.T, method, path, contentType, body string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, "http://app.example.test"+path, strings.NewReader(body))
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	if tp.session != "" {
		r.AddCookie(&http.Cookie{Name: "twostep", Value: tp.session})
	}
	r.AddCookie(&http.Cookie{Name: csrfCookie, Value: tp.csrf})
	w := httptest.NewRecorder()
	tp.p.ServeHTTP(w, r)
	for _, c := range w.Result().Cookies() {
		if c.Name == "twostep" {
			tp.session = c.Value
		}
	}
	return w
}

func (tp *tsPortal) api(t *testing.T, name string, body any) *httptest.ResponseRecorder {
	t.Helper()
	b, _ := json.Marshal(body)
	return tp.do(t, http.MethodPost, Prefix+"api/"+name, "application/json", string(b))
}

// form posts a form to a portal page, with the CSRF token.
func (tp *tsPortal) form(t *testing.T, page string, v url.Values) *httptest.ResponseRecorder {
	t.Helper()
	v.Set("csrf", tp.svc.CSRFToken(tp.csrf))
	return tp.do(t, http.MethodPost, Prefix+page, "application/x-www-form-urlencoded", v.Encode())
}

func wantCode(t *testing.T, w *httptest.ResponseRecorder, status int, errCode string) {
	t.Helper()
	if w.Code != status {
		t.Fatalf("status %d, want %d: %s", w.Code, status, w.Body)
	}
	if errCode == "" {
		return
	}
	var e struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Error != errCode {
		t.Fatalf("body %s, want error %q", w.Body, errCode)
	}
}

// enrolPhone signs bob in and turns two-step on with a phone, through
// the API; the confirmation's answer sets a new session cookie.
func (tp *tsPortal) enrolPhone(t *testing.T) {
	t.Helper()
	wantCode(t, tp.api(t, "login", map[string]string{"username": "bob", "password": "bob-password"}), http.StatusOK, "")
	wantCode(t, tp.api(t, "phone", map[string]string{"phone": "+15551234567", "method": "sms"}), http.StatusAccepted, "")
	before := tp.session
	w := tp.api(t, "phone/confirm", map[string]string{"code": tp.sms.lastCode(t)})
	wantCode(t, w, http.StatusOK, "")
	if tp.session == before || tp.session == "" {
		t.Fatalf("phone/confirm did not set a new session cookie: %q", w.Header().Values("Set-Cookie"))
	}
	old := &tsPortal{p: tp.p, svc: tp.svc, csrf: tp.csrf, session: before}
	wantCode(t, old.do(t, http.MethodGet, Prefix+"api/me", "", ""), http.StatusUnauthorized, "unauthenticated")
	me := tp.do(t, http.MethodGet, Prefix+"api/me", "", "")
	if me.Code != http.StatusOK || !strings.Contains(me.Body.String(), `"level":"two_factor"`) {
		t.Fatalf("me with the new cookie: %d %s", me.Code, me.Body)
	}
}

// With two-step on, a session whose code is older than the step-up window
// gets 401 second_factor_required from the endpoints that begin a change
// (as a max_age rule answers), and may go on once it gives a code again.
// (A confirmation is judged with the enrolment's own lifetime added:
// account's TestMethodChangeNeedsFreshFactor.)
func TestAPIMethodChangeAsksForCodeAgain(t *testing.T) {
	tp := newTSPortal(t)
	tp.enrolPhone(t)
	tp.clock.add(account.StepUpWindow + time.Minute)
	wantCode(t, tp.api(t, "totp/enroll", struct{}{}), http.StatusUnauthorized, "second_factor_required")
	wantCode(t, tp.api(t, "phone", map[string]string{"phone": "+15559990000", "method": "sms"}), http.StatusUnauthorized, "second_factor_required")
	wantCode(t, tp.api(t, "backup_codes", map[string]string{"password": "bob-password"}), http.StatusUnauthorized, "second_factor_required")

	wantCode(t, tp.api(t, "code/send", map[string]string{"method": "sms"}), http.StatusAccepted, "")
	wantCode(t, tp.api(t, "code/verify", map[string]any{"method": "sms", "code": tp.sms.lastCode(t)}), http.StatusOK, "")
	w := tp.api(t, "totp/enroll", struct{}{})
	wantCode(t, w, http.StatusOK, "")
	var enr TOTPEnrollResponse
	if err := json.Unmarshal(w.Body.Bytes(), &enr); err != nil || enr.Secret == "" {
		t.Fatalf("totp/enroll: %s", w.Body)
	}
	code, err := totp.GenerateCode(enr.Secret, tp.clock.now())
	if err != nil {
		t.Fatal(err)
	}
	before := tp.session
	w = tp.api(t, "totp/confirm", map[string]string{"code": code})
	wantCode(t, w, http.StatusOK, "")
	if strings.TrimSpace(w.Body.String()) != "{}" || tp.session == before {
		t.Fatalf("totp/confirm with two-step on: %s, new cookie %v", w.Body, tp.session != before)
	}
}

// The settings page sends a stale session to the challenge page, which
// returns to the settings page (with its own return) once a code is
// given; confirming the new method there sets a new session cookie.
func TestSettingsMethodChangeGoesToChallenge(t *testing.T) {
	tp := newTSPortal(t)
	tp.enrolPhone(t)
	tp.clock.add(account.StepUpWindow + time.Minute)

	w := tp.form(t, "settings", url.Values{"action": {"totp-enroll"}, "return": {"/app/x"}})
	if w.Code != http.StatusSeeOther {
		t.Fatalf("totp-enroll from a stale session: %d, want 303: %s", w.Code, w.Body)
	}
	back := Prefix + "settings?return=" + url.QueryEscape("/app/x")
	if loc := w.Header().Get("Location"); loc != Prefix+"challenge?step_up=1&return="+url.QueryEscape(back) {
		t.Fatalf("Location %q", loc)
	}
	for _, action := range []url.Values{
		{"action": {"phone"}, "phone": {"+15559990000"}, "method": {"sms"}},
		{"action": {"backup"}, "password": {"bob-password"}},
	} {
		if w := tp.form(t, "settings", action); w.Code != http.StatusSeeOther || !strings.HasPrefix(w.Header().Get("Location"), Prefix+"challenge?step_up=1&") {
			t.Fatalf("%s from a stale session: %d %q", action.Get("action"), w.Code, w.Header().Get("Location"))
		}
	}

	page := tp.do(t, http.MethodGet, w.Header().Get("Location"), "", "")
	if page.Code != http.StatusOK || !strings.Contains(page.Body.String(), "confirm it&#39;s you with a code first") {
		t.Fatalf("challenge page: %d %s", page.Code, page.Body)
	}
	w = tp.form(t, "challenge", url.Values{"action": {"send"}, "method": {"sms"}, "return": {back}})
	if w.Code != http.StatusOK {
		t.Fatalf("send: %d %s", w.Code, w.Body)
	}
	before := tp.session
	w = tp.form(t, "challenge", url.Values{"action": {"verify"}, "method": {"sms"}, "code": {tp.sms.lastCode(t)}, "return": {back}})
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != back || tp.session == before {
		t.Fatalf("verify: %d %q, new cookie %v", w.Code, w.Header().Get("Location"), tp.session != before)
	}

	w = tp.form(t, "settings", url.Values{"action": {"totp-enroll"}, "return": {"/app/x"}})
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "totp-confirm") {
		t.Fatalf("totp-enroll after the code: %d %s", w.Code, w.Body)
	}
	enr, err := tp.svc.PendingTOTP(context.Background(), tp.resolve(t))
	if err != nil {
		t.Fatal(err)
	}
	code, err := totp.GenerateCode(enr.Secret, tp.clock.now())
	if err != nil {
		t.Fatal(err)
	}
	before = tp.session
	w = tp.form(t, "settings", url.Values{"action": {"totp-confirm"}, "code": {code}, "return": {"/app/x"}})
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "Your authenticator app is set up.") {
		t.Fatalf("totp-confirm: %d %s", w.Code, w.Body)
	}
	if tp.session == before {
		t.Fatal("confirming the authenticator on the settings page did not set a new session cookie")
	}
	if res := tp.resolve(t); res.Session.State.String() != "two_factor" {
		t.Fatalf("the new cookie's session: %v", res.Session.State)
	}
}

func (tp *tsPortal) resolve(t *testing.T) *account.Resolved {
	t.Helper()
	res, err := tp.svc.Resolve(context.Background(), tp.session)
	if err != nil {
		t.Fatal(err)
	}
	return res
}
