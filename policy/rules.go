package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"path"
	"regexp"
	"slices"
	"strings"
)

// Policy is a compiled, immutable list of rules plus the default. It is safe
// for concurrent use.
type Policy struct {
	rules    []Rule // copies of the configured rules; Match returns pointers into it
	matchers []matcher
	def      Rule // the rule used when none matches
	refuse   Rule // Deny: for a request that is not canonical (a caller's bug)
	fold     bool
}

// matcher is the compiled form of a rule's matchers. An empty slice matches
// everything.
type matcher struct {
	methods  []string // upper-case
	hosts    []hostPattern
	networks []netip.Prefix
	paths    []pathPattern
	regexps  []*regexp.Regexp
}

type hostPattern struct {
	name     string // canonical host, or ".example.com" when wildcard
	wildcard bool
}

type pathKind uint8

const (
	pathExact pathKind = iota
	pathPrefix
	pathSuffix
	pathContains
	pathGlob
	pathAll
)

type pathPattern struct {
	kind pathKind
	s    string
	lit  string // glob: the literal prefix every match starts with
}

// Compile validates rules and compiles them for Match. def is the level of
// the default rule, used when no rule matches; foldCase makes path matching
// case-insensitive (requests must then be canonicalised with foldCase too).
//
// Errors name the rule (1-based) and the problem. Path patterns follow
// Caddy's path matcher: a trailing "*" is a prefix ("/public/*" matches
// "/public/" and "/public/x", not "/public"), a leading "*" a suffix, both a
// substring, a "*" elsewhere a path.Match glob (where "?" and "[" are glob
// syntax too), no "*" an exact path; "*" alone matches every path. Patterns
// are canonicalised as requests are. Path regexps are Go regexps matched,
// unanchored as in Caddy, against the canonical path. A host may be
// "*.example.com", which matches every subdomain of example.com (at any
// depth) and never example.com itself nor evilexample.com.
func Compile(rules []Rule, def Level, foldCase bool) (*Policy, error) {
	if def > Deny {
		return nil, fmt.Errorf("default: unknown level %d", def)
	}
	p := &Policy{
		rules:    make([]Rule, len(rules)),
		matchers: make([]matcher, len(rules)),
		def:      Rule{Level: def},
		refuse:   Rule{Level: Deny},
		fold:     foldCase,
	}
	catchAll := 0 // 1-based: the first rule without matchers
	for i := range rules {
		m, err := compileRule(&rules[i], foldCase)
		if err != nil {
			return nil, fmt.Errorf("rule %d: %w", i+1, err)
		}
		if catchAll > 0 {
			// The first match wins: this rule would never be looked at.
			return nil, fmt.Errorf("rule %d: never reached: rule %d before it has no matcher and takes every request (put it last, or give it a matcher)", i+1, catchAll)
		}
		if m.matchesAll() {
			catchAll = i + 1
		}
		p.rules[i] = cloneRule(&rules[i])
		p.matchers[i] = m
	}
	return p, nil
}

// matchesAll reports whether m has no matcher at all.
func (m *matcher) matchesAll() bool {
	return len(m.methods)+len(m.hosts)+len(m.networks)+len(m.paths)+len(m.regexps) == 0
}

// CheckRule reports what Compile would refuse in r alone (a bad method,
// pattern, host or requirement), so that a configuration can name the
// rule's own line.
func CheckRule(r Rule) error {
	_, err := compileRule(&r, false)
	return err
}

func cloneRule(r *Rule) Rule {
	c := *r
	c.Hosts = slices.Clone(r.Hosts)
	c.Paths = slices.Clone(r.Paths)
	c.PathRegexps = slices.Clone(r.PathRegexps)
	c.Methods = slices.Clone(r.Methods)
	c.Networks = slices.Clone(r.Networks)
	c.Groups = slices.Clone(r.Groups)
	c.Users = slices.Clone(r.Users)
	return c
}

