// Package recoveryui serves everything under /.twostep/: the sign-in pages
// and the JSON API that drive the account use cases. Pages are
// server-rendered and work without JavaScript; the JSON API runs the same
// flows for scripts and single-page apps.
package recoveryui

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"html/template"
	"io"
	"mime"
	"net/http"
	"net/netip"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/twostep-auth/twostep/account"
	"github.com/twostep-auth/twostep/internal/notify"
	"github.com/twostep-auth/twostep/internal/oidc"
	"github.com/twostep-auth/twostep/policy"
)

// Prefix is where the portal lives on every protected site.
const Prefix = "/.twostep/"

// MaxJSONBody bounds JSON request bodies.
const MaxJSONBody = 64 << 10

// MaxFormBody bounds form bodies.
const MaxFormBody = 64 << 10

//go:embed templates/*.html
var templateFS embed.FS

//go:embed assets/*
var assetFS embed.FS

// crossOrigin is net/http's own cross-origin guard; sameOrigin adds the
// scheme check and the cookie-domain allowance of SPEC §4 on top of it.
var crossOrigin = http.NewCrossOriginProtection()

var pages = template.Must(template.New("").Funcs(template.FuncMap{"age": ageText, "doclabel": func(t string) string {
	if l, ok := account.DocumentTypes[t]; ok {
		return l
	}
	return t
}}).ParseFS(templateFS, "templates/*.html"))

// ageText says how long a request has waited ("3 h 20 min", "2 days 4 h").
func ageText(secs int64) string {
	d := time.Duration(secs) * time.Second
	switch {
	case d < time.Hour:
		return strconv.Itoa(int(d/time.Minute)) + " min"
	case d < 48*time.Hour:
		return strconv.Itoa(int(d/time.Hour)) + " h " + strconv.Itoa(int(d%time.Hour/time.Minute)) + " min"
	}
	return strconv.Itoa(int(d/(24*time.Hour))) + " days " + strconv.Itoa(int(d%(24*time.Hour)/time.Hour)) + " h"
}

// Env tells the portal what the Caddy glue knows about a request.
type Env struct {
	// Secure: the browser reached us over HTTPS.
	Secure bool
	// Client is the client's address as trusted_proxies resolves it, and its
	// user agent; its Base, the origin for links in emails, is the glue's
	// to set from the site's configured names ("" leaves links out).
	Client account.Client
}

// Portal serves /.twostep/. Its fields are set once, before serving.
type Portal struct {
	Account *account.Service
	// SiteName is shown on every page.
	SiteName string
	// CookieDomain, when set, shares the session with every subdomain.
	CookieDomain string
	// Env extracts request facts (scheme, client IP) the glue knows.
	Env func(r *http.Request) Env
	Log *zap.Logger
	// Outbox, when set (dev_outbox), is shown at /.twostep/outbox.
	Outbox *notify.Outbox
	// Providers are the upstream OpenID Connect providers (login buttons).
	Providers []*oidc.Provider
}

// SessionCookieName is the session cookie's name. Over HTTPS it carries a
// prefix the browser enforces: `__Host-twostep` without a cookie domain
// (set by this exact origin only), `__Secure-twostep` with one (set by a
// secure origin only: no plain-HTTP response for a subdomain, say one
// without HSTS on a hostile network, can plant a session of the
// attacker's). Plain `twostep` over HTTP.
// The names are constants: SessionCookieName runs on every request.
func SessionCookieName(secure bool, cookieDomain string) string {
	switch {
	case !secure:
		return "twostep"
	case cookieDomain == "":
		return "__Host-twostep"
	}
	return "__Secure-twostep"
}

// DeviceCookieName is the trusted-device cookie's name, prefixed like the
// session cookie's.
func DeviceCookieName(secure bool, cookieDomain string) string {
	switch {
	case !secure:
		return "twostep_device"
	case cookieDomain == "":
		return "__Host-twostep_device"
	}
	return "__Secure-twostep_device"
}

const csrfCookie = "twostep_csrf"

// csrfCookieName is the CSRF cookie's name: over HTTPS a `__Host-` cookie,
// which a sibling subdomain cannot plant (with cookie_domain, forms from
// those origins are accepted, so the token is what stops one of them).
// Forms are always posted to the host that rendered them.
func csrfCookieName(secure bool) string {
	if secure {
		return "__Host-" + csrfCookie
	}
	return csrfCookie
}

