package caddymodule

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

// validateApp runs the twostep app of a JSON configuration through what
// `caddy validate` does (load and provision, no start).
func validateApp(t *testing.T, app map[string]any) error {
	t.Helper()
	b, err := json.Marshal(map[string]any{"admin": map[string]any{"disabled": true}, "apps": map[string]any{"twostep": app}})
	if err != nil {
		t.Fatal(err)
	}
	var cfg caddy.Config
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	return caddy.Validate(&cfg)
}

func reviewUsersFile(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("XDG_DATA_HOME", dir)
	uf := filepath.Join(dir, "users.yml")
	if err := os.WriteFile(uf, []byte("users: {}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return uf
}

// An operator writes `secret {env.TWOSTEP_SECRET}` so that the key lives
// apart from the store. With the variable unset on one node the value is
// empty, and twostep silently generated a secret and kept it in the store:
// the at-rest encryption key then sits beside what it encrypts (a Redis
// dump decrypts every TOTP secret), and that node's cookies disagree with
// the others'. The same holds for every credential taken from the
// environment: a value written but expanding to nothing is refused.
func TestReviewPlaceholderExpandingToNothingIsRefused(t *testing.T) {
	uf := reviewUsersFile(t)
	const unset = "{env.TWOSTEP_REVIEW_UNSET_VARIABLE}"
	os.Unsetenv("TWOSTEP_REVIEW_UNSET_VARIABLE")
	for _, c := range []struct {
		name string
		app  map[string]any
		want string
	}{
		{"secret", map[string]any{"users_file": uf, "secret": unset}, "secret"},
		{"secret with spaces around", map[string]any{"users_file": uf, "secret": "  " + unset + " "}, "secret"},
		{"redis password", map[string]any{"users_file": uf, "store": map[string]any{"type": "redis", "addrs": []string{"127.0.0.1:6379"}, "password": unset}}, "password"},
		{"smtp password", map[string]any{"users_file": uf, "email": map[string]any{"address": "mail.example.com:587", "username": "mailer", "password": unset, "from": "a@example.com"}}, "password"},
		{"oidc client_secret", map[string]any{"users_file": uf, "oidc": []any{map[string]any{"name": "ex", "issuer": "https://id.example.com", "client_id": "c", "client_secret": unset}}}, "client_secret"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := validateApp(t, c.app)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "empty") {
				t.Fatalf("validate = %v, want a refusal naming %s as empty", err, c.want)
			}
		})
	}
}

// README documents `client_secret {env.OIDC_SECRET}`, but the oidc values
// were never expanded: the literal placeholder went to the provider.
func TestReviewOIDCPlaceholdersExpanded(t *testing.T) {
	uf := reviewUsersFile(t)
	t.Setenv("TWOSTEP_REVIEW_ISSUER", "https://id.example.com")
	t.Setenv("TWOSTEP_REVIEW_OIDC_SECRET", "s3cr3t-at-the-idp")
	err := validateApp(t, map[string]any{"users_file": uf, "oidc": []any{map[string]any{
		"name": "ex", "issuer": "{env.TWOSTEP_REVIEW_ISSUER}", "client_id": "c", "client_secret": "{env.TWOSTEP_REVIEW_OIDC_SECRET}"}}})
	if err != nil {
		t.Fatalf("issuer from the environment: %v", err)
	}
	a := &App{UsersFile: uf, OIDC: []OIDCConfig{{Name: "ex", Issuer: "{env.TWOSTEP_REVIEW_ISSUER}", ClientID: "c", ClientSecret: "{env.TWOSTEP_REVIEW_OIDC_SECRET}"}}}
	a.expandPlaceholders()
	if got := a.OIDC[0].ClientSecret; got != "s3cr3t-at-the-idp" {
		t.Fatalf("client_secret = %q, want the environment's value", got)
	}
}

// `twostep /admin/* { … }` looks like "protect /admin", but the Caddy
// matcher decides before twostep sees the request, with Caddy's own path
// semantics: /admin;x/users (Tomcat), /admin\users (IIS) do not match it, so
// twostep never runs for them, and the SPEC's canonicalisation and its 400
// for ambiguous paths never happen. Matchers belong in `rule` lines.
func TestReviewDirectiveMatcherRefused(t *testing.T) {
	for _, m := range []string{"/admin/*", "@api", "*"} {
		in := "{\n\ttwostep {\n\t\tusers_file users.yml\n\t}\n}\n\nexample.com {\n\t@api path /api/*\n\ttwostep " + m + " {\n\t\tdefault two_factor\n\t}\n\treverse_proxy 127.0.0.1:3000\n}\n"
		_, err := adaptJSON(in)
		if err == nil || !strings.Contains(err.Error(), "matcher") || !strings.Contains(err.Error(), "Caddyfile:9") {
			t.Errorf("twostep %s: %v, want a refusal naming the matcher and line 9", m, err)
		}
	}
}