func compileRule(r *Rule, fold bool) (matcher, error) {
	var m matcher
	if r.Level > Deny {
		return m, fmt.Errorf("unknown level %d", r.Level)
	}
	if r.MaxAge < 0 {
		return m, fmt.Errorf("negative max_age %v", r.MaxAge)
	}
	if r.MaxAge > 0 && r.Level != TwoFactor {
		return m, fmt.Errorf("max_age needs level two_factor, not %s", r.Level)
	}
	if r.NoTrustedDevice && r.Level != TwoFactor {
		return m, fmt.Errorf("no_trusted_device needs level two_factor, not %s", r.Level)
	}
	if (len(r.Groups) > 0 || len(r.Users) > 0) && (r.Level == Bypass || r.Level == Deny) {
		return m, fmt.Errorf("group and user requirements need level one_factor or two_factor, not %s", r.Level)
	}
	for _, g := range r.Groups {
		if g == "" {
			return m, errors.New("empty group")
		}
	}
	for _, u := range r.Users {
		if u == "" {
			return m, errors.New("empty user")
		}
	}
	for _, meth := range r.Methods {
		if !isToken(meth) {
			return m, fmt.Errorf("method %q: not an HTTP method", meth)
		}
		m.methods = append(m.methods, strings.ToUpper(meth))
	}
	for _, h := range r.Hosts {
		hp, err := compileHost(h)
		if err != nil {
			return m, fmt.Errorf("host %q: %w", h, err)
		}
		m.hosts = append(m.hosts, hp)
	}
	for _, n := range r.Networks {
		pr, err := compileNetwork(n)
		if err != nil {
			return m, fmt.Errorf("network %v: %w", n, err)
		}
		m.networks = append(m.networks, pr)
	}
	for _, pat := range r.Paths {
		pp, err := compilePath(pat, fold)
		if err != nil {
			return m, fmt.Errorf("path %q: %w", pat, err)
		}
		m.paths = append(m.paths, pp)
	}
	for _, expr := range r.PathRegexps {
		if expr == "" {
			return m, errors.New("empty path_regexp")
		}
		src := expr
		if fold {
			src = "(?i)" + expr
		}
		re, err := regexp.Compile(src)
		if err != nil {
			return m, fmt.Errorf("path_regexp %q: %w", expr, err)
		}
		m.regexps = append(m.regexps, re)
	}
	return m, nil
}

// isToken reports whether s is a non-empty RFC 9110 token.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

func compileHost(h string) (hostPattern, error) {
	if h == "" {
		return hostPattern{}, errors.New("empty host")
	}
	if strings.ContainsAny(h, "/\\@?# \t\r\n") {
		return hostPattern{}, errors.New("not a host name")
	}
	wildcard := strings.HasPrefix(h, "*.")
	base := h
	if wildcard {
		base = h[2:]
	}
	if strings.Contains(base, "*") {
		return hostPattern{}, errors.New("a wildcard is only allowed as the whole first label (*.example.com)")
	}
	bracketed := strings.HasPrefix(base, "[")
	if bracketed && !strings.HasSuffix(base, "]") || !bracketed && strings.Count(base, ":") == 1 {
		return hostPattern{}, errors.New("a host matcher takes no port")
	}
	c := CanonicalHost(base)
	if c == "" || strings.HasPrefix(c, ".") || strings.Contains(c, "..") {
		return hostPattern{}, errors.New("empty host")
	}
	if wildcard {
		if strings.Contains(c, ":") {
			return hostPattern{}, errors.New("a wildcard needs a domain name")
		}
		return hostPattern{name: "." + c, wildcard: true}, nil
	}
	return hostPattern{name: c}, nil
}

func compileNetwork(n netip.Prefix) (netip.Prefix, error) {
	if !n.IsValid() {
		return netip.Prefix{}, errors.New("invalid network")
	}
	a := n.Addr().WithZone("")
	bits := n.Bits()
	if a.Is4In6() && bits >= 96 { // ::ffff:10.0.0.0/104 is 10.0.0.0/8
		a, bits = a.Unmap(), bits-96
	}
	return netip.PrefixFrom(a, bits).Masked(), nil
}