// SessionToken returns the session cookie's value, or "".
func (p *Portal) SessionToken(r *http.Request, secure bool) string {
	return cookieValue(r.Header, SessionCookieName(secure, p.CookieDomain))
}

// cookieValue finds a cookie's value without parsing (or allocating for)
// every cookie of the request: this runs on every protected request. The
// first cookie of that name wins, as with net/http.
func cookieValue(h http.Header, name string) string {
	for _, line := range h["Cookie"] {
		for len(line) > 0 {
			var part string
			part, line, _ = strings.Cut(line, ";")
			part = strings.TrimLeft(part, " \t")
			if v, ok := strings.CutPrefix(part, name); ok && len(v) > 0 && v[0] == '=' {
				v = strings.TrimRight(v[1:], " \t")
				if len(v) > 1 && v[0] == '"' && v[len(v)-1] == '"' {
					v = v[1 : len(v)-1]
				}
				return v
			}
		}
	}
	return ""
}

func (p *Portal) env(r *http.Request) Env {
	if p.Env != nil {
		return p.Env(r)
	}
	e := Env{Secure: r.TLS != nil, Client: account.Client{UserAgent: r.UserAgent()}}
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		e.Client.IP = ap.Addr().Unmap()
	}
	return e
}

// ServeHTTP serves one portal request. The caller has already stripped
// client identity headers and checked the path is canonical.
func (p *Portal) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	setSecurityHeaders(w.Header(), p.CookieDomain)
	if len(p.Providers) > 0 {
		// Login buttons post here and are redirected to the providers.
		var extra []string
		for _, pr := range p.Providers {
			extra = append(extra, pr.Origins()...)
		}
		setSecurityHeaders(w.Header(), p.CookieDomain, extra...)
	}
	env := p.env(r)
	setTransportSecurity(w.Header(), env.Secure)
	if c, err := r.Cookie(DeviceCookieName(env.Secure, p.CookieDomain)); err == nil {
		env.Client.Device = c.Value
	}
	if !isSafeMethod(r.Method) && (crossOrigin.Check(r) != nil && p.CookieDomain == "" || !p.sameOrigin(r, env)) {
		p.fail(w, r, http.StatusForbidden, "forbidden", "This request came from another site and was refused.")
		return
	}
	rest := strings.TrimPrefix(r.URL.Path, Prefix)
	if api, ok := strings.CutPrefix(rest, "api/"); ok {
		p.serveAPI(w, r, env, api)
		return
	}
	switch rest {
	case "login":
		p.loginPage(w, r, env)
	case "logout":
		p.logoutPage(w, r, env)
	case "challenge":
		p.challengePage(w, r, env)
	case "help":
		p.helpPage(w, r, env)
	case "settings":
		p.settingsPage(w, r, env)
	case "outbox":
		p.outboxPage(w, r)
	case "devices/revoke":
		p.revokeLinkPage(w, r, env)
	case "recovery":
		p.recoveryPage(w, r, env)
	case "recovery/status":
		p.recoveryStatusPage(w, r, env)
	case "recovery/cancel":
		p.recoveryCancelPage(w, r, env)
	case "assets/redact.js", "assets/style.css":
		p.asset(w, r, rest)
	default:
		if name, ok := strings.CutPrefix(rest, "oidc/"); ok {
			p.oidcPage(w, r, env, name)
			return
		}
		if rest == "review" || strings.HasPrefix(rest, "review/") {
			p.reviewPage(w, r, env, strings.TrimPrefix(strings.TrimPrefix(rest, "review"), "/"))
			return
		}
		p.fail(w, r, http.StatusNotFound, "not_found", "There is no such page.")
	}
}

