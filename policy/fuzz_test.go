package policy

import (
	"net/url"
	"path"
	"strconv"
	"strings"
	"testing"
)

// The reference models below say how some upstream resolves a raw request
// path. They are deliberately naive and written differently from
// CanonicalPath. ok is false when the model would refuse the path itself.

// goModel: Go's ServeMux: decode everything, then path.Clean, keeping a
// trailing slash as ServeMux's cleanPath does.
func goModel(raw string) (string, bool) {
	p, err := url.PathUnescape(raw)
	if err != nil {
		return "", false
	}
	np := path.Clean(p)
	if strings.HasSuffix(p, "/") && np != "/" {
		np += "/"
	}
	return np, true
}

// fullDecode decodes every %XX; ok is false on a malformed escape.
func fullDecode(s string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
			return "", false
		}
		h1, _ := unhex(s[i+1])
		h2, _ := unhex(s[i+2])
		b.WriteByte(h1<<4 | h2)
		i += 2
	}
	return b.String(), true
}

// normalise merges slashes and resolves dot segments with a stack; ok is
// false for ".." above the root (nginx answers 400).
func normalise(p string) (string, bool) {
	var stack []string
	parts := strings.Split(p, "/")
	trailing := false
	for i, s := range parts {
		last := i == len(parts)-1
		switch s {
		case "", ".":
			trailing = last
		case "..":
			if len(stack) == 0 {
				return "", false
			}
			stack = stack[:len(stack)-1]
			trailing = last
		default:
			stack = append(stack, s)
			trailing = false
		}
	}
	out := "/" + strings.Join(stack, "/")
	if trailing && out != "/" {
		out += "/"
	}
	return out, true
}

// nginxModel: decode everything, merge slashes, resolve dots.
func nginxModel(raw string) (string, bool) {
	d, ok := fullDecode(raw)
	if !ok {
		return "", false
	}
	return normalise(d)
}

// tomcatModel: cut ";params" from every raw segment, decode, normalise.
func tomcatModel(raw string) (string, bool) {
	segs := strings.Split(raw, "/")
	for i, s := range segs {
		if j := strings.IndexByte(s, ';'); j >= 0 {
			segs[i] = s[:j]
		}
	}
	d, ok := fullDecode(strings.Join(segs, "/"))
	if !ok {
		return "", false
	}
	return normalise(d)
}

// iisModel: decode, lower-case, backslash as slash, normalise.
func iisModel(raw string) (string, bool) {
	d, ok := fullDecode(raw)
	if !ok {
		return "", false
	}
	return normalise(strings.ReplaceAll(strings.ToLower(d), "\\", "/"))
}

// dropParams removes ";…" from every segment of a resolved path.
func dropParams(p string) string {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		if j := strings.IndexByte(s, ';'); j >= 0 {
			segs[i] = s[:j]
		}
	}
	return strings.Join(segs, "/")
}

type model struct {
	name string
	fn   func(string) (string, bool)
	// params: the model cuts ";" parameters itself.
	params bool
}

var pathModels = []model{
	{"go", goModel, false},
	{"nginx", nginxModel, false},
	{"tomcat", tomcatModel, true},
}

var iis = model{"iis", iisModel, false}

// q quotes s for a failure message, shortened.
func q(s string) string {
	if len(s) > 200 {
		s = s[:100] + "…" + s[len(s)-100:]
	}
	return strconv.Quote(s)
}

func isAdmin(p string) bool  { return p == "/admin" || strings.HasPrefix(p, "/admin/") }
func isPublic(p string) bool { return strings.HasPrefix(p, "/public/") }

var fuzzPathSeeds = []string{
	"/", "/admin", "/admin/", "/admin/x", "/public/", "/public/x", "/public",
	"/ADMIN%2Fpanel", "/admin%2fpanel", "/admin/../public", "/public/../admin",
	"/admin;x/", "//admin", "/admin/.", "/%2e%2e/", "/public/%2e%2e/admin",
	"/public/%2E%2e/admin", "/admin%23", "/public/../admin%23", "/administrator",
	"/public/..;/admin", "/admin/..;/public/x", "/public;x/a", "/x/..;/public/a",
	"/%61dmin", "/%41DMIN/x", "/ADMIN", "/Admin/x", "/public/.;/../admin",
	"/public/%252e%252e/admin", "/%C0%AE%C0%AE/admin", "/public\\..\\admin",
	"/public/%5C../admin", "/public/..%2Fadmin", "/a/;x/../admin/", "/public/;x/../../admin",
	"/public//../admin", "/public/./../admin", "/public/a/../../admin", "/app/;jsessionid=1",
	"/caf%C3%A9", "/%E2%84%AAdmin", "/admin%00", "/admin\x00", "/a\tb", "/%ZZ", "/%",
	"/public/%2e%2e%2fadmin", "/public/%2e%2e;/admin", "/public/x/%2e%2e/%2e%2e/admin",
	"/public%2F..%2Fadmin", "/public/#/../admin", "/public/?/../admin",
}

