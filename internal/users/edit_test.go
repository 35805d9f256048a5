package users

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// operatorFile is a users file as an operator keeps it: comments, unknown
// fields, 4-space indentation.
const operatorFile = `# Users of example.com — managed by hand and by "caddy twostep user".
users:
    # The admin.
    alice:
        displayname: Alice Example
        password: "` + autheliaSampleHash + `"  # rotated 2024-01
        email: alice@example.com
        groups: [admins]
        webauthn_note: keep me
    bob:
        password: "` + fixtureArgonHash + `"
        disabled: false
# end of users
`

func readString(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// mustKeep checks that the operator's comments and unknown fields survived.
func mustKeep(t *testing.T, content string) {
	t.Helper()
	for _, s := range []string{
		"# Users of example.com — managed by hand",
		"# The admin.",
		"# rotated 2024-01",
		"webauthn_note: keep me",
		"# end of users",
		"displayname: Alice Example",
	} {
		if !strings.Contains(content, s) {
			t.Errorf("lost %q:\n%s", s, content)
		}
	}
}

func parseFile(t *testing.T, path string) *DB {
	t.Helper()
	db, err := Parse([]byte(readString(t, path)))
	if err != nil {
		t.Fatalf("the edited file does not load: %v\n%s", err, readString(t, path))
	}
	return db
}

func TestAddUser(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "users.yml")
	writeFile(t, path, operatorFile)
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	nu := NewUser{
		Name:        "Carol",
		DisplayName: "Carol C.",
		Email:       "carol@example.com",
		Phone:       "+15551234567",
		Groups:      []string{"dev", "ops"},
		Hash:        fixtureBcryptHash,
	}
	if err := AddUser(path, nu); err != nil {
		t.Fatal(err)
	}
	content := readString(t, path)
	mustKeep(t, content)
	if !strings.Contains(content, "\n    Carol:\n        displayname: Carol C.\n") {
		t.Errorf("new user not written with the file's indentation:\n%s", content)
	}
	db := parseFile(t, path)
	c, ok := db.Lookup("carol")
	if !ok {
		t.Fatal("Carol not found")
	}
	if c.Name != "Carol" || c.DisplayName != nu.DisplayName || c.Email != nu.Email || c.Phone != nu.Phone ||
		strings.Join(c.Groups, ",") != "dev,ops" || c.Hash != nu.Hash || c.Disabled {
		t.Errorf("Carol = %+v", c)
	}
	if a, _ := db.Lookup("alice"); a == nil || a.Hash != autheliaSampleHash {
		t.Error("alice changed")
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("mode = %v, want 0640 kept", fi.Mode().Perm())
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("left files behind: %v", entries)
	}
}

func TestAddUserCreatesFile(t *testing.T) {
	tests := []struct {
		name    string
		initial string // "-" for no file
	}{
		{"missing file", "-"},
		{"empty file", ""},
		{"users null", "users:\n"},
		{"no users key", "# only a comment\nother: 1\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "users.yml")
			if tt.initial != "-" {
				writeFile(t, path, tt.initial)
			}
			if err := AddUser(path, NewUser{Name: "alice", Hash: fixtureArgonHash}); err != nil {
				t.Fatal(err)
			}
			if _, ok := parseFile(t, path).Lookup("alice"); !ok {
				t.Error("alice not added")
			}
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if tt.initial == "-" && fi.Mode().Perm() != 0o600 {
				t.Errorf("new file mode %v, want 0600", fi.Mode().Perm())
			}
			if strings.Contains(tt.initial, "other: 1") && !strings.Contains(readString(t, path), "other: 1") {
				t.Error("other top-level key lost")
			}
		})
	}
}

func TestAddUserRefuses(t *testing.T) {
	tests := []struct {
		name string
		user NewUser
		want string
	}{
		{"exists, other case", NewUser{Name: "ALICE", Hash: fixtureArgonHash}, `user "ALICE" already exists (as "alice")`},
		{"exists", NewUser{Name: "bob", Hash: fixtureArgonHash}, "already exists"},
		{"bad name", NewUser{Name: "bob smith", Hash: fixtureArgonHash}, "name: contains whitespace"},
		{"no hash", NewUser{Name: "carol"}, "password: missing"},
		{"plaintext hash", NewUser{Name: "carol", Hash: "hunter2"}, "password: not an argon2id or bcrypt hash"},
		{"bad email", NewUser{Name: "carol", Hash: fixtureArgonHash, Email: "Carol <c@example.com>"}, "email:"},
		{"bad phone", NewUser{Name: "carol", Hash: fixtureArgonHash, Phone: "555-1234"}, "phone:"},
		{"bad group", NewUser{Name: "carol", Hash: fixtureArgonHash, Groups: []string{"a,b"}}, "groups:"},
		{"bad displayname", NewUser{Name: "carol", Hash: fixtureArgonHash, DisplayName: "C\nX"}, "displayname:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "users.yml")
			writeFile(t, path, operatorFile)
			err := AddUser(path, tt.user)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("AddUser = %v, want an error containing %q", err, tt.want)
			}
			if readString(t, path) != operatorFile {
				t.Error("file changed")
			}
		})
	}
}

