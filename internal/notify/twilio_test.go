package notify

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	testSID   = "AC0123456789abcdef0123456789abcdef"
	testToken = "tok_9f8e7d6c5b4a39281706f5e4d3c2b1a0"
	testFrom  = "+15550001111"
)

// twilioRequest is what the fake Twilio saw.
type twilioRequest struct {
	Path, Method, ContentType string
	User, Pass                string
	AuthOK                    bool
	Form                      map[string][]string
}

// fakeTwilio speaks Twilio's wire format for the Messages and Calls
// resources of one account.
type fakeTwilio struct {
	t     *testing.T
	sid   string
	token string

	mu   sync.Mutex
	reqs []twilioRequest
}

func (f *fakeTwilio) requests() []twilioRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]twilioRequest(nil), f.reqs...)
}

func twilioError(w http.ResponseWriter, status, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"code":      code,
		"message":   msg,
		"more_info": fmt.Sprintf("https://www.twilio.com/docs/errors/%d", code),
		"status":    status,
	})
}

func (f *fakeTwilio) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	user, pass, ok := r.BasicAuth()
	rec := twilioRequest{Path: r.URL.Path, Method: r.Method, ContentType: r.Header.Get("Content-Type"), User: user, Pass: pass}
	rec.AuthOK = ok && user == f.sid && pass == f.token
	if err := r.ParseForm(); err == nil {
		rec.Form = r.PostForm
	}
	f.mu.Lock()
	f.reqs = append(f.reqs, rec)
	f.mu.Unlock()

	base := "/2010-04-01/Accounts/" + f.sid + "/"
	var kind string
	switch r.URL.Path {
	case base + "Messages.json":
		kind = "message"
	case base + "Calls.json":
		kind = "call"
	default:
		twilioError(w, http.StatusNotFound, 20404, "The requested resource "+r.URL.Path+" was not found")
		return
	}
	if r.Method != http.MethodPost {
		twilioError(w, http.StatusMethodNotAllowed, 20004, "Method not allowed")
		return
	}
	if !rec.AuthOK {
		twilioError(w, http.StatusUnauthorized, 20003, "Authenticate")
		return
	}
	if rec.ContentType != "application/x-www-form-urlencoded" {
		twilioError(w, http.StatusBadRequest, 20001, "Unsupported content type")
		return
	}
	to, from := r.PostForm.Get("To"), r.PostForm.Get("From")
	if to == "" {
		twilioError(w, http.StatusBadRequest, 21201, "No 'To' number is specified")
		return
	}
	if to == "+1555" {
		twilioError(w, http.StatusBadRequest, 21211, "The 'To' number +1555 is not a valid phone number.")
		return
	}
	if from == "" {
		twilioError(w, http.StatusBadRequest, 21603, "A 'From' phone number is required.")
		return
	}
	now := time.Now().UTC().Format(time.RFC1123Z)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	switch kind {
	case "message":
		if r.PostForm.Get("Body") == "" {
			return
		}
		sid := "SM" + strings.Repeat("a1", 16)
		_ = json.NewEncoder(w).Encode(map[string]any{
			"account_sid": f.sid, "api_version": "2010-04-01", "body": r.PostForm.Get("Body"),
			"date_created": now, "date_sent": nil, "date_updated": now, "direction": "outbound-api",
			"error_code": nil, "error_message": nil, "from": from, "messaging_service_sid": nil,
			"num_media": "0", "num_segments": "1", "price": nil, "price_unit": "USD",
			"sid": sid, "status": "queued", "to": to,
			"subresource_uris": map[string]string{"media": base + "Messages/" + sid + "/Media.json"},
			"uri":              base + "Messages/" + sid + ".json",
		})
	case "call":
		sid := "CA" + strings.Repeat("b2", 16)
		_ = json.NewEncoder(w).Encode(map[string]any{
			"account_sid": f.sid, "annotation": nil, "answered_by": nil, "api_version": "2010-04-01",
			"caller_name": nil, "date_created": now, "date_updated": now, "direction": "outbound-api",
			"duration": nil, "end_time": nil, "forwarded_from": nil, "from": from, "from_formatted": from,
			"group_sid": nil, "parent_call_sid": nil, "phone_number_sid": "PN" + strings.Repeat("c3", 16),
			"price": nil, "price_unit": "USD", "sid": sid, "start_time": nil, "status": "queued",
			"to": to, "to_formatted": to, "trunk_sid": nil, "queue_time": "1000",
			"subresource_uris": map[string]string{"notifications": base + "Calls/" + sid + "/Notifications.json"},
			"uri":              base + "Calls/" + sid + ".json",
		})
	}
}

