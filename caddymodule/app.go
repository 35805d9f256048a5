package caddymodule

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
	"golang.org/x/net/publicsuffix"

	"github.com/twostep-auth/twostep/account"
	"github.com/twostep-auth/twostep/internal/oidc"
	"github.com/twostep-auth/twostep/internal/store"
	"github.com/twostep-auth/twostep/internal/store/bolt"
	"github.com/twostep-auth/twostep/internal/store/cache"
	redisstore "github.com/twostep-auth/twostep/internal/store/redis"
	"github.com/twostep-auth/twostep/internal/users"
)

func init() {
	caddy.RegisterModule(App{})
}

// App is the `twostep` app: everything shared by every site of one Caddy
// process (users, store, secret, session and regulation settings). It
// survives `caddy reload` without dropping sessions: the store is shared
// across configurations through a usage pool.
type App struct {
	// UsersFile is the path of the users file (Authelia-compatible YAML).
	// It is re-read when it changes. Required.
	UsersFile string `json:"users_file,omitempty"`

	// Store selects where sessions and counters live. Default: bolt in
	// Caddy's data directory.
	Store *StoreConfig `json:"store,omitempty"`

	// Secret keys cookies and at-rest encryption (at least 32 bytes as
	// written). When absent, one is generated and kept in the store.
	Secret string `json:"secret,omitempty"`

	// CookieDomain shares one sign-in among all subdomains of this domain.
	CookieDomain string `json:"cookie_domain,omitempty"`

	// TwoStep is "optional" (default): each user decides whether to use
	// two-step verification.
	TwoStep string `json:"two_step,omitempty"`

	// Session lifetimes.
	Session *SessionConfig `json:"session,omitempty"`

	// Regulation bounds password guessing per user and per client IP.
	Regulation *RegulationConfig `json:"regulation,omitempty"`

	// SiteName is shown on the portal pages and in messages.
	SiteName string `json:"site_name,omitempty"`

	// TrustedDevice sets "don't require a code on this browser".
	TrustedDevice *TrustedDeviceConfig `json:"trusted_device,omitempty"`

	// TOTP sets the authenticator-app method.
	TOTP *TOTPConfig `json:"totp,omitempty"`

	// Code sets one-time codes (sms, voice, email).
	Code *CodeConfig `json:"code,omitempty"`

	// SMS providers, tried in order (the second is a fallback).
	SMS []ProviderConfig `json:"sms,omitempty"`

	// Voice providers, tried in order.
	Voice []ProviderConfig `json:"voice,omitempty"`

	// Email is the SMTP server for codes and account notices.
	Email *SMTPConfig `json:"email,omitempty"`

	// OIDC lists upstream OpenID Connect providers for the first factor.
	OIDC []OIDCConfig `json:"oidc,omitempty"`

	// Recovery enables account recovery with an identity check.
	Recovery *RecoveryConfig `json:"recovery,omitempty"`

	// DevOutbox keeps sent messages in memory and shows them at
	// /.twostep/outbox. Refused on a non-loopback listener.
	DevOutbox bool `json:"dev_outbox,omitempty"`

	ctx       caddy.Context
	storage   certmagic.Storage
	logger    *zap.Logger
	users     *users.File
	poolKey   string
	senders   account.Senders
	providers []*oidc.Provider

	run *appRun
}

// appRun is the app's running state (kept behind a pointer so that App
// values can be copied before they are provisioned).
type appRun struct {
	mu      sync.Mutex
	service atomic.Pointer[account.Service]
	// idents memoises what allowed requests carry per user.
	idents identities
	cancel context.CancelFunc
	// bolt is the embedded store file while running on it (nil on Redis).
	bolt *bolt.DB
	// health says whether the store answers its pings.
	health atomic.Pointer[storeHealth]
}

// OIDCConfig is one `oidc <name> { … }` block.
type OIDCConfig struct {
	// Name is used in URLs and logs.
	Name string `json:"name"`
	// Issuer URL (https); discovery happens at start, never in Provision.
	Issuer       string   `json:"issuer"`
	ClientID     string   `json:"client_id"`
	ClientSecret string   `json:"client_secret,omitempty"`
	Scopes       []string `json:"scopes,omitempty"`
	// Label of the login button. Default "Sign in with <name>".
	Label string `json:"label,omitempty"`
	// TrustIdPMFA: an ID token whose amr says mfa/otp/hwk/swk (or an acr in
	// ACRs) counts as two factors.
	TrustIdPMFA bool     `json:"trust_idp_mfa,omitempty"`
	ACRs        []string `json:"acr,omitempty"`
	// UsernameClaim names a users-file user; default preferred_username,
	// then a verified email.
	UsernameClaim string `json:"username_claim,omitempty"`
	// GroupsClaim holds the groups. Default "groups".
	GroupsClaim string `json:"groups_claim,omitempty"`
	// AllowUnknownUsers accepts users that are not in the users file.
	AllowUnknownUsers bool `json:"allow_unknown_users,omitempty"`
}

