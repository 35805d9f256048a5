package account

import (
	"context"
	"crypto/hmac"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/twostep-auth/twostep/internal/store"
	"github.com/twostep-auth/twostep/internal/users"
)

// ExternalIdentity is a user an upstream identity provider vouched for.
type ExternalIdentity struct {
	// Provider is the configured provider's name; Subject its user id.
	Provider, Subject     string
	Username, Email, Name string
	Groups                []string
	// MFA: the provider says it used more than a password, and the
	// configuration trusts it (trust_idp_mfa).
	MFA bool
	// AuthTime is when the provider last asked the user for credentials
	// (auth_time; zero when it did not say). A trusted provider MFA counts
	// as given then, for max_age step-up.
	AuthTime time.Time
	// AllowUnknown accepts users that are not in the users file.
	AllowUnknown bool
}

func externalKey(user string) string { return "extuser:" + user }

// linkKey holds the subject of the provider account that signs in as a
// local user at that provider; ownerKey the provider account that owns a
// user name that exists only upstream.
func linkKey(provider, user string) string { return "oidc-link:" + provider + ":" + user }
func ownerKey(user string) string          { return "oidc-owner:" + user }

// bindExternal ties a user name to the first provider account that signs
// in as it, and refuses any other (OIDC Core 5.7: a provider's user name
// may be reassigned or chosen by its users; only iss and sub identify an
// account). A local user may use several providers, each with its own
// account; a name that exists only upstream has one owner, whatever the
// provider. reset-2sv frees the bindings.
//
// For a local user, linked reports whether this account is already the
// one bound; an unbound name is bound only with commit (see
// SignInExternal: not before the user's own second factor when two-step
// is on, or anyone whose provider account bears the name could take it
// and lock its owner out).
func (s *Service) bindExternal(ctx context.Context, id ExternalIdentity, name string, known, commit bool, c Client) (linked bool, err error) {
	key, want := linkKey(id.Provider, name), id.Subject
	if !known {
		key, want = ownerKey(name), id.Provider+"\x00"+id.Subject
		commit = true
	}
	var stored []byte
	if commit {
		var created bool
		stored, created, err = s.store.PutIfAbsent(ctx, key, []byte(want), 0, s.now())
		if err != nil {
			return false, &UnavailableError{err}
		}
		if created {
			return false, nil
		}
	} else {
		stored, err = s.store.Get(ctx, key, s.now())
		if errors.Is(err, store.ErrNotFound) {
			return false, nil
		}
		if err != nil {
			return false, &UnavailableError{err}
		}
	}
	if !hmac.Equal(stored, []byte(want)) {
		s.audit.Warn("sign-in refused", zap.String("user", name), zap.String("provider", id.Provider),
			zap.String("subject", id.Subject), zap.String("ip", c.ip()), zap.String("outcome", "other_provider_account"))
		s.metrics.SignIn("oidc", "failure")
		return false, ErrAccountLinked
	}
	return true, nil
}

// linkPending is the half-signed-in session's Pending entry holding the
// subject of a provider account to bind once the second factor passes.
const linkPending = "link"

// commitPendingLink binds the provider account a half-signed-in session
// came with, now that the user passed their own second factor.
func (s *Service) commitPendingLink(ctx context.Context, sess *store.Session, c Client) error {
	prov, sub := sess.Pending["provider"], sess.Pending[linkPending]
	if prov == "" || sub == "" {
		return nil
	}
	_, err := s.bindExternal(ctx, ExternalIdentity{Provider: prov, Subject: sub}, sess.User, true, true, c)
	return err
}

// externalCredential marks sessions of users that exist only upstream.
func externalCredential(provider, subject string) string {
	return "oidc:" + provider + ":" + subject
}

