package account

import (
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/twostep-auth/twostep/internal/documents"
	"github.com/twostep-auth/twostep/internal/notify"
	"github.com/twostep-auth/twostep/internal/store"
	"github.com/twostep-auth/twostep/internal/users"
)

// Recovery request states.
const (
	RecoveryPending   = "pending"
	RecoveryApproved  = "approved"
	RecoveryDenied    = "denied"
	RecoveryCancelled = "cancelled"
	RecoveryExpired   = "expired"
)

// DocumentTypes are the accepted identity documents and their names.
var DocumentTypes = map[string]string{
	"drivers_license": "Driver's licence",
	"state_id":        "State ID card",
	"voter_card":      "Voter registration card",
	"national_id":     "National ID card",
	"passport":        "Passport",
}

// RecoveryConfig sets the identity-check recovery (SPEC `recovery`).
type RecoveryConfig struct {
	// Enabled: without a recovery block users are told to ask an operator.
	Enabled     bool
	ReviewGroup string
	Approvals   int
	MaxSize     int64
	Expected    string
	Retention   time.Duration
	CoolingOff  time.Duration
	// AfterApproval is "password_only" or "enroll".
	AfterApproval string
	// Expiry ends undecided requests (30 days).
	Expiry time.Duration
	// Limits on attempts per account and per IP within a day.
	MaxPerAccount, MaxPerIP int
}

// Recovery is one identity-verification request.
type Recovery struct {
	ID           string    `json:"id"`
	User         string    `json:"user"`
	Created      time.Time `json:"created"`
	IP           string    `json:"ip"`
	UserAgent    string    `json:"user_agent"`
	DocumentType string    `json:"document_type"`
	DocumentKind string    `json:"document_kind"`
	Status       string    `json:"status"`
	Approvals    []string  `json:"approvals,omitempty"`
	Decided      time.Time `json:"decided,omitzero"`
	DecidedBy    string    `json:"decided_by,omitempty"`
	Reason       string    `json:"reason,omitempty"`
	// EffectiveAt is when an approval takes effect (after cooling_off).
	EffectiveAt time.Time `json:"effective_at,omitzero"`
	// Applied: the approval has turned two-step off.
	Applied bool `json:"applied,omitempty"`
	// DocumentDeleted: the document is gone (retention).
	DocumentDeleted bool `json:"document_deleted,omitempty"`
	// External: filed by a user who exists only at an identity provider,
	// whose contact details are kept with the request (recoveryContactKey).
	External bool `json:"external,omitempty"`
	// Privileged: the account reviewed recoveries when it filed, so the
	// request needs four eyes (approvalsFor).
	Privileged bool `json:"privileged,omitempty"`
}

// Open reports whether the request still awaits a decision or its effect.
func (r *Recovery) Open() bool {
	return r.Status == RecoveryPending || (r.Status == RecoveryApproved && !r.Applied)
}

func recoveryKey(id string) string     { return "recovery:" + id }
func recoveryDocKey(id string) string  { return "recovery-doc:" + id }
func recoveryOpenKey(u string) string  { return "recovery-open:" + u }
func recoveryLastKey(u string) string  { return "recovery-last:" + u }
func recoveryIndexKey() string         { return "recovery-index" }
func mustEnrollKey(user string) string { return "must-enroll:" + user }

// Keys of the recovery locks and marks (see storeLock).
func recoveryLockKey(id string) string    { return "recovery-lock:" + id }
func recoveryOpenLockKey(u string) string { return "recovery-open-lock:" + u }
func recoveryOpenSeenKey(u string) string { return "recovery-open-missing:" + u }
func recoveryIndexLockKey() string        { return "recovery-index-lock" }
func recoveryUploadKey(who string) string { return "recovery-upload:" + who }

// recoveryContactKey keeps, for a request of a user who exists only at an
// identity provider, that user's record as it was at filing (email,
// name): the record the provider's sign-in keeps lasts only a session
// lifetime, and the request's notices come days later.
func recoveryContactKey(id string) string { return "recovery-contact:" + id }

// Recovery state is changed under locks kept in the store, so that they
// hold across every node sharing it (a Redis Cluster has no multi-key
// transactions): a request's lock around every change of its record
// (decisions, both cancels, the sweeper), a user's open lock around their
// open marker, the index lock around the index. None is held while
// another is taken, and none while messages are sent. Each has a TTL, so
// that a node that dies holding one cannot wedge an account, and nobody
// waits longer than recoveryLockWait for one (ErrBusy, 503).
const (
	recoveryLockTTL  = 30 * time.Second
	recoveryLockWait = 5 * time.Second
	// openMarkerGrace: an open marker that names a record the store does
	// not have still holds the account's slot this long after that was
	// first seen, then it is stale. RequestRecovery writes the record
	// before the marker, so this is lost data or a marker written by an
	// earlier version (which wrote the marker first).
	openMarkerGrace = 10 * time.Minute
)

// storeLock takes the lock key: a random token put with PutIfAbsent and
// ttl, tried again until wait has passed (ErrBusy). unlock deletes the
// lock only while it still holds this token (not one taken after this one
// expired), and also when ctx has ended.
func (s *Service) storeLock(ctx context.Context, key string, ttl, wait time.Duration) (unlock func(), err error) {
	token := []byte(rand.Text())
	deadline := time.Now().Add(wait)
	pause := 2 * time.Millisecond
	for {
		_, created, err := s.store.PutIfAbsent(ctx, key, token, ttl, s.now())
		if err != nil {
			return nil, &UnavailableError{err}
		}
		if created {
			return func() {
				ctx := context.WithoutCancel(ctx)
				b, err := s.store.Get(ctx, key, s.now())
				if err == nil && string(b) == string(token) {
					err = s.store.Delete(ctx, key)
				}
				if err != nil && !errors.Is(err, store.ErrNotFound) {
					s.log.Warn("lock not released: it expires by itself", zap.String("lock", key), zap.Error(err))
				}
			}, nil
		}
		left := time.Until(deadline)
		if left <= 0 {
			return nil, ErrBusy
		}
		t := time.NewTimer(min(pause, left))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, ErrBusy
		}
		pause = min(2*pause, 50*time.Millisecond)
	}
}

// withRecovery loads request id under its lock and runs change on it;
// change saves what it changes. The record change decides on is the one
// it overwrites: no cancel or decision made meanwhile is lost.
func (s *Service) withRecovery(ctx context.Context, id string, change func(r *Recovery) error) (*Recovery, error) {
	unlock, err := s.storeLock(ctx, recoveryLockKey(id), recoveryLockTTL, recoveryLockWait)
	if err != nil {
		return nil, err
	}
	defer unlock()
	r, err := s.loadRecovery(ctx, id)
	if err != nil {
		return nil, err
	}
	return r, change(r)
}

// ErrRecoveryDisabled: no recovery block is configured.
var ErrRecoveryDisabled = errors.New("account recovery is not configured")

