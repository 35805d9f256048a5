package account

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"github.com/twostep-auth/twostep/internal/notify"
	"github.com/twostep-auth/twostep/internal/store"
)

// recorder is a Sender that keeps what it was asked to send, or fails.
type recorder struct {
	mu   sync.Mutex
	msgs []notify.Message
	fail atomic.Bool
}

func (r *recorder) Name() string { return "recorder" }
func (r *recorder) Send(_ context.Context, m notify.Message) error {
	if r.fail.Load() {
		return errors.New("provider down")
	}
	r.mu.Lock()
	r.msgs = append(r.msgs, m)
	r.mu.Unlock()
	return nil
}
func (r *recorder) last(t testing.TB) notify.Message {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.msgs) == 0 {
		t.Fatal("nothing was sent")
	}
	return r.msgs[len(r.msgs)-1]
}

type tsEnv struct {
	*env
	sms, voice, mail *recorder
}

func newTSEnv(t testing.TB) *tsEnv {
	t.Helper()
	e := newEnv(t)
	te := &tsEnv{env: e, sms: &recorder{}, voice: &recorder{}, mail: &recorder{}}
	e.svc.senders = Senders{SMS: te.sms, Voice: te.voice, Email: te.mail}
	e.svc.cfg.TOTP.Skew = 1
	return te
}

func (e *tsEnv) signIn(t testing.TB, user, pw string) *Resolved {
	t.Helper()
	res, err := e.svc.SignIn(context.Background(), user, pw, ip1)
	if err != nil {
		t.Fatal(err)
	}
	r, err := e.svc.Resolve(context.Background(), res.Token)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// enrolPhone gives bob a confirmed phone (two-step on) and returns the backup codes.
func (e *tsEnv) enrolPhone(t testing.TB) []string {
	t.Helper()
	ctx := context.Background()
	res := e.signIn(t, "bob", "bob-password")
	if _, err := e.svc.SetPhone(ctx, res, "+15551234567", MethodSMS, ip1); err != nil {
		t.Fatal(err)
	}
	out, err := e.svc.ConfirmPhone(ctx, res, e.sms.last(t).Code, ip1)
	if err != nil {
		t.Fatal(err)
	}
	if !out.TurnedOn || len(out.BackupCodes) != 10 {
		t.Fatalf("confirm: %+v", out)
	}
	e.clock.add(time.Minute) // past the resend cooldown
	return out.BackupCodes
}

func TestPhoneEnrolmentAndSignIn(t *testing.T) {
	e := newTSEnv(t)
	ctx := context.Background()
	e.enrolPhone(t)
	if len(e.mail.msgs) != 0 {
		t.Fatalf("bob has no email address, yet mail was sent: %+v", e.mail.msgs)
	}

	res := e.signIn(t, "bob", "bob-password")
	if res.Session.State != store.StateSecondFactor {
		t.Fatalf("state after password: %v", res.Session.State)
	}
	sent, err := e.svc.SendCode(ctx, res, MethodSMS, ip1)
	if err != nil {
		t.Fatal(err)
	}
	if sent.SentTo != "•••• 4567" {
		t.Fatalf("sent to %q", sent.SentTo)
	}
	code := e.sms.last(t).Code
	if _, err := e.svc.VerifyCode(ctx, res, MethodSMS, "000000", false, ip1); !errors.Is(err, ErrInvalidCode) {
		t.Fatalf("wrong code: %v", err)
	}
	out, err := e.svc.VerifyCode(ctx, res, MethodSMS, code, false, ip1)
	if err != nil {
		t.Fatal(err)
	}
	if out.Session.State != store.StateTwoFactor || out.Session.ID == res.Session.ID {
		t.Fatalf("verify: %+v", out.Session)
	}
	if _, err := e.svc.Resolve(ctx, out.Token); err != nil {
		t.Fatalf("new token: %v", err)
	}
	// The half session is gone: no fixation.
	if _, err := e.st.GetSession(ctx, res.Session.ID, e.clock.now()); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("old session still stored: %v", err)
	}
	// A code is single use.
	res2 := e.signIn(t, "bob", "bob-password")
	if _, err := e.svc.VerifyCode(ctx, res2, MethodSMS, code, false, ip1); !errors.Is(err, ErrInvalidCode) {
		t.Fatalf("reused code: %v", err)
	}
}

