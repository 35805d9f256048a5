package account

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"github.com/twostep-auth/twostep/internal/notify"
	"github.com/twostep-auth/twostep/internal/store"
	"github.com/twostep-auth/twostep/internal/store/bolt"
	"github.com/twostep-auth/twostep/policy"
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
	// Five wrong tries are each invalid_code; then the code is dead: any
	// try, the right code included, is "too many code tries" (429).
	for i := 1; i <= 5; i++ {
		if _, err := e.svc.VerifyCode(ctx, res, MethodVoice, "111111", false, ip1); !errors.Is(err, ErrInvalidCode) {
			t.Fatalf("wrong try %d: %v, want ErrInvalidCode", i, err)
		}
	}
	for _, try := range []string{code, "111111"} {
		if _, err := e.svc.VerifyCode(ctx, res, MethodVoice, try, false, ip1); !isTooManyTries(err) {
			t.Fatalf("a try after 5 wrong ones: %v, want too many tries", err)
		}
	}
	if p, _ := e.svc.CodePending(ctx, res, MethodVoice); p {
		t.Fatal("a code dead of wrong tries reads as pending")
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
	// Signed in now: the session lasts a session lifetime, not the
	// enrolment's pending one (it signed the user out after 15 minutes).
	if want := res.Session.Created.Add(e.svc.cfg.SessionLifetime); !res.Session.Expires.Equal(want) {
		t.Fatalf("after enrolment the session expires at %v, want %v (created + lifetime)", res.Session.Expires, want)
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

// Two nodes over one store: a password sign-in on node A reads "two-step
// off", then bob turns it on at node B (which ends the sessions it can
// see), then node A stores its session. That session must not stay a
// password-only one: the per-user gate is per process and cannot order
// the two.
func TestSignInRacingTurnOnOnAnotherNode(t *testing.T) {
	ctx := context.Background()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "t.db"), bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	hs := &hookStore{Store: st}
	nodeA := newEnvWith(t, hs)
	nodeB := &tsEnv{env: newEnvWith(t, st), sms: &recorder{}, voice: &recorder{}, mail: &recorder{}}
	nodeB.svc.senders = Senders{SMS: nodeB.sms, Voice: nodeB.voice, Email: nodeB.mail}
	b := nodeB.signIn(t, "bob", "bob-password")
	if _, err := nodeB.svc.SetPhone(ctx, b, "+15551234567", MethodSMS, ip1); err != nil {
		t.Fatal(err)
	}
	code := nodeB.sms.last(t).Code
	turnedOn := false
	hs.afterRead(recordKey("bob"), func() {
		out, err := nodeB.svc.ConfirmPhone(ctx, b, code, ip1)
		if err != nil {
			t.Error(err)
			return
		}
		turnedOn = out.TurnedOn
	})
	res, err := nodeA.svc.SignIn(ctx, "bob", "bob-password", ip2)
	if err != nil {
		t.Fatal(err)
	}
	if !turnedOn {
		t.Fatal("two-step was not turned on during the sign-in: the test no longer races it")
	}
	if res.Session.State != store.StateSecondFactor {
		t.Fatalf("sign-in racing two-step being turned on: %v, want second_factor (a code asked for)", res.Session.State)
	}
	r, err := nodeA.svc.Resolve(ctx, res.Token)
	if err != nil {
		t.Fatal(err)
	}
	if r.Session.State != store.StateSecondFactor {
		t.Fatalf("the stored session is %v, want second_factor", r.Session.State)
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

func totpCode(t *testing.T, secret string, at time.Time) string {
	t.Helper()
	c, err := totp.GenerateCode(secret, at)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// smsBob enrols bob's phone, signs him in with his password and an sms
// code sent and given from c (trusting the browser when trust is set).
func (e *tsEnv) smsBob(t testing.TB, trust bool, c Client) *VerifyResult {
	t.Helper()
	ctx := context.Background()
	e.enrolPhone(t)
	half := e.signIn(t, "bob", "bob-password")
	if _, err := e.svc.SendCode(ctx, half, MethodSMS, ip1); err != nil {
		t.Fatal(err)
	}
	out, err := e.svc.VerifyCode(ctx, half, MethodSMS, e.sms.last(t).Code, trust, c)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// fullBob enrols bob's phone and returns a two_factor session made with
// an sms code, and its token.
func fullBob(t *testing.T, e *tsEnv) (*Resolved, string) {
	t.Helper()
	out := e.smsBob(t, false, ip1)
	res, err := e.svc.Resolve(context.Background(), out.Token)
	if err != nil {
		t.Fatal(err)
	}
	return res, out.Token
}

// stepUp gives bob's session an sms code again and returns it under its
// new token.
func (e *tsEnv) stepUp(t *testing.T, res *Resolved) *Resolved {
	t.Helper()
	ctx := context.Background()
	if _, err := e.svc.SendCode(ctx, res, MethodSMS, ip1); err != nil {
		t.Fatal(err)
	}
	out, err := e.svc.VerifyCode(ctx, res, MethodSMS, e.sms.last(t).Code, false, ip1)
	if err != nil {
		t.Fatal(err)
	}
	next, err := e.svc.Resolve(ctx, out.Token)
	if err != nil {
		t.Fatal(err)
	}
	return next
}

// A session whose second factor is older than StepUpWindow (a stolen
// cookie, a browser left open) cannot bind a new authenticator while
// two-step is on, nor make backup codes: it would pass a max_age rule
// with a factor of its own and replace the user's (REQ-26, REQ-47). It
// gives a code again first; the confirmation checks again.
func TestMethodChangeNeedsFreshFactor(t *testing.T) {
	e := newTSEnv(t)
	ctx := context.Background()
	_, tok := fullBob(t, e)
	rule := &policy.Rule{Level: policy.TwoFactor, MaxAge: 15 * time.Minute}

	e.clock.add(20 * time.Minute)
	res, err := e.svc.Resolve(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.EnrollTOTP(ctx, res); !errors.Is(err, ErrStepUp) || !errors.Is(err, ErrForbidden) {
		t.Fatalf("totp/enroll from a stale session: %v, want ErrStepUp", err)
	}
	if _, err := e.svc.SetPhone(ctx, res, "+15559990000", MethodSMS, ip2); !errors.Is(err, ErrStepUp) {
		t.Fatalf("phone from a stale session: %v, want ErrStepUp", err)
	}
	if _, err := e.svc.RegenerateBackupCodes(ctx, res, "bob-password", ip2); !errors.Is(err, ErrStepUp) {
		t.Fatalf("backup codes from a stale session: %v, want ErrStepUp", err)
	}
	sub := res.Subject()
	if got := policy.Decide(rule, &sub, e.clock.now()); got != policy.SecondFactor {
		t.Fatalf("the stale session on a max_age route: %v, want SecondFactor", got)
	}

	// A code again: the change may go ahead, within the window; an
	// enrolment begun near its end may be confirmed a little after it (the
	// user scanning the QR code is not sent back).
	res = e.stepUp(t, res)
	e.clock.add(StepUpWindow - time.Minute)
	enr, err := e.svc.EnrollTOTP(ctx, res)
	if err != nil {
		t.Fatal(err)
	}
	e.clock.add(5 * time.Minute)
	late, err := e.svc.ConfirmTOTP(ctx, res, totpCode(t, enr.Secret, e.clock.now()), ip1)
	if err != nil {
		t.Fatalf("totp/confirm of an enrolment begun within the window: %v", err)
	}
	if res, err = e.svc.Resolve(ctx, late.Token); err != nil {
		t.Fatal(err)
	}
	e.clock.add(time.Minute) // the next code is another TOTP step

	res = e.stepUp(t, res)
	at := res.Session.SecondFactorAt
	enr, err = e.svc.EnrollTOTP(ctx, res)
	if err != nil {
		t.Fatal(err)
	}
	e.clock.add(2 * time.Minute)
	out, err := e.svc.ConfirmTOTP(ctx, res, totpCode(t, enr.Secret, e.clock.now()), ip1)
	if err != nil {
		t.Fatal(err)
	}
	if out.TurnedOn || len(out.BackupCodes) != 0 {
		t.Fatalf("a method added with two-step on: %+v", out)
	}
	// Adding a method is not giving the second factor: the session keeps
	// the time of the code it gave.
	if !res.Session.SecondFactorAt.Equal(at) || res.Session.State != store.StateTwoFactor {
		t.Fatalf("after the confirmation: %v at %v, want two_factor at %v", res.Session.State, res.Session.SecondFactorAt, at)
	}
}

// no_trusted_device: a session that a trusted browser raised cannot add a
// method (which would clear its device and stamp a fresh factor), so it
// cannot pass such a rule without the user's code.
func TestTrustedBrowserCannotAddMethod(t *testing.T) {
	e := newTSEnv(t)
	ctx := context.Background()
	_, c := trustedBob(t, e)
	e.clock.add(time.Minute)
	si, err := e.svc.SignIn(ctx, "bob", "bob-password", c)
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.svc.Resolve(ctx, si.Token)
	if err != nil {
		t.Fatal(err)
	}
	rule := &policy.Rule{Level: policy.TwoFactor, NoTrustedDevice: true}
	sub := res.Subject()
	if got := policy.Decide(rule, &sub, e.clock.now()); got != policy.SecondFactor {
		t.Fatalf("precondition: device session on a no_trusted_device route: %v", got)
	}
	if _, err := e.svc.EnrollTOTP(ctx, res); !errors.Is(err, ErrStepUp) {
		t.Fatalf("totp/enroll from a trusted browser's session: %v, want ErrStepUp", err)
	}
	if _, err := e.svc.SetPhone(ctx, res, "+15559990000", MethodVoice, c); !errors.Is(err, ErrStepUp) {
		t.Fatalf("phone from a trusted browser's session: %v, want ErrStepUp", err)
	}
	if _, err := e.svc.ConfirmTOTP(ctx, res, "123456", c); !errors.Is(err, ErrStepUp) {
		t.Fatalf("totp/confirm from a trusted browser's session: %v, want ErrStepUp", err)
	}
}

// Changing the phone binds a new authenticator (REQ-26): a session cookie
// alone, hours after its factor, does not move the account's sms/voice
// factor to another number.
func TestStaleSessionCannotMovePhone(t *testing.T) {
	e := newTSEnv(t)
	ctx := context.Background()
	res, tok := fullBob(t, e)
	for range 8 { // four hours, kept alive by requests
		e.clock.add(29 * time.Minute)
		var err error
		if res, err = e.svc.Resolve(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.svc.SetPhone(ctx, res, "+15559990000", MethodSMS, ip2); !errors.Is(err, ErrStepUp) {
		t.Fatalf("phone from a four-hour-old session: %v, want ErrStepUp", err)
	}
	if _, err := e.svc.ConfirmPhone(ctx, res, "123456", ip2); !errors.Is(err, ErrStepUp) {
		t.Fatalf("phone/confirm from a four-hour-old session: %v, want ErrStepUp", err)
	}
	u, _ := e.dir.DB().Lookup("bob")
	if info, err := e.svc.TwoStep(ctx, u); err != nil || info.PhoneMasked != "•••• 4567" {
		t.Fatalf("bob's phone: %+v, %v", info, err)
	}
}

// SPEC §4, NIST 63B §5.2.2: the lock counts consecutive failures, not
// failures per ban_time: 99 wrong codes per ban_time do not go on for
// ever.
func TestFactorLockCountsConsecutiveFailures(t *testing.T) {
	e := newTSEnv(t)
	ctx := context.Background()
	e.enrolPhone(t)
	half := e.signIn(t, "bob", "bob-password")
	for i := 0; i < maxFactorFailures-1; i++ {
		if _, err := e.svc.VerifyCode(ctx, half, MethodBackup, "aaaaa-aaaaa", false, ip1); !errors.Is(err, ErrInvalidCode) {
			t.Fatalf("guess %d: %v", i, err)
		}
	}
	e.clock.add(e.svc.cfg.Regulation.BanTime + time.Second)
	half = e.signIn(t, "bob", "bob-password")
	if _, err := e.svc.VerifyCode(ctx, half, MethodBackup, "aaaaa-aaaaa", false, ip1); !errors.Is(err, ErrInvalidCode) {
		t.Fatalf("the 100th guess, after ban_time: %v", err)
	}
	var rl *RateLimitedError
	if _, err := e.svc.VerifyCode(ctx, half, MethodBackup, "aaaaa-aaaaa", false, ip1); !errors.As(err, &rl) {
		t.Fatalf("after 100 consecutive failures over two ban_times: %v, want locked", err)
	}
}

// Once locked, the second factor stays locked until a success: each
// failure after a ban ends bans again. The user is told once per lock. A
// passed factor clears the count.
func TestFactorLockHoldsUntilSuccess(t *testing.T) {
	e := newTSEnv(t)
	ctx := context.Background()
	a := e.signIn(t, "alice", "alice-password")
	if _, err := e.svc.SetPhone(ctx, a, "+15557654321", MethodSMS, ip1); err != nil {
		t.Fatal(err)
	}
	on, err := e.svc.ConfirmPhone(ctx, a, e.sms.last(t).Code, ip1)
	if err != nil {
		t.Fatal(err)
	}
	locks := func() int {
		e.mail.mu.Lock()
		defer e.mail.mu.Unlock()
		n := 0
		for _, m := range e.mail.msgs {
			if m.Subject == "Sign-in codes locked" && m.To == "alice@example.com" {
				n++
			}
		}
		return n
	}
	fail := func(times int) {
		t.Helper()
		for i := 0; i < times; i++ {
			if err := e.svc.factorFailed(ctx, "alice", Client{IP: ip2.IP}); err != nil {
				t.Fatal(err)
			}
		}
	}
	var rl *RateLimitedError
	fail(maxFactorFailures - 1)
	if err := e.svc.factorLocked(ctx, "alice", ip1); err != nil || locks() != 0 {
		t.Fatalf("after %d failures: %v, %d lock emails", maxFactorFailures-1, err, locks())
	}
	fail(1)
	if err := e.svc.factorLocked(ctx, "alice", ip1); !errors.As(err, &rl) || locks() != 1 {
		t.Fatalf("after %d failures: %v, %d lock emails, want locked and one", maxFactorFailures, err, locks())
	}
	for range 3 {
		e.clock.add(e.svc.cfg.Regulation.BanTime + time.Second)
		if err := e.svc.factorLocked(ctx, "alice", ip1); err != nil {
			t.Fatalf("after ban_time: %v, want one more try", err)
		}
		half := e.signIn(t, "alice", "alice-password")
		if _, err := e.svc.VerifyCode(ctx, half, MethodBackup, "aaaaa-aaaaa", false, ip1); !errors.Is(err, ErrInvalidCode) {
			t.Fatalf("the try after ban_time: %v", err)
		}
		if err := e.svc.factorLocked(ctx, "alice", ip1); !errors.As(err, &rl) {
			t.Fatalf("a failure after the ban ended: %v, want locked again", err)
		}
	}
	if locks() != 1 {
		t.Fatalf("%d lock emails for one lock, want 1", locks())
	}
	// The right code after ban_time clears the count.
	e.clock.add(e.svc.cfg.Regulation.BanTime + time.Second)
	half := e.signIn(t, "alice", "alice-password")
	if _, err := e.svc.VerifyCode(ctx, half, MethodBackup, on.BackupCodes[0], false, ip1); err != nil {
		t.Fatal(err)
	}
	fail(maxFactorFailures - 1)
	if err := e.svc.factorLocked(ctx, "alice", ip1); err != nil {
		t.Fatalf("failures after a success: %v, want a new count", err)
	}
	fail(1)
	if err := e.svc.factorLocked(ctx, "alice", ip1); !errors.As(err, &rl) || locks() != 2 {
		t.Fatalf("a second lock: %v, %d lock emails, want locked and two", err, locks())
	}
}

// The operator's reset-2sv clears the second-factor lock for good.
func TestResetTwoStepClearsFactorLock(t *testing.T) {
	e := newTSEnv(t)
	ctx := context.Background()
	e.enrolPhone(t)
	for i := 0; i < maxFactorFailures; i++ {
		if err := e.svc.factorFailed(ctx, "bob", Client{IP: ip2.IP}); err != nil {
			t.Fatal(err)
		}
	}
	var rl *RateLimitedError
	if err := e.svc.factorLocked(ctx, "bob", ip1); !errors.As(err, &rl) {
		t.Fatalf("precondition: %v, want locked", err)
	}
	if err := e.svc.ResetTwoStep(ctx, "bob", "test"); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.factorLocked(ctx, "bob", ip1); err != nil {
		t.Fatalf("after reset-2sv: %v", err)
	}
	if err := e.svc.factorFailed(ctx, "bob", ip1); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.factorLocked(ctx, "bob", ip1); err != nil {
		t.Fatalf("one failure after reset-2sv: %v, want a new count", err)
	}
}

// What a session is setting up (an authenticator's secret, a new phone's
// code) is its own: another session of the user (one made with a leaked
// password) can neither read it nor put its own in its place.
func TestEnrolmentIsPerSession(t *testing.T) {
	ctx := context.Background()
	t.Run("authenticator", func(t *testing.T) {
		e := newTSEnv(t)
		victim := e.signIn(t, "alice", "alice-password")
		attacker := e.signIn(t, "alice", "alice-password")
		mine, err := e.svc.EnrollTOTP(ctx, victim)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.PendingTOTP(ctx, attacker); !errors.Is(err, ErrNothingToConfirm) {
			t.Fatalf("another session reads the pending authenticator: %v", err)
		}
		theirs, err := e.svc.EnrollTOTP(ctx, attacker)
		if err != nil {
			t.Fatal(err)
		}
		if shown, err := e.svc.PendingTOTP(ctx, victim); err != nil || shown.Secret != mine.Secret {
			t.Fatalf("the victim's pending authenticator after another session's enrolment: %v", err)
		}
		if _, err := e.svc.ConfirmTOTP(ctx, attacker, totpCode(t, mine.Secret, e.clock.now()), ip2); !errors.Is(err, ErrInvalidCode) {
			t.Fatalf("another session confirms the victim's secret: %v", err)
		}
		if _, err := e.svc.ConfirmTOTP(ctx, victim, totpCode(t, mine.Secret, e.clock.now()), ip1); err != nil {
			t.Fatal(err)
		}
		e.clock.add(30 * time.Second)
		half := e.signIn(t, "alice", "alice-password")
		if _, err := e.svc.VerifyCode(ctx, half, MethodTOTP, totpCode(t, theirs.Secret, e.clock.now()), false, ip2); !errors.Is(err, ErrInvalidCode) {
			t.Fatalf("the other session's secret passes two-step: %v", err)
		}
	})
	t.Run("phone", func(t *testing.T) {
		e := newTSEnv(t)
		victim := e.signIn(t, "alice", "alice-password")
		attacker := e.signIn(t, "alice", "alice-password")
		if _, err := e.svc.SetPhone(ctx, victim, "+15557654321", MethodSMS, ip1); err != nil {
			t.Fatal(err)
		}
		code := e.sms.last(t).Code
		if _, err := e.svc.SetPhone(ctx, attacker, "+15559990000", MethodVoice, ip2); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.ConfirmPhone(ctx, attacker, code, ip2); !errors.Is(err, ErrInvalidCode) {
			t.Fatalf("another session confirms with the victim's code: %v", err)
		}
		if _, err := e.svc.ConfirmPhone(ctx, victim, code, ip1); err != nil {
			t.Fatalf("the victim's code after another session asked for one: %v", err)
		}
		u, _ := e.dir.DB().Lookup("alice")
		if info, err := e.svc.TwoStep(ctx, u); err != nil || info.PhoneMasked != "•••• 4321" {
			t.Fatalf("alice's phone: %+v, %v", info, err)
		}
	})
	t.Run("not kept across a new token", func(t *testing.T) {
		e := newTSEnv(t)
		a := e.signIn(t, "alice", "alice-password")
		enr, err := e.svc.EnrollTOTP(ctx, a)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.SetPhone(ctx, a, "+15557654321", MethodSMS, ip1); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.ConfirmPhone(ctx, a, e.sms.last(t).Code, ip1); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.ConfirmTOTP(ctx, a, totpCode(t, enr.Secret, e.clock.now()), ip1); !errors.Is(err, ErrNothingToConfirm) {
			t.Fatalf("an authenticator pending under the old token: %v, want ErrNothingToConfirm", err)
		}
	})
}

// Confirming a method issues a new token (ASVS 3.2.1, REQ-40): the token
// from before (planted or copied) is ended, not raised to two_factor.
func TestConfirmMethodIssuesNewToken(t *testing.T) {
	e := newTSEnv(t)
	ctx := context.Background()
	si, err := e.svc.SignIn(ctx, "alice", "alice-password", ip1)
	if err != nil {
		t.Fatal(err)
	}
	res, _ := e.svc.Resolve(ctx, si.Token)
	if _, err := e.svc.SetPhone(ctx, res, "+15557654321", MethodSMS, ip1); err != nil {
		t.Fatal(err)
	}
	out, err := e.svc.ConfirmPhone(ctx, res, e.sms.last(t).Code, ip1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Resolve(ctx, si.Token); !errors.Is(err, ErrNoSession) {
		t.Fatalf("the token from before the confirmation: %v, want ErrNoSession", err)
	}
	if out.Token == "" || out.Token == si.Token || out.Session == nil || out.Session.ID == si.Session.ID || res.Session.ID != out.Session.ID {
		t.Fatalf("confirm result %+v", out)
	}
	next, err := e.svc.Resolve(ctx, out.Token)
	if err != nil || next.Session.State != store.StateTwoFactor || !next.Session.SecondFactorAt.Equal(e.clock.now()) {
		t.Fatalf("the new token: %+v, %v", next, err)
	}
}

// Turning two-step off checks a code in the user's turn (userGate), as
// every other place a factor is checked: concurrent guesses stop at the
// lock. The store below holds each backup-code lookup until a few
// requests are in it (at most 300 ms), to make the interleaving certain.
func TestTurnOffGuessesStopAtTheLock(t *testing.T) {
	e := newTSEnv(t)
	ctx := context.Background()
	res, _ := fullBob(t, e)
	// 99 failures so far: one more guess may be looked at, then the lock.
	for i := 0; i < maxFactorFailures-1; i++ {
		if err := e.svc.factorFailed(ctx, "bob", Client{IP: ip2.IP}); err != nil {
			t.Fatal(err)
		}
	}
	const n = 8
	b := &backupTakeBarrier{Store: e.svc.store, n: n, all: make(chan struct{})}
	e.svc.store = b
	var tried atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := e.svc.SetTwoStep(ctx, res, false, "bob-password", "aaaaa-bbbbb", ip1)
			if errors.Is(err, ErrInvalidCode) {
				tried.Add(1)
			}
		}()
	}
	wg.Wait()
	if tried.Load() != 1 {
		t.Errorf("after %d failures, %d concurrent wrong codes were looked at by two-step-off requests, want 1 (the lock is at %d)", maxFactorFailures-1, tried.Load(), maxFactorFailures)
	}
}

// backupTakeBarrier holds each backup-code Take until n have arrived (or
// 300 ms passed).
type backupTakeBarrier struct {
	store.Store
	mu      sync.Mutex
	arrived int
	n       int
	all     chan struct{}
}

func (b *backupTakeBarrier) Take(ctx context.Context, key string, now time.Time) ([]byte, error) {
	if strings.HasPrefix(key, "backup:") {
		b.mu.Lock()
		b.arrived++
		if b.arrived == b.n {
			close(b.all)
		}
		b.mu.Unlock()
		select {
		case <-b.all:
		case <-time.After(300 * time.Millisecond):
		}
	}
	return b.Store.Take(ctx, key, now)
}
