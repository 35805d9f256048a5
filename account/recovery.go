package account

import (
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
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/twostep-auth/twostep/internal/documents"
	"github.com/twostep-auth/twostep/internal/notify"
	"github.com/twostep-auth/twostep/internal/store"
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
	return ids, nil
}

func (s *Service) saveRecoveryIndex(ctx context.Context, ids []string) error {
	b, _ := json.Marshal(ids)
	if err := s.store.Put(ctx, recoveryIndexKey(), b, 0, s.now()); err != nil {
		return &UnavailableError{err}
	}
	return nil
}

// RecoveryEnabled reports whether the identity check is configured.
func (s *Service) RecoveryEnabled() bool { return s.cfg.Recovery.Enabled }

// RecoverySettings returns the recovery configuration (for the pages).
func (s *Service) RecoverySettings() RecoveryConfig { return s.cfg.Recovery }

// RecoveryAllowed reports what RequestRecovery would refuse before it
// reads a document (disabled, a session that needs no recovery, an open
// request), so that an upload that cannot be taken is not read at all.
func (s *Service) RecoveryAllowed(ctx context.Context, res *Resolved) error {
	if !s.cfg.Recovery.Enabled {
		return ErrRecoveryDisabled
	}
	switch res.Session.State {
	case store.StateSecondFactor:
	case store.StateOneFactor, store.StateTwoFactor:
		return ErrConflict // a signed-in user needs no recovery
	default:
		return ErrForbidden
	}
	if open, err := s.openRecovery(ctx, res.Session.User); err != nil {
		return err
	} else if open != nil {
		return ErrConflict
	}
	return nil
}

// maxUploads bounds the recovery uploads read at once (each is held in
// memory, up to max_size); uploadWait is how long one waits for a turn.
const (
	maxUploads = 4
	uploadWait = 3 * time.Second
)

// UploadSlot waits for one of the maxUploads turns to read a recovery
// upload; ErrBusy (503) when none comes within uploadWait.
func (s *Service) UploadSlot(ctx context.Context) (release func(), err error) {
	t := time.NewTimer(uploadWait)
	defer t.Stop()
	select {
	case s.uploadSlots <- struct{}{}:
		return func() { <-s.uploadSlots }, nil
	case <-t.C:
	case <-ctx.Done():
	}
	return nil, ErrBusy
}

// RequestRecovery files an identity-verification request for a user who
// gave the right password but cannot pass a second factor. doc is the
// upload (read at most max_size+1 bytes).
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
	r := &Recovery{
		ID: hex.EncodeToString(idb[:]), User: user, Created: now, IP: c.ip(), UserAgent: truncate(c.UserAgent, 256),
		DocumentType: docType, DocumentKind: string(d.Kind), Status: RecoveryPending,
	}
	// One open request per account: claim the slot atomically.
	if _, created, err := s.store.PutIfAbsent(ctx, recoveryOpenKey(user), []byte(r.ID), 0, now); err != nil {
		return nil, &UnavailableError{err}
	} else if !created {
		return nil, ErrConflict
	}
	blob, err := s.vault.Seal(d, user, r.ID)
	if err != nil {
		_ = s.store.Delete(ctx, recoveryOpenKey(user))
		return nil, err
	}
	if err := s.store.Put(ctx, recoveryDocKey(r.ID), blob, 0, now); err != nil {
		_ = s.store.Delete(ctx, recoveryOpenKey(user))
		return nil, &UnavailableError{err}
	}
	if err := s.saveRecovery(ctx, r); err != nil {
		return nil, err
	}
	// The status page shows the latest request once it is decided too.
	if err := s.store.Put(ctx, recoveryLastKey(user), []byte(r.ID), 0, now); err != nil {
		return nil, &UnavailableError{err}
	}
	ids, err := s.recoveryIndex(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.saveRecoveryIndex(ctx, append(ids, r.ID)); err != nil {
		return nil, err
	}
	s.audit.Info("recovery requested", zap.String("user", user), zap.String("request", r.ID), zap.String("document_type", docType),
		zap.String("ip", c.ip()), zap.String("user_agent", c.UserAgent), zap.String("outcome", "pending"))
	s.mailUser(ctx, user, "We received your account recovery request",
		"We received your request to recover your account with a "+strings.ToLower(DocumentTypes[docType])+". "+
			"A person will check it; this takes "+s.cfg.Recovery.Expected+". We will email you when it is decided.\n\n"+
			"If it is approved, two-step verification will be turned off"+s.afterApprovalText()+".\n\n"+
			"If you did not ask for this, sign in with your code and the request is cancelled at once; then change your password.")
	return r, nil
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

// openRecovery returns the user's open request, if any.
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
		_ = s.store.Delete(ctx, recoveryOpenKey(user))
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if !r.Open() {
		_ = s.store.Delete(ctx, recoveryOpenKey(user))
		return nil, nil
	}
	return r, nil
}

