package oidc

import (
	"errors"
	"net/mail"
	"slices"
	"strings"
	"testing"
	"unicode"
)

func TestParseEmail(t *testing.T) {
	for _, s := range []string{"alice@example.com", "a.b+tag@sub.example.org", "user@localhost", "Ünïcödé@example.com", "o'neil@example.com"} {
		if err := ParseEmail(s); err != nil {
			t.Errorf("ParseEmail(%q) = %v, want ok", s, err)
		}
	}
	for _, s := range []string{
		"", "a@evil.com@example.com", "alice", "@example.com", "alice@", "Alice <alice@example.com>",
		"<alice@example.com>", `"a@b"@example.com`, `"a b"@example.com`, "alice@example.com (comment)",
		"alice @example.com", "alice@exa mple.com", "alice@example.com\n", "alice\r\n@example.com",
		"alice@[127.0.0.1]", "alice@.example.com", "alice@example..com", "alice@example.com.",
		"a,b@example.com", "ali\u200bce@example.com", "alice@example.com;bob@example.com",
		strings.Repeat("a", 250) + "@example.com",
	} {
		if err := ParseEmail(s); err == nil {
			t.Errorf("ParseEmail(%q) accepted", s)
		}
	}
}

func TestMapClaims(t *testing.T) {
	base := func() Config { return Config{Name: "x"}.withDefaults() }
	for _, tc := range []struct {
		name   string
		cfg    func(*Config)
		claims map[string]any
		want   Identity
		err    error
	}{
		{name: "preferred_username lower-cased", claims: map[string]any{"preferred_username": "Alice"}, want: Identity{Username: "alice"}},
		{name: "empty preferred_username falls back to verified email", claims: map[string]any{"preferred_username": "", "email": "A@Example.com", "email_verified": true},
			want: Identity{Username: "a@example.com", Email: "A@Example.com", EmailVerified: true}},
		{name: "non-string preferred_username falls back", claims: map[string]any{"preferred_username": 42.0, "email": "a@example.com", "email_verified": "true"},
			want: Identity{Username: "a@example.com", Email: "a@example.com", EmailVerified: true}},
		{name: "unverified email is no user name", claims: map[string]any{"email": "a@example.com", "email_verified": false}, err: ErrNoUsername},
		{name: "email_verified missing", claims: map[string]any{"email": "a@example.com"}, err: ErrNoUsername},
		{name: "email_verified junk", claims: map[string]any{"email": "a@example.com", "email_verified": "yes"}, err: ErrNoUsername},
		{name: "double @ refused", claims: map[string]any{"email": "a@evil.com@example.com", "email_verified": true}, err: ErrNoUsername},
		{name: "unverified email hidden", claims: map[string]any{"preferred_username": "bob", "email": "b@example.com"}, want: Identity{Username: "bob"}},
		{name: "whitespace", claims: map[string]any{"preferred_username": "bob smith"}, err: ErrNoUsername},
		{name: "tab", claims: map[string]any{"preferred_username": "bob\tsmith"}, err: ErrNoUsername},
		{name: "newline", claims: map[string]any{"preferred_username": "bob\n"}, err: ErrNoUsername},
		{name: "nul", claims: map[string]any{"preferred_username": "bob\x00"}, err: ErrNoUsername},
		{name: "zero-width", claims: map[string]any{"preferred_username": "b\u200bob"}, err: ErrNoUsername},
		{name: "no-break space", claims: map[string]any{"preferred_username": "bob\u00a0"}, err: ErrNoUsername},
		{name: "too long", claims: map[string]any{"preferred_username": strings.Repeat("a", 257)}, err: ErrNoUsername},
		{name: "custom claim", cfg: func(c *Config) { c.UsernameClaim = "upn" }, claims: map[string]any{"upn": "Bob@Corp", "preferred_username": "x"}, want: Identity{Username: "bob@corp"}},
		{name: "custom claim has no email fallback", cfg: func(c *Config) { c.UsernameClaim = "upn" },
			claims: map[string]any{"email": "a@example.com", "email_verified": true}, err: ErrNoUsername},
		{name: "groups list", claims: map[string]any{"preferred_username": "a", "groups": []any{"x", "", 3.0, "y", "x", "bad\n"}},
			want: Identity{Username: "a", Groups: []string{"x", "y"}}},
		{name: "groups with a comma or padding are dropped", claims: map[string]any{"preferred_username": "a", "groups": []any{"x,admins", " staff", "staff ", "ops"}},
			want: Identity{Username: "a", Groups: []string{"ops"}}},
		{name: "groups string", claims: map[string]any{"preferred_username": "a", "groups": "admins"}, want: Identity{Username: "a", Groups: []string{"admins"}}},
		{name: "custom groups claim", cfg: func(c *Config) { c.GroupsClaim = "roles" }, claims: map[string]any{"preferred_username": "a", "groups": []any{"x"}, "roles": []any{"r"}},
			want: Identity{Username: "a", Groups: []string{"r"}}},
		{name: "name with control chars dropped", claims: map[string]any{"preferred_username": "a", "name": "Evil\r\nHeader"}, want: Identity{Username: "a"}},
		{name: "name", claims: map[string]any{"preferred_username": "a", "name": "Alice L."}, want: Identity{Username: "a", Name: "Alice L."}},
		{name: "amr otp, trust off", claims: map[string]any{"preferred_username": "a", "amr": []any{"pwd", "otp"}}, want: Identity{Username: "a", AMR: []string{"pwd", "otp"}}},
		{name: "amr otp, trust on", cfg: func(c *Config) { c.TrustIdPMFA = true }, claims: map[string]any{"preferred_username": "a", "amr": []any{"pwd", "otp"}},
			want: Identity{Username: "a", AMR: []string{"pwd", "otp"}, MFA: true}},
		// One factor alone is one factor (RFC 8176: an emailed one-time
		// passcode is "otp", a security key without its PIN "hwk").
		{name: "amr hwk alone", cfg: func(c *Config) { c.TrustIdPMFA = true }, claims: map[string]any{"preferred_username": "a", "amr": []any{"hwk"}},
			want: Identity{Username: "a", AMR: []string{"hwk"}}},
		{name: "amr otp alone", cfg: func(c *Config) { c.TrustIdPMFA = true }, claims: map[string]any{"preferred_username": "a", "amr": []any{"otp"}},
			want: Identity{Username: "a", AMR: []string{"otp"}}},
		{name: "amr otp and sms (one class)", cfg: func(c *Config) { c.TrustIdPMFA = true }, claims: map[string]any{"preferred_username": "a", "amr": []any{"otp", "sms"}},
			want: Identity{Username: "a", AMR: []string{"otp", "sms"}}},
		{name: "amr hwk and pin", cfg: func(c *Config) { c.TrustIdPMFA = true }, claims: map[string]any{"preferred_username": "a", "amr": []any{"hwk", "pin"}},
			want: Identity{Username: "a", AMR: []string{"hwk", "pin"}, MFA: true}},
		{name: "amr swk and face", cfg: func(c *Config) { c.TrustIdPMFA = true }, claims: map[string]any{"preferred_username": "a", "amr": []any{"swk", "face"}},
			want: Identity{Username: "a", AMR: []string{"swk", "face"}, MFA: true}},
		{name: "amr mfa", cfg: func(c *Config) { c.TrustIdPMFA = true }, claims: map[string]any{"preferred_username": "a", "amr": []any{"mfa"}},
			want: Identity{Username: "a", AMR: []string{"mfa"}, MFA: true}},
		{name: "amr pwd only", cfg: func(c *Config) { c.TrustIdPMFA = true }, claims: map[string]any{"preferred_username": "a", "amr": []any{"pwd", "OTP"}},
			want: Identity{Username: "a", AMR: []string{"pwd", "OTP"}}},
		{name: "acr configured", cfg: func(c *Config) { c.TrustIdPMFA = true; c.ACRs = []string{"gold"} }, claims: map[string]any{"preferred_username": "a", "acr": "gold"},
			want: Identity{Username: "a", ACR: "gold", MFA: true}},
		{name: "acr not configured", cfg: func(c *Config) { c.TrustIdPMFA = true; c.ACRs = []string{"gold"} }, claims: map[string]any{"preferred_username": "a", "acr": "silver"},
			want: Identity{Username: "a", ACR: "silver"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base()
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			id, err := mapClaims(&cfg, tc.claims)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err = %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if id.Username != tc.want.Username || id.Email != tc.want.Email || id.EmailVerified != tc.want.EmailVerified || id.Name != tc.want.Name ||
				!slices.Equal(id.Groups, tc.want.Groups) || !slices.Equal(id.AMR, tc.want.AMR) || id.ACR != tc.want.ACR || id.MFA != tc.want.MFA {
				t.Fatalf("got  %+v\nwant %+v", *id, tc.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	good := func() Config {
		return Config{Name: "example", Issuer: "https://id.example.com", ClientID: "twostep", ClientSecret: "s"}
	}
	if c := good(); c.Validate() != nil {
		t.Fatalf("good config refused: %v", c.Validate())
	}
	for _, issuer := range []string{"http://127.0.0.1:8080", "http://localhost:9000/realms/x", "http://[::1]:1234", "https://id.example.com/tenant/"} {
		c := good()
		c.Issuer = issuer
		if err := c.Validate(); err != nil {
			t.Errorf("issuer %q refused: %v", issuer, err)
		}
	}
	for name, mutate := range map[string]func(*Config){
		"empty name":        func(c *Config) { c.Name = "" },
		"upper-case name":   func(c *Config) { c.Name = "Example" },
		"name with slash":   func(c *Config) { c.Name = "a/b" },
		"no issuer":         func(c *Config) { c.Issuer = "" },
		"http issuer":       func(c *Config) { c.Issuer = "http://id.example.com" },
		"http private IP":   func(c *Config) { c.Issuer = "http://10.0.0.1" },
		"relative issuer":   func(c *Config) { c.Issuer = "id.example.com" },
		"issuer with query": func(c *Config) { c.Issuer = "https://id.example.com/?a=b" },
		"issuer fragment":   func(c *Config) { c.Issuer = "https://id.example.com/#x" },
		"issuer user info":  func(c *Config) { c.Issuer = "https://u:p@id.example.com" },
		"ftp issuer":        func(c *Config) { c.Issuer = "ftp://id.example.com" },
		"no client id":      func(c *Config) { c.ClientID = " " },
		"client id space":   func(c *Config) { c.ClientID = "a b" },
		"bad scope":         func(c *Config) { c.Scopes = []string{"openid", "a b"} },
		"empty scope":       func(c *Config) { c.Scopes = []string{""} },
		"bad acr":           func(c *Config) { c.ACRs = []string{""} },
		"bad claim":         func(c *Config) { c.UsernameClaim = "a b" },
		"label control":     func(c *Config) { c.Label = "x\ny" },
	} {
		c := good()
		mutate(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
		if _, err := New(c); err == nil {
			t.Errorf("%s: New accepted", name)
		}
	}
}

func TestDefaults(t *testing.T) {
	p, err := New(Config{Name: "example", Issuer: "https://id.example.com", ClientID: "c", Scopes: []string{"email", "groups", "email"}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(p.cfg.Scopes, []string{"openid", "email", "groups"}) {
		t.Errorf("scopes = %v", p.cfg.Scopes)
	}
	if p.Label() != "Sign in with example" || p.cfg.UsernameClaim != "preferred_username" || p.cfg.GroupsClaim != "groups" || p.cfg.HTTPClient == nil || p.Name() != "example" {
		t.Errorf("defaults = %+v", p.cfg)
	}
	p, _ = New(Config{Name: "example", Issuer: "https://id.example.com", ClientID: "c"})
	if !slices.Equal(p.cfg.Scopes, DefaultScopes) {
		t.Errorf("default scopes = %v", p.cfg.Scopes)
	}
}

// FuzzEmailClaim checks the strict email parse: whatever it accepts is a
// bare address with exactly one '@' that net/mail reads back unchanged,
// without whitespace or control characters; and an email claim it refuses
// never becomes the Identity's email or user name.
func FuzzEmailClaim(f *testing.F) {
	for _, s := range []string{
		"alice@example.com", "a@evil.com@example.com", "Alice <alice@example.com>", `"a@b"@example.com`,
		"alice@example.com\r\nBcc: x@y", "alice@[::1]", "a@b", "@", "", "a@b.c (x)", "ü@ü.de", "a\u200b@b.c",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		cfg := Config{Name: "x"}.withDefaults()
		id, err := mapClaims(&cfg, map[string]any{"email": s, "email_verified": true})
		if ParseEmail(s) != nil {
			if err == nil && (id.Email != "" || id.Username != "") {
				t.Fatalf("refused email %q became %+v", s, *id)
			}
			return
		}
		if strings.Count(s, "@") != 1 {
			t.Fatalf("accepted %q with %d @", s, strings.Count(s, "@"))
		}
		if strings.IndexFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
			t.Fatalf("accepted %q with whitespace or control characters", s)
		}
		a, perr := mail.ParseAddress(s)
		if perr != nil || a.Address != s || a.Name != "" {
			t.Fatalf("accepted %q, but net/mail gives %v, %v", s, a, perr)
		}
		if strings.IndexFunc(s, foldsToASCII) >= 0 {
			// Lower-casing would make it read as another name (KELVIN
			// SIGN as "k"): refused as a user name, whatever the email.
			if !errors.Is(err, ErrNoUsername) {
				t.Fatalf("email %q, whose lower case is another name, gave %+v, %v; want ErrNoUsername", s, id, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("accepted verified email %q refused as identity: %v", s, err)
		}
		if id.Email != s || id.Username != strings.ToLower(s) || !id.EmailVerified {
			t.Fatalf("email %q mapped to %+v", s, *id)
		}
	})
}
