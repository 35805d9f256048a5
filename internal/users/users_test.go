package users

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
)

// Fixed hashes, so that the format stays what Authelia writes and reads.
const (
	// From Authelia's sample users_database.yml: the password is "password".
	autheliaSampleHash = "$argon2id$v=19$m=65536,t=3,p=4$2ohUAfh9yetl+utr4tLcCQ$AsXx0VlwjvNnCsa70u4HKZvFkC8Gwajr2pHGKcND/xs"
	// Made by libargon2 (Python argon2-cffi): the password is "TestPass123".
	libargon2Hash = "$argon2id$v=19$m=65536,t=3,p=4$2m5CBWkA489bnIwyY5iaWQ$w3ujhnFOTF63QwaBVK950q/NxCwyTVQF4LLTeHAEt/Y"
	// Made by this package's Hash: the password is fixturePassword.
	fixtureArgonHash = "$argon2id$v=19$m=65536,t=3,p=4$lOPl/kxxmf1Ytx6Sxf0BuQ$nraOvJYGYP/BHNBNawwHsMSgy2UyzhqahXlD6g6Vfm4"
	// Made by x/crypto/bcrypt at cost 10: the password is fixturePassword.
	fixtureBcryptHash = "$2a$10$uu8vuSBjfNNIRyc.iBjhLupQn5aPnkBPStGBRcqUUBzLqmPFQyknu"
	// The OpenBSD/OpenWall bcrypt test vector: the password is "U*U".
	openwallBcryptHash = "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW"
	// Cheap bcrypt hash (cost 4) of "hunter2hunter2".
	cheapBcryptHash = "$2a$04$/xsLuf4HrrKU5iUESk7eFe3pYcwQpN.WyN.XWZ/uoNHaPDa0zMRCS"

	fixturePassword = "correct horse battery staple"
)

const goodFile = `# Users of the demo.
users:
  alice:
    displayname: Alice Example
    password: "` + autheliaSampleHash + `"
    email: alice@example.com
    groups: [admins, dev]
    phone: "+15551234567"
    disabled: false
  Bob:  # capital B
    displayname: Bob
    password: ` + fixtureBcryptHash + `
    email: BOB@example.com
    groups:
      - dev
    extra_field: kept
    webauthn: {devices: 1}
  carol:
    password: '` + fixtureArgonHash + `'
    disabled: yes
    phone: +15557654321
`

func TestParseGood(t *testing.T) {
	db, err := Parse([]byte(goodFile))
	if err != nil {
		t.Fatal(err)
	}
	if db.Len() != 3 {
		t.Fatalf("Len = %d, want 3", db.Len())
	}
	var names []string
	for _, u := range db.Users() {
		names = append(names, u.Name)
	}
	if got := strings.Join(names, ","); got != "alice,Bob,carol" {
		t.Errorf("Users() order = %s, want alice,Bob,carol", got)
	}

	tests := []struct {
		lookup   string
		name     string
		display  string
		email    string
		phone    string
		groups   string
		disabled bool
		hash     string
	}{
		{"alice", "alice", "Alice Example", "alice@example.com", "+15551234567", "admins,dev", false, autheliaSampleHash},
		{"ALICE", "alice", "Alice Example", "alice@example.com", "+15551234567", "admins,dev", false, autheliaSampleHash},
		{"bob", "Bob", "Bob", "BOB@example.com", "", "dev", false, fixtureBcryptHash},
		{"Bob", "Bob", "Bob", "BOB@example.com", "", "dev", false, fixtureBcryptHash},
		{"cArOl", "carol", "", "", "+15557654321", "", true, fixtureArgonHash},
	}
	for _, tt := range tests {
		t.Run(tt.lookup, func(t *testing.T) {
			u, ok := db.Lookup(tt.lookup)
			if !ok {
				t.Fatalf("Lookup(%q) found nothing", tt.lookup)
			}
			got := fmt.Sprintf("%s|%s|%s|%s|%s|%v|%s", u.Name, u.DisplayName, u.Email, u.Phone, strings.Join(u.Groups, ","), u.Disabled, u.Hash)
			want := fmt.Sprintf("%s|%s|%s|%s|%s|%v|%s", tt.name, tt.display, tt.email, tt.phone, tt.groups, tt.disabled, tt.hash)
			if got != want {
				t.Errorf("got  %s\nwant %s", got, want)
			}
			if !regexp.MustCompile(`^[0-9a-f]{16}$`).MatchString(u.Credential) {
				t.Errorf("Credential = %q, want 16 hex characters", u.Credential)
			}
		})
	}

	for _, miss := range []string{"", "dave", "alice ", "alic", "ａlice", strings.Repeat("a", 300), "\xff"} {
		if _, ok := db.Lookup(miss); ok {
			t.Errorf("Lookup(%q) found a user", miss)
		}
	}
	a, _ := db.Lookup("alice")
	c, _ := db.Lookup("carol")
	if a.Credential == c.Credential {
		t.Error("different hashes have the same Credential")
	}
	if u, ok := db.LookupEmail("bob@EXAMPLE.com"); !ok || u.Name != "Bob" {
		t.Errorf("LookupEmail(bob@EXAMPLE.com) = %v, %v", u, ok)
	}
}