// A code counts only for the channel it was sent on, and the challenge
// page can tell that one is on its way.
func TestCodeBoundToChannel(t *testing.T) {
	e := newTSEnv(t)
	ctx := context.Background()
	e.enrolPhone(t)
	res := e.signIn(t, "bob", "bob-password")
	if p, err := e.svc.CodePending(ctx, res, MethodVoice); err != nil || p {
		t.Fatalf("pending before any send: %v, %v", p, err)
	}
	if _, err := e.svc.SendCode(ctx, res, MethodVoice, ip1); err != nil {
		t.Fatal(err)
	}
	code := e.voice.last(t).Code
	if p, err := e.svc.CodePending(ctx, res, MethodVoice); err != nil || !p {
		t.Fatalf("voice code not pending: %v, %v", p, err)
	}
	if p, _ := e.svc.CodePending(ctx, res, MethodSMS); p {
		t.Fatal("a voice code reads as a pending text")
	}
	if _, err := e.svc.VerifyCode(ctx, res, MethodSMS, code, false, ip1); !errors.Is(err, ErrInvalidCode) {
		t.Fatalf("the call's code as a text's: %v", err)
	}
	if _, err := e.svc.VerifyCode(ctx, res, MethodVoice, code, false, ip1); err != nil {
		t.Fatalf("the call's code as the call's: %v", err)
	}
	if p, _ := e.svc.CodePending(ctx, res, MethodVoice); p {
		t.Fatal("a used code still reads as pending")
	}
}

func TestCodeTriesAndExpiry(t *testing.T) {
	e := newTSEnv(t)
	ctx := context.Background()
	e.enrolPhone(t)
	res := e.signIn(t, "bob", "bob-password")
	if _, err := e.svc.SendCode(ctx, res, MethodVoice, ip1); err != nil {
		t.Fatal(err)
	}
	code := e.voice.last(t).Code
	for i := 1; i <= 5; i++ {
		_, err := e.svc.VerifyCode(ctx, res, MethodVoice, "111111", false, ip1)
		if i < 5 && !errors.Is(err, ErrInvalidCode) {
			t.Fatalf("try %d: %v", i, err)
		}
		if i == 5 && !isTooManyTries(err) {
			t.Fatalf("fifth wrong try: %v", err)
		}
	}
	if _, err := e.svc.VerifyCode(ctx, res, MethodVoice, code, false, ip1); !errors.Is(err, ErrInvalidCode) {
		t.Fatalf("the right code after 5 wrong tries: %v", err)
	}

	e.clock.add(time.Minute)
	if _, err := e.svc.SendCode(ctx, res, MethodSMS, ip1); err != nil {
		t.Fatal(err)
	}
	code = e.sms.last(t).Code
	e.clock.add(11 * time.Minute)
	res = e.signIn(t, "bob", "bob-password")
	if _, err := e.svc.VerifyCode(ctx, res, MethodSMS, code, false, ip1); !errors.Is(err, ErrInvalidCode) {
		t.Fatalf("expired code: %v", err)
	}
}

