package caddymodule

import (
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("twostep", parseGlobal)
	httpcaddyfile.RegisterHandlerDirective("twostep", parseDirective)
	httpcaddyfile.RegisterDirectiveOrder("twostep", httpcaddyfile.Before, "basic_auth")
}

// Options of the global block that later versions add; naming one is an
// error rather than being silently ignored.
var notYetGlobal = map[string]bool{
	"trusted_device": true, "totp": true, "code": true, "sms": true, "voice": true,
	"email": true, "oidc": true, "recovery": true, "dev_outbox": true,
}

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
	for d.NextBlock(0) {
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
			if len(app.Secret) < 32 {
				return nil, d.Errf("secret is %d bytes long; it must be at least 32", len(app.Secret))
			}
		case "cookie_domain":
			if err := oneArg(d, &app.CookieDomain); err != nil {
				return nil, err
			}
			if strings.ContainsAny(app.CookieDomain, "/:*@ ") || strings.HasPrefix(app.CookieDomain, ".") {
				return nil, d.Errf("cookie_domain %q must be a bare domain name such as example.com", app.CookieDomain)
			}
		case "two_step":
			if err := oneArg(d, &app.TwoStep); err != nil {
				return nil, err
			}
			switch app.TwoStep {
			case "optional":
			case "required":
				return nil, d.Errf("two_step required is not available in this version (enrolment pages are not part of it); use two_step optional")
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
			case "redis":
				return nil, d.Errf("store redis is not available in this version; use store bolt")
			default:
				return nil, d.Errf("store %q: want bolt", st.Type)
			}
			app.Store = st
		case "session":
			if d.NextArg() {
				return nil, d.ArgErr()
			}
			app.Session = new(SessionConfig)
			for nesting := d.Nesting(); d.NextBlock(nesting); {
				switch d.Val() {
				case "idle":
					if err := durationArg(d, &app.Session.Idle); err != nil {
						return nil, err
					}
				case "lifetime":
					if err := durationArg(d, &app.Session.Lifetime); err != nil {
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
			for nesting := d.Nesting(); d.NextBlock(nesting); {
				switch d.Val() {
				case "max_retries":
					var s string
					if err := oneArg(d, &s); err != nil {
						return nil, err
					}
					n, err := strconv.Atoi(s)
					if err != nil || n < 1 || n > 1000 {
						return nil, d.Errf("regulation: max_retries %q: want a whole number from 1 to 1000", s)
					}
					app.Regulation.MaxRetries = n
				case "find_time":
					if err := durationArg(d, &app.Regulation.FindTime); err != nil {
						return nil, err
					}
				case "ban_time":
					if err := durationArg(d, &app.Regulation.BanTime); err != nil {
						return nil, err
					}
				default:
					return nil, d.Errf("regulation: unknown option %q (want max_retries, find_time or ban_time)", d.Val())
				}
			}
		default:
			if notYetGlobal[opt] {
				return nil, d.Errf("twostep option %q is not available in this version", opt)
			}
			return nil, d.Errf("unknown twostep option %q", opt)
		}
	}
	return httpcaddyfile.App{Name: "twostep", Value: caddyconfig.JSON(app, nil)}, nil
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

func durationArg(d *caddyfile.Dispenser, dst *caddy.Duration) error {
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
	for d.NextBlock(0) {
		switch d.Val() {
		case "rule":
			rc, err := parseRule(d, len(h.Rules)+1)
			if err != nil {
				return err
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
	for i := 0; i < len(args); {
		kw := args[i]
		if !ruleKeywords[kw] {
			return rc, d.Errf("rule %d: unknown matcher %q (want host, path, path_regexp, method, network, group, user, max_age or no_trusted_device)", n, kw)
		}
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