// asset serves an embedded static file (the style sheet, the redaction script).
func (p *Portal) asset(w http.ResponseWriter, r *http.Request, name string) {
	if !isSafeMethod(r.Method) {
		p.methodNotAllowed(w, r, "GET")
		return
	}
	b, err := assetFS.ReadFile(name)
	if err != nil {
		p.fail(w, r, http.StatusNotFound, "not_found", "There is no such page.")
		return
	}
	ct := "text/css; charset=utf-8"
	if strings.HasSuffix(name, ".js") {
		ct = "text/javascript; charset=utf-8"
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Cache-Control", "public, max-age=3600")
	_, _ = w.Write(b)
}

func isSafeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// setSecurityHeaders sets the headers every portal response carries.
func setSecurityHeaders(h http.Header, cookieDomain string, formTargets ...string) {
	formAction := "'self'"
	if cookieDomain != "" {
		formAction += " https://" + cookieDomain + " https://*." + cookieDomain
	}
	for _, t := range formTargets {
		if t != "" && !strings.ContainsAny(t, " ;,'\"") {
			formAction += " " + t
		}
	}
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action "+formAction+"; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
}

// setTransportSecurity asks browsers that reached the portal over HTTPS to
// use nothing else for a year (HSTS; REQ-88): a sign-in page that can be
// downgraded to HTTP gives its password away.
func setTransportSecurity(h http.Header, secure bool) {
	if secure {
		h.Set("Strict-Transport-Security", "max-age=31536000")
	}
}

// sameOrigin applies SPEC §4: a state-changing request is the site's own
// when Sec-Fetch-Site is same-origin or none (same-site only with a cookie
// domain, and then an Origin header must be under it), or, from clients
// that send no Sec-Fetch-Site, when Origin is the request's own
// scheme://host[:port] or an HTTPS origin under the cookie domain. Browsers
// send "Origin: null" on our forms (the pages set Referrer-Policy:
// no-referrer), so an opaque origin is judged by Sec-Fetch-Site alone; an
// opaque origin without it is refused. Without either header (scripts) the
// request is allowed: the CSRF token and the JSON content type still apply.
func (p *Portal) sameOrigin(r *http.Request, env Env) bool {
	origin := r.Header.Get("Origin")
	var ou *url.URL
	if origin != "" && origin != "null" {
		u, err := url.Parse(origin)
		if err != nil || u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") {
			return false
		}
		ou = u
	}
	switch r.Header.Get("Sec-Fetch-Site") {
	case "same-origin", "none":
		return ou == nil || p.ownOrigin(r, env, ou)
	case "same-site":
		return p.CookieDomain != "" && (ou == nil || p.underCookieDomain(ou))
	case "":
	default:
		return false
	}
	if origin == "null" {
		return false
	}
	if ou == nil {
		return true
	}
	return p.ownOrigin(r, env, ou) || p.underCookieDomain(ou)
}

func (p *Portal) ownOrigin(r *http.Request, env Env, u *url.URL) bool {
	return u.Scheme == env.scheme() && strings.EqualFold(u.Host, r.Host)
}

func (env Env) scheme() string {
	if env.Secure {
		return "https"
	}
	return "http"
}

// requestOrigin is the origin the browser asked for, for redirects back to
// it (a provider checks its redirect URI against the registered ones).
// Links in emails use env.Client.Base instead: the Host is the client's.
func requestOrigin(r *http.Request, env Env) string {
	return env.scheme() + "://" + r.Host
}

func (p *Portal) underCookieDomain(u *url.URL) bool {
	if p.CookieDomain == "" || u.Scheme != "https" {
		return false
	}
	host := policy.CanonicalHost(u.Host)
	d := p.CookieDomain
	return host == d || strings.HasSuffix(host, "."+d)
}

// returnPolicy is the open-redirect guard for this request.
func (p *Portal) returnPolicy(r *http.Request, env Env) policy.ReturnPolicy {
	return policy.ReturnPolicy{Scheme: env.scheme(), Host: r.Host, CookieDomain: p.CookieDomain}
}

func (p *Portal) safeReturn(r *http.Request, env Env, raw string) string {
	if raw == "" {
		return "/"
	}
	if v, ok := p.returnPolicy(r, env).Validate(raw); ok {
		return v
	}
	return "/"
}

// --- cookies ---

// newCookie is one of the portal's cookies (session, device): HttpOnly,
// SameSite=Lax, Secure on HTTPS, shared under the cookie domain.
func (p *Portal) newCookie(env Env, name, value string) *http.Cookie {
	c := &http.Cookie{
		Name:     name,
		Value:    value,
		Path:     "/",
		HttpOnly: true,
		Secure:   env.Secure,
		SameSite: http.SameSiteLaxMode,
	}
	if p.CookieDomain != "" {
		c.Domain = p.CookieDomain
	}
	return c
}

// cookie sets a cookie kept until expires; a zero expiry deletes it.
func (p *Portal) cookie(w http.ResponseWriter, env Env, name, value string, expires time.Time) {
	c := p.newCookie(env, name, value)
	c.Expires = expires
	if expires.IsZero() {
		c.MaxAge = -1
	}
	http.SetCookie(w, c)
}

