// Package notify delivers twostep's messages: one-time codes by SMS, voice
// call and email, and the account notices that go with them (recovery
// decisions, new trusted devices, changed phone numbers and so on).
//
// Every provider implements [Sender]: [Twilio] (SMS and voice over Twilio's
// REST API), [Webhook] (a signed JSON POST for SMS and voice gateways of the
// operator's own) and [SMTP] (email). [Fallback] tries several providers of
// one channel in order; [Outbox] is the developer outbox behind the
// dev_outbox option, and [Tee] copies what a real provider is asked to send
// into it.
//
// Every failure is a [*DeliveryError] naming the provider. Error texts never
// contain credentials (auth tokens, webhook secrets, SMTP passwords) nor the
// one-time code a message carries, so they are safe to log and to count.
package notify

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Channel is the way a message travels.
type Channel string

// The channels twostep delivers on.
const (
	// ChannelSMS is a text message to a phone number.
	ChannelSMS Channel = "sms"
	// ChannelVoice is a phone call that reads the message aloud.
	ChannelVoice Channel = "voice"
	// ChannelEmail is an email message.
	ChannelEmail Channel = "email"
)

// Message is one thing to deliver. Code is set for code messages (the
// webhook carries it; it is never logged and never appears in an error).
type Message struct {
	// Channel says how the message travels; a Sender refuses channels it
	// does not serve.
	Channel Channel
	// To is the recipient: an E.164 phone number ("+15551234567") for sms
	// and voice, an email address for email.
	To string
	// User is the twostep user name the message is for (informational;
	// the webhook passes it on).
	User string
	// Subject is the email subject line (email only).
	Subject string
	// Body is the text of the message; for voice, the text to read aloud
	// when Code is empty.
	Body string
	// Code is the one-time code the body contains, if any. Voice calls read
	// its digits one by one when it is set.
	Code string
}

// Sender delivers messages through one provider (or, for [Fallback] and
// [Tee], a combination of them). Implementations are safe for concurrent use.
type Sender interface {
	// Send delivers m or returns an error, a [*DeliveryError] for the
	// providers of this package. It returns when the provider has accepted
	// the message, has refused it, or ctx is done.
	Send(ctx context.Context, m Message) error
	// Name is a short, stable name of the provider ("twilio", "webhook",
	// "smtp", …) for logs, errors and metrics.
	Name() string
}

// Sentinel errors wrapped by [DeliveryError] when a message is refused
// before anything is sent.
var (
	// ErrUnsupportedChannel: the provider does not serve the message's channel.
	ErrUnsupportedChannel = errors.New("channel not supported by this provider")
	// ErrInvalidRecipient: the recipient is not an E.164 phone number (sms,
	// voice) or an email address (email).
	ErrInvalidRecipient = errors.New("invalid recipient")
	// ErrEmptyMessage: the message has neither a body nor a code.
	ErrEmptyMessage = errors.New("empty message")
)

// DeliveryError wraps every failure of a provider with the provider's name.
// Its text never includes credentials or the one-time code.
type DeliveryError struct {
	// Provider is the Name of the Sender that failed.
	Provider string
	// Err is the cause.
	Err error
	// Status is the provider's answer when there was one: the HTTP status
	// for Twilio and webhooks, the SMTP reply code for email; 0 when the
	// provider never answered (network error, timeout, refused locally).
	Status int
}

