package caddymodule

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"

	"github.com/twostep-auth/twostep/policy"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("twostep", parseGlobal)
	httpcaddyfile.RegisterDirective("twostep", setupDirective)
	httpcaddyfile.RegisterDirectiveOrder("twostep", httpcaddyfile.Before, "basic_auth")
}

// Options of the global block that later versions add; naming one is an
// error rather than being silently ignored.
var notYetGlobal = map[string]bool{}

// parseGlobal reads the `twostep` global option:
//
//	twostep {
//		users_file <path>
//		store bolt [<path>]
//		secret <value>
//		cookie_domain <domain>
//		two_step optional
//		site_name <name>
//		session {
//			idle <duration>
//			lifetime <duration>
//		}
//		regulation {
//			max_retries <n>
//			find_time <duration>
//			ban_time <duration>
//		}
//		trusted_device {
//			lifetime <duration>
//		}
//		totp {
//			issuer <name>
//			skew <steps>
//		}
//		code {
//			length <digits>
//			lifetime <duration>
//			resend_after <duration>
//			max_sends_per_hour <n>
//			email_codes on|off
//		}
//		sms|voice twilio {
//			account_sid <sid>
//			auth_token <token>
//			from <E.164 number>
//			endpoint <url>
//		}
//		sms|voice webhook <url> {
//			secret <secret>
//		}
//		email smtp <host:port> {
//			username <user>
//			password <password>
//			from <address>
//			tls starttls|implicit|none
//		}
//		recovery {
//			review_group <group>
//			approvals <n>
//			max_size <size>
//			expected <text>
//			retention <duration>
//			cooling_off <duration>
//			after_approval password_only|enroll
//		}
//		dev_outbox
//	}
func parseGlobal(d *caddyfile.Dispenser, existing any) (any, error) {
	app := new(App)
	if existing != nil {
		return nil, d.Err("the twostep global option may appear only once")
	}
	d.Next() // option name
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	top := onceSet{}
	// Where options that are checked together once the block is read
	// were given, to name their line.
	var sessionTok, emailCodesTok caddyfile.Token
	for d.NextBlock(0) {
		if err := top.check(d, "sms", "voice", "oidc"); err != nil {
			return nil, err
		}
		opt := d.Val()
		switch opt {
		case "users_file":
			if err := oneArg(d, &app.UsersFile); err != nil {
				return nil, err
			}
		case "secret":
			if err := oneArg(d, &app.Secret); err != nil {
				return nil, err
			}
			if len(app.Secret) < 32 && !strings.Contains(app.Secret, "{") {
				return nil, d.Errf("secret is %d bytes long; it must be at least 32", len(app.Secret))
			}
		case "cookie_domain":
			if err := oneArg(d, &app.CookieDomain); err != nil {
				return nil, err
			}
			if strings.ContainsAny(app.CookieDomain, "/:*@ ") || strings.HasPrefix(app.CookieDomain, ".") {
				return nil, d.Errf("cookie_domain %q must be a bare domain name such as example.com", app.CookieDomain)
			}
			if !strings.Contains(app.CookieDomain, "{") {
				if err := checkCookieDomain(app.CookieDomain); err != nil {
					return nil, d.Err(strings.TrimPrefix(err.Error(), "twostep: "))
				}
			}
		case "two_step":
			if err := oneArg(d, &app.TwoStep); err != nil {
				return nil, err
			}
			switch app.TwoStep {
			case "optional", "required":
			default:
				return nil, d.Errf("two_step %q: want optional or required", app.TwoStep)
			}
		case "site_name":
			if err := oneArg(d, &app.SiteName); err != nil {
				return nil, err
			}
		case "store":
			if !d.NextArg() {
				return nil, d.ArgErr()
			}
			st := &StoreConfig{Type: d.Val()}
			switch st.Type {
			case "bolt":
				if d.NextArg() {
					st.Path = d.Val()
				}
				if d.NextArg() {
					return nil, d.ArgErr()
				}
				for nesting := d.Nesting(); d.NextBlock(nesting); {
					if d.Val() != "instance" {
						return nil, d.Errf("store bolt: unknown option %q (want instance)", d.Val())
					}
					if st.Instance != "" {
						return nil, d.Err("store bolt: instance is set twice")
					}
					if err := oneArg(d, &st.Instance); err != nil {
						return nil, err
					}
				}
			case "redis":
				if d.NextArg() {
					st.URL = d.Val()
					if d.NextArg() {
						return nil, d.ArgErr()
					}
				}
				seen := onceSet{}
				for nesting := d.Nesting(); d.NextBlock(nesting); {
					if err := seen.check(d); err != nil {
						return nil, err
					}
					var err error
					switch d.Val() {
					case "addrs":
						st.Addrs = d.RemainingArgs()
						if len(st.Addrs) == 0 {
							err = d.Err("addrs: name at least one host:port")
						}
					case "master_name":
						if st.URL != "" {
							return nil, d.Err("store redis: master_name names Sentinels: list them with addrs instead of a URL")
						}
						err = oneArg(d, &st.MasterName)
					case "username", "password":
						if u, perr := url.Parse(st.URL); perr == nil && u.User != nil {
							return nil, d.Errf("store redis: the URL holds a user and password already; give %s in one place", d.Val())
						}
						if d.Val() == "username" {
							err = oneArg(d, &st.Username)
						} else {
							err = oneArg(d, &st.Password)
						}
					case "db":
						if st.URL != "" {
							return nil, d.Err("store redis: with a URL, the database is its path (redis://host:6379/2), not db")
						}
						st.DB, err = intArg(d, 0, 15)
					case "instance":
						err = oneArg(d, &st.Instance)
					default:
						return nil, d.Errf("store redis: unknown option %q (want addrs, master_name, username, password, db or instance)", d.Val())
					}
					if err != nil {
						return nil, err
					}
				}
				if st.URL == "" && len(st.Addrs) == 0 {
					return nil, d.Err("store redis: give a redis:// URL or a block with addrs")
				}
			default:
				return nil, d.Errf("store %q: want bolt or redis", st.Type)
			}
			app.Store = st
		case "session":
			if d.NextArg() {
				return nil, d.ArgErr()
			}
			sessionTok = d.Token()
			app.Session = new(SessionConfig)
			seen := onceSet{}
			for nesting := d.Nesting(); d.NextBlock(nesting); {
				if err := seen.check(d); err != nil {
					return nil, err
				}
				switch d.Val() {
				case "idle":
					if err := durationArg(d, &app.Session.Idle, time.Second); err != nil {
						return nil, err
					}
				case "lifetime":
					if err := durationArg(d, &app.Session.Lifetime, time.Second); err != nil {
						return nil, err
					}
				default:
					return nil, d.Errf("session: unknown option %q (want idle or lifetime)", d.Val())
				}
			}
		case "regulation":
			if d.NextArg() {
				return nil, d.ArgErr()
			}
			app.Regulation = new(RegulationConfig)
			seen := onceSet{}
			for nesting := d.Nesting(); d.NextBlock(nesting); {
				if err := seen.check(d); err != nil {
					return nil, err
				}
				switch d.Val() {
				case "max_retries":
					n, err := intArg(d, 1, 1000)
					if err != nil {
						return nil, err
					}
					app.Regulation.MaxRetries = n
				case "find_time":
					if err := durationArg(d, &app.Regulation.FindTime, time.Second); err != nil {
						return nil, err
					}
				case "ban_time":
					if err := durationArg(d, &app.Regulation.BanTime, time.Second); err != nil {
						return nil, err
					}
				default:
					return nil, d.Errf("regulation: unknown option %q (want max_retries, find_time or ban_time)", d.Val())
				}
			}
		case "totp":
			if d.NextArg() {
				return nil, d.ArgErr()
			}
			app.TOTP = new(TOTPConfig)
			seen := onceSet{}
			for nesting := d.Nesting(); d.NextBlock(nesting); {
				if err := seen.check(d); err != nil {
					return nil, err
				}
				switch d.Val() {
				case "issuer":
					if err := oneArg(d, &app.TOTP.Issuer); err != nil {
						return nil, err
					}
				case "skew":
					n, err := intArg(d, 0, 10)
					if err != nil {
						return nil, err
					}
					u := uint(n)
					app.TOTP.Skew = &u
				default:
					return nil, d.Errf("totp: unknown option %q (want issuer or skew)", d.Val())
				}
			}
		case "code":
			if d.NextArg() {
				return nil, d.ArgErr()
			}
			app.Code = new(CodeConfig)
			seen := onceSet{}
			for nesting := d.Nesting(); d.NextBlock(nesting); {
				if err := seen.check(d); err != nil {
					return nil, err
				}
				var err error
				switch d.Val() {
				case "length":
					app.Code.Length, err = intArg(d, 6, 10)
				case "lifetime":
					err = durationArg(d, &app.Code.Lifetime, time.Second)
				case "resend_after":
					err = durationArg(d, &app.Code.ResendAfter, 0)
				case "max_sends_per_hour":
					app.Code.MaxSendsPerHour, err = intArg(d, 1, 1000)
				case "email_codes":
					emailCodesTok = d.Token()
					app.Code.EmailCodes, err = onOff(d)
				default:
					return nil, d.Errf("code: unknown option %q (want length, lifetime, resend_after, max_sends_per_hour or email_codes)", d.Val())
				}
				if err != nil {
					return nil, err
				}
			}
		case "sms", "voice":
			tok := d.Token()
			pc, err := parseProvider(d, opt)
			if err != nil {
				return nil, err
			}
			list := &app.SMS
			if opt == "voice" {
				list = &app.Voice
			}
			*list = append(*list, pc)
			if _, err := buildProvider(opt, len(*list), standIns(pc)); err != nil {
				return nil, atLine(tok, err)
			}
		case "email":
			if app.Email != nil {
				return nil, d.Err("email: only one mail server may be configured")
			}
			tok := d.Token()
			em, err := parseEmail(d)
			if err != nil {
				return nil, err
			}
			probe := *em
			probe.Address = standIn(em.Address, "localhost:25")
			probe.Username, probe.Password = standIn(em.Username, "user"), standIn(em.Password, "password")
			probe.From = standIn(em.From, "a@example.com")
			if _, err := buildSMTP(&probe); err != nil {
				return nil, atLine(tok, err)
			}
			app.Email = em
		case "trusted_device":
			if d.NextArg() {
				return nil, d.ArgErr()
			}
			app.TrustedDevice = new(TrustedDeviceConfig)
			seen := onceSet{}
			for nesting := d.Nesting(); d.NextBlock(nesting); {
				if err := seen.check(d); err != nil {
					return nil, err
				}
				switch d.Val() {
				case "lifetime":
					if err := durationArg(d, &app.TrustedDevice.Lifetime, time.Second); err != nil {
						return nil, err
					}
				default:
					return nil, d.Errf("trusted_device: unknown option %q (want lifetime)", d.Val())
				}
			}
		case "oidc":
			tok := d.Token()
			oc, err := parseOIDC(d)
			if err != nil {
				return nil, err
			}
			cfg := oc.config(nil)
			cfg.Issuer = standIn(cfg.Issuer, "https://issuer.invalid")
			cfg.ClientID, cfg.ClientSecret = standIn(cfg.ClientID, "client"), standIn(cfg.ClientSecret, "secret")
			if err := cfg.Validate(); err != nil {
				return nil, atLine(tok, err)
			}
			for _, other := range app.OIDC {
				if other.Name == oc.Name {
					return nil, d.Errf("oidc %q is configured twice", oc.Name)
				}
			}
			app.OIDC = append(app.OIDC, oc)
		case "recovery":
			rc, err := parseRecovery(d)
			if err != nil {
				return nil, err
			}
			app.Recovery = rc
		case "dev_outbox":
			if d.NextArg() {
				return nil, d.ArgErr()
			}
			app.DevOutbox = true
		default:
			if notYetGlobal[opt] {
				return nil, d.Errf("twostep option %q is not available in this version", opt)
			}
			return nil, d.Errf("unknown twostep option %q", opt)
		}
	}
	if app.Session != nil {
		idle, lifetime := app.Session.Idle, app.Session.Lifetime
		if idle == 0 {
			idle = defaultSessionIdle
		}
		if lifetime == 0 {
			lifetime = defaultSessionLifetime
		}
		if idle > lifetime {
			var why string
			if app.Session.Idle == 0 {
				why = "; idle defaults to " + time.Duration(defaultSessionIdle).String() + ": set it too"
			}
			return nil, atLine(sessionTok, fmt.Errorf("session: idle (%s) is longer than lifetime (%s)%s", time.Duration(idle), time.Duration(lifetime), why))
		}
	}
	if app.Code != nil && app.Code.EmailCodes && app.Email == nil && !app.DevOutbox {
		return nil, atLine(emailCodesTok, errors.New("code: email_codes needs an `email` server (or dev_outbox)"))
	}
	return httpcaddyfile.App{Name: "twostep", Value: caddyconfig.JSON(app, nil)}, nil
}

