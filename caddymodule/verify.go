package caddymodule

import (
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/twostep-auth/twostep/policy"
	"github.com/twostep-auth/twostep/recoveryui"
)

// original is the request a proxy asks the sidecar about.
type original struct {
	method string
	scheme string
	host   string
	uri    string // path and query, as sent
	path   string // escaped path
}

// errForwarded means the forwarded-request headers are absent, malformed or
// from a peer that is not a trusted proxy.
var errForwarded = errors.New("the original request is not described by a trusted proxy")

// errForwardedAmbiguous: the request names its original twice, or in both
// proxies' headers. A proxy passes the client's own headers on to the
// sidecar (Caddy's forward_auth, Traefik's forwardAuth and nginx's
// auth_request all do), and sets only its own family: the other family,
// or a second copy, may be the client's.
var errForwardedAmbiguous = errors.New("the original request is described twice (X-Original-URL and X-Forwarded-Uri/-Method, or a header given twice)")

// forwardedHeaders are the headers the sidecar reads the original from.
var forwardedHeaders = []string{"X-Forwarded-Method", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Forwarded-Uri",
	"X-Original-URL", "X-Original-Method"}

// forwardedOriginal reads the original request from X-Forwarded-* (Caddy
// forward_auth, Traefik forwardAuth) or X-Original-URL and
// X-Original-Method (nginx auth_request), only when the peer is in
// trusted_proxies, and never from a mix of the two.
func forwardedOriginal(r *http.Request) (original, error) {
	if !trustedProxy(r) {
		return original{}, errForwarded
	}
	for _, k := range forwardedHeaders {
		if v := r.Header.Values(k); len(v) > 1 {
			return original{}, errForwardedAmbiguous
		}
	}
	var o original
	if raw := r.Header.Get("X-Original-URL"); raw != "" {
		// nginx: its own headers only; Caddy's and Traefik's here are the
		// client's.
		if r.Header.Get("X-Forwarded-Uri") != "" || r.Header.Get("X-Forwarded-Method") != "" {
			return original{}, errForwardedAmbiguous
		}
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.Fragment != "" {
			return original{}, errForwarded
		}
		o.method = r.Header.Get("X-Original-Method")
		o.scheme, o.host = u.Scheme, u.Host
		// The target as nginx sent it, not u.RequestURI(): that re-escapes
		// a decoded path as soon as the raw one holds a byte Go escapes,
		// turning "%2F" into "/" (SPEC §2 refuses an encoded slash).
		if !strings.HasPrefix(strings.ToLower(raw), u.Scheme+"://") {
			return original{}, errForwarded
		}
		authority, rest, ok := strings.Cut(raw[len(u.Scheme)+3:], "/")
		if strings.ContainsAny(authority, "?#") {
			return original{}, errForwarded
		}
		o.uri = "/"
		if ok {
			o.uri += rest
		}
	} else {
		o.method = r.Header.Get("X-Forwarded-Method")
		o.scheme = strings.ToLower(r.Header.Get("X-Forwarded-Proto"))
		o.host = r.Header.Get("X-Forwarded-Host")
		o.uri = r.Header.Get("X-Forwarded-Uri")
		if o.scheme != "http" && o.scheme != "https" {
			return original{}, errForwarded
		}
	}
	if o.method == "" {
		o.method = http.MethodGet
	}
	if o.host == "" || strings.ContainsAny(o.host, "/\\@ \t\r\n") || !strings.HasPrefix(o.uri, "/") ||
		strings.ContainsAny(o.uri, " \t\r\n#") || strings.ContainsAny(o.method, " \t\r\n/") {
		return original{}, errForwarded
	}
	o.path, _, _ = strings.Cut(o.uri, "?")
	return o, nil
}

