package caddymodule

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/twostep-auth/twostep/account"
	"github.com/twostep-auth/twostep/internal/notify"
)

// devOutbox is the process's developer outbox (kept across reloads).
var devOutbox = notify.NewOutbox(100)

// buildSenders turns the sms, voice and email options into senders,
// checking every value. With dev_outbox, channels without a provider
// deliver to the outbox, and those with one are copied to it.
func (a *App) buildSenders() (account.Senders, error) {
	var out account.Senders
	var err error
	if out.SMS, err = a.senderChain("sms", a.SMS); err != nil {
		return out, err
	}
	if out.Voice, err = a.senderChain("voice", a.Voice); err != nil {
		return out, err
	}
	if a.Email != nil {
		m, err := buildSMTP(a.Email)
		if err != nil {
			return out, err
		}
		out.Email = a.counted("email", m)
	}
	if a.DevOutbox {
		out.SMS = withOutbox(out.SMS, "outbox-sms")
		out.Voice = withOutbox(out.Voice, "outbox-voice")
		out.Email = withOutbox(out.Email, "outbox-email")
	}
	return out, nil
}

func withOutbox(s notify.Sender, name string) notify.Sender {
	if s == nil {
		return devOutbox.Sender(name)
	}
	return notify.Tee(devOutbox, s)
}

func (a *App) senderChain(channel string, list []ProviderConfig) (notify.Sender, error) {
	if len(list) == 0 {
		return nil, nil
	}
	var senders []notify.Sender
	for i, pc := range list {
		snd, err := buildProvider(channel, i+1, pc)
		if err != nil {
			return nil, err
		}
		senders = append(senders, snd)
	}
	return a.counted(channel, senders...), nil
}

// counted tries senders in order (a channel's only provider, or its
// fallbacks) and counts and logs every provider that fails.
func (a *App) counted(channel string, senders ...notify.Sender) notify.Sender {
	return &notify.Fallback{Senders: senders, Logger: a.logger.Named("notify"), OnFailure: func(provider string, _ error) {
		metricDeliveryFailures.WithLabelValues(channel, provider).Inc()
	}, OnSuccess: func(provider string) {
		metricDeliveries.WithLabelValues(channel, provider).Inc()
	}}
}

// buildProvider turns the n-th provider of a channel into its sender,
// checking every value. It has no side effects, so that the Caddyfile
// adapter can run it too and name the line of a bad value.
func buildProvider(channel string, n int, pc ProviderConfig) (notify.Sender, error) {
	where := fmt.Sprintf("twostep: %s provider %d (%s)", channel, n, pc.Type)
	switch pc.Type {
	case "twilio":
		if pc.URL != "" || pc.Secret != "" {
			return nil, fmt.Errorf("%s: url and secret are webhook settings (twilio takes account_sid, auth_token, from, endpoint)", where)
		}
		t := &notify.Twilio{AccountSID: pc.AccountSID, AuthToken: pc.AuthToken, From: pc.From, Endpoint: pc.Endpoint, Timeout: 10 * time.Second}
		if err := t.Validate(); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		return t, nil
	case "webhook":
		if pc.AccountSID != "" || pc.AuthToken != "" || pc.From != "" || pc.Endpoint != "" {
			return nil, fmt.Errorf("%s: account_sid, auth_token, from and endpoint are twilio settings (a webhook takes url and secret)", where)
		}
		w := &notify.Webhook{URL: pc.URL, Secret: pc.Secret, Label: fmt.Sprintf("webhook-%d", n)}
		if err := w.Validate(); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		return w, nil
	}
	return nil, fmt.Errorf("twostep: %s provider %d: unknown type %q (want twilio or webhook)", channel, n, pc.Type)
}

// buildSMTP turns the email option into its sender, checking every value
// (no side effects, like buildProvider).
func buildSMTP(em *SMTPConfig) (*notify.SMTP, error) {
	host, portStr, err := net.SplitHostPort(em.Address)
	if err != nil {
		return nil, fmt.Errorf("twostep: email smtp: address %q: want host:port", em.Address)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 1 || port > 65535 {
		return nil, fmt.Errorf("twostep: email smtp: port %q is not a port number", portStr)
	}
	m := &notify.SMTP{Host: host, Port: port, Username: em.Username, Password: em.Password, From: em.From, TLS: em.TLS}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("twostep: email smtp: %w", err)
	}
	return m, nil
}

// checkOutboxListeners refuses dev_outbox when any HTTP server listens
// beyond loopback: the outbox shows codes to whoever asks.
func (a *App) checkOutboxListeners() error {
	if !a.DevOutbox {
		return nil
	}
	appIface, err := a.ctx.AppIfConfigured("http")
	if err != nil {
		return nil // no HTTP servers at all
	}
	httpApp, ok := appIface.(*caddyhttp.App)
	if !ok {
		return nil
	}
	for name, srv := range httpApp.Servers {
		for _, l := range srv.Listen {
			na, err := caddy.ParseNetworkAddress(l)
			if err != nil {
				return fmt.Errorf("twostep: dev_outbox: server %s: listener %q: %v", name, l, err)
			}
			if !isLoopbackHost(na.Host) {
				return fmt.Errorf("twostep: dev_outbox shows one-time codes to anyone who can reach it, so it runs only on loopback listeners; server %s listens on %q (set `default_bind 127.0.0.1 [::1]` or remove dev_outbox)", name, l)
			}
		}
	}
	return nil
}

func isLoopbackHost(h string) bool {
	h = strings.Trim(h, "[]")
	if h == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(h)
	return err == nil && a.IsLoopback()
}