func (s *Service) loadRecovery(ctx context.Context, id string) (*Recovery, error) {
	b, err := s.store.Get(ctx, recoveryKey(id), s.now())
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, &UnavailableError{err}
	}
	var r Recovery
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, &UnavailableError{err}
	}
	return &r, nil
}

func (s *Service) saveRecovery(ctx context.Context, r *Recovery) error {
	b, _ := json.Marshal(r)
	if err := s.store.Put(ctx, recoveryKey(r.ID), b, 0, s.now()); err != nil {
		return &UnavailableError{err}
	}
	return nil
}

// recoveryIndex lists every request the sweeper and the reviewers see,
// each once.
func (s *Service) recoveryIndex(ctx context.Context) ([]string, error) {
	b, err := s.store.Get(ctx, recoveryIndexKey(), s.now())
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, &UnavailableError{err}
	}
	var ids []string
	if err := json.Unmarshal(b, &ids); err != nil {
		return nil, &UnavailableError{err}
	}
	seen := make(map[string]bool, len(ids))
	return slices.DeleteFunc(ids, func(id string) bool {
		dup := seen[id]
		seen[id] = true
		return dup
	}), nil
}

// changeRecoveryIndex reads the index, changes it and writes it back under
// the index lock, so that of two nodes changing it at once neither loses
// the other's change. change reports whether it changed anything.
func (s *Service) changeRecoveryIndex(ctx context.Context, change func(ids []string) ([]string, bool)) error {
	unlock, err := s.storeLock(ctx, recoveryIndexLockKey(), recoveryLockTTL, recoveryLockWait)
	if err != nil {
		return err
	}
	defer unlock()
	ids, err := s.recoveryIndex(ctx)
	if err != nil {
		return err
	}
	next, changed := change(ids)
	if !changed {
		return nil
	}
	b, _ := json.Marshal(next)
	if err := s.store.Put(ctx, recoveryIndexKey(), b, 0, s.now()); err != nil {
		return &UnavailableError{err}
	}
	return nil
}

// indexRecovery adds id to the index (once).
func (s *Service) indexRecovery(ctx context.Context, id string) error {
	return s.changeRecoveryIndex(ctx, func(ids []string) ([]string, bool) {
		if slices.Contains(ids, id) {
			return ids, false
		}
		return append(ids, id), true
	})
}

// ensureIndexed puts an open request back in the index if it is missing
// (a change that an earlier version lost, or a filing cut short): else no
// reviewer sees it, it never expires, and its user cannot file another.
// A request filed in the last minute may be on its way there.
func (s *Service) ensureIndexed(ctx context.Context, r *Recovery) {
	if s.now().Sub(r.Created) < time.Minute {
		return
	}
	ids, err := s.recoveryIndex(ctx)
	if err != nil || slices.Contains(ids, r.ID) {
		return
	}
	if err := s.indexRecovery(ctx, r.ID); err == nil {
		s.log.Warn("an open recovery request was missing from the index and is back", zap.String("user", r.User), zap.String("request", r.ID))
	}
}

// RecoveryEnabled reports whether the identity check is configured.
func (s *Service) RecoveryEnabled() bool { return s.cfg.Recovery.Enabled }

// RecoverySettings returns the recovery configuration (for the pages).
func (s *Service) RecoverySettings() RecoveryConfig { return s.cfg.Recovery }

// RecoveryAllowed reports what RequestRecovery would refuse before it
// reads a document (disabled, a session that needs no recovery, an open
// request), so that an upload that cannot be taken is not read at all.
// An open request it finds missing from the index goes back there.
func (s *Service) RecoveryAllowed(ctx context.Context, res *Resolved) error {
	if !s.cfg.Recovery.Enabled {
		return ErrRecoveryDisabled
	}
	if res == nil || res.Session == nil {
		return ErrForbidden
	}
	switch res.Session.State {
	case store.StateSecondFactor:
	case store.StateOneFactor, store.StateTwoFactor:
		return ErrConflict // a signed-in user needs no recovery
	default:
		return ErrForbidden
	}
	if !ownsAccount(res) {
		return ErrForbidden
	}
	if open, err := s.openRecovery(ctx, res.Session.User); err != nil {
		return err
	} else if open != nil {
		s.ensureIndexed(ctx, open)
		return ErrConflict
	}
	return nil
}

// ownsAccount reports whether res's session gave the account's first
// factor, as recovery needs. A provider account that is not (yet) bound to
// the user only bears the user's name (see bindExternal): it proves
// nothing about the account, so it may neither ask for the user's second
// factor to be switched off nor read how the user's requests stand.
func ownsAccount(res *Resolved) bool {
	return res.Session.Pending[linkPending] == ""
}

// maxUploads bounds the recovery uploads read at once on this node (each
// is held in memory, up to max_size); uploadWait is how long one waits
// for its turns.
const (
	maxUploads = 4
	uploadWait = 3 * time.Second
)

// UploadReadTimeout bounds how long reading one recovery upload may take
// (the portal's read deadline). An upload's marks (UploadSlot) outlive it
// by a minute.
const UploadReadTimeout = 2 * time.Minute

// uploadRetry is the Retry-After of an upload refused because the same
// account or network is sending one already.
const uploadRetry = 10 * time.Second

// UploadSlot waits for the turns to read a recovery upload: first one
// upload at a time per account and per client network (on every node:
// the marks are in the store, with a TTL), then one of this node's
// maxUploads. So that one client cannot hold every turn with slow
// uploads: a second upload of the same account or network gets
// *RateLimitedError (429) when uploadWait has passed, and ErrBusy (503)
// means no turn of this node came.
func (s *Service) UploadSlot(ctx context.Context, res *Resolved, c Client) (release func(), err error) {
	if res == nil || res.Session == nil || !ownsAccount(res) {
		return nil, ErrForbidden // nor may it hold the account's turn
	}
	deadline := time.Now().Add(uploadWait)
	var held []func()
	unmark := func() {
		for _, unlock := range slices.Backward(held) {
			unlock()
		}
	}
	for _, who := range []string{"u:" + res.Session.User, "ip:" + c.network()} {
		unlock, err := s.storeLock(ctx, recoveryUploadKey(who), UploadReadTimeout+time.Minute, time.Until(deadline))
		if err != nil {
			unmark()
			if errors.Is(err, ErrBusy) {
				return nil, &RateLimitedError{RetryAfter: uploadRetry}
			}
			return nil, err
		}
		held = append(held, unlock)
	}
	t := time.NewTimer(max(time.Until(deadline), 0))
	defer t.Stop()
	select {
	case s.uploadSlots <- struct{}{}:
		return func() { <-s.uploadSlots; unmark() }, nil
	case <-t.C:
	case <-ctx.Done():
	}
	unmark()
	return nil, ErrBusy
}

