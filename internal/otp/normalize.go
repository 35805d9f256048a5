package otp

// MaxInputLen is the longest input, in bytes, that NormalizeCode and
// NormalizeBackupCode look at; anything longer is refused before any other
// work is done. The longest legitimate entry, ten full-width digits with
// separators, is well under it.
const MaxInputLen = 64

// isASCIISpace reports whether c is ASCII white space (space, \t, \n, \v, \f, \r).
func isASCIISpace(c byte) bool {
	switch c {
	case ' ', '\t', '\n', '\v', '\f', '\r':
		return true
	}
	return false
}

// trimASCIISpace removes leading and trailing ASCII white space.
func trimASCIISpace(s string) string {
	for len(s) > 0 && isASCIISpace(s[0]) {
		s = s[1:]
	}
	for len(s) > 0 && isASCIISpace(s[len(s)-1]) {
		s = s[:len(s)-1]
	}
	return s
}

// NormalizeCode turns what a user typed into a numeric code of exactly
// digits ASCII digits, or reports false.
//
// The rule, applied to the raw bytes (invalid UTF-8 is simply refused):
//
//  1. Input longer than MaxInputLen bytes, or digits < 1 or > MaxInputLen, is refused.
//  2. Leading and trailing ASCII white space is trimmed.
//  3. ASCII spaces and hyphens are removed wherever they are ("123 456",
//     "123-456").
//  4. Full-width digits U+FF10..U+FF19 ("０".."９"), which some mobile and East
//     Asian keyboards produce, are mapped to ASCII '0'..'9'.
//  5. Anything else — letters, other white space inside the code, other
//     Unicode digits (Arabic-Indic, Devanagari, …), any other non-ASCII byte —
//     is refused.
//  6. The result must have exactly digits digits.
//
// The result is made of ASCII digits only, so NormalizeCode is idempotent.
func NormalizeCode(s string, digits int) (string, bool) {
	return normalizeDigits(s, digits, digits)
}

// normalizeDigits is NormalizeCode accepting minDigits to maxDigits digits.
func normalizeDigits(s string, minDigits, maxDigits int) (string, bool) {
	if len(s) > MaxInputLen || minDigits < 1 || maxDigits > MaxInputLen || minDigits > maxDigits {
		return "", false
	}
	s = trimASCIISpace(s)
	var buf [MaxInputLen]byte
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c
		case c == ' ' || c == '-':
			continue
		case c == 0xEF && i+2 < len(s) && s[i+1] == 0xBC && s[i+2] >= 0x90 && s[i+2] <= 0x99:
			// U+FF10..U+FF19 is EF BC 90..EF BC 99 in UTF-8.
			d = '0' + (s[i+2] - 0x90)
			i += 2
		default:
			return "", false
		}
		if n == maxDigits {
			return "", false
		}
		buf[n] = d
		n++
	}
	if n < minDigits {
		return "", false
	}
	return string(buf[:n]), true
}
