// Package account holds twostep's use cases: signing in, resolving a
// session cookie, signing out. It knows nothing of HTTP or Caddy: the portal
// pages and the JSON API call the same methods.
package account

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/semaphore"

	"github.com/twostep-auth/twostep/internal/documents"
	"github.com/twostep-auth/twostep/internal/otp"
	"github.com/twostep-auth/twostep/internal/store"
	"github.com/twostep-auth/twostep/internal/users"
	"github.com/twostep-auth/twostep/policy"
)

// Errors the use cases return. Callers map them to HTTP answers.
var (
	// ErrInvalidCredentials: wrong password, unknown or disabled user.
	ErrInvalidCredentials = errors.New("invalid username or password")
	// ErrAccountLinked: the provider vouched for a user name that another
	// account at the provider (another sub), or at another provider for a
	// user who exists only upstream, signed in as first.
	ErrAccountLinked = errors.New("the user name belongs to another provider account")
	// ErrNoSession: the token names no live session.
	ErrNoSession = errors.New("no session")
	// ErrBusy: too many password hashes are queued; try again shortly.
	ErrBusy = errors.New("too many sign-ins at once")
)

// RateLimitedError says that the request was refused by regulation; retry
// after RetryAfter.
type RateLimitedError struct {
	RetryAfter time.Duration
	// tooManyTries: a one-time code died of wrong tries (send a new one).
	tooManyTries bool
}

// TooManyTries reports whether a code died of wrong tries.
func (e *RateLimitedError) TooManyTries() bool { return e.tooManyTries }

func (e *RateLimitedError) Error() string {
	return fmt.Sprintf("too many attempts; retry in %s", e.RetryAfter.Round(time.Second))
}

// UnavailableError wraps a store failure: the caller answers 503 and never
// allows the request.
type UnavailableError struct{ Err error }

func (e *UnavailableError) Error() string { return "store unavailable: " + e.Err.Error() }
func (e *UnavailableError) Unwrap() error { return e.Err }

// Directory is the source of users (the users file).
type Directory interface {
	DB() *users.DB
}

// Regulation bounds password guessing: MaxRetries failures within FindTime,
// per user and per client IP, ban for BanTime.
type Regulation struct {
	MaxRetries int
	FindTime   time.Duration
	BanTime    time.Duration
}

// Config is what the use cases need from the configuration.
type Config struct {
	// SessionIdle ends a session unused for this long.
	SessionIdle time.Duration
	// SessionLifetime ends a session this long after sign-in, used or not.
	SessionLifetime time.Duration
	// PendingLifetime bounds a half-signed-in session.
	PendingLifetime time.Duration
	Regulation      Regulation
	// Secret keys every derived key (session ids, CSRF tokens). ≥ 32 bytes.
	Secret []byte
	// MaxConcurrentHashes bounds password hashes in flight (default: CPU count);
	// MaxQueuedHashes bounds those waiting (default: 32 × that).
	MaxConcurrentHashes int
	MaxQueuedHashes     int

	// TwoStepRequired: every user must enrol a second factor.
	TwoStepRequired bool
	// TOTP settings: Issuer shown in authenticator apps, Skew steps of
	// tolerance either side.
	TOTP struct {
		Issuer string
		Skew   uint
	}
	// Code sets one-time codes.
	Code CodeConfig
	// SiteName is used in messages.
	SiteName string
	// TrustedDeviceLifetime is how long "don't ask again on this browser"
	// lasts. Default 30 days.
	TrustedDeviceLifetime time.Duration
	// Senders deliver codes and account emails.
	Senders Senders
	// Recovery sets the identity-check recovery.
	Recovery RecoveryConfig
	// Providers names the configured identity providers (oidc blocks), so
	// that reset-2sv can free a user's links to them.
	Providers []string
	// StoreIntact, when set, is asked before a sign-in goes on without a
	// second factor (the user has none in the store): a store that lost
	// its records reads as "two-step off", and an error here answers 503
	// instead.
	StoreIntact func(context.Context) error
}

// maxHashWait bounds how long a sign-in waits for a free password-hash
// slot before it is answered 503 with Retry-After.
const maxHashWait = 3 * time.Second

// TouchInterval is how often, at most, a session's LastSeen is written.
const TouchInterval = time.Minute