// standIn is v for a check made while the Caddyfile is adapted, or
// example, a value of the right form, when v holds a placeholder (which
// only Provision expands, and checks then): the block's other values are
// still checked here, with their line.
func standIn(v, example string) string {
	if strings.Contains(v, "{") {
		return example
	}
	return v
}

// standIns is pc with stand-ins for its placeholders (see standIn).
func standIns(pc ProviderConfig) ProviderConfig {
	pc.AccountSID = standIn(pc.AccountSID, "AC"+strings.Repeat("0", 32))
	pc.AuthToken = standIn(pc.AuthToken, "token")
	pc.From = standIn(pc.From, "+15550000000")
	pc.Endpoint = standIn(pc.Endpoint, "https://api.twilio.com")
	pc.URL = standIn(pc.URL, "https://webhook.invalid/")
	pc.Secret = standIn(pc.Secret, "secret")
	return pc
}

// atLine reports err, one found once a block was read, at the line of tok
// (the option whose block it is about) and its import chain, as the
// Dispenser's own errors do.
func atLine(tok caddyfile.Token, err error) error {
	d := caddyfile.NewDispenser([]caddyfile.Token{tok})
	d.Next()
	return d.Err(strings.TrimPrefix(err.Error(), "twostep: "))
}

// onceSet refuses an option given twice in one block, where the later
// would silently override the earlier (a second `default`, a second
// `store`); repeatable lists the options that may recur.
type onceSet map[string]bool