// A keyword given twice in one rule: the later max_age silently replaced
// the earlier (15m became 30d), and a second group widened the requirement
// (admins became admins or staff).
func TestReviewRuleKeywordTwiceRefused(t *testing.T) {
	for _, rule := range []string{
		"rule two_factor path /admin/* max_age 15m max_age 30d",
		"rule two_factor path /admin/* group admins group staff",
		"rule one_factor path /a user alice user bob",
		"rule deny path /a method POST path /b",
		"rule two_factor path /a no_trusted_device no_trusted_device",
	} {
		in := "{\n\ttwostep {\n\t\tusers_file users.yml\n\t}\n}\n\nexample.com {\n\ttwostep {\n\t\t" + rule + "\n\t}\n}\n"
		_, err := adaptJSON(in)
		if err == nil || !strings.Contains(err.Error(), "twice") || !strings.Contains(err.Error(), "Caddyfile:9") {
			t.Errorf("%s: %v, want a refusal", rule, err)
		}
	}
}

// A rule without matchers matches every request: the rules after it are
// dead, and the site runs without them (here /internal/* is not denied).
func TestReviewRulesAfterCatchAllRefused(t *testing.T) {
	for _, rules := range []string{
		"rule one_factor group staff\n\t\trule deny path /internal/*",
		"rule bypass\n\t\trule two_factor path /admin/*",
	} {
		in := "{\n\ttwostep {\n\t\tusers_file users.yml\n\t}\n}\n\nexample.com {\n\ttwostep {\n\t\t" + rules + "\n\t}\n}\n"
		_, err := adaptJSON(in)
		if err == nil || !strings.Contains(err.Error(), "rule 2") || !strings.Contains(err.Error(), "Caddyfile:10") {
			t.Errorf("%q: %v, want rule 2 refused at line 10", rules, err)
		}
	}
	// The last rule may match everything (a requirement on the whole site).
	if _, err := adaptJSON("{\n\ttwostep {\n\t\tusers_file users.yml\n\t}\n}\n\nexample.com {\n\ttwostep {\n\t\trule bypass path /health\n\t\trule two_factor group admins\n\t}\n}\n"); err != nil {
		t.Errorf("a final requirement-only rule: %v", err)
	}
}

// cookie_domain co.uk (or github.io) is a public suffix: browsers refuse
// the cookie, and every return URL under it (any *.co.uk site, any GitHub
// page) would count as one of ours for the sidecar's redirect.
func TestReviewCookieDomainPublicSuffixRefused(t *testing.T) {
	for _, d := range []string{"co.uk", "github.io", "CO.UK"} {
		in := "{\n\ttwostep {\n\t\tusers_file users.yml\n\t\tcookie_domain " + d + "\n\t}\n}\n"
		if _, err := adaptJSON(in); err == nil || !strings.Contains(err.Error(), "public suffix") || !strings.Contains(err.Error(), "Caddyfile:4") {
			t.Errorf("Caddyfile cookie_domain %s: %v, want a refusal at line 4", d, err)
		}
	}
	for _, d := range []string{"co.uk", ".co.uk", "CO.UK.", "github.io"} {
		a := &App{UsersFile: "u.yml", CookieDomain: d}
		a.applyTestDefaults()
		if err := a.Validate(); err == nil || !strings.Contains(err.Error(), "public suffix") {
			t.Errorf("JSON cookie_domain %q: %v, want a refusal", d, err)
		}
	}
	for _, d := range []string{"example.co.uk", "example.com", "corp.internal"} {
		a := &App{UsersFile: "u.yml", CookieDomain: d}
		a.applyTestDefaults()
		if err := a.Validate(); err != nil {
			t.Errorf("cookie_domain %q: %v", d, err)
		}
	}
}

// applyTestDefaults fills what Provision would.
func (a *App) applyTestDefaults() {
	one := uint(1)
	a.TwoStep = "optional"
	a.Store = &StoreConfig{Type: "bolt", Path: "x.db"}
	a.Session = &SessionConfig{Idle: caddy.Duration(1800e9), Lifetime: caddy.Duration(43200e9)}
	a.Regulation = &RegulationConfig{MaxRetries: 5, FindTime: caddy.Duration(600e9), BanTime: caddy.Duration(900e9)}
	a.TrustedDevice = &TrustedDeviceConfig{Lifetime: caddy.Duration(86400e9)}
	a.TOTP = &TOTPConfig{Skew: &one}
	a.Code = &CodeConfig{Length: 6, Lifetime: caddy.Duration(600e9), ResendAfter: caddy.Duration(30e9), MaxSendsPerHour: 5}
}

