package recoveryui

import (
	"net/http"
	"slices"
	"strings"
	"testing"
)

func TestStripOwnCookies(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []string
		want []string // nil: no Cookie header left
	}{
		{"only the session", []string{"twostep=abc"}, nil},
		{"host-prefixed session and device", []string{"__Host-twostep=abc; __Host-twostep_device=def"}, nil},
		{"the app's cookies stay", []string{"sid=1; twostep=abc; theme=dark"}, []string{"sid=1; theme=dark"}},
		{"nothing of ours: unchanged", []string{"sid=1;theme=dark"}, []string{"sid=1;theme=dark"}},
		{"several lines", []string{"twostep=abc", "a=1", "twostep_device=x; b=2"}, []string{"a=1", "b=2"}},
		{"csrf and oidc", []string{"twostep_csrf=1; twostep_oidc=2; x=3"}, []string{"x=3"}},
		{"similar names are the app's", []string{"twostepx=1; my_twostep=2"}, []string{"twostepx=1; my_twostep=2"}},
		{"spaces around the name", []string{" twostep =abc ;x=1"}, []string{"x=1"}},
		{"empty parts dropped with ours", []string{";; twostep=a;;"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{"Cookie": slices.Clone(tc.in)}
			StripOwnCookies(h)
			got, ok := h["Cookie"]
			if tc.want == nil {
				if ok {
					t.Fatalf("Cookie %q left, want none", got)
				}
				return
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("Cookie %q, want %q", got, tc.want)
			}
		})
	}
}

func TestStripOwnCookiesAllocations(t *testing.T) {
	h := http.Header{}
	n := testing.AllocsPerRun(100, func() {
		h["Cookie"] = []string{"twostep=abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"}
		StripOwnCookies(h)
	})
	if n > 1 { // the slice literal above
		t.Fatalf("%.0f allocations to drop a lone session cookie", n)
	}
}

// FuzzStripOwnCookies: whatever the header, none of our cookies survives
// and every other cookie does, in order.
func FuzzStripOwnCookies(f *testing.F) {
	f.Add("sid=1; twostep=abc; theme=dark")
	f.Add("__Host-twostep=a;__Host-twostep_device=b")
	f.Add(";;=;twostep")
	f.Fuzz(func(t *testing.T, line string) {
		h := http.Header{"Cookie": {line}}
		StripOwnCookies(h)
		var others []string
		for _, part := range strings.Split(line, ";") {
			name, _, ok := strings.Cut(part, "=")
			if (ok && IsOwnCookie(strings.TrimSpace(name))) || strings.TrimSpace(part) == "" {
				continue
			}
			others = append(others, strings.TrimSpace(part))
		}
		var got []string
		for _, l := range h["Cookie"] {
			for _, part := range strings.Split(l, ";") {
				name, _, ok := strings.Cut(part, "=")
				if ok && IsOwnCookie(strings.TrimSpace(name)) {
					t.Fatalf("%q survived in %q", name, l)
				}
				if strings.TrimSpace(part) != "" {
					got = append(got, strings.TrimSpace(part))
				}
			}
		}
		if !slices.Equal(got, others) {
			t.Fatalf("other cookies %q, want %q (from %q)", got, others, line)
		}
	})
}
