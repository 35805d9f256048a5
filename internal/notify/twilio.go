package notify

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// DefaultTwilioEndpoint is Twilio's public API base URL.
const DefaultTwilioEndpoint = "https://api.twilio.com"

// Twilio speaks Twilio's REST API (2010-04-01) as Twilio documents it. One
// value serves both sms (Messages resource) and voice (Calls resource with
// inline TwiML); it looks at Message.Channel.
//
// The zero Endpoint is [DefaultTwilioEndpoint]; it may point anywhere (a
// test server, an egress proxy) and may carry a path prefix. A nil Client
// uses a client that does not follow redirects; Timeout (default
// [DefaultHTTPTimeout]) bounds each request either way.
type Twilio struct {
	// AccountSID is the account ("AC" and 32 hex digits); it is the user
	// name of HTTP basic auth and part of the URL.
	AccountSID string
	// AuthToken is the account's auth token, the password of HTTP basic
	// auth. It never appears in errors.
	AuthToken string
	// From is the Twilio number that sends, in E.164 form.
	From string
	// Endpoint is the API base URL, default https://api.twilio.com.
	Endpoint string
	// Client is the HTTP client; nil for a default one.
	Client *http.Client
	// Timeout bounds each request; 0 means DefaultHTTPTimeout.
	Timeout time.Duration
	// Label overrides Name ("twilio"), to tell two accounts apart.
	Label string
}

// TwilioError is Twilio's JSON error answer, e.g.
// {"code":21211,"message":"The 'To' number … is not a valid phone number.",
// "more_info":"https://www.twilio.com/docs/errors/21211","status":400}.
// A failed Twilio delivery is a [*DeliveryError] wrapping it.
type TwilioError struct {
	// Code is Twilio's error code (https://www.twilio.com/docs/errors).
	Code int `json:"code"`
	// Message is Twilio's human-readable explanation.
	Message string `json:"message"`
	// MoreInfo links to Twilio's documentation of the code.
	MoreInfo string `json:"more_info"`
	// Status is the HTTP status Twilio answered with.
	Status int `json:"status"`
}

// Error reports Twilio's code and message.
func (e *TwilioError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("twilio error %d", e.Code)
	}
	return fmt.Sprintf("twilio error %d: %s", e.Code, e.Message)
}

// Name is Label, or "twilio".
func (t *Twilio) Name() string {
	if t.Label != "" {
		return t.Label
	}
	return "twilio"
}

// Validate checks the configuration: an account SID of "AC" and 32 hex
// digits, a non-empty auth token, an E.164 From number, and an http(s)
// endpoint with a host (when set). Messages name the Caddyfile option and
// never echo the token.
func (t *Twilio) Validate() error {
	if !validSID(t.AccountSID) {
		return errors.New("twilio: account_sid must be \"AC\" followed by 32 hexadecimal digits (34 characters)")
	}
	if t.AuthToken == "" {
		return errors.New("twilio: auth_token is required")
	}
	if strings.TrimSpace(t.AuthToken) != t.AuthToken {
		return errors.New("twilio: auth_token has leading or trailing white space")
	}
	if !IsE164(t.From) {
		return errors.New("twilio: from must be a phone number in E.164 form, like +15550001111")
	}
	if t.Endpoint != "" {
		u, err := validHTTPURL(t.Endpoint)
		if err != nil {
			return fmt.Errorf("twilio: endpoint %v", err)
		}
		if u.RawQuery != "" || u.User != nil {
			return errors.New("twilio: endpoint must not have a query or user information")
		}
	}
	return nil
}