// `ban_time 1ms` adapted, and was refused only by Validate, without the
// line (SPEC §2: refusals name the line).
func TestReviewSubSecondDurationsRefusedWithLine(t *testing.T) {
	for _, block := range []string{
		"regulation {\n\t\t\tban_time 1ms\n\t\t}",
		"regulation {\n\t\t\tfind_time 500ms\n\t\t}",
		"session {\n\t\t\tidle 1ms\n\t\t}",
		"code {\n\t\t\tlifetime 10ms\n\t\t}",
		"trusted_device {\n\t\t\tlifetime 1us\n\t\t}",
	} {
		in := "{\n\ttwostep {\n\t\tusers_file users.yml\n\t\t" + block + "\n\t}\n}\n"
		if _, err := adaptJSON(in); err == nil || !strings.Contains(err.Error(), "Caddyfile:5") {
			t.Errorf("%q: %v, want a refusal at line 5", block, err)
		}
	}
}

// `store redis redis://host:6379/0 { password …; db 2 }`: with a URL the
// block's username, password, db and master_name were silently ignored, so
// twostep connected without the password, to database 0, perhaps another
// application's.
func TestReviewRedisURLWithBlockSettings(t *testing.T) {
	for _, opt := range []string{"db 2", "master_name mymaster"} {
		in := "{\n\ttwostep {\n\t\tusers_file users.yml\n\t\tstore redis redis://127.0.0.1:6379/0 {\n\t\t\t" + opt + "\n\t\t}\n\t}\n}\n"
		if _, err := adaptJSON(in); err == nil || !strings.Contains(err.Error(), "Caddyfile:") {
			t.Errorf("URL with %s: %v, want a refusal naming the line", opt, err)
		}
	}
	for _, sc := range []StoreConfig{
		{Type: "redis", URL: "redis://127.0.0.1:6379/0", DB: 2},
		{Type: "redis", URL: "redis://127.0.0.1:6379/0", MasterName: "m"},
		{Type: "redis", URL: "redis://:inurl@127.0.0.1:6379/0", Password: "inblock"},
		{Type: "redis", URL: "redis://u:p@127.0.0.1:6379/0", Username: "other"},
	} {
		if _, err := sc.redisOptions(); err == nil {
			t.Errorf("%+v: accepted", sc)
		}
	}
	// A password kept out of the URL is used.
	sc := StoreConfig{Type: "redis", URL: "redis://127.0.0.1:6379/3", Username: "twostep", Password: "from-the-block"}
	o, err := sc.redisOptions()
	if err != nil || o.Password != "from-the-block" || o.Username != "twostep" || o.DB != 3 {
		t.Fatalf("URL with a block password: %+v, %v", o, err)
	}
}

// The operator commands said "revoked" (and reset, approved) for any answer
// below 400: a wrong --address reaching some web server that answers 200, or
// a redirect the client followed as a GET. Only the admin API's own 204
// confirms.
func TestReviewCLIReportsSuccessOnlyWhenConfirmed(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.Write([]byte("<html>welcome</html>"))
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	for _, c := range []struct {
		name string
		run  func() (string, error)
		done string
	}{
		{"devices revoke", func() (string, error) {
			return run(t, devicesCmd(), "", "revoke", "alice", "--all", "--address", addr)
		}, "revoked"},
		{"devices revoke one", func() (string, error) {
			return run(t, devicesCmd(), "", "revoke", "alice", "0123", "--address", addr)
		}, "revoked"},
		{"reset-2sv", func() (string, error) { return run(t, resetCmd(), "", "alice", "--address", addr) }, "reset"},
		{"recovery deny", func() (string, error) {
			return run(t, recoveryCmd(), "", "deny", "0123", "--reason", "no", "--address", addr)
		}, "denied"},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, err := c.run()
			if err == nil || strings.Contains(out, c.done) {
				t.Fatalf("error %v, output %q: a 200 from another server was reported as done", err, out)
			}
		})
	}
}

// users_file {env.TWOSTEP_USERS}: the user commands edited a file named
// literally "{env.TWOSTEP_USERS}" in the working directory (creating it),
// and said they had added the user.
func TestReviewUserCommandsExpandUsersFilePlaceholder(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	uf := filepath.Join(dir, "real-users.yml")
	if err := os.WriteFile(uf, []byte("users: {}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(cfg, []byte("{\n\ttwostep {\n\t\tusers_file {env.TWOSTEP_REVIEW_USERS}\n\t}\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Unsetenv("TWOSTEP_REVIEW_USERS")
	if out, err := run(t, userCmd(), "dave-password-1\n", "add", "dave", "--config", cfg); err == nil {
		t.Errorf("unset users_file variable: added (%q)", out)
	}
	if _, err := os.Stat(filepath.Join(dir, "{env.TWOSTEP_REVIEW_USERS}")); err == nil {
		t.Error("a file named after the placeholder was created")
	}
	t.Setenv("TWOSTEP_REVIEW_USERS", uf)
	if _, err := run(t, userCmd(), "dave-password-1\n", "add", "dave", "--config", cfg); err != nil {
		t.Fatal(err)
	}
	if _, ok := parseFile(t, uf).Lookup("dave"); !ok {
		t.Fatal("dave was not added to the file the variable names")
	}
}