// RequestRecovery files an identity-verification request for a user who
// gave the right password but cannot pass a second factor. doc is the
// upload (read at most max_size+1 bytes).
//
// The record is written before anything names it: then the user's open
// marker claims the account's one open request for it, and only then do
// the status page and the index (the reviewers, the sweeper) list it. So
// no reader finds a name without its record, and every open request is
// the one its user's marker names.
func (s *Service) RequestRecovery(ctx context.Context, res *Resolved, docType string, doc io.Reader, c Client) (*Recovery, error) {
	if err := s.RecoveryAllowed(ctx, res); err != nil {
		return nil, err
	}
	if _, ok := DocumentTypes[docType]; !ok {
		return nil, &InvalidInputError{`Field "document_type" must be one of drivers_license, state_id, voter_card, national_id, passport.`}
	}
	user := res.Session.User
	now := s.now()
	for _, lim := range []struct {
		key string
		max int
	}{{"recovery-attempts:u:" + user, s.cfg.Recovery.MaxPerAccount}, {"recovery-attempts:ip:" + c.network(), s.cfg.Recovery.MaxPerIP}} {
		n, reset, err := s.store.Incr(ctx, lim.key, 24*time.Hour, now)
		if err != nil {
			return nil, &UnavailableError{err}
		}
		if n > int64(lim.max) {
			return nil, &RateLimitedError{RetryAfter: reset.Sub(now)}
		}
	}
	// Decoding a large image takes hundreds of MB: inspect one at a time.
	select {
	case s.inspectSlot <- struct{}{}:
	case <-ctx.Done():
		return nil, ErrBusy
	}
	d, err := documents.Inspect(doc, documents.Limits{MaxBytes: s.cfg.Recovery.MaxSize})
	<-s.inspectSlot
	if err != nil {
		return nil, err // documents.ErrTooLarge / ErrUnsupported
	}
	var idb [12]byte
	if _, err := rand.Read(idb[:]); err != nil {
		return nil, err
	}
	privileged, err := s.reviewsNow(ctx, user)
	if err != nil {
		return nil, err
	}
	r := &Recovery{
		ID: hex.EncodeToString(idb[:]), User: user, Created: now, IP: c.ip(), UserAgent: truncate(c.UserAgent, 256),
		DocumentType: docType, DocumentKind: string(d.Kind), Status: RecoveryPending, External: res.External,
		Privileged: privileged,
	}
	blob, err := s.vault.Seal(d, user, r.ID)
	if err != nil {
		return nil, err
	}
	if r.External {
		if res.User == nil {
			return nil, ErrForbidden
		}
		contact := users.User{Name: res.User.Name, DisplayName: res.User.DisplayName, Email: res.User.Email, Credential: res.User.Credential}
		b, _ := json.Marshal(contact)
		if err := s.store.Put(ctx, recoveryContactKey(r.ID), b, 0, now); err != nil {
			s.dropRecovery(ctx, r.ID)
			return nil, &UnavailableError{err}
		}
	}
	if err := s.store.Put(ctx, recoveryDocKey(r.ID), blob, 0, now); err != nil {
		s.dropRecovery(ctx, r.ID)
		return nil, &UnavailableError{err}
	}
	if err := s.saveRecovery(ctx, r); err != nil {
		s.dropRecovery(ctx, r.ID)
		return nil, err
	}
	// One open request per account.
	if maybe, err := s.claimOpen(ctx, user, r.ID); err != nil {
		if maybe {
			s.withdrawRecovery(ctx, r)
		} else {
			s.dropRecovery(ctx, r.ID) // nothing names it
		}
		return nil, err
	}
	// The status page shows the latest request once it is decided too.
	if err := s.store.Put(ctx, recoveryLastKey(user), []byte(r.ID), 0, now); err != nil {
		s.withdrawRecovery(ctx, r)
		return nil, &UnavailableError{err}
	}
	if err := s.indexRecovery(ctx, r.ID); err != nil {
		s.withdrawRecovery(ctx, r)
		return nil, err
	}
	s.audit.Info("recovery requested", zap.String("user", user), zap.String("request", r.ID), zap.String("document_type", docType),
		zap.String("ip", c.ip()), zap.String("user_agent", c.UserAgent), zap.String("outcome", "pending"))
	s.tellFiled(ctx, r, c.Base)
	return r, nil
}

// tellFiled tells the account, on every channel it has (THREATS REQ-72),
// that a recovery was filed, with a "this wasn't me" link that stops it
// (base is the site's, "" for none: then only a sign-in with a code
// does). Someone who knows the password may be filing while the owner
// still has their phone.
func (s *Service) tellFiled(ctx context.Context, r *Recovery, base string) {
	stop := "If you did not ask for this, sign in with your code and the request is cancelled at once; then change your password."
	if base != "" {
		stop = "If you did not ask for this, stop it now: " + s.RecoveryCancelURL(base, r.ID) +
			"\n\n(Signing in with your code cancels it too.) Then change your password."
	}
	s.mailRecovery(ctx, r, "We received your account recovery request",
		"We received your request to recover your account with a "+strings.ToLower(DocumentTypes[r.DocumentType])+". "+
			"A person will check it; this takes "+s.cfg.Recovery.Expected+". We will email you when it is decided.\n\n"+
			"If it is approved, two-step verification will be turned off"+s.afterApprovalText()+".\n\n"+stop)
	u, ok := s.recoveryContact(ctx, r)
	if !ok || s.senders.SMS == nil {
		return
	}
	if phone := s.accountPhone(ctx, r); phone != "" {
		text := s.cfg.SiteName + ": someone asked to recover your account and turn off two-step verification. Not you? Sign in with a code to stop it"
		if base != "" && u.Email != "" && s.senders.Email != nil {
			text += ", or open the link in the email we sent"
		}
		text += "."
		if err := s.senders.SMS.Send(ctx, notify.Message{Channel: notify.ChannelSMS, To: phone, User: u.Name, Body: text}); err != nil {
			s.log.Warn("recovery SMS notice not sent", zap.String("user", r.User), zap.Error(err))
		}
	}
}

// dropRecovery deletes a request that nothing names (no marker, index or
// status page): it was never filed.
func (s *Service) dropRecovery(ctx context.Context, id string) {
	ctx = context.WithoutCancel(ctx)
	_ = s.store.Delete(ctx, recoveryDocKey(id))
	_ = s.store.Delete(ctx, recoveryContactKey(id))
	_ = s.store.Delete(ctx, recoveryKey(id))
}

// withdrawRecovery closes a request whose filing failed after its marker
// may have been written: cancelled, under its lock, and its document
// deleted. At worst (the store down) it stays open and claimed; the next
// attempt of its user then finds it (RecoveryAllowed) and indexes it.
func (s *Service) withdrawRecovery(ctx context.Context, r *Recovery) {
	ctx = context.WithoutCancel(ctx)
	_, err := s.withRecovery(ctx, r.ID, func(r *Recovery) error {
		if !r.Open() {
			return nil
		}
		r.Status, r.Decided, r.Reason = RecoveryCancelled, s.now(), "it could not be filed"
		if err := s.saveRecovery(ctx, r); err != nil {
			return err
		}
		if err := s.store.Delete(ctx, recoveryDocKey(r.ID)); err != nil {
			return &UnavailableError{err}
		}
		_ = s.store.Delete(ctx, recoveryContactKey(r.ID))
		r.DocumentDeleted = true
		return s.saveRecovery(ctx, r)
	})
	if err != nil {
		s.log.Warn("a recovery request that could not be filed was not withdrawn", zap.String("user", r.User), zap.String("request", r.ID), zap.Error(err))
	}
	s.releaseOpen(ctx, r.User, r.ID)
}