// setSession sets the session cookie as a browser-session cookie (no
// Expires; REQ-48): the browser drops it when its session ends, the server
// ends the session at its idle timeout and lifetime; only a trusted device
// is meant to outlive a browser restart. A zero expires deletes it.
func (p *Portal) setSession(w http.ResponseWriter, env Env, token string, expires time.Time) {
	c := p.newCookie(env, SessionCookieName(env.Secure, p.CookieDomain), token)
	if expires.IsZero() {
		c.MaxAge = -1
	}
	http.SetCookie(w, c)
}

func (p *Portal) setDevice(w http.ResponseWriter, env Env, token string, expires time.Time) {
	p.cookie(w, env, DeviceCookieName(env.Secure, p.CookieDomain), token, expires)
}

func (p *Portal) clearSession(w http.ResponseWriter, env Env) {
	p.cookie(w, env, SessionCookieName(env.Secure, p.CookieDomain), "", time.Time{})
}

// csrfFor returns the browser's CSRF cookie, setting a new one if absent.
func (p *Portal) csrfFor(w http.ResponseWriter, r *http.Request, env Env) (string, error) {
	name := csrfCookieName(env.Secure)
	if c, err := r.Cookie(name); err == nil && len(c.Value) >= 32 && len(c.Value) <= 128 {
		return c.Value, nil
	}
	v, err := account.NewRandom(32)
	if err != nil {
		return "", err
	}
	http.SetCookie(w, &http.Cookie{
		Name: name, Value: v, Path: csrfCookiePath(env.Secure), HttpOnly: true,
		Secure: env.Secure, SameSite: http.SameSiteStrictMode,
	})
	return v, nil
}

// csrfCookiePath: `__Host-` cookies must have Path=/.
func csrfCookiePath(secure bool) string {
	if secure {
		return "/"
	}
	return Prefix
}

// checkCSRF checks a form's token against the CSRF cookie csrfFor sets
// for this request's scheme: over HTTPS only the __Host- one, which no
// sibling subdomain or plain-HTTP attacker can plant.
func (p *Portal) checkCSRF(r *http.Request) bool {
	c, err := r.Cookie(csrfCookieName(p.env(r).Secure))
	if err != nil {
		return false
	}
	return p.Account.CheckCSRF(c.Value, r.PostFormValue("csrf"))
}

// --- errors ---

// apiError is the JSON error body of SPEC §4.
type apiError struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

// WriteJSON writes v as JSON with status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if v != nil {
		_ = json.NewEncoder(w).Encode(v)
	}
}

// WriteError writes a JSON error body.
func WriteError(w http.ResponseWriter, status int, code, message string) {
	WriteJSON(w, status, apiError{Error: code, Message: message})
}

// fail answers an error as JSON on the API and as a page elsewhere.
func (p *Portal) fail(w http.ResponseWriter, r *http.Request, status int, code, message string) {
	if strings.HasPrefix(r.URL.Path, Prefix+"api/") || !wantsHTML(r) {
		WriteError(w, status, code, message)
		return
	}
	p.render(w, status, "error.html", pageData{Title: http.StatusText(status), Error: message})
}

func (p *Portal) methodNotAllowed(w http.ResponseWriter, r *http.Request, allow string) {
	w.Header().Set("Allow", allow)
	p.fail(w, r, http.StatusMethodNotAllowed, "invalid_request", "This address does not accept "+r.Method+" requests.")
}

// wantsHTML reports whether the client is a browser (SPEC §3).
func wantsHTML(r *http.Request) bool { return WantsHTML(r.Header) }

// WantsHTML reports whether a request is a browser's: its Accept header
// lists text/html (media types compare case-insensitively) with a quality
// above zero. Everything else gets JSON answers.
func WantsHTML(h http.Header) bool {
	for _, line := range h.Values("Accept") {
		for line != "" {
			var item string
			item, line, _ = strings.Cut(line, ",")
			mt, params, _ := strings.Cut(item, ";")
			if !strings.EqualFold(strings.TrimSpace(mt), "text/html") {
				continue
			}
			if acceptable(params) {
				return true
			}
		}
	}
	return false
}

