package notify

import (
	"fmt"
	"strings"
	"time"
	"unicode"
)

// CodeText is the text of a code message for SMS and email, in plain
// language, starting as SPEC §6a's example does:
//
//	Your code is 123456 for Example Corp. It expires in 10 minutes. Don't share it.
//
// site names the service; when empty the sentence reads "Your code is 123456."
// lifetime is the code's validity (code.lifetime); the expiry sentence is left
// out when it is not positive. Lifetimes are never overstated: 90 s reads
// "1 minute".
func CodeText(code, site string, lifetime time.Duration) string {
	var b strings.Builder
	b.WriteString("Your code is ")
	b.WriteString(code)
	if site = strings.TrimSpace(site); site != "" {
		b.WriteString(" for ")
		b.WriteString(site)
	}
	b.WriteString(".")
	if lifetime > 0 {
		b.WriteString(" It expires in ")
		b.WriteString(humanDuration(lifetime))
		b.WriteString(".")
	}
	b.WriteString(" Don't share it.")
	return b.String()
}

// SpokenCode is the sentence a voice call reads, with the code's digits one
// by one so that a speech engine does not say "one hundred twenty-three
// thousand…":
//
//	Your code is 1, 2, 3, 4, 5, 6.
func SpokenCode(code string) string {
	return "Your code is " + spell(code, ", ") + "."
}

// spell separates the characters of code with sep, dropping spaces and
// dashes a code may have been written with.
func spell(code, sep string) string {
	var parts []string
	for _, r := range code {
		if unicode.IsSpace(r) || r == '-' {
			continue
		}
		parts = append(parts, string(r))
	}
	return strings.Join(parts, sep)
}

// humanDuration says d in whole hours, minutes or seconds, rounding down.
func humanDuration(d time.Duration) string {
	plural := func(n int64, unit string) string {
		if n == 1 {
			return "1 " + unit
		}
		return fmt.Sprintf("%d %ss", n, unit)
	}
	switch {
	case d >= time.Hour && d%time.Hour == 0:
		return plural(int64(d/time.Hour), "hour")
	case d >= time.Minute:
		return plural(int64(d/time.Minute), "minute")
	default:
		s := int64(d / time.Second)
		if s < 1 {
			s = 1
		}
		return plural(s, "second")
	}
}