// claimOpen makes request id the user's open request, under the user's
// open lock: ErrConflict while the marker names another one that is open
// (or missing, but not for openMarkerGrace). maybe: the marker may have
// been written though err says otherwise.
func (s *Service) claimOpen(ctx context.Context, user, id string) (maybe bool, err error) {
	unlock, err := s.storeLock(ctx, recoveryOpenLockKey(user), recoveryLockTTL, recoveryLockWait)
	if err != nil {
		return false, err
	}
	defer unlock()
	now := s.now()
	b, err := s.store.Get(ctx, recoveryOpenKey(user), now)
	if errors.Is(err, store.ErrNotFound) {
		// PutIfAbsent, not Put: should this lock have expired, a claim
		// made meanwhile still wins.
		if _, created, err := s.store.PutIfAbsent(ctx, recoveryOpenKey(user), []byte(id), 0, now); err != nil {
			return true, &UnavailableError{err}
		} else if !created {
			return false, ErrConflict
		}
		return false, nil
	}
	if err != nil {
		return false, &UnavailableError{err}
	}
	if held, err := s.markerHolds(ctx, user, string(b), now); err != nil {
		return false, err
	} else if held {
		return false, ErrConflict
	}
	// The request it names is closed (or gone for good): replace it.
	if err := s.store.Put(ctx, recoveryOpenKey(user), []byte(id), 0, now); err != nil {
		return true, &UnavailableError{err}
	}
	return false, nil
}

// markerHolds reports whether the user's open marker, naming request id,
// still holds the account's slot (under the user's open lock). A request
// that is open holds it; one the store does not have holds it until
// openMarkerGrace after that was first seen; on any doubt it holds.
func (s *Service) markerHolds(ctx context.Context, user, id string, now time.Time) (bool, error) {
	r, err := s.loadRecovery(ctx, id)
	if err == nil {
		return r.Open() && r.User == user, nil
	}
	if !errors.Is(err, ErrNotFound) {
		return true, err
	}
	seen := []byte(id + " " + strconv.FormatInt(now.UnixNano(), 10))
	stored, _, err := s.store.PutIfAbsent(ctx, recoveryOpenSeenKey(user), seen, 24*time.Hour, now)
	if err != nil {
		return true, &UnavailableError{err}
	}
	sid, at, _ := strings.Cut(string(stored), " ")
	n, perr := strconv.ParseInt(at, 10, 64)
	if sid != id || perr != nil {
		// First seen for an earlier marker: the time starts now.
		if err := s.store.Put(ctx, recoveryOpenSeenKey(user), seen, 24*time.Hour, now); err != nil {
			return true, &UnavailableError{err}
		}
		return true, nil
	}
	if now.Sub(time.Unix(0, n)) < openMarkerGrace {
		return true, nil
	}
	s.log.Warn("stale recovery marker replaced: its request is missing", zap.String("user", user), zap.String("request", id))
	return false, nil
}

// releaseOpen deletes the user's open marker if it names request id (just
// closed). Best effort: a marker that names a closed request holds
// nothing, and the next claim replaces it.
func (s *Service) releaseOpen(ctx context.Context, user, id string) {
	ctx = context.WithoutCancel(ctx)
	unlock, err := s.storeLock(ctx, recoveryOpenLockKey(user), recoveryLockTTL, recoveryLockWait)
	if err != nil {
		return
	}
	defer unlock()
	if b, err := s.store.Get(ctx, recoveryOpenKey(user), s.now()); err == nil && string(b) == id {
		_ = s.store.Delete(ctx, recoveryOpenKey(user))
	}
}

// afterApprovalText ends "two-step verification will be turned off" with
// what the next sign-in asks for (after_approval).
func (s *Service) afterApprovalText() string {
	if s.cfg.Recovery.AfterApproval == "enroll" {
		return "; you will sign in with your password and then set up a new way to get codes"
	}
	return " and you will sign in with your password alone"
}

// AfterApprovalEnroll reports whether an approved recovery makes the next
// sign-in enrol a new second factor (after_approval enroll).
func (s *Service) AfterApprovalEnroll() bool { return s.cfg.Recovery.AfterApproval == "enroll" }

// openRecovery returns the request the user's open marker names, if it
// is open. It changes nothing: a marker whose request is missing is
// claimOpen's to judge.
func (s *Service) openRecovery(ctx context.Context, user string) (*Recovery, error) {
	b, err := s.store.Get(ctx, recoveryOpenKey(user), s.now())
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, &UnavailableError{err}
	}
	r, err := s.loadRecovery(ctx, string(b))
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if !r.Open() || r.User != user {
		return nil, nil
	}
	return r, nil
}

// MyRecovery returns the caller's most recent request (open or not), if
// the session is its owner's. id "" means the open one, or else the latest.
func (s *Service) MyRecovery(ctx context.Context, res *Resolved, id string) (*Recovery, error) {
	if res == nil || res.Session == nil || !ownsAccount(res) {
		return nil, ErrNotFound // as for someone without a request
	}
	user := res.Session.User
	if id == "" {
		// The open request, or else the latest one (decided).
		r, err := s.openRecovery(ctx, user)
		if err != nil || r != nil {
			return r, err
		}
		b, err := s.store.Get(ctx, recoveryLastKey(user), s.now())
		if errors.Is(err, store.ErrNotFound) {
			return nil, ErrNotFound
		}
		if err != nil {
			return nil, &UnavailableError{err}
		}
		id = string(b)
	}
	r, err := s.loadRecovery(ctx, id)
	if err != nil {
		return nil, err
	}
	if r.User != user {
		return nil, ErrNotFound // never reveal another account's request
	}
	return r, nil
}