func (s onceSet) check(d *caddyfile.Dispenser, repeatable ...string) error {
	opt := d.Val()
	if slices.Contains(repeatable, opt) || opt == "addrs" || opt == "scopes" {
		return nil
	}
	if s[opt] {
		return d.Errf("%s is set twice in this block (the second would override the first)", opt)
	}
	s[opt] = true
	return nil
}

func intArg(d *caddyfile.Dispenser, lo, hi int) (int, error) {
	name := d.Val()
	var s string
	if err := oneArg(d, &s); err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		return 0, d.Errf("%s %q: want a whole number from %d to %d", name, s, lo, hi)
	}
	return n, nil
}

func onOff(d *caddyfile.Dispenser) (bool, error) {
	name := d.Val()
	var s string
	if err := oneArg(d, &s); err != nil {
		return false, err
	}
	switch s {
	case "on":
		return true, nil
	case "off":
		return false, nil
	}
	return false, d.Errf("%s %q: want on or off", name, s)
}

// parseProvider reads `sms|voice twilio { … }` or `sms|voice webhook <url> { secret … }`.
func parseProvider(d *caddyfile.Dispenser, channel string) (ProviderConfig, error) {
	var pc ProviderConfig
	if !d.NextArg() {
		return pc, d.Errf("%s: missing provider (twilio or webhook)", channel)
	}
	pc.Type = d.Val()
	switch pc.Type {
	case "twilio":
		if d.NextArg() {
			return pc, d.Errf("%s twilio: takes a block, not %q", channel, d.Val())
		}
		seen := onceSet{}
		for nesting := d.Nesting(); d.NextBlock(nesting); {
			if err := seen.check(d); err != nil {
				return pc, err
			}
			var err error
			switch d.Val() {
			case "account_sid":
				err = oneArg(d, &pc.AccountSID)
			case "auth_token":
				err = oneArg(d, &pc.AuthToken)
			case "from":
				err = oneArg(d, &pc.From)
			case "endpoint":
				err = oneArg(d, &pc.Endpoint)
			default:
				return pc, d.Errf("%s twilio: unknown option %q (want account_sid, auth_token, from or endpoint)", channel, d.Val())
			}
			if err != nil {
				return pc, err
			}
		}
	case "webhook":
		if !d.NextArg() {
			return pc, d.Errf("%s webhook: missing URL", channel)
		}
		pc.URL = d.Val()
		if d.NextArg() {
			return pc, d.ArgErr()
		}
		seen := onceSet{}
		for nesting := d.Nesting(); d.NextBlock(nesting); {
			if err := seen.check(d); err != nil {
				return pc, err
			}
			switch d.Val() {
			case "secret":
				if err := oneArg(d, &pc.Secret); err != nil {
					return pc, err
				}
			default:
				return pc, d.Errf("%s webhook: unknown option %q (want secret)", channel, d.Val())
			}
		}
	default:
		return pc, d.Errf("%s %q: want twilio or webhook", channel, pc.Type)
	}
	return pc, nil
}

