package notify

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// Provider answers end up in error texts, and those are logged (Fallback's
// Logger, the account service). A receiver or proxy that echoes the request
// must not put a live code in the logs in any of the forms twostep itself
// writes it (digits spelled out for voice, URL-encoded TwiML), nor part of
// it where the snippet is cut, nor the Twilio credentials as the
// Authorization header carries them.
func TestEchoedAnswersNeverLeakCodeOrCredentials(t *testing.T) {
	const code = "987123"
	// Echoes the body it got, like a careless gateway.
	echoBody := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write(b)
	}))
	t.Cleanup(echoBody.Close)
	// Echoes the request headers, like a debugging proxy's error page.
	echoHeaders := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusForbidden)
		_, _ = fmt.Fprintf(w, "blocked: Authorization: %s", r.Header.Get("Authorization"))
	}))
	t.Cleanup(echoHeaders.Close)

	// A body long enough that the code straddles the 200-byte snippet.
	straddle := func() Message {
		m := Message{Channel: ChannelSMS, To: "+15551234567", Code: code}
		prefix, _ := WebhookBody(Message{Channel: ChannelSMS, To: m.To, Body: "x"})
		pad := 195 - (strings.Index(string(prefix), `"body":"x`) + len(`"body":"`))
		m.Body = strings.Repeat("x", pad) + code + " is your code."
		return m
	}()
	creds := base64.StdEncoding.EncodeToString([]byte(testSID + ":" + testToken))

	tests := []struct {
		name   string
		sender Sender
		msg    Message
		echoed string // shows that the echo reached the error text
	}{
		{"webhook voice", &Webhook{URL: echoBody.URL, Secret: testWebhookSecret},
			Message{Channel: ChannelVoice, To: "+15551234567", Body: SpokenCode(code), Code: code}, `"body":"Your code is`},
		{"twilio voice through an echoing proxy", &Twilio{AccountSID: testSID, AuthToken: testToken, From: testFrom, Endpoint: echoBody.URL},
			Message{Channel: ChannelVoice, To: "+15551234567", Code: code}, "Twiml=%3CResponse%3E%3CSay%3EYour+code+is+"},
		{"webhook code cut by the snippet", &Webhook{URL: echoBody.URL, Secret: testWebhookSecret}, straddle, strings.Repeat("x", 100)},
		{"twilio credentials echoed as a header", &Twilio{AccountSID: testSID, AuthToken: testToken, From: testFrom, Endpoint: echoHeaders.URL},
			Message{Channel: ChannelSMS, To: "+15551234567", Body: "Your code is " + code, Code: code}, "Authorization: Basic"},
	}
	leaks := []string{code, code[:5], spell(code, " "), spell(code, ", "), spell(code, "%2C+"), spell(code, "+"), testToken, creds, creds[:len(creds)-8]}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			err := (&Fallback{Senders: []Sender{tc.sender}}).Send(ctx, tc.msg)
			if err == nil {
				t.Fatal("an echo answering 4xx was taken for a delivery")
			}
			assertNoSecrets(t, err, leaks...)
			if !strings.Contains(err.Error(), tc.echoed) {
				t.Errorf("error %q does not quote the echo; the test exercises nothing", err)
			}
		})
	}
}

// A 2xx from the configured endpoint is not proof that Twilio took the
// message: a wrong endpoint, an egress proxy's block page or a captive
// portal can answer 200. Counting it as sent tells the user a code is on its
// way and skips the fallback provider.
func TestTwilioSuccessNeedsTheCreatedResource(t *testing.T) {
	answers := []struct {
		name        string
		status      int
		contentType string
		body        string
	}{
		{"200 HTML page", 200, "text/html", "<html><body>Access to this site is blocked by policy.</body></html>"},
		{"200 empty", 200, "", ""},
		{"201 a list", 201, "application/json", `[{"sid":"SM0123456789abcdef0123456789abcdef"}]`},
		{"201 another resource", 201, "application/json", `{"sid":"PN0123456789abcdef0123456789abcdef","status":"queued"}`},
		{"201 failed message", 201, "application/json", `{"sid":"SM0123456789abcdef0123456789abcdef","status":"failed","error_code":30003,"error_message":"Unreachable destination handset"}`},
		{"201 JSON null", 201, "application/json", "null"},
	}
	for _, a := range answers {
		t.Run(a.name, func(t *testing.T) {
			bogus := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if a.contentType != "" {
					w.Header().Set("Content-Type", a.contentType)
				}
				w.WriteHeader(a.status)
				_, _ = io.WriteString(w, a.body)
			}))
			t.Cleanup(bogus.Close)
			fake, real := newFakeTwilio(t)
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			first := &Twilio{AccountSID: testSID, AuthToken: testToken, From: testFrom, Endpoint: bogus.URL, Label: "bogus"}
			msg := Message{Channel: ChannelSMS, To: "+15551234567", Body: "Your code is 424242", Code: "424242"}
			err := first.Send(ctx, msg)
			if err == nil {
				t.Fatalf("a %d answer %q was taken for a sent message", a.status, a.body)
			}
			if de := asDelivery(t, err); de.Status != a.status {
				t.Errorf("Status = %d, want %d", de.Status, a.status)
			}
			assertNoSecrets(t, err, testToken, msg.Code, msg.To)
			fb := &Fallback{Senders: []Sender{first, &Twilio{AccountSID: testSID, AuthToken: testToken, From: testFrom, Endpoint: real.URL}}}
			by, err := fb.Deliver(ctx, msg)
			if err != nil || by != "twilio" || len(fake.requests()) != 1 {
				t.Errorf("fallback: delivered by %q, %v; the real Twilio got %d requests", by, err, len(fake.requests()))
			}
		})
	}
	// Twilio's own answers still count: a queued Message and a queued Call;
	// so does a gateway in Twilio's place that answers a bare object.
	for _, body := range []string{`{}`, `{"status":"queued"}`, `{"sid":"SM1"}`} {
		ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusCreated)
			_, _ = io.WriteString(w, body)
		}))
		gw := &Twilio{AccountSID: testSID, AuthToken: testToken, From: testFrom, Endpoint: ok.URL}
		if err := gw.Send(context.Background(), Message{Channel: ChannelSMS, To: "+15551234567", Body: "Your code is 424242", Code: "424242"}); err != nil {
			t.Errorf("201 %s: %v, want sent", body, err)
		}
		ok.Close()
	}
	fake, real := newFakeTwilio(t)
	tw := &Twilio{AccountSID: testSID, AuthToken: testToken, From: testFrom, Endpoint: real.URL}
	for _, m := range []Message{
		{Channel: ChannelSMS, To: "+15551234567", Body: "Your code is 424242", Code: "424242"},
		{Channel: ChannelVoice, To: "+15551234567", Code: "424242"},
	} {
		if err := tw.Send(context.Background(), m); err != nil {
			t.Errorf("%s: %v", m.Channel, err)
		}
	}
	if n := len(fake.requests()); n != 2 {
		t.Errorf("fake Twilio got %d requests", n)
	}
}