// userRecoveries lists the user's requests that may be open: the one
// their marker names and, if they filed one lately (recovery-last), every
// other one of theirs in the index (an earlier version could leave two
// open).
func (s *Service) userRecoveries(ctx context.Context, user string) ([]string, error) {
	var ids []string
	now := s.now()
	b, err := s.store.Get(ctx, recoveryOpenKey(user), now)
	switch {
	case err == nil:
		ids = append(ids, string(b))
	case !errors.Is(err, store.ErrNotFound):
		return nil, &UnavailableError{err}
	}
	b, err = s.store.Get(ctx, recoveryLastKey(user), now)
	if errors.Is(err, store.ErrNotFound) {
		return ids, nil // never filed: the marker is all there can be
	} else if err != nil {
		return nil, &UnavailableError{err}
	}
	// A request stays open at most Expiry, then cooling_off, after it was
	// filed; none of the user's was filed after their latest. So when that
	// is older, only the marker's can be open (and the sweeper's to end).
	if last, err := s.loadRecovery(ctx, string(b)); err == nil &&
		now.Sub(last.Created) > s.cfg.Recovery.Expiry+s.cfg.Recovery.CoolingOff+24*time.Hour {
		return ids, nil
	} else if err != nil && !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	all, err := s.recoveryIndex(ctx)
	if err != nil {
		return nil, err
	}
	for _, id := range all {
		if slices.Contains(ids, id) {
			continue
		}
		r, err := s.loadRecovery(ctx, id)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if r.User == user && r.Open() {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// cancelOpenRecovery ends every open request of the user (pending, or
// approved and not yet applied) because they passed a second factor
// (someone who has the factor needs no recovery). Any error means some
// request may still be open: the caller must not let the sign-in pass.
func (s *Service) cancelOpenRecovery(ctx context.Context, user, why string) error {
	ids, err := s.userRecoveries(ctx, user)
	if err != nil {
		return err
	}
	var cancelled []*Recovery
	var failed error
	for _, id := range ids {
		done := false
		r, err := s.withRecovery(ctx, id, func(r *Recovery) error {
			if r.User != user || !r.Open() {
				return nil
			}
			r.Status, r.Decided, r.Reason = RecoveryCancelled, s.now(), why
			if err := s.saveRecovery(ctx, r); err != nil {
				return err
			}
			done = true
			return nil
		})
		if err != nil && !errors.Is(err, ErrNotFound) {
			failed = cmp.Or(failed, err) // cancel the others all the same
		}
		if done {
			cancelled = append(cancelled, r)
			s.releaseOpen(ctx, user, id)
			s.audit.Info("recovery cancelled", zap.String("user", user), zap.String("request", id), zap.String("reason", why), zap.String("outcome", "cancelled"))
		}
	}
	if len(cancelled) > 0 {
		s.mailRecovery(ctx, cancelled[0], "Your account recovery request was cancelled",
			"Your account recovery request was cancelled because "+why+". Two-step verification stays on.\n\n"+
				"If you did not ask for recovery, someone may know your password: change it now.")
	}
	return failed
}

// --- reviewers ---

// IsReviewer reports whether the session may review requests: in
// review_group and signed in with two factors.
func (s *Service) IsReviewer(res *Resolved) bool {
	return s.cfg.Recovery.Enabled && res != nil && res.Session.State == store.StateTwoFactor &&
		slices.Contains(res.User.Groups, s.cfg.Recovery.ReviewGroup)
}

// ReviewItem is a request as the reviewers' queue shows it.
type ReviewItem struct {
	ID           string    `json:"id"`
	User         string    `json:"user"`
	Created      time.Time `json:"created"`
	DocumentType string    `json:"document_type"`
	Approvals    int       `json:"approvals"`
	AgeSeconds   int64     `json:"age_seconds"`
	IP           string    `json:"-"`
	Status       string    `json:"-"`
}

// ReviewQueue lists pending requests, oldest first.
func (s *Service) ReviewQueue(ctx context.Context, res *Resolved) ([]ReviewItem, error) {
	if !s.IsReviewer(res) {
		return nil, ErrForbidden
	}
	ids, err := s.recoveryIndex(ctx)
	if err != nil {
		return nil, err
	}
	now := s.now()
	out := []ReviewItem{}
	for _, id := range ids {
		r, err := s.loadRecovery(ctx, id)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if r.Status != RecoveryPending || r.User == res.Session.User {
			continue // nobody reviews their own request: it is not in their queue
		}
		if s.cfg.Recovery.Expiry > 0 && now.Sub(r.Created) >= s.cfg.Recovery.Expiry {
			continue // expired, though the sweeper has yet to say so (decide refuses it)
		}
		out = append(out, ReviewItem{ID: r.ID, User: r.User, Created: r.Created, DocumentType: r.DocumentType,
			Approvals: len(r.Approvals), AgeSeconds: int64(now.Sub(r.Created) / time.Second), IP: r.IP, Status: r.Status})
	}
	slices.SortFunc(out, func(a, b ReviewItem) int { return a.Created.Compare(b.Created) })
	return out, nil
}

// ReviewRequest returns one request for a reviewer (any state).
func (s *Service) ReviewRequest(ctx context.Context, res *Resolved, id string) (*Recovery, error) {
	if !s.IsReviewer(res) {
		return nil, ErrForbidden
	}
	return s.loadRecovery(ctx, id)
}

// ReviewDocument decrypts a request's document for a reviewer; every view
// is audited. Reviewing one's own request is refused.
func (s *Service) ReviewDocument(ctx context.Context, res *Resolved, id string, c Client) (*documents.Document, error) {
	if !s.IsReviewer(res) {
		return nil, ErrForbidden
	}
	r, err := s.loadRecovery(ctx, id)
	if err != nil {
		return nil, err
	}
	if r.User == res.Session.User {
		return nil, ErrForbidden
	}
	blob, err := s.store.Get(ctx, recoveryDocKey(id), s.now())
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, &UnavailableError{err}
	}
	doc, err := s.vault.Open(blob, r.User, r.ID)
	if err != nil {
		return nil, &UnavailableError{err}
	}
	s.audit.Info("recovery document viewed", zap.String("reviewer", res.Session.User), zap.String("user", r.User),
		zap.String("request", id), zap.String("ip", c.ip()), zap.String("user_agent", c.UserAgent), zap.String("outcome", "viewed"))
	return doc, nil
}

// Decide records a reviewer's decision. Approval takes `approvals`
// different reviewers; nobody decides their own request.
func (s *Service) Decide(ctx context.Context, res *Resolved, id, decision, reason string, c Client) (*Recovery, error) {
	if !s.IsReviewer(res) {
		return nil, ErrForbidden
	}
	return s.decide(ctx, res.Session.User, id, decision, reason, c)
}

// DecideAsOperator is Decide from the shell (`caddy twostep recovery`).
func (s *Service) DecideAsOperator(ctx context.Context, operator, id, decision, reason string) (*Recovery, error) {
	return s.decide(ctx, "operator:"+operator, id, decision, reason, Client{UserAgent: "caddy twostep"})
}

func (s *Service) decide(ctx context.Context, reviewer, id, decision, reason string, c Client) (*Recovery, error) {
	if decision != "approve" && decision != "deny" {
		return nil, &InvalidInputError{`Field "decision" must be "approve" or "deny".`}
	}
	if decision == "deny" && strings.TrimSpace(reason) == "" {
		return nil, &InvalidInputError{`Field "reason" is required to deny: it is sent to the user.`}
	}
	if len(reason) > 1000 {
		return nil, &InvalidInputError{`Field "reason" is longer than 1000 characters.`}
	}
	// Under the request's lock: a cancel (a sign-in with a code, the
	// link) is either seen here, or it comes after and cancels what this
	// saved.
	saved := false
	var applyErr error
	var phone string
	r, err := s.withRecovery(ctx, id, func(r *Recovery) error {
		if r.User == reviewer {
			return ErrForbidden
		}
		now := s.now()
		// An approval waiting out its cooling-off may still be denied (a
		// reviewer who spots the forgery stops it); nothing else that was
		// decided changes.
		stopping := decision == "deny" && r.Status == RecoveryApproved && !r.Applied
		if r.Status != RecoveryPending && !stopping {
			return ErrAlreadyDecided
		}
		if r.Status == RecoveryPending && s.cfg.Recovery.Expiry > 0 && now.Sub(r.Created) >= s.cfg.Recovery.Expiry {
			return ErrAlreadyDecided // expired: the sweeper has yet to say so
		}
		if decision == "deny" {
			r.Status, r.Decided, r.DecidedBy, r.Reason = RecoveryDenied, now, reviewer, reason
		} else {
			if slices.Contains(r.Approvals, reviewer) {
				return ErrAlreadyApproved // the same reviewer twice does not count twice
			}
			// An approval counts while its reviewer still is one: not
			// that of someone since taken out of the review group,
			// disabled or gone (who may approve again if they come back).
			kept := r.Approvals[:0]
			for _, a := range r.Approvals {
				left, err := s.leftReview(ctx, a)
				if err != nil {
					return err
				}
				if !left {
					kept = append(kept, a)
				}
			}
			r.Approvals = append(kept, reviewer)
			need, err := s.approvalsFor(ctx, r)
			if err != nil {
				return err
			}
			if len(r.Approvals) >= need {
				r.Status, r.Decided, r.DecidedBy, r.Reason = RecoveryApproved, now, strings.Join(r.Approvals, ","), reason
				r.EffectiveAt = now.Add(s.cfg.Recovery.CoolingOff)
			}
		}
		if err := s.saveRecovery(ctx, r); err != nil {
			return err
		}
		saved = true
		if r.Status == RecoveryApproved && s.cfg.Recovery.CoolingOff <= 0 {
			// The notice goes to the phone the account has now, which
			// applying the approval removes.
			phone = s.accountPhone(ctx, r)
			// Should this fail, the sweeper applies it (it is due).
			applyErr = s.applyLocked(ctx, r)
		}
		return nil
	})
	if !saved {
		return nil, err
	}
	// A decision that was saved is recorded (a refused one is not).
	s.audit.Info("recovery reviewed", zap.String("reviewer", reviewer), zap.String("user", r.User), zap.String("request", id),
		zap.String("decision", decision), zap.String("ip", c.ip()), zap.String("outcome", decision))
	s.metrics.Decision(decision)
	switch r.Status {
	case RecoveryDenied:
		s.releaseOpen(ctx, r.User, r.ID)
		s.mailRecovery(ctx, r, "Your account recovery request was declined",
			"Your request to recover your account was declined.\n\nReason: "+reason+
				"\n\nYou can sign in with your password and send a new request, for example with a clearer picture of your ID.")
	case RecoveryApproved:
		s.tellApproved(ctx, r, c.Base, phone)
		if r.Applied {
			s.tellApplied(ctx, r)
		}
	}
	if applyErr != nil {
		return nil, applyErr
	}
	return r, nil
}

// approvalsFor is how many approvals r needs: `approvals`, and at least
// two for an account that reviews itself (THREATS §4.6: four eyes for
// privileged accounts, whose new owner would decide others' recoveries).
func (s *Service) approvalsFor(ctx context.Context, r *Recovery) (int, error) {
	n := s.cfg.Recovery.Approvals
	if n >= 2 || r.Privileged {
		return max(n, 2), nil
	}
	reviews, err := s.reviewsNow(ctx, r.User)
	if err != nil {
		return 0, err
	}
	if reviews {
		return 2, nil
	}
	return n, nil
}

// reviewsNow reports whether name reviews now: a users-file user in
// review_group (not disabled), or a user who exists only at a provider
// whose last sign-in (its record lasts a session lifetime) put them in it.
// A store that cannot be read is an error: the answer decides how many
// eyes a request needs.
func (s *Service) reviewsNow(ctx context.Context, name string) (bool, error) {
	if u, ok := s.users.DB().Lookup(name); ok {
		return !u.Disabled && slices.Contains(u.Groups, s.cfg.Recovery.ReviewGroup), nil
	}
	b, err := s.store.Get(ctx, externalKey(users.Canonical(name)), s.now())
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	} else if err != nil {
		return false, &UnavailableError{err}
	}
	var u users.User
	return json.Unmarshal(b, &u) == nil && strings.HasPrefix(u.Credential, "oidc:") &&
		slices.Contains(u.Groups, s.cfg.Recovery.ReviewGroup), nil
}

// leftReview reports whether there is evidence that the reviewer who
// recorded an approval reviews no longer: a users-file user since
// disabled or taken out of review_group, a name that is in neither the
// users file nor owned by a provider account (removed from the file), or a
// provider-only user whose last sign-in came without the group. A
// provider-only reviewer's record that expired is no such evidence; a
// store that cannot be read stops the decision.
func (s *Service) leftReview(ctx context.Context, name string) (bool, error) {
	if strings.HasPrefix(name, "operator:") {
		return false, nil
	}
	name = users.Canonical(name)
	if u, ok := s.users.DB().Lookup(name); ok {
		return u.Disabled || !slices.Contains(u.Groups, s.cfg.Recovery.ReviewGroup), nil
	}
	now := s.now()
	if _, err := s.store.Get(ctx, ownerKey(name), now); errors.Is(err, store.ErrNotFound) {
		return true, nil
	} else if err != nil {
		return false, &UnavailableError{err}
	}
	b, err := s.store.Get(ctx, externalKey(name), now)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	} else if err != nil {
		return false, &UnavailableError{err}
	}
	var u users.User
	if json.Unmarshal(b, &u) != nil {
		return false, nil
	}
	return !slices.Contains(u.Groups, s.cfg.Recovery.ReviewGroup), nil
}

