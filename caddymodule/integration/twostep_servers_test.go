package integration

// Real servers the product talks to during the two-step tests: a Twilio
// REST API look-alike, a webhook receiver that checks signatures itself,
// and an SMTP server (go-smtp). Each records what it received and reports
// protocol violations as test errors at the end of the test.

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"log"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

const (
	twilioSID   = "AC0123456789abcdef0123456789abcdef"
	twilioToken = "integration-auth-token-5f2c"
	twilioFrom  = "+15550001111"
)

// twilioMsg is one request the Twilio fake accepted as well formed.
type twilioMsg struct {
	Kind  string // "sms" (Messages.json) or "voice" (Calls.json)
	To    string
	From  string
	Body  string // SMS
	Twiml string // voice
	At    time.Time
	// Status is what the fake answered.
	Status int
}

// twilioFake speaks Twilio's REST API for Messages and Calls.
type twilioFake struct {
	t   *testing.T
	srv *httptest.Server

	// smsStatus / voiceStatus: 0 answers 201 with a resource; 400 or 500
	// answer Twilio's error JSON with that status.
	smsStatus, voiceStatus atomic.Int32

	mu       sync.Mutex
	msgs     []twilioMsg
	problems []string
}

var twilioPath = regexp.MustCompile(`^/2010-04-01/Accounts/([^/]+)/(Messages|Calls)\.json$`)

func newTwilioFake(t *testing.T) *twilioFake {
	tw := &twilioFake{t: t}
	tw.srv = httptest.NewServer(http.HandlerFunc(tw.serve))
	t.Cleanup(func() {
		tw.srv.Close()
		tw.mu.Lock()
		defer tw.mu.Unlock()
		for _, p := range tw.problems {
			t.Errorf("twilio fake: %s", p)
		}
	})
	return tw
}

func (tw *twilioFake) endpoint() string { return tw.srv.URL }

// block is the Caddyfile provider block pointing at this fake.
func (tw *twilioFake) block(channel string) string {
	return fmt.Sprintf(`%s twilio {
			account_sid %s
			auth_token %s
			from %s
			endpoint %s
		}`, channel, twilioSID, twilioToken, twilioFrom, tw.endpoint())
}

func (tw *twilioFake) problem(w http.ResponseWriter, status, code int, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	tw.mu.Lock()
	tw.problems = append(tw.problems, msg)
	tw.mu.Unlock()
	writeTwilioError(w, status, code, msg)
}

func writeTwilioError(w http.ResponseWriter, status, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"code":      code,
		"message":   msg,
		"more_info": fmt.Sprintf("https://www.twilio.com/docs/errors/%d", code),
		"status":    status,
	})
}

var e164re = regexp.MustCompile(`^\+[1-9][0-9]{6,14}$`)