// Service runs the use cases.
type Service struct {
	cfg   Config
	store store.Store
	users Directory
	now   func() time.Time
	log   *zap.Logger
	audit *zap.Logger

	// view is the store's shared, read-only side (the cache), if it has one.
	view viewer
	// touching holds the ids of the sessions being touched (startTouch).
	touching sync.Map

	sessionKey []byte
	csrfKey    []byte
	deviceKey  []byte
	logKey     []byte
	macPool    sync.Pool

	// hashSlots are MaxConcurrentHashes slots of hashSlotKiB each (hashWeight).
	hashSlots *semaphore.Weighted
	queued    atomic.Int64
	// gate runs one sign-in step per user at a time (see userGate).
	gate userGate

	seal    *sealer
	codes   *otp.Hasher
	senders Senders
	vault   *documents.Vault
	// inspectSlot lets one recovery upload be decoded at a time;
	// uploadSlots bounds those being read (UploadSlot).
	inspectSlot chan struct{}
	uploadSlots chan struct{}
	metrics     Metrics
}

// New returns a Service. now may be nil (time.Now).
func New(cfg Config, st store.Store, dir Directory, now func() time.Time, log *zap.Logger) (*Service, error) {
	if len(cfg.Secret) < 32 {
		return nil, errors.New("account: secret must be at least 32 bytes")
	}
	if st == nil || dir == nil {
		return nil, errors.New("account: store and users are required")
	}
	if cfg.SessionLifetime <= 0 || cfg.SessionIdle <= 0 {
		return nil, errors.New("account: session idle and lifetime must be positive")
	}
	if cfg.PendingLifetime <= 0 {
		cfg.PendingLifetime = 15 * time.Minute
	}
	if cfg.PendingLifetime > cfg.SessionLifetime {
		cfg.PendingLifetime = cfg.SessionLifetime
	}
	if cfg.Regulation.MaxRetries <= 0 || cfg.Regulation.FindTime <= 0 || cfg.Regulation.BanTime <= 0 {
		return nil, errors.New("account: regulation max_retries, find_time and ban_time must be positive")
	}
	if cfg.MaxConcurrentHashes <= 0 {
		cfg.MaxConcurrentHashes = runtime.NumCPU()
	}
	if cfg.MaxQueuedHashes <= 0 {
		cfg.MaxQueuedHashes = 32 * cfg.MaxConcurrentHashes
	}
	if now == nil {
		now = time.Now
	}
	if cfg.Code.Length == 0 {
		cfg.Code.Length = 6
	}
	if cfg.Code.Lifetime <= 0 {
		cfg.Code.Lifetime = 10 * time.Minute
	}
	if cfg.Code.ResendAfter <= 0 {
		cfg.Code.ResendAfter = 30 * time.Second
	}
	if cfg.Code.MaxSendsPerHour <= 0 {
		cfg.Code.MaxSendsPerHour = 5
	}
	if cfg.TOTP.Issuer == "" {
		cfg.TOTP.Issuer = cfg.SiteName
	}
	if cfg.TOTP.Issuer == "" {
		cfg.TOTP.Issuer = "twostep"
	}
	if cfg.SiteName == "" {
		cfg.SiteName = "twostep"
	}
	if cfg.TrustedDeviceLifetime <= 0 {
		cfg.TrustedDeviceLifetime = 30 * 24 * time.Hour
	}
	if log == nil {
		log = zap.NewNop()
	}
	s := &Service{
		cfg:         cfg,
		store:       st,
		users:       dir,
		now:         now,
		log:         log,
		audit:       log.Named("audit"),
		sessionKey:  deriveKey(cfg.Secret, "twostep session id v1"),
		csrfKey:     deriveKey(cfg.Secret, "twostep csrf v1"),
		deviceKey:   deriveKey(cfg.Secret, "twostep device v1"),
		logKey:      deriveKey(cfg.Secret, "twostep log tags v1"),
		hashSlots:   semaphore.NewWeighted(int64(cfg.MaxConcurrentHashes)),
		inspectSlot: make(chan struct{}, 1),
		uploadSlots: make(chan struct{}, maxUploads),
		metrics:     noMetrics{},
	}
	s.macPool.New = func() any { return &sessionMAC{h: hmac.New(sha256.New, s.sessionKey)} }
	s.view, _ = st.(viewer)
	var err error
	if s.seal, err = newSealer(cfg.Secret); err != nil {
		return nil, err
	}
	if s.codes, err = otp.NewHasher(deriveKey(cfg.Secret, "twostep codes v1")); err != nil {
		return nil, err
	}
	s.senders = cfg.Senders
	if s.vault, err = documents.NewVault(deriveKey(cfg.Secret, "twostep documents v1")); err != nil {
		return nil, err
	}
	r := &s.cfg.Recovery
	if r.Approvals <= 0 {
		r.Approvals = 1
	}
	if r.MaxSize <= 0 {
		r.MaxSize = 10 << 20
	}
	if r.Expected == "" {
		r.Expected = "about two days"
	}
	if r.Retention <= 0 {
		r.Retention = 7 * 24 * time.Hour
	}
	if r.AfterApproval == "" {
		r.AfterApproval = "password_only"
	}
	if r.Expiry <= 0 {
		r.Expiry = 30 * 24 * time.Hour
	}
	if r.MaxPerAccount <= 0 {
		r.MaxPerAccount = 10
	}
	if r.MaxPerIP <= 0 {
		r.MaxPerIP = 30
	}
	return s, nil
}

