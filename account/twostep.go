package account

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/twostep-auth/twostep/internal/notify"
	"github.com/twostep-auth/twostep/internal/otp"
	"github.com/twostep-auth/twostep/internal/store"
	"github.com/twostep-auth/twostep/internal/users"
)

// Method names, as in the JSON API.
const (
	MethodTOTP   = "totp"
	MethodSMS    = "sms"
	MethodVoice  = "voice"
	MethodEmail  = "email"
	MethodBackup = "backup_code"
)

// More errors of the two-step use cases.
var (
	// ErrInvalidCode: wrong, expired or already used code.
	ErrInvalidCode = errors.New("invalid code")
	// ErrConflict: the request contradicts the account's state (e.g. turning
	// two-step on with no confirmed method).
	ErrConflict = errors.New("conflict")
	// ErrAlreadyApproved (an ErrConflict): this reviewer's approval of the
	// request is already counted.
	ErrAlreadyApproved = fmt.Errorf("%w: already approved by this reviewer", ErrConflict)
	// ErrAlreadyDecided (an ErrConflict): the recovery request is no longer
	// pending.
	ErrAlreadyDecided = fmt.Errorf("%w: the request is no longer pending", ErrConflict)
	// ErrNothingToConfirm (an ErrConflict): no authenticator app is waiting
	// for its first code in this session (totp/enroll first, or it expired,
	// or the session has had a new token since).
	ErrNothingToConfirm = fmt.Errorf("%w: no authenticator app waiting for its first code", ErrConflict)
	// ErrAlreadyVerified (an ErrInvalidCode): the code is used up, by this
	// same session a moment ago (a form submitted twice); it is not counted
	// as a failure.
	ErrAlreadyVerified = fmt.Errorf("%w: this session passed its second factor a moment ago", ErrInvalidCode)
	// ErrForbidden: the session may not do this.
	ErrForbidden = errors.New("forbidden")
	// ErrStepUp (an ErrForbidden): two-step is on and adding or replacing
	// a method (or making new backup codes) needs the user's current
	// second factor, given by this session in the last StepUpWindow and
	// not stood in for by a trusted browser. The session gives a code
	// again (the challenge page, code/verify) and retries.
	ErrStepUp = fmt.Errorf("%w: give a second factor again first", ErrForbidden)
	// ErrNoMethod: the method is not available to this user.
	ErrNoMethod = errors.New("method not available")
	// ErrReauthRequired: the user has no password here (they exist only at
	// their identity provider) and has not confirmed with the provider in
	// the last ReauthWindow; see Reauthenticated.
	ErrReauthRequired = errors.New("confirm with the identity provider first")
)

// InvalidInputError names what is wrong with an input (400).
type InvalidInputError struct{ Msg string }

func (e *InvalidInputError) Error() string { return e.Msg }

// DeliveryFailedError: every provider of the channel failed; Alternatives
// lists the methods the user can try instead.
type DeliveryFailedError struct {
	Channel      string
	Alternatives []string
	Err          error
}

func (e *DeliveryFailedError) Error() string { return "delivery by " + e.Channel + " failed" }
func (e *DeliveryFailedError) Unwrap() error { return e.Err }

// CodeConfig sets one-time code behaviour (SPEC `code`).
type CodeConfig struct {
	Length          int
	Lifetime        time.Duration
	ResendAfter     time.Duration
	MaxSendsPerHour int
	EmailCodes      bool
}

// Senders deliver messages; nil channels are not configured.
type Senders struct {
	SMS   notify.Sender
	Voice notify.Sender
	Email notify.Sender
}

// maxCodeTries is how many wrong tries one code survives.
const maxCodeTries = 5

// maxFactorFailures locks an account's second factor (SPEC §4), and a
// client address's.
const maxFactorFailures = 100

// factorFailureMemory is how long an account's second-factor failures,
// and its lock, are remembered after the last one: the lock counts
// consecutive failures (until a second factor passes or an operator's
// reset-2sv), not failures per ban_time.
const factorFailureMemory = 30 * 24 * time.Hour

// StepUpWindow is how recent the session's own second factor must be to
// add or replace a method while two-step is on (REQ-26, REQ-47).
const StepUpWindow = 10 * time.Minute

// enrolmentLifetime is how long a method being added waits for its first
// code; confirmWindow, how recent the session's factor must be when that
// code comes: the enrolment was begun within StepUpWindow of it, so a user
// who takes a few minutes to scan the QR code is not sent back.
const (
	enrolmentLifetime = 15 * time.Minute
	confirmWindow     = StepUpWindow + enrolmentLifetime
)

// maxFactorFailuresPerUserIP is how many of one account's failures count
// toward its client address's counter per ban_time: locking an address
// takes failures of maxFactorFailures/maxFactorFailuresPerUserIP accounts,
// so one account behind a shared address (an office's NAT) cannot lock
// everyone else behind it.
const maxFactorFailuresPerUserIP = 10

// record is a user's two-step state in the store (key "2sv:<user>").
type record struct {
	Enabled bool `json:"enabled"`
	// TOTP is the sealed authenticator secret, confirmed.
	TOTP []byte `json:"totp,omitempty"`
	// TOTPLastStep is the last accepted time step.
	TOTPLastStep int64 `json:"totp_last_step,omitempty"`
	// Phone is the sealed confirmed phone number; PhoneLast4 is shown masked.
	Phone      []byte `json:"phone,omitempty"`
	PhoneLast4 string `json:"phone_last4,omitempty"`
	// Backup holds the keyed hashes (hex) of unused backup codes.
	Backup []string `json:"backup,omitempty"`
	// BackupMadeOff: the backup codes were made while two-step was off,
	// when the password alone was enough to make them. Turning two-step
	// on discards them, so that they cannot stand in for the factor the
	// user has just turned on.
	BackupMadeOff bool `json:"backup_made_off,omitempty"`
	// FilePhoneOff is the keyed hash (hex) of a users-file phone that a
	// reset (reset-2sv, an approved recovery) removed: that number is no
	// longer offered until the users file names another one.
	FilePhoneOff string    `json:"file_phone_off,omitempty"`
	Updated      time.Time `json:"updated"`
}

func recordKey(user string) string { return "2sv:" + user }

func (s *Service) loadRecord(ctx context.Context, user string) (*record, error) {
	b, err := s.store.Get(ctx, recordKey(user), s.now())
	if errors.Is(err, store.ErrNotFound) {
		return &record{}, nil
	}
	if err != nil {
		return nil, &UnavailableError{err}
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, &UnavailableError{fmt.Errorf("two-step record of %s: %w", user, err)}
	}
	return &r, nil
}

func (s *Service) saveRecord(ctx context.Context, user string, r *record) error {
	r.Updated = s.now()
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if err := s.store.Put(ctx, recordKey(user), b, 0, s.now()); err != nil {
		return &UnavailableError{err}
	}
	return nil
}

// phoneOf returns the user's confirmed phone: the one confirmed in the
// portal, else the users file's.
func (s *Service) phoneOf(u *users.User, r *record) (string, error) {
	if len(r.Phone) > 0 {
		p, err := s.seal.open(r.Phone, "phone:"+users.Canonical(u.Name))
		if err != nil {
			return "", err
		}
		return string(p), nil
	}
	return s.filePhone(u, r), nil
}

// filePhone is the users file's phone for u, unless a reset removed it.
func (s *Service) filePhone(u *users.User, r *record) string {
	if u.Phone == "" || (r.FilePhoneOff != "" && r.FilePhoneOff == s.filePhoneHash(u)) {
		return ""
	}
	return u.Phone
}