func TestSendLimits(t *testing.T) {
	e := newTSEnv(t)
	ctx := context.Background()
	e.enrolPhone(t) // one send already this hour
	res := e.signIn(t, "bob", "bob-password")
	if _, err := e.svc.SendCode(ctx, res, MethodSMS, ip1); err != nil {
		t.Fatal(err)
	}
	var rl *RateLimitedError
	if _, err := e.svc.SendCode(ctx, res, MethodSMS, ip1); !errors.As(err, &rl) || rl.RetryAfter <= 0 || rl.RetryAfter > 30*time.Second {
		t.Fatalf("within the cooldown: %v", err)
	}
	// Another channel is not held back by the sms cooldown.
	if _, err := e.svc.SendCode(ctx, res, MethodVoice, ip1); err != nil {
		t.Fatalf("voice during the sms cooldown: %v", err)
	}
	for i := 0; i < 2; i++ {
		e.clock.add(31 * time.Second)
		if _, err := e.svc.SendCode(ctx, res, MethodSMS, ip1); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	e.clock.add(31 * time.Second)
	if _, err := e.svc.SendCode(ctx, res, MethodSMS, ip1); !errors.As(err, &rl) {
		t.Fatalf("sixth send in the hour: %v", err)
	}
}

func TestDeliveryFailureOffersAlternatives(t *testing.T) {
	e := newTSEnv(t)
	ctx := context.Background()
	e.enrolPhone(t)
	res := e.signIn(t, "bob", "bob-password")
	e.sms.fail.Store(true)
	var df *DeliveryFailedError
	if _, err := e.svc.SendCode(ctx, res, MethodSMS, ip1); !errors.As(err, &df) {
		t.Fatalf("failed delivery: %v", err)
	}
	if len(df.Alternatives) < 2 || df.Alternatives[0] != MethodVoice {
		t.Fatalf("alternatives %v", df.Alternatives)
	}
	// The cooldown was lifted: sms can be tried again at once.
	e.sms.fail.Store(false)
	if _, err := e.svc.SendCode(ctx, res, MethodSMS, ip1); err != nil {
		t.Fatalf("retry after a failure: %v", err)
	}
}

// 50 simultaneous submissions of one code: exactly one succeeds.
func TestConcurrentCodeSubmissions(t *testing.T) {
	e := newTSEnv(t)
	ctx := context.Background()
	e.enrolPhone(t)
	var sessions []*Resolved
	for i := 0; i < 50; i++ {
		sessions = append(sessions, e.signIn(t, "bob", "bob-password"))
	}
	if _, err := e.svc.SendCode(ctx, sessions[0], MethodSMS, ip1); err != nil {
		t.Fatal(err)
	}
	code := e.sms.last(t).Code
	var ok atomic.Int32
	var wg sync.WaitGroup
	for _, s := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := e.svc.VerifyCode(ctx, s, MethodSMS, code, false, ip1); err == nil {
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 1 {
		t.Fatalf("%d submissions succeeded, want exactly 1", ok.Load())
	}
}

func TestTOTP(t *testing.T) {
	e := newTSEnv(t)
	ctx := context.Background()
	res := e.signIn(t, "alice", "alice-password")
	enr, err := e.svc.EnrollTOTP(ctx, res)
	if err != nil {
		t.Fatal(err)
	}
	if len(enr.QRPNG) < 8 || string(enr.QRPNG[1:4]) != "PNG" {
		t.Fatal("no PNG")
	}
	code := func(at time.Time) string {
		c, err := totp.GenerateCode(enr.Secret, at)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if _, err := e.svc.ConfirmTOTP(ctx, res, "000000", ip1); !errors.Is(err, ErrInvalidCode) && code(e.clock.now()) != "000000" {
		t.Fatalf("wrong first code: %v", err)
	}
	out, err := e.svc.ConfirmTOTP(ctx, res, code(e.clock.now()), ip1)
	if err != nil {
		t.Fatal(err)
	}
	if !out.TurnedOn || len(out.BackupCodes) != 10 || res.Session.State != store.StateTwoFactor {
		t.Fatalf("confirm: %+v %v", out, res.Session.State)
	}
	if m := e.mail.last(t); m.To != "alice@example.com" || m.Subject != "Two-step verification is on" {
		t.Fatalf("mail %+v", m)
	}
	// The confirming step cannot be replayed at sign-in.
	half := e.signIn(t, "alice", "alice-password")
	if _, err := e.svc.VerifyCode(ctx, half, MethodTOTP, code(e.clock.now()), false, ip1); !errors.Is(err, ErrInvalidCode) {
		t.Fatalf("replayed enrolment code: %v", err)
	}
	e.clock.add(30 * time.Second)
	c := code(e.clock.now())
	if _, err := e.svc.VerifyCode(ctx, half, MethodTOTP, c, false, ip1); err != nil {
		t.Fatalf("next step: %v", err)
	}
	half2 := e.signIn(t, "alice", "alice-password")
	if _, err := e.svc.VerifyCode(ctx, half2, MethodTOTP, c, false, ip1); !errors.Is(err, ErrInvalidCode) {
		t.Fatalf("replayed code: %v", err)
	}
	// An earlier step (still within skew) is refused once a later one was used.
	if _, err := e.svc.VerifyCode(ctx, half2, MethodTOTP, code(e.clock.now().Add(-30*time.Second)), false, ip1); !errors.Is(err, ErrInvalidCode) {
		t.Fatalf("earlier step: %v", err)
	}
	// TOTP secrets are encrypted at rest.
	raw, _ := e.st.Get(ctx, recordKey("alice"), e.clock.now())
	if len(raw) == 0 || containsBytes(raw, []byte(enr.Secret)) {
		t.Fatal("the TOTP secret is stored in plaintext")
	}
}

func containsBytes(haystack, needle []byte) bool {
	for i := 0; i+len(needle) <= len(haystack); i++ {
		if string(haystack[i:i+len(needle)]) == string(needle) {
			return true
		}
	}
	return false
}

func TestBackupCodes(t *testing.T) {
	e := newTSEnv(t)
	ctx := context.Background()
	codes := e.enrolPhone(t)
	half := e.signIn(t, "bob", "bob-password")
	out, err := e.svc.VerifyCode(ctx, half, MethodBackup, codes[0], false, ip1)
	if err != nil {
		t.Fatal(err)
	}
	if out.BackupLeft != 9 {
		t.Fatalf("left %d", out.BackupLeft)
	}
	half = e.signIn(t, "bob", "bob-password")
	if _, err := e.svc.VerifyCode(ctx, half, MethodBackup, codes[0], false, ip1); !errors.Is(err, ErrInvalidCode) {
		t.Fatalf("backup code reused: %v", err)
	}
	full, err := e.svc.VerifyCode(ctx, half, MethodBackup, codes[1], false, ip1)
	if err != nil {
		t.Fatal(err)
	}
	res, _ := e.svc.Resolve(ctx, full.Token)
	if _, err := e.svc.RegenerateBackupCodes(ctx, res, "wrong", ip1); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("wrong password: %v", err)
	}
	fresh, err := e.svc.RegenerateBackupCodes(ctx, res, "bob-password", ip1)
	if err != nil || len(fresh) != 10 {
		t.Fatalf("regenerate: %v %v", fresh, err)
	}
	half = e.signIn(t, "bob", "bob-password")
	if _, err := e.svc.VerifyCode(ctx, half, MethodBackup, codes[2], false, ip1); !errors.Is(err, ErrInvalidCode) {
		t.Fatalf("old code after regeneration: %v", err)
	}
	if _, err := e.svc.VerifyCode(ctx, half, MethodBackup, fresh[0], false, ip1); err != nil {
		t.Fatalf("new code: %v", err)
	}
}

func TestTurnOff(t *testing.T) {
	e := newTSEnv(t)
	ctx := context.Background()
	codes := e.enrolPhone(t)
	half := e.signIn(t, "bob", "bob-password")
	full, err := e.svc.VerifyCode(ctx, half, MethodBackup, codes[0], false, ip1)
	if err != nil {
		t.Fatal(err)
	}
	res, _ := e.svc.Resolve(ctx, full.Token)
	if err := e.svc.SetTwoStep(ctx, res, false, "bob-password", "000000", ip1); !errors.Is(err, ErrInvalidCode) {
		t.Fatalf("wrong code: %v", err)
	}
	if err := e.svc.SetTwoStep(ctx, res, false, "wrong", codes[1], ip1); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("wrong password: %v", err)
	}
	if err := e.svc.SetTwoStep(ctx, res, false, "bob-password", codes[1], ip1); err != nil {
		t.Fatal(err)
	}
	if got := e.signIn(t, "bob", "bob-password"); got.Session.State != store.StateOneFactor {
		t.Fatalf("after turning off: %v", got.Session.State)
	}
	// On again: a confirmed method exists, so it may.
	if err := e.svc.SetTwoStep(ctx, res, true, "", "", ip1); err != nil {
		t.Fatal(err)
	}
	// Off, then on again by confirming a (new) phone: that call turned
	// two-step on, so it shows a fresh set of backup codes, and the set
	// from before stops working.
	res, _ = e.svc.Resolve(ctx, full.Token)
	if err := e.svc.SetTwoStep(ctx, res, false, "bob-password", codes[2], ip1); err != nil {
		t.Fatal(err)
	}
	e.clock.add(time.Minute)
	if _, err := e.svc.SetPhone(ctx, res, "+15557654321", MethodSMS, ip1); err != nil {
		t.Fatal(err)
	}
	again, err := e.svc.ConfirmPhone(ctx, res, e.sms.last(t).Code, ip1)
	if err != nil {
		t.Fatal(err)
	}
	if !again.TurnedOn || len(again.BackupCodes) != 10 {
		t.Fatalf("confirming a method that turned two-step back on: %+v, want 10 new backup codes", again)
	}
	half = e.signIn(t, "bob", "bob-password")
	if _, err := e.svc.VerifyCode(ctx, half, MethodBackup, codes[3], false, ip1); !errors.Is(err, ErrInvalidCode) {
		t.Fatalf("a backup code of the earlier set: %v", err)
	}
	if _, err := e.svc.VerifyCode(ctx, half, MethodBackup, again.BackupCodes[0], false, ip1); err != nil {
		t.Fatalf("a backup code of the new set: %v", err)
	}
	a := e.signIn(t, "alice", "alice-password")
	if err := e.svc.SetTwoStep(ctx, a, true, "", "", ip1); !errors.Is(err, ErrConflict) {
		t.Fatalf("on without a method: %v", err)
	}
}

// 100 consecutive wrong codes lock the account's second factor, even for
// the right code, until ban_time passes.
func TestSecondFactorLock(t *testing.T) {
	e := newTSEnv(t)
	ctx := context.Background()
	codes := e.enrolPhone(t)
	half := e.signIn(t, "bob", "bob-password")
	for i := 0; i < maxFactorFailures; i++ {
		ip := Client{IP: ip1.IP}
		if i%2 == 1 {
			ip = ip2 // spread over IPs: the account counter still locks
		}
		if _, err := e.svc.VerifyCode(ctx, half, MethodBackup, "aaaaa-aaaaa", false, ip); !errors.Is(err, ErrInvalidCode) {
			t.Fatalf("guess %d: %v", i, err)
		}
	}
	var rl *RateLimitedError
	if _, err := e.svc.VerifyCode(ctx, half, MethodBackup, codes[0], false, ip1); !errors.As(err, &rl) {
		t.Fatalf("locked account with the right code: %v", err)
	}
	e.clock.add(16 * time.Minute)
	// The half-signed-in session has expired by now: sign in again.
	if _, err := e.svc.VerifyCode(ctx, half, MethodBackup, codes[0], false, ip1); !errors.Is(err, ErrNoSession) {
		t.Fatalf("an expired half-signed-in session: %v, want ErrNoSession", err)
	}
	half = e.signIn(t, "bob", "bob-password")
	if _, err := e.svc.VerifyCode(ctx, half, MethodBackup, codes[1], false, ip1); err != nil {
		t.Fatalf("after ban_time: %v", err)
	}
}

func TestTwoStepRequired(t *testing.T) {
	e := newTSEnv(t)
	e.svc.cfg.TwoStepRequired = true
	ctx := context.Background()
	res := e.signIn(t, "alice", "alice-password")
	if res.Session.State != store.StateEnrollment {
		t.Fatalf("state %v", res.Session.State)
	}
	if _, err := e.svc.SendCode(ctx, res, MethodSMS, ip1); !errors.Is(err, ErrForbidden) {
		t.Fatalf("code/send while enrolling: %v", err)
	}
	if _, err := e.svc.SetPhone(ctx, res, "+15557654321", MethodVoice, ip1); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.ConfirmPhone(ctx, res, e.voice.last(t).Code, ip1); err != nil {
		t.Fatal(err)
	}
	if res.Session.State != store.StateTwoFactor {
		t.Fatalf("after enrolment: %v", res.Session.State)
	}
	if err := e.svc.SetTwoStep(ctx, res, false, "alice-password", "x", ip1); !errors.Is(err, ErrForbidden) {
		t.Fatalf("turning off under two_step required: %v", err)
	}
}

func TestSealBindsOwner(t *testing.T) {
	s, err := newSealer([]byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	ct, _ := s.seal([]byte("JBSWY3DPEHPK3PXP"), "totp:alice")
	if _, err := s.open(ct, "totp:bob"); err == nil {
		t.Fatal("alice's secret opened as bob's")
	}
	ct[len(ct)-1] ^= 1
	if _, err := s.open(ct, "totp:alice"); err == nil {
		t.Fatal("tampered value opened")
	}
}

// One account behind a shared address (an office's NAT) cannot lock the
// second factor of everyone else behind it: however often it fails, even
// with successes in between that clear its own counter, it adds at most
// maxFactorFailuresPerUserIP to the address's counter. Failures spread
// over enough accounts from one address still lock the address.
func TestFactorLockPerIPNeedsManyAccounts(t *testing.T) {
	e := newTSEnv(t)
	ctx := context.Background()
	for i := range 3 * maxFactorFailures {
		if i%50 == 49 {
			// A passed second factor clears the account's own counter.
			if err := e.st.Delete(ctx, "fail:2fa:u:mallory"); err != nil {
				t.Fatal(err)
			}
		}
		if err := e.svc.factorFailed(ctx, "mallory", ip1); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.svc.factorLocked(ctx, "bob", ip1); err != nil {
		t.Fatalf("one account's failures locked another account at the same address: %v", err)
	}
	accounts := maxFactorFailures / maxFactorFailuresPerUserIP
	for a := range accounts {
		for range maxFactorFailuresPerUserIP {
			if err := e.svc.factorFailed(ctx, fmt.Sprintf("guess-%d", a), ip2); err != nil {
				t.Fatal(err)
			}
		}
	}
	var rl *RateLimitedError
	if err := e.svc.factorLocked(ctx, "bob", ip2); !errors.As(err, &rl) {
		t.Fatalf("%d failures over %d accounts from one address: %v, want it locked", maxFactorFailures, accounts, err)
	}
	if err := e.svc.factorLocked(ctx, "bob", ip1); err != nil {
		t.Fatalf("another address was locked too: %v", err)
	}
}

// Turning two-step on, or adding or replacing a method, ends the user's
// other sessions: a user who does it because the password leaked locks
// out the session made with it (REQ-17, REQ-62). The session that made
// the change goes on.
func TestSecuringTheAccountEndsOtherSessions(t *testing.T) {
	e := newTSEnv(t)
	ctx := context.Background()
	a := e.signIn(t, "bob", "bob-password")
	other, err := e.svc.SignIn(ctx, "bob", "bob-password", ip2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.SetPhone(ctx, a, "+15551234567", MethodSMS, ip1); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.ConfirmPhone(ctx, a, e.sms.last(t).Code, ip1); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Resolve(ctx, other.Token); !errors.Is(err, ErrNoSession) {
		t.Fatalf("the other session after two-step was turned on: %v, want it ended", err)
	}
	if _, err := e.st.GetSession(ctx, a.Session.ID, e.clock.now()); err != nil {
		t.Fatalf("the session that turned it on: %v", err)
	}
	// Replacing the authenticator (a method added while two-step is on)
	// ends a second-factor session made elsewhere too.
	e.clock.add(time.Minute)
	half := e.signIn(t, "bob", "bob-password")
	if _, err := e.svc.SendCode(ctx, half, MethodSMS, ip2); err != nil {
		t.Fatal(err)
	}
	full, err := e.svc.VerifyCode(ctx, half, MethodSMS, e.sms.last(t).Code, false, ip2)
	if err != nil {
		t.Fatal(err)
	}
	enr, err := e.svc.EnrollTOTP(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	code, err := totp.GenerateCode(enr.Secret, e.clock.now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.ConfirmTOTP(ctx, a, code, ip1); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Resolve(ctx, full.Token); !errors.Is(err, ErrNoSession) {
		t.Fatalf("another two-factor session after a new authenticator: %v, want it ended", err)
	}
}

// A form submitted twice: the second submission of the code that the
// first one used is told the session just passed, and is not counted as
// a failure.
func TestVerifyTwiceIsNotAFailure(t *testing.T) {
	e := newTSEnv(t)
	ctx := context.Background()
	e.enrolPhone(t)
	half := e.signIn(t, "bob", "bob-password")
	if _, err := e.svc.SendCode(ctx, half, MethodSMS, ip1); err != nil {
		t.Fatal(err)
	}
	code := e.sms.last(t).Code
	if _, err := e.svc.VerifyCode(ctx, half, MethodSMS, code, false, ip1); err != nil {
		t.Fatal(err)
	}
	_, err := e.svc.VerifyCode(ctx, half, MethodSMS, code, false, ip1)
	if !errors.Is(err, ErrAlreadyVerified) || !errors.Is(err, ErrInvalidCode) {
		t.Fatalf("the second submission: %v, want ErrAlreadyVerified", err)
	}
	if n, _ := e.st.Get(ctx, "fail:2fa:u:bob", e.clock.now()); n != nil {
		t.Fatalf("the second submission counted as a failure: %q", n)
	}
	// Another session with that code is a plain failure.
	other := e.signIn(t, "bob", "bob-password")
	if _, err := e.svc.VerifyCode(ctx, other, MethodSMS, code, false, ip1); !errors.Is(err, ErrInvalidCode) || errors.Is(err, ErrAlreadyVerified) {
		t.Fatalf("the used code from another session: %v, want a plain ErrInvalidCode", err)
	}
}

// A sign-in that would go on without a second factor first asks whether
// the store is intact: a store that lost its records reads as "two-step
// off" for everyone. Users with a method in the store are not asked.
func TestSignInAsksStoreIntact(t *testing.T) {
	e := newTSEnv(t)
	ctx := context.Background()
	e.enrolPhone(t) // bob: two-step on
	var asked int
	lost := errors.New("the store was emptied")
	e.svc.cfg.StoreIntact = func(context.Context) error { asked++; return lost }

	_, err := e.svc.SignIn(ctx, "alice", "alice-password", ip1)
	var ue *UnavailableError
	if !errors.As(err, &ue) || !errors.Is(err, lost) || asked != 1 {
		t.Fatalf("alice (two-step off) on a store in doubt: %v (asked %d)", err, asked)
	}
	res, err := e.svc.SignIn(ctx, "bob", "bob-password", ip1)
	if err != nil || res.Session.State != store.StateSecondFactor || asked != 1 {
		t.Fatalf("bob (two-step on): %v %+v (asked %d)", err, res, asked)
	}
	e.svc.cfg.TwoStepRequired = true // enrolment on the password alone is refused too
	if _, err := e.svc.SignIn(ctx, "alice", "alice-password", ip1); !errors.Is(err, lost) || asked != 2 {
		t.Fatalf("alice under two_step required: %v (asked %d)", err, asked)
	}
	e.svc.cfg.TwoStepRequired = false
	e.svc.cfg.StoreIntact = func(context.Context) error { asked++; return nil }
	if res, err := e.svc.SignIn(ctx, "alice", "alice-password", ip1); err != nil || res.Session.State != store.StateOneFactor {
		t.Fatalf("alice on an intact store: %v", err)
	}
}
