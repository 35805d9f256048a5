package account

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/twostep-auth/twostep/internal/store"
)

// Attack: someone who has bob's password and a code trusts two browsers
// at the same moment (two requests, or two nodes). Each trustDevice reads
// bob's device list, appends its own device and writes the list back: the
// last write wins and one device drops out of the list. That device still
// skips the code, but bob never sees it under "trusted browsers" and
// cannot revoke it (DELETE devices/{id} answers 404): it lives on until he
// happens to sign out everywhere or change his password.
//
// Whatever skips the code must be listed, and revoking every listed device
// must leave nothing that skips the code.
func TestReviewConcurrentTrustedDevicesAllListed(t *testing.T) {
	e, hs := hookedTSEnv(t)
	ctx := context.Background()
	e.enrolPhone(t)
	u, _ := e.dir.DB().Lookup("bob")
	c := ip1
	c.UserAgent = "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0"

	var second string
	done := make(chan struct{})
	hs.afterRead(deviceListKey("bob"), func() {
		// The first trust has read the list: the second one runs now.
		go func() {
			defer close(done)
			tok, _, err := e.svc.trustDevice(ctx, u, "", c, "")
			if err != nil {
				t.Error(err)
			}
			second = tok
		}()
		select {
		case <-done:
		case <-time.After(300 * time.Millisecond):
			// Held back until the first one is done (a lock): fine.
		}
	})
	first, _, err := e.svc.trustDevice(ctx, u, "", c, "")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, done, "the second trust")
	if first == "" || second == "" {
		t.Fatal("a trust returned no cookie")
	}

	skips := func(tok string) bool {
		cc := c
		cc.Device = tok
		res, err := e.svc.SignIn(ctx, "bob", "bob-password", cc)
		if err != nil {
			t.Fatal(err)
		}
		return res.Session.State == store.StateTwoFactor
	}
	working := 0
	for _, tok := range []string{first, second} {
		if skips(tok) {
			working++
		}
	}
	list, err := e.svc.UserDevices(ctx, "bob")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) < working {
		t.Errorf("%d device cookies skip the code, but bob's list shows %d: a hidden trusted device", working, len(list))
	}
	for _, d := range list {
		if err := e.svc.RevokeDevice(ctx, "bob", d.ID, ip1); err != nil {
			t.Fatal(err)
		}
	}
	for i, tok := range []string{first, second} {
		if skips(tok) {
			t.Errorf("device %d still skips the code after bob revoked every device he is shown", i+1)
		}
	}
}