func compilePath(pat string, fold bool) (pathPattern, error) {
	if pat == "" {
		return pathPattern{}, errors.New("empty path pattern")
	}
	if pat[0] != '/' && pat[0] != '*' {
		return pathPattern{}, errors.New("a path pattern must start with / or *")
	}
	if strings.Trim(pat, "*") == "" {
		return pathPattern{kind: pathAll}, nil
	}
	lead := pat[0] == '*'
	trail := pat[len(pat)-1] == '*'
	inner := strings.TrimSuffix(strings.TrimPrefix(pat, "*"), "*")
	if (lead || trail) && strings.Contains(inner, "*") {
		return pathPattern{}, errors.New("a * in the middle cannot be combined with a leading or trailing *")
	}
	switch {
	case lead && trail:
		s, err := normFragment(inner, fold)
		return pathPattern{kind: pathContains, s: s}, err
	case lead:
		s, err := normFragment(inner, fold)
		return pathPattern{kind: pathSuffix, s: s}, err
	case trail:
		s, err := canonicalPrefix(inner, fold)
		return pathPattern{kind: pathPrefix, s: s}, err
	case strings.Contains(pat, "*"):
		s, err := canonicalGlob(pat, fold)
		lit := s
		if i := strings.IndexAny(s, "*?[\\"); i >= 0 {
			lit = s[:i]
		}
		return pathPattern{kind: pathGlob, s: s, lit: lit}, err
	default:
		s, err := CanonicalPath(pat, fold)
		return pathPattern{kind: pathExact, s: s}, err
	}
}

// canonicalPrefix canonicalises the literal part of a prefix pattern:
// everything up to the last "/" as a path, the partial segment after it
// byte-wise ("/foo/." stays "/foo/.", a prefix of "/foo/.well-known").
func canonicalPrefix(pre string, fold bool) (string, error) {
	cut := strings.LastIndexByte(pre, '/')
	dir, err := CanonicalPath(pre[:cut+1], fold)
	if err != nil {
		return "", err
	}
	partial, err := normFragment(pre[cut+1:], fold)
	if err != nil {
		return "", err
	}
	return dir + partial, nil
}

// canonicalGlob canonicalises the literal segments of a glob pattern and
// folds the others; it refuses what no canonical path can match.
func canonicalGlob(pat string, fold bool) (string, error) {
	segs := strings.Split(pat[1:], "/")
	for i, seg := range segs {
		switch {
		case seg == "" && i < len(segs)-1, seg == ".", seg == "..":
			return "", errors.New("a glob pattern must be a canonical path (no //, . or ..)")
		case strings.ContainsAny(seg, "*?[\\"):
			if strings.ContainsAny(seg, "%;#") {
				return "", errors.New("percent-encoding, ; and # are not supported in a glob segment")
			}
			if fold {
				seg = strings.ToLower(seg)
			}
			segs[i] = seg
		default:
			s, err := normFragment(seg, fold)
			if err != nil {
				return "", err
			}
			segs[i] = s
		}
	}
	g := "/" + strings.Join(segs, "/")
	if _, err := path.Match(g, ""); err != nil {
		return "", err
	}
	return g, nil
}

// Match returns the first rule whose matchers all match req, or the default
// rule when none does; never nil. The result points into p and must not be
// modified. req.Host must be canonical (CanonicalHost) and req.Path
// canonical (CanonicalPath with p.FoldCase()); a path that visibly is not
// (empty, not starting with "/", or upper-case letters on a case-folding
// policy) gets a Deny rule that is not one of p's. Match does not allocate.
func (p *Policy) Match(req *Request) *Rule {
	_, r := p.MatchIndex(req)
	return r
}

