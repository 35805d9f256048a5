// Package store defines what twostep keeps between requests (sessions,
// counters, small keyed records) and the interface every backend implements.
// Backends live in sub-packages (bolt, redis); storetest is the conformance
// suite they all pass.
package store

import (
	"context"
	"errors"
	"time"
)

// ErrNotFound is returned when a record does not exist or has expired.
var ErrNotFound = errors.New("store: not found")

// ErrClosed is returned by every method after Close.
var ErrClosed = errors.New("store: closed")

// Limits every backend enforces (an error that is not ErrNotFound beyond
// them): keys and session ids of 1 to MaxKeyLen bytes, values of at most
// MaxValueLen bytes (recovery documents are the largest).
const (
	MaxKeyLen   = 1024
	MaxValueLen = 16 << 20
)

// SessionState says how far a session has come through sign-in.
type SessionState uint8

const (
	// StateNone is the zero value and never stored: a record with it is invalid.
	StateNone SessionState = iota
	// StateSecondFactor: password given, a second factor is pending. Only the
	// portal's challenge, help and recovery endpoints accept such a session.
	StateSecondFactor
	// StateEnrollment: `two_step required` and the user has no method yet; the
	// session reaches only the enrolment endpoints.
	StateEnrollment
	// StateOneFactor: signed in with the password only (two-step is off).
	StateOneFactor
	// StateTwoFactor: signed in with password and second factor (or a trusted
	// device).
	StateTwoFactor
)

// String returns the name used in the JSON API and logs.
func (s SessionState) String() string {
	switch s {
	case StateSecondFactor:
		return "second_factor"
	case StateEnrollment:
		return "enrollment"
	case StateOneFactor:
		return "one_factor"
	case StateTwoFactor:
		return "two_factor"
	}
	return "none"
}

// Valid reports whether s is one of the stored states.
func (s SessionState) Valid() bool { return s >= StateSecondFactor && s <= StateTwoFactor }

// Session is the server-side record of one browser's sign-in. The store key
// is ID, a keyed hash of the cookie token: the token itself is never stored.
type Session struct {
	// ID is the keyed hash of the cookie token (hex). Required.
	ID string `json:"id"`
	// User is the canonical (lower-case) user name. Required.
	User  string       `json:"user"`
	State SessionState `json:"state"`
	// Created is when the session was issued (the password was given).
	Created time.Time `json:"created"`
	// LastSeen is the last time the session was used, touched at most once a
	// minute; with the idle timeout it decides expiry.
	LastSeen time.Time `json:"last_seen"`
	// Expires is the absolute end of the session (Created + lifetime).
	Expires time.Time `json:"expires"`
	// Idle is the idle timeout the session was issued with.
	Idle time.Duration `json:"idle"`
	// SecondFactorAt is when the second factor was last given (zero if never).
	SecondFactorAt time.Time `json:"second_factor_at,omitzero"`
	// Device is the trusted device that stood in for the second factor, if any.
	Device string `json:"device,omitempty"`
	// Credential is a short fingerprint of the user's password hash when the
	// session was issued: a password change in the users file ends it.
	Credential string `json:"credential,omitempty"`
	// Epoch is stored with the session and returned as it was; the store
	// gives it no meaning. (Sessions end by deletion: sign out everywhere,
	// reset-2sv and recovery delete them; a password change ends them
	// through Credential, and a disabled user through the users file.)
	Epoch uint64 `json:"epoch"`
	// Pending carries flow state for a half-signed-in session (e.g. the
	// return URL); opaque to the store.
	Pending map[string]string `json:"pending,omitempty"`
	// IP and UserAgent are where the session was issued from (audit, settings).
	IP        string `json:"ip,omitempty"`
	UserAgent string `json:"user_agent,omitempty"`
}

// Clone copies a session deeply enough that neither copy can change the
// other (Pending is the only reference field).
func (s *Session) Clone() *Session {
	c := *s
	if s.Pending != nil {
		c.Pending = make(map[string]string, len(s.Pending))
		for k, v := range s.Pending {
			c.Pending[k] = v
		}
	}
	return &c
}