// accountPhone is the phone number of r's account as a method, or "".
func (s *Service) accountPhone(ctx context.Context, r *Recovery) string {
	u, ok := s.recoveryContact(ctx, r)
	if !ok {
		return ""
	}
	rec, err := s.loadRecord(ctx, users.Canonical(r.User))
	if err != nil {
		return ""
	}
	phone, err := s.phoneOf(u, rec)
	if err != nil {
		return ""
	}
	return phone
}

// tellApproved tells every channel of the account, with a link that
// cancels the change during the cooling-off period. phone, when set, is
// the number to text (the account's, before the approval removed it).
func (s *Service) tellApproved(ctx context.Context, r *Recovery, base, phone string) {
	u, ok := s.recoveryContact(ctx, r)
	if !ok {
		return
	}
	msg := "Your account recovery request was approved: two-step verification will be turned off"
	switch {
	case s.cfg.Recovery.CoolingOff > 0 && base != "":
		msg += " at " + r.EffectiveAt.UTC().Format("2 Jan 2006 15:04 UTC") + ".\n\nIf this wasn't you, stop it now: " +
			base + "/.twostep/recovery/cancel?r=" + r.ID + "&sig=" + s.cancelSig(r.ID)
	case s.cfg.Recovery.CoolingOff > 0:
		// No configured name for this site to link to (c.Base).
		msg += " at " + r.EffectiveAt.UTC().Format("2 Jan 2006 15:04 UTC") + ".\n\nIf this wasn't you, sign in before then with a code (your authenticator app, a text message or a backup code): that stops it."
	default:
		msg += " now."
	}
	s.mail(ctx, u, "Account recovery approved", msg)
	if phone == "" {
		phone = s.accountPhone(ctx, r)
	}
	if phone != "" && s.senders.SMS != nil {
		text := s.cfg.SiteName + ": a recovery of your account was approved; two-step verification will be turned off."
		switch {
		case s.cfg.Recovery.CoolingOff > 0 && base != "":
			text += " Not you? Open the link in the email we sent to stop it."
		case s.cfg.Recovery.CoolingOff > 0:
			text += " Not you? Sign in with a code before " + r.EffectiveAt.UTC().Format("2 Jan 15:04 UTC") + " to stop it."
		}
		if err := s.senders.SMS.Send(ctx, notify.Message{Channel: notify.ChannelSMS, To: phone, User: u.Name, Body: text}); err != nil {
			s.log.Warn("recovery SMS notice not sent", zap.String("user", r.User), zap.Error(err))
		}
	}
}