func (s *Service) filePhoneHash(u *users.User) string {
	m := hmac.New(sha256.New, s.deviceKey)
	m.Write([]byte("file-phone\x00" + users.Canonical(u.Name) + "\x00" + u.Phone))
	return hex.EncodeToString(m.Sum(nil))
}

// methodsOf lists the second factors the user can use now, in the order
// the challenge offers them.
func (s *Service) methodsOf(u *users.User, r *record) []string {
	var m []string
	if len(r.TOTP) > 0 {
		m = append(m, MethodTOTP)
	}
	if len(r.Phone) > 0 || s.filePhone(u, r) != "" {
		if s.senders.SMS != nil {
			m = append(m, MethodSMS)
		}
		if s.senders.Voice != nil {
			m = append(m, MethodVoice)
		}
	}
	if s.cfg.Code.EmailCodes && u.Email != "" && s.senders.Email != nil {
		m = append(m, MethodEmail)
	}
	if len(r.Backup) > 0 {
		m = append(m, MethodBackup)
	}
	return m
}

// hasConfirmedMethod: a factor of the user's own (backup codes do not count).
func (s *Service) hasConfirmedMethod(u *users.User, r *record) bool {
	return len(r.TOTP) > 0 || len(r.Phone) > 0 || s.filePhone(u, r) != ""
}

// TwoStepInfo is the account's two-step state for display.
type TwoStepInfo struct {
	Enabled     bool
	Required    bool
	Methods     []string
	HasTOTP     bool
	PhoneMasked string
	BackupLeft  int
}

// TwoStep returns the user's two-step state.
func (s *Service) TwoStep(ctx context.Context, u *users.User) (*TwoStepInfo, error) {
	r, err := s.loadRecord(ctx, users.Canonical(u.Name))
	if err != nil {
		return nil, err
	}
	info := &TwoStepInfo{
		Enabled:    s.enabled(u, r),
		Required:   s.cfg.TwoStepRequired,
		Methods:    s.methodsOf(u, r),
		HasTOTP:    len(r.TOTP) > 0,
		BackupLeft: len(r.Backup),
	}
	if r.PhoneLast4 != "" {
		info.PhoneMasked = "•••• " + r.PhoneLast4
	} else if p := s.filePhone(u, r); p != "" {
		info.PhoneMasked = otp.Mask(p)
	}
	if info.Methods == nil {
		info.Methods = []string{}
	}
	return info, nil
}

// enabled: two-step is on for the account (always under `two_step
// required` once a method exists).
func (s *Service) enabled(u *users.User, r *record) bool {
	if s.cfg.TwoStepRequired {
		return s.hasConfirmedMethod(u, r)
	}
	return r.Enabled && (s.hasConfirmedMethod(u, r) || len(r.Backup) > 0)
}

// stateAfterPassword decides what a fresh sign-in becomes.
func (s *Service) stateAfterPassword(ctx context.Context, u *users.User) (store.SessionState, error) {
	r, err := s.loadRecord(ctx, users.Canonical(u.Name))
	if err != nil {
		return store.StateNone, err
	}
	if s.enabled(u, r) {
		return store.StateSecondFactor, nil
	}
	if s.cfg.StoreIntact != nil {
		if err := s.cfg.StoreIntact(ctx); err != nil {
			return store.StateNone, &UnavailableError{err}
		}
	}
	switch {
	case s.cfg.TwoStepRequired:
		return store.StateEnrollment, nil
	}
	// After an approved recovery with `after_approval enroll`, the next
	// sign-in enrols a new factor first.
	if must, err := s.mustEnroll(ctx, users.Canonical(u.Name)); err != nil {
		return store.StateNone, err
	} else if must {
		return store.StateEnrollment, nil
	}
	return store.StateOneFactor, nil
}

// Methods returns the methods a half-signed-in user can use.
func (s *Service) Methods(ctx context.Context, u *users.User) ([]string, error) {
	r, err := s.loadRecord(ctx, users.Canonical(u.Name))
	if err != nil {
		return nil, err
	}
	return s.methodsOf(u, r), nil
}

// --- failure counters ---

func (s *Service) factorLocked(ctx context.Context, user string, c Client) error {
	for _, k := range []string{"ban:2fa:u:" + user, "ban:2fa:ip:" + c.network()} {
		until, err := s.bannedUntil(ctx, k[len("ban:"):], s.now())
		if err != nil {
			return &UnavailableError{err}
		}
		if !until.IsZero() {
			return &RateLimitedError{RetryAfter: until.Sub(s.now())}
		}
	}
	return nil
}

// factorFailed counts a wrong code. The account's counter lives until a
// second factor passes (or reset-2sv), for factorFailureMemory after the
// last failure: maxFactorFailures consecutive failures lock the account's
// second factor for ban_time, and once locked every further failure locks
// it again, until a success or an operator clears it (SPEC §4). The user
// is told by email when the lock begins. The client address's counter is
// per ban_time.
func (s *Service) factorFailed(ctx context.Context, user string, c Client) error {
	now := s.now()
	if err := s.accountFactorFailed(ctx, user, now); err != nil {
		return err
	}
	win := s.cfg.Regulation.BanTime
	// This account's share of the address's counter; unlike the account's
	// own counter it is not cleared by a success.
	share, _, err := s.store.Incr(ctx, "fail:2fa:ipu:"+c.network()+":"+user, win, now)
	if err != nil {
		return &UnavailableError{err}
	}
	if share > maxFactorFailuresPerUserIP {
		return nil
	}
	k := "2fa:ip:" + c.network()
	n, _, err := s.store.Incr(ctx, "fail:"+k, win, now)
	if err != nil {
		return &UnavailableError{err}
	}
	if n >= maxFactorFailures {
		until := now.Add(win)
		if err := s.store.Put(ctx, "ban:"+k, []byte(strconv.FormatInt(until.UnixNano(), 10)), win, now); err != nil {
			return &UnavailableError{err}
		}
		s.audit.Warn("second factor locked", zap.String("key", k), zap.Time("until", until))
		s.metrics.SignIn("second_factor", "locked")
	}
	return nil
}

// accountFactorFailed is factorFailed's per-account part. The lock record
// ("ban:2fa:u:<user>") outlives its ban_time: while it exists the account
// stays locked, and each failure after a ban ends bans again.
func (s *Service) accountFactorFailed(ctx context.Context, user string, now time.Time) error {
	k := "2fa:u:" + user
	n, _, err := s.store.Incr(ctx, "fail:"+k, factorFailureMemory, now)
	if err != nil {
		return &UnavailableError{err}
	}
	_, err = s.store.Get(ctx, "ban:"+k, now)
	locked := err == nil
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return &UnavailableError{err}
	}
	if !locked && n < maxFactorFailures {
		return nil
	}
	until := now.Add(s.cfg.Regulation.BanTime)
	v := []byte(strconv.FormatInt(until.UnixNano(), 10))
	began := false
	if !locked {
		// Of concurrent failures (on several nodes) one begins the lock.
		if _, began, err = s.store.PutIfAbsent(ctx, "ban:"+k, v, factorFailureMemory, now); err != nil {
			return &UnavailableError{err}
		}
	}
	if !began {
		if err := s.store.Put(ctx, "ban:"+k, v, factorFailureMemory, now); err != nil {
			return &UnavailableError{err}
		}
	}
	s.audit.Warn("second factor locked", zap.String("key", k), zap.Time("until", until), zap.Int64("failures", n))
	s.metrics.SignIn("second_factor", "locked")
	if began {
		if u, ok := s.users.DB().Lookup(user); ok {
			s.mail(ctx, u, "Sign-in codes locked",
				"Too many wrong verification codes were entered for your account, so codes are refused for a while. If this wasn't you, someone may know your password: tell your administrator.")
		}
	}
	return nil
}

