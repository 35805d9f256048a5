package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

const testWebhookSecret = "whsec_5b1f0e9a7c3d2e4f6a8b0c1d2e3f4a5b"

// received is one request a webhook receiver got.
type received struct {
	Body        []byte
	ContentType string
	Signature   string
	Verified    bool
}

// receiver is an SMS gateway that checks the signature like a real one.
type receiver struct {
	secret string
	status int

	mu   sync.Mutex
	reqs []received
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rec := received{
		Body:        body,
		ContentType: r.Header.Get("Content-Type"),
		Signature:   r.Header.Get("X-Twostep-Signature"),
	}
	rec.Verified = r.Method == http.MethodPost && VerifySignature(rc.secret, body, rec.Signature)
	rc.mu.Lock()
	rc.reqs = append(rc.reqs, rec)
	rc.mu.Unlock()
	switch {
	case rc.status != 0:
		w.WriteHeader(rc.status)
		// A careless gateway that echoes what it got.
		_, _ = w.Write(body)
	case !rec.Verified:
		http.Error(w, "bad signature", http.StatusUnauthorized)
	default:
		w.WriteHeader(http.StatusAccepted)
	}
}

func (rc *receiver) count() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.reqs)
}

func (rc *receiver) last(t *testing.T) received {
	t.Helper()
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.reqs) == 0 {
		t.Fatal("receiver got no request")
	}
	return rc.reqs[len(rc.reqs)-1]
}

func newReceiver(t *testing.T, status int) (*receiver, *httptest.Server) {
	rc := &receiver{secret: testWebhookSecret, status: status}
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	return rc, srv
}

func TestWebhookSend(t *testing.T) {
	rc, srv := newReceiver(t, 0)
	wh := &Webhook{URL: srv.URL + "/sms/send", Secret: testWebhookSecret}
	tests := []struct {
		name    string
		msg     Message
		want    map[string]string
		rawWant string
	}{
		{
			name:    "sms",
			msg:     Message{Channel: ChannelSMS, To: "+15551234567", User: "alice", Body: "Your code is 123456", Code: "123456"},
			want:    map[string]string{"channel": "sms", "to": "+15551234567", "body": "Your code is 123456", "code": "123456", "user": "alice"},
			rawWant: `{"channel":"sms","to":"+15551234567","body":"Your code is 123456","code":"123456","user":"alice"}`,
		},
		{
			name:    "voice separates the digits",
			msg:     Message{Channel: ChannelVoice, To: "+15551234567", User: "alice", Body: "Your code is 123456", Code: "123456"},
			want:    map[string]string{"channel": "voice", "to": "+15551234567", "body": "Your code is 1 2 3 4 5 6.", "code": "123456", "user": "alice"},
			rawWant: `{"channel":"voice","to":"+15551234567","body":"Your code is 1 2 3 4 5 6.","code":"123456","user":"alice"}`,
		},
		{
			name: "notice without code",
			msg:  Message{Channel: ChannelSMS, To: "+447700900123", User: "bob", Body: "Your phone number was changed. Not you? Visit <https://x.example/help> & act."},
			want: map[string]string{"channel": "sms", "to": "+447700900123", "body": "Your phone number was changed. Not you? Visit <https://x.example/help> & act.", "code": "", "user": "bob"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			if err := wh.Send(ctx, tc.msg); err != nil {
				t.Fatalf("Send: %v", err)
			}
			got := rc.last(t)
			if !got.Verified {
				t.Errorf("signature %q does not verify", got.Signature)
			}
			if !strings.HasPrefix(got.Signature, "sha256=") || len(got.Signature) != len("sha256=")+64 {
				t.Errorf("signature %q is not sha256=<64 hex>", got.Signature)
			}
			if got.ContentType != "application/json" {
				t.Errorf("Content-Type %q", got.ContentType)
			}
			var fields map[string]any
			if err := json.Unmarshal(got.Body, &fields); err != nil {
				t.Fatalf("body %s: %v", got.Body, err)
			}
			if len(fields) != len(tc.want) {
				t.Errorf("fields %v, want %v", fields, tc.want)
			}
			for k, v := range tc.want {
				if fields[k] != v {
					t.Errorf("%s = %#v, want %q", k, fields[k], v)
				}
			}
			if tc.rawWant != "" && string(got.Body) != tc.rawWant {
				t.Errorf("body\n %s\nwant\n %s", got.Body, tc.rawWant)
			}
		})
	}
}

