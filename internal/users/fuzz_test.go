package users

import "testing"

// FuzzParse: Parse never panics, and a file it accepts has only recognised
// hashes and finds each of its users by name, in any case.
func FuzzParse(f *testing.F) {
	seeds := []string{
		goodFile,
		operatorFile,
		"users:\n",
		"users: {}\n",
		"",
		"users:\n  a: &u\n    password: \"" + fixtureArgonHash + "\"\n  b:\n    <<: *u\n  c: *u\n",
		"users:\n  a: {password: \"" + openwallBcryptHash + "\", groups: [x, y], disabled: true}\n",
		"users:\n  José: {password: \"" + fixtureArgonHash + "\", email: j@example.com, phone: \"+4930123456\"}\n",
		"users:\n  a: {password: \"$argon2id$v=19$m=8,t=1,p=1$2ohUAfh9yetl+utr4tLcCQ$AsXx0VlwjvNnCsa70u4HKQ\"}\n",
		"users:\n  a:\n    password: x\n    password: y\n",
		"a: &a [*a]\nusers: *a\n",
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		db, err := Parse(data)
		if err != nil {
			if db != nil {
				t.Fatal("Parse returned a DB with an error")
			}
			return
		}
		users := db.Users()
		if len(users) != db.Len() {
			t.Fatalf("Users() has %d, Len() %d", len(users), db.Len())
		}
		for _, u := range users {
			if err := CheckHash(u.Hash); err != nil {
				t.Fatalf("user %q: accepted hash is not recognised: %v", u.Name, err)
			}
			if err := CheckName(u.Name); err != nil {
				t.Fatalf("accepted name %q: %v", u.Name, err)
			}
			for _, name := range []string{u.Name, Canonical(u.Name)} {
				if got, ok := db.Lookup(name); !ok || got != u {
					t.Fatalf("Lookup(%q) = %v, %v", name, got, ok)
				}
			}
			if len(u.Credential) != 16 {
				t.Fatalf("Credential %q", u.Credential)
			}
		}
		if err := CheckHash(db.DummyHash()); err != nil {
			t.Fatalf("DummyHash: %v", err)
		}
	})
}
