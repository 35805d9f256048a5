package caddymodule

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/twostep-auth/twostep/account"
	"github.com/twostep-auth/twostep/policy"
	"github.com/twostep-auth/twostep/recoveryui"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Handler protects the routes of a site: it strips client-sent identity
// headers, serves the portal under /.twostep/, decides each request with
// the site's rules and the caller's session, and passes allowed requests on
// with Remote-* headers and {http.auth.user.*} placeholders.
type Handler struct {
	// Rules are matched top to bottom; the first match wins.
	Rules []RuleConfig `json:"rules,omitempty"`

	// Default is the level when no rule matches: bypass, one_factor,
	// two_factor (default) or deny.
	Default string `json:"default,omitempty"`

	// Headers lists the identity headers set on allowed requests, among
	// Remote-User, Remote-Groups, Remote-Email, Remote-Name. Default: all.
	Headers []string `json:"headers,omitempty"`

	// Portal is the absolute URL of the site that serves the sign-in pages
	// (sidecar, single sign-on). Default: this site.
	Portal string `json:"portal,omitempty"`

	// CaseInsensitivePaths folds path case before matching, for upstreams
	// that ignore it (IIS and the like).
	CaseInsensitivePaths bool `json:"case_insensitive_paths,omitempty"`

	app     *App
	policy  *policy.Policy
	portal  *recoveryui.Portal
	portalU *url.URL
	set     headerSet
	logger  *zap.Logger
}

