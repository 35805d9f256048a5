package notify

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

const (
	smtpUser = "mailer"
	smtpPass = "pw-Zq8!hunter2-smtp"
)

// delivered is one message the test SMTP server accepted.
type delivered struct {
	From     string
	To       []string
	Data     []byte
	TLS      bool
	AuthUser string
}

// smtpBackend is a go-smtp backend that keeps what it receives.
type smtpBackend struct {
	requireAuth bool // offer AUTH PLAIN and refuse MAIL without it
	rejectRcpt  bool // answer 550 to every RCPT

	mu        sync.Mutex
	msgs      []delivered
	authTries int
}

func (b *smtpBackend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	return &smtpSession{b: b, c: c}, nil
}

func (b *smtpBackend) messages() []delivered {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]delivered(nil), b.msgs...)
}

func (b *smtpBackend) tries() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.authTries
}

type smtpSession struct {
	b        *smtpBackend
	c        *smtp.Conn
	from     string
	to       []string
	authUser string
}

func (s *smtpSession) AuthMechanisms() []string {
	if !s.b.requireAuth {
		return nil
	}
	return []string{sasl.Plain}
}

func (s *smtpSession) Auth(mech string) (sasl.Server, error) {
	if mech != sasl.Plain {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	return sasl.NewPlainServer(func(identity, username, password string) error {
		s.b.mu.Lock()
		s.b.authTries++
		s.b.mu.Unlock()
		if username != smtpUser || password != smtpPass {
			return smtp.ErrAuthFailed
		}
		s.authUser = username
		return nil
	}), nil
}

func (s *smtpSession) Mail(from string, _ *smtp.MailOptions) error {
	if s.b.requireAuth && s.authUser == "" {
		return smtp.ErrAuthRequired
	}
	s.from = from
	return nil
}

func (s *smtpSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if s.b.rejectRcpt {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user here"}
	}
	s.to = append(s.to, to)
	return nil
}

func (s *smtpSession) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	_, isTLS := s.c.TLSConnectionState()
	s.b.mu.Lock()
	s.b.msgs = append(s.b.msgs, delivered{From: s.from, To: s.to, Data: data, TLS: isTLS, AuthUser: s.authUser})
	s.b.mu.Unlock()
	return nil
}

func (s *smtpSession) Reset()        { s.from, s.to = "", nil }
func (s *smtpSession) Logout() error { return nil }

// smtpServer is a running go-smtp server on 127.0.0.1.
type smtpServer struct {
	be   *smtpBackend
	port int
	pool *x509.CertPool // trusts the server's certificate (nil without TLS)
}

type serverMode int

const (
	plainServer    serverMode = iota // no TLS at all
	startTLSServer                   // offers STARTTLS
	implicitServer                   // TLS from the first byte
)

func startSMTP(t *testing.T, mode serverMode, be *smtpBackend) *smtpServer {
	t.Helper()
	srv := smtp.NewServer(be)
	srv.Domain = "localhost"
	srv.ReadTimeout = testTimeout
	srv.WriteTimeout = testTimeout
	srv.MaxMessageBytes = 1 << 20
	srv.MaxRecipients = 10
	srv.ErrorLog = log.New(io.Discard, "", 0)
	out := &smtpServer{be: be}
	var l net.Listener
	var err error
	switch mode {
	case plainServer:
		srv.AllowInsecureAuth = true // loopback relay
		l, err = net.Listen("tcp", "127.0.0.1:0")
	case startTLSServer:
		cert, pool := selfSigned(t)
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		out.pool = pool
		l, err = net.Listen("tcp", "127.0.0.1:0")
	case implicitServer:
		cert, pool := selfSigned(t)
		out.pool = pool
		l, err = tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	}
	if err != nil {
		t.Fatal(err)
	}
	out.port = l.Addr().(*net.TCPAddr).Port
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(l)
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		select {
		case <-done:
		case <-time.After(testTimeout):
			t.Error("SMTP server did not stop")
		}
	})
	return out
}

