package policy

import (
	"errors"
	"strings"
	"testing"
)

func TestCanonicalPath(t *testing.T) {
	tests := []struct {
		in   string
		fold bool
		want string // "" means rejected
	}{
		// Already canonical: returned as is.
		{in: "/", want: "/"},
		{in: "/a/b", want: "/a/b"},
		{in: "/public/", want: "/public/"},
		{in: "/a%20b", want: "/a%20b"},
		{in: "/caf%C3%A9", want: "/caf%C3%A9"},
		{in: "/a!$&'()*+,=:@~_-.b", want: "/a!$&'()*+,=:@~_-.b"},
		{in: "/%3B/%3F/%23/%25", want: "/%3B/%3F/%23/%25"},
		{in: "/.well-known/x", want: "/.well-known/x"},
		{in: "/a..b/...", want: "/a..b/..."},

		// ; parameters, before dot resolution.
		{in: "/a;jsessionid=1/b", want: "/a/b"},
		{in: "/admin;x/", want: "/admin/"},
		{in: "/admin;x", want: "/admin"},
		{in: "/app/;jsessionid=ABC", want: "/app/"},
		{in: "/a;b;c/d;e", want: "/a/d"},
		{in: "/public/..;/admin", want: ""},      // Tomcat: /admin; others: under /public/
		{in: "/admin/..;/public/a", want: ""},    // the reverse: must not become /public/a
		{in: "/public/.;x/a", want: ""},          // dot segment with a parameter
		{in: "/public/%2e%2e;x/admin", want: ""}, // encoded dots with a parameter
		{in: "/a/;x/../b", want: ""},             // empty segment with a parameter, not last

		// Decoding of characters that need no escape, upper-case escapes.
		{in: "/%41%62%63", want: "/Abc"},
		{in: "/%61dmin/x", want: "/admin/x"},
		{in: "/a%2db%5f%7e%2E", want: "/a-b_~."},
		{in: "/%21%24%26%27%28%29%2A%2B%2C%3D%3A%40", want: "/!$&'()*+,=:@"},
		{in: "/%3b%3f%23%25", want: "/%3B%3F%23%25"},
		{in: "/caf%c3%a9", want: "/caf%C3%A9"},
		{in: "/a b", want: "/a%20b"},
		{in: "/a\"<>[]^`{|}", want: "/a%22%3C%3E%5B%5D%5E%60%7B%7C%7D"},
		{in: "/caf\xc3\xa9", want: "/caf%C3%A9"},
		{in: "/admin%23", want: "/admin%23"},

		// Dot segments.
		{in: "/admin/../public", want: "/public"},
		{in: "/public/../admin", want: "/admin"},
		{in: "/admin/.", want: ""}, // Go: /admin; nginx: /admin/
		{in: "/admin/./", want: "/admin/"},
		{in: "/a/b/..", want: ""},
		{in: "/a/b/%2e%2E", want: ""},
		{in: "/a/b/../.", want: ""},
		{in: "/a/b/../", want: "/a/"},
		{in: "/a/./b/./c", want: "/a/b/c"},
		{in: "/public/%2e%2e/admin", want: "/admin"},
		{in: "/public/%2E%2E/admin", want: "/admin"},
		{in: "/public/.%2e/admin", want: "/admin"},
		{in: "/public/%2e/admin", want: "/public/admin"},
		{in: "/a/..", want: "/"},
		{in: "/a/b/../..", want: "/"},
		{in: "/.", want: "/"},
		{in: "/./", want: "/"},
		{in: "/%2e%2e/", want: ""},
		{in: "/../x", want: ""},
		{in: "/..", want: ""},
		{in: "/a/../../x", want: ""},
		{in: "/a/../b/../..", want: ""},

		// Duplicate slashes.
		{in: "//admin", want: "/admin"},
		{in: "//", want: "/"},
		{in: "/a//b///c//", want: "/a/b/c/"},
		{in: "///../x", want: ""},

		// Case folding.
		{in: "/ADMIN/x", want: "/ADMIN/x"},
		{in: "/ADMIN/x", fold: true, want: "/admin/x"},
		{in: "/%41DMIN", fold: true, want: "/admin"},
		{in: "/%C3%89T%C3%89", fold: true, want: "/%C3%A9t%C3%A9"},
		{in: "/%C3%A9", fold: true, want: "/%C3%A9"},
		{in: "/%E2%84%AAelvin", fold: true, want: "/kelvin"}, // KELVIN SIGN folds to k
		{in: "/a%3Bb", fold: true, want: "/a%3Bb"},

		// Rejections.
		{in: "", want: ""},
		{in: "admin", want: ""},
		{in: "*", want: ""},
		{in: "/ADMIN%2Fpanel", want: ""},
		{in: "/admin%2fpanel", want: ""},
		{in: "/admin%5Cpanel", want: ""},
		{in: "/admin%5cpanel", want: ""},
		{in: "/admin\\panel", want: ""},
		{in: "/admin\x00", want: ""},
		{in: "/admin%00", want: ""},
		{in: "/admin%0a", want: ""},
		{in: "/admin%0D%0A", want: ""},
		{in: "/admin%09", want: ""},
		{in: "/admin%7f", want: ""},
		{in: "/admin%1F", want: ""},
		{in: "/admin\t", want: ""},
		{in: "/admin\x7f", want: ""},
		{in: "/admin#", want: ""},
		{in: "/public#/../admin", want: ""},
		{in: "/admin?x", want: ""},
		{in: "/%zz", want: ""},
		{in: "/%4", want: ""},
		{in: "/a%", want: ""},
		{in: "/a%%41", want: ""},
		{in: "/%252e%252e/admin", want: ""},
		{in: "/%2541", want: ""},
		{in: "/%25%34%31", want: ""}, // %25 then encoded hex digits
		{in: "/%25;x41", want: "/%25"},
		{in: "/%C0%AE%C0%AE/admin", want: ""},
		{in: "/%C0%AE", want: ""},
		{in: "/%E0%80%AE", want: ""}, // overlong
		{in: "/%ED%A0%80", want: ""}, // surrogate
		{in: "/%F4%90%80%80", want: ""},
		{in: "/%C3", want: ""},
		{in: "/%C3/", want: ""},
		{in: "/%A9", want: ""},
		{in: "/\xff", want: ""},
		{in: "/" + strings.Repeat("a", MaxPathLength), want: ""},
		{in: "/" + strings.Repeat("a", MaxPathLength-1), want: "/" + strings.Repeat("a", MaxPathLength-1)},
		{in: "/" + strings.Repeat("|", MaxPathLength/3+1), want: ""}, // too long once escaped
	}
	for _, tt := range tests {
		got, err := CanonicalPath(tt.in, tt.fold)
		if tt.want == "" {
			if err == nil {
				t.Errorf("CanonicalPath(%q, %v) = %q, want an error", tt.in, tt.fold, got)
			} else if !errors.Is(err, ErrAmbiguousPath) {
				t.Errorf("CanonicalPath(%q, %v): error %v does not wrap ErrAmbiguousPath", tt.in, tt.fold, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("CanonicalPath(%q, %v) = %q, %v; want %q", tt.in, tt.fold, got, err, tt.want)
			continue
		}
		again, err := CanonicalPath(got, tt.fold)
		if err != nil || again != got {
			t.Errorf("CanonicalPath(%q, %v) = %q, %v: not idempotent", got, tt.fold, again, err)
		}
	}
}

func TestCanonicalPathErrorMessages(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"/a%2Fb", "encoded slash"},
		{"/a%5Cb", "encoded backslash"},
		{"/a\\b", "backslash"},
		{"/a%00", "NUL"},
		{"/a%01", "control"},
		{"/a#b", "#"},
		{"/%zz", "invalid percent-encoding"},
		{"/%252e", "double"},
		{"/%C0%AE", "UTF-8"},
		{"/../x", "above the root"},
		{"", "empty"},
		{"x", "start with /"},
	}
	for _, tt := range tests {
		_, err := CanonicalPath(tt.in, false)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("CanonicalPath(%q): error %v, want one mentioning %q", tt.in, err, tt.want)
		}
	}
}