// MatchIndex is Match that also says which rule matched: its 1-based index,
// 0 for the default rule, -1 for the Deny given to a non-canonical request.
func (p *Policy) MatchIndex(req *Request) (int, *Rule) {
	if p == nil {
		return -1, &Rule{Level: Deny}
	}
	if req == nil || req.Path == "" || req.Path[0] != '/' || p.fold && hasUpperASCII(req.Path) {
		return -1, &p.refuse
	}
	ip := req.ClientIP.Unmap().WithZone("")
	for i := range p.matchers {
		if p.matchers[i].match(req, ip) {
			return i + 1, &p.rules[i]
		}
	}
	return 0, &p.def
}

// hasUpperASCII reports an upper-case ASCII letter outside percent escapes.
func hasUpperASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '%':
			i += 2
		case 'A' <= c && c <= 'Z':
			return true
		}
	}
	return false
}

// match reports whether every matcher of m matches; ip is req.ClientIP
// unmapped and without zone.
func (m *matcher) match(req *Request, ip netip.Addr) bool {
	if len(m.methods) > 0 && !m.matchMethod(req.Method) {
		return false
	}
	if len(m.hosts) > 0 && !m.matchHost(req.Host) {
		return false
	}
	if len(m.networks) > 0 && !m.matchNetwork(ip) {
		return false
	}
	if len(m.paths) > 0 && !m.matchPath(req.Path) {
		return false
	}
	if len(m.regexps) > 0 && !m.matchRegexp(req.Path) {
		return false
	}
	return true
}

func (m *matcher) matchMethod(meth string) bool {
	for _, want := range m.methods {
		if equalFoldASCII(want, meth) {
			return true
		}
	}
	return false
}

// equalFoldASCII compares an upper-case want with got, ignoring ASCII case
// only (strings.EqualFold would also fold e.g. 'ſ' to 's').
func equalFoldASCII(want, got string) bool {
	if len(want) != len(got) {
		return false
	}
	for i := 0; i < len(got); i++ {
		c := got[i]
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		if c != want[i] {
			return false
		}
	}
	return true
}

func (m *matcher) matchHost(host string) bool {
	for _, h := range m.hosts {
		if h.wildcard {
			if len(host) > len(h.name) && strings.HasSuffix(host, h.name) {
				return true
			}
		} else if host == h.name {
			return true
		}
	}
	return false
}

func (m *matcher) matchNetwork(ip netip.Addr) bool {
	if !ip.IsValid() {
		return false
	}
	for _, n := range m.networks {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}

func (m *matcher) matchPath(p string) bool {
	for _, pp := range m.paths {
		switch pp.kind {
		case pathAll:
			return true
		case pathExact:
			if p == pp.s {
				return true
			}
		case pathPrefix:
			if strings.HasPrefix(p, pp.s) {
				return true
			}
		case pathSuffix:
			if strings.HasSuffix(p, pp.s) {
				return true
			}
		case pathContains:
			if strings.Contains(p, pp.s) {
				return true
			}
		case pathGlob:
			if !strings.HasPrefix(p, pp.lit) {
				continue
			}
			if ok, _ := path.Match(pp.s, p); ok {
				return true
			}
		}
	}
	return false
}

func (m *matcher) matchRegexp(p string) bool {
	for _, re := range m.regexps {
		if re.MatchString(p) {
			return true
		}
	}
	return false
}

// Default returns the level of the default rule.
func (p *Policy) Default() Level { return p.def.Level }

// FoldCase reports whether the policy matches paths case-insensitively, that
// is, whether requests must be canonicalised with CanonicalPath(…, true).
func (p *Policy) FoldCase() bool { return p.fold }

// Len returns the number of configured rules (the default not counted).
func (p *Policy) Len() int { return len(p.rules) }

// Rule returns the i-th configured rule (1-based, as in MatchIndex and in
// Compile's errors); 0 gives the default rule. It panics when i is out of
// range.
func (p *Policy) Rule(i int) *Rule {
	if i == 0 {
		return &p.def
	}
	return &p.rules[i-1]
}