// Attack: a browser signed in through a trusted device (a stolen device
// cookie plus the password) keeps its session after the owner revokes the
// device. The session drops back to "second factor pending" as it should,
// but it keeps the full session lifetime (12 h) instead of the short one
// of a half-signed-in session: a pending session that outlives the bound
// SignIn gives every other pending session.
func TestReviewRevokedDeviceSessionIsShortLived(t *testing.T) {
	e := newTSEnv(t)
	ctx := context.Background()
	_, c := trustedBob(t, e)
	res, err := e.svc.SignIn(ctx, "bob", "bob-password", c)
	if err != nil || res.Session.State != store.StateTwoFactor {
		t.Fatalf("sign-in with the device: %v %v", res, err)
	}
	list, err := e.svc.UserDevices(ctx, "bob")
	if err != nil || len(list) != 1 {
		t.Fatalf("devices %+v %v", list, err)
	}
	// Keep the session in use for a few hours (idle is 30 min).
	for range 8 {
		e.clock.add(29 * time.Minute)
		if _, err := e.svc.Resolve(ctx, res.Token); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.svc.RevokeDevice(ctx, "bob", list[0].ID, ip1); err != nil {
		t.Fatal(err)
	}
	r, err := e.svc.Resolve(ctx, res.Token)
	if err != nil || r.Session.State != store.StateSecondFactor {
		t.Fatalf("after the revocation: %v %v, want second_factor", r, err)
	}
	if limit := e.clock.now().Add(e.svc.cfg.PendingLifetime); r.Session.ExpiresAt().After(limit) {
		t.Errorf("the downgraded session expires at %v, later than a pending session may live (%v)", r.Session.ExpiresAt(), limit)
	}
	for range 3 {
		e.clock.add(10 * time.Minute)
		_, err = e.svc.Resolve(ctx, res.Token)
	}
	if !errors.Is(err, ErrNoSession) {
		t.Errorf("30 minutes after its device was revoked the half-signed-in session still resolves: %v", err)
	}
}

// A device record that its user's list does not name (a list written by a
// request that raced another, or restored from an old copy) must not skip
// the code: the user cannot see or revoke it.
func TestReviewUnlistedDeviceDoesNotSkipCode(t *testing.T) {
	e := newTSEnv(t)
	ctx := context.Background()
	_, c := trustedBob(t, e)
	if err := e.svc.saveDeviceList(ctx, "bob", nil); err != nil {
		t.Fatal(err)
	}
	res, err := e.svc.SignIn(ctx, "bob", "bob-password", c)
	if err != nil {
		t.Fatal(err)
	}
	if res.Session.State != store.StateTwoFactor {
		return
	}
	t.Errorf("a device missing from bob's list (not shown, not revocable) skipped the code")
}

// Attack: with bob's password and codes (or his backup codes), trust
// browser after browser. The list has no bound: every new trust reads
// every record (pruneDevices), the settings page and every revocation go
// through all of them, and bob is shown a list no one reads. Past
// maxTrustedDevices the oldest device gives way.
func TestReviewTrustedDevicesBounded(t *testing.T) {
	e := newTSEnv(t)
	ctx := context.Background()
	e.enrolPhone(t)
	u, _ := e.dir.DB().Lookup("bob")
	var first string
	for i := range maxTrustedDevices + 5 {
		e.clock.add(time.Second)
		tok, _, err := e.svc.trustDevice(ctx, u, "", ip1, "")
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = tok
		}
	}
	list, err := e.svc.deviceList(ctx, "bob")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) > maxTrustedDevices {
		t.Fatalf("bob has %d trusted devices listed, want at most %d", len(list), maxTrustedDevices)
	}
	shown, err := e.svc.UserDevices(ctx, "bob")
	if err != nil || len(shown) != len(list) {
		t.Fatalf("shown %d devices (%v), listed %d", len(shown), err, len(list))
	}
	c := ip1
	c.Device = first
	res, err := e.svc.SignIn(ctx, "bob", "bob-password", c)
	if err != nil {
		t.Fatal(err)
	}
	if res.Session.State == store.StateTwoFactor {
		t.Error("the oldest device, dropped from the list, still skips the code")
	}
}

// Attack: someone with bob's password and a code ticks "trust this
// browser". Between the code being accepted (the session swapped in) and
// the device being stored, bob clicks "sign out everywhere" (another
// request, maybe another node): the devices are revoked and the sessions
// deleted, and only then is the new device written, with the new epoch. It
// survives the sign-out-everywhere meant to lock the attacker out, and
// with the password it skips the code from then on.
func TestReviewDeviceTrustedRacingRevokeAllDies(t *testing.T) {
	e, hs := hookedTSEnv(t)
	ctx := context.Background()
	out := e.smsBob(t, false, ip1)
	full, err := e.svc.Resolve(ctx, out.Token)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := e.dir.DB().Lookup("bob")
	ran := false
	hs.beforeWrite(deviceLockKey("bob"), func() {
		ran = true
		if err := e.svc.RevokeAll(ctx, "bob", ip2); err != nil {
			t.Error(err)
		}
	})
	tok, _, err := e.svc.trustDevice(ctx, u, full.Session.ID, ip1, "")
	if !ran {
		t.Fatal("the hook did not run: the test no longer races the revocation")
	}
	if err == nil && tok != "" {
		c := ip1
		c.Device = tok
		res, err := e.svc.SignIn(ctx, "bob", "bob-password", c)
		if err != nil {
			t.Fatal(err)
		}
		if res.Session.State == store.StateTwoFactor {
			t.Fatal("a device trusted by a session that sign-out-everywhere ended skips the code")
		}
	} else if !errors.Is(err, ErrNoSession) {
		t.Fatalf("trusting for an ended session: %v, want ErrNoSession", err)
	}
	if list, err := e.svc.UserDevices(ctx, "bob"); err != nil || len(list) != 0 {
		t.Fatalf("devices left after sign-out-everywhere: %+v %v", list, err)
	}
}