func TestCanonicalPathNoAllocWhenCanonical(t *testing.T) {
	for _, p := range []string{"/", "/public/", "/admin/users/42", "/caf%C3%A9/a%20b", "/static/app.min.js"} {
		for _, fold := range []bool{false, true} {
			n := testing.AllocsPerRun(100, func() {
				got, err := CanonicalPath(p, fold)
				if err != nil || got != p {
					t.Fatalf("CanonicalPath(%q) = %q, %v", p, got, err)
				}
			})
			if n != 0 {
				t.Errorf("CanonicalPath(%q, %v): %v allocations, want 0", p, fold, n)
			}
		}
	}
}

func TestCanonicalHost(t *testing.T) {
	tests := []struct{ in, want string }{
		{"app.example.com", "app.example.com"},
		{"App.Example.COM", "app.example.com"},
		{"app.example.com.", "app.example.com"},
		{"APP.example.com.:443", "app.example.com"},
		{"example.com:443", "example.com"},
		{"example.com:", "example.com"},
		{"[::1]:8080", "::1"},
		{"[::1]", "::1"},
		{"[0:0::1]", "::1"},
		{"[2001:DB8::1]:443", "2001:db8::1"},
		{"2001:DB8::1", "2001:db8::1"},
		{"127.0.0.1:80", "127.0.0.1"},
		{"localhost", "localhost"},
		{"", ""},
		{"[::1", "[::1"},
		{"a..", "a."},
	}
	for _, tt := range tests {
		if got := CanonicalHost(tt.in); got != tt.want {
			t.Errorf("CanonicalHost(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { CanonicalHost("app.example.com") }); n != 0 {
		t.Errorf("CanonicalHost of a canonical host: %v allocations", n)
	}
}

func BenchmarkCanonicalPath(b *testing.B) {
	cases := []struct{ name, in string }{
		{"canonical", "/app/api/v1/users/42/profile"},
		{"canonical-escapes", "/files/caf%C3%A9/My%20File.pdf"},
		{"rewrite", "/app//api/./v1/%75sers/42;jsessionid=1/../43"},
		{"reject", "/app/api/%2e%2e%2fadmin"},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, _ = CanonicalPath(c.in, false)
			}
		})
	}
}