func (tw *twilioFake) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		tw.problem(w, http.StatusMethodNotAllowed, 20004, "method %s, want POST", r.Method)
		return
	}
	m := twilioPath.FindStringSubmatch(r.URL.Path)
	if m == nil {
		tw.problem(w, http.StatusNotFound, 20404, "unknown resource %s", r.URL.Path)
		return
	}
	if m[1] != twilioSID {
		tw.problem(w, http.StatusNotFound, 20404, "account %q in the path, want %s", m[1], twilioSID)
		return
	}
	user, pass, ok := r.BasicAuth()
	if !ok || user != twilioSID || pass != twilioToken {
		tw.problem(w, http.StatusUnauthorized, 20003, "basic auth %q:%q (present %v), want the account SID and auth token", user, pass, ok)
		return
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/x-www-form-urlencoded" {
		tw.problem(w, http.StatusBadRequest, 20001, "Content-Type %q, want application/x-www-form-urlencoded", r.Header.Get("Content-Type"))
		return
	}
	if err := r.ParseForm(); err != nil {
		tw.problem(w, http.StatusBadRequest, 20001, "form: %v", err)
		return
	}
	if len(r.URL.Query()) != 0 {
		tw.problem(w, http.StatusBadRequest, 20001, "unexpected query %q", r.URL.RawQuery)
		return
	}
	f := r.PostForm
	msg := twilioMsg{To: f.Get("To"), From: f.Get("From"), At: time.Now()}
	if !e164re.MatchString(msg.To) {
		tw.problem(w, http.StatusBadRequest, 21211, "To %q is not an E.164 number", msg.To)
		return
	}
	if msg.From != twilioFrom {
		tw.problem(w, http.StatusBadRequest, 21212, "From %q, want %s", msg.From, twilioFrom)
		return
	}
	status := 0
	prefix := ""
	switch m[2] {
	case "Messages":
		msg.Kind, msg.Body, prefix = "sms", f.Get("Body"), "SM"
		if msg.Body == "" || f.Has("Twiml") {
			tw.problem(w, http.StatusBadRequest, 21602, "Messages.json needs Body (and no Twiml): %v", f)
			return
		}
		status = int(tw.smsStatus.Load())
	case "Calls":
		msg.Kind, msg.Twiml, prefix = "voice", f.Get("Twiml"), "CA"
		if msg.Twiml == "" || f.Has("Body") {
			tw.problem(w, http.StatusBadRequest, 21205, "Calls.json needs Twiml (and no Body): %v", f)
			return
		}
		status = int(tw.voiceStatus.Load())
	}
	if status == 0 {
		status = http.StatusCreated
	}
	msg.Status = status
	tw.mu.Lock()
	tw.msgs = append(tw.msgs, msg)
	n := len(tw.msgs)
	tw.mu.Unlock()
	switch status {
	case http.StatusCreated:
		sid := fmt.Sprintf("%s%032x", prefix, n)
		res := map[string]any{
			"sid": sid, "account_sid": twilioSID, "to": msg.To, "from": msg.From,
			"status": "queued", "api_version": "2010-04-01",
			"date_created": time.Now().UTC().Format(time.RFC1123Z),
			"uri":          "/2010-04-01/Accounts/" + twilioSID + "/" + m[2] + "/" + sid + ".json",
		}
		if msg.Kind == "sms" {
			res["body"] = msg.Body
			res["num_segments"] = "1"
			res["direction"] = "outbound-api"
		} else {
			res["direction"] = "outbound-api"
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(res)
	case http.StatusBadRequest:
		writeTwilioError(w, status, 21211, fmt.Sprintf("The 'To' number %s is not a valid phone number.", msg.To))
	default:
		writeTwilioError(w, status, 20500, "Internal Server Error")
	}
}

func (tw *twilioFake) all() []twilioMsg {
	tw.mu.Lock()
	defer tw.mu.Unlock()
	return append([]twilioMsg(nil), tw.msgs...)
}

func (tw *twilioFake) count(kind string) int {
	n := 0
	for _, m := range tw.all() {
		if m.Kind == kind {
			n++
		}
	}
	return n
}

// nth waits for the n-th (1-based) message of kind and returns it.
func (tw *twilioFake) nth(t *testing.T, kind string, n int) twilioMsg {
	t.Helper()
	var got twilioMsg
	eventually(t, 5*time.Second, fmt.Sprintf("twilio fake receives %s #%d", kind, n), func() bool {
		i := 0
		for _, m := range tw.all() {
			if m.Kind == kind {
				i++
				if i == n {
					got = m
					return true
				}
			}
		}
		return false
	})
	return got
}

var sixDigits = regexp.MustCompile(`\b[0-9]{6}\b`)

// smsCode is the code in an SMS body: exactly one group of 6 digits.
func smsCode(t *testing.T, body string) string {
	t.Helper()
	m := sixDigits.FindAllString(body, -1)
	if len(m) != 1 {
		t.Fatalf("SMS body %q: want exactly one 6-digit code, found %v", body, m)
	}
	return m[0]
}

// voiceCode checks that the TwiML reads the code digit by digit, twice,
// and returns it.
func voiceCode(t *testing.T, twiml string) string {
	t.Helper()
	var doc struct {
		XMLName xml.Name `xml:"Response"`
		Say     []string `xml:"Say"`
	}
	if err := xml.Unmarshal([]byte(twiml), &doc); err != nil {
		t.Fatalf("Twiml is not a TwiML <Response> document (%v): %s", err, twiml)
	}
	digitRuns := regexp.MustCompile(`[0-9]+`)
	var code string
	readings := 0
	for _, say := range doc.Say {
		runs := digitRuns.FindAllString(say, -1)
		if len(runs) == 0 {
			continue
		}
		for _, r := range runs {
			if len(r) != 1 {
				t.Fatalf("Twiml <Say>%s</Say> reads %q as a number, not digit by digit: %s", say, r, twiml)
			}
		}
		c := strings.Join(runs, "")
		if len(c) != 6 {
			t.Fatalf("Twiml <Say>%s</Say> reads %d digits, want 6: %s", say, len(c), twiml)
		}
		if code == "" {
			code = c
		} else if c != code {
			t.Fatalf("Twiml reads two different codes %s and %s: %s", code, c, twiml)
		}
		readings++
	}
	if readings < 2 {
		t.Fatalf("Twiml reads the code %d time(s), want twice: %s", readings, twiml)
	}
	return code
}