// SetTOTP sets the authenticator issuer name and the accepted skew.
func (s *Service) SetTOTP(issuer string, skew uint) {
	if issuer != "" {
		s.cfg.TOTP.Issuer = issuer
	}
	s.cfg.TOTP.Skew = skew
}

// SetAuditLogger replaces the audit logger (named twostep.audit by Caddy glue).
func (s *Service) SetAuditLogger(l *zap.Logger) {
	if l != nil {
		s.audit = l
	}
}

func deriveKey(secret []byte, label string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(label))
	return m.Sum(nil)
}

// Now is the service's clock.
func (s *Service) Now() time.Time { return s.now() }

// Client describes where a request comes from (for regulation and audit).
type Client struct {
	IP        netip.Addr
	UserAgent string
	// Device is this browser's trusted-device cookie, if any.
	Device string
	// Base is the site's scheme://host[:port], for links in emails: one of
	// its configured names, never a Host the client chose; "" leaves the
	// links out.
	Base string
}

func (c Client) ip() string {
	if !c.IP.IsValid() {
		return "unknown"
	}
	return c.IP.String()
}

// network is what per-address limits count: the address itself for IPv4,
// its /64 for IPv6 (one client usually holds a whole /64 and could
// otherwise take a fresh address for every guess).
func (c Client) network() string {
	if !c.IP.IsValid() {
		return "unknown"
	}
	if ip := c.IP.Unmap(); ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return c.IP.String()
}

// SignInResult is a successful password check.
type SignInResult struct {
	// Token is the new session cookie value (never stored).
	Token   string
	Session *store.Session
	User    *users.User
	// Methods lists the second factors on offer (state second_factor).
	Methods []string
	// OfferTwoStep: an approved recovery turned two-step off; offer to
	// turn it on again.
	OfferTwoStep bool
}