// factorPassed clears the account's failure counter and lock record after
// a passed second factor (a lock still running was checked before).
func (s *Service) factorPassed(ctx context.Context, user string) error {
	for _, k := range []string{"fail:2fa:u:" + user, "ban:2fa:u:" + user} {
		if err := s.store.Delete(ctx, k); err != nil {
			return &UnavailableError{err}
		}
	}
	return nil
}

// --- one-time codes ---

type codeRecord struct {
	Hash    string    `json:"hash"`
	Channel string    `json:"channel"`
	Tries   int       `json:"tries"`
	Expires time.Time `json:"expires"`
	// Target is the sealed destination for enrolment codes.
	Target []byte `json:"target,omitempty"`
	Method string `json:"method,omitempty"`
	// Session is the id of the session the code was sent for: only that
	// session may use it (ASVS 2.7.3). Another session's submission is
	// refused and leaves the code as it was.
	Session string `json:"session,omitempty"`
}

// ownsCode reports whether the code in rec was sent for the session
// sessionID. A record without a session (or an empty id) is no one's.
func ownsCode(rec *codeRecord, sessionID string) bool {
	return sessionID != "" && rec.Session != "" && hmac.Equal([]byte(rec.Session), []byte(sessionID))
}

func codeKey(user, purpose string) string { return "code:" + purpose + ":" + user }

// justVerifiedFor is how long a session that passed its second factor is
// remembered, for a form submitted twice.
const justVerifiedFor = 30 * time.Second

func justVerifiedKey(sessionID string) string { return "verified:" + sessionID }

// justVerified reports whether the session passed its second factor within
// justVerifiedFor (waiting a moment for a submission still on its way).
func (s *Service) justVerified(ctx context.Context, sessionID string) bool {
	for i := 0; i < 2; i++ {
		if _, err := s.store.Get(ctx, justVerifiedKey(sessionID), s.now()); err == nil {
			return true
		}
		if i == 0 {
			time.Sleep(25 * time.Millisecond)
		}
	}
	return false
}

// CodePending reports whether a sign-in (or step-up) code sent on channel
// (sms, voice or email) is waiting for the session's user: the
// challenge page then asks for it rather than offering to send one.
func (s *Service) CodePending(ctx context.Context, res *Resolved, channel string) (bool, error) {
	if res == nil || res.Session == nil || (res.Session.State != store.StateSecondFactor && res.Session.State != store.StateTwoFactor) {
		return false, nil
	}
	now := s.now()
	b, err := s.store.Get(ctx, codeKey(res.Session.User, "login"), now)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, &UnavailableError{err}
	}
	var rec codeRecord
	if json.Unmarshal(b, &rec) != nil {
		return false, nil
	}
	return ownsCode(&rec, res.Session.ID) && rec.Channel == channel && now.Before(rec.Expires) && rec.Tries < maxCodeTries, nil
}

// issueCode stores a fresh code for purpose, for the session sessionID
// only, and returns it. It replaces any earlier code for purpose.
func (s *Service) issueCode(ctx context.Context, user, purpose, sessionID, channel string, target []byte, method string) (string, error) {
	code, err := otp.NewCode(s.cfg.Code.Length)
	if err != nil {
		return "", err
	}
	now := s.now()
	rec := codeRecord{
		Hash:    hex.EncodeToString(s.codes.Hash(purpose, user, code)),
		Channel: channel, Expires: now.Add(s.cfg.Code.Lifetime), Target: target, Method: method,
		Session: sessionID,
	}
	b, _ := json.Marshal(rec)
	if err := s.store.Put(ctx, codeKey(user, purpose), b, s.cfg.Code.Lifetime, now); err != nil {
		return "", &UnavailableError{err}
	}
	return code, nil
}

// checkCode consumes the code for purpose atomically: of concurrent
// submissions exactly one can succeed. Only the session the code was sent
// for (sessionID) may use it: another session's submission is refused and
// leaves the code untouched. A wrong code is put back with one try fewer,
// until maxCodeTries, unless a new code was issued meanwhile (a resend
// always wins over the code it replaced). With channel set, only a code
// sent on that channel matches (a text's code is not a call's).
func (s *Service) checkCode(ctx context.Context, user, purpose, sessionID, channel, code string) (*codeRecord, error) {
	norm, ok := otp.NormalizeCode(code, s.cfg.Code.Length)
	now := s.now()
	key := codeKey(user, purpose)
	// Look before taking: a code of another session is not this one's to
	// take, try or burn.
	b, err := s.store.Get(ctx, key, now)
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrInvalidCode
	}
	if err != nil {
		return nil, &UnavailableError{err}
	}
	var peek codeRecord
	if err := json.Unmarshal(b, &peek); err != nil || !ownsCode(&peek, sessionID) {
		return nil, ErrInvalidCode
	}
	b, err = s.store.Take(ctx, key, now)
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrInvalidCode
	}
	if err != nil {
		return nil, &UnavailableError{err}
	}
	var rec codeRecord
	if err := json.Unmarshal(b, &rec); err != nil || !now.Before(rec.Expires) {
		return nil, ErrInvalidCode
	}
	if !ownsCode(&rec, sessionID) {
		// Another session's code replaced the one looked at: it goes back
		// as it was, unless a newer one is there already.
		if _, _, err := s.store.PutIfAbsent(ctx, key, b, rec.Expires.Sub(now), now); err != nil {
			return nil, &UnavailableError{err}
		}
		return nil, ErrInvalidCode
	}
	if rec.Tries >= maxCodeTries {
		// The code died of wrong tries (SPEC §4: 429 "too many code
		// tries"); it stays dead, the right code included, until a new
		// one is sent or it expires.
		if _, _, err := s.store.PutIfAbsent(ctx, key, b, rec.Expires.Sub(now), now); err != nil {
			return nil, &UnavailableError{err}
		}
		return nil, &RateLimitedError{RetryAfter: time.Second, tooManyTries: true}
	}
	want, err := hex.DecodeString(rec.Hash)
	if err != nil {
		return nil, ErrInvalidCode
	}
	if ok && s.codes.Equal(want, purpose, user, norm) && (channel == "" || rec.Channel == channel) {
		return &rec, nil
	}
	// A wrong code, the fifth included, is invalid_code; the tries after
	// the fifth are refused above.
	rec.Tries++
	nb, _ := json.Marshal(rec)
	// Put back only where no new code was stored meanwhile: writing over
	// a resend would bring the replaced code back and kill the new one.
	if _, _, err := s.store.PutIfAbsent(ctx, key, nb, rec.Expires.Sub(now), now); err != nil {
		return nil, &UnavailableError{err}
	}
	return nil, ErrInvalidCode
}

func cooldownKey(user, purpose, channel string) string {
	return "cooldown:" + purpose + ":" + channel + ":" + user
}