// MyRecovery returns the caller's most recent request (open or not), if
// the session is its owner's. id "" means the open one, or else the latest.
func (s *Service) MyRecovery(ctx context.Context, res *Resolved, id string) (*Recovery, error) {
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

// cancelOpenRecovery ends the user's open request because they passed a
// second factor (someone who has the factor needs no recovery).
func (s *Service) cancelOpenRecovery(ctx context.Context, user, why string) error {
	r, err := s.openRecovery(ctx, user)
	if err != nil || r == nil {
		return err
	}
	r.Status = RecoveryCancelled
	r.Decided = s.now()
	r.Reason = why
	if err := s.saveRecovery(ctx, r); err != nil {
		return err
	}
	if err := s.store.Delete(ctx, recoveryOpenKey(user)); err != nil {
		return &UnavailableError{err}
	}
	s.audit.Info("recovery cancelled", zap.String("user", user), zap.String("request", r.ID), zap.String("reason", why), zap.String("outcome", "cancelled"))
	s.mailUser(ctx, user, "Your account recovery request was cancelled",
		"Your account recovery request was cancelled because "+why+". Two-step verification stays on.\n\n"+
			"If you did not ask for recovery, someone may know your password: change it now.")
	return nil
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
	r, err := s.loadRecovery(ctx, id)
	if err != nil {
		return nil, err
	}
	if r.User == reviewer {
		return nil, ErrForbidden
	}
	if r.Status != RecoveryPending {
		return nil, ErrAlreadyDecided
	}
	now := s.now()
	// reviewed records a decision that was saved (a refused one is not).
	reviewed := func() {
		s.audit.Info("recovery reviewed", zap.String("reviewer", reviewer), zap.String("user", r.User), zap.String("request", id),
			zap.String("decision", decision), zap.String("ip", c.ip()), zap.String("outcome", decision))
		s.metrics.Decision(decision)
	}
	if decision == "deny" {
		r.Status, r.Decided, r.DecidedBy, r.Reason = RecoveryDenied, now, reviewer, reason
		if err := s.saveRecovery(ctx, r); err != nil {
			return nil, err
		}
		reviewed()
		_ = s.store.Delete(ctx, recoveryOpenKey(r.User))
		s.mailUser(ctx, r.User, "Your account recovery request was declined",
			"Your request to recover your account was declined.\n\nReason: "+reason+
				"\n\nYou can sign in with your password and send a new request, for example with a clearer picture of your ID.")
		return r, nil
	}
	if slices.Contains(r.Approvals, reviewer) {
		return nil, ErrAlreadyApproved // the same reviewer twice does not count twice
	}
	r.Approvals = append(r.Approvals, reviewer)
	if len(r.Approvals) < s.cfg.Recovery.Approvals {
		if err := s.saveRecovery(ctx, r); err != nil {
			return nil, err
		}
		reviewed()
		return r, nil
	}
	r.Status, r.Decided, r.DecidedBy, r.Reason = RecoveryApproved, now, strings.Join(r.Approvals, ","), reason
	r.EffectiveAt = now.Add(s.cfg.Recovery.CoolingOff)
	if err := s.saveRecovery(ctx, r); err != nil {
		return nil, err
	}
	reviewed()
	s.tellApproved(ctx, r, c.Base)
	if s.cfg.Recovery.CoolingOff <= 0 {
		if err := s.applyRecovery(ctx, r); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// tellApproved tells every channel of the account, with a link that
// cancels the change during the cooling-off period.
func (s *Service) tellApproved(ctx context.Context, r *Recovery, base string) {
	u, ok := s.users.DB().Lookup(r.User)
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
	rec, err := s.loadRecord(ctx, r.User)
	if err != nil {
		return
	}
	if phone, err := s.phoneOf(u, rec); err == nil && phone != "" && s.senders.SMS != nil {
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

// CancelRecoveryLink cancels an approved request during cooling-off from
// the "this wasn't me" link.
func (s *Service) CancelRecoveryLink(ctx context.Context, id, sig string) error {
	if id == "" || len(id) > 64 || !hmac.Equal([]byte(s.cancelSig(id)), []byte(sig)) {
		return ErrNotFound
	}
	r, err := s.loadRecovery(ctx, id)
	if err != nil {
		return err
	}
	if !r.Open() {
		return ErrConflict
	}
	r.Status, r.Reason, r.Decided = RecoveryCancelled, "the account holder said it wasn't them", s.now()
	if err := s.saveRecovery(ctx, r); err != nil {
		return err
	}
	_ = s.store.Delete(ctx, recoveryOpenKey(r.User))
	s.audit.Warn("recovery cancelled by the account holder", zap.String("user", r.User), zap.String("request", id), zap.String("outcome", "cancelled"))
	s.mailUser(ctx, r.User, "Account recovery stopped",
		"The recovery of your account was stopped: two-step verification stays on. Someone may know your password: change it now.")
	return nil
}

// applyRecovery turns two-step off for an approved request: every method
// removed, sessions and trusted devices ended, and the email that says to
// sign in with the password.
func (s *Service) applyRecovery(ctx context.Context, r *Recovery) error {
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
	_ = s.store.Delete(ctx, recoveryOpenKey(r.User))
	s.audit.Warn("recovery applied: two-step off", zap.String("user", r.User), zap.String("request", r.ID), zap.String("outcome", "applied"))
	next := "Sign in with your password alone; we will offer to turn two-step verification on again."
	if s.cfg.Recovery.AfterApproval == "enroll" {
		next = "Sign in with your password; you will then set up a new way to get codes."
	}
	s.mailUser(ctx, r.User, "Two-step verification is off: sign in with your password",
		"Your account recovery is done. Two-step verification is off, your old sign-in methods and backup codes were removed, and every session and trusted browser was ended.\n\n"+next)
	return nil
}

// SweepRecovery applies approvals whose cooling-off ended, expires
// undecided requests, and deletes documents past retention. The state lives
// in the store, so a restart loses nothing.
func (s *Service) SweepRecovery(ctx context.Context) error {
	if !s.cfg.Recovery.Enabled {
		return nil
	}
	ids, err := s.recoveryIndex(ctx)
	if err != nil {
		return err
	}
	now := s.now()
	keep := ids[:0:0]
	for _, id := range ids {
		r, err := s.loadRecovery(ctx, id)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		switch {
		case r.Status == RecoveryApproved && !r.Applied && !now.Before(r.EffectiveAt):
			if err := s.applyRecovery(ctx, r); err != nil {
				return err
			}
		case r.Status == RecoveryPending && now.Sub(r.Created) >= s.cfg.Recovery.Expiry:
			r.Status, r.Decided, r.Reason = RecoveryExpired, now, "no decision within 30 days"
			if err := s.saveRecovery(ctx, r); err != nil {
				return err
			}
			_ = s.store.Delete(ctx, recoveryOpenKey(r.User))
			s.audit.Info("recovery expired", zap.String("user", r.User), zap.String("request", id), zap.String("outcome", "expired"))
			s.mailUser(ctx, r.User, "Your account recovery request expired",
				"Your account recovery request was not decided in time and has expired. You can sign in with your password and send a new one.")
		}
		if !r.Decided.IsZero() && !r.DocumentDeleted && now.Sub(r.Decided) >= s.cfg.Recovery.Retention && !r.Open() {
			if err := s.store.Delete(ctx, recoveryDocKey(id)); err != nil {
				return &UnavailableError{err}
			}
			r.DocumentDeleted = true
			if err := s.saveRecovery(ctx, r); err != nil {
				return err
			}
			s.audit.Info("recovery document deleted", zap.String("user", r.User), zap.String("request", id), zap.String("outcome", "retention"))
		}
		// Keep decided requests in the index for a while after their
		// document is gone, so their owners can still see the outcome.
		if r.Open() || !r.DocumentDeleted || now.Sub(r.Decided) < s.cfg.Recovery.Retention+30*24*time.Hour {
			keep = append(keep, id)
		}
	}
	if len(keep) != len(ids) {
		return s.saveRecoveryIndex(ctx, keep)
	}
	return nil
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

func (s *Service) mailUser(ctx context.Context, user, subject, body string) {
	if u, ok := s.users.DB().Lookup(user); ok {
		s.mail(ctx, u, subject, body)
	}
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