// SignInExternal issues a session for a user the provider authenticated,
// as SignIn does for a password: the user's own two-step state still
// applies, unless the provider's MFA is trusted.
func (s *Service) SignInExternal(ctx context.Context, id ExternalIdentity, c Client) (*SignInResult, error) {
	now := s.now()
	name := users.Canonical(id.Username)
	// The name a provider gives must be one the users file could hold:
	// names with ':' are the shell operator's ("operator:root") in the
	// recovery approvals and the audit log.
	if name == "" || users.CheckName(name) != nil {
		return nil, ErrInvalidCredentials
	}
	u, known := s.users.DB().Lookup(name)
	switch {
	case known && u.Disabled:
		s.audit.Info("sign-in failed", zap.String("user", name), zap.String("provider", id.Provider), zap.String("ip", c.ip()), zap.String("outcome", "disabled"))
		return nil, ErrInvalidCredentials
	case !known && !id.AllowUnknown:
		s.audit.Info("sign-in failed", zap.String("user", name), zap.String("provider", id.Provider), zap.String("ip", c.ip()), zap.String("outcome", "unknown_user"))
		return nil, ErrInvalidCredentials
	}
	linked, err := s.bindExternal(ctx, id, name, known, false, c)
	if err != nil {
		return nil, err
	}
	if !known {
		u = &users.User{Name: name, DisplayName: id.Name, Email: id.Email, Groups: id.Groups,
			Credential: externalCredential(id.Provider, id.Subject)}
		b, _ := json.Marshal(u)
		if err := s.store.Put(ctx, externalKey(name), b, s.cfg.SessionLifetime, now); err != nil {
			return nil, &UnavailableError{err}
		}
	}
	state, err := s.stateAfterPassword(ctx, u)
	if err != nil {
		return nil, err
	}
	// A local user with two-step on binds a provider account only by
	// passing their own second factor once; until then the provider's
	// MFA is that account's, not the user's, and does not count.
	pendingLink := known && !linked && state == store.StateSecondFactor
	mfa := id.MFA && !pendingLink
	if known && !linked && !pendingLink {
		if _, err := s.bindExternal(ctx, id, name, known, true, c); err != nil {
			return nil, err
		}
	}
	lifetime := s.cfg.SessionLifetime
	if state == store.StateSecondFactor && mfa {
		state = store.StateTwoFactor // the provider's second factor counts
	}
	if state == store.StateOneFactor && mfa {
		state = store.StateTwoFactor
	}
	if state == store.StateSecondFactor || state == store.StateEnrollment {
		lifetime = s.cfg.PendingLifetime
	}
	token, sid, err := s.newToken()
	if err != nil {
		return nil, err
	}
	sess := &store.Session{
		ID: sid, User: name, State: state, Created: now, LastSeen: now, Expires: now.Add(lifetime),
		Idle: s.cfg.SessionIdle, Credential: u.Credential, IP: c.ip(), UserAgent: truncate(c.UserAgent, 256),
		Pending: map[string]string{"provider": id.Provider},
	}
	if pendingLink {
		sess.Pending[linkPending] = id.Subject
	}
	if state == store.StateTwoFactor {
		sess.SecondFactorAt = now
		if mfa {
			// The provider's MFA happened at its auth_time, not now; without
			// one, a max_age rule asks again (zero is "too long ago").
			sess.SecondFactorAt = time.Time{}
			if !id.AuthTime.IsZero() && !id.AuthTime.After(now) {
				sess.SecondFactorAt = id.AuthTime
			}
		}
	}
	// A trusted browser stands in for the second factor only after the
	// user's own first factor: not for a provider account that is not yet
	// theirs, which a code of theirs must bind first (else anyone who
	// names a provider account after the user and reaches their browser
	// once would be them there, and bound to them everywhere).
	if state == store.StateSecondFactor && c.Device != "" && !pendingLink {
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
			// The browser passed the user's second factor before.
			sess.State, sess.Device, sess.SecondFactorAt = store.StateTwoFactor, h, d.Created
			sess.Expires = now.Add(s.cfg.SessionLifetime)
		}
	}
	if err := s.store.PutSession(ctx, sess); err != nil {
		return nil, &UnavailableError{err}
	}
	if err := s.settleOneFactor(ctx, u, sess); err != nil {
		return nil, err
	}
	if mfa && sess.State == store.StateTwoFactor && sess.Device == "" {
		// The provider's MFA is the second factor here: whoever passed it
		// still has it and needs no recovery (SPEC §4), as after a code.
		if err := s.cancelOpenRecovery(ctx, name, "you signed in with your identity provider's two-step verification"); err != nil {
			return nil, err
		}
	}
	s.metrics.SignIn("oidc", "success")
	s.audit.Info("signed in", zap.String("user", name), zap.String("provider", id.Provider), zap.Bool("provider_mfa", mfa),
		zap.String("ip", c.ip()), zap.String("user_agent", c.UserAgent), zap.String("outcome", "success"), zap.String("level", sess.State.String()))
	out := &SignInResult{Token: token, Session: sess, User: u}
	if sess.State == store.StateSecondFactor {
		if out.Methods, err = s.Methods(ctx, u); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// externalUser returns the record of a user who exists only upstream, for
// a session whose credential says so.
func (s *Service) externalUser(ctx context.Context, sess *store.Session) (*users.User, error) {
	if !strings.HasPrefix(sess.Credential, "oidc:") {
		return nil, nil
	}
	b, err := s.store.Get(ctx, externalKey(sess.User), s.now())
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, &UnavailableError{err}
	}
	var u users.User
	if json.Unmarshal(b, &u) != nil || u.Credential != sess.Credential {
		return nil, nil
	}
	return &u, nil
}