// throttleSend applies the resend cooldown (per user, purpose and channel:
// confirming a new phone does not hold back the next sign-in) and the
// hourly cap (per user, every channel, enrolment codes included).
func (s *Service) throttleSend(ctx context.Context, user, purpose, channel string) error {
	now := s.now()
	cd := cooldownKey(user, purpose, channel)
	until := now.Add(s.cfg.Code.ResendAfter)
	v, created, err := s.store.PutIfAbsent(ctx, cd, []byte(strconv.FormatInt(until.UnixNano(), 10)), s.cfg.Code.ResendAfter, now)
	if err != nil {
		return &UnavailableError{err}
	}
	if !created {
		ns, _ := strconv.ParseInt(string(v), 10, 64)
		return &RateLimitedError{RetryAfter: time.Unix(0, ns).Sub(now)}
	}
	n, reset, err := s.store.Incr(ctx, "sends:"+user, time.Hour, now)
	if err != nil {
		return &UnavailableError{err}
	}
	if n > int64(s.cfg.Code.MaxSendsPerHour) {
		return &RateLimitedError{RetryAfter: reset.Sub(now)}
	}
	return nil
}

func (s *Service) senderFor(channel string) notify.Sender {
	switch channel {
	case MethodSMS:
		return s.senders.SMS
	case MethodVoice:
		return s.senders.Voice
	case MethodEmail:
		return s.senders.Email
	}
	return nil
}

// deliver sends a code message; on failure it lifts the cooldown so another
// channel (or a retry) is possible at once.
func (s *Service) deliver(ctx context.Context, user, purpose, channel, to, code string, alternatives []string) error {
	snd := s.senderFor(channel)
	if snd == nil {
		return ErrNoMethod
	}
	m := notify.Message{Channel: notify.Channel(channel), To: to, User: user, Code: code}
	switch channel {
	case MethodVoice:
		m.Body = notify.SpokenCode(code)
	case MethodEmail:
		m.Subject = "Your " + s.cfg.SiteName + " verification code"
		m.Body = notify.CodeText(code, s.cfg.SiteName, s.cfg.Code.Lifetime)
	default:
		m.Body = notify.CodeText(code, s.cfg.SiteName, s.cfg.Code.Lifetime)
	}
	if err := snd.Send(ctx, m); err != nil {
		_ = s.store.Delete(ctx, cooldownKey(user, purpose, channel))
		s.log.Warn("code delivery failed", zap.String("user", user), zap.String("channel", channel), zap.Error(err))
		s.audit.Warn("code delivery failed", zap.String("user", user), zap.String("channel", channel), zap.String("outcome", "failed"))
		s.metrics.CodeSent(channel, false)
		return &DeliveryFailedError{Channel: channel, Alternatives: alternatives, Err: err}
	}
	s.audit.Info("code sent", zap.String("user", user), zap.String("channel", channel), zap.String("outcome", "sent"))
	s.metrics.CodeSent(channel, true)
	return nil
}

// SendResult says where a code went.
type SendResult struct {
	SentTo      string
	ResendAfter time.Duration
}

// SendCode sends a sign-in (or step-up) code by sms, voice or email.
func (s *Service) SendCode(ctx context.Context, res *Resolved, method string, c Client) (*SendResult, error) {
	if res.Session.State != store.StateSecondFactor && res.Session.State != store.StateTwoFactor {
		return nil, ErrForbidden
	}
	user := res.Session.User
	r, err := s.loadRecord(ctx, user)
	if err != nil {
		return nil, err
	}
	methods := s.methodsOf(res.User, r)
	if method != MethodSMS && method != MethodVoice && method != MethodEmail {
		return nil, &InvalidInputError{`Field "method" must be "sms", "voice" or "email".`}
	}
	if !slices.Contains(methods, method) {
		return nil, ErrNoMethod
	}
	if err := s.factorLocked(ctx, user, c); err != nil {
		return nil, err
	}
	to := res.User.Email
	if method != MethodEmail {
		if to, err = s.phoneOf(res.User, r); err != nil {
			return nil, &UnavailableError{err}
		}
	}
	if err := s.throttleSend(ctx, user, "login", method); err != nil {
		return nil, err
	}
	code, err := s.issueCode(ctx, user, "login", res.Session.ID, method, nil, "")
	if err != nil {
		return nil, err
	}
	if err := s.deliver(ctx, user, "login", method, to, code, without(methods, method)); err != nil {
		return nil, err
	}
	return &SendResult{SentTo: otp.Mask(to), ResendAfter: s.cfg.Code.ResendAfter}, nil
}

func without(list []string, drop string) []string {
	out := []string{}
	for _, m := range list {
		if m != drop {
			out = append(out, m)
		}
	}
	return out
}

// verifyFactor checks a code for one of the user's methods, consuming it;
// sessionID is the session giving it (a sent code is only its session's).
// r is the record as read in the user's turn.
func (s *Service) verifyFactor(ctx context.Context, u *users.User, r *record, sessionID, method, code string) error {
	user := users.Canonical(u.Name)
	switch method {
	case MethodTOTP:
		if len(r.TOTP) == 0 {
			return ErrNoMethod
		}
		secret, err := s.seal.open(r.TOTP, "totp:"+user)
		if err != nil {
			return &UnavailableError{err}
		}
		step, ok := otp.MatchTOTP(string(secret), code, s.now(), s.cfg.TOTP.Skew, r.TOTPLastStep)
		if !ok {
			return ErrInvalidCode
		}
		// Record the step before the session is issued: of concurrent
		// submissions of one code only one creates the marker. The earlier
		// steps any node may still accept (down to step-2*skew: a node
		// whose record was read before this one is saved) are marked
		// first, so that once this step is accepted no earlier one can be,
		// on any node (RFC 6238 §5.2).
		skew := int64(s.cfg.TOTP.Skew)
		ttl := time.Duration(2*skew+2) * 30 * time.Second
		for st := step - 2*skew; st < step; st++ {
			if _, _, err := s.store.PutIfAbsent(ctx, "totp-step:"+user+":"+strconv.FormatInt(st, 10), []byte{1}, ttl, s.now()); err != nil {
				return &UnavailableError{err}
			}
		}
		_, created, err := s.store.PutIfAbsent(ctx, "totp-step:"+user+":"+strconv.FormatInt(step, 10), []byte{1}, ttl, s.now())
		if err != nil {
			return &UnavailableError{err}
		}
		if !created {
			return ErrInvalidCode
		}
		fresh, err := s.loadRecord(ctx, user)
		if err != nil {
			return err
		}
		if step > fresh.TOTPLastStep {
			fresh.TOTPLastStep = step
			if err := s.saveRecord(ctx, user, fresh); err != nil {
				return err
			}
		}
		return nil
	case MethodSMS, MethodVoice, MethodEmail:
		_, err := s.checkCode(ctx, user, "login", sessionID, method, code)
		return err
	case MethodBackup:
		norm, ok := otp.NormalizeBackupCode(code)
		if !ok || len(r.Backup) == 0 {
			return ErrInvalidCode
		}
		h := hex.EncodeToString(s.codes.Hash("backup", user, norm))
		// Only a code of the current set counts: one left stored by a
		// regeneration that lost a race (or an interrupted one) is dead.
		if !slices.Contains(r.Backup, h) {
			return ErrInvalidCode
		}
		// Each code is its own key: taking it is the atomic single use.
		if _, err := s.store.Take(ctx, "backup:"+user+":"+h, s.now()); errors.Is(err, store.ErrNotFound) {
			return ErrInvalidCode
		} else if err != nil {
			return &UnavailableError{err}
		}
		fresh, err := s.loadRecord(ctx, user)
		if err != nil {
			return err
		}
		fresh.Backup = without(fresh.Backup, h)
		return s.saveRecord(ctx, user, fresh)
	}
	return &InvalidInputError{`Field "method" must be one of "totp", "sms", "voice", "email", "backup_code".`}
}