// webhookMsg is one correctly signed webhook delivery.
type webhookMsg struct {
	Channel, To, Body, Code, User string
}

// webhookFake receives `sms webhook` deliveries and checks the signature.
type webhookFake struct {
	srv    *httptest.Server
	secret string
	status atomic.Int32 // 0 answers 200

	mu       sync.Mutex
	msgs     []webhookMsg
	hits     int
	problems []string
}

func newWebhookFake(t *testing.T, secret string) *webhookFake {
	wh := &webhookFake{secret: secret}
	wh.srv = httptest.NewServer(http.HandlerFunc(wh.serve))
	t.Cleanup(func() {
		wh.srv.Close()
		wh.mu.Lock()
		defer wh.mu.Unlock()
		for _, p := range wh.problems {
			t.Errorf("webhook receiver: %s", p)
		}
	})
	return wh
}

func (wh *webhookFake) url() string { return wh.srv.URL + "/send" }

func (wh *webhookFake) serve(w http.ResponseWriter, r *http.Request) {
	wh.mu.Lock()
	wh.hits++
	wh.mu.Unlock()
	fail := func(status int, format string, args ...any) {
		wh.mu.Lock()
		wh.problems = append(wh.problems, fmt.Sprintf(format, args...))
		wh.mu.Unlock()
		http.Error(w, "refused", status)
	}
	if r.Method != http.MethodPost || r.URL.Path != "/send" {
		fail(http.StatusNotFound, "%s %s, want POST /send", r.Method, r.URL.Path)
		return
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		fail(http.StatusUnsupportedMediaType, "Content-Type %q, want application/json", r.Header.Get("Content-Type"))
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		fail(http.StatusBadRequest, "reading the body: %v", err)
		return
	}
	sig := r.Header.Get("X-Twostep-Signature")
	hexSig, ok := strings.CutPrefix(sig, "sha256=")
	got, err := hex.DecodeString(hexSig)
	mac := hmac.New(sha256.New, []byte(wh.secret))
	mac.Write(body)
	if !ok || err != nil || !hmac.Equal(got, mac.Sum(nil)) {
		fail(http.StatusUnauthorized, "bad X-Twostep-Signature %q for body %s", sig, body)
		return
	}
	var raw map[string]any
	if err := json.Unmarshal(body, &raw); err != nil {
		fail(http.StatusBadRequest, "body is not a JSON object: %s", body)
		return
	}
	var m webhookMsg
	for k, dst := range map[string]*string{"channel": &m.Channel, "to": &m.To, "body": &m.Body, "code": &m.Code, "user": &m.User} {
		s, ok := raw[k].(string)
		if !ok {
			fail(http.StatusBadRequest, "field %q missing or not a string: %s", k, body)
			return
		}
		*dst = s
	}
	if st := wh.status.Load(); st != 0 {
		http.Error(w, "receiver failure", int(st))
		return
	}
	wh.mu.Lock()
	wh.msgs = append(wh.msgs, m)
	wh.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

func (wh *webhookFake) received() []webhookMsg {
	wh.mu.Lock()
	defer wh.mu.Unlock()
	return append([]webhookMsg(nil), wh.msgs...)
}

func (wh *webhookFake) hitCount() int {
	wh.mu.Lock()
	defer wh.mu.Unlock()
	return wh.hits
}

// mailMsg is one message the SMTP server received, parsed.
type mailMsg struct {
	EnvFrom string
	EnvTo   []string
	Header  mail.Header
	Subject string
	Body    string
}

type smtpFake struct {
	addr string

	mu       sync.Mutex
	msgs     []mailMsg
	problems []string
}

func newSMTPFake(t *testing.T) *smtpFake {
	sf := &smtpFake{}
	srv := smtp.NewServer(sf)
	srv.Domain = "localhost"
	srv.ReadTimeout = 10 * time.Second
	srv.WriteTimeout = 10 * time.Second
	srv.MaxMessageBytes = 1 << 20
	srv.MaxRecipients = 10
	srv.ErrorLog = log.New(io.Discard, "", 0)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sf.addr = l.Addr().String()
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() {
		_ = srv.Close()
		sf.mu.Lock()
		defer sf.mu.Unlock()
		for _, p := range sf.problems {
			t.Errorf("smtp server: %s", p)
		}
	})
	return sf
}

