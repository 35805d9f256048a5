package account

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/twostep-auth/twostep/internal/store"
	"github.com/twostep-auth/twostep/internal/users"
)

// trustedBob enrols bob's phone, signs in with a code ticking "trust this
// browser", and returns the device cookie and the client carrying it.
func trustedBob(t testing.TB, e *tsEnv) (string, Client) {
	t.Helper()
	c := ip1
	c.UserAgent = "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0"
	c.Base = "https://app.example.com"
	out := e.smsBob(t, true, c)
	if out.DeviceToken == "" || out.Device.Label != "Firefox on Linux" {
		t.Fatalf("device %+v", out.Device)
	}
	c.Device = out.DeviceToken
	return out.DeviceToken, c
}

func TestTrustedDeviceSkipsCode(t *testing.T) {
	e := newTSEnv(t)
	ctx := context.Background()
	tok, c := trustedBob(t, e)
	res, err := e.svc.SignIn(ctx, "bob", "bob-password", c)
	if err != nil {
		t.Fatal(err)
	}
	if res.Session.State != store.StateTwoFactor || res.Session.Device == "" {
		t.Fatalf("with a trusted device: %v", res.Session.State)
	}
	r, err := e.svc.Resolve(ctx, res.Token)
	if err != nil {
		t.Fatal(err)
	}
	if sub := r.Subject(); !sub.ViaTrustedDevice {
		t.Fatal("subject does not say a device stood in")
	}
	// Another browser (no cookie) still needs the code.
	if other, _ := e.svc.SignIn(ctx, "bob", "bob-password", ip1); other.Session.State != store.StateSecondFactor {
		t.Fatalf("without the cookie: %v", other.Session.State)
	}
	// A mangled cookie is worthless.
	bad := c
	bad.Device = tok[:42] + "A"
	if tok[42] == 'A' {
		bad.Device = tok[:42] + "Q" // another valid last character
	}
	if got, _ := e.svc.SignIn(ctx, "bob", "bob-password", bad); got.Session.State != store.StateSecondFactor {
		t.Fatalf("mangled cookie: %v", got.Session.State)
	}
}

func TestDeviceCookieOfAnotherUser(t *testing.T) {
	e := newTSEnv(t)
	ctx := context.Background()
	_, c := trustedBob(t, e)
	// alice turns two-step on too, then presents bob's device cookie.
	a := e.signIn(t, "alice", "alice-password")
	if _, err := e.svc.SetPhone(ctx, a, "+15557654321", MethodSMS, ip1); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.ConfirmPhone(ctx, a, e.sms.last(t).Code, ip1); err != nil {
		t.Fatal(err)
	}
	res, err := e.svc.SignIn(ctx, "alice", "alice-password", c)
	if err != nil {
		t.Fatal(err)
	}
	if res.Session.State != store.StateSecondFactor {
		t.Fatalf("bob's device let alice skip the code: %v", res.Session.State)
	}
}