// VerifyResult is a passed second factor: a new session replaces the old.
type VerifyResult struct {
	Token      string
	Session    *store.Session
	BackupLeft int
	// DeviceToken is the new trusted-device cookie when trust was asked.
	DeviceToken string
	Device      *Device
}

// VerifyCode checks a second factor for a half-signed-in session (or a
// signed-in one stepping up) and issues a new session at two_factor.
func (s *Service) VerifyCode(ctx context.Context, res *Resolved, method, code string, trust bool, c Client) (*VerifyResult, error) {
	st := res.Session.State
	if st != store.StateSecondFactor && st != store.StateTwoFactor {
		return nil, ErrForbidden
	}
	if code == "" {
		return nil, &InvalidInputError{`Field "code" is required and must not be empty.`}
	}
	user := res.Session.User
	// One code per user at a time, so that the lock counts every guess
	// before the next is looked at (see userGate).
	unlock, err := s.gate.lock(ctx, user, maxHashWait)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := s.factorLocked(ctx, user, c); err != nil {
		return nil, err
	}
	r, err := s.loadRecord(ctx, user)
	if err != nil {
		return nil, err
	}
	if !slices.Contains([]string{MethodTOTP, MethodSMS, MethodVoice, MethodEmail, MethodBackup}, method) {
		return nil, &InvalidInputError{`Field "method" must be one of "totp", "sms", "voice", "email", "backup_code".`}
	}
	if !slices.Contains(s.methodsOf(res.User, r), method) {
		return nil, ErrNoMethod
	}
	if err := s.verifyFactor(ctx, res.User, r, res.Session.ID, method, code); err != nil {
		if (errors.Is(err, ErrInvalidCode) || isTooManyTries(err)) && s.justVerified(ctx, res.Session.ID) {
			// The same session passed a moment ago (a double-submitted
			// form): not a failure, and the page can go on.
			return nil, ErrAlreadyVerified
		}
		if errors.Is(err, ErrInvalidCode) || isTooManyTries(err) {
			if ferr := s.factorFailed(ctx, user, c); ferr != nil {
				return nil, ferr
			}
			s.audit.Info("second factor failed", zap.String("user", user), zap.String("method", method),
				zap.String("ip", c.ip()), zap.String("user_agent", c.UserAgent), zap.String("outcome", "invalid_code"))
			s.metrics.SignIn(method, "failure")
		}
		return nil, err
	}
	if err := s.factorPassed(ctx, user); err != nil {
		return nil, err
	}
	// A provider account that came with this sign-in is the user's now.
	if err := s.commitPendingLink(ctx, res.Session, c); err != nil {
		return nil, err
	}
	now := s.now()
	// A second submission of the same form, racing this one, finds the
	// code used up; this mark tells it that its session just passed.
	_ = s.store.Put(ctx, justVerifiedKey(res.Session.ID), []byte{1}, justVerifiedFor, now)
	token, id, err := s.newToken()
	if err != nil {
		return nil, err
	}
	next := *res.Session
	next.ID = id
	next.State = store.StateTwoFactor
	next.SecondFactorAt = now
	next.LastSeen = now
	next.Device = ""
	next.Pending = nil
	if prov := res.Session.Pending["provider"]; prov != "" {
		next.Pending = map[string]string{"provider": prov} // for the provider's logout
	}
	if st == store.StateSecondFactor {
		// The pending session's short lifetime gives way to the full one.
		next.Expires = next.Created.Add(s.cfg.SessionLifetime)
	}
	// The new session replaces the old one only while that is still
	// stored: not after "sign out everywhere", and only once when two
	// codes arrive at the same time.
	if err := s.store.SwapSession(ctx, res.Session.ID, &next, now); errors.Is(err, store.ErrNotFound) {
		return nil, ErrNoSession
	} else if err != nil {
		return nil, &UnavailableError{err}
	}
	s.audit.Info("second factor passed", zap.String("user", user), zap.String("method", method),
		zap.String("ip", c.ip()), zap.String("user_agent", c.UserAgent), zap.String("outcome", "success"))
	s.metrics.SignIn(method, "success")
	if err := s.cancelOpenRecovery(ctx, user, "you signed in with a code"); err != nil {
		return nil, err
	}
	fresh, err := s.loadRecord(ctx, user)
	if err != nil {
		return nil, err
	}
	out := &VerifyResult{Token: token, Session: &next, BackupLeft: len(fresh.Backup)}
	if trust {
		out.DeviceToken, out.Device, err = s.trustDevice(ctx, res.User, next.ID, c, c.Base)
		switch {
		case errors.Is(err, ErrNoSession):
			return nil, err // the new session ended meanwhile (sign out everywhere)
		case err != nil:
			// The user is signed in (the code is used, the session
			// swapped): say so without the trusted browser rather than
			// leave them with neither.
			s.log.Warn("browser not trusted", zap.String("user", user), zap.Error(err))
			out.DeviceToken, out.Device = "", nil
		}
	}
	return out, nil
}

func isTooManyTries(err error) bool {
	var rl *RateLimitedError
	return errors.As(err, &rl) && rl.tooManyTries
}

// --- enrolment and settings ---

// canManage: signed in (either level), or enrolling.
func canManage(res *Resolved) bool {
	switch res.Session.State {
	case store.StateOneFactor, store.StateTwoFactor, store.StateEnrollment:
		return true
	}
	return false
}

// TOTPEnrollment is a new authenticator secret awaiting its first code.
type TOTPEnrollment struct {
	Secret string
	URL    string
	QRPNG  []byte
}

// totpPendingKey is where EnrollTOTP keeps the authenticator being set up:
// per session, so that another session of the user (one made with a
// leaked password) can neither read it nor put one of its own in its
// place. A new token (a passed second factor, a confirmed method) starts
// a new session id: what was pending under the old one is not carried
// over (the user starts again; it expires by itself).
func totpPendingKey(user, sessionID string) string {
	return "totp-pending:" + user + ":" + sessionID
}

// phonePurpose is the code purpose of a new phone's confirmation: per
// session, like totpPendingKey (the code's key and hash name the session).
func phonePurpose(sessionID string) string { return "phone:" + sessionID }

// EnrollTOTP starts adding an authenticator app: a new secret, kept
// (sealed) for this session until the user enters a correct first code.
// While two-step is on it needs a recent second factor (ErrStepUp).
func (s *Service) EnrollTOTP(ctx context.Context, res *Resolved) (*TOTPEnrollment, error) {
	if !canManage(res) {
		return nil, ErrForbidden
	}
	user := res.Session.User
	if err := s.requireFreshFactor(ctx, res); err != nil {
		return nil, err
	}
	key, err := otp.NewTOTPKey(s.cfg.TOTP.Issuer, res.User.Name)
	if err != nil {
		return nil, err
	}
	png, err := key.QRPNG(256)
	if err != nil {
		return nil, err
	}
	pk := totpPendingKey(user, res.Session.ID)
	sealed, err := s.seal.seal([]byte(key.Secret), pk)
	if err != nil {
		return nil, err
	}
	if err := s.store.Put(ctx, pk, sealed, enrolmentLifetime, s.now()); err != nil {
		return nil, &UnavailableError{err}
	}
	return &TOTPEnrollment{Secret: key.Secret, URL: key.URL, QRPNG: png}, nil
}