// ExpiresAt returns when the record stops being valid: the earlier of the
// absolute expiry and LastSeen + Idle.
func (s *Session) ExpiresAt() time.Time {
	if s.Idle <= 0 {
		return s.Expires
	}
	idle := s.LastSeen.Add(s.Idle)
	if idle.Before(s.Expires) {
		return idle
	}
	return s.Expires
}

// Store is what every backend provides. Every method is safe for concurrent
// use. A method that cannot reach its backend returns an error that is not
// ErrNotFound; callers deny on any such error.
type Store interface {
	// PutSession creates or replaces a session. It fails on a record with an
	// empty ID or User, or an invalid State.
	PutSession(ctx context.Context, s *Session) error
	// ReplaceSession replaces a stored session with s (same ID and user)
	// only if the store still holds it: ErrNotFound if it was deleted (or
	// expired and removed), so a request that read a session just before a
	// sign-out can never write it back. It validates s like PutSession.
	ReplaceSession(ctx context.Context, s *Session) error
	// SwapSession stores next, a session with a new ID, in place of the
	// session oldID of the same user, as one step as far as DeleteSession
	// and DeleteUserSessions can tell: if oldID is not stored (deleted,
	// signed out everywhere, or expired at now) nothing is left written
	// and it returns ErrNotFound; of concurrent swaps of one session
	// exactly one succeeds; a DeleteUserSessions running at the same time
	// leaves neither. It validates next like PutSession, and refuses
	// (ErrInvalid) a next with oldID's ID or another user.
	SwapSession(ctx context.Context, oldID string, next *Session, now time.Time) error
	// GetSession returns the session, or ErrNotFound if there is none or it
	// expired at now.
	GetSession(ctx context.Context, id string, now time.Time) (*Session, error)
	// TouchSession moves LastSeen forward to lastSeen (no other field): a
	// LastSeen already at or after lastSeen is left as it is, and that is
	// not an error (concurrent touches all succeed). ErrNotFound if absent
	// or expired at lastSeen.
	TouchSession(ctx context.Context, id string, lastSeen time.Time) error
	// DeleteSession removes one session; deleting a missing one is not an error.
	DeleteSession(ctx context.Context, id string) error
	// DeleteUserSessions removes every session of user and returns how many.
	DeleteUserSessions(ctx context.Context, user string) (int, error)
	// ListUserSessions returns the unexpired sessions of user.
	ListUserSessions(ctx context.Context, user string, now time.Time) ([]*Session, error)

	// Get returns the value stored under key, or ErrNotFound (absent or expired).
	Get(ctx context.Context, key string, now time.Time) ([]byte, error)
	// Put stores value under key; ttl 0 keeps it until deleted.
	Put(ctx context.Context, key string, value []byte, ttl time.Duration, now time.Time) error
	// Replace stores value under key only if an unexpired value is there at
	// now, in one atomic step; ErrNotFound (and nothing stored) otherwise. A
	// write that must not bring back a record deleted meanwhile uses it.
	Replace(ctx context.Context, key string, value []byte, ttl time.Duration, now time.Time) error
	// PutIfAbsent stores value unless an unexpired value exists; it returns
	// the value now stored and whether this call created it.
	PutIfAbsent(ctx context.Context, key string, value []byte, ttl time.Duration, now time.Time) (stored []byte, created bool, err error)
	// Take returns the value and deletes it in one atomic step: of concurrent
	// callers, exactly one gets the value, the others ErrNotFound.
	Take(ctx context.Context, key string, now time.Time) ([]byte, error)
	// Delete removes key; deleting a missing key is not an error.
	Delete(ctx context.Context, key string) error
	// Incr adds one to the counter under key and returns the new count. The
	// counter's window starts at its first increment and lasts window; after
	// that it starts again from zero. It also returns when the window ends.
	Incr(ctx context.Context, key string, window time.Duration, now time.Time) (count int64, resetAt time.Time, err error)

	// Sweep deletes every record expired at now and returns how many.
	Sweep(ctx context.Context, now time.Time) (int, error)
	// Ping checks that the backend answers.
	Ping(ctx context.Context) error
	// Close releases the backend. Later calls return ErrClosed.
	Close() error
}
