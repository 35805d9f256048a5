package caddymodule

import (
	"fmt"
	"net/http"
	"net/textproto"
	"strings"
)

// identityHeader names, in their normalised form (lower case, `_` read as
// `-`), that are removed from every request before anything reads them:
// the four we set and the aliases other proxies and apps use. See
// THREATS.md appendix A.
var identityAliases = []string{
	"remote-user", "remote-groups", "remote-email", "remote-name",
	"x-forwarded-user", "x-forwarded-email", "x-forwarded-preferred-username", "x-forwarded-groups",
	"x-auth-request-user", "x-auth-request-email", "x-auth-request-preferred-username", "x-auth-request-groups",
	"x-remote-user", "x-remote-email", "x-remote-groups", "x-remote-group", "x-webauth-user",
	"x-webauth-email", "x-webauth-name", "x-webauth-groups", "x-user", "x-email", "x-authenticated-user",
	"x-twostep-user",
}

// headerSet knows which identity headers to strip and which to set.
type headerSet struct {
	stripSet map[string]struct{}
	// minLen, maxLen and first (lower-case first bytes) let isIdentity pass
	// over most header names without hashing them.
	minLen, maxLen            int
	first                     [256]bool
	user, groups, email, name bool
}

var knownHeaders = map[string]string{
	"remote-user": "Remote-User", "remote-groups": "Remote-Groups",
	"remote-email": "Remote-Email", "remote-name": "Remote-Name",
}

func newHeaderSet(names []string) (headerSet, error) {
	hs := headerSet{stripSet: make(map[string]struct{}, len(identityAliases))}
	hs.minLen = len(identityAliases[0])
	for _, a := range identityAliases {
		hs.stripSet[a] = struct{}{}
		hs.minLen, hs.maxLen = min(hs.minLen, len(a)), max(hs.maxLen, len(a))
		hs.first[a[0]] = true
	}
	if len(names) == 0 {
		names = []string{"Remote-User", "Remote-Groups", "Remote-Email", "Remote-Name"}
	}
	for _, n := range names {
		switch normalise(n) {
		case "remote-user":
			hs.user = true
		case "remote-groups":
			hs.groups = true
		case "remote-email":
			hs.email = true
		case "remote-name":
			hs.name = true
		default:
			return hs, fmt.Errorf("twostep: header %q: want Remote-User, Remote-Groups, Remote-Email or Remote-Name", n)
		}
	}
	return hs, nil
}

// normalise lower-cases a header name and reads `_` as `-` (as CGI, WSGI
// and PHP backends do).
func normalise(name string) string {
	return strings.ReplaceAll(strings.ToLower(name), "_", "-")
}

// isIdentity reports whether a header name normalises to an identity
// header (ASCII lower case, every byte but a letter or digit read as `-`:
// header names are tokens, and Go's server refuses any other byte),
// without allocating. Most names are
// passed over by their length and first byte without hashing.
func (hs *headerSet) isIdentity(name string) bool {
	if len(name) < hs.minLen || len(name) > hs.maxLen || !hs.first[lowerASCII(name[0])] {
		return false
	}
	var buf [maxAliasLen]byte
	for i := 0; i < len(name); i++ {
		c := lowerASCII(name[i])
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9') {
			// "_" (CGI, WSGI, PHP), "." (PHP turns it into "_" too) and
			// any other separator a backend may fold: all read as "-".
			c = '-'
		}
		buf[i] = c
	}
	_, ok := hs.stripSet[string(buf[:len(name)])]
	return ok
}

// maxAliasLen bounds the length of identityAliases (TestAliasLengths).
const maxAliasLen = 64

func lowerASCII(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// strip removes every identity header variant, and drops identity names
// from Connection so that hop-by-hop removal cannot delete the values we set.
func (hs *headerSet) strip(h http.Header) {
	for k := range h {
		if hs.isIdentity(k) {
			delete(h, k)
		}
	}
	conn, ok := h["Connection"]
	if !ok {
		return
	}
	kept := conn[:0]
	for _, v := range conn {
		var parts []string
		for _, tok := range strings.Split(v, ",") {
			tok = textproto.TrimString(tok)
			if tok != "" && !hs.isIdentity(tok) {
				parts = append(parts, tok)
			}
		}
		if len(parts) > 0 {
			kept = append(kept, strings.Join(parts, ", "))
		}
	}
	if len(kept) == 0 {
		delete(h, "Connection")
	} else {
		h["Connection"] = kept
	}
}

// apply sets the configured identity headers (exactly one value each). The
// values share one allocation; each slice's capacity is its length, so
// that appending to one header cannot write into another.
func (hs *headerSet) apply(h http.Header, user, groups, email, name string) {
	vals := make([]string, 0, 4)
	for _, f := range [4]struct {
		on     bool
		key, v string
	}{{hs.user, "Remote-User", user}, {hs.groups, "Remote-Groups", groups}, {hs.email, "Remote-Email", email}, {hs.name, "Remote-Name", name}} {
		if f.on {
			vals = append(vals, f.v)
			n := len(vals)
			h[f.key] = vals[n-1 : n : n]
		}
	}
}

// names returns the canonical names of the headers set (for the sidecar).
func (hs *headerSet) names() []string {
	var out []string
	for _, n := range []struct {
		on   bool
		name string
	}{{hs.user, "remote-user"}, {hs.groups, "remote-groups"}, {hs.email, "remote-email"}, {hs.name, "remote-name"}} {
		if n.on {
			out = append(out, knownHeaders[n.name])
		}
	}
	return out
}