// Error reports the provider, the status if any, and the cause.
func (e *DeliveryError) Error() string {
	var b strings.Builder
	b.WriteString("notify: ")
	if e.Provider != "" {
		b.WriteString(e.Provider)
	} else {
		b.WriteString("provider")
	}
	b.WriteString(": delivery failed")
	if e.Status != 0 {
		fmt.Fprintf(&b, " (status %d)", e.Status)
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the cause.
func (e *DeliveryError) Unwrap() error { return e.Err }

// redactedError replaces the text of an error with a scrubbed copy while
// keeping the chain for errors.Is and errors.As.
type redactedError struct {
	msg string
	err error
}

func (r *redactedError) Error() string { return r.msg }
func (r *redactedError) Unwrap() error { return r.err }

const redactedMark = "[redacted]"

// scrubber hides secrets in the texts of errors and in the provider answers
// they quote.
type scrubber struct {
	r *strings.Replacer
	// code matches the one-time code with anything but letters and digits
	// (or %XX escapes) between its characters: an echoed answer may carry it
	// as twostep wrote it for a voice call ("9 8 7 1 2 3", "9, 8, 7…") or
	// URL-encoded in a TwiML form ("9%2C+8%2C+7…").
	code *regexp.Regexp
}

// minSpelledCode is the shortest code looked for with separators; a shorter
// one would blank out unrelated numbers of an error text.
const minSpelledCode = 4

// codeSeparator is what may stand between two characters of an echoed code.
const codeSeparator = `(?:[^0-9A-Za-z]|%[0-9A-Fa-f]{2}){0,8}`

// hider builds the scrubber of error texts: the code and every non-empty
// secret become "[redacted]", also with separators between the code's
// characters, and the recipient's phone number (with or without its "+")
// becomes its masked form, "•••• 4567", as the portal shows it. Phone
// numbers are personal data the store keeps encrypted; logs get no more than
// the last digits.
func hider(phone, code string, secrets ...string) *scrubber {
	var pairs []string
	for _, sec := range append([]string{code}, secrets...) {
		if sec != "" {
			pairs = append(pairs, sec, redactedMark)
		}
	}
	if phone != "" {
		masked := MaskPhone(phone)
		pairs = append(pairs, phone, masked)
		if digits := strings.TrimPrefix(phone, "+"); digits != phone && digits != "" {
			pairs = append(pairs, digits, masked)
		}
	}
	h := &scrubber{}
	if len(pairs) > 0 {
		h.r = strings.NewReplacer(pairs...)
	}
	if chars := []rune(spell(code, "")); len(chars) >= minSpelledCode {
		parts := make([]string, len(chars))
		for i, c := range chars {
			parts[i] = regexp.QuoteMeta(string(c))
		}
		h.code = regexp.MustCompile(strings.Join(parts, codeSeparator))
	}
	if h.r == nil && h.code == nil {
		return nil
	}
	return h
}

// Replace returns text with everything h hides hidden; a nil h changes
// nothing.
func (h *scrubber) Replace(text string) string {
	if h == nil {
		return text
	}
	if h.r != nil {
		text = h.r.Replace(text)
	}
	if h.code != nil {
		text = h.code.ReplaceAllLiteralString(text, redactedMark)
	}
	return text
}

// quote is the start of a provider's answer for an error text: scrubbed
// first, then cut, so that the cut cannot leave part of a secret behind.
func quote(answer []byte, h *scrubber) string {
	return snippet([]byte(h.Replace(string(answer))), 200)
}

// MaskPhone hides all but the last four digits of a phone number:
// "+15551234567" → "•••• 4567". Numbers of six digits or fewer are hidden
// entirely ("••••").
func MaskPhone(phone string) string {
	digits := strings.TrimPrefix(phone, "+")
	if len(digits) <= 6 {
		return "••••"
	}
	return "•••• " + digits[len(digits)-4:]
}

// redact returns err unchanged when h changes nothing in its text, and a
// wrapper with the scrubbed text (and the same chain) otherwise.
func redact(err error, h *scrubber) error {
	if err == nil || h == nil {
		return err
	}
	msg := err.Error()
	clean := h.Replace(msg)
	if clean == msg {
		return err
	}
	return &redactedError{msg: clean, err: err}
}

// failure builds the DeliveryError of a provider, scrubbing the cause's text
// with h (nil when the cause cannot contain anything to hide).
func failure(provider string, status int, err error, h *scrubber) *DeliveryError {
	return &DeliveryError{Provider: provider, Status: status, Err: redact(stripURL(err), h)}
}

// stripURL drops the *url.Error layer net/http adds, whose text repeats the
// request URL (a webhook URL may carry a token in its query). The cause
// (dial error, timeout, context error) is kept.
func stripURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) && ue.Err != nil {
		return fmt.Errorf("%s request: %w", strings.ToUpper(ue.Op), ue.Err)
	}
	return err
}

var e164 = regexp.MustCompile(`^\+[1-9][0-9]{1,14}$`)

// IsE164 reports whether s is a phone number in E.164 form: a plus sign, a
// country code that does not start with 0, and at most 15 digits in all.
func IsE164(s string) bool { return e164.MatchString(s) }

// snippet returns at most n bytes of a provider's answer on one line, for
// error texts. Control characters become spaces.
func snippet(b []byte, n int) string {
	if len(b) > n {
		b = b[:n]
		for len(b) > 0 && !utf8.Valid(b) {
			b = b[:len(b)-1]
		}
	}
	s := strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == utf8.RuneError {
			return ' '
		}
		return r
	}, string(b))
	return strings.Join(strings.Fields(s), " ")
}
