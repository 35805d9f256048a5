package notify

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"net/textproto"
	"strconv"
	"strings"
	"time"

	gomail "github.com/wneessen/go-mail"
)

// The TLS modes of [SMTP].
const (
	// SMTPStartTLS connects in plain text and requires STARTTLS before
	// anything else; a server that does not offer it is a failed delivery
	// (never a silent downgrade). Default port 587.
	SMTPStartTLS = "starttls"
	// SMTPImplicitTLS speaks TLS from the first byte (SMTPS). Default port 465.
	SMTPImplicitTLS = "implicit"
	// SMTPNoTLS speaks plain text, for a local relay. Default port 25.
	SMTPNoTLS = "none"
)

// DefaultSMTPTimeout bounds one Send when SMTP.Timeout is zero.
const DefaultSMTPTimeout = 15 * time.Second

// SMTP sends email through an SMTP server with go-mail, one connection and
// one message per Send: a text/plain UTF-8 body (quoted-printable), From,
// To, Subject, Date, Message-ID and Auto-Submitted: auto-generated.
//
// Authentication (SMTP AUTH, PLAIN preferred, then LOGIN) happens when
// Username is set, and only over TLS: with TLS "none" credentials are
// accepted only when Host is a loopback address or "localhost", where the
// password does not cross a network. When credentials are set and the server
// offers no AUTH, the delivery fails rather than going out unauthenticated.
//
// The certificate is checked against Host with the system roots unless
// TLSConfig says otherwise (its ServerName defaults to Host, its MinVersion
// to TLS 1.2).
type SMTP struct {
	// Host is the server's host name or IP address (no port).
	Host string
	// Port is the server's port; 0 means 587 for starttls, 465 for
	// implicit and 25 for none.
	Port int
	// Username and Password are the SMTP AUTH credentials (optional,
	// together). The password never appears in errors.
	Username, Password string
	// From is the sender, an address with an optional display name:
	// `Security <security@example.com>`.
	From string
	// TLS is the mode: "starttls" (the default when empty), "implicit" or
	// "none".
	TLS string
	// TLSConfig, if set, is used (a copy of it) for the TLS handshake, e.g.
	// to trust a private CA.
	TLSConfig *tls.Config
	// Timeout bounds a whole Send (connect, TLS, AUTH, the message); 0
	// means DefaultSMTPTimeout.
	Timeout time.Duration
	// Label overrides Name ("smtp").
	Label string
}

// Name is Label, or "smtp".
func (s *SMTP) Name() string {
	if s.Label != "" {
		return s.Label
	}
	return "smtp"
}

func (s *SMTP) mode() string {
	if s.TLS == "" {
		return SMTPStartTLS
	}
	return s.TLS
}

func (s *SMTP) port() int {
	if s.Port != 0 {
		return s.Port
	}
	switch s.mode() {
	case SMTPImplicitTLS:
		return 465
	case SMTPNoTLS:
		return 25
	default:
		return 587
	}
}

// Validate checks the configuration: a host without a port, a port in
// range, a known TLS mode, a parseable From address, credentials given
// together, and credentials over plain text only to a loopback host.
func (s *SMTP) Validate() error {
	host := s.Host
	if host == "" {
		return errors.New("smtp: host is required")
	}
	if strings.ContainsAny(host, " \t\r\n/[]") || (strings.Contains(host, ":") && net.ParseIP(host) == nil) {
		return errors.New("smtp: host must be a host name or IP address without a port")
	}
	if s.Port < 0 || s.Port > 65535 {
		return errors.New("smtp: port must be between 1 and 65535")
	}
	switch s.mode() {
	case SMTPStartTLS, SMTPImplicitTLS, SMTPNoTLS:
	default:
		return fmt.Errorf("smtp: tls must be starttls, implicit or none, not %q", s.TLS)
	}
	if s.From == "" {
		return errors.New("smtp: from is required")
	}
	if _, err := mail.ParseAddress(s.From); err != nil {
		return errors.New(`smtp: from must be an email address, like "Security <security@example.com>"`)
	}
	if s.Username == "" && s.Password != "" {
		return errors.New("smtp: password is set but username is not")
	}
	if s.Username != "" && s.Password == "" {
		return errors.New("smtp: username is set but password is not")
	}
	if s.Username != "" && s.mode() == SMTPNoTLS && !isLoopbackHost(host) {
		return errors.New("smtp: username and password need tls starttls or implicit (tls none allows them only for a relay on localhost)")
	}
	if s.Timeout < 0 {
		return errors.New("smtp: timeout must not be negative")
	}
	return nil
}

func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// tlsConfig is the configuration of the handshake.
func (s *SMTP) tlsConfig() *tls.Config {
	var c *tls.Config
	if s.TLSConfig != nil {
		c = s.TLSConfig.Clone()
	} else {
		c = &tls.Config{}
	}
	if c.ServerName == "" {
		c.ServerName = s.Host
	}
	if c.MinVersion == 0 {
		c.MinVersion = tls.VersionTLS12
	}
	return c
}

