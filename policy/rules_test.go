package policy

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func mustCompile(t testing.TB, rules []Rule, def Level, fold bool) *Policy {
	t.Helper()
	p, err := Compile(rules, def, fold)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return p
}

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		name  string
		rules []Rule
		def   Level
		want  string // substring of the error
	}{
		{"unknown level", []Rule{{Paths: []string{"/a"}}, {Level: 9}}, TwoFactor, "rule 2: unknown level"},
		{"unknown default", nil, 7, "default: unknown level"},
		{"relative path", []Rule{{Paths: []string{"admin/*"}}}, TwoFactor, "rule 1: path \"admin/*\": a path pattern must start with / or *"},
		{"empty path", []Rule{{Paths: []string{""}}}, TwoFactor, "rule 1: path \"\": empty"},
		{"ambiguous path", []Rule{{Paths: []string{"/a%2Fb"}}}, TwoFactor, "rule 1: path \"/a%2Fb\": ambiguous request path: encoded slash"},
		{"path above root", []Rule{{Paths: []string{"/../x/*"}}}, TwoFactor, "above the root"},
		{"mixed wildcards", []Rule{{Paths: []string{"/a/*/b*"}}}, TwoFactor, "in the middle"},
		{"bad glob", []Rule{{Paths: []string{"/a/[*/b"}}}, TwoFactor, "syntax error in pattern"},
		{"glob with dots", []Rule{{Paths: []string{"/a/../*/b"}}}, TwoFactor, "canonical"},
		{"bad regexp", []Rule{{Paths: []string{"/a"}}, {Paths: []string{"/b"}}, {PathRegexps: []string{"("}}}, TwoFactor, "rule 3: path_regexp \"(\": error parsing regexp"},
		{"empty regexp", []Rule{{PathRegexps: []string{""}}}, TwoFactor, "empty path_regexp"},
		{"empty host", []Rule{{Hosts: []string{""}}}, TwoFactor, "rule 1: host \"\": empty host"},
		{"wildcard only", []Rule{{Hosts: []string{"*."}}}, TwoFactor, "empty host"},
		{"host with port", []Rule{{Hosts: []string{"example.com:8080"}}}, TwoFactor, "no port"},
		{"host with v6 port", []Rule{{Hosts: []string{"[::1]:8080"}}}, TwoFactor, "no port"},
		{"inner wildcard", []Rule{{Hosts: []string{"a.*.example.com"}}}, TwoFactor, "wildcard"},
		{"bare wildcard", []Rule{{Hosts: []string{"*"}}}, TwoFactor, "wildcard"},
		{"host with path", []Rule{{Hosts: []string{"example.com/x"}}}, TwoFactor, "not a host name"},
		{"bad method", []Rule{{Methods: []string{"GE T"}}}, TwoFactor, "rule 1: method \"GE T\""},
		{"empty method", []Rule{{Methods: []string{""}}}, TwoFactor, "method \"\""},
		{"bad network", []Rule{{Networks: []netip.Prefix{{}}}}, TwoFactor, "rule 1: network invalid Prefix: invalid network"},
		{"max_age on one_factor", []Rule{{Level: OneFactor, MaxAge: time.Minute}}, TwoFactor, "rule 1: max_age needs level two_factor, not one_factor"},
		{"max_age on bypass", []Rule{{Level: Bypass, MaxAge: time.Minute}}, TwoFactor, "not bypass"},
		{"no_trusted_device on deny", []Rule{{Level: Deny, NoTrustedDevice: true}}, TwoFactor, "rule 1: no_trusted_device needs level two_factor, not deny"},
		{"negative max_age", []Rule{{MaxAge: -time.Second}}, TwoFactor, "rule 1: negative max_age"},
		{"group on bypass", []Rule{{Level: Bypass, Groups: []string{"admins"}}}, TwoFactor, "rule 1: group and user requirements need"},
		{"user on deny", []Rule{{Level: Deny, Users: []string{"bob"}}}, TwoFactor, "not deny"},
		{"empty group", []Rule{{Groups: []string{""}}}, TwoFactor, "empty group"},
		{"empty user", []Rule{{Users: []string{""}}}, TwoFactor, "empty user"},
		{"semicolon in suffix", []Rule{{Paths: []string{"*;x"}}}, TwoFactor, ";"},
		{"rule after a catch-all", []Rule{{Paths: []string{"/a"}}, {Level: OneFactor, Groups: []string{"staff"}}, {Level: Deny, Paths: []string{"/internal/*"}}}, TwoFactor,
			"rule 3: never reached: rule 2 before it has no matcher"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Compile(tt.rules, tt.def, false)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Compile: error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestCompileAccepts(t *testing.T) {
	rules := []Rule{
		{Level: TwoFactor, MaxAge: time.Minute, NoTrustedDevice: true, Paths: []string{"/step-up/*"}},
		{Paths: []string{"*", "/*", "*.css", "*/x/*", "/a/*/b", "/a/*", "/a*"}},
		{Hosts: []string{"*.example.com", "Example.COM.", "::1", "[::1]", "127.0.0.1"}},
		{Methods: []string{"get", "PROPFIND"}},
		{Networks: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::ffff:192.168.0.0/112")}},
		{Level: OneFactor, Groups: []string{"admins"}, Users: []string{"alice"}, Paths: []string{"/team/*"}},
		{}, // no matcher: matches everything (so it comes last)
	}
	p := mustCompile(t, rules, Deny, true)
	if p.Default() != Deny || !p.FoldCase() || p.Len() != len(rules) {
		t.Fatalf("Default %v FoldCase %v Len %d", p.Default(), p.FoldCase(), p.Len())
	}
	// The policy keeps its own copy of the rules.
	rules[5].Groups[0] = "changed"
	if got := p.Rule(6).Groups[0]; got != "admins" {
		t.Fatalf("compiled rule shares memory with the input: %q", got)
	}
	if p.Rule(0).Level != Deny {
		t.Fatalf("Rule(0) is not the default")
	}
}

func TestMatch(t *testing.T) {
	admin := Rule{Level: Deny, Paths: []string{"/admin/*", "/admin"}}
	public := Rule{Level: Bypass, Paths: []string{"/public/*", "/health"}}
	mk := func(fold bool) *Policy {
		return mustCompile(t, []Rule{
			admin,
			public,
			{Level: OneFactor, Hosts: []string{"reports.example.com"}, Methods: []string{"GET"}, Paths: []string{"/reports/*"}},
			{Level: Bypass, Hosts: []string{"*.cdn.example.com"}},
			{Level: Deny, Networks: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8::/32")}},
			{Level: OneFactor, Paths: []string{"*.css"}},
			{Level: OneFactor, Paths: []string{"*/secret/*"}, Groups: []string{"ops"}},
			{Level: OneFactor, Paths: []string{"/users/*/profile"}, Users: []string{"alice"}},
			{Level: Deny, PathRegexps: []string{`^/api/v[0-9]+/internal(/|$)`}},
			{Level: Bypass, Paths: []string{"/Static/*"}},
			{Level: Deny, Paths: []string{"/caf%C3%A9/*"}},
			{Level: Deny, Paths: []string{"/x%2Dy"}},
			{Level: OneFactor, Paths: []string{"/.well*"}},
		}, TwoFactor, fold)
	}
	plain, folded := mk(false), mk(true)

	tests := []struct {
		fold   bool
		host   string
		raw    string // escaped path, canonicalised with the policy's setting
		method string
		ip     string
		want   int // 1-based rule index, 0 default, -1 refused by CanonicalPath
	}{
		{raw: "/admin", want: 1},
		{raw: "/admin/", want: 1},
		{raw: "/admin/x", want: 1},
		{raw: "/admin/.", want: -1},
		{raw: "/admin/./", want: 1},
		{raw: "/admin/x/..", want: -1},
		{raw: "/admin/x/../", want: 1},
		{raw: "/admin;x/", want: 1},
		{raw: "//admin", want: 1},
		{raw: "/%61dmin/x", want: 1},
		{raw: "/public/../admin", want: 1},
		{raw: "/public/%2e%2e/admin", want: 1},
		{raw: "/public/%2E%2E/admin", want: 1},
		{raw: "/admin/../public", want: 0}, // /public: not /public/*
		{raw: "/admin/../public/", want: 2},
		{raw: "/administrator", want: 0},
		{raw: "/administrator/x", want: 0},
		{raw: "/admin-backup", want: 0},
		{raw: "/ADMIN/x", want: 0},
		{raw: "/ADMIN/x", fold: true, want: 1},
		{raw: "/Admin", fold: true, want: 1},
		{raw: "/ADMIN%2Fpanel", want: -1},
		{raw: "/ADMIN%2Fpanel", fold: true, want: -1},
		{raw: "/%2e%2e/", want: -1},
		{raw: "/public/..;/admin", want: -1},
		{raw: "/admin%23", want: 0},
		{raw: "/public/../admin%23", want: 0},
		{raw: "/public", want: 0},
		{raw: "/public/", want: 2},
		{raw: "/public/x", want: 2},
		{raw: "/publicity", want: 0},
		{raw: "/health", want: 2},
		{raw: "/health/", want: 0},
		{raw: "/reports/q1", host: "reports.example.com", method: "GET", want: 3},
		{raw: "/reports/q1", host: "reports.example.com", method: "get", want: 3},
		{raw: "/reports/q1", host: "reports.example.com", method: "POST", want: 0},
		{raw: "/reports/q1", host: "other.example.com", method: "GET", want: 0},
		{raw: "/x", host: "a.cdn.example.com", want: 4},
		{raw: "/x", host: "a.b.cdn.example.com", want: 4},
		{raw: "/x", host: "cdn.example.com", want: 0},
		{raw: "/x", host: "evilcdn.example.com", want: 0},
		{raw: "/x", host: "cdn.example.com.evil.net", want: 0},
		{raw: "/x", ip: "192.0.2.7", want: 5},
		{raw: "/x", ip: "::ffff:192.0.2.7", want: 5},
		{raw: "/x", ip: "2001:db8::1", want: 5},
		{raw: "/x", ip: "198.51.100.1", want: 0},
		{raw: "/x", ip: "", want: 0},
		{raw: "/a/b.css", want: 6},
		{raw: "/a/b.CSS", want: 0},
		{raw: "/a/b.CSS", fold: true, want: 6},
		{raw: "/a/b.css;x", want: 6},
		{raw: "/a/b.css%3Bx", want: 0},
		{raw: "/x/secret/y", want: 7},
		{raw: "/users/bob/profile", want: 8},
		{raw: "/users/bob/x/profile", want: 0},
		{raw: "/api/v2/internal", want: 9},
		{raw: "/api/v2/internal/x", want: 9},
		{raw: "/api/v2/internalx", want: 0},
		{raw: "/API/V2/INTERNAL", fold: true, want: 9},
		{raw: "/static/x", want: 0},
		{raw: "/Static/x", want: 10},
		{raw: "/static/x", fold: true, want: 10},
		{raw: "/STATIC/x", fold: true, want: 10},
		{raw: "/caf%C3%A9/x", want: 11},
		{raw: "/caf%c3%a9/x", want: 11},
		{raw: "/CAF%C3%89/x", fold: true, want: 11},
		{raw: "/x-y", want: 12},
		{raw: "/x%2dy", want: 12},
		{raw: "/.well-known/acme", want: 13},
	}
	for _, tt := range tests {
		p := plain
		if tt.fold {
			p = folded
		}
		canon, err := CanonicalPath(tt.raw, tt.fold)
		if tt.want == -1 {
			if err == nil {
				t.Errorf("CanonicalPath(%q, %v) = %q, want refused", tt.raw, tt.fold, canon)
			}
			continue
		}
		if err != nil {
			t.Errorf("CanonicalPath(%q, %v): %v", tt.raw, tt.fold, err)
			continue
		}
		req := Request{Host: tt.host, Path: canon, Method: tt.method}
		if req.Method == "" {
			req.Method = "GET"
		}
		if tt.ip != "" {
			req.ClientIP = netip.MustParseAddr(tt.ip)
		}
		got, r := p.MatchIndex(&req)
		if got != tt.want {
			t.Errorf("fold=%v host=%q path %q (canonical %q) %s ip=%q: rule %d, want %d", tt.fold, tt.host, tt.raw, canon, tt.method, tt.ip, got, tt.want)
		}
		if r != p.Match(&req) || r != p.Rule(got) {
			t.Errorf("Match and MatchIndex disagree for %q", tt.raw)
		}
	}
}

func TestMatchHostCanonical(t *testing.T) {
	// A more specific rule must not be skipped by a case or dot variant
	// (Authelia CVE-2026-48794).
	p := mustCompile(t, []Rule{
		{Level: Deny, Hosts: []string{"App.Example.COM"}},
		{Level: Bypass, Hosts: []string{"*.example.com"}},
	}, TwoFactor, false)
	for _, h := range []string{"app.example.com", "App.Example.COM", "app.example.com.", "APP.EXAMPLE.COM.:443", "app.example.com:8080"} {
		if got := p.Match(&Request{Host: CanonicalHost(h), Path: "/"}); got.Level != Deny {
			t.Errorf("host %q: %v, want deny", h, got.Level)
		}
	}
	if got := p.Match(&Request{Host: CanonicalHost("other.example.com"), Path: "/"}); got.Level != Bypass {
		t.Errorf("other.example.com: %v", got.Level)
	}
}

func TestMatchFailsClosed(t *testing.T) {
	p := mustCompile(t, []Rule{{Level: Bypass}}, Bypass, true)
	for _, req := range []*Request{nil, {Path: ""}, {Path: "admin"}, {Path: "/ADMIN"}} {
		i, r := p.MatchIndex(req)
		if i != -1 || r == nil || r.Level != Deny {
			t.Errorf("MatchIndex(%+v) = %d, %+v; want -1, deny", req, i, r)
		}
	}
	// Upper-case hex digits of escapes are canonical, also when folding.
	if r := p.Match(&Request{Path: "/caf%C3%A9"}); r.Level != Bypass {
		t.Errorf("canonical escape refused: %v", r.Level)
	}
	var nilPolicy *Policy
	if r := nilPolicy.Match(&Request{Path: "/"}); r == nil || r.Level != Deny {
		t.Errorf("nil policy: %+v", r)
	}
	empty := mustCompile(t, nil, OneFactor, false)
	if r := empty.Match(&Request{Path: "/x"}); r == nil || r.Level != OneFactor {
		t.Errorf("no rules: %+v, want the default", r)
	}
}

func TestMatchNoAlloc(t *testing.T) {
	p := benchPolicy(t, 100)
	req := &Request{Host: "app.example.com", Path: "/nothing/matches/here", Method: "GET", ClientIP: netip.MustParseAddr("203.0.113.9")}
	if n := testing.AllocsPerRun(100, func() { p.Match(req) }); n != 0 {
		t.Errorf("Match: %v allocations, want 0", n)
	}
}

// benchPolicy builds n rules of mixed kinds, none matching benchRequest
// except possibly the last.
func benchPolicy(tb testing.TB, n int) *Policy {
	rules := make([]Rule, 0, n)
	for i := 0; len(rules) < n; i++ {
		switch i % 5 {
		case 0:
			rules = append(rules, Rule{Level: Bypass, Paths: []string{fmt.Sprintf("/public%d/*", i), fmt.Sprintf("/health%d", i)}})
		case 1:
			rules = append(rules, Rule{Level: Deny, Hosts: []string{fmt.Sprintf("h%d.example.com", i), "*.internal.example.net"}, Paths: []string{"/admin/*"}})
		case 2:
			rules = append(rules, Rule{Level: OneFactor, Methods: []string{"POST", "PUT"}, Paths: []string{fmt.Sprintf("/api/v%d/*", i)}})
		case 3:
			rules = append(rules, Rule{Level: TwoFactor, Networks: []netip.Prefix{netip.MustParsePrefix(fmt.Sprintf("10.%d.0.0/16", i%256))}, MaxAge: time.Minute})
		case 4:
			rules = append(rules, Rule{Level: OneFactor, Paths: []string{fmt.Sprintf("*.ext%d", i), fmt.Sprintf("/files/*/v%d", i)}})
		}
	}
	return mustCompile(tb, rules, TwoFactor, false)
}

func BenchmarkMatch(b *testing.B) {
	for _, n := range []int{1, 10, 100} {
		p := benchPolicy(b, n)
		req := &Request{Host: "app.example.com", Path: "/app/api/v1/users/42/profile", Method: "GET", ClientIP: netip.MustParseAddr("203.0.113.9")}
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if p.Match(req) == nil {
					b.Fatal("nil")
				}
			}
		})
	}
}
