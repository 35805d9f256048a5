package users

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Concurrent `caddy twostep user …` runs (two operators, or a script and an
// operator) must never both report success while one change is lost: a
// "disabled" that is not in the file leaves a compromised account open.
func TestConcurrentEditsLoseNothing(t *testing.T) {
	const rounds, editors = 20, 8
	for round := range rounds {
		path := filepath.Join(t.TempDir(), "users.yml")
		writeFile(t, path, usersYAML("victim"))
		var wg sync.WaitGroup
		added := make([]error, editors)
		var disabled error
		wg.Add(editors + 1)
		for i := range editors {
			go func() {
				defer wg.Done()
				added[i] = AddUser(path, NewUser{Name: fmt.Sprintf("u%d", i), Hash: cheapBcryptHash})
			}()
		}
		go func() {
			defer wg.Done()
			disabled = SetDisabled(path, "victim", true)
		}()
		wg.Wait()
		db := parseFile(t, path)
		for i, err := range added {
			if _, ok := db.Lookup(fmt.Sprintf("u%d", i)); err == nil && !ok {
				t.Errorf("round %d: AddUser(u%d) reported success but the user is not in the file", round, i)
			}
		}
		if v, _ := db.Lookup("victim"); disabled == nil && !v.Disabled {
			t.Errorf("round %d: SetDisabled reported success but victim is still enabled", round)
		}
		// Nothing is left behind but the file and its lock.
		entries, _ := os.ReadDir(filepath.Dir(path))
		for _, e := range entries {
			if strings.Contains(e.Name(), ".tmp-") {
				t.Errorf("round %d: temporary file %s left behind", round, e.Name())
			}
		}
	}
}

// A field name that is a known field in another case or spelling is a typo
// that would otherwise be ignored as an unknown field: `Disabled: true`
// meant to lock an account out must not leave it open.
func TestParseRefusesMisspelledKnownFields(t *testing.T) {
	tests := []struct {
		name, fields, want string
	}{
		{"Disabled", "    Disabled: true\n", `"Disabled"`},
		{"DISABLED", "    DISABLED: yes\n", `"DISABLED"`},
		{"dis_abled", "    dis_abled: true\n", `"dis_abled"`},
		{"DisplayName", "    DisplayName: Bob\n", `"DisplayName"`},
		{"Email", "    Email: bob@example.com\n", `"Email"`},
		{"Groups", "    Groups: [admins]\n", `"Groups"`},
		{"Disabled through a merge key", "    <<: {Disabled: true}\n", `"Disabled"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := "users:\n  bob:\n    password: \"" + fixtureArgonHash + "\"\n" + tt.fields
			db, err := Parse([]byte(data))
			if err == nil {
				u, _ := db.Lookup("bob")
				t.Fatalf("Parse accepted %q (bob disabled=%v)", tt.fields, u.Disabled)
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), `user "bob"`) {
				t.Errorf("error %q does not name user bob and field %s", err, tt.want)
			}
		})
	}
	// Real unknown fields stay tolerated (Authelia files carry many).
	if _, err := Parse([]byte("users:\n  bob:\n    password: \"" + fixtureArgonHash + "\"\n    given_name: Bob\n    disabled_reason: left\n    extra: {Disabled: true}\n")); err != nil {
		t.Errorf("unknown fields refused: %v", err)
	}
}

// Two accounts whose names differ only by Unicode compatibility forms,
// normalisation or full case folding look the same in the portal, in audit
// logs and to reviewers, and are merged by upstream apps that normalise
// Remote-User (NFKC, database collations): one must not pass for the other.
func TestParseRefusesConfusableNames(t *testing.T) {
	tests := []struct {
		name, a, b string
	}{
		{"fullwidth", "admin", "ａｄｍｉｎ"},
		{"NFC and NFD", "jos\u00e9", "jose\u0301"},
		{"ligature", "office", "o\ufb03ce"},
		{"sharp s", "strasse", "straße"},
		{"superscript", "user2", "user\u00b2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Parse([]byte(usersYAML(tt.a, tt.b))); err == nil || !strings.Contains(err.Error(), "same name as") {
				t.Errorf("Parse(%q, %q) = %v, want a refusal", tt.a, tt.b, err)
			}
			path := filepath.Join(t.TempDir(), "users.yml")
			writeFile(t, path, usersYAML(tt.a))
			err := AddUser(path, NewUser{Name: tt.b, Hash: fixtureArgonHash})
			if err == nil || !strings.Contains(err.Error(), "already exists") {
				t.Errorf("AddUser(%q) next to %q = %v, want already exists", tt.b, tt.a, err)
			}
			if got := readString(t, path); got != usersYAML(tt.a) {
				t.Errorf("file changed:\n%s", got)
			}
		})
	}
	// Distinct names stay distinct, and a name alone in its file is fine.
	if _, err := Parse([]byte(usersYAML("admin", "admin2", "ａｄｍｉｎ3"))); err != nil {
		t.Errorf("distinct names refused: %v", err)
	}
}

// The edit command reads only the first YAML document; writing it back must
// not silently drop the others.
func TestEditRefusesMultiDocumentFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users.yml")
	content := usersYAML("alice") + "---\n# staging users, kept here by the operator\nusers:\n  bob: {password: \"" + fixtureArgonHash + "\"}\n"
	writeFile(t, path, content)
	for name, edit := range map[string]func() error{
		"AddUser":     func() error { return AddUser(path, NewUser{Name: "carol", Hash: fixtureArgonHash}) },
		"SetDisabled": func() error { return SetDisabled(path, "alice", true) },
	} {
		if err := edit(); err == nil {
			t.Errorf("%s edited a file of several YAML documents", name)
		}
		if got := readString(t, path); got != content {
			t.Fatalf("%s changed the file:\n%s", name, got)
		}
	}
}

// Memory and passes are bounded one by one, but their product is the cost of
// a sign-in: m=1 GiB with t=20 passes each limit and makes every attempt on
// that user (and, when most users have it, on unknown names through the
// dummy hash) hold 1 GiB for tens of seconds, NumCPU of them at once.
func TestHashCostBudget(t *testing.T) {
	const salt, key = "2ohUAfh9yetl+utr4tLcCQ", "AsXx0VlwjvNnCsa70u4HKZvFkC8Gwajr2pHGKcND/xs"
	refused := []string{"m=1048576,t=20,p=4", "m=1048576,t=3,p=4", "m=524288,t=8,p=64", "m=262144,t=20,p=1"}
	for _, params := range refused {
		hash := "$argon2id$v=19$" + params + "$" + salt + "$" + key
		start := time.Now()
		if ok, err := Verify(hash, "password"); err == nil || ok {
			t.Errorf("Verify(%s) = %v, %v; want a refusal", params, ok, err)
		}
		if d := time.Since(start); d > 500*time.Millisecond {
			t.Errorf("refusing %s took %v", params, d)
		}
		if _, err := Parse([]byte(usersYAML("bob=" + hash))); err == nil {
			t.Errorf("Parse accepted a hash with %s", params)
		}
	}
	// Strong settings in use stay accepted (checked, not computed).
	for _, params := range []string{"m=65536,t=3,p=4", "m=1048576,t=2,p=4", "m=262144,t=8,p=4", "m=65536,t=20,p=1", "m=1048576,t=1,p=4"} {
		if err := CheckHash("$argon2id$v=19$" + params + "$" + salt + "$" + key); err != nil {
			t.Errorf("CheckHash(%s) = %v", params, err)
		}
	}
}