func (s *Service) cancelSig(id string) string {
	m := hmac.New(sha256.New, s.deviceKey)
	m.Write([]byte("recovery-cancel\x00" + id))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// CheckCancelLink reports whether id and sig are a "this wasn't me" link
// this service made (sent when a recovery is filed and when it is
// approved): the page it opens says only then that a recovery was asked
// for (a forged link must not show the real site saying so).
func (s *Service) CheckCancelLink(id, sig string) bool {
	return id != "" && len(id) <= 64 && hmac.Equal([]byte(s.cancelSig(id)), []byte(sig))
}

// CancelRecoveryLink cancels an approved request during cooling-off from
// the "this wasn't me" link.
func (s *Service) CancelRecoveryLink(ctx context.Context, id, sig string) error {
	if !s.CheckCancelLink(id, sig) {
		return ErrNotFound
	}
	r, err := s.withRecovery(ctx, id, func(r *Recovery) error {
		if !r.Open() {
			return ErrConflict
		}
		r.Status, r.Reason, r.Decided = RecoveryCancelled, "the account holder said it wasn't them", s.now()
		return s.saveRecovery(ctx, r)
	})
	if err != nil {
		return err
	}
	s.releaseOpen(ctx, r.User, r.ID)
	s.audit.Warn("recovery cancelled by the account holder", zap.String("user", r.User), zap.String("request", id), zap.String("outcome", "cancelled"))
	s.mailRecovery(ctx, r, "Account recovery stopped",
		"The recovery of your account was stopped: two-step verification stays on. Someone may know your password: change it now.")
	return nil
}

// applyLocked turns two-step off for an approved request, under its lock:
// every method removed, sessions and trusted devices ended. tellApplied
// then says so.
func (s *Service) applyLocked(ctx context.Context, r *Recovery) error {
	if changed, err := s.accountChanged(ctx, r); err != nil {
		return err
	} else if changed {
		// Not the account that filed: whoever has the name now keeps
		// their two-step.
		r.Status, r.Decided, r.Reason = RecoveryCancelled, s.now(), "the account changed since the request was filed"
		if err := s.saveRecovery(ctx, r); err != nil {
			return err
		}
		s.audit.Warn("recovery not applied: the account changed", zap.String("user", r.User), zap.String("request", r.ID), zap.String("outcome", "cancelled"))
		return nil
	}
	if err := s.resetTwoStep(ctx, r.User, "recovery "+r.ID, false); err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	flag := "offer-2sv:" + r.User
	if s.cfg.Recovery.AfterApproval == "enroll" {
		flag = mustEnrollKey(r.User)
	}
	if err := s.store.Put(ctx, flag, []byte{1}, 0, s.now()); err != nil {
		return &UnavailableError{err}
	}
	r.Applied = true
	if err := s.saveRecovery(ctx, r); err != nil {
		return err
	}
	s.audit.Warn("recovery applied: two-step off", zap.String("user", r.User), zap.String("request", r.ID), zap.String("outcome", "applied"))
	return nil
}

// accountChanged reports whether the account r names is no longer the one
// that filed it: a users-file user gone from the file, or, for a user who
// existed only at a provider, a users-file user of that name since, or
// another provider account owning the name now (reset-2sv frees it). A
// request of a provider-only user filed before requests said so (not
// External, no contact kept) counts as unchanged while a provider account
// owns the name, as it was applied then.
func (s *Service) accountChanged(ctx context.Context, r *Recovery) (bool, error) {
	user := users.Canonical(r.User)
	if _, inFile := s.users.DB().Lookup(user); inFile {
		return r.External, nil
	}
	now := s.now()
	owner, err := s.store.Get(ctx, ownerKey(user), now)
	if errors.Is(err, store.ErrNotFound) {
		return true, nil // a users-file user removed since, or the name freed
	} else if err != nil {
		return true, &UnavailableError{err}
	}
	if !r.External {
		return false, nil
	}
	b, err := s.store.Get(ctx, recoveryContactKey(r.ID), now)
	if errors.Is(err, store.ErrNotFound) {
		return true, nil
	} else if err != nil {
		return true, &UnavailableError{err}
	}
	var kept users.User
	if json.Unmarshal(b, &kept) != nil {
		return true, nil
	}
	prov, sub, ok := strings.Cut(string(owner), "\x00")
	return !ok || !hmac.Equal([]byte(kept.Credential), []byte(externalCredential(prov, sub))), nil
}

// tellApplied lets go of the applied request's marker and sends the email
// that says to sign in with the password.
func (s *Service) tellApplied(ctx context.Context, r *Recovery) {
	s.releaseOpen(ctx, r.User, r.ID)
	next := "Sign in with your password alone; we will offer to turn two-step verification on again."
	if s.cfg.Recovery.AfterApproval == "enroll" {
		next = "Sign in with your password; you will then set up a new way to get codes."
	}
	s.mailRecovery(ctx, r, "Two-step verification is off: sign in with your password",
		"Your account recovery is done. Two-step verification is off, your old sign-in methods and backup codes were removed, and every session and trusted browser was ended.\n\n"+next)
}

// SweepRecovery applies approvals whose cooling-off ended, expires
// undecided requests, and deletes documents past retention. The state lives
// in the store, so a restart loses nothing; every change is made under the
// request's lock, so sweepers of several nodes, decisions and cancels do
// not undo one another. A request it cannot change now is left for the
// next sweep (and the first such error returned).
func (s *Service) SweepRecovery(ctx context.Context) error {
	if !s.cfg.Recovery.Enabled {
		return nil
	}
	ids, err := s.recoveryIndex(ctx)
	if err != nil {
		return err
	}
	now := s.now()
	var drop []string
	var failed error
	for _, id := range ids {
		r, err := s.loadRecovery(ctx, id)
		if err == nil && s.sweepDue(r, now) {
			r, err = s.sweepOne(ctx, id, now)
		}
		if errors.Is(err, ErrNotFound) {
			drop = append(drop, id) // its record is written before it is listed: gone
			continue
		}
		if err != nil {
			failed = cmp.Or(failed, err)
			continue
		}
		// Keep decided requests in the index for a while after their
		// document is gone, so their owners can still see the outcome.
		if !r.Open() && r.DocumentDeleted && now.Sub(r.Decided) >= s.cfg.Recovery.Retention+30*24*time.Hour {
			drop = append(drop, id)
		}
	}
	if len(drop) > 0 {
		// Dropped from the index as it is now, not as it was read: a
		// request filed meanwhile stays.
		err := s.changeRecoveryIndex(ctx, func(ids []string) ([]string, bool) {
			n := len(ids)
			ids = slices.DeleteFunc(ids, func(id string) bool { return slices.Contains(drop, id) })
			return ids, len(ids) != n
		})
		failed = cmp.Or(failed, err)
	}
	return failed
}

// sweepDue reports whether the sweeper has something to do with r.
func (s *Service) sweepDue(r *Recovery, now time.Time) bool {
	return (r.Status == RecoveryApproved && !r.Applied && !now.Before(r.EffectiveAt)) ||
		(r.Status == RecoveryPending && now.Sub(r.Created) >= s.cfg.Recovery.Expiry) ||
		(!r.Open() && !r.Decided.IsZero() && !r.DocumentDeleted && now.Sub(r.Decided) >= s.cfg.Recovery.Retention)
}

// sweepOne does the sweeper's work on request id under its lock, on the
// record as it is then (a cancel may have come since the sweeper read it).
func (s *Service) sweepOne(ctx context.Context, id string, now time.Time) (*Recovery, error) {
	applied, expired := false, false
	r, err := s.withRecovery(ctx, id, func(r *Recovery) error {
		switch {
		case r.Status == RecoveryApproved && !r.Applied && !now.Before(r.EffectiveAt):
			if err := s.applyLocked(ctx, r); err != nil {
				return err
			}
			applied = r.Applied // not when the account changed meanwhile
		case r.Status == RecoveryPending && now.Sub(r.Created) >= s.cfg.Recovery.Expiry:
			r.Status, r.Decided, r.Reason = RecoveryExpired, now, "no decision within 30 days"
			if err := s.saveRecovery(ctx, r); err != nil {
				return err
			}
			expired = true
			s.audit.Info("recovery expired", zap.String("user", r.User), zap.String("request", id), zap.String("outcome", "expired"))
		}
		if !r.Decided.IsZero() && !r.DocumentDeleted && now.Sub(r.Decided) >= s.cfg.Recovery.Retention && !r.Open() {
			for _, k := range []string{recoveryDocKey(id), recoveryContactKey(id)} {
				if err := s.store.Delete(ctx, k); err != nil {
					return &UnavailableError{err}
				}
			}
			r.DocumentDeleted = true
			if err := s.saveRecovery(ctx, r); err != nil {
				return err
			}
			s.audit.Info("recovery document deleted", zap.String("user", r.User), zap.String("request", id), zap.String("outcome", "retention"))
		}
		return nil
	})
	if applied {
		s.tellApplied(ctx, r)
	}
	if expired {
		s.releaseOpen(ctx, r.User, r.ID)
		s.mailRecovery(ctx, r, "Your account recovery request expired",
			"Your account recovery request was not decided in time and has expired. You can sign in with your password and send a new one.")
	}
	return r, err
}

// AllRecoveries lists every indexed request (operators' view), oldest first.
func (s *Service) AllRecoveries(ctx context.Context) ([]*Recovery, error) {
	ids, err := s.recoveryIndex(ctx)
	if err != nil {
		return nil, err
	}
	var out []*Recovery
	for _, id := range ids {
		r, err := s.loadRecovery(ctx, id)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b *Recovery) int { return a.Created.Compare(b.Created) })
	return out, nil
}