// SignIn checks a password and issues a new session (a new token every time:
// no fixation). Errors: ErrInvalidCredentials, *RateLimitedError, ErrBusy,
// *UnavailableError.
func (s *Service) SignIn(ctx context.Context, username, password string, c Client) (*SignInResult, error) {
	now := s.now()
	name := users.Canonical(username)
	if name == "" || password == "" || len(username) > 256 || len(password) > 1024 {
		return nil, ErrInvalidCredentials
	}
	db := s.users.DB()
	u, known := db.Lookup(name)
	// A name nobody has is often a password typed into the wrong field:
	// logs and counter keys hold a keyed tag of it, never the text.
	who, userKey := zap.String("user", name), "reg:u:"+name
	if !known {
		tag := s.nameTag(name)
		who, userKey = zap.String("unknown_user", tag), "reg:u:?"+tag
	}
	ipKey := "reg:ip:" + c.network()
	// One attempt per user at a time: each sees the failures (and the ban)
	// the ones before it recorded, so concurrent guesses stop at the ban.
	unlock, err := s.gate.lock(ctx, name, maxHashWait)
	if err != nil {
		return nil, err
	}
	defer unlock()
	// A ban answers the same whatever the password: check it first.
	if err := s.refuseBanned(ctx, now, who, c, userKey, ipKey); err != nil {
		return nil, err
	}

	hashToCheck := db.DummyHash()
	if known {
		hashToCheck = u.Hash
	}
	ok, err := s.verify(ctx, hashToCheck, password)
	if err != nil {
		if errors.Is(err, ErrBusy) {
			return nil, err
		}
		// A malformed hash is refused like a wrong password, and logged.
		s.log.Warn("password hash could not be checked", who, zap.Error(err))
		ok = false
	}
	if !known || u.Disabled || !ok {
		if err := s.recordFailure(ctx, now, userKey, ipKey); err != nil {
			return nil, &UnavailableError{err}
		}
		reason := "bad_password"
		if !known {
			reason = "unknown_user"
		} else if u.Disabled {
			reason = "disabled"
		}
		s.audit.Info("sign-in failed", who, zap.String("ip", c.ip()),
			zap.String("user_agent", c.UserAgent), zap.String("outcome", reason))
		s.metrics.SignIn("password", "failure")
		return nil, ErrInvalidCredentials
	}
	// The user (on another node) or the address (by guesses for other
	// users, which run beside this one) may have been banned while this
	// hash ran: a right guess among a burst of them still stops there.
	if err := s.refuseBanned(ctx, now, who, c, userKey, ipKey); err != nil {
		return nil, err
	}
	if err := s.store.Delete(ctx, "fail:"+userKey); err != nil {
		return nil, &UnavailableError{err}
	}

	state, err := s.stateAfterPassword(ctx, u)
	if err != nil {
		return nil, err
	}
	lifetime := s.cfg.SessionLifetime
	if state == store.StateSecondFactor || state == store.StateEnrollment {
		lifetime = s.cfg.PendingLifetime
	}
	token, id, err := s.newToken()
	if err != nil {
		return nil, err
	}
	sess := &store.Session{
		ID:         id,
		User:       name,
		State:      state,
		Created:    now,
		LastSeen:   now,
		Expires:    now.Add(lifetime),
		Idle:       s.cfg.SessionIdle,
		Credential: u.Credential,
		IP:         c.ip(),
		UserAgent:  truncate(c.UserAgent, 256),
	}
	if state == store.StateSecondFactor && c.Device != "" {
		// A trusted device stands in for the second factor.
		d, h, err := s.checkDevice(ctx, u, c.Device)
		if err != nil {
			return nil, err
		}
		live := d != nil
		if live {
			if live, err = s.touchDevice(ctx, d, h, c); err != nil {
				return nil, err
			}
		}
		if live {
			sess.State = store.StateTwoFactor
			sess.Device = h
			sess.SecondFactorAt = d.Created
			sess.Expires = now.Add(s.cfg.SessionLifetime)
			s.audit.Info("trusted device used", zap.String("user", name), zap.String("device", d.ID), zap.String("ip", c.ip()), zap.String("outcome", "success"))
			s.metrics.SignIn("device", "success")
		}
	}
	if err := s.store.PutSession(ctx, sess); err != nil {
		return nil, &UnavailableError{err}
	}
	if err := s.settleOneFactor(ctx, u, sess); err != nil {
		return nil, err
	}
	s.audit.Info("signed in", zap.String("user", name), zap.String("ip", c.ip()),
		zap.String("user_agent", c.UserAgent), zap.String("outcome", "success"),
		zap.String("level", sess.State.String()))
	s.metrics.SignIn("password", "success")
	out := &SignInResult{Token: token, Session: sess, User: u}
	if sess.State == store.StateOneFactor {
		if _, err := s.store.Take(ctx, "offer-2sv:"+name, now); err == nil {
			out.OfferTwoStep = true
		} else if !errors.Is(err, store.ErrNotFound) {
			return nil, &UnavailableError{err}
		}
	}
	if sess.State == store.StateSecondFactor {
		if out.Methods, err = s.Methods(ctx, u); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// hashSlotKiB is the memory one hash slot stands for: argon2id's usual 64
// MiB. A heavier hash takes more slots, so that the hashes in flight hold at
// most MaxConcurrentHashes × 64 MiB between them; one heavier than all the
// slots together runs alone. Unknown names are checked against the users
// file's most common parameters, so what they cost is the operator's choice,
// but how many run at once is not the attacker's.
const hashSlotKiB = 64 << 10

// hashWeight is how many slots verifying hash takes (1 to all of them).
func (s *Service) hashWeight(hash string) int64 {
	w := int64((users.HashMemoryKiB(hash) + hashSlotKiB - 1) / hashSlotKiB)
	return min(max(w, 1), int64(s.cfg.MaxConcurrentHashes))
}

// verify runs a password hash within the concurrency and memory bound.
func (s *Service) verify(ctx context.Context, hash, password string) (bool, error) {
	if s.queued.Add(1) > int64(s.cfg.MaxQueuedHashes+s.cfg.MaxConcurrentHashes) {
		s.queued.Add(-1)
		return false, ErrBusy
	}
	defer s.queued.Add(-1)
	wait, cancel := context.WithTimeout(ctx, maxHashWait)
	defer cancel()
	w := s.hashWeight(hash)
	if err := s.hashSlots.Acquire(wait, w); err != nil {
		return false, ErrBusy // queued too long (or the client left): come back later
	}
	defer s.hashSlots.Release(w)
	return users.Verify(hash, password)
}

// refuseBanned answers a sign-in whose user or address is banned: a
// *RateLimitedError, audited and counted (nil when neither is).
func (s *Service) refuseBanned(ctx context.Context, now time.Time, who zap.Field, c Client, keys ...string) error {
	for _, k := range keys {
		if until, err := s.bannedUntil(ctx, k, now); err != nil {
			return &UnavailableError{err}
		} else if !until.IsZero() {
			s.audit.Info("sign-in refused", who, zap.String("ip", c.ip()),
				zap.String("user_agent", c.UserAgent), zap.String("outcome", "banned"))
			s.metrics.SignIn("password", "banned")
			return &RateLimitedError{RetryAfter: until.Sub(now)}
		}
	}
	return nil
}

func (s *Service) bannedUntil(ctx context.Context, key string, now time.Time) (time.Time, error) {
	v, err := s.store.Get(ctx, "ban:"+key, now)
	if errors.Is(err, store.ErrNotFound) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, err
	}
	ns, err := strconv.ParseInt(string(v), 10, 64)
	if err != nil {
		// An unreadable ban record is a ban (deny on doubt) for its TTL.
		return now.Add(s.cfg.Regulation.BanTime), nil
	}
	until := time.Unix(0, ns)
	if !until.After(now) {
		return time.Time{}, nil
	}
	return until, nil
}

// settleOneFactor looks again, once a password-only session is stored, at
// whether it may be one. Another node may have turned two-step on (or
// required enrolment) after stateAfterPassword read "off": that node ended
// the sessions it could see, and this one was not stored yet. Looking after
// the write closes the gap: either this read sees the change, or the other
// node's sweep saw this session. The session then asks for what the account
// needs now. Deny when in doubt: a failed read ends the session.
func (s *Service) settleOneFactor(ctx context.Context, u *users.User, sess *store.Session) error {
	if sess.State != store.StateOneFactor {
		return nil
	}
	state, err := s.stateAfterPassword(ctx, u)
	if err == nil && state == store.StateOneFactor {
		return nil
	}
	if err == nil {
		sess.State = state
		sess.Expires = sess.Created.Add(s.cfg.PendingLifetime)
		if err = s.store.PutSession(ctx, sess); err != nil {
			err = &UnavailableError{err}
		}
	}
	if err != nil {
		_ = s.store.DeleteSession(ctx, sess.ID)
		return err
	}
	return nil
}

func (s *Service) recordFailure(ctx context.Context, now time.Time, keys ...string) error {
	r := s.cfg.Regulation
	for _, k := range keys {
		n, _, err := s.store.Incr(ctx, "fail:"+k, r.FindTime, now)
		if err != nil {
			return err
		}
		if n >= int64(r.MaxRetries) {
			until := now.Add(r.BanTime)
			if err := s.store.Put(ctx, "ban:"+k, []byte(strconv.FormatInt(until.UnixNano(), 10)), r.BanTime, now); err != nil {
				return err
			}
			if err := s.store.Delete(ctx, "fail:"+k); err != nil {
				return err
			}
			s.audit.Warn("regulation ban", zap.String("key", k), zap.Time("until", until))
		}
	}
	return nil
}

// nameTag is a keyed tag of a sign-in name that no user has: the same for
// the same name (so the audit log still shows one name tried many times),
// and not the name, which may be a password typed into the wrong field.
func (s *Service) nameTag(name string) string {
	m := hmac.New(sha256.New, s.logKey)
	m.Write([]byte(name))
	return hex.EncodeToString(m.Sum(nil)[:8])
}

// newToken returns a 256-bit random token and its session id.
func (s *Service) newToken() (token, id string, err error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", err
	}
	token = base64.RawURLEncoding.EncodeToString(b[:])
	return token, s.sessionID(b[:]), nil
}

