package integration

import (
	"context"
	"encoding/json"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/twostep-auth/twostep/internal/store/bolt"
)

// outboxConfig is the standard fixture with the developer outbox (which
// needs loopback listeners) and the settings under test.
func (f *fixture) outboxConfig(extra string) string {
	cfg := f.caddyfile("dev_outbox\n\t\tcode {\n\t\t\tresend_after 1s\n\t\t}\n"+extra, siteRules+"\n\t\trule two_factor path /strict/* no_trusted_device\n\t\trule two_factor path /recent/* max_age 1m")
	return strings.Replace(cfg, "\tgrace_period 1s\n", "\tgrace_period 1s\n\tdefault_bind 127.0.0.1\n", 1)
}

type outboxEntry struct {
	Channel, To, Body, Code string
	Time                    time.Time
}

func lastCode(t *testing.T, c *client, channel string, after time.Time) string {
	t.Helper()
	var code string
	eventually(t, 5*time.Second, "a "+channel+" code in the outbox", func() bool {
		r := c.get(site + "/.twostep/api/outbox")
		var list []outboxEntry
		if json.Unmarshal(r.body, &list) != nil {
			return false
		}
		for _, e := range list {
			if e.Channel == channel && e.Code != "" && e.Time.After(after) {
				code = e.Code
				return true
			}
		}
		return false
	})
	return code
}

// enrolSMS gives the signed-in client's user a phone and turns two-step on.
func enrolSMS(t *testing.T, c *client) {
	t.Helper()
	before := time.Now()
	r := c.postJSON("/.twostep/api/phone", map[string]string{"phone": "+15551234567", "method": "sms"})
	wantStatus(t, r, http.StatusAccepted)
	r = c.postJSON("/.twostep/api/phone/confirm", map[string]string{"code": lastCode(t, c, "sms", before)})
	wantStatus(t, r, http.StatusOK)
	time.Sleep(1100 * time.Millisecond) // past resend_after
}

// signInWithCode signs in with the password and an SMS code.
func signInWithCode(t *testing.T, c *client, user, pw string, trust bool) {
	t.Helper()
	r := c.login(user, pw)
	wantStatus(t, r, http.StatusOK)
	if r.json(t)["state"] != "second_factor" {
		t.Fatalf("login: %s", r.body)
	}
	before := time.Now()
	wantStatus(t, c.postJSON("/.twostep/api/code/send", map[string]string{"method": "sms"}), http.StatusAccepted)
	r = c.postJSON("/.twostep/api/code/verify", map[string]any{"method": "sms", "code": lastCode(t, c, "sms", before), "trust_device": trust})
	wantStatus(t, r, http.StatusOK)
	time.Sleep(1100 * time.Millisecond)
}

func TestTrustedDevices(t *testing.T) {
	f := start(t)
	f.load(f.outboxConfig(""))
	c := newClient(t)
	c.mustLogin("bob", bobPassword)
	enrolSMS(t, c)
	wantStatus(t, c.postJSON("/.twostep/api/logout", ""), http.StatusNoContent)

	signInWithCode(t, c, "bob", bobPassword, true)
	wantStatus(t, c.postJSON("/.twostep/api/logout", ""), http.StatusNoContent)

	t.Run("a trusted browser signs in with the password only", func(t *testing.T) {
		r := c.login("bob", bobPassword)
		wantStatus(t, r, http.StatusOK)
		if m := r.json(t); m["state"] != "authenticated" || m["level"] != "two_factor" {
			t.Fatalf("login with a trusted device: %s", r.body)
		}
		wantStatus(t, c.get(site+"/secure/x"), http.StatusOK)
	})
	t.Run("no_trusted_device and max_age rules still ask for a code", func(t *testing.T) {
		wantError(t, c.get(site+"/strict/x"), http.StatusUnauthorized, "second_factor_required")
		r := c.browse(site + "/strict/x")
		wantStatus(t, r, http.StatusFound)
		if !strings.HasPrefix(r.Header.Get("Location"), "/.twostep/challenge?return=") {
			t.Fatalf("Location %q", r.Header.Get("Location"))
		}
	})
	t.Run("another browser is not trusted", func(t *testing.T) {
		other := newClient(t)
		r := other.login("bob", bobPassword)
		if r.json(t)["state"] != "second_factor" {
			t.Fatalf("another browser: %s", r.body)
		}
	})
	t.Run("the cookie is worthless for another user", func(t *testing.T) {
		thief := newClient(t)
		u, _ := parseURL(site)
		thief.http.Jar.SetCookies(u, c.http.Jar.Cookies(u))
		thief.mustLogin("alice", alicePassword)
		enrolSMS(t, thief)
		wantStatus(t, thief.postJSON("/.twostep/api/logout", ""), http.StatusNoContent)
		r := thief.login("alice", alicePassword)
		if r.json(t)["state"] != "second_factor" {
			t.Fatalf("bob's device cookie let alice skip the code: %s", r.body)
		}
	})
	t.Run("devices list marks this browser; revoking asks for a code on the next request", func(t *testing.T) {
		r := c.get(site + "/.twostep/api/devices")
		wantStatus(t, r, http.StatusOK)
		var list []struct {
			ID      string `json:"id"`
			Current bool   `json:"current"`
			Label   string `json:"label"`
		}
		if err := json.Unmarshal(r.body, &list); err != nil || len(list) != 1 || !list[0].Current {
			t.Fatalf("devices: %s", r.body)
		}
		wantStatus(t, c.do(http.MethodDelete, site+"/.twostep/api/devices/0000", nil), http.StatusNotFound)
		wantStatus(t, c.do(http.MethodDelete, site+"/.twostep/api/devices/"+list[0].ID, nil), http.StatusNoContent)
		wantError(t, c.get(site+"/reports"), http.StatusUnauthorized, "second_factor_required")
	})
	t.Run("revoke_all ends every session and device", func(t *testing.T) {
		signInWithCode(t, c, "bob", bobPassword, true)
		second := newClient(t)
		signInWithCode(t, second, "bob", bobPassword, false)
		wantStatus(t, c.postJSON("/.twostep/api/sessions/revoke_all", ""), http.StatusNoContent)
		wantError(t, second.get(site+"/reports"), http.StatusUnauthorized, "unauthenticated")
		r := c.login("bob", bobPassword)
		if r.json(t)["state"] != "second_factor" {
			t.Fatalf("after revoke_all the device still skips the code: %s", r.body)
		}
	})
	t.Run("a password change in the users file revokes devices", func(t *testing.T) {
		signInWithCode(t, c, "alice", alicePassword, true)
		writeUsers(t, f.usersFile, "alice changed her password", false)
		eventually(t, 10*time.Second, "alice's session ends", func() bool {
			return c.get(site+"/reports").StatusCode == http.StatusUnauthorized
		})
		r := c.login("alice", "alice changed her password")
		if r.json(t)["state"] != "second_factor" {
			t.Fatalf("after a password change the device still skips the code: %s", r.body)
		}
	})
}