// pendingTOTPSecret opens the secret EnrollTOTP keeps for the session
// until its first code is confirmed; ErrNothingToConfirm when there is
// none.
func (s *Service) pendingTOTPSecret(ctx context.Context, sess *store.Session) ([]byte, error) {
	pk := totpPendingKey(sess.User, sess.ID)
	sealed, err := s.store.Get(ctx, pk, s.now())
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrNothingToConfirm
	}
	if err != nil {
		return nil, &UnavailableError{err}
	}
	secret, err := s.seal.open(sealed, pk)
	if err != nil {
		return nil, &UnavailableError{err}
	}
	return secret, nil
}

// PendingTOTP returns the authenticator this session is setting up (after
// EnrollTOTP, not yet confirmed), so that a page can show its QR code
// again after a wrong first code; ErrNothingToConfirm when there is none.
func (s *Service) PendingTOTP(ctx context.Context, res *Resolved) (*TOTPEnrollment, error) {
	if !canManage(res) {
		return nil, ErrForbidden
	}
	secret, err := s.pendingTOTPSecret(ctx, res.Session)
	if err != nil {
		return nil, err
	}
	key, err := otp.TOTPKeyFromSecret(s.cfg.TOTP.Issuer, res.User.Name, string(secret))
	if err != nil {
		return nil, err
	}
	png, err := key.QRPNG(256)
	if err != nil {
		return nil, err
	}
	return &TOTPEnrollment{Secret: key.Secret, URL: key.URL, QRPNG: png}, nil
}

// requireFreshFactor: once two-step is on, adding or replacing a method
// binds a new authenticator (REQ-26), so it needs the user's current one:
// see freshFactor.
func (s *Service) requireFreshFactor(ctx context.Context, res *Resolved) error {
	r, err := s.loadRecord(ctx, res.Session.User)
	if err != nil {
		return err
	}
	return s.freshFactor(res, r, StepUpWindow)
}

// freshFactor: with two-step off, nil (the password is the account's only
// factor). With it on, only a two_factor session whose own second factor
// was given in the last StepUpWindow, not a trusted browser's stand-in:
// a stale or copied session cookie, or a trusted browser, must not put a
// factor of its own in the user's place. ErrStepUp when the session can
// give a code again; ErrForbidden when it cannot (it must sign in again).
func (s *Service) freshFactor(res *Resolved, r *record, within time.Duration) error {
	if !s.enabled(res.User, r) {
		return nil
	}
	sess := res.Session
	if sess.State != store.StateTwoFactor {
		return ErrForbidden
	}
	age := s.now().Sub(sess.SecondFactorAt)
	if sess.Device != "" || sess.SecondFactorAt.IsZero() || age > within || age < -StepUpWindow {
		return ErrStepUp
	}
	return nil
}

// ConfirmResult is what confirming a method returns: backup codes when
// this turned two-step on (shown once), and the session's new token.
type ConfirmResult struct {
	BackupCodes []string
	TurnedOn    bool
	// Token is the new session cookie value: confirming a method ends the
	// old token (Session is the new session).
	Token   string
	Session *store.Session
}

// beginConfirm checks what confirming any method needs: a session that may
// manage methods, a code, a recent second factor while two-step is on,
// and an unlocked second factor; it takes the user's turn (see userGate),
// which the caller ends with the returned func.
func (s *Service) beginConfirm(ctx context.Context, res *Resolved, code string, c Client) (string, func(), error) {
	if !canManage(res) {
		return "", nil, ErrForbidden
	}
	if code == "" {
		return "", nil, &InvalidInputError{`Field "code" is required and must not be empty.`}
	}
	unlock, err := s.gate.lock(ctx, res.Session.User, maxHashWait)
	if err != nil {
		return "", nil, err
	}
	r, err := s.loadRecord(ctx, res.Session.User)
	if err == nil {
		err = s.freshFactor(res, r, confirmWindow)
	}
	if err != nil {
		unlock()
		return "", nil, err
	}
	if err := s.factorLocked(ctx, res.Session.User, c); err != nil {
		unlock()
		return "", nil, err
	}
	return res.Session.User, unlock, nil
}

// ConfirmTOTP checks the first code of the session's pending authenticator
// and makes it a method; two-step turns on if it was off, and then the
// session rises to two_factor (the user has just shown the factor). The
// session gets a new token either way.
func (s *Service) ConfirmTOTP(ctx context.Context, res *Resolved, code string, c Client) (*ConfirmResult, error) {
	user, unlock, err := s.beginConfirm(ctx, res, code, c)
	if err != nil {
		return nil, err
	}
	defer unlock()
	secret, err := s.pendingTOTPSecret(ctx, res.Session)
	if err != nil {
		return nil, err
	}
	step, ok := otp.MatchTOTP(string(secret), code, s.now(), s.cfg.TOTP.Skew, -1)
	if !ok {
		if ferr := s.factorFailed(ctx, user, c); ferr != nil {
			return nil, ferr
		}
		return nil, ErrInvalidCode
	}
	if _, err := s.store.Take(ctx, totpPendingKey(user, res.Session.ID), s.now()); errors.Is(err, store.ErrNotFound) {
		return nil, ErrInvalidCode // confirmed concurrently
	} else if err != nil {
		return nil, &UnavailableError{err}
	}
	r, err := s.loadRecord(ctx, user)
	if err != nil {
		return nil, err
	}
	wasOn := s.enabled(res.User, r)
	if err := s.freshFactor(res, r, confirmWindow); err != nil {
		return nil, err // two-step came on meanwhile
	}
	if r.TOTP, err = s.seal.seal(secret, "totp:"+user); err != nil {
		return nil, err
	}
	r.TOTPLastStep = step
	out, err := s.turnOnWith(ctx, res, r, wasOn, "authenticator app added")
	if err != nil {
		return nil, err
	}
	s.audit.Info("method added", zap.String("user", user), zap.String("method", MethodTOTP), zap.String("ip", c.ip()), zap.String("outcome", "success"))
	return out, nil
}

var e164 = regexp.MustCompile(`^\+[1-9][0-9]{6,14}$`)

// SetPhone sends a confirmation code to a new phone number by sms or voice,
// for this session to confirm. While two-step is on it needs a recent
// second factor (ErrStepUp).
func (s *Service) SetPhone(ctx context.Context, res *Resolved, phone, method string, c Client) (*SendResult, error) {
	if !canManage(res) {
		return nil, ErrForbidden
	}
	if !e164.MatchString(phone) {
		return nil, &InvalidInputError{`Field "phone" must be a number in international form, such as +15551234567.`}
	}
	if method != MethodSMS && method != MethodVoice {
		return nil, &InvalidInputError{`Field "method" must be "sms" or "voice".`}
	}
	if s.senderFor(method) == nil {
		return nil, ErrNoMethod
	}
	if err := s.requireFreshFactor(ctx, res); err != nil {
		return nil, err
	}
	user := res.Session.User
	if err := s.throttleSend(ctx, user, "phone", method); err != nil {
		return nil, err
	}
	sealed, err := s.seal.seal([]byte(phone), "phone-pending:"+user)
	if err != nil {
		return nil, err
	}
	code, err := s.issueCode(ctx, user, phonePurpose(res.Session.ID), res.Session.ID, method, sealed, method)
	if err != nil {
		return nil, err
	}
	alt := []string{}
	if other := map[string]string{MethodSMS: MethodVoice, MethodVoice: MethodSMS}[method]; s.senderFor(other) != nil {
		alt = append(alt, other)
	}
	if err := s.deliver(ctx, user, "phone", method, phone, code, alt); err != nil {
		return nil, err
	}
	return &SendResult{SentTo: otp.Mask(phone), ResendAfter: s.cfg.Code.ResendAfter}, nil
}