// parseOIDC reads `oidc <name> { … }`.
func parseOIDC(d *caddyfile.Dispenser) (OIDCConfig, error) {
	var oc OIDCConfig
	if !d.NextArg() {
		return oc, d.Err("oidc: missing the provider's name, e.g. `oidc example {`")
	}
	oc.Name = d.Val()
	if d.NextArg() {
		return oc, d.ArgErr()
	}
	seen := onceSet{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		if err := seen.check(d); err != nil {
			return oc, err
		}
		var err error
		switch d.Val() {
		case "issuer":
			err = oneArg(d, &oc.Issuer)
		case "client_id":
			err = oneArg(d, &oc.ClientID)
		case "client_secret":
			err = oneArg(d, &oc.ClientSecret)
		case "scopes":
			oc.Scopes = d.RemainingArgs()
			if len(oc.Scopes) == 0 {
				err = d.Err("scopes: name at least one scope")
			}
		case "label":
			err = oneArg(d, &oc.Label)
		case "trust_idp_mfa":
			if d.NextArg() {
				return oc, d.ArgErr()
			}
			oc.TrustIdPMFA = true
		case "acr":
			oc.ACRs = d.RemainingArgs()
			if len(oc.ACRs) == 0 {
				err = d.Err("acr: name at least one acr value")
			}
		case "username_claim":
			err = oneArg(d, &oc.UsernameClaim)
		case "groups_claim":
			err = oneArg(d, &oc.GroupsClaim)
		case "allow_unknown_users":
			if d.NextArg() {
				return oc, d.ArgErr()
			}
			oc.AllowUnknownUsers = true
		default:
			return oc, d.Errf("oidc %s: unknown option %q (want issuer, client_id, client_secret, scopes, label, trust_idp_mfa, acr, username_claim, groups_claim or allow_unknown_users)", oc.Name, d.Val())
		}
		if err != nil {
			return oc, err
		}
	}
	if oc.Issuer == "" || oc.ClientID == "" {
		return oc, d.Errf("oidc %s: issuer and client_id are required", oc.Name)
	}
	return oc, nil
}