func validSID(s string) bool {
	if len(s) != 34 || !strings.HasPrefix(s, "AC") {
		return false
	}
	for _, c := range s[2:] {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// Send creates a Message (sms) or a Call (voice) resource. Success is any
// 2xx answer (Twilio answers 201 Created); any other answer is a
// [*DeliveryError] with the HTTP status, wrapping a [*TwilioError] when
// Twilio explained itself.
func (t *Twilio) Send(ctx context.Context, m Message) error {
	name := t.Name()
	// A proxy's error page may echo the Authorization header: the base64 of
	// sid:token is the token.
	basic := base64.StdEncoding.EncodeToString([]byte(t.AccountSID + ":" + t.AuthToken))
	hide := hider(m.To, m.Code, t.AuthToken, basic)
	if err := t.Validate(); err != nil {
		return failure(name, 0, err, hide)
	}
	if m.Channel != ChannelSMS && m.Channel != ChannelVoice {
		return failure(name, 0, fmt.Errorf("%w: %q", ErrUnsupportedChannel, m.Channel), nil)
	}
	if !IsE164(m.To) {
		return failure(name, 0, fmt.Errorf("%w: not an E.164 phone number", ErrInvalidRecipient), nil)
	}
	form := url.Values{"To": {m.To}, "From": {t.From}}
	resource := "Messages.json"
	switch m.Channel {
	case ChannelSMS:
		if m.Body == "" {
			return failure(name, 0, ErrEmptyMessage, nil)
		}
		form.Set("Body", m.Body)
	case ChannelVoice:
		if m.Body == "" && m.Code == "" {
			return failure(name, 0, ErrEmptyMessage, nil)
		}
		resource = "Calls.json"
		form.Set("Twiml", VoiceTwiML(m))
	}

	endpoint := t.Endpoint
	if endpoint == "" {
		endpoint = DefaultTwilioEndpoint
	}
	target := strings.TrimRight(endpoint, "/") + "/2010-04-01/Accounts/" + url.PathEscape(t.AccountSID) + "/" + resource
	req, err := http.NewRequest(http.MethodPost, target, strings.NewReader(form.Encode()))
	if err != nil {
		return failure(name, 0, errors.New("cannot build request"), nil)
	}
	req.SetBasicAuth(t.AccountSID, t.AuthToken)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", userAgent)

	status, body, err := post(ctx, t.Client, t.Timeout, req)
	if err != nil {
		return failure(name, status, err, hide)
	}
	if status/100 == 2 {
		if err := createdResource(body, m.Channel, hide); err != nil {
			return failure(name, status, err, hide)
		}
		return nil
	}
	var te TwilioError
	if json.Unmarshal(body, &te) == nil && (te.Code != 0 || te.Message != "") {
		if te.Status == 0 {
			te.Status = status
		}
		return failure(name, status, &te, hide)
	}
	if s := quote(body, hide); s != "" {
		return failure(name, status, fmt.Errorf("unexpected answer: %s", s), hide)
	}
	return failure(name, status, errors.New("unexpected answer"), nil)
}

// twilioResource is what Send reads of the Message or Call Twilio creates.
type twilioResource struct {
	SID          string  `json:"sid"`
	Status       string  `json:"status"`
	ErrorCode    *int    `json:"error_code"`
	ErrorMessage *string `json:"error_message"`
}

// createdResource checks that a 2xx answer is what Twilio answers when it
// takes a message: a JSON object, the Message (sid "SM…", or "MM…") or Call
// ("CA…"), that has not already failed. A wrong endpoint, an egress proxy's
// block page or a captive portal may answer 200 too; taking that for a sent
// code would tell the user one is coming and skip the fallback provider. An
// object without a sid is taken (a gateway in Twilio's place may answer
// less than Twilio does); one naming another kind of resource is not.
func createdResource(body []byte, ch Channel, hide *scrubber) error {
	var res *twilioResource
	if err := json.Unmarshal(body, &res); err != nil || res == nil || (res.SID != "" && !resourceSID(res.SID, ch)) {
		if s := quote(body, hide); s != "" {
			return fmt.Errorf("answer is not a Twilio %s resource: %s", ch, s)
		}
		return fmt.Errorf("answer is not a Twilio %s resource", ch)
	}
	switch {
	case res.ErrorCode != nil && *res.ErrorCode != 0:
		te := &TwilioError{Code: *res.ErrorCode}
		if res.ErrorMessage != nil {
			te.Message = *res.ErrorMessage
		}
		return te
	case res.Status == "failed" || res.Status == "canceled" || res.Status == "undelivered":
		return fmt.Errorf("twilio reports the %s %s", ch, res.Status)
	}
	return nil
}

// resourceSID reports whether sid names a resource of the kind Send creates
// for ch (Twilio's two-letter prefixes).
func resourceSID(sid string, ch Channel) bool {
	switch {
	case ch == ChannelVoice:
		return strings.HasPrefix(sid, "CA")
	case ch == ChannelSMS:
		return strings.HasPrefix(sid, "SM") || strings.HasPrefix(sid, "MM")
	}
	return false
}

// VoiceTwiML is the TwiML a voice call runs: the code's digits one by one,
// a pause, and the digits again:
//
//	<Response><Say>Your code is 1, 2, 3, 4, 5, 6.</Say><Pause length="1"/><Say>Again: 1, 2, 3, 4, 5, 6.</Say></Response>
//
// Without a Code, it says Body twice the same way. Everything put in it is
// XML-escaped.
func VoiceTwiML(m Message) string {
	first, again := m.Body, "Again: "+m.Body
	if strings.TrimSpace(m.Code) != "" {
		digits := spell(m.Code, ", ")
		first = SpokenCode(m.Code)
		again = "Again: " + digits + "."
	}
	var b bytes.Buffer
	b.WriteString("<Response><Say>")
	_ = xml.EscapeText(&b, []byte(first))
	b.WriteString(`</Say><Pause length="1"/><Say>`)
	_ = xml.EscapeText(&b, []byte(again))
	b.WriteString("</Say></Response>")
	return b.String()
}

// userAgent is sent with every HTTP request.
const userAgent = "twostep-notify"