// sessionMAC is a keyed hash with room for its input and output, reused
// through a pool so that hashing a cookie allocates nothing.
type sessionMAC struct {
	h   hash.Hash
	raw [32]byte
	sum [sha256.Size]byte
}

// id is the keyed hash of raw, hex-encoded.
func (m *sessionMAC) id(raw []byte) string {
	m.h.Reset()
	m.h.Write(raw)
	return hexString(m.h.Sum(m.sum[:0]))
}

// sessionID is the keyed hash of the raw token bytes, hex-encoded.
func (s *Service) sessionID(raw []byte) string {
	m := s.macPool.Get().(*sessionMAC)
	defer s.macPool.Put(m)
	return m.id(raw)
}

// hexString is hex.EncodeToString with one allocation instead of two.
func hexString(b []byte) string {
	var buf [2 * sha256.Size]byte
	if len(b) > sha256.Size {
		return hex.EncodeToString(b)
	}
	n := hex.Encode(buf[:], b)
	return string(buf[:n])
}

// tokenID decodes a cookie token and returns its session id; ok is false for
// anything that is not a well-formed token.
func (s *Service) tokenID(token string) (string, bool) {
	if len(token) != 43 {
		return "", false
	}
	var src [43]byte
	copy(src[:], token)
	m := s.macPool.Get().(*sessionMAC)
	defer s.macPool.Put(m)
	n, err := tokenEncoding.Decode(m.raw[:], src[:])
	if err != nil || n != 32 {
		return "", false
	}
	return m.id(m.raw[:]), true
}