// parseRecovery reads the `recovery { … }` block.
func parseRecovery(d *caddyfile.Dispenser) (*RecoveryConfig, error) {
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	rc := new(RecoveryConfig)
	seen := onceSet{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		if err := seen.check(d); err != nil {
			return nil, err
		}
		var err error
		switch d.Val() {
		case "review_group":
			err = oneArg(d, &rc.ReviewGroup)
		case "approvals":
			rc.Approvals, err = intArg(d, 1, 10)
		case "max_size":
			var s string
			if err = oneArg(d, &s); err == nil {
				n, perr := humanize.ParseBytes(s)
				if perr != nil || n < 1024 || n > 100<<20 {
					err = d.Errf("max_size %q: want a size from 1KiB to 100MiB, such as 10MiB", s)
				}
				rc.MaxSize = int64(n)
			}
		case "expected":
			err = oneArg(d, &rc.Expected)
		case "retention":
			err = durationArg(d, &rc.Retention, 0)
		case "cooling_off":
			var s string
			if err = oneArg(d, &s); err == nil {
				dur, perr := caddy.ParseDuration(s)
				if perr != nil || dur < 0 {
					err = d.Errf("cooling_off %q: want a duration (0 for none)", s)
				}
				rc.CoolingOff = caddy.Duration(dur)
			}
		case "after_approval":
			if err = oneArg(d, &rc.AfterApproval); err == nil && rc.AfterApproval != "password_only" && rc.AfterApproval != "enroll" {
				err = d.Errf("after_approval %q: want password_only or enroll", rc.AfterApproval)
			}
		default:
			return nil, d.Errf("recovery: unknown option %q (want review_group, approvals, max_size, expected, retention, cooling_off or after_approval)", d.Val())
		}
		if err != nil {
			return nil, err
		}
	}
	if rc.ReviewGroup == "" {
		return nil, d.Err("recovery: review_group is required (the group whose members review requests)")
	}
	return rc, nil
}