func newFakeTwilio(t *testing.T) (*fakeTwilio, *httptest.Server) {
	f := &fakeTwilio{t: t, sid: testSID, token: testToken}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

// twiml is the shape of the voice TwiML.
type twiml struct {
	XMLName xml.Name `xml:"Response"`
	Says    []string `xml:"Say"`
	Pause   []struct {
		Length string `xml:"length,attr"`
	} `xml:"Pause"`
}

// elementOrder lists the element names of doc in document order.
func elementOrder(t *testing.T, doc string) []string {
	t.Helper()
	dec := xml.NewDecoder(strings.NewReader(doc))
	var names []string
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return names
		}
		if err != nil {
			t.Fatalf("TwiML %q is not valid XML: %v", doc, err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			names = append(names, se.Name.Local)
		}
	}
}

func TestTwilioSend(t *testing.T) {
	fake, srv := newFakeTwilio(t)
	tw := &Twilio{AccountSID: testSID, AuthToken: testToken, From: testFrom, Endpoint: srv.URL, Client: srv.Client()}

	tests := []struct {
		name     string
		msg      Message
		path     string
		field    string // the form field carrying the content
		want     string // its exact value
		wantSays []string
	}{
		{
			name:  "sms",
			msg:   Message{Channel: ChannelSMS, To: "+15551234567", User: "alice", Body: "Your code is 123456. It expires in 10 minutes.", Code: "123456"},
			path:  "/2010-04-01/Accounts/" + testSID + "/Messages.json",
			field: "Body",
			want:  "Your code is 123456. It expires in 10 minutes.",
		},
		{
			name:     "voice with code",
			msg:      Message{Channel: ChannelVoice, To: "+15551234567", User: "alice", Body: "ignored when a code is set", Code: "123456"},
			path:     "/2010-04-01/Accounts/" + testSID + "/Calls.json",
			field:    "Twiml",
			want:     `<Response><Say>Your code is 1, 2, 3, 4, 5, 6.</Say><Pause length="1"/><Say>Again: 1, 2, 3, 4, 5, 6.</Say></Response>`,
			wantSays: []string{"Your code is 1, 2, 3, 4, 5, 6.", "Again: 1, 2, 3, 4, 5, 6."},
		},
		{
			name:     "voice without code escapes the body",
			msg:      Message{Channel: ChannelVoice, To: "+15551234567", Body: `Tom & Jerry <say> "hi"`},
			path:     "/2010-04-01/Accounts/" + testSID + "/Calls.json",
			field:    "Twiml",
			want:     `<Response><Say>Tom &amp; Jerry &lt;say&gt; &#34;hi&#34;</Say><Pause length="1"/><Say>Again: Tom &amp; Jerry &lt;say&gt; &#34;hi&#34;</Say></Response>`,
			wantSays: []string{`Tom & Jerry <say> "hi"`, `Again: Tom & Jerry <say> "hi"`},
		},
		{
			name:     "voice code with markup is escaped",
			msg:      Message{Channel: ChannelVoice, To: "+15551234567", Code: "1<2"},
			path:     "/2010-04-01/Accounts/" + testSID + "/Calls.json",
			field:    "Twiml",
			want:     `<Response><Say>Your code is 1, &lt;, 2.</Say><Pause length="1"/><Say>Again: 1, &lt;, 2.</Say></Response>`,
			wantSays: []string{"Your code is 1, <, 2.", "Again: 1, <, 2."},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(fake.requests())
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			if err := tw.Send(ctx, tc.msg); err != nil {
				t.Fatalf("Send: %v", err)
			}
			reqs := fake.requests()
			if len(reqs) != before+1 {
				t.Fatalf("Twilio got %d requests, want 1", len(reqs)-before)
			}
			r := reqs[len(reqs)-1]
			if r.Method != http.MethodPost || r.Path != tc.path {
				t.Errorf("request %s %s, want POST %s", r.Method, r.Path, tc.path)
			}
			if !r.AuthOK || r.User != testSID || r.Pass != testToken {
				t.Errorf("basic auth %q:%q, want the SID and token", r.User, r.Pass)
			}
			if r.ContentType != "application/x-www-form-urlencoded" {
				t.Errorf("Content-Type %q", r.ContentType)
			}
			wantKeys := []string{"From", "To", tc.field}
			var keys []string
			for k := range r.Form {
				keys = append(keys, k)
			}
			if len(keys) != len(wantKeys) {
				t.Errorf("form fields %v, want %v", keys, wantKeys)
			}
			if got := first(r.Form["To"]); got != tc.msg.To {
				t.Errorf("To = %q, want %q", got, tc.msg.To)
			}
			if got := first(r.Form["From"]); got != testFrom {
				t.Errorf("From = %q, want %q", got, testFrom)
			}
			got := first(r.Form[tc.field])
			if got != tc.want {
				t.Errorf("%s =\n %s\nwant\n %s", tc.field, got, tc.want)
			}
			if tc.field != "Twiml" {
				return
			}
			if order := strings.Join(elementOrder(t, got), ","); order != "Response,Say,Pause,Say" {
				t.Errorf("TwiML elements %s, want Response,Say,Pause,Say", order)
			}
			var doc twiml
			if err := xml.Unmarshal([]byte(got), &doc); err != nil {
				t.Fatalf("TwiML is not valid XML: %v", err)
			}
			if strings.Join(doc.Says, "|") != strings.Join(tc.wantSays, "|") {
				t.Errorf("Say texts %q, want %q", doc.Says, tc.wantSays)
			}
			if len(doc.Pause) != 1 || doc.Pause[0].Length != "1" {
				t.Errorf("Pause %+v, want one of length 1", doc.Pause)
			}
		})
	}
}