// ReauthWindow is how long a confirmation at the identity provider stands
// in for the password of a user who has none here.
const ReauthWindow = 5 * time.Minute

// reauthKey is the session's Pending entry holding when the provider last
// confirmed its user (unix nanoseconds).
const reauthKey = "reauth"

// Reauthenticated records on res's session that its provider has just
// asked the user for their credentials again (the identity id came from a
// re-authentication flow, checked for a fresh auth_time). For ReauthWindow
// that confirms the actions that ask a password of users who have one
// (turning two-step off, new backup codes). Only for users who exist only
// at the provider, signed in, and only by the same provider account:
// ErrForbidden otherwise.
func (s *Service) Reauthenticated(ctx context.Context, res *Resolved, id ExternalIdentity, c Client) error {
	if res == nil || res.Session == nil || !res.External ||
		(res.Session.State != store.StateOneFactor && res.Session.State != store.StateTwoFactor) {
		return ErrForbidden
	}
	if res.Session.Credential != externalCredential(id.Provider, id.Subject) {
		s.audit.Warn("re-authentication refused", zap.String("user", res.Session.User), zap.String("provider", id.Provider),
			zap.String("ip", c.ip()), zap.String("outcome", "other_account"))
		return ErrForbidden
	}
	now := s.now()
	next := res.Session.Clone()
	if next.Pending == nil {
		next.Pending = map[string]string{}
	}
	next.Pending[reauthKey] = strconv.FormatInt(now.UnixNano(), 10)
	if err := s.store.ReplaceSession(ctx, next); errors.Is(err, store.ErrNotFound) {
		return ErrNoSession
	} else if err != nil {
		return &UnavailableError{err}
	}
	res.Session = next
	s.audit.Info("re-authenticated", zap.String("user", next.User), zap.String("provider", id.Provider),
		zap.String("ip", c.ip()), zap.String("outcome", "success"))
	return nil
}

// recentlyReauthenticated reports whether sess was confirmed at its
// provider within ReauthWindow (and not in the future).
func (s *Service) recentlyReauthenticated(sess *store.Session) bool {
	n, err := strconv.ParseInt(sess.Pending[reauthKey], 10, 64)
	if err != nil {
		return false
	}
	age := s.now().Sub(time.Unix(0, n))
	return age >= 0 && age <= ReauthWindow
}

// RecentlyReauthenticated is recentlyReauthenticated for the pages.
func (s *Service) RecentlyReauthenticated(res *Resolved) bool {
	return res != nil && res.Session != nil && res.External && s.recentlyReauthenticated(res.Session)
}

// PutFlow keeps a sign-in flow's state (an OpenID Connect login in
// progress) server-side under a random key held in the browser's cookie.
func (s *Service) PutFlow(ctx context.Context, key string, data []byte, ttl time.Duration) error {
	if err := s.store.Put(ctx, "flow:"+key, data, ttl, s.now()); err != nil {
		return &UnavailableError{err}
	}
	return nil
}

// TakeFlow returns and forgets a flow's state (single use).
func (s *Service) TakeFlow(ctx context.Context, key string) ([]byte, error) {
	b, err := s.store.Take(ctx, "flow:"+key, s.now())
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, &UnavailableError{err}
	}
	return b, nil
}