// parseEmail reads `email smtp <host:port> { … }`.
func parseEmail(d *caddyfile.Dispenser) (*SMTPConfig, error) {
	if !d.NextArg() || d.Val() != "smtp" {
		return nil, d.Errf("email: want `email smtp <host:port> { … }`")
	}
	em := new(SMTPConfig)
	if !d.NextArg() {
		return nil, d.Errf("email smtp: missing host:port")
	}
	em.Address = d.Val()
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	seen := onceSet{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		if err := seen.check(d); err != nil {
			return nil, err
		}
		var err error
		switch d.Val() {
		case "username":
			err = oneArg(d, &em.Username)
		case "password":
			err = oneArg(d, &em.Password)
		case "from":
			err = oneArg(d, &em.From)
		case "tls":
			if err = oneArg(d, &em.TLS); err == nil && em.TLS != "starttls" && em.TLS != "implicit" && em.TLS != "none" {
				err = d.Errf("tls %q: want starttls, implicit or none", em.TLS)
			}
		default:
			return nil, d.Errf("email smtp: unknown option %q (want username, password, from or tls)", d.Val())
		}
		if err != nil {
			return nil, err
		}
	}
	return em, nil
}

func oneArg(d *caddyfile.Dispenser, dst *string) error {
	name := d.Val()
	if !d.NextArg() {
		return d.Errf("%s: missing value", name)
	}
	*dst = d.Val()
	if *dst == "" {
		return d.Errf("%s: empty value", name)
	}
	if d.NextArg() {
		return d.Errf("%s: takes one value, got another: %q", name, d.Val())
	}
	return nil
}

// durationArg reads a positive duration of at least lowest (the bounds
// Validate applies to JSON, so that the Caddyfile's refusal names the line).
func durationArg(d *caddyfile.Dispenser, dst *caddy.Duration, lowest time.Duration) error {
	name := d.Val()
	var s string
	if err := oneArg(d, &s); err != nil {
		return err
	}
	dur, err := caddy.ParseDuration(s)
	if err != nil {
		return d.Errf("%s %q: not a duration (e.g. 30m, 12h, 7d)", name, s)
	}
	if dur <= 0 {
		return d.Errf("%s %q: must be positive", name, s)
	}
	if dur < lowest {
		return d.Errf("%s %q: must be at least %s", name, s, lowest)
	}
	*dst = caddy.Duration(dur)
	return nil
}