// TestParseErrors checks that each kind of bad value refuses the file with a
// message naming the user and the field, without the hash.
func TestParseErrors(t *testing.T) {
	const okUser = "  alice:\n    password: \"" + autheliaSampleHash + "\"\n"
	bob := func(fields string) string {
		return "users:\n" + okUser + "  bob:\n" + fields
	}
	withPassword := func(extra string) string {
		return bob("    password: \"" + fixtureArgonHash + "\"\n" + extra)
	}
	tests := []struct {
		name string
		data string
		want string
	}{
		{"not yaml", "users:\n  alice: [\n", "not valid YAML"},
		{"tab indentation", "users:\n\talice: {}\n", "not valid YAML"},
		{"empty file", "", "no `users` map"},
		{"only a comment", "# nothing\n", "no `users` map"},
		{"list at top", "- users\n", "no `users` map"},
		{"no users key", "user:\n" + okUser, "no `users` map"},
		{"users is a list", "users:\n  - alice\n", "users: must be a map"},
		{"users is a string", "users: alice\n", "users: must be a map"},
		{"users twice", "users: {}\nusers: {}\n", `mapping key "users" already defined`},
		{"entry is a string", "users:\n" + okUser + "  bob: secret\n", `user "bob": must be a map`},
		{"entry is empty", "users:\n" + okUser + "  bob:\n", `user "bob": password: missing`},
		{"no password", bob("    email: bob@example.com\n"), `user "bob": password: missing`},
		{"empty password", bob("    password: \"\"\n"), `user "bob": password: missing`},
		{"plaintext password", bob("    password: hunter2\n"), `user "bob": password: not an argon2id or bcrypt hash`},
		{"argon2i password", bob("    password: \"$argon2i$v=19$m=65536,t=3,p=4$2ohUAfh9yetl+utr4tLcCQ$AsXx0VlwjvNnCsa70u4HKZvFkC8Gwajr2pHGKcND/xs\"\n"), `user "bob": password: not an argon2id or bcrypt hash`},
		{"sha512crypt password", bob("    password: \"$6$rounds=50000$abcdefgh$xyz\"\n"), `user "bob": password: not an argon2id or bcrypt hash`},
		{"argon2 hostile memory", bob("    password: \"$argon2id$v=19$m=4194304,t=3,p=4$2ohUAfh9yetl+utr4tLcCQ$AsXx0VlwjvNnCsa70u4HKZvFkC8Gwajr2pHGKcND/xs\"\n"), `user "bob": password: malformed argon2id hash: m=4194304`},
		{"bcrypt cost 31", bob("    password: \"$2b$31$uu8vuSBjfNNIRyc.iBjhLupQn5aPnkBPStGBRcqUUBzLqmPFQyknu\"\n"), `user "bob": password: malformed bcrypt hash: cost 31`},
		{"password is a list", bob("    password: [a, b]\n"), `user "bob": password: must be a string`},
		{"duplicate field", withPassword("    password: \"" + fixtureArgonHash + "\"\n"), `user "bob": line 6: mapping key "password" already defined`},
		{"email with display name", withPassword("    email: Bob <bob@example.com>\n"), `user "bob": email: not a plain e-mail address`},
		{"email with two @", withPassword("    email: bob@x@example.com\n"), `user "bob": email: not a plain e-mail address`},
		{"email without @", withPassword("    email: bob.example.com\n"), `user "bob": email: not a plain e-mail address`},
		{"email with comment", withPassword("    email: \"bob@example.com (Bob)\"\n"), `user "bob": email: not a plain e-mail address`},
		{"email is a map", withPassword("    email: {a: b}\n"), `user "bob": email: must be a string`},
		{"phone without +", withPassword("    phone: \"15551234567\"\n"), `user "bob": phone: not an E.164 number`},
		{"phone too short", withPassword("    phone: \"+155512\"\n"), `user "bob": phone: not an E.164 number`},
		{"phone too long", withPassword("    phone: \"+1555123456789012\"\n"), `user "bob": phone: not an E.164 number`},
		{"phone leading zero", withPassword("    phone: \"+05551234567\"\n"), `user "bob": phone: not an E.164 number`},
		{"phone with spaces", withPassword("    phone: \"+1 555 123 4567\"\n"), `user "bob": phone: not an E.164 number`},
		{"group with comma", withPassword("    groups: [\"a,b\"]\n"), `user "bob": groups: group "a,b" contains a comma`},
		{"empty group", withPassword("    groups: [\"\"]\n"), `user "bob": groups: empty group name`},
		{"null group", withPassword("    groups: [~]\n"), `user "bob": groups: empty group name`},
		{"group with newline", withPassword("    groups: [\"a\\nb\"]\n"), `user "bob": groups: group "a\nb" contains a control character`},
		{"groups is a string", withPassword("    groups: admins\n"), `user "bob": groups: must be a list`},
		{"groups of maps", withPassword("    groups: [{a: b}]\n"), `user "bob": groups: must be a list`},
		{"disabled not a bool", withPassword("    disabled: maybe\n"), `user "bob": disabled: must be true or false`},
		{"disabled quoted", withPassword("    disabled: \"true\"\n"), `user "bob": disabled: must be true or false`},
		{"displayname with newline", withPassword("    displayname: \"Bob\\r\\nX-Evil: 1\"\n"), `user "bob": displayname: contains a control character`},
		{"displayname is a list", withPassword("    displayname: [Bob]\n"), `user "bob": displayname: must be a string`},
		{"name with space", "users:\n" + okUser + "  \"bob smith\":\n    password: \"" + fixtureArgonHash + "\"\n", `user "bob smith": name: contains whitespace`},
		{"name with colon", "users:\n" + okUser + "  \"bob:x\":\n    password: \"" + fixtureArgonHash + "\"\n", `user "bob:x": name: contains ':'`},
		{"name with control", "users:\n" + okUser + "  \"bob\\u0007\":\n    password: \"" + fixtureArgonHash + "\"\n", `user "bob\a": name: contains a control`},
		{"name with zero-width space", "users:\n" + okUser + "  \"bo\\u200bb\":\n    password: \"" + fixtureArgonHash + "\"\n", `name: contains a control or invisible character`},
		{"name too long", "users:\n" + okUser + "  " + strings.Repeat("b", 65) + ":\n    password: \"" + fixtureArgonHash + "\"\n", `name: longer than 64 characters`},
		{"empty name", "users:\n" + okUser + "  \"\":\n    password: \"" + fixtureArgonHash + "\"\n", `name: empty`},
		{"null name", "users:\n" + okUser + "  ~:\n    password: \"" + fixtureArgonHash + "\"\n", `empty user name`},
		{"list as name", "users:\n" + okUser + "  ? [a]\n  : {password: \"" + fixtureArgonHash + "\"}\n", `a user name must be a plain string`},
		{"duplicate by case", "users:\n" + okUser + "  ALICE:\n    password: \"" + fixtureArgonHash + "\"\n", `user "ALICE": same name as "alice"`},
		{"exact duplicate", "users:\n" + okUser + okUser, `user "alice": defined twice`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db, err := Parse([]byte(tt.data))
			if err == nil {
				t.Fatalf("Parse accepted:\n%s\nusers: %d", tt.data, db.Len())
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q\ndoes not contain %q", err, tt.want)
			}
			for _, h := range []string{autheliaSampleHash, fixtureArgonHash, "2ohUAfh9yetl", "uu8vuSBjfNNIRyc"} {
				if strings.Contains(err.Error(), h) {
					t.Errorf("error %q contains a password hash", err)
				}
			}
		})
	}
}

