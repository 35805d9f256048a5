package caddymodule

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// A JSON configuration gets the Caddyfile's bounds: nothing that would
// switch a protection off, or let one request exhaust the server, is
// accepted, and the message names the field.
func TestValidateJSONBounds(t *testing.T) {
	valid := func() *App {
		one := uint(1)
		return &App{
			UsersFile: "users.yml", TwoStep: "optional", Store: &StoreConfig{Type: "bolt", Path: "x.db"},
			Session:       &SessionConfig{Idle: caddy.Duration(30 * time.Minute), Lifetime: caddy.Duration(12 * time.Hour)},
			Regulation:    &RegulationConfig{MaxRetries: 5, FindTime: caddy.Duration(10 * time.Minute), BanTime: caddy.Duration(15 * time.Minute)},
			TrustedDevice: &TrustedDeviceConfig{Lifetime: caddy.Duration(30 * 24 * time.Hour)},
			TOTP:          &TOTPConfig{Skew: &one},
			Code:          &CodeConfig{Length: 6, Lifetime: caddy.Duration(10 * time.Minute), ResendAfter: caddy.Duration(30 * time.Second), MaxSendsPerHour: 5},
		}
	}
	if err := valid().Validate(); err != nil {
		t.Fatalf("the defaults: %v", err)
	}
	for _, c := range []struct {
		name   string
		mutate func(*App)
		want   string
	}{
		{"max_retries huge", func(a *App) { a.Regulation.MaxRetries = 1_000_000 }, "regulation: max_retries must be 1 to 1000"},
		{"find_time 1ns", func(a *App) { a.Regulation.FindTime = 1 }, "regulation: find_time"},
		{"ban_time 1ns", func(a *App) { a.Regulation.BanTime = 1 }, "regulation: ban_time"},
		{"max_sends_per_hour huge", func(a *App) { a.Code.MaxSendsPerHour = 1_000_000_000 }, "code: max_sends_per_hour"},
		{"code lifetime negative", func(a *App) { a.Code.Lifetime = -1 }, "code: lifetime"},
		{"resend_after negative", func(a *App) { a.Code.ResendAfter = -1 }, "code: resend_after"},
		{"session idle 1ns", func(a *App) { a.Session.Idle = 1 }, "session: idle"},
		{"trusted device lifetime negative", func(a *App) { a.TrustedDevice.Lifetime = -1 }, "trusted_device: lifetime"},
		{"recovery max_size huge", func(a *App) { a.Recovery = &RecoveryConfig{ReviewGroup: "admins", MaxSize: 1 << 62} }, "recovery: max_size must be 1KiB to 100MiB"},
		{"recovery approvals 1000", func(a *App) { a.Recovery = &RecoveryConfig{ReviewGroup: "admins", Approvals: 1000} }, "recovery: approvals must be 1 to 10"},
		{"recovery retention negative", func(a *App) { a.Recovery = &RecoveryConfig{ReviewGroup: "admins", Retention: -1} }, "recovery: retention"},
		{"secret of spaces", func(a *App) { a.Secret = strings.Repeat(" ", 40) }, "secret"},
		{"cookie_domain a TLD", func(a *App) { a.CookieDomain = "com" }, "cookie_domain"},
		{"redis addr without port", func(a *App) { a.Store = &StoreConfig{Type: "redis", Addrs: []string{"nohostport"}} }, `addrs: "nohostport" is not host:port`},
		{"redis addr bad port", func(a *App) { a.Store = &StoreConfig{Type: "redis", Addrs: []string{"h:99999"}} }, "is not host:port"},
		{"bolt with a redis url", func(a *App) { a.Store.URL = "redis://127.0.0.1:6379/0" }, "store bolt: url, addrs"},
		{"redis with a path", func(a *App) { a.Store = &StoreConfig{Type: "redis", URL: "redis://127.0.0.1:6379/0", Path: "x.db"} }, "store redis: path is a bolt setting"},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := valid()
			c.mutate(a)
			err := a.Validate()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				b, _ := json.Marshal(a)
				t.Fatalf("Validate(%s) = %v, want an error saying %q", b, err, c.want)
			}
		})
	}
}

// The pool shares one open store per file, however its path is spelled.
func TestBoltPoolKeyCleansPath(t *testing.T) {
	a := (&StoreConfig{Type: "bolt", Path: "/tmp/x/./s1.db"}).poolKey()
	for _, p := range []string{"/tmp/x/s1.db", "/tmp//x/s1.db", "/tmp/x/y/../s1.db"} {
		if b := (&StoreConfig{Type: "bolt", Path: p}).poolKey(); b != a {
			t.Errorf("pool key of %s = %s, want %s", p, b, a)
		}
	}
}

// A provider block with the other type's settings is refused, not run
// with them ignored.
func TestProviderSettingsOfTheOtherType(t *testing.T) {
	a := &App{}
	if _, err := a.senderChain("sms", []ProviderConfig{{Type: "twilio", AccountSID: "AC1", AuthToken: "t", From: "+15550001111", URL: "https://x.example"}}); err == nil || !strings.Contains(err.Error(), "webhook settings") {
		t.Errorf("twilio with a url: %v", err)
	}
	if _, err := a.senderChain("sms", []ProviderConfig{{Type: "webhook", URL: "https://x.example", Secret: "s", AccountSID: "AC1"}}); err == nil || !strings.Contains(err.Error(), "twilio settings") {
		t.Errorf("webhook with an account_sid: %v", err)
	}
}