// parsed is a received message as a mail reader sees it.
type parsed struct {
	From, To         *mail.Address
	Subject, Body    string
	Date             time.Time
	MessageID        string
	ContentType      string
	AutoSubmitted    string
	TransferEncoding string
}

func parseMail(t *testing.T, data []byte) parsed {
	t.Helper()
	m, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("received message does not parse: %v\n%s", err, data)
	}
	var p parsed
	from, err := m.Header.AddressList("From")
	if err != nil || len(from) != 1 {
		t.Fatalf("From %q: %v", m.Header.Get("From"), err)
	}
	to, err := m.Header.AddressList("To")
	if err != nil || len(to) != 1 {
		t.Fatalf("To %q: %v", m.Header.Get("To"), err)
	}
	p.From, p.To = from[0], to[0]
	dec := new(mime.WordDecoder)
	if p.Subject, err = dec.DecodeHeader(m.Header.Get("Subject")); err != nil {
		t.Fatalf("Subject: %v", err)
	}
	if p.Date, err = m.Header.Date(); err != nil {
		t.Errorf("Date %q: %v", m.Header.Get("Date"), err)
	}
	p.MessageID = m.Header.Get("Message-Id")
	p.ContentType = m.Header.Get("Content-Type")
	p.TransferEncoding = m.Header.Get("Content-Transfer-Encoding")
	p.AutoSubmitted = m.Header.Get("Auto-Submitted")
	var body io.Reader = m.Body
	if strings.EqualFold(p.TransferEncoding, "quoted-printable") {
		body = quotedprintable.NewReader(m.Body)
	}
	b, err := io.ReadAll(body)
	if err != nil {
		t.Fatalf("body: %v", err)
	}
	p.Body = strings.TrimRight(strings.ReplaceAll(string(b), "\r\n", "\n"), "\n")
	return p
}

func TestSMTPSend(t *testing.T) {
	plain := startSMTP(t, plainServer, &smtpBackend{})
	plainAuth := startSMTP(t, plainServer, &smtpBackend{requireAuth: true})
	starttls := startSMTP(t, startTLSServer, &smtpBackend{requireAuth: true})
	implicit := startSMTP(t, implicitServer, &smtpBackend{requireAuth: true})

	body := "Hello Zoë,\n\nYour code is 123456. It expires in 10 minutes. Don't share it.\nA long line follows so that quoted-printable has to wrap it: " + strings.Repeat("é-", 60) + "end."
	msg := Message{Channel: ChannelEmail, To: "Zoë Example <zoe@example.com>", User: "zoe", Subject: "Your Example Corp code — 123456", Body: body, Code: "123456"}

	tests := []struct {
		name     string
		srv      *smtpServer
		cfg      SMTP
		wantTLS  bool
		wantAuth string
	}{
		{"none", plain, SMTP{TLS: "none"}, false, ""},
		{"none with auth on loopback", plainAuth, SMTP{TLS: "none", Username: smtpUser, Password: smtpPass}, false, smtpUser},
		{"starttls with auth", starttls, SMTP{TLS: "starttls", Username: smtpUser, Password: smtpPass}, true, smtpUser},
		{"starttls is the default", starttls, SMTP{Username: smtpUser, Password: smtpPass}, true, smtpUser},
		{"implicit with auth", implicit, SMTP{TLS: "implicit", Username: smtpUser, Password: smtpPass}, true, smtpUser},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Host, cfg.Port = "127.0.0.1", tc.srv.port
			cfg.From = "Example Security <security@example.com>"
			cfg.Timeout = testTimeout
			if tc.srv.pool != nil {
				cfg.TLSConfig = &tls.Config{RootCAs: tc.srv.pool}
			}
			if err := cfg.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			before := len(tc.srv.be.messages())
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			sent := time.Now()
			if err := cfg.Send(ctx, msg); err != nil {
				t.Fatalf("Send: %v", err)
			}
			msgs := tc.srv.be.messages()
			if len(msgs) != before+1 {
				t.Fatalf("server got %d messages, want 1", len(msgs)-before)
			}
			d := msgs[len(msgs)-1]
			if d.From != "security@example.com" || len(d.To) != 1 || d.To[0] != "zoe@example.com" {
				t.Errorf("envelope %q -> %q", d.From, d.To)
			}
			if d.TLS != tc.wantTLS {
				t.Errorf("TLS = %v, want %v", d.TLS, tc.wantTLS)
			}
			if d.AuthUser != tc.wantAuth {
				t.Errorf("authenticated as %q, want %q", d.AuthUser, tc.wantAuth)
			}
			p := parseMail(t, d.Data)
			if p.From.Name != "Example Security" || p.From.Address != "security@example.com" {
				t.Errorf("From = %v", p.From)
			}
			if p.To.Name != "Zoë Example" || p.To.Address != "zoe@example.com" {
				t.Errorf("To = %v", p.To)
			}
			if p.Subject != msg.Subject {
				t.Errorf("Subject = %q, want %q", p.Subject, msg.Subject)
			}
			if p.Body != body {
				t.Errorf("body =\n%q\nwant\n%q", p.Body, body)
			}
			mt, params, err := mime.ParseMediaType(p.ContentType)
			if err != nil || mt != "text/plain" || !strings.EqualFold(params["charset"], "utf-8") {
				t.Errorf("Content-Type %q", p.ContentType)
			}
			if d := p.Date.Sub(sent); d < -2*time.Second || d > 2*time.Second+testTimeout {
				t.Errorf("Date %v is not the sending time %v", p.Date, sent)
			}
			if !strings.HasPrefix(p.MessageID, "<") || !strings.HasSuffix(p.MessageID, "@example.com>") || len(p.MessageID) < 20 {
				t.Errorf("Message-ID %q", p.MessageID)
			}
			if p.AutoSubmitted != "auto-generated" {
				t.Errorf("Auto-Submitted %q", p.AutoSubmitted)
			}
			for _, line := range strings.Split(string(d.Data), "\r\n") {
				if len(line) > 998 {
					t.Errorf("line of %d octets", len(line))
				}
			}
		})
	}
}