// parseDirective reads the `twostep` site directive:
//
//	twostep {
//		rule <level> [host <h>...] [path <p>...] [path_regexp <re>...] [method <m>...]
//		     [network <cidr>...] [group <g>...] [user <u>...] [max_age <d>] [no_trusted_device]
//		default <level>
//		header <name>...
//		portal <url>
//		case_insensitive_paths
//	}
func parseDirective(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	hd := new(Handler)
	if err := hd.UnmarshalCaddyfile(h.Dispenser); err != nil {
		return nil, err
	}
	return hd, nil
}

// setupDirective is parseDirective as a route without a matcher. A Caddy
// matcher in front of twostep (`twostep /admin/* {`) would decide with
// Caddy's path semantics which requests twostep sees at all: those it
// does not select (/admin;x/users for Tomcat, /admin\users for IIS) would
// skip the rules and the path checks, where the SPEC refuses them. So
// what to protect is said with rules only.
func setupDirective(h httpcaddyfile.Helper) ([]httpcaddyfile.ConfigValue, error) {
	if !h.Next() {
		return nil, h.ArgErr()
	}
	if h.NextArg() {
		if tok := h.Val(); tok == "*" || strings.HasPrefix(tok, "/") || strings.HasPrefix(tok, "@") {
			return nil, h.Errf("twostep takes no matcher (got %q): requests it does not select would skip twostep and its path checks; "+
				"say what to protect with rules instead (rule two_factor path /admin/*, default bypass)", tok)
		}
	}
	h.Reset()
	hd, err := parseDirective(h)
	if err != nil {
		return nil, err
	}
	return h.NewRoute(nil, hd), nil
}

var ruleKeywords = map[string]bool{
	"host": true, "path": true, "path_regexp": true, "method": true, "network": true,
	"group": true, "user": true, "max_age": true, "no_trusted_device": true,
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.Errf("twostep takes a block, not arguments (got %q)", d.Val())
	}
	seen := onceSet{}
	named := map[string]bool{} // identity headers named so far
	catchAll := 0              // a rule without matchers, which every request meets
	for d.NextBlock(0) {
		if err := seen.check(d, "rule", "header"); err != nil {
			return err
		}
		switch d.Val() {
		case "rule":
			n := len(h.Rules) + 1
			if catchAll != 0 {
				return d.Errf("rule %d can never match: rule %d has no matchers, so it matches every request (make it the last rule, or give it matchers)", n, catchAll)
			}
			rc, err := parseRule(d, n)
			if err != nil {
				return err
			}
			// Checked here, so that the error names the rule's own line.
			r, err := rc.rule(n)
			if err != nil {
				return d.Err(strings.TrimPrefix(err.Error(), "twostep: "))
			}
			if err := policy.CheckRule(r); err != nil {
				return d.Errf("rule %d: %v", n, err)
			}
			if len(rc.Host)+len(rc.Path)+len(rc.PathRegexp)+len(rc.Method)+len(rc.Network) == 0 {
				catchAll = n
			}
			h.Rules = append(h.Rules, rc)
		case "default":
			if err := oneArg(d, &h.Default); err != nil {
				return err
			}
			if !validLevel(h.Default) {
				return d.Errf("default: unknown level %q (want bypass, one_factor, two_factor or deny)", h.Default)
			}
		case "header":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.Errf("header: name at least one of Remote-User, Remote-Groups, Remote-Email, Remote-Name")
			}
			if _, err := newHeaderSet(args); err != nil {
				return d.Err(strings.TrimPrefix(err.Error(), "twostep: "))
			}
			for _, a := range args {
				if named[normalise(a)] {
					return d.Errf("header: %s is named twice", a)
				}
				named[normalise(a)] = true
			}
			h.Headers = append(h.Headers, args...)
		case "portal":
			if err := oneArg(d, &h.Portal); err != nil {
				return err
			}
			if _, err := parsePortal(h.Portal); err != nil {
				return d.Err(strings.TrimPrefix(err.Error(), "twostep: "))
			}
		case "case_insensitive_paths":
			if d.NextArg() {
				return d.ArgErr()
			}
			h.CaseInsensitivePaths = true
		default:
			return d.Errf("unknown twostep subdirective %q (want rule, default, header, portal or case_insensitive_paths)", d.Val())
		}
	}
	// Compile now so that a bad pattern is reported against the Caddyfile.
	if _, err := h.compile(); err != nil {
		return d.Err(strings.TrimPrefix(err.Error(), "twostep: "))
	}
	return nil
}