// mustEnroll reports (and clears, when clear) the after-approval enrol flag.
func (s *Service) mustEnroll(ctx context.Context, user string) (bool, error) {
	_, err := s.store.Get(ctx, mustEnrollKey(user), s.now())
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, &UnavailableError{err}
	}
	return true, nil
}

// mailRecovery sends a notice about request r to its account.
func (s *Service) mailRecovery(ctx context.Context, r *Recovery, subject, body string) {
	if u, ok := s.recoveryContact(ctx, r); ok {
		s.mail(ctx, u, subject, body)
	}
}

// recoveryContact is the account r was filed for, as its notices need it:
// the users file's user, or for a user who exists only at a provider the
// record its sign-in keeps (while it is the same provider account) or else
// the one kept with the request. None when the account is no longer of
// the kind that filed (a users-file user of that name added or removed
// since): its notices are not for whoever has the name now.
func (s *Service) recoveryContact(ctx context.Context, r *Recovery) (*users.User, bool) {
	u, inFile := s.users.DB().Lookup(r.User)
	if inFile {
		return u, !r.External
	}
	now := s.now()
	if !r.External {
		// Filed before requests said whose they were: the provider
		// user's record, while there is one.
		b, err := s.store.Get(ctx, externalKey(users.Canonical(r.User)), now)
		var cur users.User
		if err != nil || json.Unmarshal(b, &cur) != nil || !strings.HasPrefix(cur.Credential, "oidc:") {
			return nil, false
		}
		return &cur, true
	}
	b, err := s.store.Get(ctx, recoveryContactKey(r.ID), now)
	if err != nil {
		return nil, false
	}
	var kept users.User
	if json.Unmarshal(b, &kept) != nil || !strings.HasPrefix(kept.Credential, "oidc:") {
		return nil, false
	}
	if b, err := s.store.Get(ctx, externalKey(users.Canonical(r.User)), now); err == nil {
		var cur users.User
		if json.Unmarshal(b, &cur) == nil && cur.Credential == kept.Credential && cur.Email != "" {
			return &cur, true
		}
	}
	return &kept, true
}

// RecoveryCancelURL is the cancel link for tests and the operator's view.
func (s *Service) RecoveryCancelURL(base, id string) string {
	return base + "/.twostep/recovery/cancel?r=" + url.QueryEscape(id) + "&sig=" + s.cancelSig(id)
}

// QueueStats returns how many requests wait for review and how long the
// oldest has waited (for metrics).
func (s *Service) QueueStats(ctx context.Context) (pending int, oldest time.Duration, err error) {
	if !s.cfg.Recovery.Enabled {
		return 0, 0, nil
	}
	ids, err := s.recoveryIndex(ctx)
	if err != nil {
		return 0, 0, err
	}
	now := s.now()
	for _, id := range ids {
		r, err := s.loadRecovery(ctx, id)
		if err != nil || r.Status != RecoveryPending {
			continue
		}
		pending++
		if age := now.Sub(r.Created); age > oldest {
			oldest = age
		}
	}
	return pending, oldest, nil
}
