package recoveryui

import (
	"net/http"
	"strings"
)

// ownCookies are the names of every cookie twostep sets. None of them is
// the upstream's business: a logging or compromised app must not collect
// session or device tokens (THREATS REQ-89).
var ownCookies = map[string]struct{}{
	"twostep": {}, "__Host-twostep": {}, "__Secure-twostep": {},
	"twostep_device": {}, "__Host-twostep_device": {}, "__Secure-twostep_device": {},
	csrfCookie: {}, "__Host-" + csrfCookie: {}, oidcCookie: {}, "__Host-" + oidcCookie: {},
}

// IsOwnCookie reports whether name is one of twostep's cookies.
func IsOwnCookie(name string) bool {
	_, ok := ownCookies[name]
	return ok
}

// StripOwnCookies removes twostep's cookies from the request's Cookie
// headers before it goes upstream; the app's own cookies pass unchanged.
// A Cookie header left empty is removed. It allocates only when a header
// holds both kinds.
func StripOwnCookies(h http.Header) {
	lines, ok := h["Cookie"]
	if !ok {
		return
	}
	kept := lines[:0]
	for _, line := range lines {
		if line = stripLine(line); line != "" {
			kept = append(kept, line)
		}
	}
	if len(kept) == 0 {
		delete(h, "Cookie")
		return
	}
	h["Cookie"] = kept
}

// stripLine returns a Cookie header value without twostep's cookies: the
// same string when it has none of them, "" when it has nothing else.
func stripLine(line string) string {
	own, other := 0, 0
	for rest := line; rest != ""; {
		var part string
		part, rest, _ = strings.Cut(rest, ";")
		if name, ok := cookieName(part); ok && IsOwnCookie(name) {
			own++
		} else if strings.TrimSpace(part) != "" {
			other++
		}
	}
	switch {
	case own == 0:
		return line
	case other == 0:
		return ""
	}
	var b strings.Builder
	b.Grow(len(line))
	for rest := line; rest != ""; {
		var part string
		part, rest, _ = strings.Cut(rest, ";")
		if name, ok := cookieName(part); (ok && IsOwnCookie(name)) || strings.TrimSpace(part) == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteString("; ")
		}
		b.WriteString(strings.TrimSpace(part))
	}
	return b.String()
}

// cookieName is the name of one `name=value` pair of a Cookie header.
func cookieName(part string) (string, bool) {
	name, _, ok := strings.Cut(part, "=")
	return strings.TrimSpace(name), ok
}