// ConfirmPhone checks the code that SetPhone sent for this session and
// makes the new number the account's phone (sms and voice methods);
// two-step turns on if it was off. The session gets a new token.
func (s *Service) ConfirmPhone(ctx context.Context, res *Resolved, code string, c Client) (*ConfirmResult, error) {
	user, unlock, err := s.beginConfirm(ctx, res, code, c)
	if err != nil {
		return nil, err
	}
	defer unlock()
	rec, err := s.checkCode(ctx, user, phonePurpose(res.Session.ID), res.Session.ID, "", code)
	if err != nil {
		if errors.Is(err, ErrInvalidCode) || isTooManyTries(err) {
			if ferr := s.factorFailed(ctx, user, c); ferr != nil {
				return nil, ferr
			}
		}
		return nil, err
	}
	phone, err := s.seal.open(rec.Target, "phone-pending:"+user)
	if err != nil {
		return nil, &UnavailableError{err}
	}
	r, err := s.loadRecord(ctx, user)
	if err != nil {
		return nil, err
	}
	wasOn := s.enabled(res.User, r)
	if err := s.freshFactor(res, r, confirmWindow); err != nil {
		return nil, err // two-step came on meanwhile
	}
	if r.Phone, err = s.seal.seal(phone, "phone:"+user); err != nil {
		return nil, err
	}
	r.PhoneLast4 = string(phone[len(phone)-4:])
	out, err := s.turnOnWith(ctx, res, r, wasOn, "phone number changed")
	if err != nil {
		return nil, err
	}
	s.audit.Info("method added", zap.String("user", user), zap.String("method", "phone"), zap.String("ip", c.ip()), zap.String("outcome", "success"))
	return out, nil
}

// turnOnWith saves a record that gained a method: two-step turns on if it
// was off, with a fresh set of backup codes shown once (any earlier set,
// kept while two-step was off, stops working). The session goes on under
// a new token (REQ-40: a token copied before must not gain what this
// confirmation gives). Only when two-step was off (wasOn false: the
// method just shown is the account's factor now) does the session rise
// to two_factor with its second factor given now; a method added while
// two-step was on leaves the session's level and factor time as they
// were (freshFactor required them recent).
func (s *Service) turnOnWith(ctx context.Context, res *Resolved, r *record, wasOn bool, event string) (*ConfirmResult, error) {
	user := res.Session.User
	out := &ConfirmResult{}
	if !r.Enabled {
		r.Enabled = true
		out.TurnedOn = !wasOn
		codes, err := s.newBackupCodes(ctx, user, r)
		if err != nil {
			return nil, err
		}
		out.BackupCodes = codes
		r.BackupMadeOff = false
	}
	if err := s.saveRecord(ctx, user, r); err != nil {
		return nil, err
	}
	// A new method ends every trusted device (SPEC §4), and every other
	// session: one made with a leaked password, the reason the user may
	// be doing this, must not outlive it (REQ-17, REQ-62).
	if err := s.revokeDevicesAround(ctx, user, event, func() error {
		return s.endOtherSessions(ctx, user, res.Session.ID, event)
	}); err != nil {
		return nil, err
	}
	if err := s.store.Delete(ctx, mustEnrollKey(user)); err != nil {
		return nil, &UnavailableError{err}
	}
	now := s.now()
	token, id, err := s.newToken()
	if err != nil {
		return nil, err
	}
	next := res.Session.Clone()
	next.ID = id
	next.LastSeen = now
	if !wasOn {
		if st := res.Session.State; st == store.StateEnrollment || st == store.StateSecondFactor {
			// Signed in now: the pending session's short lifetime gives
			// way to the full one (as after a code, in VerifyCode).
			next.Expires = next.Created.Add(s.cfg.SessionLifetime)
		}
		next.State = store.StateTwoFactor
		next.SecondFactorAt = now
		next.Device = ""
	}
	// The new session replaces the old one only while that is still
	// stored: if "sign out everywhere" ended it meanwhile, confirming a
	// method does not bring it back.
	if err := s.store.SwapSession(ctx, res.Session.ID, next, now); errors.Is(err, store.ErrNotFound) {
		return nil, ErrNoSession
	} else if err != nil {
		return nil, &UnavailableError{err}
	}
	res.Session = next
	out.Token, out.Session = token, next
	if out.TurnedOn {
		s.mail(ctx, res.User, "Two-step verification is on",
			"Two-step verification is now on for your account. Each sign-in will ask for a code as well as your password.")
	} else {
		s.mail(ctx, res.User, "Your sign-in methods changed", "Change to your account: "+event+".")
	}
	return out, nil
}

// endOtherSessions ends every session of user but keep.
func (s *Service) endOtherSessions(ctx context.Context, user, keep, why string) error {
	list, err := s.store.ListUserSessions(ctx, user, s.now())
	if err != nil {
		return &UnavailableError{err}
	}
	n := 0
	for _, sess := range list {
		if sess.ID == keep {
			continue
		}
		if err := s.store.DeleteSession(ctx, sess.ID); err != nil {
			return &UnavailableError{err}
		}
		n++
	}
	if n > 0 {
		s.audit.Info("other sessions ended", zap.String("user", user), zap.Int("sessions", n), zap.String("reason", why), zap.String("outcome", "success"))
	}
	return nil
}

// newBackupCodes replaces the user's backup codes (r is saved by the caller).
func (s *Service) newBackupCodes(ctx context.Context, user string, r *record) ([]string, error) {
	codes, err := otp.NewBackupCodes(10)
	if err != nil {
		return nil, err
	}
	for _, h := range r.Backup {
		if err := s.store.Delete(ctx, "backup:"+user+":"+h); err != nil {
			return nil, &UnavailableError{err}
		}
	}
	r.Backup = r.Backup[:0]
	for _, c := range codes {
		norm, _ := otp.NormalizeBackupCode(c)
		h := hex.EncodeToString(s.codes.Hash("backup", user, norm))
		if err := s.store.Put(ctx, "backup:"+user+":"+h, []byte{1}, 0, s.now()); err != nil {
			return nil, &UnavailableError{err}
		}
		r.Backup = append(r.Backup, h)
	}
	return codes, nil
}

// RegenerateBackupCodes checks the password and issues 10 new backup codes;
// the old ones stop working. Backup codes are a second factor that lasts:
// while two-step is on this needs a recent second factor too (ErrStepUp,
// REQ-47).
func (s *Service) RegenerateBackupCodes(ctx context.Context, res *Resolved, password string, c Client) ([]string, error) {
	if res.Session.State != store.StateOneFactor && res.Session.State != store.StateTwoFactor {
		return nil, ErrForbidden
	}
	if err := s.requireFreshFactor(ctx, res); err != nil {
		return nil, err
	}
	if err := s.checkPassword(ctx, res, password, c); err != nil {
		return nil, err
	}
	user := res.Session.User
	// In the user's turn (see userGate), reading the record afresh: two
	// regenerations at once must not both replace the same old set, or
	// the one saved first would leave its codes stored and unlisted.
	locked, err := s.gate.lock(ctx, user, maxHashWait)
	if err != nil {
		return nil, err
	}
	unlock := sync.OnceFunc(locked)
	defer unlock()
	r, err := s.loadRecord(ctx, user)
	if err != nil {
		return nil, err
	}
	on := s.enabled(res.User, r)
	codes, err := s.newBackupCodes(ctx, user, r)
	if err != nil {
		return nil, err
	}
	r.BackupMadeOff = !on
	if err := s.saveRecord(ctx, user, r); err != nil {
		return nil, err
	}
	s.audit.Info("backup codes regenerated", zap.String("user", user), zap.String("ip", c.ip()), zap.String("outcome", "success"))
	unlock() // the user's turn is not held while the mail server answers
	s.mail(ctx, res.User, "New backup codes", "New backup codes were made for your account. The old ones no longer work.")
	return codes, nil
}