func (sf *smtpFake) block() string {
	return fmt.Sprintf(`email smtp %s {
			from "Security <security@example.com>"
			tls none
		}`, sf.addr)
}

func (sf *smtpFake) NewSession(*smtp.Conn) (smtp.Session, error) { return &smtpSess{sf: sf}, nil }

type smtpSess struct {
	sf   *smtpFake
	from string
	to   []string
}

func (s *smtpSess) Mail(from string, _ *smtp.MailOptions) error { s.from = from; return nil }
func (s *smtpSess) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.to = append(s.to, to)
	return nil
}
func (s *smtpSess) Reset()        { s.from, s.to = "", nil }
func (s *smtpSess) Logout() error { return nil }

func (s *smtpSess) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	m, perr := parseMail(data)
	s.sf.mu.Lock()
	defer s.sf.mu.Unlock()
	if perr != nil {
		s.sf.problems = append(s.sf.problems, fmt.Sprintf("unparsable message (%v): %s", perr, data))
		return nil
	}
	m.EnvFrom, m.EnvTo = s.from, append([]string(nil), s.to...)
	s.sf.msgs = append(s.sf.msgs, *m)
	return nil
}

func parseMail(data []byte) (*mailMsg, error) {
	msg, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	subj, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	if err != nil {
		return nil, fmt.Errorf("subject: %w", err)
	}
	mt, _, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "text/plain" {
		return nil, fmt.Errorf("Content-Type %q, want text/plain", msg.Header.Get("Content-Type"))
	}
	var body io.Reader = msg.Body
	switch strings.ToLower(msg.Header.Get("Content-Transfer-Encoding")) {
	case "quoted-printable":
		body = quotedprintable.NewReader(body)
	case "base64":
		body = base64.NewDecoder(base64.StdEncoding, body)
	}
	b, err := io.ReadAll(body)
	if err != nil {
		return nil, fmt.Errorf("body: %w", err)
	}
	return &mailMsg{Header: msg.Header, Subject: subj, Body: strings.ReplaceAll(string(b), "\r\n", "\n")}, nil
}

func (sf *smtpFake) all() []mailMsg {
	sf.mu.Lock()
	defer sf.mu.Unlock()
	return append([]mailMsg(nil), sf.msgs...)
}

// waitMail waits for a message to rcpt whose subject contains subj
// (case-insensitive), after the first skip such messages.
func (sf *smtpFake) waitMail(t *testing.T, rcpt, subj string, skip int) mailMsg {
	t.Helper()
	var got mailMsg
	eventually(t, 5*time.Second, fmt.Sprintf("an email to %s about %q (#%d)", rcpt, subj, skip+1), func() bool {
		n := 0
		for _, m := range sf.all() {
			if len(m.EnvTo) == 1 && m.EnvTo[0] == rcpt && strings.Contains(strings.ToLower(m.Subject), strings.ToLower(subj)) {
				if n == skip {
					got = m
					return true
				}
				n++
			}
		}
		return false
	})
	return got
}

// checkNotice checks the envelope and headers of an account notice.
func checkNotice(t *testing.T, m mailMsg, rcpt string) {
	t.Helper()
	t.Logf("email to %s: %q", rcpt, m.Subject)
	if m.EnvFrom != "security@example.com" {
		t.Errorf("MAIL FROM %q, want security@example.com", m.EnvFrom)
	}
	from, err := mail.ParseAddress(m.Header.Get("From"))
	if err != nil || from.Address != "security@example.com" || from.Name != "Security" {
		t.Errorf("From header %q, want Security <security@example.com>", m.Header.Get("From"))
	}
	to, err := mail.ParseAddress(m.Header.Get("To"))
	if err != nil || to.Address != rcpt {
		t.Errorf("To header %q, want %s", m.Header.Get("To"), rcpt)
	}
	if _, err := m.Header.Date(); err != nil {
		t.Errorf("Date header %q: %v", m.Header.Get("Date"), err)
	}
	if strings.TrimSpace(m.Body) == "" {
		t.Errorf("empty body in %q", m.Subject)
	}
}