func FuzzCanonicalPath(f *testing.F) {
	for _, s := range fuzzPathSeeds {
		f.Add(s, false)
		f.Add(s, true)
	}
	pols := map[bool]*Policy{}
	for _, fold := range []bool{false, true} {
		p, err := Compile([]Rule{
			{Level: Deny, Paths: []string{"/admin/*"}},
			{Level: Deny, Paths: []string{"/admin"}},
			{Level: Bypass, Paths: []string{"/public/*"}},
		}, TwoFactor, fold)
		if err != nil {
			f.Fatal(err)
		}
		pols[fold] = p
	}
	f.Fuzz(func(t *testing.T, raw string, fold bool) {
		canon, err := CanonicalPath(raw, fold)
		if err != nil {
			return // refused before any rule: always safe
		}
		checkCanonicalShape(t, raw, canon, fold)

		models := pathModels
		if fold {
			models = append(models[:len(models):len(models)], iis)
		}
		level := pols[fold].Match(&Request{Path: canon}).Level
		for _, m := range models {
			got, ok := m.fn(raw)
			if !ok {
				continue // this upstream refuses the path itself
			}
			if fold {
				got = strings.ToLower(got)
			}
			if isAdmin(got) && level != Deny {
				t.Fatalf("%s: the %s model resolves it to %s, but the canonical path %s gets %v", q(raw), m.name, q(got), q(canon), level)
			}
			if level == Bypass {
				under := got
				if !m.params && strings.Contains(raw, ";") {
					// Rules ignore ";" parameters (SPEC §2); an upstream
					// that does not sees the same segments with a suffix.
					under = dropParams(got)
				}
				if !isPublic(under) {
					t.Fatalf("%s: canonical %s is bypassed, but the %s model resolves it to %s", q(raw), q(canon), m.name, q(got))
				}
			}
		}
	})
}

// checkCanonicalShape checks what every accepted canonical path looks like.
func checkCanonicalShape(t *testing.T, raw, canon string, fold bool) {
	t.Helper()
	if !strings.HasPrefix(canon, "/") {
		t.Fatalf("%s: canonical %s does not start with /", q(raw), q(canon))
	}
	for _, bad := range []string{"//", "/./", "/../", "\\", ";", "#", "?"} {
		if strings.Contains(canon, bad) {
			t.Fatalf("%s: canonical %s contains %s", q(raw), q(canon), q(bad))
		}
	}
	lc := strings.ToLower(canon)
	if strings.Contains(lc, "%2f") || strings.Contains(lc, "%5c") || strings.Contains(lc, "%00") {
		t.Fatalf("%s: canonical %s contains an encoded slash, backslash or NUL", q(raw), q(canon))
	}
	for seg := range strings.SplitSeq(canon[1:], "/") {
		if seg == "." || seg == ".." {
			t.Fatalf("%s: canonical %s has a dot segment", q(raw), q(canon))
		}
	}
	if fold && hasUpperASCII(canon) {
		t.Fatalf("%s: folded canonical %s has upper case", q(raw), q(canon))
	}
	again, err := CanonicalPath(canon, fold)
	if err != nil || again != canon {
		t.Fatalf("%s: canon(canon) = %s, %v; canon = %s", q(raw), q(again), err, q(canon))
	}
	// Canonical paths take the fast path: returned as is.
	if ok, err := scanPath(canon, fold); !ok || err != nil {
		t.Fatalf("%s: canonical %s is not recognised as canonical (%v)", q(raw), q(canon), err)
	}
	// The upstream's view does not change by canonicalisation.
	if d1, ok := tomcatModel(raw); ok {
		want := d1
		if fold {
			want = strings.ToLower(d1)
		}
		if d2, _ := nginxModel(canon); d2 != want {
			t.Fatalf("%s: the path resolves to %s, its canonical form %s to %s", q(raw), q(want), q(canon), q(d2))
		}
	}
}

// browserResolve does to a Location value what a browser does before
// resolving it: strip tab and newlines, leading and trailing C0 controls and
// spaces, and read "\" as "/".
func browserResolve(s string) (*url.URL, error) {
	s = strings.Map(func(r rune) rune {
		switch r {
		case '\t', '\n', '\r':
			return -1
		case '\\':
			return '/'
		}
		return r
	}, s)
	s = strings.TrimFunc(s, func(r rune) bool { return r <= ' ' })
	return url.Parse(s)
}

func FuzzReturnURL(f *testing.F) {
	for _, s := range readCorpus(f) {
		f.Add(s)
	}
	for _, s := range []string{
		"/", "/dashboard", "/a?b=c#d", "https://app.good.example.com/x", "https://x.good.example.com/",
		"https://good.example.com:8443/", "HTTPS://APP.GOOD.EXAMPLE.COM", "/%2F%2Fevil.com",
		"https://app.good.example.com./", "https://[::1]/", "/@x", "/a:b@c",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		got, ok := testReturn.Validate(raw)
		if !ok {
			if got != "" {
				t.Fatalf("Validate(%s) rejected but returned %s", q(raw), q(got))
			}
			return
		}
		if strings.HasPrefix(got, "/") {
			if got != raw {
				t.Fatalf("relative %s returned as %s", q(raw), q(got))
			}
			if len(got) > 1 && (got[1] == '/' || got[1] == '\\') {
				t.Fatalf("accepted protocol-relative %s", q(raw))
			}
			u, err := browserResolve(got)
			if err != nil || u.Host != "" || u.Scheme != "" || u.User != nil {
				t.Fatalf("accepted %s, which a browser reads as %#v (%v)", q(raw), u, err)
			}
			// Resolved against our origin, it stays there.
			base, _ := url.Parse("https://app.good.example.com/base/")
			if r := base.ResolveReference(u); r.Host != "app.good.example.com" {
				t.Fatalf("accepted %s, which resolves to host %q", q(raw), r.Host)
			}
			return
		}
		for _, s := range []string{raw, got} {
			u, err := browserResolve(s)
			if err != nil {
				t.Fatalf("accepted %s, which does not parse: %v", q(s), err)
			}
			h := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
			allowed := h == "good.example.com" || strings.HasSuffix(h, ".good.example.com")
			if !allowed || u.Scheme != "https" || u.User != nil {
				t.Fatalf("accepted %s: scheme %q host %q user %v", q(s), u.Scheme, u.Host, u.User)
			}
		}
	})
}