// acceptable reads the q parameter of one Accept item ("q=0" refuses the
// type; a q that does not parse counts as 1, as without one).
func acceptable(params string) bool {
	for params != "" {
		var p string
		p, params, _ = strings.Cut(params, ";")
		k, v, _ := strings.Cut(p, "=")
		if !strings.EqualFold(strings.TrimSpace(k), "q") {
			continue
		}
		q, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		return err != nil || q > 0
	}
	return true
}

// answerErr maps a use-case error to the API/page answer. It reports
// whether err was one it knows (everything else is a 503: deny on doubt).
func (p *Portal) answerErr(w http.ResponseWriter, r *http.Request, err error) {
	var rl *account.RateLimitedError
	var un *account.UnavailableError
	switch {
	case errors.As(err, &rl):
		w.Header().Set("Retry-After", retryAfterSeconds(rl.RetryAfter))
		p.fail(w, r, http.StatusTooManyRequests, "rate_limited", "Too many attempts. Try again in "+humanDuration(rl.RetryAfter)+".")
	case errors.Is(err, account.ErrReauthRequired):
		p.fail(w, r, http.StatusForbidden, "forbidden", "Your account has no password here. Confirm with your sign-in provider first (POST /.twostep/oidc/<provider> with reauth=1, from this browser), then try again within "+humanDuration(account.ReauthWindow)+".")
	case errors.Is(err, account.ErrNoSession):
		// The session ended while the request ran (signed out elsewhere).
		p.fail(w, r, http.StatusUnauthorized, "unauthenticated", "Your session has ended. Sign in again.")
	case errors.Is(err, account.ErrBusy):
		w.Header().Set("Retry-After", "1")
		p.fail(w, r, http.StatusServiceUnavailable, "unavailable", "The service is busy. Try again in a moment.")
	case errors.As(err, &un):
		p.log().Error("store unavailable", zap.Error(un.Err))
		p.fail(w, r, http.StatusServiceUnavailable, "unavailable", "The sign-in service is unavailable right now. Try again shortly.")
	default:
		p.log().Error("portal error", zap.Error(err))
		p.fail(w, r, http.StatusServiceUnavailable, "unavailable", "The sign-in service is unavailable right now. Try again shortly.")
	}
}

func (p *Portal) log() *zap.Logger {
	if p.Log == nil {
		return zap.NewNop()
	}
	return p.Log
}

// retryAfterSeconds is a Retry-After value: whole seconds, at least 1.
func retryAfterSeconds(d time.Duration) string {
	secs := int64((d + time.Second - 1) / time.Second)
	if secs < 1 {
		secs = 1
	}
	return strconv.FormatInt(secs, 10)
}

func humanDuration(d time.Duration) string {
	if d < time.Second {
		d = time.Second
	}
	if d < time.Minute {
		n := int(d / time.Second)
		if n == 1 {
			return "1 second"
		}
		return strconv.Itoa(n) + " seconds"
	}
	n := int((d + time.Minute - 1) / time.Minute)
	if n == 1 {
		return "1 minute"
	}
	return strconv.Itoa(n) + " minutes"
}

// --- JSON input ---

// decodeJSON reads a JSON object body into v, answering the error itself
// (415, 413 or 400 naming what is wrong) and returning false on failure.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		WriteError(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "The body must be JSON (Content-Type: application/json).")
		return false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxJSONBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			WriteError(w, http.StatusRequestEntityTooLarge, "too_large", "The body is larger than "+strconv.Itoa(MaxJSONBody>>10)+" KiB.")
			return false
		}
		WriteError(w, http.StatusBadRequest, "invalid_request", "The body could not be read.")
		return false
	}
	if msg, ok := strictJSONObject(body, v); !ok {
		WriteError(w, http.StatusBadRequest, "invalid_request", msg)
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		WriteError(w, http.StatusBadRequest, "invalid_request", jsonProblem(err))
		return false
	}
	return true
}

