package policy

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ErrAmbiguousPath is wrapped by every error CanonicalPath returns: the
// request path cannot be resolved the same way by every plausible upstream
// and must be refused (400) before any rule is looked at.
var ErrAmbiguousPath = errors.New("ambiguous request path")

// MaxPathLength is the longest escaped path CanonicalPath accepts (8 KiB).
const MaxPathLength = 8 << 10

// The rejections, allocated once so that refusing a path costs nothing.
var (
	errPathEmpty      = fmt.Errorf("%w: empty path", ErrAmbiguousPath)
	errPathNoSlash    = fmt.Errorf("%w: path does not start with /", ErrAmbiguousPath)
	errPathTooLong    = fmt.Errorf("%w: path longer than 8 KiB", ErrAmbiguousPath)
	errEncodedSlash   = fmt.Errorf("%w: encoded slash", ErrAmbiguousPath)
	errEncodedBack    = fmt.Errorf("%w: encoded backslash", ErrAmbiguousPath)
	errBackslash      = fmt.Errorf("%w: backslash", ErrAmbiguousPath)
	errNUL            = fmt.Errorf("%w: NUL byte", ErrAmbiguousPath)
	errControl        = fmt.Errorf("%w: control character", ErrAmbiguousPath)
	errRawHash        = fmt.Errorf("%w: raw #", ErrAmbiguousPath)
	errRawQuery       = fmt.Errorf("%w: raw ? in the path", ErrAmbiguousPath)
	errBadEscape      = fmt.Errorf("%w: invalid percent-encoding", ErrAmbiguousPath)
	errDoubleEncoding = fmt.Errorf("%w: double percent-encoding", ErrAmbiguousPath)
	errBadUTF8        = fmt.Errorf("%w: percent-encoded bytes are not valid UTF-8", ErrAmbiguousPath)
	errAboveRoot      = fmt.Errorf("%w: .. above the root", ErrAmbiguousPath)
	errDotParam       = fmt.Errorf("%w: ; parameter on a dot or empty segment", ErrAmbiguousPath)
	errTrailingDot    = fmt.Errorf("%w: dot segment at the end of the path", ErrAmbiguousPath)
)

// keep[b] is true for the bytes that appear unescaped in a canonical path:
// RFC 3986 unreserved characters, the sub-delims except ';', ':', '@' and
// '/'. Escapes of these bytes (other than '/') are decoded; every other byte
// is percent-encoded with upper-case hex digits.
var keep = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "-._~!$&'()*+,=:@/" {
		t[c] = true
	}
	return t
}()

// plain is keep without '/': bytes that need no attention in scanPath.
var plain = func() [256]bool {
	t := keep
	t['/'] = false
	return t
}()

// CanonicalPath returns the path that rules match against, given the
// request path exactly as sent, percent-encoded (r.URL.EscapedPath()).
//
// It strips ";" parameters from every segment (before dot resolution, as
// Java servlet containers do), decodes escapes of characters that need none
// (unreserved characters, sub-delims other than ";", ":" and "@"),
// percent-encodes every other byte with upper-case hex, resolves "." and
// ".." segments (RFC 3986 remove_dot_segments), merges duplicate slashes,
// keeps a trailing slash, and folds to lower case (Unicode) only when
// foldCase is set.
//
// It refuses, with an error wrapping ErrAmbiguousPath: an empty path or one
// not starting with "/", one longer than MaxPathLength (as sent or once
// canonical), an encoded "/" or
// "\", a raw "\", "#" or "?", NUL and other control characters (raw or
// encoded), invalid percent-encoding, double encoding ("%25" followed by two
// hex digits), escapes that do not decode to valid UTF-8, ".." above the
// root, a "." or ".." as the last segment unless it leads to the root
// (upstreams disagree on whether "/a/b/.." is "/a" or "/a/"), and a ";"
// parameter on a "." or ".." segment or on an empty segment other than the
// last one (servlet containers and everything else would see a different
// structure).
//
// When escaped is already canonical it is returned as is, without
// allocating.
func CanonicalPath(escaped string, foldCase bool) (string, error) {
	if escaped == "" {
		return "", errPathEmpty
	}
	if escaped[0] != '/' {
		return "", errPathNoSlash
	}
	if len(escaped) > MaxPathLength {
		return "", errPathTooLong
	}
	canonical, err := scanPath(escaped, foldCase)
	if err != nil {
		return "", err
	}
	if canonical {
		return escaped, nil
	}
	return rebuildPath(escaped, foldCase)
}