// checkPassword re-checks the signed-in user's password (regulated like
// sign-in).
func (s *Service) checkPassword(ctx context.Context, res *Resolved, password string, c Client) error {
	if res.External {
		// No password here: a fresh confirmation at the provider stands in.
		if !s.recentlyReauthenticated(res.Session) {
			return ErrReauthRequired
		}
		return nil
	}
	if password == "" {
		return &InvalidInputError{`Field "password" is required and must not be empty.`}
	}
	now := s.now()
	userKey := "reg:u:" + res.Session.User
	ipKey := "reg:ip:" + c.network()
	for _, k := range [...]string{userKey, ipKey} {
		if until, err := s.bannedUntil(ctx, k, now); err != nil {
			return &UnavailableError{err}
		} else if !until.IsZero() {
			return &RateLimitedError{RetryAfter: until.Sub(now)}
		}
	}
	ok, err := s.verify(ctx, res.User.Hash, password)
	if errors.Is(err, ErrBusy) {
		return err
	}
	if err != nil || !ok {
		if err := s.recordFailure(ctx, now, userKey, ipKey); err != nil {
			return &UnavailableError{err}
		}
		return ErrInvalidCredentials
	}
	return nil
}

// SetTwoStep turns two-step on (only once a method is confirmed) or off
// (with the password and a current code of any method).
func (s *Service) SetTwoStep(ctx context.Context, res *Resolved, enabled bool, password, code string, c Client) error {
	if res.Session.State != store.StateOneFactor && res.Session.State != store.StateTwoFactor {
		return ErrForbidden
	}
	user := res.Session.User
	r, err := s.loadRecord(ctx, user)
	if err != nil {
		return err
	}
	if enabled {
		if !s.hasConfirmedMethod(res.User, r) {
			return ErrConflict
		}
		if r.Enabled || s.cfg.TwoStepRequired {
			return nil
		}
		// In the user's turn, on the record as it is now: a stale copy
		// saved over a concurrent change (new backup codes, say) would
		// undo it.
		locked, err := s.gate.lock(ctx, user, maxHashWait)
		if err != nil {
			return err
		}
		unlock := sync.OnceFunc(locked)
		defer unlock()
		if r, err = s.loadRecord(ctx, user); err != nil {
			return err
		}
		if !s.hasConfirmedMethod(res.User, r) {
			return ErrConflict
		}
		if r.Enabled {
			return nil
		}
		// Backup codes made while two-step was off needed only the
		// password: they do not carry over into two-step on.
		dropped := r.BackupMadeOff && len(r.Backup) > 0
		if r.BackupMadeOff {
			for _, h := range r.Backup {
				if err := s.store.Delete(ctx, "backup:"+user+":"+h); err != nil {
					return &UnavailableError{err}
				}
			}
			r.Backup = nil
			r.BackupMadeOff = false
		}
		r.Enabled = true
		if err := s.saveRecord(ctx, user, r); err != nil {
			return err
		}
		if err := s.endOtherSessions(ctx, user, res.Session.ID, "two-step turned on"); err != nil {
			return err
		}
		s.audit.Info("two-step turned on", zap.String("user", user), zap.String("ip", c.ip()), zap.Bool("backup_codes_dropped", dropped), zap.String("outcome", "success"))
		body := "Two-step verification is now on for your account."
		if dropped {
			body += " Backup codes made while it was off no longer work: make new ones under Login & security."
		}
		unlock() // not held while the mail server answers
		s.mail(ctx, res.User, "Two-step verification is on", body)
		return nil
	}
	if s.cfg.TwoStepRequired {
		return ErrForbidden
	}
	if !s.enabled(res.User, r) {
		return nil
	}
	if code == "" {
		return &InvalidInputError{`Field "code" is required and must not be empty.`}
	}
	if err := s.checkPassword(ctx, res, password, c); err != nil {
		return err
	}
	// One code per user at a time, so that the lock counts every guess
	// before the next is looked at (see userGate).
	locked, err := s.gate.lock(ctx, user, maxHashWait)
	if err != nil {
		return err
	}
	unlock := sync.OnceFunc(locked)
	defer unlock()
	if err := s.factorLocked(ctx, user, c); err != nil {
		return err
	}
	// The record as it is now, in the user's turn.
	if r, err = s.loadRecord(ctx, user); err != nil {
		return err
	}
	if !s.enabled(res.User, r) {
		return nil
	}
	if err := s.anyFactor(ctx, res.User, r, res.Session.ID, code); err != nil {
		if errors.Is(err, ErrInvalidCode) || isTooManyTries(err) {
			if ferr := s.factorFailed(ctx, user, c); ferr != nil {
				return ferr
			}
		}
		return err
	}
	fresh, err := s.loadRecord(ctx, user)
	if err != nil {
		return err
	}
	fresh.Enabled = false
	if err := s.saveRecord(ctx, user, fresh); err != nil {
		return err
	}
	if err := s.revokeDevices(ctx, user, "two-step turned off"); err != nil {
		return err
	}
	s.audit.Info("two-step turned off", zap.String("user", user), zap.String("ip", c.ip()), zap.String("outcome", "success"))
	unlock() // not held while the mail server answers
	s.mail(ctx, res.User, "Two-step verification is off",
		"Two-step verification was turned off for your account. Your account is less secure without it: anyone with your password can now sign in. If this wasn't you, change your password and turn it back on.")
	return nil
}

// anyFactor accepts a current code of any of the user's methods: an
// authenticator code, an sms/voice/email code sent for this session
// (sessionID) on a channel that is still one of the user's methods, or a
// backup code.
func (s *Service) anyFactor(ctx context.Context, u *users.User, r *record, sessionID, code string) error {
	if len(r.TOTP) > 0 {
		if err := s.verifyFactor(ctx, u, r, sessionID, MethodTOTP, code); err == nil || !errors.Is(err, ErrInvalidCode) {
			return err
		}
	}
	if _, ok := otp.NormalizeCode(code, s.cfg.Code.Length); ok {
		rec, err := s.checkCode(ctx, users.Canonical(u.Name), "login", sessionID, "", code)
		if err == nil {
			if (rec.Channel == MethodSMS || rec.Channel == MethodVoice || rec.Channel == MethodEmail) &&
				slices.Contains(s.methodsOf(u, r), rec.Channel) {
				return nil
			}
			return ErrInvalidCode
		}
		if !errors.Is(err, ErrInvalidCode) {
			return err
		}
	}
	if len(r.Backup) > 0 {
		return s.verifyFactor(ctx, u, r, sessionID, MethodBackup, code)
	}
	return ErrInvalidCode
}

// mail tells the user about a change to their account, if email is
// configured and the user has an address. Failures are logged, not fatal.
func (s *Service) mail(ctx context.Context, u *users.User, subject, body string) {
	if s.senders.Email == nil || u.Email == "" {
		return
	}
	m := notify.Message{Channel: notify.ChannelEmail, To: u.Email, User: u.Name,
		Subject: subject, Body: body + "\n\n— " + s.cfg.SiteName}
	if err := s.senders.Email.Send(ctx, m); err != nil {
		s.log.Warn("account email not sent", zap.String("user", u.Name), zap.String("subject", subject), zap.Error(err))
	}
}