func TestSMTPMessageIDsDiffer(t *testing.T) {
	srv := startSMTP(t, plainServer, &smtpBackend{})
	s := &SMTP{Host: "127.0.0.1", Port: srv.port, TLS: "none", From: "security@example.com", Timeout: testTimeout}
	for range 2 {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		err := s.Send(ctx, Message{Channel: ChannelEmail, To: "a@example.com", Subject: "x", Body: "y"})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	msgs := srv.be.messages()
	if len(msgs) != 2 {
		t.Fatalf("%d messages", len(msgs))
	}
	a, b := parseMail(t, msgs[0].Data).MessageID, parseMail(t, msgs[1].Data).MessageID
	if a == b {
		t.Errorf("both messages have Message-ID %s", a)
	}
}

func TestSMTPFailures(t *testing.T) {
	plain := startSMTP(t, plainServer, &smtpBackend{requireAuth: true})
	starttls := startSMTP(t, startTLSServer, &smtpBackend{requireAuth: true})
	rejecting := startSMTP(t, startTLSServer, &smtpBackend{rejectRcpt: true})

	// A server that accepts the connection and never says a word.
	mute, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	muteDone := make(chan struct{})
	var muteConns []net.Conn
	var muteMu sync.Mutex
	go func() {
		defer close(muteDone)
		for {
			c, err := mute.Accept()
			if err != nil {
				return
			}
			muteMu.Lock()
			muteConns = append(muteConns, c)
			muteMu.Unlock()
		}
	}()
	t.Cleanup(func() {
		mute.Close()
		<-muteDone
		muteMu.Lock()
		for _, c := range muteConns {
			c.Close()
		}
		muteMu.Unlock()
	})
	mutePort := mute.Addr().(*net.TCPAddr).Port

	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := closed.Addr().(*net.TCPAddr).Port
	closed.Close()

	msg := Message{Channel: ChannelEmail, To: "alice@example.com", Subject: "Your code", Body: "Your code is 424242.", Code: "424242"}
	from := "Security <security@example.com>"
	tests := []struct {
		name       string
		cfg        SMTP
		ctxTimeout time.Duration
		wantStatus int
		wantIs     error
		wantText   string
		srv        *smtpServer // its backend must have received nothing
		noAuth     bool        // and must not have seen an AUTH attempt
	}{
		{
			name:       "recipient rejected",
			cfg:        SMTP{Host: "127.0.0.1", Port: rejecting.port, From: from, TLS: "starttls", TLSConfig: &tls.Config{RootCAs: rejecting.pool}},
			wantStatus: 550, wantText: "No such user here", srv: rejecting,
		},
		{
			name:     "starttls against a server without STARTTLS",
			cfg:      SMTP{Host: "127.0.0.1", Port: plain.port, From: from, TLS: "starttls", Username: smtpUser, Password: smtpPass},
			wantText: "STARTTLS", srv: plain, noAuth: true,
		},
		{
			name: "implicit against a plain server",
			cfg:  SMTP{Host: "127.0.0.1", Port: plain.port, From: from, TLS: "implicit", Username: smtpUser, Password: smtpPass},
			srv:  plain, noAuth: true,
		},
		{
			name:     "untrusted certificate",
			cfg:      SMTP{Host: "127.0.0.1", Port: starttls.port, From: from, TLS: "starttls", Username: smtpUser, Password: smtpPass},
			wantText: "certificate", srv: starttls, noAuth: true,
		},
		{
			name:     "certificate for another name",
			cfg:      SMTP{Host: "127.0.0.1", Port: starttls.port, From: from, TLS: "starttls", Username: smtpUser, Password: smtpPass, TLSConfig: &tls.Config{RootCAs: starttls.pool, ServerName: "smtp.example.com"}},
			wantText: "certificate", srv: starttls, noAuth: true,
		},
		{
			name:       "wrong password",
			cfg:        SMTP{Host: "127.0.0.1", Port: starttls.port, From: from, TLS: "starttls", Username: smtpUser, Password: "wrong-pw-Xy9", TLSConfig: &tls.Config{RootCAs: starttls.pool}},
			wantStatus: 535, srv: starttls,
		},
		{
			name:       "credentials required but not given",
			cfg:        SMTP{Host: "127.0.0.1", Port: starttls.port, From: from, TLS: "starttls", TLSConfig: &tls.Config{RootCAs: starttls.pool}},
			wantStatus: 502, srv: starttls,
		},
		{
			name:   "connection refused",
			cfg:    SMTP{Host: "127.0.0.1", Port: closedPort, From: from, TLS: "none"},
			wantIs: nil,
		},
		{
			name:   "mute server, Timeout",
			cfg:    SMTP{Host: "127.0.0.1", Port: mutePort, From: from, TLS: "none", Timeout: 200 * time.Millisecond},
			wantIs: context.DeadlineExceeded,
		},
		{
			name:       "mute server, context deadline shorter than Timeout",
			cfg:        SMTP{Host: "127.0.0.1", Port: mutePort, From: from, TLS: "none"},
			ctxTimeout: 200 * time.Millisecond,
			wantIs:     context.DeadlineExceeded,
		},
		{
			name:   "sms channel",
			cfg:    SMTP{Host: "127.0.0.1", Port: plain.port, From: from, TLS: "none"},
			wantIs: ErrUnsupportedChannel,
		},
		{
			name:     "invalid config",
			cfg:      SMTP{Host: "smtp.example.com", Port: 25, From: from, TLS: "none", Username: smtpUser, Password: smtpPass},
			wantText: "starttls or implicit",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			timeout := testTimeout
			if tc.ctxTimeout != 0 {
				timeout = tc.ctxTimeout
			}
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			m := msg
			if tc.name == "sms channel" {
				m.Channel, m.To = ChannelSMS, "+15551234567"
			}
			if tc.cfg.Timeout == 0 && tc.ctxTimeout == 0 {
				tc.cfg.Timeout = testTimeout
			}
			var before, triesBefore int
			if tc.srv != nil {
				before, triesBefore = len(tc.srv.be.messages()), tc.srv.be.tries()
			}
			start := time.Now()
			err := tc.cfg.Send(ctx, m)
			elapsed := time.Since(start)
			de := asDelivery(t, err)
			if de.Provider != "smtp" {
				t.Errorf("Provider %q", de.Provider)
			}
			if de.Status != tc.wantStatus {
				t.Errorf("Status %d, want %d (%v)", de.Status, tc.wantStatus, err)
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("error %v is not %v", err, tc.wantIs)
			}
			if !strings.Contains(err.Error(), tc.wantText) {
				t.Errorf("error %q does not mention %q", err, tc.wantText)
			}
			if elapsed > 3*time.Second {
				t.Errorf("Send took %v", elapsed)
			}
			if tc.srv != nil {
				if n := len(tc.srv.be.messages()) - before; n != 0 {
					t.Errorf("server received %d messages", n)
				}
				if n := tc.srv.be.tries() - triesBefore; tc.noAuth && n != 0 {
					t.Errorf("server saw %d AUTH attempts; credentials must not be sent", n)
				}
			}
			assertNoSecrets(t, err, smtpPass, "wrong-pw-Xy9", msg.Code)
		})
	}
}