func TestWebhookFailures(t *testing.T) {
	_, failing := newReceiver(t, http.StatusInternalServerError)
	_, gone := newReceiver(t, http.StatusNotFound)
	// A receiver with another secret refuses our signature with 401.
	other := &receiver{secret: "some-other-secret"}
	otherSrv := httptest.NewServer(other)
	t.Cleanup(otherSrv.Close)
	redirect := httptest.NewServer(http.RedirectHandler("http://127.0.0.1:1/elsewhere", http.StatusTemporaryRedirect))
	t.Cleanup(redirect.Close)
	hang := hangingServer(t)

	msg := Message{Channel: ChannelSMS, To: "+15551234567", User: "alice", Body: "Your code is 987123", Code: "987123"}
	tests := []struct {
		name       string
		wh         Webhook
		msg        Message
		wantStatus int
		wantIs     error
	}{
		// The failing receiver echoes the request, code included.
		{"500", Webhook{URL: failing.URL, Secret: testWebhookSecret}, msg, 500, nil},
		{"404", Webhook{URL: gone.URL, Secret: testWebhookSecret}, msg, 404, nil},
		{"wrong secret", Webhook{URL: otherSrv.URL, Secret: testWebhookSecret}, msg, 401, nil},
		{"redirect is not followed", Webhook{URL: redirect.URL, Secret: testWebhookSecret}, msg, 307, nil},
		{"timeout", Webhook{URL: hang.URL, Secret: testWebhookSecret, Timeout: 100 * time.Millisecond}, msg, 0, context.DeadlineExceeded},
		{"email channel", Webhook{URL: failing.URL, Secret: testWebhookSecret}, Message{Channel: ChannelEmail, To: "a@example.com", Body: "x"}, 0, ErrUnsupportedChannel},
		{"bad recipient", Webhook{URL: failing.URL, Secret: testWebhookSecret}, Message{Channel: ChannelSMS, To: "alice", Body: "x"}, 0, ErrInvalidRecipient},
		{"empty message", Webhook{URL: failing.URL, Secret: testWebhookSecret}, Message{Channel: ChannelSMS, To: "+15551234567"}, 0, ErrEmptyMessage},
		{"no secret", Webhook{URL: failing.URL}, msg, 0, nil},
		{"token in URL query", Webhook{URL: hang.URL + "/?token=url-token-31337", Secret: testWebhookSecret, Timeout: 50 * time.Millisecond}, msg, 0, context.DeadlineExceeded},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			err := tc.wh.Send(ctx, tc.msg)
			de := asDelivery(t, err)
			if de.Provider != "webhook" || de.Status != tc.wantStatus {
				t.Errorf("Provider %q Status %d, want webhook %d (%v)", de.Provider, de.Status, tc.wantStatus, err)
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("error %v is not %v", err, tc.wantIs)
			}
			if tc.wantStatus == 500 && !strings.Contains(err.Error(), `"to":"•••• 4567","body":"Your code is [redacted]"`) {
				t.Errorf("error %q does not show the scrubbed answer", err)
			}
			assertNoSecrets(t, err, testWebhookSecret, tc.msg.Code, "url-token-31337", tc.msg.To)
		})
	}
}

func TestVerifySignature(t *testing.T) {
	body, err := WebhookBody(Message{Channel: ChannelSMS, To: "+15551234567", User: "alice", Body: "Your code is 123456", Code: "123456"})
	if err != nil {
		t.Fatal(err)
	}
	sig := Signature(testWebhookSecret, body)
	tampered := bytes.Replace(body, []byte("123456"), []byte("123457"), 1)
	tests := []struct {
		name   string
		secret string
		body   []byte
		header string
		want   bool
	}{
		{"valid", testWebhookSecret, body, sig, true},
		{"upper-case hex", testWebhookSecret, body, "sha256=" + strings.ToUpper(strings.TrimPrefix(sig, "sha256=")), true},
		{"tampered body", testWebhookSecret, tampered, sig, false},
		{"body with trailing newline", testWebhookSecret, append(append([]byte{}, body...), '\n'), sig, false},
		{"wrong secret", "another secret", body, sig, false},
		{"empty secret", "", body, Signature("", body), false},
		{"no prefix", testWebhookSecret, body, strings.TrimPrefix(sig, "sha256="), false},
		{"sha1 prefix", testWebhookSecret, body, "sha1=" + strings.TrimPrefix(sig, "sha256="), false},
		{"not hex", testWebhookSecret, body, "sha256=zz" + sig[9:], false},
		{"truncated", testWebhookSecret, body, sig[:len(sig)-2], false},
		{"empty header", testWebhookSecret, body, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := VerifySignature(tc.secret, tc.body, tc.header); got != tc.want {
				t.Errorf("VerifySignature = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestWebhookValidate(t *testing.T) {
	tests := []struct {
		name string
		wh   Webhook
		ok   bool
	}{
		{"https", Webhook{URL: "https://sms.internal/send", Secret: testWebhookSecret}, true},
		{"http with port", Webhook{URL: "http://127.0.0.1:8080/send?queue=otp", Secret: testWebhookSecret}, true},
		{"no URL", Webhook{Secret: testWebhookSecret}, false},
		{"relative", Webhook{URL: "/send", Secret: testWebhookSecret}, false},
		{"ftp", Webhook{URL: "ftp://sms.internal/send", Secret: testWebhookSecret}, false},
		{"no host", Webhook{URL: "https:///send", Secret: testWebhookSecret}, false},
		{"fragment", Webhook{URL: "https://sms.internal/send#x", Secret: testWebhookSecret}, false},
		{"no secret", Webhook{URL: "https://sms.internal/send"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.wh.Validate()
			if (err == nil) != tc.ok {
				t.Fatalf("Validate = %v, want ok=%v", err, tc.ok)
			}
			if err != nil {
				assertNoSecrets(t, err, tc.wh.Secret)
			}
		})
	}
}