func TestDeviceRevocation(t *testing.T) {
	ctx := context.Background()
	t.Run("one device: the next request asks for a code", func(t *testing.T) {
		e := newTSEnv(t)
		_, c := trustedBob(t, e)
		res, _ := e.svc.SignIn(ctx, "bob", "bob-password", c)
		r, _ := e.svc.Resolve(ctx, res.Token)
		list, err := e.svc.Devices(ctx, r, c.Device)
		if err != nil || len(list) != 1 || !list[0].Current {
			t.Fatalf("devices %+v %v", list, err)
		}
		if err := e.svc.RevokeDevice(ctx, "alice", list[0].ID, ip1); !errors.Is(err, ErrNotFound) {
			t.Fatalf("alice revoking bob's device: %v", err)
		}
		if err := e.svc.RevokeDevice(ctx, "bob", list[0].ID, ip1); err != nil {
			t.Fatal(err)
		}
		r, err = e.svc.Resolve(ctx, res.Token)
		if err != nil || r.Session.State != store.StateSecondFactor {
			t.Fatalf("after revocation the session must ask for a code: %v %v", r, err)
		}
		if again, _ := e.svc.SignIn(ctx, "bob", "bob-password", c); again.Session.State != store.StateSecondFactor {
			t.Fatalf("revoked cookie: %v", again.Session.State)
		}
	})
	t.Run("sign out everywhere ends sessions and devices", func(t *testing.T) {
		e := newTSEnv(t)
		_, c := trustedBob(t, e)
		res, _ := e.svc.SignIn(ctx, "bob", "bob-password", c)
		if err := e.svc.RevokeAll(ctx, "bob", ip1); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.Resolve(ctx, res.Token); !errors.Is(err, ErrNoSession) {
			t.Fatalf("session after revoke_all: %v", err)
		}
		if again, _ := e.svc.SignIn(ctx, "bob", "bob-password", c); again.Session.State != store.StateSecondFactor {
			t.Fatalf("device after revoke_all: %v", again.Session.State)
		}
	})
	t.Run("password change", func(t *testing.T) {
		e := newTSEnv(t)
		_, c := trustedBob(t, e)
		m := &deviceCounts{}
		e.svc.SetMetrics(m)
		old := e.dir.db.Load()
		nh, _ := bcrypt.GenerateFromPassword([]byte("bob-new-password"), bcrypt.MinCost)
		cur := mustParseWithBob(t, string(nh))
		e.dir.db.Store(cur)
		if again, _ := e.svc.SignIn(ctx, "bob", "bob-new-password", c); again == nil || again.Session.State != store.StateSecondFactor {
			t.Fatalf("device after a password change: %+v", again)
		}
		// Nor is it listed as trusted any more (operators' and the user's view).
		if list, err := e.svc.UserDevices(ctx, "bob"); err != nil || len(list) != 0 {
			t.Fatalf("devices listed after a password change: %+v, %v", list, err)
		}
		// The users file's reload removes the record and counts it, once.
		e.svc.PasswordsChanged(ctx, old, cur)
		e.svc.PasswordsChanged(ctx, old, cur)
		if m.revoked != 1 {
			t.Fatalf("devices counted as revoked: %d, want 1", m.revoked)
		}
		if list, err := e.svc.deviceList(ctx, "bob"); err != nil || len(list) != 0 {
			t.Fatalf("device records left after a password change: %v %v", list, err)
		}
	})
	t.Run("a new method", func(t *testing.T) {
		e := newTSEnv(t)
		_, c := trustedBob(t, e)
		res, _ := e.svc.SignIn(ctx, "bob", "bob-password", c)
		r, _ := e.svc.Resolve(ctx, res.Token)
		// The trusted browser does not stand in for the code here: the
		// session gives one first.
		if _, err := e.svc.EnrollTOTP(ctx, r); !errors.Is(err, ErrStepUp) {
			t.Fatalf("a new method from a trusted browser's session: %v, want ErrStepUp", err)
		}
		e.clock.add(time.Minute) // past the resend cooldown
		if _, err := e.svc.SendCode(ctx, r, MethodSMS, c); err != nil {
			t.Fatal(err)
		}
		out, err := e.svc.VerifyCode(ctx, r, MethodSMS, e.sms.last(t).Code, false, c)
		if err != nil {
			t.Fatal(err)
		}
		r, _ = e.svc.Resolve(ctx, out.Token)
		if _, err := e.svc.EnrollTOTP(ctx, r); err != nil {
			t.Fatal(err)
		}
		e.clock.add(time.Minute)
		if _, err := e.svc.SetPhone(ctx, r, "+15550009999", MethodSMS, ip1); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.ConfirmPhone(ctx, r, e.sms.last(t).Code, ip1); err != nil {
			t.Fatal(err)
		}
		if again, _ := e.svc.SignIn(ctx, "bob", "bob-password", c); again.Session.State != store.StateSecondFactor {
			t.Fatalf("device after a method change: %v", again.Session.State)
		}
	})
	t.Run("a revocation racing a sign-in stays final", func(t *testing.T) {
		// The sign-in reads the device, then the owner revokes it (another
		// request, here run by the store hook at that moment), then the
		// sign-in records the use: that write must not bring it back.
		e, hs := hookedTSEnv(t)
		_, c := trustedBob(t, e)
		list, err := e.svc.UserDevices(ctx, "bob")
		if err != nil || len(list) != 1 {
			t.Fatalf("devices %+v %v", list, err)
		}
		e.clock.add(2 * TouchInterval) // the sign-in will record the use
		revoked := false
		hs.afterRead(devicePrefix, func() {
			revoked = true
			if err := e.svc.RevokeDevice(ctx, "bob", list[0].ID, ip1); err != nil {
				t.Error(err)
			}
		})
		res, err := e.svc.SignIn(ctx, "bob", "bob-password", c)
		if err != nil {
			t.Fatal(err)
		}
		if !revoked {
			t.Fatal("the hook did not run: the test no longer races the revocation")
		}
		if res.Session.State != store.StateSecondFactor || res.Session.Device != "" {
			t.Fatalf("sign-in racing the revocation: %v (device %q), want a code asked for", res.Session.State, res.Session.Device)
		}
		if again, _ := e.svc.SignIn(ctx, "bob", "bob-password", c); again.Session.State != store.StateSecondFactor {
			t.Fatalf("the revoked device came back: the next sign-in is %v", again.Session.State)
		}
	})
	t.Run("expiry", func(t *testing.T) {
		e := newTSEnv(t)
		_, c := trustedBob(t, e)
		e.clock.add(31 * 24 * time.Hour)
		if again, _ := e.svc.SignIn(ctx, "bob", "bob-password", c); again.Session.State != store.StateSecondFactor {
			t.Fatalf("expired device: %v", again.Session.State)
		}
	})
}