func TestSMTPValidate(t *testing.T) {
	ok := SMTP{Host: "smtp.example.com", Port: 587, From: "Security <security@example.com>", TLS: "starttls", Username: "u", Password: smtpPass}
	tests := []struct {
		name    string
		mod     func(*SMTP)
		wantErr string
	}{
		{"valid", func(*SMTP) {}, ""},
		{"default TLS and port", func(s *SMTP) { s.TLS, s.Port = "", 0 }, ""},
		{"implicit", func(s *SMTP) { s.TLS, s.Port = "implicit", 465 }, ""},
		{"none without credentials", func(s *SMTP) { s.TLS, s.Username, s.Password = "none", "", "" }, ""},
		{"none with credentials on localhost", func(s *SMTP) { s.TLS, s.Host = "none", "localhost" }, ""},
		{"none with credentials on ::1", func(s *SMTP) { s.TLS, s.Host = "none", "::1" }, ""},
		{"bare address as From", func(s *SMTP) { s.From = "security@example.com" }, ""},
		{"no host", func(s *SMTP) { s.Host = "" }, "host"},
		{"host with port", func(s *SMTP) { s.Host = "smtp.example.com:587" }, "host"},
		{"bad port", func(s *SMTP) { s.Port = 70000 }, "port"},
		{"bad mode", func(s *SMTP) { s.TLS = "ssl" }, "tls"},
		{"no From", func(s *SMTP) { s.From = "" }, "from"},
		{"bad From", func(s *SMTP) { s.From = "Security" }, "from"},
		{"password without user", func(s *SMTP) { s.Username = "" }, "username"},
		{"user without password", func(s *SMTP) { s.Password = "" }, "password"},
		{"credentials in clear to a remote host", func(s *SMTP) { s.TLS = "none" }, "starttls or implicit"},
		{"negative timeout", func(s *SMTP) { s.Timeout = -time.Second }, "timeout"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := ok
			tc.mod(&s)
			err := s.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Validate = %v, want an error about %s", err, tc.wantErr)
			}
			assertNoSecrets(t, err, smtpPass)
		})
	}
}

func TestSMTPDefaultPort(t *testing.T) {
	for mode, want := range map[string]int{"": 587, "starttls": 587, "implicit": 465, "none": 25} {
		if got := (&SMTP{TLS: mode}).port(); got != want {
			t.Errorf("port for %q = %d, want %d", mode, got, want)
		}
	}
	if got := (&SMTP{TLS: "none", Port: 2525}).port(); got != 2525 {
		t.Errorf("explicit port = %d", got)
	}
}