// RecoveryConfig sets account recovery with an identity check.
type RecoveryConfig struct {
	// ReviewGroup is the group whose members (signed in with two factors)
	// review requests. Required.
	ReviewGroup string `json:"review_group"`
	// Approvals is how many different reviewers must approve. Default 1.
	Approvals int `json:"approvals,omitempty"`
	// MaxSize of an upload in bytes. Default 10 MiB.
	MaxSize int64 `json:"max_size,omitempty"`
	// Expected is how long a review takes, in words. Default "about two days".
	Expected string `json:"expected,omitempty"`
	// Retention keeps documents this long after the decision. Default 7d.
	Retention caddy.Duration `json:"retention,omitempty"`
	// CoolingOff delays an approval's effect, during which the account
	// holder can cancel it. Default 0 (at once).
	CoolingOff caddy.Duration `json:"cooling_off,omitempty"`
	// AfterApproval is password_only (default) or enroll.
	AfterApproval string `json:"after_approval,omitempty"`
}

// TrustedDeviceConfig sets trusted browsers.
type TrustedDeviceConfig struct {
	// Lifetime of a trusted browser. Default 30d.
	Lifetime caddy.Duration `json:"lifetime,omitempty"`
}

// TOTPConfig sets the authenticator-app method.
type TOTPConfig struct {
	// Issuer is the name authenticator apps show. Default: site_name.
	Issuer string `json:"issuer,omitempty"`
	// Skew is how many 30-second steps either side are accepted. Default 1.
	Skew *uint `json:"skew,omitempty"`
}

// CodeConfig sets one-time codes.
type CodeConfig struct {
	// Length in digits (6–10). Default 6.
	Length int `json:"length,omitempty"`
	// Lifetime of a code. Default 10m.
	Lifetime caddy.Duration `json:"lifetime,omitempty"`
	// ResendAfter is the cooldown before another code by the same channel. Default 30s.
	ResendAfter caddy.Duration `json:"resend_after,omitempty"`
	// MaxSendsPerHour per user, every channel. Default 5.
	MaxSendsPerHour int `json:"max_sends_per_hour,omitempty"`
	// EmailCodes offers "email me a code" as a method.
	EmailCodes bool `json:"email_codes,omitempty"`
}

// ProviderConfig is one sms or voice provider.
type ProviderConfig struct {
	// Type is "twilio" or "webhook".
	Type string `json:"type"`
	// Twilio: account SID, auth token, sending number, API base URL.
	AccountSID string `json:"account_sid,omitempty"`
	AuthToken  string `json:"auth_token,omitempty"`
	From       string `json:"from,omitempty"`
	Endpoint   string `json:"endpoint,omitempty"`
	// Webhook: the URL and the HMAC secret.
	URL    string `json:"url,omitempty"`
	Secret string `json:"secret,omitempty"`
}

// SMTPConfig is the mail server.
type SMTPConfig struct {
	// Address is host:port.
	Address  string `json:"address"`
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
	// From is the sender, e.g. "Security <security@example.com>".
	From string `json:"from"`
	// TLS is starttls (default), implicit or none.
	TLS string `json:"tls,omitempty"`
}

// StoreConfig selects the store backend.
type StoreConfig struct {
	// Type is "bolt" (the embedded store, default) or "redis" (shared by
	// several nodes).
	Type string `json:"type,omitempty"`
	// Path of the bolt file. Default: twostep/twostep.db in Caddy's data dir.
	Path string `json:"path,omitempty"`
	// URL of the Redis server: redis://[user:password@]host:port/db or rediss://.
	URL string `json:"url,omitempty"`
	// Addrs of Redis servers: one server; Sentinels with MasterName; or
	// Cluster seed nodes (several without MasterName).
	Addrs []string `json:"addrs,omitempty"`
	// MasterName is the Sentinel master name.
	MasterName string `json:"master_name,omitempty"`
	// Username and Password authenticate to Redis.
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
	// DB is the Redis database number.
	DB int `json:"db,omitempty"`
	// Instance pins the store's instance id (32 hex digits, logged when the
	// store got it): a store that does not hold it is refused even where
	// Caddy's storage has no marker yet, as on a new node or after losing
	// Caddy's data directory. Unset, the marker alone decides.
	Instance string `json:"instance,omitempty"`
}