// Resolved is a live session with its user as the users file says now.
type Resolved struct {
	Session *store.Session
	User    *users.User
	// External: the user exists only at the identity provider (no entry in
	// the users file); User is then this request's own value.
	External bool
}

// Subject turns a resolved session (or nil) into what policy decides on.
func (r *Resolved) Subject() policy.Subject {
	if r == nil || r.Session == nil || r.User == nil {
		return policy.Subject{State: policy.Stranger}
	}
	sub := policy.Subject{
		User:             r.User.Name,
		Groups:           r.User.Groups,
		SecondFactorAt:   r.Session.SecondFactorAt,
		ViaTrustedDevice: r.Session.Device != "",
	}
	switch r.Session.State {
	case store.StateSecondFactor:
		sub.State = policy.HalfSignedIn
	case store.StateEnrollment:
		sub.State = policy.Enrolling
	case store.StateOneFactor:
		sub.State = policy.SignedInOneFactor
	case store.StateTwoFactor:
		sub.State = policy.SignedInTwoFactor
	default:
		sub.State = policy.Stranger
	}
	return sub
}

// Resolve finds the live session for a cookie token. ErrNoSession when there
// is none (bad token, expired, user gone or disabled, password changed);
// *UnavailableError when the store fails. The session is the caller's own
// copy.
func (s *Service) Resolve(ctx context.Context, token string) (*Resolved, error) {
	res, err := s.resolve(ctx, token, false)
	if err != nil {
		return nil, err
	}
	return &res, nil
}

// ResolveShared is Resolve for the request path: it allocates nothing of
// its own, and res.Session may be shared with the store's cache and other
// requests, so it must not be modified.
func (s *Service) ResolveShared(ctx context.Context, token string) (Resolved, error) {
	return s.resolve(ctx, token, true)
}

// startTouch reports whether this request is the one to touch session id
// (none other is doing it now); it must then call s.touching.Delete(id).
// Without it, the requests of a busy session that arrive in the same
// instant after a minute would all write the same touch.
func (s *Service) startTouch(id string) bool {
	_, busy := s.touching.LoadOrStore(id, struct{}{})
	return !busy
}

// viewer is what a cache in front of the store offers the request path:
// answers shared with other callers, never to be modified (cache.Store).
type viewer interface {
	ViewSession(ctx context.Context, id string, now time.Time) (*store.Session, error)
	View(ctx context.Context, prefix, name string, now time.Time, decode func([]byte) (any, error)) (any, error)
}