func TestParseTolerated(t *testing.T) {
	tests := []struct {
		name  string
		data  string
		users int
	}{
		{"users null", "users:\n", 0},
		{"users empty map", "users: {}\n", 0},
		{"other top-level keys", "version: 2\nusers: {}\n", 0},
		{"unknown user fields", "users:\n  a:\n    password: \"" + fixtureArgonHash + "\"\n    totp: {secret: x}\n    last_login: 2024-01-01\n", 1},
		{"null optional fields", "users:\n  a:\n    password: \"" + fixtureArgonHash + "\"\n    email: ~\n    phone:\n    groups:\n    disabled: null\n    displayname: ~\n", 1},
		{"numeric name", "users:\n  007:\n    password: \"" + fixtureArgonHash + "\"\n", 1},
		{"unicode name", "users:\n  José:\n    password: \"" + fixtureArgonHash + "\"\n", 1},
		{"anchors and aliases", "users:\n  a: &u\n    password: \"" + fixtureArgonHash + "\"\n    groups: &g [x]\n  b:\n    <<: *u\n    groups: *g\n", 2},
		{"disabled yes/no", "users:\n  a:\n    password: \"" + fixtureArgonHash + "\"\n    disabled: no\n", 1},
		{"all bcrypt prefixes", "users:\n  a: {password: \"$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW\"}\n  b: {password: \"$2b$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW\"}\n  c: {password: \"$2y$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW\"}\n", 3},
		{"shared e-mail", "users:\n  a: {password: \"" + fixtureArgonHash + "\", email: x@example.com}\n  b: {password: \"" + fixtureArgonHash + "\", email: X@example.com}\n", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db, err := Parse([]byte(tt.data))
			if err != nil {
				t.Fatal(err)
			}
			if db.Len() != tt.users {
				t.Errorf("Len = %d, want %d", db.Len(), tt.users)
			}
		})
	}
}