// RuleConfig is one `rule` line.
type RuleConfig struct {
	// Level is bypass, one_factor, two_factor or deny.
	Level string `json:"level"`
	// Host matches the request host (case-insensitive, without port).
	Host []string `json:"host,omitempty"`
	// Path matches the canonical path: a trailing `*` is a prefix.
	Path []string `json:"path,omitempty"`
	// PathRegexp matches the canonical path with a regular expression.
	PathRegexp []string `json:"path_regexp,omitempty"`
	// Method matches the request method.
	Method []string `json:"method,omitempty"`
	// Network matches the client address (CIDR), as trusted_proxies resolves it.
	Network []string `json:"network,omitempty"`
	// Group requires membership of one of these groups.
	Group []string `json:"group,omitempty"`
	// User requires one of these users.
	User []string `json:"user,omitempty"`
	// MaxAge requires the second factor within this duration (step-up).
	MaxAge caddy.Duration `json:"max_age,omitempty"`
	// NoTrustedDevice refuses a trusted device in place of the second factor.
	NoTrustedDevice bool `json:"no_trusted_device,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.twostep",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision compiles the rules and connects to the twostep app.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	pol, err := h.compile()
	if err != nil {
		return err
	}
	h.policy = pol
	set, err := newHeaderSet(h.Headers)
	if err != nil {
		return err
	}
	h.set = set
	if h.Portal != "" {
		u, err := parsePortal(h.Portal)
		if err != nil {
			return err
		}
		h.portalU = u
	}
	appIface, err := ctx.App("twostep")
	if err != nil {
		return fmt.Errorf("twostep: %w", err)
	}
	h.app = appIface.(*App)
	h.portal = &recoveryui.Portal{
		SiteName:     h.app.SiteName,
		CookieDomain: h.app.CookieDomain,
		Log:          h.logger.Named("portal"),
	}
	h.portal.Env = h.portalEnv
	if h.app.DevOutbox {
		h.portal.Outbox = devOutbox
	}
	h.portal.Providers = h.app.providers
	return nil
}

func parsePortal(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("twostep: portal %q must be an absolute http(s) URL with no path, e.g. https://auth.example.com", raw)
	}
	u.Path = ""
	return u, nil
}

func (h *Handler) compile() (*policy.Policy, error) {
	def := policy.TwoFactor
	if h.Default != "" {
		l, ok := policy.ParseLevel(h.Default)
		if !ok {
			return nil, fmt.Errorf("twostep: default: unknown level %q (want bypass, one_factor, two_factor or deny)", h.Default)
		}
		def = l
	}
	rules := make([]policy.Rule, 0, len(h.Rules))
	for i, rc := range h.Rules {
		r, err := rc.rule(i + 1)
		if err != nil {
			return nil, err
		}
		rules = append(rules, r)
	}
	p, err := policy.Compile(rules, def, h.CaseInsensitivePaths)
	if err != nil {
		return nil, fmt.Errorf("twostep: %w", err)
	}
	return p, nil
}

// rule turns the n-th rule of the configuration into a policy rule.
func (rc RuleConfig) rule(n int) (policy.Rule, error) {
	l, ok := policy.ParseLevel(rc.Level)
	if !ok {
		return policy.Rule{}, fmt.Errorf("twostep: rule %d: unknown level %q (want bypass, one_factor, two_factor or deny)", n, rc.Level)
	}
	r := policy.Rule{
		Level: l, Hosts: rc.Host, Paths: rc.Path, PathRegexps: rc.PathRegexp, Methods: rc.Method,
		Groups: rc.Group, Users: rc.User, MaxAge: time.Duration(rc.MaxAge), NoTrustedDevice: rc.NoTrustedDevice,
	}
	for _, s := range rc.Network {
		p, err := parseNetwork(s)
		if err != nil {
			return policy.Rule{}, fmt.Errorf("twostep: rule %d: network %q: %v", n, s, err)
		}
		r.Networks = append(r.Networks, p)
	}
	return r, nil
}

// parseNetwork reads a CIDR or a single address.
func parseNetwork(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, errors.New("not a CIDR network")
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, errors.New("not an IP address or CIDR network")
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

// requestEnv reads what Caddy knows about a request: TLS (or a trusted
// proxy's X-Forwarded-Proto) and the client IP as trusted_proxies resolves it.
func requestEnv(r *http.Request) recoveryui.Env {
	return recoveryui.Env{Secure: isSecure(r), Client: account.Client{IP: clientIP(r), UserAgent: r.UserAgent()}}
}

func isSecure(r *http.Request) bool {
	if r.TLS != nil {
		return true
	}
	return trustedProxy(r) && strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}

func trustedProxy(r *http.Request) bool {
	t, _ := caddyhttp.GetVar(r.Context(), caddyhttp.TrustedProxyVarKey).(bool)
	return t
}

func clientIP(r *http.Request) netip.Addr {
	if s, ok := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string); ok {
		if a, err := netip.ParseAddr(s); err == nil {
			return a.Unmap()
		}
	}
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

const verifyPath = recoveryui.Prefix + "api/verify"

// errStoreDown: the store did not answer its last ping.
var errStoreDown = errors.New("the store did not answer its last ping")

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	// Strip before anything else reads identity headers: every route,
	// bypass and portal included.
	h.set.strip(r.Header)

	esc := r.URL.EscapedPath()
	canon, err := policy.CanonicalPath(esc, h.CaseInsensitivePaths)
	if err == nil && canon != esc {
		// Dot segments are resolved in the request itself, so that the
		// upstream gets the path that was judged (THREATS 4): Express,
		// Flask or Laravel would route "/admin/../public/x" under /admin.
		esc, err = resolveDots(r, esc, h.CaseInsensitivePaths, canon)
	}
	if err != nil || hidesEncodedSeparator(r) {
		recoveryui.WriteError(w, http.StatusBadRequest, "invalid_path", "The request path is ambiguous and was refused.")
		return nil
	}
	if strings.HasPrefix(canon, recoveryui.Prefix) || canon == "/.twostep" {
		return h.servePortal(w, r, canon)
	}

	req := policy.Request{Host: policy.CanonicalHost(r.Host), Path: canon, Method: r.Method, ClientIP: clientIP(r)}
	rule, alt, err := h.match(&req, esc)
	if err != nil {
		recoveryui.WriteError(w, http.StatusBadRequest, "invalid_path", "The request path is ambiguous and was refused.")
		return nil
	}
	switch {
	case rule.Level == policy.Deny || alt.Level == policy.Deny:
		h.deny(w, r)
		return nil
	case rule.Level == policy.Bypass && alt.Level == policy.Bypass:
		recoveryui.StripOwnCookies(r.Header)
		return next.ServeHTTP(w, r)
	}
	svc := h.app.Service()
	if svc == nil {
		h.unavailable(w, r, errors.New("twostep app is not running"))
		return nil
	}
	res, err := h.resolve(r, svc, isSecure(r))
	if err != nil {
		h.unavailable(w, r, err)
		return nil
	}
	switch decide(rule, alt, &res, svc.Now()) {
	case policy.Allow:
		h.allow(r, &res)
		// The upstream gets the identity, never the tokens (REQ-89).
		recoveryui.StripOwnCookies(r.Header)
		return next.ServeHTTP(w, r)
	case policy.Forbid:
		h.deny(w, r)
	case policy.SignIn:
		h.signIn(w, r, "unauthenticated", "login", h.returnURL(r, false))
	case policy.SecondFactor:
		h.signIn(w, r, "second_factor_required", "challenge", h.returnURL(r, false))
	case policy.Enroll:
		h.signIn(w, r, "enrollment_required", "settings?enroll=1", h.returnURL(r, false))
	default:
		h.deny(w, r)
	}
	return nil
}

// resolveDots removes the dot segments of r's path (esc, whose canonical
// form is canon) in r itself, and returns the path it goes on with; an
// error when they cannot be resolved one way only.
func resolveDots(r *http.Request, esc string, fold bool, canon string) (string, error) {
	resolved, changed, err := policy.ResolveDotSegments(esc)
	if err != nil || !changed {
		return esc, err
	}
	if c, err := policy.CanonicalPath(resolved, fold); err != nil || c != canon {
		return "", errors.New("dot segments resolve to another path")
	}
	path, err := url.PathUnescape(resolved)
	if err != nil {
		return "", err
	}
	r.URL.Path, r.URL.RawPath = path, resolved
	if r.URL.EscapedPath() != resolved {
		r.URL.RawPath = ""
		if r.URL.EscapedPath() != resolved {
			return "", errors.New("the resolved path does not survive re-escaping")
		}
	}
	return resolved, nil
}

// hidesEncodedSeparator reports a request target whose path holds an
// encoded "/" or "\\" that r.URL no longer shows: Go keeps the path as
// sent (RawPath) only when that is a valid escaping, and otherwise
// re-escapes the decoded path, turning "%2F" into "/". Such a path is
// refused like any other encoded separator (SPEC §2).
func hidesEncodedSeparator(r *http.Request) bool {
	if strings.IndexByte(r.RequestURI, '%') < 0 {
		return false // the common case: nothing to re-escape
	}
	esc := r.URL.EscapedPath()
	if r.URL.RawPath != "" && esc == r.URL.RawPath {
		return false // the path as sent is what the handler judged
	}
	raw, _, _ := strings.Cut(r.RequestURI, "?")
	if i := strings.Index(raw, "://"); i >= 0 && !strings.HasPrefix(raw, "/") {
		// absolute-form: the path starts after the authority.
		rest := raw[i+3:]
		j := strings.IndexByte(rest, '/')
		if j < 0 {
			return false
		}
		raw = rest[j:]
	}
	if raw == esc {
		return false
	}
	for i := 0; i+2 < len(raw); i++ {
		if raw[i] == '%' {
			switch strings.ToUpper(raw[i+1 : i+3]) {
			case "2F", "5C":
				return true
			}
		}
	}
	return false
}

// match returns the rule for the request and, when the path carries ";"
// parameters, the rule for the path as an upstream that does not strip them
// sees it (";" kept as a literal character); both must allow the request.
// Without ";" both results are the same rule.
func (h *Handler) match(req *policy.Request, escaped string) (rule, alt *policy.Rule, err error) {
	rule = h.policy.Match(req)
	if strings.IndexByte(escaped, ';') < 0 {
		return rule, rule, nil
	}
	lit, err := policy.CanonicalPath(strings.ReplaceAll(escaped, ";", "%3B"), h.CaseInsensitivePaths)
	if err != nil {
		return nil, nil, err
	}
	req2 := *req
	req2.Path = lit
	return rule, h.policy.Match(&req2), nil
}

// decide is policy.Decide over both views of the path: the stricter
// outcome wins.
func decide(rule, alt *policy.Rule, res *account.Resolved, now time.Time) policy.Outcome {
	sub := res.Subject()
	o := policy.Decide(rule, &sub, now)
	if alt == rule {
		return o
	}
	o2 := policy.Decide(alt, &sub, now)
	switch {
	case o == policy.Allow:
		return o2
	case o2 == policy.Forbid:
		return o2
	}
	return o
}

// resolve returns the caller's session (the zero Resolved for a stranger);
// an error only when the store failed. The session is shared with the
// store's cache: read it, never modify it.
func (h *Handler) resolve(r *http.Request, svc *account.Service, secure bool) (account.Resolved, error) {
	tok := h.portal.SessionToken(r, secure)
	if tok == "" {
		if h.app.storeDown() {
			if h.app.storeReplaced() {
				return account.Resolved{}, errStoreReplaced
			}
			return account.Resolved{}, errStoreDown // a sign-in could not work either
		}
		return account.Resolved{}, nil
	}
	if h.app.storeReplaced() {
		return account.Resolved{}, errStoreReplaced // its sessions are not ours
	}
	res, err := svc.ResolveShared(r.Context(), tok)
	if errors.Is(err, account.ErrNoSession) {
		return account.Resolved{}, nil
	}
	return res, err
}

// allow sets the identity headers and placeholders from the session.
func (h *Handler) allow(r *http.Request, res *account.Resolved) {
	u := res.User
	if u == nil {
		return // a stranger on a route that lets strangers through
	}
	id := h.app.run.idents.get(u, res.External)
	h.set.apply(r.Header, u.Name, id.groups, u.Email, u.DisplayName)
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		repl.Set("http.auth.user.id", id.vID)
		repl.Set("http.auth.user.groups", id.vGroups)
		repl.Set("http.auth.user.email", id.vEmail)
		repl.Set("http.auth.user.name", id.vName)
	}
}

func (h *Handler) deny(w http.ResponseWriter, r *http.Request) {
	h.portal.RenderError(w, r, http.StatusForbidden, "forbidden", "You do not have access to this page.")
}

func (h *Handler) unavailable(w http.ResponseWriter, r *http.Request, err error) {
	h.logger.Error("denying request: store unavailable", zap.Error(err))
	h.portal.RenderError(w, r, http.StatusServiceUnavailable, "unavailable", "The sign-in service is unavailable right now. Try again shortly.")
}

// signIn sends a browser to a portal page (302) and answers others 401.
func (h *Handler) signIn(w http.ResponseWriter, r *http.Request, code, page, ret string) {
	if !recoveryui.WantsHTML(r.Header) {
		recoveryui.WriteError(w, http.StatusUnauthorized, code, unauthorizedText(code))
		return
	}
	loc := recoveryui.Prefix + page
	if h.portalU != nil {
		loc = h.portalU.String() + loc
	}
	if ret != "" {
		sep := "?"
		if strings.Contains(loc, "?") {
			sep = "&"
		}
		loc += sep + "return=" + url.QueryEscape(ret)
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, loc, http.StatusFound)
}

func unauthorizedText(code string) string {
	switch code {
	case "second_factor_required":
		return "Enter your verification code first."
	case "enrollment_required":
		return "Turn on two-step verification to reach this page."
	}
	return "Sign in first."
}

// returnURL is where to come back after signing in: the request's own
// relative URL, or an absolute one when the portal lives elsewhere.
func (h *Handler) returnURL(r *http.Request, forwarded bool) string {
	rel := r.URL.RequestURI()
	if h.portalU == nil && !forwarded {
		return rel
	}
	scheme := "http"
	if isSecure(r) {
		scheme = "https"
	}
	return scheme + "://" + r.Host + rel
}

// servePortal serves /.twostep/ (and the sidecar endpoint).
func (h *Handler) servePortal(w http.ResponseWriter, r *http.Request, canon string) error {
	if canon == verifyPath {
		h.verify(w, r)
		return nil
	}
	svc := h.app.Service()
	if svc == nil {
		h.unavailable(w, r, errors.New("twostep app is not running"))
		return nil
	}
	if h.app.storeDown() && !strings.HasPrefix(canon, recoveryui.Prefix+"assets/") {
		h.unavailable(w, r, errStoreDown)
		return nil
	}
	p := *h.portal
	p.Account = svc
	r2 := r
	if r.URL.Path != canon {
		r2 = r.Clone(r.Context())
		r2.URL.Path, r2.URL.RawPath = canon, ""
	}
	p.ServeHTTP(w, r2)
	return nil
}

// Interface guards.
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