// scanPath validates s and reports whether it is already canonical. It
// never allocates. Every rejection is decided here, except those that need
// the segment structure (dot resolution), which rebuildPath reports; a path
// that needs them is never canonical.
func scanPath(s string, fold bool) (canonical bool, err error) {
	canonical = true
	var (
		rb       [utf8.UTFMax]byte // the multi-byte rune being decoded
		rn, need int
		pct      uint8 // 1: after a decoded '%'; 2: after '%' and a hex digit
		segStart = 1
	)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if plain[c] && pct == 0 && need == 0 && !(fold && 'A' <= c && c <= 'Z') {
			continue // the common case: nothing to check
		}
		b := c
		if c == '%' {
			if i+2 >= len(s) {
				return false, errBadEscape
			}
			h1, ok1 := unhex(s[i+1])
			h2, ok2 := unhex(s[i+2])
			if !ok1 || !ok2 {
				return false, errBadEscape
			}
			if isLowerHex(s[i+1]) || isLowerHex(s[i+2]) {
				canonical = false
			}
			b = h1<<4 | h2
			i += 2
			switch {
			case b == '/':
				return false, errEncodedSlash
			case b == '\\':
				return false, errEncodedBack
			case b == 0:
				return false, errNUL
			case b < 0x20 || b == 0x7f:
				return false, errControl
			case keep[b]:
				canonical = false // needs no escape: decode it
			}
		} else {
			switch {
			case c == 0:
				return false, errNUL
			case c < 0x20 || c == 0x7f:
				return false, errControl
			case c == '\\':
				return false, errBackslash
			case c == '#':
				return false, errRawHash
			case c == '?':
				return false, errRawQuery
			case c == '/':
				if i > 0 {
					if seg := s[segStart:i]; seg == "" || seg == "." || seg == ".." {
						canonical = false
					}
				}
				segStart = i + 1
			case !keep[c]:
				canonical = false // ';', space, non-ASCII, …
			case fold && 'A' <= c && c <= 'Z':
				canonical = false
			}
		}

		// The decoded byte stream must be valid UTF-8.
		switch {
		case need > 0:
			if b&0xc0 != 0x80 {
				return false, errBadUTF8
			}
			rb[rn] = b
			rn++
			if rn == need {
				r, size := utf8.DecodeRune(rb[:rn])
				if size != rn {
					return false, errBadUTF8
				}
				if fold && unicode.ToLower(r) != r {
					canonical = false
				}
				need, rn = 0, 0
			}
		case b >= 0x80:
			switch {
			case b >= 0xc2 && b <= 0xdf:
				need = 2
			case b >= 0xe0 && b <= 0xef:
				need = 3
			case b >= 0xf0 && b <= 0xf4:
				need = 4
			default:
				return false, errBadUTF8
			}
			rb[0], rn = b, 1
		}

		// A decoded '%' followed by two hex digits is double encoding.
		switch pct {
		case 1:
			pct = 0
			if isHex(b) {
				pct = 2
			}
		case 2:
			if isHex(b) {
				return false, errDoubleEncoding
			}
			pct = 0
		}
		if b == '%' {
			pct = 1
		}
	}
	if need > 0 {
		return false, errBadUTF8
	}
	if seg := s[segStart:]; seg == "." || seg == ".." {
		canonical = false
	}
	return canonical, nil
}

// rebuildPath builds the canonical form of s, which scanPath has validated.
func rebuildPath(s string, fold bool) (string, error) {
	out := make([]byte, 0, len(s)+8)
	var (
		stackBuf [16]int // len(out) before each pushed segment
		stack    = stackBuf[:0]
		tmpBuf   [64]byte
		tmp      = tmpBuf[:0]
		trailing bool
		// prevEmpty: the segment before was empty ("//"): a ".." after
		// it is popped by RFC 3986 and WHATWG, merged away here.
		prevEmpty bool
	)
	rest := s[1:]
	for {
		seg, next, more := strings.Cut(rest, "/")
		last := !more
		name, _, param := strings.Cut(seg, ";")
		tmp = appendDecoded(tmp[:0], name)
		if fold {
			tmp = bytes.ToLower(tmp)
		}
		empty := len(tmp) == 0
		switch {
		case empty:
			if param && !last {
				return "", errDotParam
			}
			trailing = true
		case len(tmp) == 1 && tmp[0] == '.':
			if param {
				return "", errDotParam
			}
			if last && len(stack) > 0 {
				return "", errTrailingDot
			}
			trailing = true
		case len(tmp) == 2 && tmp[0] == '.' && tmp[1] == '.':
			if param {
				return "", errDotParam
			}
			if prevEmpty {
				return "", errEmptyBeforeDotDot
			}
			if len(stack) == 0 {
				return "", errAboveRoot
			}
			out = out[:stack[len(stack)-1]]
			stack = stack[:len(stack)-1]
			if last && len(stack) > 0 {
				return "", errTrailingDot
			}
			trailing = true
		default:
			stack = append(stack, len(out))
			out = append(out, '/')
			out = appendEncoded(out, tmp)
			trailing = false
		}
		prevEmpty = empty
		if last {
			break
		}
		rest = next
	}
	if trailing || len(out) == 0 {
		out = append(out, '/')
	}
	if len(out) > MaxPathLength { // escaping can make it longer
		return "", errPathTooLong
	}
	return string(out), nil
}