func TestNewDeviceEmailRevokeLink(t *testing.T) {
	e := newTSEnv(t)
	ctx := context.Background()
	// alice has an email address: give her a phone and trust a browser.
	a := e.signIn(t, "alice", "alice-password")
	if _, err := e.svc.SetPhone(ctx, a, "+15557654321", MethodSMS, ip1); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.ConfirmPhone(ctx, a, e.sms.last(t).Code, ip1); err != nil {
		t.Fatal(err)
	}
	e.clock.add(time.Minute)
	half := e.signIn(t, "alice", "alice-password")
	e.svc.SendCode(ctx, half, MethodSMS, ip1)
	c := ip1
	c.Base = "https://app.example.com"
	out, err := e.svc.VerifyCode(ctx, half, MethodSMS, e.sms.last(t).Code, true, c)
	if err != nil {
		t.Fatal(err)
	}
	m := e.mail.last(t)
	if !strings.Contains(m.Subject, "new browser") || !strings.Contains(m.Body, "https://app.example.com/.twostep/devices/revoke?u=alice&d="+out.Device.ID+"&sig=") {
		t.Fatalf("mail %+v", m)
	}
	sig := m.Body[strings.Index(m.Body, "&sig=")+5:]
	sig = sig[:strings.IndexAny(sig, "\n ")]
	if !e.svc.CheckRevokeLink("alice", out.Device.ID, sig) {
		t.Fatal("our own link does not verify")
	}
	if e.svc.CheckRevokeLink("bob", out.Device.ID, sig) || e.svc.CheckRevokeLink("alice", out.Device.ID+"0", sig) {
		t.Fatal("a link for another user or device verifies")
	}
}

func mustParseWithBob(t *testing.T, bobHashValue string) *users.DB {
	t.Helper()
	old := bobHash
	bobHash = bobHashValue
	defer func() { bobHash = old }()
	return usersYAML(t, "", false)
}

// A phone from the users file is a method like a confirmed one, so a
// reset (reset-2sv, an approved recovery) stops offering it too, until
// the users file names another number.
func TestResetRemovesUsersFilePhone(t *testing.T) {
	e := newTSEnv(t)
	ctx := context.Background()
	withPhone := func(phone string) {
		db, err := users.Parse([]byte(fmt.Sprintf("users:\n  carol:\n    password: %q\n    phone: %q\n", bobHash, phone)))
		if err != nil {
			t.Fatal(err)
		}
		e.dir.db.Store(db)
	}
	withPhone("+15550001111")
	carol := e.signIn(t, "carol", "bob-password")
	if err := e.svc.SetTwoStep(ctx, carol, true, "", "", ip1); err != nil {
		t.Fatalf("two-step on with the users file's phone: %v", err)
	}
	if got := e.signIn(t, "carol", "bob-password"); got.Session.State != store.StateSecondFactor {
		t.Fatalf("with two-step on: %v", got.Session.State)
	}
	if err := e.svc.ResetTwoStep(ctx, "carol", "root"); err != nil {
		t.Fatal(err)
	}
	u, _ := e.dir.DB().Lookup("carol")
	info, err := e.svc.TwoStep(ctx, u)
	if err != nil || info.Enabled || len(info.Methods) != 0 || info.PhoneMasked != "" {
		t.Fatalf("after reset-2sv: %+v, %v; want no method, no phone", info, err)
	}
	carol = e.signIn(t, "carol", "bob-password")
	if carol.Session.State != store.StateOneFactor {
		t.Fatalf("after reset-2sv: %v", carol.Session.State)
	}
	if err := e.svc.SetTwoStep(ctx, carol, true, "", "", ip1); !errors.Is(err, ErrConflict) {
		t.Fatalf("two-step on with the removed phone: %v", err)
	}
	if _, err := e.svc.SendCode(ctx, carol, MethodSMS, ip1); err == nil {
		t.Fatal("a code went to the removed phone")
	}
	// The operator gives the account a new number: it counts again.
	withPhone("+15550002222")
	u, _ = e.dir.DB().Lookup("carol")
	if info, _ := e.svc.TwoStep(ctx, u); !slices.Contains(info.Methods, MethodSMS) {
		t.Fatalf("a new users-file phone is not offered: %+v", info)
	}
}

// deviceCounts counts revoked devices (the Metrics a test needs).
type deviceCounts struct {
	noMetrics
	revoked int
}

func (m *deviceCounts) Device(event string) {
	if event == "revoked" {
		m.revoked++
	}
}