var deviceIDRe = regexp.MustCompile(`(?m)^([0-9a-f]{24})\s`)

// The operator commands talk to this running Caddy through its admin API.
func TestOperatorCommands(t *testing.T) {
	f := start(t)
	f.load(f.outboxConfig(""))
	c := newClient(t)
	c.mustLogin("bob", bobPassword)
	enrolSMS(t, c)
	wantStatus(t, c.postJSON("/.twostep/api/logout", ""), http.StatusNoContent)
	signInWithCode(t, c, "bob", bobPassword, true)

	bin := buildCaddy(t)
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(bin, append([]string{"twostep"}, append(args, "--address", "localhost:2999")...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("caddy twostep %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	// A reload that is refused (here: a users file that does not exist)
	// leaves the running configuration, and the operator commands and the
	// metrics work on it.
	bad := strings.Replace(f.outboxConfig(""), f.usersFile, f.usersFile+".missing", 1)
	res, err := http.Post("http://localhost:2999/load", "text/caddyfile", strings.NewReader(bad))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode == http.StatusOK {
		t.Fatal("a config with a missing users file was loaded")
	}
	wantStatus(t, c.get(site+"/reports"), http.StatusOK)
	out := run("devices", "list", "bob")
	m := deviceIDRe.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("devices list:\n%s", out)
	}
	run("devices", "revoke", "bob", m[1])
	if out := run("devices", "list", "bob"); deviceIDRe.MatchString(out) {
		t.Fatalf("still listed after revoke:\n%s", out)
	}
	if _, err := exec.Command(bin, "twostep", "devices", "list", "nobody", "--address", "localhost:2999").CombinedOutput(); err == nil {
		t.Fatal("an unknown user was listed")
	}
	// A backup of the running store holds bob's sessions; it compacts.
	dir := t.TempDir()
	backup := filepath.Join(dir, "backup.db")
	if out := run("backup", backup); !strings.Contains(out, "wrote "+backup) {
		t.Fatalf("backup:\n%s", out)
	}
	if _, err := exec.Command(bin, "twostep", "backup", backup, "--address", "localhost:2999").CombinedOutput(); err == nil {
		t.Fatal("backup overwrote an existing file")
	}
	compacted := filepath.Join(dir, "compacted.db")
	if out, err := exec.Command(bin, "twostep", "compact", backup, compacted).CombinedOutput(); err != nil {
		t.Fatalf("compact: %v\n%s", err, out)
	}
	for _, p := range []string{backup, compacted} {
		if err := bolt.Check(p); err != nil {
			t.Fatal(err)
		}
		db, err := bolt.Open(p, bolt.Options{})
		if err != nil {
			t.Fatal(err)
		}
		list, err := db.ListUserSessions(context.Background(), "bob", time.Now())
		db.Close()
		if err != nil || len(list) == 0 {
			t.Fatalf("%s holds %d sessions of bob (%v)", filepath.Base(p), len(list), err)
		}
	}
	run("reset-2sv", "bob")
	wantError(t, c.get(site+"/reports"), http.StatusUnauthorized, "unauthenticated")
	r := c.login("bob", bobPassword)
	if m := r.json(t); m["state"] != "authenticated" || m["level"] != "one_factor" {
		t.Fatalf("after reset-2sv: %s", r.body)
	}
}
