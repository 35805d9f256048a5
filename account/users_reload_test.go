package account

// A users-file reload ends the sessions it makes invalid at once (attack
// test: it failed on the code before its fix).

import (
	"context"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/twostep-auth/twostep/internal/users"
)

// usersReload swaps the users file as the watcher does in production
// (caddymodule/app.go: f.OnChange stores the new DB, then calls
// svc.PasswordsChanged(old, cur)).
func usersReload(t *testing.T, e *env, cur *users.DB) {
	t.Helper()
	old := e.dir.db.Load()
	e.dir.db.Store(cur)
	e.svc.PasswordsChanged(context.Background(), old, cur)
}

func onlyBob(t *testing.T) *users.DB {
	t.Helper()
	usersYAML(t, "", false) // sets bobHash
	db, err := users.Parse([]byte("users:\n  bob:\n    password: \"" + bobHash + "\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// Disabling a user, changing their password or removing them from the
// users file must END their sessions (README: "a password change or
// disabling the user ends it at once"). The code only refuses a session
// while the users file still says so, and deletes it lazily when it
// happens to be presented. Every session that is not used during that
// window comes back to life when the change is undone:
//
//  1. an attacker holds a copy of alice's session cookie;
//  2. the operator runs `caddy twostep user disable alice` (or `user
//     passwd alice`, or removes her) to throw the intruder out;
//  3. later `user disable --enable alice`, a config-management run or a
//     git revert restores the previous users.yml entry (same hash);
//  4. the attacker's cookie, not presented in between, works again.
func TestUsersFileChangeEndsSessionsAtOnce(t *testing.T) {
	nh, err := bcrypt.GenerateFromPassword([]byte("rotated-password"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		revoked func(t *testing.T) *users.DB
	}{
		{"disable then enable", func(t *testing.T) *users.DB { return usersYAML(t, "", true) }},
		{"password changed then reverted", func(t *testing.T) *users.DB { return usersYAML(t, string(nh), false) }},
		{"removed then restored", onlyBob},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			ctx := context.Background()
			stolen, err := e.svc.SignIn(ctx, "alice", "alice-password", ip1)
			if err != nil {
				t.Fatal(err)
			}
			original := e.dir.db.Load()
			usersReload(t, e, tc.revoked(t))
			e.clock.add(10 * time.Minute)
			// Nobody presents the stolen cookie while alice is revoked.
			usersReload(t, e, original)
			e.clock.add(time.Minute)
			if res, err := e.svc.Resolve(ctx, stolen.Token); err == nil {
				t.Fatalf("%s: the session issued before the revocation is live again (state %s)", tc.name, res.Session.State)
			}
		})
	}
}
