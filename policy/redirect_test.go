package policy

import (
	"os"
	"strings"
	"testing"
)

var testReturn = ReturnPolicy{Scheme: "https", Host: "app.good.example.com", CookieDomain: "good.example.com"}

// readCorpus returns the payloads of testdata/openredirects.txt.
func readCorpus(tb testing.TB) []string {
	tb.Helper()
	b, err := os.ReadFile("testdata/openredirects.txt")
	if err != nil {
		tb.Fatal(err)
	}
	var out []string
	for line := range strings.SplitSeq(string(b), "\n") {
		line = strings.TrimSuffix(line, "\r")
		if line == "" || strings.HasPrefix(line, "# ") {
			continue
		}
		out = append(out, line)
	}
	return out
}

func TestOpenRedirectCorpus(t *testing.T) {
	corpus := readCorpus(t)
	if len(corpus) < 150 {
		t.Fatalf("corpus has %d payloads, want at least 150", len(corpus))
	}
	policies := []ReturnPolicy{
		testReturn,
		{Scheme: "https", Host: "app.good.example.com"},
		{Scheme: "https", Host: "app.good.example.com:443", CookieDomain: ".good.example.com"},
	}
	for _, rp := range policies {
		for _, raw := range corpus {
			if got, ok := rp.Validate(raw); ok || got != "" {
				t.Errorf("%+v: Validate(%q) = %q, %v; want rejected", rp, raw, got, ok)
			}
		}
	}
}

func TestValidateRejects(t *testing.T) {
	// Payloads a text file cannot hold, and cases specific to a policy.
	tests := []struct {
		rp  ReturnPolicy
		raw string
	}{
		{testReturn, ""},
		{testReturn, "/\x00/evil.com"},
		{testReturn, "/\n/evil.com"},
		{testReturn, "/\r/evil.com"},
		{testReturn, "\n//evil.com"},
		{testReturn, "/\x0b/evil.com"},
		{testReturn, "https://app.good.example.com/\x7f"},
		{testReturn, "/" + strings.Repeat("a", MaxReturnURLLength)},
		{testReturn, "/a%20b"}, // encoded whitespace in the path is refused
		{ReturnPolicy{Scheme: "https", Host: "app.good.example.com"}, "https://app.good.example.com:8443/"},
		{ReturnPolicy{Scheme: "https", Host: "app.good.example.com"}, "https://good.example.com/"},
		{ReturnPolicy{Scheme: "https", Host: "app.good.example.com:8443"}, "https://app.good.example.com/"},
		{ReturnPolicy{Scheme: "http", Host: "localhost:8080"}, "http://localhost/x"},
		{ReturnPolicy{Scheme: "http", Host: "localhost:8080"}, "https://localhost:8080/x"},
		{ReturnPolicy{Scheme: "http", Host: "localhost:8080"}, "http://127.0.0.1:8080/"},
		{ReturnPolicy{Scheme: "http", Host: "127.0.0.1:8080"}, "http://2130706433:8080/"},
		{ReturnPolicy{Scheme: "http", Host: "127.0.0.1:8080"}, "http://127.1:8080/"},
		{ReturnPolicy{Scheme: "http", Host: "[::1]:8080"}, "http://[::ffff:127.0.0.1]:8080/"},
		{ReturnPolicy{Scheme: "gopher", Host: "app.good.example.com"}, "gopher://app.good.example.com/"},
		{ReturnPolicy{Scheme: "gopher", Host: "app.good.example.com"}, "https://app.good.example.com/"},
		{ReturnPolicy{}, "https://app.good.example.com/"},
		{ReturnPolicy{Scheme: "https"}, "https:///"},
	}
	for _, tt := range tests {
		if got, ok := tt.rp.Validate(tt.raw); ok || got != "" {
			t.Errorf("%+v: Validate(%q) = %q, %v; want rejected", tt.rp, tt.raw, got, ok)
		}
	}
}

