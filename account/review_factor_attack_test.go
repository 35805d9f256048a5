package account

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twostep-auth/twostep/internal/store"
)

// backupWriteBarrier holds the first n writes (Put or Delete) of backup-code
// keys until n have arrived (or 500 ms passed): concurrent regenerations
// have then all read the two-step record before any of them changes the
// codes.
type backupWriteBarrier struct {
	store.Store
	mu      sync.Mutex
	arrived int
	n       int
	all     chan struct{}
}

func (b *backupWriteBarrier) hold(key string) {
	if !strings.HasPrefix(key, "backup:") {
		return
	}
	b.mu.Lock()
	first := b.arrived < b.n
	if first {
		b.arrived++
		if b.arrived == b.n {
			close(b.all)
		}
	}
	b.mu.Unlock()
	if first {
		select {
		case <-b.all:
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (b *backupWriteBarrier) Put(ctx context.Context, key string, value []byte, ttl time.Duration, now time.Time) error {
	b.hold(key)
	return b.Store.Put(ctx, key, value, ttl, now)
}

func (b *backupWriteBarrier) Delete(ctx context.Context, key string) error {
	b.hold(key)
	return b.Store.Delete(ctx, key)
}

// Attack: a session with a fresh second factor (a stolen cookie, a browser
// left unlocked for a minute) asks for new backup codes twice at once. Both
// regenerations read the same old set; the one that saves last leaves the
// other's ten codes stored but unlisted, and every later regeneration, which
// deletes only the listed codes, leaves them working: a second factor the
// user cannot see or revoke. Every code shown before the last regeneration
// must be dead.
func TestReviewConcurrentBackupRegenerationLeavesNoLiveOldCodes(t *testing.T) {
	e := newTSEnv(t)
	ctx := context.Background()
	res, _ := fullBob(t, e)
	b := &backupWriteBarrier{Store: e.svc.store, n: 2, all: make(chan struct{})}
	e.svc.store = b
	var wg sync.WaitGroup
	sets := make([][]string, 2)
	errs := make([]error, 2)
	for i := range sets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := *res
			sets[i], errs[i] = e.svc.RegenerateBackupCodes(ctx, &r, "bob-password", ip1)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("regeneration %d: %v", i, err)
		}
	}
	// The user, told of new codes, makes a fresh set: the earlier ones must
	// all stop working.
	last, err := e.svc.RegenerateBackupCodes(ctx, res, "bob-password", ip1)
	if err != nil {
		t.Fatal(err)
	}
	for i, set := range sets {
		for _, code := range set {
			half := e.signIn(t, "bob", "bob-password")
			if _, err := e.svc.VerifyCode(ctx, half, MethodBackup, code, false, ip1); err == nil {
				t.Errorf("a backup code of concurrent set %d still signs in after a later regeneration", i)
			}
		}
	}
	half := e.signIn(t, "bob", "bob-password")
	if _, err := e.svc.VerifyCode(ctx, half, MethodBackup, last[0], false, ip1); err != nil {
		t.Fatalf("a code of the current set: %v", err)
	}
}

// Attack: a sign-in code belongs to the half-signed-in session that asked
// for it (ASVS 2.7.3, THREATS REQ-23). Another session of the same user (one
// made with a leaked password) must neither use it, nor see that one is
// pending, nor burn its tries; nor may a code sent to one session turn
// two-step off in another.
func TestReviewLoginCodeBoundToRequestingSession(t *testing.T) {
	e := newTSEnv(t)
	ctx := context.Background()
	e.enrolPhone(t)
	victim := e.signIn(t, "bob", "bob-password")
	attacker := e.signIn(t, "bob", "bob-password")
	if _, err := e.svc.SendCode(ctx, victim, MethodSMS, ip1); err != nil {
		t.Fatal(err)
	}
	code := e.sms.last(t).Code
	if p, err := e.svc.CodePending(ctx, attacker, MethodSMS); err != nil || p {
		t.Errorf("another session sees the victim's code as pending: %v %v", p, err)
	}
	if _, err := e.svc.VerifyCode(ctx, attacker, MethodSMS, code, false, ip2); err == nil {
		t.Error("a code sent to one session signed in another")
		attacker = e.signIn(t, "bob", "bob-password")
	}
	// A new code for the victim: another session's wrong tries do not burn it.
	e.clock.add(time.Minute)
	if _, err := e.svc.SendCode(ctx, victim, MethodSMS, ip1); err != nil {
		t.Fatal(err)
	}
	code = e.sms.last(t).Code
	for i := 0; i < maxCodeTries; i++ {
		if _, err := e.svc.VerifyCode(ctx, attacker, MethodSMS, otherDigits(code, i), false, ip2); err == nil {
			t.Fatal("a wrong code passed")
		}
	}
	if _, err := e.svc.VerifyCode(ctx, victim, MethodSMS, code, false, ip1); err != nil {
		t.Errorf("the victim's own code after another session's tries: %v", err)
	}

	// Turning two-step off in a signed-in session with a code sent to
	// another session.
	full, _ := fullBobAgain(t, e)
	e.clock.add(time.Minute)
	other := e.signIn(t, "bob", "bob-password")
	if _, err := e.svc.SendCode(ctx, other, MethodSMS, ip1); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.SetTwoStep(ctx, full, false, "bob-password", e.sms.last(t).Code, ip1); err == nil {
		t.Fatal("a code sent to another session turned two-step off")
	}
}

// fullBobAgain signs bob in again with a fresh sms code (his phone is
// already enrolled).
func fullBobAgain(t *testing.T, e *tsEnv) (*Resolved, string) {
	t.Helper()
	ctx := context.Background()
	e.clock.add(time.Minute)
	half := e.signIn(t, "bob", "bob-password")
	if _, err := e.svc.SendCode(ctx, half, MethodSMS, ip1); err != nil {
		t.Fatal(err)
	}
	out, err := e.svc.VerifyCode(ctx, half, MethodSMS, e.sms.last(t).Code, false, ip1)
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.svc.Resolve(ctx, out.Token)
	if err != nil {
		t.Fatal(err)
	}
	return res, out.Token
}

// otherDigits is a code of the same length that differs from code.
func otherDigits(code string, i int) string {
	b := []byte(code)
	b[0] = '0' + (b[0]-'0'+1+byte(i%9))%10
	return string(b)
}

// codeTakeHook runs fn once, right after the first Take of key.
type codeTakeHook struct {
	store.Store
	key  string
	once sync.Once
	fn   func()
}

func (h *codeTakeHook) Take(ctx context.Context, key string, now time.Time) ([]byte, error) {
	b, err := h.Store.Take(ctx, key, now)
	if key == h.key {
		h.once.Do(h.fn)
	}
	return b, err
}

// Attack: a wrong guess takes the code record and writes it back with one
// try more. A resend landing in between (another tab, another node) is
// overwritten: the superseded code comes back to life and the code just
// sent is dead. A resend must always win.
func TestReviewWrongGuessDoesNotReviveReplacedCode(t *testing.T) {
	e := newTSEnv(t)
	ctx := context.Background()
	e.enrolPhone(t)
	half := e.signIn(t, "bob", "bob-password")
	if _, err := e.svc.SendCode(ctx, half, MethodSMS, ip1); err != nil {
		t.Fatal(err)
	}
	old := e.sms.last(t).Code
	var fresh string
	e.svc.store = &codeTakeHook{Store: e.svc.store, key: codeKey("bob", "login"), fn: func() {
		e.clock.add(31 * time.Second) // past the cooldown
		if _, err := e.svc.SendCode(ctx, half, MethodSMS, ip1); err != nil {
			t.Error(err)
			return
		}
		fresh = e.sms.last(t).Code
	}}
	if _, err := e.svc.VerifyCode(ctx, half, MethodSMS, otherDigits(old, 0), false, ip1); !errors.Is(err, ErrInvalidCode) {
		t.Fatalf("wrong guess: %v", err)
	}
	if fresh == "" || fresh == old {
		t.Skip("the resend made the same code")
	}
	if _, err := e.svc.VerifyCode(ctx, half, MethodSMS, old, false, ip1); err == nil {
		t.Fatal("a code replaced by a resend still signs in")
	}
	if _, err := e.svc.VerifyCode(ctx, half, MethodSMS, fresh, false, ip1); err != nil {
		t.Fatalf("the code just sent: %v", err)
	}
}

// Attack (several nodes): node A accepts the code of step t+1; node B,
// which read the two-step record just before A saved the new last step,
// is given the code of step t-1, still within its skew window. RFC 6238
// §5.2 / SPEC §4: once a step is accepted, every earlier one is refused.
func TestReviewTOTPEarlierStepRefusedAcrossNodes(t *testing.T) {
	e := newTSEnv(t)
	ctx := context.Background()
	res := e.signIn(t, "alice", "alice-password")
	enr, err := e.svc.EnrollTOTP(ctx, res)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.ConfirmTOTP(ctx, res, totpCode(t, enr.Secret, e.clock.now()), ip1); err != nil {
		t.Fatal(err)
	}
	e.clock.add(5 * time.Minute)
	half := e.signIn(t, "alice", "alice-password")
	stale, err := e.svc.loadRecord(ctx, "alice") // node B's read
	if err != nil {
		t.Fatal(err)
	}
	now := e.clock.now()
	later, earlier := totpCode(t, enr.Secret, now.Add(30*time.Second)), totpCode(t, enr.Secret, now.Add(-30*time.Second))
	if later == earlier {
		t.Skip("the two steps have the same code")
	}
	if _, err := e.svc.VerifyCode(ctx, half, MethodTOTP, later, false, ip1); err != nil {
		t.Fatalf("node A, step t+1: %v", err)
	}
	u, _ := e.svc.users.DB().Lookup("alice")
	if err := e.svc.verifyFactor(ctx, u, stale, half.Session.ID, MethodTOTP, earlier); err == nil {
		t.Fatal("node B accepted the code of step t-1 after step t+1 was accepted")
	}
}

// Turning two-step off takes "a current code of any method" (SPEC §4): a
// code the session had sent by voice (or email) counts as much as a text's.
func TestReviewTurnOffWithVoiceCode(t *testing.T) {
	e := newTSEnv(t)
	ctx := context.Background()
	res, _ := fullBob(t, e)
	e.clock.add(time.Minute)
	if _, err := e.svc.SendCode(ctx, res, MethodVoice, ip1); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.SetTwoStep(ctx, res, false, "bob-password", e.voice.last(t).Code, ip1); err != nil {
		t.Fatalf("turning off with the voice code the session asked for: %v", err)
	}
}

// Attack: while bob has two-step off, someone with his password (the
// password is then the whole account) makes backup codes. Bob turns
// two-step back on with the switch (his phone is still confirmed), which
// ends every other session. The backup codes minted while two-step was off
// must not outlive that: otherwise the password alone, plus the planted
// codes, still passes the second factor bob just turned on.
func TestReviewBackupCodesMintedWhileOffDieWhenTurnedOn(t *testing.T) {
	e := newTSEnv(t)
	ctx := context.Background()
	codes := e.enrolPhone(t)
	half := e.signIn(t, "bob", "bob-password")
	full, err := e.svc.VerifyCode(ctx, half, MethodBackup, codes[0], false, ip1)
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.svc.Resolve(ctx, full.Token)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.svc.SetTwoStep(ctx, res, false, "bob-password", codes[1], ip1); err != nil {
		t.Fatal(err)
	}
	attacker := e.signIn(t, "bob", "bob-password")
	if attacker.Session.State != store.StateOneFactor {
		t.Fatalf("state with two-step off: %v", attacker.Session.State)
	}
	planted, err := e.svc.RegenerateBackupCodes(ctx, attacker, "bob-password", ip2)
	if err != nil {
		t.Fatal(err)
	}
	bob := e.signIn(t, "bob", "bob-password")
	if err := e.svc.SetTwoStep(ctx, bob, true, "", "", ip1); err != nil {
		t.Fatal(err)
	}
	again := e.signIn(t, "bob", "bob-password")
	if again.Session.State != store.StateSecondFactor {
		t.Fatalf("state with two-step on: %v", again.Session.State)
	}
	if _, err := e.svc.VerifyCode(ctx, again, MethodBackup, planted[0], false, ip2); err == nil {
		t.Fatal("a backup code made while two-step was off passed the second factor after bob turned it on")
	}
}

// reset-2sv (and an approved recovery) rewrites the user's two-step record:
// it takes the user's turn like every sign-in step, so that a TOTP or
// backup-code sign-in that read the record before cannot save it back
// over the reset (bringing the old secret back).
func TestResetTwoStepTakesTheUsersTurn(t *testing.T) {
	e := newTSEnv(t)
	ctx := context.Background()
	e.enrolPhone(t)
	unlock, err := e.svc.gate.lock(ctx, "bob", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := e.svc.ResetTwoStep(short, "bob", "root"); err == nil {
		t.Fatal("reset-2sv ran while a sign-in step of bob held his turn")
	}
	if r, err := e.svc.loadRecord(ctx, "bob"); err != nil || r.Phone == nil {
		t.Fatalf("bob's record after a refused reset: %+v, %v; want it whole", r, err)
	}
	unlock()
	if err := e.svc.ResetTwoStep(ctx, "bob", "root"); err != nil {
		t.Fatal(err)
	}
}
