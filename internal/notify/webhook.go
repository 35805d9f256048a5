package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// SignatureHeader is the header that carries a webhook's signature.
const SignatureHeader = "X-Twostep-Signature"

// signaturePrefix starts every signature value.
const signaturePrefix = "sha256="

// Webhook POSTs sms and voice messages as JSON to URL, for SMS and voice
// gateways of the operator's own:
//
//	{"channel":"sms","to":"+15551234567","body":"Your code is 123456","code":"123456","user":"alice"}
//
// For voice, body is the text to read aloud with the digits separated:
// "Your code is 1 2 3 4 5 6." All five fields are always present (empty
// strings when a message has no code or user). The request carries
// Content-Type application/json and X-Twostep-Signature:
// sha256=<hex HMAC-SHA256 of the raw body keyed with Secret>; receivers check
// it with [VerifySignature]. Any answer other than 2xx is a failed delivery.
//
// A nil Client uses a client that does not follow redirects; Timeout
// (default [DefaultHTTPTimeout]) bounds each request either way.
type Webhook struct {
	// URL is where messages are posted (http or https).
	URL string
	// Secret keys the signature. It is never sent and never appears in errors.
	Secret string
	// Client is the HTTP client; nil for a default one.
	Client *http.Client
	// Timeout bounds each request; 0 means DefaultHTTPTimeout (10 s).
	Timeout time.Duration
	// Label overrides Name ("webhook"), to tell two webhooks apart.
	Label string
}

// webhookPayload is the JSON body; the field order is the documented one.
type webhookPayload struct {
	Channel Channel `json:"channel"`
	To      string  `json:"to"`
	Body    string  `json:"body"`
	Code    string  `json:"code"`
	User    string  `json:"user"`
}

// Name is Label, or "webhook".
func (w *Webhook) Name() string {
	if w.Label != "" {
		return w.Label
	}
	return "webhook"
}

// Validate checks that URL is an absolute http(s) URL with a host and that
// Secret is set.
func (w *Webhook) Validate() error {
	if _, err := validHTTPURL(w.URL); err != nil {
		return fmt.Errorf("webhook: URL %v", err)
	}
	if w.Secret == "" {
		return errors.New("webhook: secret is required")
	}
	return nil
}

// Send posts m. Only the sms and voice channels are served.
func (w *Webhook) Send(ctx context.Context, m Message) error {
	name := w.Name()
	hide := hider(m.To, m.Code, w.Secret)
	if err := w.Validate(); err != nil {
		return failure(name, 0, err, hide)
	}
	if m.Channel != ChannelSMS && m.Channel != ChannelVoice {
		return failure(name, 0, fmt.Errorf("%w: %q", ErrUnsupportedChannel, m.Channel), nil)
	}
	if !IsE164(m.To) {
		return failure(name, 0, fmt.Errorf("%w: not an E.164 phone number", ErrInvalidRecipient), nil)
	}
	body, err := WebhookBody(m)
	if err != nil {
		return failure(name, 0, err, hide)
	}
	req, err := http.NewRequest(http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return failure(name, 0, errors.New("cannot build request"), nil)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", userAgent)
	req.Header.Set(SignatureHeader, Signature(w.Secret, body))

	status, answer, err := post(ctx, w.Client, w.Timeout, req)
	if err != nil {
		return failure(name, status, err, hide)
	}
	if status/100 == 2 {
		return nil
	}
	if s := quote(answer, hide); s != "" {
		return failure(name, status, fmt.Errorf("receiver refused the message: %s", s), hide)
	}
	return failure(name, status, errors.New("receiver refused the message"), nil)
}

// WebhookBody is the JSON a [Webhook] posts for m (without a trailing
// newline). For voice with a Code, body is "Your code is 1 2 3 4 5 6.".
func WebhookBody(m Message) ([]byte, error) {
	p := webhookPayload{Channel: m.Channel, To: m.To, Body: m.Body, Code: m.Code, User: m.User}
	if strings.TrimSpace(m.Code) != "" {
		switch {
		case m.Channel == ChannelVoice:
			p.Body = "Your code is " + spell(m.Code, " ") + "."
		case p.Body == "":
			p.Body = "Your code is " + m.Code
		}
	}
	if p.Body == "" {
		return nil, ErrEmptyMessage
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(p); err != nil {
		return nil, errors.New("cannot encode message")
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// Signature is the X-Twostep-Signature value for body: "sha256=" and the
// lower-case hex HMAC-SHA256 of body keyed with secret.
func Signature(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return signaturePrefix + hex.EncodeToString(mac.Sum(nil))
}

// VerifySignature reports whether header is a valid X-Twostep-Signature of
// body for secret, comparing in constant time. It is for receivers (and
// tests). An empty secret verifies nothing.
func VerifySignature(secret string, body []byte, header string) bool {
	if secret == "" {
		return false
	}
	hexMAC, ok := strings.CutPrefix(strings.TrimSpace(header), signaturePrefix)
	if !ok {
		return false
	}
	got, err := hex.DecodeString(hexMAC)
	if err != nil || len(got) != sha256.Size {
		return false
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return hmac.Equal(got, mac.Sum(nil))
}