// Send sends m (channel email) as one message.
func (s *SMTP) Send(ctx context.Context, m Message) error {
	name := s.Name()
	hide := hider("", m.Code, s.Password)
	if err := s.Validate(); err != nil {
		return failure(name, 0, err, hide)
	}
	if m.Channel != ChannelEmail {
		return failure(name, 0, fmt.Errorf("%w: %q", ErrUnsupportedChannel, m.Channel), nil)
	}
	to, err := mail.ParseAddress(m.To)
	if err != nil {
		return failure(name, 0, fmt.Errorf("%w: not an email address", ErrInvalidRecipient), nil)
	}
	if m.Body == "" {
		return failure(name, 0, ErrEmptyMessage, nil)
	}
	from, _ := mail.ParseAddress(s.From) // checked by Validate

	msg := gomail.NewMsg(gomail.WithCharset(gomail.CharsetUTF8), gomail.WithEncoding(gomail.EncodingQP))
	msg.FromMailAddress(from)
	msg.ToMailAddress(to)
	msg.Subject(oneLine(m.Subject))
	msg.SetDate()
	msg.SetMessageIDWithValue(messageID(from.Address))
	msg.SetGenHeader(gomail.Header("Auto-Submitted"), "auto-generated")
	msg.SetUserAgent(userAgent)
	msg.SetBodyString(gomail.TypeTextPlain, m.Body)

	timeout := s.Timeout
	if timeout == 0 {
		timeout = DefaultSMTPTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	// Our own dialer: it dials host:port with net.JoinHostPort (IPv6 works),
	// does the implicit TLS handshake, and ties the connection to ctx so
	// that cancelling the Send aborts it at once, not only the dial.
	mode := s.mode()
	addr := net.JoinHostPort(s.Host, strconv.Itoa(s.port()))
	tlsConf := s.tlsConfig()
	var stop func() bool
	dial := func(dctx context.Context, _, _ string) (net.Conn, error) {
		d := &net.Dialer{}
		var conn net.Conn
		var err error
		if mode == SMTPImplicitTLS {
			conn, err = (&tls.Dialer{NetDialer: d, Config: tlsConf}).DialContext(dctx, "tcp", addr)
		} else {
			conn, err = d.DialContext(dctx, "tcp", addr)
		}
		if err != nil {
			return nil, err
		}
		stop = context.AfterFunc(ctx, func() { conn.Close() })
		return conn, nil
	}

	opts := []gomail.Option{
		gomail.WithPort(s.port()),
		// go-mail's own per-command deadline stays behind ctx, so that running
		// out of time always reads as context.DeadlineExceeded.
		gomail.WithTimeout(timeout + time.Second),
		gomail.WithTLSConfig(tlsConf),
		gomail.WithDialContextFunc(dial),
	}
	switch mode {
	case SMTPStartTLS:
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSMandatory))
	case SMTPImplicitTLS:
		// The dialer did the handshake; go-mail must not try STARTTLS.
		opts = append(opts, gomail.WithSSL(), gomail.WithTLSPolicy(gomail.NoTLS))
	case SMTPNoTLS:
		opts = append(opts, gomail.WithTLSPolicy(gomail.NoTLS))
	}
	if s.Username != "" {
		mechs := []gomail.SMTPAuthType{gomail.SMTPAuthPlain, gomail.SMTPAuthLogin}
		if mode == SMTPNoTLS {
			// Validate allowed this only for a loopback host.
			mechs = []gomail.SMTPAuthType{gomail.SMTPAuthPlainNoEnc, gomail.SMTPAuthLoginNoEnc}
		}
		opts = append(opts,
			gomail.WithOpportunisticSMTPAuth(mechs...),
			gomail.WithUsername(s.Username),
			gomail.WithPassword(s.Password))
	}
	client, err := gomail.NewClient(s.Host, opts...)
	if err != nil {
		return failure(name, 0, err, hide)
	}
	err = client.DialAndSendWithContext(ctx, msg)
	if stop != nil {
		stop()
	}
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			err = fmt.Errorf("%w (%w)", ctxErr, err)
		}
		return failure(name, smtpCode(err), err, hide)
	}
	return nil
}

// smtpCode finds the server's reply code in err, or 0.
func smtpCode(err error) int {
	var se *gomail.SendError
	if errors.As(err, &se) && se.ErrorCode() != 0 {
		return se.ErrorCode()
	}
	var te *textproto.Error
	if errors.As(err, &te) {
		return te.Code
	}
	return 0
}

// oneLine folds a subject onto one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// messageID is a fresh Message-ID (without the angle brackets) in the domain
// of the sender's address.
func messageID(from string) string {
	domain := "twostep.invalid"
	if i := strings.LastIndexByte(from, '@'); i >= 0 && i < len(from)-1 {
		domain = from[i+1:]
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:]) + "@" + domain
}