// redisOptions turns the redis store settings into client options.
func (sc *StoreConfig) redisOptions() (redisstore.Options, error) {
	if sc.URL != "" {
		if len(sc.Addrs) > 0 {
			return redisstore.Options{}, errors.New("twostep: store redis: give a URL or addrs, not both")
		}
		o, err := redisstore.ParseURL(sc.URL)
		if err != nil {
			return o, fmt.Errorf("twostep: store redis: %w", err)
		}
		// The URL names one server, its database and credentials; a
		// setting beside it must not be dropped in silence (a password
		// not sent, another application's database used).
		switch {
		case sc.MasterName != "":
			return redisstore.Options{}, errors.New("twostep: store redis: master_name names Sentinels: list them in addrs instead of a URL")
		case sc.DB != 0:
			return redisstore.Options{}, fmt.Errorf("twostep: store redis: with a URL, the database is its path (redis://host:6379/%d), not db", sc.DB)
		case (sc.Username != "" || sc.Password != "") && (o.Username != "" || o.Password != ""):
			return redisstore.Options{}, errors.New("twostep: store redis: the URL holds a user and password already; give them in one place")
		case sc.Username != "" || sc.Password != "":
			o.Username, o.Password = sc.Username, sc.Password
		}
		return o, nil
	}
	if len(sc.Addrs) == 0 {
		return redisstore.Options{}, errors.New("twostep: store redis: no server (give a URL or addrs)")
	}
	for _, addr := range sc.Addrs {
		host, port, err := net.SplitHostPort(addr)
		if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
			return redisstore.Options{}, fmt.Errorf("twostep: store redis: addrs: %q is not host:port", addr)
		}
	}
	return redisstore.Options{Addrs: sc.Addrs, MasterName: sc.MasterName, Username: sc.Username, Password: sc.Password, DB: sc.DB}, nil
}

// poolKey names the shared store across configurations.
func (sc *StoreConfig) poolKey() string {
	if sc.Type == "redis" {
		return "redis:" + sc.URL + "|" + strings.Join(sc.Addrs, ",") + "|" + sc.MasterName + "|" + sc.Username + "|" + strconv.Itoa(sc.DB)
	}
	// One file, however the path is spelled (./x.db, //x.db, relative).
	p := filepath.Clean(sc.Path)
	if abs, err := filepath.Abs(p); err == nil {
		p = abs
	}
	return "bolt:" + p
}

// SessionConfig sets session lifetimes.
type SessionConfig struct {
	// Idle ends a session unused for this long. Default 30m.
	Idle caddy.Duration `json:"idle,omitempty"`
	// Lifetime ends a session this long after sign-in. Default 12h.
	Lifetime caddy.Duration `json:"lifetime,omitempty"`
}