func TestValidateAccepts(t *testing.T) {
	dev := ReturnPolicy{Scheme: "http", Host: "localhost:8080", CookieDomain: "good.example.com"}
	tests := []struct {
		rp        ReturnPolicy
		raw, want string
	}{
		{testReturn, "/", "/"},
		{testReturn, "/dashboard", "/dashboard"},
		{testReturn, "/a/b/c?x=1&y=2#frag", "/a/b/c?x=1&y=2#frag"},
		{testReturn, "/search?q=a+b", "/search?q=a+b"},
		{testReturn, "/search?q=a%20b%09c", "/search?q=a%20b%09c"},
		{testReturn, "https://app.good.example.com/s?q=a%20b", "https://app.good.example.com/s?q=a%20b"},
		{testReturn, "/@alice", "/@alice"},
		{testReturn, "/evil.com@good", "/evil.com@good"},
		{testReturn, "/wiki/Special:Search", "/wiki/Special:Search"},
		{testReturn, "/caf%C3%A9", "/caf%C3%A9"},
		{testReturn, "/x?next=//evil.com", "/x?next=//evil.com"},
		{testReturn, "/x#//evil.com", "/x#//evil.com"},
		{testReturn, "/a%2Fb", "/a%2Fb"},
		{testReturn, "/.well-known/x", "/.well-known/x"},
		{testReturn, "/?", "/?"},
		{testReturn, "/#", "/#"},
		{testReturn, "https://app.good.example.com", "https://app.good.example.com"},
		{testReturn, "https://app.good.example.com/x?y=1#z", "https://app.good.example.com/x?y=1#z"},
		{testReturn, "HTTPS://APP.GOOD.EXAMPLE.COM/x", "https://APP.GOOD.EXAMPLE.COM/x"},
		{testReturn, "https://app.good.example.com:443/x", "https://app.good.example.com:443/x"},
		{testReturn, "https://app.good.example.com./x", "https://app.good.example.com./x"},
		{testReturn, "https://good.example.com/", "https://good.example.com/"},
		{testReturn, "https://sub.app.good.example.com/", "https://sub.app.good.example.com/"},
		{testReturn, "https://app.good.example.com:8443/", "https://app.good.example.com:8443/"},
		{testReturn, "https://app.good.example.com//evil.com", "https://app.good.example.com//evil.com"},
		{testReturn, "https://app.good.example.com/#@evil.com", "https://app.good.example.com/#@evil.com"},
		{ReturnPolicy{Scheme: "https", Host: "App.Good.Example.COM:443"}, "https://app.good.example.com/", "https://app.good.example.com/"},
		{ReturnPolicy{Scheme: "https", Host: "app.good.example.com:8443"}, "https://app.good.example.com:8443/x", "https://app.good.example.com:8443/x"},
		{ReturnPolicy{Scheme: "https", Host: "app.good.example.com", CookieDomain: ".Good.Example.com"}, "https://x.good.example.com/", "https://x.good.example.com/"},
		{dev, "http://localhost:8080/x", "http://localhost:8080/x"},
		{dev, "http://x.good.example.com/", "http://x.good.example.com/"},
		{dev, "https://x.good.example.com/", "https://x.good.example.com/"},
		{ReturnPolicy{Scheme: "http", Host: "[::1]:8080"}, "http://[::1]:8080/", "http://[::1]:8080/"},
		{ReturnPolicy{Scheme: "http", Host: "[::1]:8080"}, "http://[0:0::1]:8080/", "http://[0:0::1]:8080/"},
		{ReturnPolicy{Scheme: "http", Host: "127.0.0.1:8080"}, "http://127.0.0.1:8080/", "http://127.0.0.1:8080/"},
	}
	for _, tt := range tests {
		got, ok := tt.rp.Validate(tt.raw)
		if !ok || got != tt.want {
			t.Errorf("%+v: Validate(%q) = %q, %v; want %q", tt.rp, tt.raw, got, ok, tt.want)
		}
	}
}