func TestSetPassword(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users.yml")
	writeFile(t, path, operatorFile)
	before, _ := parseFile(t, path).Lookup("alice")
	if err := SetPassword(path, "Alice", fixtureBcryptHash); err != nil {
		t.Fatal(err)
	}
	content := readString(t, path)
	mustKeep(t, content)
	if strings.Contains(content, autheliaSampleHash) {
		t.Error("old hash still in the file")
	}
	after, _ := parseFile(t, path).Lookup("alice")
	if after.Hash != fixtureBcryptHash || after.Credential == before.Credential {
		t.Errorf("alice after SetPassword: %+v", after)
	}
	if b, _ := parseFile(t, path).Lookup("bob"); b.Hash != fixtureArgonHash {
		t.Error("bob changed")
	}

	// A user without a password field gets one.
	writeFile(t, path, "users:\n  dave: ~\n")
	if err := SetPassword(path, "dave", fixtureArgonHash); err != nil {
		t.Fatal(err)
	}
	if d, ok := parseFile(t, path).Lookup("dave"); !ok || d.Hash != fixtureArgonHash {
		t.Errorf("dave = %+v", d)
	}
}

func TestSetPasswordRefuses(t *testing.T) {
	tests := []struct {
		name, initial, user, hash, want string
	}{
		{"missing user", operatorFile, "carol", fixtureArgonHash, `user "carol" not found`},
		{"bad hash", operatorFile, "alice", "hunter2", "not an argon2id or bcrypt hash"},
		{"hostile hash", operatorFile, "alice", "$2b$31$uu8vuSBjfNNIRyc.iBjhLupQn5aPnkBPStGBRcqUUBzLqmPFQyknu", "cost 31"},
		{"aliased entry", "users:\n  a: &x\n    password: \"" + fixtureArgonHash + "\"\n  b: *x\n", "b", fixtureBcryptHash, "anchor or alias"},
		{"anchored entry", "users:\n  a: &x\n    password: \"" + fixtureArgonHash + "\"\n  b: *x\n", "a", fixtureBcryptHash, "anchor or alias"},
		{"aliased password", "users:\n  a:\n    password: &p \"" + fixtureArgonHash + "\"\n  b:\n    password: *p\n", "a", fixtureBcryptHash, "anchor or alias"},
		{"not yaml", "users: [\n", "a", fixtureArgonHash, "not valid YAML"},
		{"no users", "other: 1\n", "a", fixtureArgonHash, "no `users` map"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "users.yml")
			writeFile(t, path, tt.initial)
			err := SetPassword(path, tt.user, tt.hash)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("SetPassword = %v, want an error containing %q", err, tt.want)
			}
			if readString(t, path) != tt.initial {
				t.Error("file changed")
			}
		})
	}
	if err := SetPassword(filepath.Join(t.TempDir(), "missing.yml"), "a", fixtureArgonHash); err == nil {
		t.Error("SetPassword on a missing file succeeded")
	}
}

func TestSetDisabled(t *testing.T) {
	tests := []struct {
		name     string
		user     string
		disabled bool
	}{
		{"add the field", "alice", true},
		{"change the field", "bob", true},
		{"enable again", "BOB", false},
	}
	path := filepath.Join(t.TempDir(), "users.yml")
	writeFile(t, path, operatorFile)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := SetDisabled(path, tt.user, tt.disabled); err != nil {
				t.Fatal(err)
			}
			content := readString(t, path)
			mustKeep(t, content)
			u, _ := parseFile(t, path).Lookup(tt.user)
			if u.Disabled != tt.disabled {
				t.Errorf("%s disabled = %v, want %v", tt.user, u.Disabled, tt.disabled)
			}
		})
	}
	if n := strings.Count(readString(t, path), "disabled:"); n != 2 {
		t.Errorf("%d disabled fields, want 2 (one per user)", n)
	}
	if err := SetDisabled(path, "nobody", true); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("SetDisabled(nobody) = %v", err)
	}
}

// TestEditRefusesInvalidResult: an edit that would leave a file that does
// not load (here, because another entry is already invalid) writes nothing.
func TestEditRefusesInvalidResult(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users.yml")
	initial := usersYAML("alice", "bob=plaintext")
	writeFile(t, path, initial)
	err := SetDisabled(path, "alice", true)
	if err == nil || !strings.Contains(err.Error(), `would not load: user "bob": password`) {
		t.Errorf("SetDisabled = %v", err)
	}
	if readString(t, path) != initial {
		t.Error("file changed")
	}
	// Fixing the bad entry is allowed.
	if err := SetPassword(path, "bob", fixtureArgonHash); err != nil {
		t.Errorf("SetPassword fixing bob: %v", err)
	}
}

// TestEditThroughSymlink: the file behind a symlink is replaced; the symlink
// stays.
func TestEditThroughSymlink(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "data", "users.yml")
	if err := os.Mkdir(filepath.Dir(real), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, real, operatorFile)
	link := filepath.Join(dir, "users.yml")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	if err := SetDisabled(link, "alice", true); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Error("the symlink was replaced")
	}
	if u, _ := parseFile(t, real).Lookup("alice"); !u.Disabled {
		t.Error("the target was not changed")
	}
}

func TestEditedFileKeepsQuoting(t *testing.T) {
	// Values that YAML would read as another type stay strings.
	path := filepath.Join(t.TempDir(), "users.yml")
	for _, name := range []string{"007", "true", "null", "1e3", "yes"} {
		if err := AddUser(path, NewUser{Name: name, Hash: fixtureArgonHash, DisplayName: "123", Groups: []string{"42", "on"}}); err != nil {
			t.Fatalf("AddUser(%s): %v", name, err)
		}
	}
	db := parseFile(t, path)
	for _, name := range []string{"007", "true", "null", "1e3", "yes"} {
		u, ok := db.Lookup(name)
		if !ok || u.Name != name || u.DisplayName != "123" || strings.Join(u.Groups, ",") != "42,on" {
			t.Errorf("%s: %+v\n%s", name, u, readString(t, path))
		}
	}
}