func validLevel(s string) bool {
	switch s {
	case "bypass", "one_factor", "two_factor", "deny":
		return true
	}
	return false
}

func parseRule(d *caddyfile.Dispenser, n int) (RuleConfig, error) {
	var rc RuleConfig
	if !d.NextArg() {
		return rc, d.Errf("rule %d: missing level (bypass, one_factor, two_factor or deny)", n)
	}
	rc.Level = d.Val()
	if !validLevel(rc.Level) {
		return rc, d.Errf("rule %d: unknown level %q (want bypass, one_factor, two_factor or deny)", n, rc.Level)
	}
	args := d.RemainingArgs()
	given := map[string]bool{}
	for i := 0; i < len(args); {
		kw := args[i]
		if !ruleKeywords[kw] {
			return rc, d.Errf("rule %d: unknown matcher %q (want host, path, path_regexp, method, network, group, user, max_age or no_trusted_device)", n, kw)
		}
		// A second max_age would replace the first, a second group widen
		// the first: one keyword, then all its values.
		if given[kw] {
			return rc, d.Errf("rule %d: %s is given twice (list its values after one %s)", n, kw, kw)
		}
		given[kw] = true
		i++
		if kw == "no_trusted_device" {
			rc.NoTrustedDevice = true
			continue
		}
		var vals []string
		for i < len(args) && !ruleKeywords[args[i]] {
			vals = append(vals, args[i])
			i++
		}
		if len(vals) == 0 {
			return rc, d.Errf("rule %d: %s needs a value", n, kw)
		}
		switch kw {
		case "host":
			rc.Host = append(rc.Host, vals...)
		case "path":
			for _, v := range vals {
				if !strings.HasPrefix(v, "/") && !strings.HasPrefix(v, "*") {
					return rc, d.Errf("rule %d: path %q must start with / (or * for a suffix)", n, v)
				}
			}
			rc.Path = append(rc.Path, vals...)
		case "path_regexp":
			rc.PathRegexp = append(rc.PathRegexp, vals...)
		case "method":
			for _, v := range vals {
				rc.Method = append(rc.Method, strings.ToUpper(v))
			}
		case "network":
			for _, v := range vals {
				if _, err := parseNetwork(v); err != nil {
					return rc, d.Errf("rule %d: network %q: %v", n, v, err)
				}
			}
			rc.Network = append(rc.Network, vals...)
		case "group":
			rc.Group = append(rc.Group, vals...)
		case "user":
			rc.User = append(rc.User, vals...)
		case "max_age":
			if len(vals) != 1 {
				return rc, d.Errf("rule %d: max_age takes one duration", n)
			}
			dur, err := caddy.ParseDuration(vals[0])
			if err != nil || dur <= 0 {
				return rc, d.Errf("rule %d: max_age %q: want a positive duration such as 15m", n, vals[0])
			}
			rc.MaxAge = caddy.Duration(dur)
		}
	}
	if (rc.MaxAge != 0 || rc.NoTrustedDevice) && rc.Level != "two_factor" {
		return rc, d.Errf("rule %d: max_age and no_trusted_device apply only to two_factor rules", n)
	}
	return rc, nil
}

// Interface guards.
var _ caddyfile.Unmarshaler = (*Handler)(nil)