// verify answers GET /.twostep/api/verify (SPEC §6).
func (h *Handler) verify(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET")
		recoveryui.WriteError(w, http.StatusMethodNotAllowed, "invalid_request", "Use GET.")
		return
	}
	o, err := forwardedOriginal(r)
	if err != nil {
		recoveryui.WriteError(w, http.StatusBadRequest, "invalid_request", err.Error()+".")
		return
	}
	canon, err := policy.CanonicalPath(o.path, h.CaseInsensitivePaths)
	if err == nil {
		// The front proxy sends the request on as it came: dot segments
		// would be read one way here and maybe another by the upstream.
		if _, dots, derr := policy.ResolveDotSegments(o.path); derr != nil || dots {
			err = policy.ErrAmbiguousPath
		}
	}
	if err != nil {
		recoveryui.WriteError(w, http.StatusBadRequest, "invalid_path", "The request path is ambiguous and was refused.")
		return
	}
	if !asciiHost(o.host) {
		recoveryui.WriteError(w, http.StatusBadRequest, "invalid_request", "The original host is not an ASCII host name.")
		return
	}
	req := policy.Request{Host: policy.CanonicalHost(o.host), Path: canon, Method: strings.ToUpper(o.method), ClientIP: clientIP(r)}
	rule, alt, err := h.match(&req, o.path)
	if err != nil {
		recoveryui.WriteError(w, http.StatusBadRequest, "invalid_path", "The request path is ambiguous and was refused.")
		return
	}
	switch {
	case rule.Level == policy.Deny || alt.Level == policy.Deny:
		recoveryui.WriteError(w, http.StatusForbidden, "forbidden", "You do not have access to this page.")
		return
	case rule.Level == policy.Bypass && alt.Level == policy.Bypass:
		w.WriteHeader(http.StatusOK)
		return
	}
	svc := h.app.Service()
	if svc == nil {
		h.unavailable(w, r, errors.New("twostep app is not running"))
		return
	}
	res, err := h.resolve(r, svc, o.scheme == "https")
	if err != nil {
		h.unavailable(w, r, err)
		return
	}
	ret := o.scheme + "://" + o.host + o.uri
	switch decide(rule, alt, &res, svc.Now()) {
	case policy.Allow:
		if u := res.User; u != nil {
			h.set.apply(w.Header(), u.Name, h.app.run.idents.get(u, res.External).groups, u.Email, u.DisplayName)
		}
		w.WriteHeader(http.StatusOK)
	case policy.SignIn:
		h.sidecarSignIn(w, r, "unauthenticated", "login", ret)
	case policy.SecondFactor:
		h.sidecarSignIn(w, r, "second_factor_required", "challenge", ret)
	case policy.Enroll:
		h.sidecarSignIn(w, r, "enrollment_required", "settings?enroll=1", ret)
	default:
		recoveryui.WriteError(w, http.StatusForbidden, "forbidden", "You do not have access to this page.")
	}
}

// sidecarSignIn: browsers go to the portal page (absolute URL), others get
// 401 with that page in Location, which a proxy that understands only 2xx,
// 401 and 403 (nginx auth_request) can send browsers to.
func (h *Handler) sidecarSignIn(w http.ResponseWriter, r *http.Request, code, page, ret string) {
	base := h.portalU
	if base == nil {
		scheme := "http"
		if isSecure(r) {
			scheme = "https"
		}
		base = &url.URL{Scheme: scheme, Host: r.Host}
	}
	loc := base.String() + recoveryui.Prefix + page
	if ret != "" {
		sep := "?"
		if strings.Contains(loc, "?") {
			sep = "&"
		}
		loc += sep + "return=" + url.QueryEscape(ret)
	}
	w.Header().Set("Location", loc)
	if !recoveryui.WantsHTML(r.Header) {
		recoveryui.WriteError(w, http.StatusUnauthorized, code, unauthorizedText(code))
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusFound)
}

// asciiHost: a host of printable ASCII (an IDN comes as its xn-- form);
// anything else would be folded by one party and not by another.
func asciiHost(h string) bool {
	for i := 0; i < len(h); i++ {
		if h[i] <= ' ' || h[i] >= 0x7f {
			return false
		}
	}
	return h != ""
}