// RegulationConfig sets the password-guessing limits.
type RegulationConfig struct {
	// MaxRetries failures within FindTime cause a ban. Default 5.
	MaxRetries int `json:"max_retries,omitempty"`
	// FindTime is the window failures are counted in. Default 10m.
	FindTime caddy.Duration `json:"find_time,omitempty"`
	// BanTime is how long a ban lasts. Default 15m.
	BanTime caddy.Duration `json:"ban_time,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "twostep",
		New: func() caddy.Module { return new(App) },
	}
}

// Provision sets defaults and loads the users file. It does no network I/O
// and does not open the store (Start does), so `caddy validate` runs beside
// a live server.
func (a *App) Provision(ctx caddy.Context) error {
	a.ctx = ctx
	a.storage = ctx.Storage()
	a.logger = ctx.Logger()
	a.run = new(appRun)
	a.registerMetrics(ctx.GetMetricsRegistry())
	if err := a.expandPlaceholders(); err != nil {
		return err
	}
	if a.Store == nil {
		a.Store = &StoreConfig{Type: "bolt"}
	}
	if a.Store.Type == "" {
		a.Store.Type = "bolt"
	}
	if a.Store.Type == "bolt" && a.Store.Path == "" {
		a.Store.Path = filepath.Join(caddy.AppDataDir(), "twostep", "twostep.db")
	}
	if a.Session == nil {
		a.Session = &SessionConfig{}
	}
	if a.Session.Idle == 0 {
		a.Session.Idle = defaultSessionIdle
	}
	if a.Session.Lifetime == 0 {
		a.Session.Lifetime = defaultSessionLifetime
	}
	if a.Regulation == nil {
		a.Regulation = &RegulationConfig{}
	}
	if a.Regulation.MaxRetries == 0 {
		a.Regulation.MaxRetries = 5
	}
	if a.Regulation.FindTime == 0 {
		a.Regulation.FindTime = caddy.Duration(10 * time.Minute)
	}
	if a.Regulation.BanTime == 0 {
		a.Regulation.BanTime = caddy.Duration(15 * time.Minute)
	}
	if a.TwoStep == "" {
		a.TwoStep = "optional"
	}
	if a.TrustedDevice == nil {
		a.TrustedDevice = &TrustedDeviceConfig{}
	}
	if a.TrustedDevice.Lifetime == 0 {
		a.TrustedDevice.Lifetime = caddy.Duration(30 * 24 * time.Hour)
	}
	if a.TOTP == nil {
		a.TOTP = &TOTPConfig{}
	}
	if a.TOTP.Skew == nil {
		one := uint(1)
		a.TOTP.Skew = &one
	}
	if a.Code == nil {
		a.Code = &CodeConfig{}
	}
	if a.Code.Length == 0 {
		a.Code.Length = 6
	}
	if a.Code.Lifetime == 0 {
		a.Code.Lifetime = caddy.Duration(10 * time.Minute)
	}
	if a.Code.ResendAfter == 0 {
		a.Code.ResendAfter = caddy.Duration(30 * time.Second)
	}
	if a.Code.MaxSendsPerHour == 0 {
		a.Code.MaxSendsPerHour = 5
	}
	if err := a.Validate(); err != nil {
		return err
	}
	senders, err := a.buildSenders()
	if err != nil {
		return err
	}
	a.senders = senders
	for _, oc := range a.OIDC {
		pr, err := oidc.New(oc.config(a.knownUser))
		if err != nil {
			return fmt.Errorf("twostep: %w", err) // err names the provider
		}
		a.providers = append(a.providers, pr)
	}
	a.CookieDomain = strings.ToLower(strings.TrimSuffix(a.CookieDomain, "."))
	if a.UsersFile != "" {
		f, err := users.Open(a.UsersFile, a.logger.Named("users"))
		if err != nil {
			return fmt.Errorf("twostep: users_file: %w", err)
		}
		a.users = f
		run := a.run
		f.OnChange(func(old, cur *users.DB) {
			run.idents.reset()
			// Devices of a changed password stopped counting already;
			// remove and count them (bounded: the watcher waits).
			if svc := run.service.Load(); svc != nil {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				svc.PasswordsChanged(ctx, old, cur)
			}
		})
	}
	return nil
}

// expandPlaceholders replaces {env.*} and other global placeholders in the
// values that usually come from the environment (secrets, tokens, paths).
// A value written but empty once expanded (an unset variable) is refused:
// an empty secret would otherwise be generated and kept in the store, next
// to what it encrypts, and an empty password not sent at all.
func (a *App) expandPlaceholders() error {
	repl := caddy.NewReplacer()
	type field struct {
		name string
		p    *string
	}
	fields := []field{{"users_file", &a.UsersFile}, {"secret", &a.Secret}, {"cookie_domain", &a.CookieDomain}, {"site_name", &a.SiteName}}
	if st := a.Store; st != nil {
		fields = append(fields, field{"store: path", &st.Path}, field{"store: url", &st.URL}, field{"store: username", &st.Username},
			field{"store: password", &st.Password}, field{"store: master_name", &st.MasterName}, field{"store: instance", &st.Instance})
		for i := range st.Addrs {
			fields = append(fields, field{"store: addrs", &st.Addrs[i]})
		}
	}
	for _, ch := range []struct {
		name string
		list []ProviderConfig
	}{{"sms", a.SMS}, {"voice", a.Voice}} {
		for i := range ch.list {
			pc := &ch.list[i]
			where := fmt.Sprintf("%s provider %d: ", ch.name, i+1)
			fields = append(fields, field{where + "account_sid", &pc.AccountSID}, field{where + "auth_token", &pc.AuthToken},
				field{where + "from", &pc.From}, field{where + "endpoint", &pc.Endpoint}, field{where + "url", &pc.URL}, field{where + "secret", &pc.Secret})
		}
	}
	if em := a.Email; em != nil {
		fields = append(fields, field{"email smtp: address", &em.Address}, field{"email smtp: username", &em.Username},
			field{"email smtp: password", &em.Password}, field{"email smtp: from", &em.From})
	}
	for i := range a.OIDC {
		oc := &a.OIDC[i]
		where := "oidc " + oc.Name + ": "
		fields = append(fields, field{where + "issuer", &oc.Issuer}, field{where + "client_id", &oc.ClientID}, field{where + "client_secret", &oc.ClientSecret})
	}
	for _, f := range fields {
		raw := *f.p
		*f.p = repl.ReplaceKnown(raw, "")
		if raw != "" && strings.TrimSpace(*f.p) == "" {
			// raw is only placeholders here: naming it shows no secret.
			return fmt.Errorf("twostep: %s: %q is empty once expanded (an unset environment variable?); set it, or remove the option", f.name, raw)
		}
	}
	return nil
}

// The session option's defaults.
const (
	defaultSessionIdle     = caddy.Duration(30 * time.Minute)
	defaultSessionLifetime = caddy.Duration(12 * time.Hour)
)

// config is the provider's oidc.Config; knownUser may be nil where only
// the values are checked.
func (oc OIDCConfig) config(knownUser func(string) bool) oidc.Config {
	return oidc.Config{
		Name: oc.Name, Issuer: oc.Issuer, ClientID: oc.ClientID, ClientSecret: oc.ClientSecret, Scopes: oc.Scopes,
		Label: oc.Label, TrustIdPMFA: oc.TrustIdPMFA, ACRs: oc.ACRs, UsernameClaim: oc.UsernameClaim,
		GroupsClaim: oc.GroupsClaim, AllowUnknownUsers: oc.AllowUnknownUsers,
		KnownUser: knownUser,
	}
}

// Validate checks the configuration.
func (a *App) Validate() error {
	if a.UsersFile == "" {
		return errors.New("twostep: users_file is required")
	}
	switch a.Store.Type {
	case "bolt":
		if st := a.Store; st.URL != "" || len(st.Addrs) > 0 || st.MasterName != "" || st.Username != "" || st.Password != "" || st.DB != 0 {
			return errors.New("twostep: store bolt: url, addrs, master_name, username, password and db are Redis settings (set type redis, or remove them)")
		}
	case "redis":
		if a.Store.Path != "" {
			return errors.New("twostep: store redis: path is a bolt setting (remove it)")
		}
		if _, err := a.Store.redisOptions(); err != nil {
			return err
		}
	default:
		return fmt.Errorf("twostep: store: unknown type %q (want bolt or redis)", a.Store.Type)
	}
	if a.Store.Instance != "" && !validInstance(a.Store.Instance) {
		return fmt.Errorf("twostep: store: instance %q: want the 32 hex digits the store was given (its log line \"new store\" names them)", a.Store.Instance)
	}
	if a.Secret != "" && len(a.Secret) < 32 {
		return fmt.Errorf("twostep: secret is %d bytes long; it must be at least 32", len(a.Secret))
	}
	if a.Secret != "" && len(strings.TrimSpace(a.Secret)) < 32 {
		return errors.New("twostep: secret: at least 32 bytes besides leading and trailing spaces (an unset environment variable?)")
	}
	if a.TwoStep != "optional" && a.TwoStep != "required" {
		return fmt.Errorf("twostep: two_step %q: want optional or required", a.TwoStep)
	}
	if a.TOTP.Skew != nil && *a.TOTP.Skew > 10 {
		return fmt.Errorf("twostep: totp: skew %d is too wide (at most 10 steps)", *a.TOTP.Skew)
	}
	if a.Code.Length < 6 || a.Code.Length > 10 {
		return fmt.Errorf("twostep: code: length %d: want 6 to 10 digits", a.Code.Length)
	}
	// The same bounds as the Caddyfile's, for JSON configurations: a value
	// outside them would switch a protection off (a million retries, a
	// nanosecond ban) or let one request exhaust the server (max_size).
	checks := []struct {
		ok  bool
		msg string
	}{
		{a.Code.Lifetime >= caddy.Duration(time.Second), "code: lifetime must be at least 1s"},
		{a.Code.ResendAfter >= 0, "code: resend_after must not be negative"},
		{a.Code.MaxSendsPerHour >= 1 && a.Code.MaxSendsPerHour <= 1000, "code: max_sends_per_hour must be 1 to 1000"},
		{a.Session.Idle >= caddy.Duration(time.Second), "session: idle must be at least 1s"},
		{a.Session.Lifetime >= caddy.Duration(time.Second), "session: lifetime must be at least 1s"},
		{a.Regulation.MaxRetries >= 1 && a.Regulation.MaxRetries <= 1000, "regulation: max_retries must be 1 to 1000"},
		{a.Regulation.FindTime >= caddy.Duration(time.Second), "regulation: find_time must be at least 1s"},
		{a.Regulation.BanTime >= caddy.Duration(time.Second), "regulation: ban_time must be at least 1s"},
		{a.TrustedDevice.Lifetime >= caddy.Duration(time.Second), "trusted_device: lifetime must be at least 1s"},
	}
	if rc := a.Recovery; rc != nil {
		checks = append(checks, []struct {
			ok  bool
			msg string
		}{
			{rc.Approvals >= 0 && rc.Approvals <= 10, "recovery: approvals must be 1 to 10"},
			{rc.MaxSize == 0 || (rc.MaxSize >= 1<<10 && rc.MaxSize <= 100<<20), "recovery: max_size must be 1KiB to 100MiB"},
			{rc.Retention >= 0, "recovery: retention must not be negative"},
			{rc.CoolingOff >= 0, "recovery: cooling_off must not be negative"},
		}...)
	}
	for _, c := range checks {
		if !c.ok {
			return errors.New("twostep: " + c.msg)
		}
	}
	if a.Recovery != nil {
		if a.Recovery.ReviewGroup == "" {
			return errors.New("twostep: recovery: review_group is required")
		}
		if a.Recovery.AfterApproval != "" && a.Recovery.AfterApproval != "password_only" && a.Recovery.AfterApproval != "enroll" {
			return fmt.Errorf("twostep: recovery: after_approval %q: want password_only or enroll", a.Recovery.AfterApproval)
		}
	}
	if a.Code.EmailCodes && a.Email == nil && !a.DevOutbox {
		return errors.New("twostep: code: email_codes needs an `email` server (or dev_outbox)")
	}
	if time.Duration(a.Session.Idle) > time.Duration(a.Session.Lifetime) {
		return fmt.Errorf("twostep: session: idle (%s) is longer than lifetime (%s)",
			time.Duration(a.Session.Idle), time.Duration(a.Session.Lifetime))
	}
	if a.CookieDomain != "" {
		if err := checkCookieDomain(a.CookieDomain); err != nil {
			return err
		}
	}
	return nil
}

// checkCookieDomain refuses a cookie_domain that is not a domain of its
// own: a top-level domain, or a public suffix (co.uk, github.io), whose
// cookie browsers refuse and under which every host, anyone's, would
// count as one of this server's for return URLs.
func checkCookieDomain(raw string) error {
	d := strings.ToLower(strings.Trim(raw, "."))
	if strings.ContainsAny(d, "/:*@ ") {
		return fmt.Errorf("twostep: cookie_domain %q must be a bare domain name", raw)
	}
	if !strings.Contains(d, ".") {
		return fmt.Errorf("twostep: cookie_domain %q is a top-level domain; name the site's own domain (e.g. example.com)", raw)
	}
	if ps, _ := publicsuffix.PublicSuffix(d); ps == d {
		return fmt.Errorf("twostep: cookie_domain %q is a public suffix, shared by unrelated sites; name the site's own domain (e.g. example.co.uk)", raw)
	}
	return nil
}

// pooledStore is a store shared by every configuration that names the same
// file, so that a reload (which provisions the new app before the old one
// stops) never opens the file twice.
type pooledStore struct {
	*cache.Store
	stop   context.CancelFunc
	bolt   *bolt.DB // the file under the cache; nil on Redis
	health *storeHealth
}

// Destruct closes the store when the last configuration using it is gone.
func (p *pooledStore) Destruct() error {
	p.stop()
	return p.Store.Close()
}

var stores = caddy.NewUsagePool()

// Start opens (or shares) the store, settles the secret and starts the
// users-file watcher.
func (a *App) Start() error {
	if err := a.checkOutboxListeners(); err != nil {
		return err
	}
	a.poolKey = a.Store.poolKey()
	val, _, err := stores.LoadOrNew(a.poolKey, func() (caddy.Destructor, error) {
		if a.Store.Type == "redis" {
			opts, err := a.Store.redisOptions()
			if err != nil {
				return nil, err
			}
			rs, err := redisstore.New(opts)
			if err != nil {
				return nil, err
			}
			// Other nodes write too: they announce every session change (and
			// every device and epoch write) on Redis pub/sub, and a cached session is trusted for at most a
			// second, which also bounds how long a session already in memory
			// keeps working once Redis is unreachable.
			c := cache.New(measured{rs}, time.Second, account.CachedPrefixes...)
			ctx, cancel := context.WithCancel(context.Background())
			c.Listen(ctx, rs)
			health := &storeHealth{keys: a.Store.instanceKeys()}
			go health.watch(ctx, measured{rs}, pingEvery, a.logger.Named("store"))
			return &pooledStore{Store: c, stop: cancel, health: health}, nil
		}
		db, err := bolt.Open(a.Store.Path, bolt.Options{})
		if err != nil {
			return nil, err
		}
		ctx, cancel := context.WithCancel(context.Background())
		log := a.logger.Named("store")
		db.StartSweeper(ctx, time.Minute, time.Now, func(err error) {
			log.Error("sweeping expired records", zap.Error(err))
		})
		// This process is the file's only writer: every change goes
		// through the cache, which may keep sessions for long.
		health := &storeHealth{keys: a.Store.instanceKeys()}
		go health.watch(ctx, measured{db}, pingEvery, log)
		return &pooledStore{Store: cache.New(measured{db}, 5*time.Minute, account.CachedPrefixes...), stop: cancel, bolt: db, health: health}, nil
	})
	if err != nil {
		return fmt.Errorf("twostep: opening the %s store: %w", a.Store.Type, err)
	}
	st := val.(*pooledStore)
	if id, desc, err := a.Store.identity(); err == nil {
		about := desc + ", marker " + markerPlace(a.storage, markerKey(id))
		st.health.about.Store(&about)
	}
	guard := func(ctx context.Context) (string, error) {
		return guardStore(ctx, a.storage, st, a.Store, time.Now(), a.logger.Named("store"))
	}
	gctx, gcancel := context.WithTimeout(context.Background(), 5*time.Second)
	instance, err := guard(gctx)
	gcancel()
	switch {
	case err == nil:
		st.health.expect(instance)
	case errors.Is(err, errStoreUnread) && a.Secret != "":
		// Unreachable for now (Redis starting after Caddy): start, and
		// answer 503 until the store can be checked.
		a.logger.Error("store not checked yet: answering 503 until it answers", zap.Error(err))
		st.health.pending(guard, a.Store.Instance)
	default:
		_, _ = stores.Delete(a.poolKey)
		return err
	}
	secret, err := a.secret(st)
	if err != nil {
		_, _ = stores.Delete(a.poolKey)
		return err
	}
	svc, err := account.New(account.Config{
		SessionIdle:     time.Duration(a.Session.Idle),
		SessionLifetime: time.Duration(a.Session.Lifetime),
		Regulation: account.Regulation{
			MaxRetries: a.Regulation.MaxRetries,
			FindTime:   time.Duration(a.Regulation.FindTime),
			BanTime:    time.Duration(a.Regulation.BanTime),
		},
		Secret:          secret,
		TwoStepRequired: a.TwoStep == "required",
		Code: account.CodeConfig{
			Length:          a.Code.Length,
			Lifetime:        time.Duration(a.Code.Lifetime),
			ResendAfter:     time.Duration(a.Code.ResendAfter),
			MaxSendsPerHour: a.Code.MaxSendsPerHour,
			EmailCodes:      a.Code.EmailCodes,
		},
		SiteName:              a.SiteName,
		Senders:               a.senders,
		TrustedDeviceLifetime: time.Duration(a.TrustedDevice.Lifetime),
		Recovery:              a.recoveryConfig(),
		Providers:             a.providerNames(),
		StoreIntact:           st.health.intact(st),
	}, st, a.users, nil, a.logger)
	if err == nil {
		svc.SetTOTP(a.TOTP.Issuer, *a.TOTP.Skew)
	}
	if err != nil {
		_, _ = stores.Delete(a.poolKey)
		return fmt.Errorf("twostep: %w", err)
	}

	svc.SetAuditLogger(a.logger.Named("audit"))
	svc.SetMetrics(promMetrics{})
	ctx, cancel := context.WithCancel(context.Background())
	a.users.Watch(ctx)
	if a.Recovery != nil {
		go a.sweepRecovery(ctx, svc)
	}
	for _, pr := range a.providers {
		// Discovery is network I/O: at start, in the background; a provider
		// that is unreachable shows it on its button and is retried.
		go func() {
			if err := pr.Discover(ctx); err != nil && ctx.Err() == nil {
				a.logger.Warn("OpenID provider discovery failed", zap.String("provider", pr.Name()), zap.Error(err))
			}
		}()
	}
	a.run.mu.Lock()
	a.run.service.Store(svc)
	a.run.cancel = cancel
	a.run.bolt = st.bolt
	a.run.health.Store(st.health)
	a.run.mu.Unlock()
	return nil
}

// secret returns the configured secret, or the one kept in the store
// (generated on first start).
func (a *App) secret(st store.Store) ([]byte, error) {
	if a.Secret != "" {
		return []byte(a.Secret), nil
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	v, _, err := st.PutIfAbsent(ctx, "config:secret", b, 0, time.Now())
	if err != nil {
		return nil, fmt.Errorf("twostep: reading the secret from the store: %w", err)
	}
	if len(v) < 32 {
		return nil, errors.New("twostep: the secret kept in the store is too short; set `secret`")
	}
	return v, nil
}

// Stop stops the watcher and releases this configuration's use of the store.
func (a *App) Stop() error {
	a.run.mu.Lock()
	defer a.run.mu.Unlock()
	if a.run.cancel != nil {
		a.run.cancel()
		a.run.cancel = nil
	}
	a.run.bolt = nil
	if a.run.service.Swap(nil) != nil {
		if _, err := stores.Delete(a.poolKey); err != nil {
			return err
		}
	}
	return nil
}

// Cleanup releases what Provision acquired.
func (a *App) Cleanup() error {
	if a.users != nil {
		return a.users.Close()
	}
	return nil
}

// providerNames lists the configured identity providers.
func (a *App) providerNames() []string {
	names := make([]string, 0, len(a.OIDC))
	for _, oc := range a.OIDC {
		names = append(names, oc.Name)
	}
	return names
}

// storeDown reports whether the running store failed its last ping.
func (a *App) storeDown() bool { return a.run.health.Load().Down() }

// storeReplaced reports whether the running store was found emptied or
// replaced (guard.go).
func (a *App) storeReplaced() bool { return a.run.health.Load().Replaced() }

// Service returns the running account service, or nil before Start or
// after Stop (callers answer 503).
func (a *App) Service() *account.Service { return a.run.service.Load() }

// errNoFile: the running store is not the embedded file.
var errNoFile = errors.New("the store is not the embedded bolt file")

// Backup writes a consistent copy of the embedded store file while it
// stays in use (see bolt.DB.Backup); errNoFile on Redis, whose own
// persistence is the backup.
func (a *App) Backup(ctx context.Context, start func(size int64) io.Writer) (int64, error) {
	a.run.mu.Lock()
	db := a.run.bolt
	a.run.mu.Unlock()
	if db == nil {
		return 0, errNoFile
	}
	return db.Backup(ctx, start)
}

// Interface guards.
var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.Validator    = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
	_ caddy.Destructor   = (*pooledStore)(nil)
)

func (a *App) recoveryConfig() account.RecoveryConfig {
	if a.Recovery == nil {
		return account.RecoveryConfig{}
	}
	r := a.Recovery
	return account.RecoveryConfig{
		Enabled: true, ReviewGroup: r.ReviewGroup, Approvals: r.Approvals, MaxSize: r.MaxSize,
		Expected: r.Expected, Retention: time.Duration(r.Retention), CoolingOff: time.Duration(r.CoolingOff),
		AfterApproval: r.AfterApproval,
	}
}

// sweepRecovery applies approvals after cooling-off, expires old requests
// and deletes documents past retention, every 30 seconds (and once at
// start, so a restart catches up at once).
func (a *App) sweepRecovery(ctx context.Context, svc *account.Service) {
	log := a.logger.Named("recovery")
	t := time.NewTicker(30 * time.Second)
	defer t.Stop()
	for {
		sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		if err := svc.SweepRecovery(sctx); err != nil && ctx.Err() == nil {
			log.Error("recovery sweep", zap.Error(err))
		}
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// knownUser reports whether name is in the users file (OIDC sign-ins).
func (a *App) knownUser(name string) bool {
	if a.users == nil {
		return false
	}
	u, ok := a.users.DB().Lookup(name)
	return ok && !u.Disabled
}