// normFragment normalises a piece of a path pattern that is not a whole
// path (the "*.css" of a suffix pattern, the last partial segment of a
// prefix): the same validation, decoding, encoding and case folding as
// CanonicalPath, without dot resolution or slash merging.
func normFragment(s string, fold bool) (string, error) {
	if strings.IndexByte(s, ';') >= 0 {
		return "", fmt.Errorf("%w: ; in a path pattern fragment", ErrAmbiguousPath)
	}
	if _, err := scanPath("/"+s, fold); err != nil {
		return "", err
	}
	tmp := appendDecoded(nil, s)
	if fold {
		tmp = bytes.ToLower(tmp)
	}
	return string(appendEncoded(nil, tmp)), nil
}

// appendDecoded appends s with every escape decoded; s has been validated.
func appendDecoded(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			h1, _ := unhex(s[i+1])
			h2, _ := unhex(s[i+2])
			dst = append(dst, h1<<4|h2)
			i += 2
			continue
		}
		dst = append(dst, s[i])
	}
	return dst
}

// appendEncoded appends b with every byte outside keep percent-encoded.
func appendEncoded(dst, b []byte) []byte {
	const hexUpper = "0123456789ABCDEF"
	for _, c := range b {
		if keep[c] {
			dst = append(dst, c)
			continue
		}
		dst = append(dst, '%', hexUpper[c>>4], hexUpper[c&15])
	}
	return dst
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

func isHex(c byte) bool {
	_, ok := unhex(c)
	return ok
}

func isLowerHex(c byte) bool { return 'a' <= c && c <= 'f' }

// CanonicalHost returns host as rules compare it: lower-case, without the
// port, without the brackets of an IPv6 literal (which is also put in its
// RFC 5952 form), and without one trailing dot. "App.Example.COM:443",
// "app.example.com." and "app.example.com" all give "app.example.com";
// "[::1]:8080" gives "::1". It does not allocate when host is already
// canonical.
func CanonicalHost(host string) string {
	h := host
	if strings.HasPrefix(h, "[") {
		end := strings.IndexByte(h, ']')
		if end < 0 {
			return asciiLower(h) // malformed: matches no configured host
		}
		return canonicalIPv6(h[1:end])
	}
	switch strings.Count(h, ":") {
	case 0:
	case 1:
		h = h[:strings.IndexByte(h, ':')]
	default:
		return canonicalIPv6(h) // a bare IPv6 address
	}
	h = strings.TrimSuffix(h, ".")
	return asciiLower(h)
}

// asciiLower lower-cases ASCII letters only: strings.ToLower would turn
// "İ" into "i" and the Kelvin sign into "k", so that a host no DNS name or
// front proxy takes for public.example.com matched its rules.
func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

func canonicalIPv6(h string) string {
	if a, err := netip.ParseAddr(h); err == nil && a.Is6() {
		if s := a.String(); s != h {
			return s
		}
		return h
	}
	return asciiLower(h)
}

// errEmptyBeforeDotDot: "//.." reads differently as RFC 3986 and the
// WHATWG URL parser resolve it ("/a//../b" is "/a/b": the empty segment
// is popped) and as slash-merging does first ("/b").
var errEmptyBeforeDotDot = fmt.Errorf("%w: .. after an empty segment", ErrAmbiguousPath)

// ResolveDotSegments removes the "." and ".." segments (also written
// %2e) of an escaped path as a client sent it, leaving every other byte
// as it was, so that the request can go on as it was judged: the caller
// checks the path with CanonicalPath first. changed is false for a path
// without dot segments. A ".." right after an empty segment is refused
// (errEmptyBeforeDotDot), and so is one above the root.
func ResolveDotSegments(escaped string) (resolved string, changed bool, err error) {
	if !strings.HasPrefix(escaped, "/") {
		return "", false, errPathNoSlash
	}
	segs := strings.Split(escaped[1:], "/")
	out := make([]string, 0, len(segs))
	trailing := false
	for _, seg := range segs {
		name, _, _ := strings.Cut(seg, ";")
		switch dotName(name) {
		case 1:
			changed, trailing = true, true
			continue
		case 2:
			changed, trailing = true, true
			if len(out) == 0 {
				return "", false, errAboveRoot
			}
			if out[len(out)-1] == "" {
				return "", false, errEmptyBeforeDotDot
			}
			out = out[:len(out)-1]
			continue
		}
		out = append(out, seg)
		trailing = false
	}
	if !changed {
		return escaped, false, nil
	}
	p := "/" + strings.Join(out, "/")
	if trailing && !strings.HasSuffix(p, "/") {
		p += "/"
	}
	return p, true, nil
}

// dotName is 1 for a "." segment name, 2 for "..", else 0; the dots may
// be percent-encoded.
func dotName(name string) int {
	n := 0
	for i := 0; i < len(name); {
		switch {
		case name[i] == '.':
			i++
		case i+2 < len(name) && name[i] == '%' && name[i+1] == '2' && (name[i+2] == 'e' || name[i+2] == 'E'):
			i += 3
		default:
			return 0
		}
		n++
		if n > 2 {
			return 0
		}
	}
	return n
}