func TestParseAliasesResolved(t *testing.T) {
	db, err := Parse([]byte("users:\n  a: &u\n    password: \"" + fixtureArgonHash + "\"\n    groups: &g [x, y]\n  b:\n    <<: *u\n    displayname: B\n  c: *u\n"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := db.Lookup("b")
	c, _ := db.Lookup("c")
	if b == nil || b.Hash != fixtureArgonHash || strings.Join(b.Groups, ",") != "x,y" || b.DisplayName != "B" {
		t.Errorf("merged user b = %+v", b)
	}
	if c == nil || c.Hash != fixtureArgonHash {
		t.Errorf("aliased user c = %+v", c)
	}
}

func TestSharedEmailFindsNobody(t *testing.T) {
	db, err := Parse([]byte("users:\n  a: {password: \"" + fixtureArgonHash + "\", email: x@example.com}\n  b: {password: \"" + fixtureArgonHash + "\", email: X@example.com}\n  c: {password: \"" + fixtureArgonHash + "\", email: c@example.com}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if u, ok := db.LookupEmail("x@example.com"); ok {
		t.Errorf("an address shared by two users found %s", u.Name)
	}
	if u, ok := db.LookupEmail("C@example.com"); !ok || u.Name != "c" {
		t.Errorf("LookupEmail(C@example.com) = %v, %v", u, ok)
	}
}

func TestCanonical(t *testing.T) {
	tests := []struct{ in, want string }{
		{"alice", "alice"},
		{"Alice", "alice"},
		{"ALICE", "alice"},
		{"JOSÉ", "josé"},
		{"\u212Aate", "kate"}, // KELVIN SIGN lower-cases to k
	}
	for _, tt := range tests {
		if got := Canonical(tt.in); got != tt.want {
			t.Errorf("Canonical(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	db, err := Parse([]byte("users:\n  kate: {password: \"" + fixtureArgonHash + "\"}\n  josé: {password: \"" + fixtureArgonHash + "\"}\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"KATE", "\u212Aate", "JOSÉ", "José"} {
		if _, ok := db.Lookup(name); !ok {
			t.Errorf("Lookup(%q) found nothing", name)
		}
	}
	// Canonical and Lookup agree.
	if _, err := Parse([]byte("users:\n  kate: {password: \"" + fixtureArgonHash + "\"}\n  \u212Aate: {password: \"" + fixtureArgonHash + "\"}\n")); err == nil {
		t.Error("two names with the same canonical form were accepted")
	}
}

func TestCheckName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"alice", true},
		{"alice.example", true},
		{"alice@example.com", true},
		{"José", true},
		{strings.Repeat("é", 64), true},
		{strings.Repeat("é", 65), false},
		{"", false},
		{"a b", false},
		{" alice", false},
		{"alice\n", false},
		{"a\u00a0b", false}, // no-break space
		{"a:b", false},
		{"a\x00b", false},
		{"a\u200db", false}, // zero-width joiner
		{"\xffalice", false},
	}
	for _, tt := range tests {
		if err := CheckName(tt.name); (err == nil) != tt.ok {
			t.Errorf("CheckName(%q) = %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
}

func TestCheckEmailAndPhone(t *testing.T) {
	emails := []struct {
		in string
		ok bool
	}{
		{"alice@example.com", true},
		{"alice+tag@sub.example.co.uk", true},
		{"Alice <alice@example.com>", false},
		{"<alice@example.com>", false},
		{"alice@", false},
		{"@example.com", false},
		{"a@b@example.com", false},
		{"\"a b\"@example.com", false},
		{"alice@example.com\n", false},
		{strings.Repeat("a", 250) + "@example.com", false},
	}
	for _, tt := range emails {
		if err := CheckEmail(tt.in); (err == nil) != tt.ok {
			t.Errorf("CheckEmail(%q) = %v, want ok=%v", tt.in, err, tt.ok)
		}
	}
	phones := []struct {
		in string
		ok bool
	}{
		{"+15551234567", true},
		{"+4930123456", true},
		{"+1234567", true},           // shortest: 7 digits
		{"+123456789012345", true},   // longest: 15 digits
		{"+123456", false},           // 6 digits
		{"+1234567890123456", false}, // 16 digits
		{"+0123456789", false},
		{"15551234567", false},
		{"+1555123456a", false},
		{"+", false},
		{"", false},
		{"+1555123456\n", false},
	}
	for _, tt := range phones {
		if err := CheckPhone(tt.in); (err == nil) != tt.ok {
			t.Errorf("CheckPhone(%q) = %v, want ok=%v", tt.in, err, tt.ok)
		}
	}
}

func TestDummyHash(t *testing.T) {
	argon := func(m, t, p int) string {
		return fmt.Sprintf("$argon2id$v=19$m=%d,t=%d,p=%d$2ohUAfh9yetl+utr4tLcCQ$AsXx0VlwjvNnCsa70u4HKZvFkC8Gwajr2pHGKcND/xs", m, t, p)
	}
	bc := func(prefix string, cost int) string {
		return fmt.Sprintf("$%s$%02d$uu8vuSBjfNNIRyc.iBjhLupQn5aPnkBPStGBRcqUUBzLqmPFQyknu", prefix, cost)
	}
	file := func(hashes ...string) string {
		s := "users:\n"
		for i, h := range hashes {
			s += fmt.Sprintf("  u%d: {password: %q}\n", i, h)
		}
		return s
	}
	tests := []struct {
		name string
		data string
		want string // regexp
	}{
		{"empty file", "users: {}\n", `^\$argon2id\$v=19\$m=65536,t=3,p=4\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$`},
		{"bcrypt majority", file(bc("2a", 10), argon(65536, 3, 4), bc("2a", 10)), `^\$2a\$10\$[./A-Za-z0-9]{53}$`},
		{"bcrypt cost matters", file(bc("2y", 11), bc("2a", 10), bc("2y", 11), argon(65536, 3, 4)), `^\$2y\$11\$[./A-Za-z0-9]{53}$`},
		{"argon2 params", file(argon(32768, 2, 1), argon(65536, 3, 4), argon(32768, 2, 1)), `^\$argon2id\$v=19\$m=32768,t=2,p=1\$`},
		{"argon2 key length", file("$argon2id$v=19$m=65536,t=3,p=4$2ohUAfh9yetl+utr4tLcCQ$AsXx0VlwjvNnCsa70u4HKQ"), `^\$argon2id\$v=19\$m=65536,t=3,p=4\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{22}$`},
		{"tie: first in name order", file(argon(32768, 2, 1), bc("2b", 12)), `^\$argon2id\$v=19\$m=32768,t=2,p=1\$`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db, err := Parse([]byte(tt.data))
			if err != nil {
				t.Fatal(err)
			}
			d := db.DummyHash()
			if !regexp.MustCompile(tt.want).MatchString(d) {
				t.Errorf("DummyHash = %s, want %s", d, tt.want)
			}
			if d != db.DummyHash() {
				t.Error("DummyHash changes between calls")
			}
			if err := CheckHash(d); err != nil {
				t.Errorf("DummyHash is not a valid hash: %v", err)
			}
		})
	}
}

func TestDummyHashVerifies(t *testing.T) {
	// A cheap bcrypt file so that the check is quick; the dummy must be
	// accepted by Verify (same work as a real hash) and match nothing.
	db, err := Parse([]byte("users:\n  a: {password: \"" + cheapBcryptHash + "\"}\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, pw := range []string{"hunter2hunter2", "", "x"} {
		ok, err := Verify(db.DummyHash(), pw)
		if err != nil || ok {
			t.Errorf("Verify(dummy, %q) = %v, %v; want false, nil", pw, ok, err)
		}
	}
	if cost, want := db.DummyHash()[:7], "$2a$04$"; cost != want {
		t.Errorf("dummy prefix %s, want %s", cost, want)
	}
}

func TestLookupAllocations(t *testing.T) {
	db, err := Parse([]byte(goodFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"alice", "ALICE", "Bob", "nobody", "NoBody"} {
		allocs := testing.AllocsPerRun(100, func() { db.Lookup(name) })
		if allocs != 0 {
			t.Errorf("Lookup(%q) allocates %v times", name, allocs)
		}
	}
}

func BenchmarkLookup(b *testing.B) {
	data := "users:\n"
	for i := range 1000 {
		data += fmt.Sprintf("  user%04d: {password: %q}\n", i, fixtureArgonHash)
	}
	db, err := Parse([]byte(data))
	if err != nil {
		b.Fatal(err)
	}
	for _, name := range []string{"user0500", "USER0500", "nobody", "Jösé"} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				db.Lookup(name)
			}
		})
	}
}