// strictJSONObject checks what encoding/json lets through and a stricter
// reader in front of us (a WAF, an audit log) would read otherwise: the
// body must be valid UTF-8 and exactly one object, with nothing after it
// (Decoder.More misses a trailing "}" or "]"), whose keys are v's JSON
// field names exactly (encoding/json also takes "USERNAME" for
// "username"), each at most once (else the last one silently wins). It
// returns the problem in words when there is one.
func strictJSONObject(body []byte, v any) (string, bool) {
	if !utf8.Valid(body) {
		return "The body is not valid UTF-8.", false
	}
	names := jsonFieldNames(v)
	dec := json.NewDecoder(bytes.NewReader(body))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		if err != nil {
			return jsonProblem(err), false
		}
		return "The body must be a JSON object.", false
	}
	seen := make(map[string]bool)
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return jsonProblem(err), false
		}
		key, _ := t.(string)
		if _, ok := names[key]; !ok {
			return "Unknown field " + strconv.Quote(key) + ".", false
		}
		if seen[key] {
			return "Field " + strconv.Quote(key) + " is given twice.", false
		}
		seen[key] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return jsonProblem(err), false
		}
	}
	if _, err := dec.Token(); err != nil { // the closing "}"
		return jsonProblem(err), false
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return "The body must hold exactly one JSON object.", false
	}
	return "", true
}

// jsonFieldNames lists the JSON names of the fields of the struct v
// points to.
func jsonFieldNames(v any) map[string]struct{} {
	names := make(map[string]struct{})
	t := reflect.TypeOf(v)
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t.Kind() != reflect.Struct {
		return names
	}
	for f := range t.Fields() {
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch name {
		case "-":
			continue
		case "":
			name = f.Name
		}
		names[name] = struct{}{}
	}
	return names
}

func jsonProblem(err error) string {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		if te.Field != "" {
			return "Field \"" + te.Field + "\" must be a " + te.Type.String() + "."
		}
		return "The body must be a JSON object."
	case errors.As(err, &se):
		return "The body is not valid JSON (at byte " + strconv.FormatInt(se.Offset, 10) + ")."
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "The body is empty or cut short."
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return "Unknown field " + strings.TrimPrefix(err.Error(), "json: unknown field ") + "."
	}
	return "The body is not valid JSON."
}

// --- rendering ---

type pageData struct {
	Title    string
	SiteName string
	Error    string
	Notice   string
	CSRF     string
	Return   string
	Username string
	User     string

	// Challenge and help pages.
	Method       string
	Methods      []methodView
	CodeSent     bool
	Alternatives []methodView

	// Settings page.
	Enroll      bool
	TwoStep     *account.TwoStepInfo
	QR          template.URL
	Secret      string
	ConfirmTOTP bool
	ConfirmPh   bool
	Codes       []string
	Phone       string
	Devices     []account.DeviceView
	// Reauth is set for a user who exists only at an identity provider:
	// the provider that confirms them instead of a password.
	Reauth *reauthView

	// Outbox page.
	Outbox []notify.OutboxEntry

	// Recovery and review pages.
	Recovery *account.Recovery
	Queue    []account.ReviewItem
	Own      bool
	Recover  bool

	// Login page: the OpenID Connect buttons.
	Providers []providerView
}

// methodView is a method as the pages show it.
type methodView struct {
	Name, Label, Action string
}

func (p *Portal) render(w http.ResponseWriter, status int, name string, d pageData) {
	if d.SiteName == "" {
		d.SiteName = p.SiteName
	}
	if d.SiteName == "" {
		d.SiteName = "Sign in"
	}
	var buf strings.Builder
	if err := pages.ExecuteTemplate(&buf, name, d); err != nil {
		p.log().Error("rendering page", zap.String("page", name), zap.Error(err))
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, buf.String())
}

// resolve returns the caller's session, nil for none; err only for a store
// failure.
func (p *Portal) resolve(ctx context.Context, r *http.Request, env Env) (*account.Resolved, error) {
	tok := p.SessionToken(r, env.Secure)
	if tok == "" {
		return nil, nil
	}
	res, err := p.Account.Resolve(ctx, tok)
	if errors.Is(err, account.ErrNoSession) {
		return nil, nil
	}
	return res, err
}

// RenderError answers an error outside the portal (a denied or unavailable
// protected page): an HTML page for browsers, JSON for everyone else, with
// the portal's security headers.
func (p *Portal) RenderError(w http.ResponseWriter, r *http.Request, status int, code, message string) {
	setSecurityHeaders(w.Header(), p.CookieDomain)
	setTransportSecurity(w.Header(), p.env(r).Secure)
	p.fail(w, r, status, code, message)
}

func deliveryFields(df *account.DeliveryFailedError) []zap.Field {
	return []zap.Field{zap.String("channel", df.Channel), zap.Error(df.Err)}
}
