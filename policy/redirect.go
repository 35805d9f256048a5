package policy

import (
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ReturnPolicy says where the portal may send a browser after sign-in or
// sign-out (the open-redirect guard). The zero value accepts same-site
// relative URLs only.
type ReturnPolicy struct {
	// Scheme of the site itself: "http" or "https".
	Scheme string
	// Host is host[:port] of the site itself, as in the Host header.
	Host string
	// CookieDomain, optional, also allows https URLs to this domain and its
	// subdomains (by label); http too when Scheme is http (local development).
	CookieDomain string
}

// MaxReturnURLLength is the longest return URL Validate accepts.
const MaxReturnURLLength = 8 << 10

// Validate checks a return URL. It accepts
//
//   - a same-site relative URL: "/" alone, or "/" followed by neither "/"
//     nor "\", whose path (percent-decoded) does not start with "//" or "/\",
//     has no "//", no "\", no "." or ".." segment and no "scheme:…@" first
//     segment; it is returned unchanged;
//   - an absolute http(s) URL without userinfo whose host is the site's own
//     (same scheme and port), or CookieDomain or a subdomain of it with
//     https (http only when the site itself is http); it is returned
//     re-serialised from the parsed URL.
//
// In both cases the URL must be printable ASCII with valid percent-encoding
// and no backslash, and its part before any "?" or "#" must decode to valid
// UTF-8 without control, whitespace or format characters. Everything else gives ("", false).
func (rp ReturnPolicy) Validate(raw string) (string, bool) {
	if raw == "" || len(raw) > MaxReturnURLLength || !cleanURLChars(raw) {
		return "", false
	}
	if raw[0] == '/' {
		if validRelative(raw) {
			return raw, true
		}
		return "", false
	}
	return rp.validAbsolute(raw)
}

// cleanURLChars: printable ASCII only, none of the characters that must
// always be escaped, valid escapes, and nothing a browser could strip or
// render invisibly once decoded.
func cleanURLChars(s string) bool {
	hasEscape := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("\\\"<>^`{|}", c) >= 0 {
			return false
		}
		if c == '%' {
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return false
			}
			hasEscape = true
			i += 2
		}
	}
	if !hasEscape {
		return true
	}
	// Only the part a browser reads as scheme, host and path matters for
	// where it goes; an encoded space in the query ("?q=a%20b") is harmless.
	if i := strings.IndexAny(s, "?#"); i >= 0 {
		s = s[:i]
	}
	d := appendDecoded(make([]byte, 0, len(s)), s)
	for len(d) > 0 {
		r, size := utf8.DecodeRune(d)
		if r == utf8.RuneError && size <= 1 {
			return false
		}
		if r < ' ' || r == 0x7f || unicode.IsSpace(r) || unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			return false
		}
		d = d[size:]
	}
	return true
}

func validRelative(raw string) bool {
	if raw == "/" {
		return true
	}
	if raw[1] == '/' || raw[1] == '\\' {
		return false
	}
	p := raw
	if i := strings.IndexAny(p, "?#"); i >= 0 {
		p = p[:i]
	}
	dp, err := url.PathUnescape(p)
	if err != nil || strings.Contains(dp, "//") || strings.ContainsRune(dp, '\\') {
		return false
	}
	first, _, _ := strings.Cut(dp[1:], "/")
	if strings.Contains(first, ":") && strings.Contains(first, "@") {
		return false
	}
	for seg := range strings.SplitSeq(dp[1:], "/") {
		if seg == "." || seg == ".." {
			return false
		}
	}
	return true
}

func (rp ReturnPolicy) validAbsolute(raw string) (string, bool) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") ||
		u.Opaque != "" || u.User != nil || u.Host == "" ||
		!strings.HasPrefix(strings.ToLower(raw), u.Scheme+"://") ||
		strings.Contains(u.Host, "%") {
		return "", false
	}
	host, ok := urlHost(u)
	if !ok {
		return "", false
	}
	port, ok := portOf(u.Port(), u.Scheme)
	if !ok {
		return "", false
	}
	if rp.sameSite(u.Scheme, host, port) || rp.inCookieDomain(u.Scheme, host) {
		return u.String(), true
	}
	return "", false
}

// urlHost returns the canonical host of u if it is a plain DNS name, a
// dotted IPv4 address or a bracketed IPv6 address without zone.
func urlHost(u *url.URL) (string, bool) {
	h := u.Hostname()
	if strings.HasPrefix(u.Host, "[") {
		a, err := netip.ParseAddr(h)
		if err != nil || !a.Is6() || a.Zone() != "" {
			return "", false
		}
		return a.String(), true
	}
	h = strings.TrimSuffix(strings.ToLower(h), ".")
	if a, err := netip.ParseAddr(h); err == nil && a.Is4() {
		return a.String(), true
	}
	if !isDNSName(h) {
		return "", false
	}
	return h, true
}

// isDNSName accepts LDH labels whose last label is not numeric: browsers
// read "3627734734", "0x7f.1" or "127.1" as IPv4 addresses.
func isDNSName(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	labels := strings.Split(h, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
				return false
			}
		}
	}
	last := labels[len(labels)-1]
	if strings.HasPrefix(last, "0x") {
		return false
	}
	return strings.Trim(last, "0123456789") != ""
}

// portOf returns the effective port: p, or the scheme's default.
func portOf(p, scheme string) (int, bool) {
	if p == "" {
		switch scheme {
		case "http":
			return 80, true
		case "https":
			return 443, true
		}
		return 0, false
	}
	if len(p) > 5 {
		return 0, false
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 1 || n > 65535 {
		return 0, false
	}
	return n, true
}

func (rp ReturnPolicy) sameSite(scheme, host string, port int) bool {
	own := strings.ToLower(rp.Scheme)
	if own != "http" && own != "https" || scheme != own || rp.Host == "" {
		return false
	}
	ownHost := CanonicalHost(rp.Host)
	var ownPort int
	if _, p, ok := splitPort(rp.Host); ok {
		n, ok := portOf(p, own)
		if !ok {
			return false
		}
		ownPort = n
	} else {
		ownPort, _ = portOf("", own)
	}
	return ownHost != "" && host == ownHost && port == ownPort
}

// splitPort splits "host:port" or "[v6]:port"; ok is false without a port.
func splitPort(hostport string) (host, port string, ok bool) {
	i := strings.LastIndexByte(hostport, ':')
	if i < 0 || strings.LastIndexByte(hostport, ']') > i {
		return hostport, "", false
	}
	if !strings.HasPrefix(hostport, "[") && strings.Count(hostport, ":") > 1 {
		return hostport, "", false // bare IPv6
	}
	return hostport[:i], hostport[i+1:], true
}

func (rp ReturnPolicy) inCookieDomain(scheme, host string) bool {
	d := strings.TrimSuffix(strings.TrimPrefix(strings.ToLower(rp.CookieDomain), "."), ".")
	if d == "" {
		return false
	}
	if scheme != "https" && !(scheme == "http" && strings.EqualFold(rp.Scheme, "http")) {
		return false
	}
	return host == d || isDNSName(host) && strings.HasSuffix(host, "."+d)
}