func (s *Service) resolve(ctx context.Context, token string, shared bool) (Resolved, error) {
	id, ok := s.tokenID(token)
	if !ok {
		return Resolved{}, ErrNoSession
	}
	now := s.now()
	// mine: sess is this call's own copy (else it is the cache's, shared).
	var sess *store.Session
	var err error
	mine := s.view == nil
	if mine {
		sess, err = s.store.GetSession(ctx, id, now)
	} else {
		sess, err = s.view.ViewSession(ctx, id, now)
	}
	if errors.Is(err, store.ErrNotFound) {
		return Resolved{}, ErrNoSession
	}
	if err != nil {
		return Resolved{}, &UnavailableError{err}
	}
	u, known := s.users.DB().Lookup(sess.User)
	external := false
	if !known && strings.HasPrefix(sess.Credential, "oidc:") {
		// A user who exists only at the identity provider.
		ext, err := s.externalUser(ctx, sess)
		if err != nil {
			return Resolved{}, err
		}
		u, known, external = ext, ext != nil, true
	}
	if !known || u.Disabled || !hmac.Equal([]byte(u.Credential), []byte(sess.Credential)) {
		// The account changed under the session: end it.
		if err := s.store.DeleteSession(ctx, id); err != nil {
			return Resolved{}, &UnavailableError{err}
		}
		return Resolved{}, ErrNoSession
	}
	if sess.Device != "" {
		// A session that a trusted device raised lives only as long as the
		// device: revocation takes effect on the very next request.
		ok, err := s.deviceLive(ctx, u, sess.Device)
		if err != nil {
			return Resolved{}, err
		}
		if !ok {
			sess, mine = sess.Clone(), true
			sess.State, sess.Device, sess.SecondFactorAt = store.StateSecondFactor, "", time.Time{}
			// Half signed in now: no longer than any pending session.
			if end := now.Add(s.cfg.PendingLifetime); sess.Expires.After(end) {
				sess.Expires = end
			}
			// Replace, never create: a sign-out that ended the session
			// meanwhile stays final.
			if err := s.store.ReplaceSession(ctx, sess); errors.Is(err, store.ErrNotFound) {
				return Resolved{}, ErrNoSession
			} else if err != nil {
				return Resolved{}, &UnavailableError{err}
			}
		}
	}
	if now.Sub(sess.LastSeen) >= TouchInterval && s.startTouch(id) {
		// One request per session touches it; the others that arrive
		// meanwhile go on with the session as read (it is live at now).
		err := s.store.TouchSession(ctx, id, now)
		s.touching.Delete(id)
		if err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return Resolved{}, ErrNoSession
			}
			return Resolved{}, &UnavailableError{err}
		}
		if !mine {
			sess, mine = sess.Clone(), true
		}
		sess.LastSeen = now
	}
	if !shared && !mine {
		sess = sess.Clone()
	}
	return Resolved{Session: sess, User: u, External: external}, nil
}

// SignOut ends the session of token (a missing one is not an error).
func (s *Service) SignOut(ctx context.Context, token string, c Client) error {
	id, ok := s.tokenID(token)
	if !ok {
		return nil
	}
	sess, err := s.store.GetSession(ctx, id, s.now())
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return &UnavailableError{err}
	}
	if err := s.store.DeleteSession(ctx, id); err != nil {
		return &UnavailableError{err}
	}
	if sess != nil {
		s.audit.Info("signed out", zap.String("user", sess.User), zap.String("ip", c.ip()),
			zap.String("user_agent", c.UserAgent), zap.String("outcome", "success"))
	}
	return nil
}

// CSRFToken returns the form token bound to a browser's CSRF cookie value.
func (s *Service) CSRFToken(cookie string) string {
	m := hmac.New(sha256.New, s.csrfKey)
	m.Write([]byte(cookie))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// CheckCSRF reports whether token matches the CSRF cookie (constant time).
func (s *Service) CheckCSRF(cookie, token string) bool {
	if len(cookie) < 32 || token == "" {
		return false
	}
	return hmac.Equal([]byte(s.CSRFToken(cookie)), []byte(token))
}

// NewRandom returns n random bytes, base64url-encoded (CSRF cookies and the like).
func NewRandom(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// tokenEncoding is strict so that exactly one spelling decodes to a token.
var tokenEncoding = base64.RawURLEncoding.Strict()
