package caddymodule

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/twostep-auth/twostep/internal/users"
)

func run(t *testing.T, c *cobra.Command, stdin string, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	c.SetArgs(args)
	c.SetIn(strings.NewReader(stdin))
	c.SetOut(&out)
	c.SetErr(&out)
	c.SilenceUsage = true
	err := c.Execute()
	return out.String(), err
}

func TestHashPasswordCommand(t *testing.T) {
	for _, algo := range []string{"argon2id", "bcrypt"} {
		out, err := run(t, hashPasswordCmd(), "", "--plaintext", "s3cret-pass", "--algorithm", algo)
		if err != nil {
			t.Fatal(err)
		}
		h := strings.TrimSpace(out)
		if ok, err := users.Verify(h, "s3cret-pass"); !ok || err != nil {
			t.Fatalf("%s: hash %q does not verify: %v", algo, h, err)
		}
	}
	out, err := run(t, hashPasswordCmd(), "from-stdin-pw\n")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(strings.TrimSpace(out), "$argon2id$") {
		t.Fatalf("default algorithm: %q", out)
	}
	if ok, _ := users.Verify(strings.TrimSpace(out), "from-stdin-pw"); !ok {
		t.Fatal("stdin password not hashed")
	}
	if _, err := run(t, hashPasswordCmd(), "", "--plaintext", "x", "--algorithm", "md5"); err == nil {
		t.Fatal("md5 accepted")
	}
	if _, err := run(t, hashPasswordCmd(), ""); err == nil {
		t.Fatal("empty stdin accepted")
	}
}

func TestUserCommands(t *testing.T) {
	dir := t.TempDir()
	uf := filepath.Join(dir, "users.yml")
	if err := os.WriteFile(uf, []byte("# operators' note\nusers: {}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(cfg, []byte("{\n\ttwostep {\n\t\tusers_file "+uf+"\n\t}\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := run(t, userCmd(), "carol-password-1\n", "add", "carol", "--config", cfg, "--name", "Carol C", "--email", "carol@example.com", "--group", "staff,admins"); err != nil {
		t.Fatal(err)
	}
	out, err := run(t, userCmd(), "", "list", "--users-file", uf)
	if err != nil || !strings.Contains(out, "carol") || !strings.Contains(out, "staff,admins") || !strings.Contains(out, "active") {
		t.Fatalf("list: %v\n%s", err, out)
	}
	db := parseFile(t, uf)
	u, ok := db.Lookup("carol")
	if !ok || u.Email != "carol@example.com" {
		t.Fatalf("carol: %+v", u)
	}
	if ok, _ := users.Verify(u.Hash, "carol-password-1"); !ok {
		t.Fatal("password not set")
	}
	if _, err := run(t, userCmd(), "x\n", "add", "CAROL", "--users-file", uf); err == nil {
		t.Fatal("duplicate (case-insensitive) user added")
	}
	if _, err := run(t, userCmd(), "carol-password-2\n", "passwd", "carol", "--users-file", uf); err != nil {
		t.Fatal(err)
	}
	if ok, _ := users.Verify(mustLookup(t, uf, "carol").Hash, "carol-password-2"); !ok {
		t.Fatal("passwd did not change the password")
	}
	if _, err := run(t, userCmd(), "", "disable", "carol", "--users-file", uf); err != nil {
		t.Fatal(err)
	}
	if !mustLookup(t, uf, "carol").Disabled {
		t.Fatal("not disabled")
	}
	if _, err := run(t, userCmd(), "", "disable", "carol", "--enable", "--users-file", uf); err != nil {
		t.Fatal(err)
	}
	if mustLookup(t, uf, "carol").Disabled {
		t.Fatal("not enabled again")
	}
	if _, err := run(t, userCmd(), "", "passwd", "nobody", "--users-file", uf); err == nil {
		t.Fatal("passwd of a missing user")
	}
	b, _ := os.ReadFile(uf)
	if !strings.Contains(string(b), "# operators' note") {
		t.Fatalf("comment lost:\n%s", b)
	}
	if _, err := run(t, userCmd(), "", "list", "--config", filepath.Join(dir, "missing")); err == nil {
		t.Fatal("missing config accepted")
	}
}

func parseFile(t *testing.T, path string) *users.DB {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	db, err := users.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func mustLookup(t *testing.T, path, name string) *users.User {
	t.Helper()
	u, ok := parseFile(t, path).Lookup(name)
	if !ok {
		t.Fatalf("%s not found", name)
	}
	return u
}

// SPEC §7 writes `caddy twostep devices revoke <user>`: without an id every
// trusted browser of the user is revoked (--all says the same); with one,
// only that browser.
func TestDevicesRevokeCommand(t *testing.T) {
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Method+" "+r.URL.EscapedPath())
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	for _, tc := range []struct {
		name string
		args []string
		want string // the admin request; "" for a refusal before any
	}{
		{"no id: all", []string{"revoke", "alice"}, "DELETE /twostep/users/alice/devices"},
		{"--all", []string{"revoke", "alice", "--all"}, "DELETE /twostep/users/alice/devices"},
		{"one id", []string{"revoke", "alice", "0123abcd"}, "DELETE /twostep/users/alice/devices/0123abcd"},
		{"a name that needs escaping", []string{"revoke", "a/b c"}, "DELETE /twostep/users/a%2Fb%20c/devices"},
		{"an id and --all", []string{"revoke", "alice", "0123abcd", "--all"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got = nil
			out, err := run(t, devicesCmd(), "", append(tc.args, "--address", addr)...)
			if tc.want == "" {
				if err == nil || len(got) != 0 {
					t.Fatalf("error %v, requests %q: want a refusal and no request", err, got)
				}
				return
			}
			if err != nil || len(got) != 1 || got[0] != tc.want || !strings.Contains(out, "revoked") {
				t.Fatalf("error %v, output %q, requests %q; want %q", err, out, got, tc.want)
			}
		})
	}
}