// hangingServer never answers; its handlers end when the client gives up
// or the test ends.
func hangingServer(t *testing.T) *httptest.Server {
	stop := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
		case <-stop:
		case <-time.After(testTimeout):
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(stop) })
	return srv
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

func TestTwilioVoiceReadsDigitsTwice(t *testing.T) {
	for _, code := range []string{"123456", "000000", "90817263"} {
		t.Run(code, func(t *testing.T) {
			var doc twiml
			if err := xml.Unmarshal([]byte(VoiceTwiML(Message{Channel: ChannelVoice, Code: code})), &doc); err != nil {
				t.Fatal(err)
			}
			digits := strings.Join(strings.Split(code, ""), ", ")
			if len(doc.Says) != 2 {
				t.Fatalf("%d Say elements, want 2", len(doc.Says))
			}
			for i, say := range doc.Says {
				if !strings.HasSuffix(say, digits+".") {
					t.Errorf("Say %d = %q does not read %q", i, say, digits)
				}
				if strings.Contains(say, code) {
					t.Errorf("Say %d = %q contains the code as one number", i, say)
				}
			}
		})
	}
}

func TestTwilioFailures(t *testing.T) {
	_, srv := newFakeTwilio(t)
	hang := hangingServer(t)
	html := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadGateway)
		_, _ = io.WriteString(w, "<html><body>502 Bad Gateway\n(upstream)</body></html>")
	}))
	t.Cleanup(html.Close)
	// A proxy that echoes the request form back in its error page.
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		user, pass, _ := r.BasicAuth()
		w.WriteHeader(http.StatusForbidden)
		_, _ = fmt.Fprintf(w, "denied %s:%s %s", user, pass, b)
	}))
	t.Cleanup(echo.Close)
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()

	good := Twilio{AccountSID: testSID, AuthToken: testToken, From: testFrom, Endpoint: srv.URL}
	tests := []struct {
		name       string
		tw         Twilio
		msg        Message
		wantStatus int
		wantCode   int   // Twilio error code, 0 when none
		wantIs     error // errors.Is target, nil when none
		wantText   string
	}{
		{
			name:       "invalid To number",
			tw:         good,
			msg:        Message{Channel: ChannelSMS, To: "+1555", Body: "Your code is 123456", Code: "123456"},
			wantStatus: 400, wantCode: 21211,
			// The number is personal data: errors show it masked.
			wantText: "twilio error 21211: The 'To' number •••• is not a valid phone number.",
		},
		{
			name:       "wrong token",
			tw:         Twilio{AccountSID: testSID, AuthToken: "not-the-token-4711", From: testFrom, Endpoint: srv.URL},
			msg:        Message{Channel: ChannelVoice, To: "+15551234567", Code: "654321"},
			wantStatus: 401, wantCode: 20003, wantText: "Authenticate",
		},
		{
			name:       "non-JSON answer",
			tw:         Twilio{AccountSID: testSID, AuthToken: testToken, From: testFrom, Endpoint: html.URL},
			msg:        Message{Channel: ChannelSMS, To: "+15551234567", Body: "Your code is 123456", Code: "123456"},
			wantStatus: 502, wantText: "502 Bad Gateway (upstream)",
		},
		{
			name:       "answer echoing token and code is scrubbed",
			tw:         Twilio{AccountSID: testSID, AuthToken: testToken, From: testFrom, Endpoint: echo.URL},
			msg:        Message{Channel: ChannelSMS, To: "+15551234567", Body: "Your code is 123456", Code: "123456"},
			wantStatus: 403, wantText: "[redacted]",
		},
		{
			name:   "timeout",
			tw:     Twilio{AccountSID: testSID, AuthToken: testToken, From: testFrom, Endpoint: hang.URL, Timeout: 100 * time.Millisecond},
			msg:    Message{Channel: ChannelSMS, To: "+15551234567", Body: "Your code is 123456", Code: "123456"},
			wantIs: context.DeadlineExceeded,
		},
		{
			name: "connection refused",
			tw:   Twilio{AccountSID: testSID, AuthToken: testToken, From: testFrom, Endpoint: closedURL},
			msg:  Message{Channel: ChannelSMS, To: "+15551234567", Body: "Your code is 123456", Code: "123456"},
		},
		{
			name:   "email channel",
			tw:     good,
			msg:    Message{Channel: ChannelEmail, To: "alice@example.com", Body: "hi"},
			wantIs: ErrUnsupportedChannel,
		},
		{
			name:   "recipient not E.164",
			tw:     good,
			msg:    Message{Channel: ChannelSMS, To: "5551234567", Body: "hi"},
			wantIs: ErrInvalidRecipient,
		},
		{
			name:   "empty sms",
			tw:     good,
			msg:    Message{Channel: ChannelSMS, To: "+15551234567"},
			wantIs: ErrEmptyMessage,
		},
		{
			name:     "invalid config",
			tw:       Twilio{AccountSID: "SK123", AuthToken: testToken, From: testFrom, Endpoint: srv.URL},
			msg:      Message{Channel: ChannelSMS, To: "+15551234567", Body: "hi"},
			wantText: "account_sid",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			start := time.Now()
			err := tc.tw.Send(ctx, tc.msg)
			if time.Since(start) > testTimeout {
				t.Errorf("Send took %v", time.Since(start))
			}
			de := asDelivery(t, err)
			if de.Provider != "twilio" {
				t.Errorf("Provider = %q", de.Provider)
			}
			if de.Status != tc.wantStatus {
				t.Errorf("Status = %d, want %d", de.Status, tc.wantStatus)
			}
			var te *TwilioError
			if tc.wantCode != 0 {
				if !errors.As(err, &te) || te.Code != tc.wantCode {
					t.Errorf("Twilio error %+v, want code %d", te, tc.wantCode)
				}
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("error %v is not %v", err, tc.wantIs)
			}
			if !strings.Contains(err.Error(), tc.wantText) {
				t.Errorf("error %q does not contain %q", err, tc.wantText)
			}
			assertNoSecrets(t, err, testToken, "not-the-token-4711", tc.msg.Code, tc.msg.To)
			var te2 *TwilioError
			if errors.As(err, &te2) && te2.Code == 21211 && !strings.Contains(te2.Message, "+1555") {
				t.Errorf("the TwilioError itself keeps Twilio's message, got %q", te2.Message)
			}
		})
	}
}

