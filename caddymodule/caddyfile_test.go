package caddymodule

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddytest"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden adapt files")

// Golden Caddyfile → JSON tests: testdata/adapt/*.caddyfiletest hold the
// Caddyfile, a line of dashes, and the JSON it must adapt to.
func TestCaddyfileAdapt(t *testing.T) {
	files, err := filepath.Glob("testdata/adapt/*.caddyfiletest")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	for _, name := range files {
		t.Run(filepath.Base(name), func(t *testing.T) {
			data, err := os.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			parts := strings.SplitN(string(data), "----------\n", 2)
			if len(parts) != 2 {
				t.Fatalf("%s: want the Caddyfile, a line of dashes, then the JSON", name)
			}
			if *updateGolden {
				out, err := adaptJSON(parts[0])
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(name, []byte(parts[0]+"----------\n"+out), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if !caddytest.CompareAdapt(t, name, parts[0], "caddyfile", strings.TrimSpace(parts[1])) {
				t.Fatalf("%s: adapted JSON differs (see the diff above)", name)
			}
		})
	}
}

// Bad values are refused with a message that names the line and the problem.
func TestCaddyfileErrors(t *testing.T) {
	global := func(body string) string {
		return "{\n\ttwostep {\n\t\tusers_file users.yml\n" + body + "\n\t}\n}\n"
	}
	site := func(body string) string {
		return "{\n\ttwostep {\n\t\tusers_file users.yml\n\t}\n}\n\nexample.com {\n\ttwostep {\n" + body + "\n\t}\n}\n"
	}
	cases := []struct {
		name, in, want string
	}{
		{"unknown global option", global("\t\tfrobnicate on"), `unknown twostep option "frobnicate", at Caddyfile:4`},
		{"oidc needs issuer", global("\t\toidc example {\n\t\t}"), "oidc example: issuer and client_id are required"},
		{"oidc option", global("\t\toidc example {\n\t\t\tissuer https://id.example.com\n\t\t\tclient_id x\n\t\t\tsecret y\n\t\t}"), `oidc example: unknown option "secret"`},
		{"recovery needs a review group", global("\t\trecovery {\n\t\t}"), "recovery: review_group is required"},
		{"recovery max_size", global("\t\trecovery {\n\t\t\treview_group admins\n\t\t\tmax_size huge\n\t\t}"), `max_size "huge": want a size from 1KiB to 100MiB`},
		{"recovery after_approval", global("\t\trecovery {\n\t\t\treview_group admins\n\t\t\tafter_approval forget\n\t\t}"), `after_approval "forget": want password_only or enroll`},
		{"sms provider", global("\t\tsms carrier-pigeon"), `sms "carrier-pigeon": want twilio or webhook`},
		{"twilio option", global("\t\tsms twilio {\n\t\t\tsid x\n\t\t}"), `sms twilio: unknown option "sid"`},
		{"webhook without URL", global("\t\tvoice webhook"), "voice webhook: missing URL"},
		{"smtp tls", global("\t\temail smtp mail:25 {\n\t\t\ttls maybe\n\t\t}"), `tls "maybe": want starttls, implicit or none`},
		{"email needs smtp", global("\t\temail sendmail"), "email: want `email smtp <host:port> { … }`"},
		{"skew range", global("\t\ttotp {\n\t\t\tskew 11\n\t\t}"), `skew "11": want a whole number from 0 to 10`},
		{"code length", global("\t\tcode {\n\t\t\tlength 4\n\t\t}"), `length "4": want a whole number from 6 to 10`},
		{"email_codes value", global("\t\tcode {\n\t\t\temail_codes yes\n\t\t}"), `email_codes "yes": want on or off`},
		{"dev_outbox takes no value", global("\t\tdev_outbox on"), "wrong argument count"},
		{"short secret", global("\t\tsecret short"), "secret is 5 bytes long; it must be at least 32"},
		{"bad duration", global("\t\tsession {\n\t\t\tidle soon\n\t\t}"), `idle "soon": not a duration (e.g. 30m, 12h, 7d), at Caddyfile:5`},
		{"unknown session option", global("\t\tsession {\n\t\t\tforever 1\n\t\t}"), `session: unknown option "forever"`},
		{"bad max_retries", global("\t\tregulation {\n\t\t\tmax_retries lots\n\t\t}"), `max_retries "lots": want a whole number`},
		{"store type", global("\t\tstore sqlite"), `store "sqlite": want bolt`},
		{"two_step value", global("\t\ttwo_step sometimes"), `two_step "sometimes": want optional or required`},
		{"missing value", global("\t\tsite_name"), "site_name: missing value"},
		{"extra value", global("\t\tcookie_domain a.com b.com"), `cookie_domain: takes one value, got another: "b.com"`},
		{"bad cookie domain", global("\t\tcookie_domain .example.com"), "must be a bare domain name"},
		{"unknown level", site("\t\trule maybe path /x"), `rule 1: unknown level "maybe" (want bypass, one_factor, two_factor or deny), at Caddyfile:9`},
		{"unknown matcher", site("\t\trule bypass paths /x"), `rule 1: unknown matcher "paths"`},
		{"matcher without value", site("\t\trule bypass path"), "rule 1: path needs a value"},
		{"relative path", site("\t\trule bypass path health"), `rule 1: path "health" must start with /`},
		{"bad network", site("\t\trule deny network 10.0.0.0/33"), `rule 1: network "10.0.0.0/33"`},
		{"bad regexp", site("\t\trule deny path_regexp ("), "rule 1"},
		{"max_age on one_factor", site("\t\trule one_factor path /x max_age 5m"), "max_age and no_trusted_device apply only to two_factor rules"},
		{"bad max_age", site("\t\trule two_factor path /x max_age never"), `rule 1: max_age "never"`},
		{"unknown subdirective", site("\t\tallow all"), `unknown twostep subdirective "allow"`},
		{"bad default", site("\t\tdefault open"), `default: unknown level "open"`},
		{"bad header", site("\t\theader X-User"), `header "X-User": want Remote-User`},
		{"bad portal", site("\t\tportal auth.example.com"), "portal \"auth.example.com\" must be an absolute http(s) URL"},
		{"second rule is numbered", site("\t\trule bypass path /a\n\t\trule deny method"), "rule 2: method needs a value"},
		// A rule's own line, also for what only compiling the rule finds.
		{"bad method names its line", site("\t\trule bypass path /a\n\t\trule deny method G@T path /x\n\t\trule deny path /y"), `rule 2: method "G@T"`},
		{"bad method line", site("\t\trule bypass path /a\n\t\trule deny method G@T path /x\n\t\trule deny path /y"), "at Caddyfile:10"},
		{"bad regexp line", site("\t\trule deny path_regexp ^(/x\n\t\tdefault one_factor"), "at Caddyfile:9"},
		{"group on bypass line", site("\t\trule bypass path /x group admins\n\t\tdefault one_factor"), "at Caddyfile:9"},
		{"host with port line", site("\t\trule deny host example.com:80\n\t\tdefault one_factor"), "at Caddyfile:9"},
		// Options given twice are refused, not silently overridden.
		{"default twice", site("\t\tdefault two_factor\n\t\tdefault bypass"), "default is set twice in this block (the second would override the first), at Caddyfile:10"},
		{"portal twice", site("\t\tportal https://a.example.com\n\t\tportal https://b.example.com"), "portal is set twice"},
		{"case_insensitive_paths twice", site("\t\tcase_insensitive_paths\n\t\tcase_insensitive_paths"), "case_insensitive_paths is set twice"},
		{"header named twice", site("\t\theader Remote-User\n\t\theader Remote-Email remote-user"), "header: remote-user is named twice"},
		{"global option twice", global("\t\tstore bolt a.db\n\t\tstore bolt b.db"), "store is set twice in this block (the second would override the first), at Caddyfile:5"},
		{"sub-block option twice", global("\t\tsession {\n\t\t\tidle 5m\n\t\t\tidle 1h\n\t\t}"), "idle is set twice"},
		{"recovery option twice", global("\t\trecovery {\n\t\t\treview_group admins\n\t\t\tapprovals 1\n\t\t\tapprovals 2\n\t\t}"), "approvals is set twice"},
		{"block twice", global("\t\tregulation {\n\t\t}\n\t\tregulation {\n\t\t}"), "regulation is set twice"},
		// SPEC §2: `caddy validate` names the line of a bad value; these
		// were found only at Provision, without one.
		{"twilio account_sid", global("\t\tsms twilio {\n\t\t\taccount_sid ACxyz\n\t\t\tauth_token t\n\t\t\tfrom +15550001111\n\t\t}"),
			`sms provider 1 (twilio): twilio: account_sid must be "AC" followed by 32 hexadecimal digits (34 characters), at Caddyfile:4`},
		{"second voice provider", global("\t\tvoice webhook http://127.0.0.1:9/a {\n\t\t\tsecret s\n\t\t}\n\t\tvoice webhook ftp://127.0.0.1/b {\n\t\t\tsecret s\n\t\t}"), `voice provider 2 (webhook): webhook: URL must be an http or https URL, not "ftp", at Caddyfile:7`},
		{"smtp from", global("\t\temail smtp 127.0.0.1:25 {\n\t\t\tfrom not-an-address\n\t\t}"), `email smtp: smtp: from must be an email address, like "Security <security@example.com>", at Caddyfile:4`},
		{"smtp port", global("\t\temail smtp 127.0.0.1:99999 {\n\t\t\tfrom a@example.com\n\t\t}"), `email smtp: port "99999" is not a port number, at Caddyfile:4`},
		{"oidc issuer", global("\t\toidc corp {\n\t\t\tissuer ftp://idp.example.com\n\t\t\tclient_id c\n\t\t}"), `oidc corp: invalid issuer "ftp://idp.example.com": must be https, at Caddyfile:4`},
		{"idle longer than lifetime", global("\t\tsession {\n\t\t\tidle 2h\n\t\t\tlifetime 1h\n\t\t}"), "session: idle (2h0m0s) is longer than lifetime (1h0m0s), at Caddyfile:4"},
		{"idle longer than the default lifetime", global("\t\tsession {\n\t\t\tidle 13h\n\t\t}"), "session: idle (13h0m0s) is longer than lifetime (12h0m0s), at Caddyfile:4"},
		// A placeholder beside a bad value (as the README writes secrets):
		// the other values are still checked, with the line.
		{"twilio account_sid beside placeholders", global("\t\tsms twilio {\n\t\t\taccount_sid ACxyz\n\t\t\tauth_token {env.TWILIO_TOKEN}\n\t\t\tfrom {env.TWILIO_FROM}\n\t\t}"),
			`sms provider 1 (twilio): twilio: account_sid must be "AC" followed by 32 hexadecimal digits (34 characters), at Caddyfile:4`},
		{"smtp port beside a placeholder password", global("\t\temail smtp 127.0.0.1:99999 {\n\t\t\tusername u\n\t\t\tpassword {env.SMTP_PASSWORD}\n\t\t\tfrom a@example.com\n\t\t}"),
			`email smtp: port "99999" is not a port number, at Caddyfile:4`},
		{"oidc issuer beside a placeholder secret", global("\t\toidc corp {\n\t\t\tissuer http://idp.example.com\n\t\t\tclient_id c\n\t\t\tclient_secret {env.OIDC_SECRET}\n\t\t}"),
			`oidc corp: invalid issuer "http://idp.example.com": must be https (http is allowed only for loopback hosts), at Caddyfile:4`},
		{"a bad value from a snippet names the import", "(provider) {\n\tsms twilio {\n\t\taccount_sid ACxyz\n\t\tauth_token t\n\t\tfrom +15550001111\n\t}\n}\n{\n\ttwostep {\n\t\tusers_file users.yml\n\t\timport provider\n\t}\n}\n",
			"import chain"},
		{"email codes without email", global("\t\tcode {\n\t\t\tlength 8\n\t\t\temail_codes on\n\t\t}"), "code: email_codes needs an `email` server (or dev_outbox), at Caddyfile:6"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := adaptJSON(tc.in)
			if err == nil {
				t.Fatalf("adapted without error:\n%s", tc.in)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

func adaptJSON(in string) (string, error) {
	adapter := caddyfile.Adapter{ServerType: httpcaddyfileServerType()}
	out, _, err := adapter.Adapt([]byte(in), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		return "", err
	}
	return prettyJSON(out)
}

// FuzzCaddyfile: no input panics the parsers; an error never comes with a
// partial result.
func FuzzCaddyfile(f *testing.F) {
	f.Add("{\n\ttwostep {\n\t\tusers_file u.yml\n\t\tsession {\n\t\t\tidle 5m\n\t\t}\n\t}\n}\nexample.com {\n\ttwostep {\n\t\trule bypass path /x\n\t}\n}\n")
	f.Add("example.com {\n\ttwostep {\n\t\trule two_factor path /a/* group g max_age 5m no_trusted_device\n\t\tdefault deny\n\t}\n}\n")
	f.Add("{\n\ttwostep {\n\t\tregulation {\n\t\t\tmax_retries 3\n\t\t}\n\t}\n}\n")
	f.Add("")
	f.Fuzz(func(t *testing.T, in string) {
		adapter := caddyfile.Adapter{ServerType: httpcaddyfileServerType()}
		out, _, err := adapter.Adapt([]byte(in), map[string]any{"filename": "Caddyfile"})
		if err != nil && len(out) != 0 {
			t.Fatalf("error %v with output %s", err, out)
		}
	})
}