// Password spraying from one address: many sign-ins for different users
// run at once (each user's gate is its own), all pass the address's ban
// check before any failure is counted, and the ban that the failures then
// set came too late for the ones still hashing: a right guess among them
// signed in. The address's ban is looked at again after the hash, as the
// user's is.
func TestReviewAddressBanSetDuringTheHashRefusesTheSignIn(t *testing.T) {
	e, hs := hookedTSEnv(t)
	st := hs.Store
	ctx := context.Background()
	banKey := "ban:reg:ip:" + ip1.network()
	hs.afterRead(banKey, func() {
		// The other guesses from this address failed meanwhile and banned it.
		until := e.clock.now().Add(15 * time.Minute)
		if err := st.Put(ctx, banKey, []byte(strconv.FormatInt(until.UnixNano(), 10)), 15*time.Minute, e.clock.now()); err != nil {
			t.Error(err)
		}
	})
	res, err := e.svc.SignIn(ctx, "bob", "bob-password", ip1)
	var rl *RateLimitedError
	if !errors.As(err, &rl) {
		t.Fatalf("sign-in whose address was banned while its hash ran: %+v, %v; want the ban (429)", res, err)
	}
}

// A method change ends every trusted browser (SPEC §4); a browser trusted
// by another session in the moment between that revocation and the end of
// the other sessions survived it (RevokeAll and reset-2sv run a second
// pass; adding a method did not).
func TestReviewDeviceTrustedRacingMethodChangeDies(t *testing.T) {
	e, hs := hookedTSEnv(t)
	ctx := context.Background()
	attacker, _ := fullBob(t, e)
	owner, _ := fullBobAgain(t, e)
	u, _ := e.dir.DB().Lookup("bob")
	var tok string
	// Once the phone's confirmation revoked the devices, before it ends
	// the other sessions: the attacker's session trusts its browser.
	hs.beforeList("bob", func() {
		var err error
		if tok, _, err = e.svc.trustDevice(ctx, u, attacker.Session.ID, ip2, ""); err != nil {
			t.Errorf("trust: %v", err)
		}
	})
	if _, err := e.svc.SetPhone(ctx, owner, "+15550009999", MethodVoice, ip1); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.ConfirmPhone(ctx, owner, e.voice.last(t).Code, ip1); err != nil {
		t.Fatal(err)
	}
	c := ip2
	c.Device = tok
	res, err := e.svc.SignIn(ctx, "bob", "bob-password", c)
	if err != nil {
		t.Fatal(err)
	}
	if res.Session.State == store.StateTwoFactor {
		t.Fatal("a browser trusted while bob changed his phone still skips the code")
	}
}

// Trusting the browser comes after the code was used and the session
// swapped: when it cannot be done (the device list stays locked, here by
// a holder that died), the user is signed in without it, not signed out
// with neither.
func TestReviewVerifyCodeSignsInWhenTrustFails(t *testing.T) {
	e := newTSEnv(t)
	ctx := context.Background()
	e.enrolPhone(t)
	half := e.signIn(t, "bob", "bob-password")
	if _, err := e.svc.SendCode(ctx, half, MethodSMS, ip1); err != nil {
		t.Fatal(err)
	}
	if err := e.st.Put(ctx, deviceLockKey("bob"), []byte("someone else"), time.Hour, e.clock.now()); err != nil {
		t.Fatal(err)
	}
	out, err := e.svc.VerifyCode(ctx, half, MethodSMS, e.sms.last(t).Code, true, ip1)
	if err != nil {
		t.Fatalf("a code whose browser could not be trusted: %v, want signed in", err)
	}
	if out.DeviceToken != "" || out.Device != nil {
		t.Fatalf("a device was trusted under another holder's lock: %+v", out.Device)
	}
	if res, err := e.svc.Resolve(ctx, out.Token); err != nil || res.Session.State != store.StateTwoFactor {
		t.Fatalf("the session after a code whose browser could not be trusted: %+v, %v; want two_factor", res, err)
	}
}