func TestTwilioEndpointPrefix(t *testing.T) {
	fake := &fakeTwilio{t: t, sid: testSID, token: testToken}
	mux := http.NewServeMux()
	mux.Handle("/proxy/", http.StripPrefix("/proxy", fake))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	tw := &Twilio{AccountSID: testSID, AuthToken: testToken, From: testFrom, Endpoint: srv.URL + "/proxy/"}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := tw.Send(ctx, Message{Channel: ChannelSMS, To: "+15551234567", Body: "hi"}); err != nil {
		t.Fatal(err)
	}
	if r := fake.requests(); len(r) != 1 || r[0].Path != "/2010-04-01/Accounts/"+testSID+"/Messages.json" {
		t.Fatalf("requests %+v", r)
	}
}

func TestTwilioValidate(t *testing.T) {
	ok := Twilio{AccountSID: testSID, AuthToken: testToken, From: testFrom}
	tests := []struct {
		name    string
		mod     func(*Twilio)
		wantErr string
	}{
		{"valid, default endpoint", func(*Twilio) {}, ""},
		{"valid, https endpoint", func(t *Twilio) { t.Endpoint = "https://twilio-proxy.internal:8443/base" }, ""},
		{"valid, http endpoint", func(t *Twilio) { t.Endpoint = "http://127.0.0.1:9999" }, ""},
		{"SID wrong prefix", func(t *Twilio) { t.AccountSID = "SK" + testSID[2:] }, "account_sid"},
		{"SID too short", func(t *Twilio) { t.AccountSID = testSID[:33] }, "account_sid"},
		{"SID too long", func(t *Twilio) { t.AccountSID = testSID + "0" }, "account_sid"},
		{"SID not hex", func(t *Twilio) { t.AccountSID = "AC" + strings.Repeat("z", 32) }, "account_sid"},
		{"no token", func(t *Twilio) { t.AuthToken = "" }, "auth_token"},
		{"token with space", func(t *Twilio) { t.AuthToken = testToken + " " }, "auth_token"},
		{"from not E.164", func(t *Twilio) { t.From = "5550001111" }, "from"},
		{"from with spaces", func(t *Twilio) { t.From = "+1 555 000 1111" }, "from"},
		{"from leading zero", func(t *Twilio) { t.From = "+0555000111" }, "from"},
		{"from too long", func(t *Twilio) { t.From = "+1234567890123456" }, "from"},
		{"endpoint ftp", func(t *Twilio) { t.Endpoint = "ftp://api.twilio.com" }, "endpoint"},
		{"endpoint no host", func(t *Twilio) { t.Endpoint = "https://" }, "endpoint"},
		{"endpoint relative", func(t *Twilio) { t.Endpoint = "/api" }, "endpoint"},
		{"endpoint with query", func(t *Twilio) { t.Endpoint = "https://api.twilio.com/?x=1" }, "endpoint"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tw := ok
			tc.mod(&tw)
			err := tw.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Validate = %v, want an error about %s", err, tc.wantErr)
			}
			assertNoSecrets(t, err, tw.AuthToken)
		})
	}
}

func TestTwilioName(t *testing.T) {
	if n := (&Twilio{}).Name(); n != "twilio" {
		t.Errorf("Name = %q", n)
	}
	if n := (&Twilio{Label: "twilio-backup"}).Name(); n != "twilio-backup" {
		t.Errorf("Name = %q", n)
	}
}
