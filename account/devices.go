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
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/twostep-auth/twostep/internal/store"
	"github.com/twostep-auth/twostep/internal/users"
)

// ErrNotFound: no such device (or someone else's).
var ErrNotFound = errors.New("not found")

// Device is a trusted browser: its cookie stands in for the second factor.
type Device struct {
	ID       string    `json:"id"`
	User     string    `json:"user"`
	Label    string    `json:"label"`
	Created  time.Time `json:"created"`
	LastUsed time.Time `json:"last_used"`
	IP       string    `json:"ip"`
	Expires  time.Time `json:"expires"`
	// Epoch is the user's device epoch when trusted: bumping it revokes
	// every device at once.
	Epoch uint64 `json:"epoch"`
	// Credential fingerprints the password hash: a password change revokes.
	Credential string `json:"credential"`
}

// Key prefixes of the device records. CachedPrefixes lists those read on
// the request path.
const (
	devicePrefix = "device:"
	epochPrefix  = "epoch:"
)

// CachedPrefixes are the key prefixes whose records the request path reads
// (a device-raised session checks its device and the user's epoch): a
// cache in front of the store should keep them (cache.New).
var CachedPrefixes = []string{devicePrefix, epochPrefix}

func deviceKey(secretHash string) string { return devicePrefix + secretHash }
func deviceListKey(user string) string   { return "devices:" + user }
func epochKey(user string) string        { return epochPrefix + user }

// deviceHash is the keyed hash of a device cookie's secret (hex); the
// secret itself is never stored.
func (s *Service) deviceHash(raw []byte) string {
	m := hmac.New(sha256.New, s.deviceKey)
	m.Write(raw)
	return hex.EncodeToString(m.Sum(nil))
}

// epoch returns the user's device epoch as the store has it now.
func (s *Service) epoch(ctx context.Context, user string) (uint64, error) {
	b, err := s.store.Get(ctx, epochKey(user), s.now())
	var v any
	if err == nil {
		v, err = decodeEpoch(b)
	}
	return epochValue(v, err)
}

// cachedEpoch is epoch for the request path: from the store's cache when
// it has one (changes made through it drop the entry at once).
func (s *Service) cachedEpoch(ctx context.Context, user string) (uint64, error) {
	return epochValue(s.viewRecord(ctx, epochPrefix, user, decodeEpoch))
}

func epochValue(v any, err error) (uint64, error) {
	if errors.Is(err, store.ErrNotFound) {
		return 0, nil
	}
	if errors.Is(err, errUnreadable) {
		return 0, &UnavailableError{errors.New("unreadable device epoch")}
	}
	if err != nil {
		return 0, &UnavailableError{err}
	}
	return v.(uint64), nil
}

// revokeDevices ends every trusted device of user (by bumping the epoch)
// and forgets their records.
func (s *Service) revokeDevices(ctx context.Context, user, why string) error {
	// Under the device lock, so that a device being trusted meanwhile is
	// either in the list read below or reads the new epoch. A lock that
	// does not come does not hold the revocation up: the epoch ends every
	// device, and a device left out of its list never skips the code.
	if unlock, err := s.lockDevices(ctx, user); err == nil {
		defer unlock()
	} else {
		var ue *UnavailableError
		if !errors.As(err, &ue) {
			return err
		}
	}
	n, err := s.epoch(ctx, user)
	if err != nil {
		return err
	}
	if err := s.store.Put(ctx, epochKey(user), []byte(strconv.FormatUint(n+1, 10)), 0, s.now()); err != nil {
		return &UnavailableError{err}
	}
	list, err := s.deviceList(ctx, user)
	if err != nil {
		return err
	}
	for _, h := range list {
		if err := s.store.Delete(ctx, deviceKey(h)); err != nil {
			return &UnavailableError{err}
		}
	}
	if err := s.store.Delete(ctx, deviceListKey(user)); err != nil {
		return &UnavailableError{err}
	}
	for range list {
		s.metrics.Device("revoked")
	}
	if len(list) > 0 {
		s.audit.Info("trusted devices revoked", zap.String("user", user), zap.Int("count", len(list)), zap.String("reason", why), zap.String("outcome", "success"))
	}
	return nil
}

// revokeDevicesAround ends the user's trusted devices, runs endSessions,
// and ends the devices again: a device that one of those sessions trusted
// while the first pass ran is listed by then (trustDevice removes its own
// device only when its session is already gone as it looks), so no order
// leaves a device trusted by an ended session.
func (s *Service) revokeDevicesAround(ctx context.Context, user, why string, endSessions func() error) error {
	if err := s.revokeDevices(ctx, user, why); err != nil {
		return err
	}
	if err := endSessions(); err != nil {
		return err
	}
	return s.revokeDevices(ctx, user, why)
}

// deleteUserSessions is store.DeleteUserSessions with its error as the
// service's.
func (s *Service) deleteUserSessions(ctx context.Context, user string) (int, error) {
	n, err := s.store.DeleteUserSessions(ctx, user)
	if err != nil {
		return 0, &UnavailableError{err}
	}
	return n, nil
}

// deviceLockTTL bounds how long a request that died holding a user's
// device lock keeps the others waiting.
const deviceLockTTL = 10 * time.Second

func deviceLockKey(user string) string { return "devices-lock:" + user }

// lockDevices takes the user's device lock, across requests and nodes: the
// device list is read, changed and written back, and two such writes at
// once would drop a device from the list (still trusted, never shown, not
// revocable on its own). It waits at most maxHashWait; *UnavailableError
// when the lock does not come or the store fails.
func (s *Service) lockDevices(ctx context.Context, user string) (func(), error) {
	var tok [16]byte
	if _, err := rand.Read(tok[:]); err != nil {
		return nil, err
	}
	key := deviceLockKey(user)
	deadline := time.NewTimer(maxHashWait)
	defer deadline.Stop()
	delay := time.Millisecond
	for {
		_, created, err := s.store.PutIfAbsent(ctx, key, tok[:], deviceLockTTL, s.now())
		if err != nil {
			return nil, &UnavailableError{err}
		}
		if created {
			return func() { s.unlockDevices(context.WithoutCancel(ctx), key, tok[:]) }, nil
		}
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-deadline.C:
			t.Stop()
			return nil, &UnavailableError{errors.New("the device list of " + user + " stays locked")}
		case <-ctx.Done():
			t.Stop()
			return nil, &UnavailableError{ctx.Err()}
		}
		delay = min(2*delay, 50*time.Millisecond)
	}
}

// unlockDevices releases a lock taken by lockDevices; one that expired and
// was taken by another request meanwhile is given back to it.
func (s *Service) unlockDevices(ctx context.Context, key string, tok []byte) {
	v, err := s.store.Take(ctx, key, s.now())
	if err == nil && !hmac.Equal(v, tok) {
		_, _, _ = s.store.PutIfAbsent(ctx, key, v, deviceLockTTL, s.now())
	}
}

func (s *Service) deviceList(ctx context.Context, user string) ([]string, error) {
	b, err := s.store.Get(ctx, deviceListKey(user), s.now())
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, &UnavailableError{err}
	}
	var list []string
	if err := json.Unmarshal(b, &list); err != nil {
		return nil, &UnavailableError{err}
	}
	return list, nil
}

func (s *Service) saveDeviceList(ctx context.Context, user string, list []string) error {
	b, _ := json.Marshal(list)
	if err := s.store.Put(ctx, deviceListKey(user), b, 0, s.now()); err != nil {
		return &UnavailableError{err}
	}
	return nil
}

// trustDevice records this browser as trusted for the user and returns
// the cookie value. sessionID is the session that just gave the second
// factor ("" for none): if that session is gone once the device is
// stored ("sign out everywhere", reset-2sv, an approved recovery ran
// meanwhile, possibly on another node), the device goes too and the call
// answers ErrNoSession, so that no cookie outlives the revocation. With
// the revocations' second pass over the devices, after the sessions
// (revokeDevicesAround), no order leaves a device trusted by an ended
// session.
func (s *Service) trustDevice(ctx context.Context, u *users.User, sessionID string, c Client, base string) (string, *Device, error) {
	user := users.Canonical(u.Name)
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", nil, err
	}
	var idb [12]byte
	if _, err := rand.Read(idb[:]); err != nil {
		return "", nil, err
	}
	unlock, err := s.lockDevices(ctx, user)
	if err != nil {
		return "", nil, err
	}
	defer func() {
		if unlock != nil {
			unlock()
		}
	}()
	// Read under the lock: a revocation either comes first (and this
	// device has its new epoch) or lists this device and removes it.
	ep, err := s.epoch(ctx, user)
	if err != nil {
		return "", nil, err
	}
	now := s.now()
	d := &Device{
		ID: hex.EncodeToString(idb[:]), User: user, Label: DeviceLabel(c.UserAgent),
		Created: now, LastUsed: now, IP: c.ip(), Expires: now.Add(s.cfg.TrustedDeviceLifetime),
		Epoch: ep, Credential: u.Credential,
	}
	h := s.deviceHash(raw[:])
	b, _ := json.Marshal(d)
	if err := s.store.Put(ctx, deviceKey(h), b, s.cfg.TrustedDeviceLifetime, now); err != nil {
		return "", nil, &UnavailableError{err}
	}
	list, err := s.deviceList(ctx, user)
	if err != nil {
		return "", nil, err
	}
	list = s.pruneDevices(ctx, list)
	for len(list) >= maxTrustedDevices {
		// The oldest (the list is in the order they were trusted) gives way.
		if err := s.store.Delete(ctx, deviceKey(list[0])); err != nil {
			return "", nil, &UnavailableError{err}
		}
		list = list[1:]
		s.metrics.Device("revoked")
		s.audit.Info("trusted device dropped", zap.String("user", user), zap.String("reason", "too many trusted devices"), zap.String("outcome", "success"))
	}
	if err := s.saveDeviceList(ctx, user, append(list, h)); err != nil {
		return "", nil, err
	}
	if sessionID != "" {
		if _, err := s.store.GetSession(ctx, sessionID, now); err != nil {
			// The cookie is never handed out; the record goes too (a
			// failure to delete it leaves a device nobody holds).
			_ = s.store.Delete(ctx, deviceKey(h))
			if errors.Is(err, store.ErrNotFound) {
				return "", nil, ErrNoSession
			}
			return "", nil, &UnavailableError{err}
		}
	}
	unlock()
	unlock = nil
	s.audit.Info("device trusted", zap.String("user", user), zap.String("device", d.ID), zap.String("ip", c.ip()),
		zap.String("user_agent", c.UserAgent), zap.String("outcome", "success"))
	s.metrics.Device("created")
	revoke := "If this wasn't you, revoke it now:\n" + s.revokeLink(base, user, d.ID) + "\n\nand change your password."
	if base == "" {
		// No configured name for this site: the request's Host is the
		// client's, and may be someone else's site (c.Base).
		revoke = "If this wasn't you, sign in, open Login & security and remove it under trusted browsers, and change your password."
	}
	s.mail(ctx, u, "A new browser can sign in without a code",
		"You chose \"Don't require a code on this browser\" on "+d.Label+" (from "+d.IP+") at "+now.UTC().Format("2 Jan 2006 15:04 UTC")+".\n\n"+revoke)
	return tokenEncoding.EncodeToString(raw[:]), d, nil
}

// maxTrustedDevices bounds a user's trusted devices: trusting one more
// ends the oldest (every trust, listing and revocation reads them all).
const maxTrustedDevices = 50

// pruneDevices drops list entries whose records are gone (expired).
func (s *Service) pruneDevices(ctx context.Context, list []string) []string {
	out := list[:0]
	for _, h := range list {
		if _, err := s.store.Get(ctx, deviceKey(h), s.now()); err == nil || !errors.Is(err, store.ErrNotFound) {
			out = append(out, h)
		}
	}
	return out
}

// checkDevice returns the live device behind a cookie for user, or nil.
func (s *Service) checkDevice(ctx context.Context, u *users.User, cookie string) (*Device, string, error) {
	if len(cookie) != 43 {
		return nil, "", nil
	}
	var raw [32]byte
	if n, err := tokenEncoding.Decode(raw[:], []byte(cookie)); err != nil || n != 32 {
		return nil, "", nil
	}
	h := s.deviceHash(raw[:])
	b, err := s.store.Get(ctx, deviceKey(h), s.now())
	if errors.Is(err, store.ErrNotFound) {
		return nil, "", nil
	}
	if err != nil {
		return nil, "", &UnavailableError{err}
	}
	var d Device
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, "", nil
	}
	user := users.Canonical(u.Name)
	ep, err := s.epoch(ctx, user)
	if err != nil {
		return nil, "", err
	}
	if d.User != user || !s.now().Before(d.Expires) || d.Epoch != ep ||
		!hmac.Equal([]byte(d.Credential), []byte(u.Credential)) {
		return nil, "", nil
	}
	// Only a device the user is shown (and can revoke) skips the code.
	list, err := s.deviceList(ctx, user)
	if err != nil {
		return nil, "", err
	}
	if !slices.Contains(list, h) {
		return nil, "", nil
	}
	return &d, h, nil
}

// touchDevice records a use, at most once a minute. The write replaces the
// record only while it is stored: a revocation that deleted it after
// checkDevice read it stays final, and touchDevice reports the device gone.
func (s *Service) touchDevice(ctx context.Context, d *Device, h string, c Client) (live bool, err error) {
	now := s.now()
	if now.Sub(d.LastUsed) < TouchInterval {
		return true, nil
	}
	d.LastUsed = now
	d.IP = c.ip()
	b, _ := json.Marshal(d)
	err = s.store.Replace(ctx, deviceKey(h), b, d.Expires.Sub(now), now)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, &UnavailableError{err}
	}
	return true, nil
}

// DeviceView is a trusted device as the settings page and API show it.
type DeviceView struct {
	ID       string    `json:"id"`
	Label    string    `json:"label"`
	Created  time.Time `json:"created"`
	LastUsed time.Time `json:"last_used"`
	IP       string    `json:"ip"`
	Current  bool      `json:"current"`
}

// Devices lists the user's live trusted devices; current marks the one
// whose cookie this request carries.
func (s *Service) Devices(ctx context.Context, res *Resolved, cookie string) ([]DeviceView, error) {
	if res.Session.State != store.StateOneFactor && res.Session.State != store.StateTwoFactor {
		return nil, ErrForbidden
	}
	user := res.Session.User
	list, err := s.deviceList(ctx, user)
	if err != nil {
		return nil, err
	}
	cur, _, err := s.checkDevice(ctx, res.User, cookie)
	if err != nil {
		return nil, err
	}
	ep, err := s.epoch(ctx, user)
	if err != nil {
		return nil, err
	}
	out := []DeviceView{}
	for _, h := range list {
		b, err := s.store.Get(ctx, deviceKey(h), s.now())
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, &UnavailableError{err}
		}
		var d Device
		// Listed only while it would skip the code: a password change
		// (another credential), expiry or an epoch bump ends it.
		if json.Unmarshal(b, &d) != nil || d.User != user || d.Epoch != ep || !s.now().Before(d.Expires) ||
			!hmac.Equal([]byte(d.Credential), []byte(res.User.Credential)) {
			continue
		}
		out = append(out, DeviceView{ID: d.ID, Label: d.Label, Created: d.Created, LastUsed: d.LastUsed, IP: d.IP,
			Current: cur != nil && cur.ID == d.ID})
	}
	slices.SortFunc(out, func(a, b DeviceView) int { return b.LastUsed.Compare(a.LastUsed) })
	return out, nil
}

// RevokeDevice ends one trusted device of the user; ErrNotFound for an
// unknown id or someone else's device.
func (s *Service) RevokeDevice(ctx context.Context, user, id string, c Client) error {
	user = users.Canonical(user)
	unlock, err := s.lockDevices(ctx, user)
	if err != nil {
		return err
	}
	locked := true
	defer func() {
		if locked {
			unlock()
		}
	}()
	list, err := s.deviceList(ctx, user)
	if err != nil {
		return err
	}
	for i, h := range list {
		b, err := s.store.Get(ctx, deviceKey(h), s.now())
		if err != nil {
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			return &UnavailableError{err}
		}
		var d Device
		if json.Unmarshal(b, &d) != nil || d.User != user || !hmac.Equal([]byte(d.ID), []byte(id)) {
			continue
		}
		if err := s.store.Delete(ctx, deviceKey(h)); err != nil {
			return &UnavailableError{err}
		}
		if err := s.saveDeviceList(ctx, user, slices.Delete(list, i, i+1)); err != nil {
			return err
		}
		unlock()
		locked = false
		s.audit.Info("device revoked", zap.String("user", user), zap.String("device", id), zap.String("ip", c.ip()),
			zap.String("user_agent", c.UserAgent), zap.String("outcome", "success"))
		s.metrics.Device("revoked")
		if u, ok := s.users.DB().Lookup(user); ok {
			s.mail(ctx, u, "A trusted browser was revoked",
				d.Label+" (trusted "+d.Created.UTC().Format("2 Jan 2006")+") will be asked for a code again.")
		}
		return nil
	}
	return ErrNotFound
}

// RevokeAll ends every session and trusted device of the user ("sign out
// everywhere").
func (s *Service) RevokeAll(ctx context.Context, user string, c Client) error {
	user = users.Canonical(user)
	var n int
	if err := s.revokeDevicesAround(ctx, user, "sign out everywhere", func() (err error) {
		n, err = s.deleteUserSessions(ctx, user)
		return err
	}); err != nil {
		return err
	}
	s.audit.Info("signed out everywhere", zap.String("user", user), zap.Int("sessions", n), zap.String("ip", c.ip()),
		zap.String("user_agent", c.UserAgent), zap.String("outcome", "success"))
	if u, ok := s.users.DB().Lookup(user); ok {
		s.mail(ctx, u, "You were signed out everywhere",
			"Every session of your account was ended and every trusted browser forgotten. If this wasn't you, change your password.")
	}
	return nil
}

// revokeLink is the one-click link in the new-device email: it names the
// device and carries a MAC, so it works without signing in.
func (s *Service) revokeLink(base, user, id string) string {
	return base + "/.twostep/devices/revoke?u=" + url.QueryEscape(user) + "&d=" + id + "&sig=" + s.revokeSig(user, id)
}

func (s *Service) revokeSig(user, id string) string {
	m := hmac.New(sha256.New, s.deviceKey)
	m.Write([]byte("revoke\x00" + user + "\x00" + id))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// CheckRevokeLink reports whether a revoke link's signature is ours.
func (s *Service) CheckRevokeLink(user, id, sig string) bool {
	if user == "" || id == "" || len(id) > 64 || len(user) > 256 {
		return false
	}
	return hmac.Equal([]byte(s.revokeSig(user, id)), []byte(sig))
}

// DeviceLabel names a browser from its user agent ("Firefox on Linux").
func DeviceLabel(ua string) string {
	browser := "A browser"
	for _, b := range []struct{ needle, name string }{
		{"Edg/", "Edge"}, {"OPR/", "Opera"}, {"Firefox/", "Firefox"}, {"Chrome/", "Chrome"},
		{"Safari/", "Safari"}, {"curl/", "curl"},
	} {
		if strings.Contains(ua, b.needle) {
			browser = b.name
			break
		}
	}
	osName := ""
	for _, o := range []struct{ needle, name string }{
		{"iPhone", "iPhone"}, {"iPad", "iPad"}, {"Android", "Android"}, {"Windows", "Windows"},
		{"Mac OS X", "macOS"}, {"CrOS", "ChromeOS"}, {"Linux", "Linux"},
	} {
		if strings.Contains(ua, o.needle) {
			osName = o.name
			break
		}
	}
	if osName == "" {
		return browser
	}
	return browser + " on " + osName
}

// deviceLive reports whether the trusted device h still stands for u's
// second factor. It runs on every request of a session that the device
// raised, so it reads through the store's cache when there is one.
func (s *Service) deviceLive(ctx context.Context, u *users.User, h string) (bool, error) {
	v, err := s.viewRecord(ctx, devicePrefix, h, decodeDevice)
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, errUnreadable) {
		return false, nil
	}
	if err != nil {
		return false, &UnavailableError{err}
	}
	d := v.(*Device)
	ep, err := s.cachedEpoch(ctx, d.User)
	if err != nil {
		return false, err
	}
	return d.User == users.Canonical(u.Name) && s.now().Before(d.Expires) && d.Epoch == ep &&
		hmac.Equal([]byte(d.Credential), []byte(u.Credential)), nil
}

// errUnreadable marks a record that does not decode.
var errUnreadable = errors.New("unreadable record")

// decodeDevice decodes a device record for viewRecord.
func decodeDevice(b []byte) (any, error) {
	d := new(Device)
	if json.Unmarshal(b, d) != nil {
		return nil, errUnreadable
	}
	return d, nil
}

// decodeEpoch decodes a device epoch for viewRecord.
func decodeEpoch(b []byte) (any, error) {
	n, err := strconv.ParseUint(string(b), 10, 64)
	if err != nil {
		return nil, errUnreadable
	}
	return n, nil
}

// viewRecord reads and decodes prefix+name, from the store's cache when it
// has one; the value may be shared and must not be modified.
func (s *Service) viewRecord(ctx context.Context, prefix, name string, decode func([]byte) (any, error)) (any, error) {
	if s.view != nil {
		return s.view.View(ctx, prefix, name, s.now(), decode)
	}
	b, err := s.store.Get(ctx, prefix+name, s.now())
	if err != nil {
		return nil, err
	}
	return decode(b)
}

// ResetTwoStep is the operator's reset (`caddy twostep reset-2sv`): two-step
// off, every method removed (authenticator, confirmed phone, backup codes),
// trusted devices and sessions ended, the second-factor lock cleared. A
// phone number in the users file stays: remove it there too if it is lost.
func (s *Service) ResetTwoStep(ctx context.Context, user, operator string) error {
	// In the user's turn, like every sign-in step that reads and saves the
	// two-step record: one that read it before could otherwise save it
	// back over the reset (an old TOTP secret returning). The turn is this
	// process's. (An approved recovery resets under the request's lock,
	// which a sign-in takes in its turn to cancel open requests, so it
	// cannot wait for the turn as well; a sign-in that passes a factor
	// cancels the request anyway.)
	unlock, err := s.gate.lock(ctx, users.Canonical(user), maxHashWait)
	if err != nil {
		return err
	}
	err = s.resetTwoStep(ctx, user, operator, true)
	unlock()
	if err != nil {
		return err
	}
	// The operator's reset also frees the user name's bindings to
	// provider accounts (a provider that re-created its user gets a new
	// sub); an approved recovery keeps them.
	user = users.Canonical(user)
	keys := []string{ownerKey(user), externalKey(user)}
	for _, p := range s.cfg.Providers {
		keys = append(keys, linkKey(p, user))
	}
	for _, k := range keys {
		if err := s.store.Delete(ctx, k); err != nil {
			return &UnavailableError{err}
		}
	}
	return nil
}

func (s *Service) resetTwoStep(ctx context.Context, user, operator string, tell bool) error {
	user = users.Canonical(user)
	if _, ok := s.users.DB().Lookup(user); !ok {
		// A user who exists only upstream is known by its name's owner.
		if _, err := s.store.Get(ctx, ownerKey(user), s.now()); errors.Is(err, store.ErrNotFound) {
			return ErrNotFound
		} else if err != nil {
			return &UnavailableError{err}
		}
	}
	r, err := s.loadRecord(ctx, user)
	if err != nil {
		return err
	}
	for _, h := range r.Backup {
		if err := s.store.Delete(ctx, "backup:"+user+":"+h); err != nil {
			return &UnavailableError{err}
		}
	}
	if err := s.store.Delete(ctx, recordKey(user)); err != nil {
		return &UnavailableError{err}
	}
	// The users file's phone was a method too: it is no longer offered
	// (the user may have lost it) until the file names another number.
	if u, ok := s.users.DB().Lookup(user); ok && u.Phone != "" {
		if err := s.saveRecord(ctx, user, &record{FilePhoneOff: s.filePhoneHash(u)}); err != nil {
			return err
		}
	}
	// (An enrolment in progress belongs to its session, which ends below.)
	for _, k := range []string{"fail:2fa:u:" + user, "ban:2fa:u:" + user} {
		if err := s.store.Delete(ctx, k); err != nil {
			return &UnavailableError{err}
		}
	}
	var n int
	if err := s.revokeDevicesAround(ctx, user, "reset-2sv", func() (err error) {
		n, err = s.deleteUserSessions(ctx, user)
		return err
	}); err != nil {
		return err
	}
	s.audit.Warn("two-step reset by operator", zap.String("user", user), zap.String("operator", operator),
		zap.Int("sessions", n), zap.String("outcome", "success"))
	if u, ok := s.users.DB().Lookup(user); ok && tell {
		s.mail(ctx, u, "Two-step verification was reset",
			"An administrator reset two-step verification for your account: your sign-in methods, backup codes and trusted browsers were removed, and every session was ended. Sign in with your password and set it up again.\n\nIf you did not ask for this, tell your administrator at once.")
	}
	return nil
}

// UserDevices lists a user's live trusted devices (operators' view).
func (s *Service) UserDevices(ctx context.Context, user string) ([]DeviceView, error) {
	user = users.Canonical(user)
	u, ok := s.users.DB().Lookup(user)
	if !ok {
		return nil, ErrNotFound
	}
	return s.Devices(ctx, &Resolved{Session: &store.Session{User: user, State: store.StateTwoFactor}, User: u}, "")
}

// PasswordsChanged acts on a reload of the users file: every user whose
// password changed, who was disabled, or who is gone loses their sessions
// and trusted devices now. Resolve already refuses them on their next
// request, but only while the change stands: a revert (re-enabling the
// user, restoring the old file) would otherwise bring back every cookie
// that was not presented meanwhile. The revocation is counted and audited
// like any other. It stops at the first store error.
func (s *Service) PasswordsChanged(ctx context.Context, old, cur *users.DB) {
	if old == nil || cur == nil {
		return
	}
	for _, o := range old.Users() {
		u, ok := cur.Lookup(o.Name)
		why := ""
		switch {
		case !ok:
			why = "user removed"
		case u.Disabled && !o.Disabled:
			why = "user disabled"
		case o.Credential != u.Credential:
			why = "password changed"
		default:
			continue
		}
		user := users.Canonical(o.Name)
		if err := s.revokeDevices(ctx, user, why); err != nil {
			s.log.Warn("sessions and devices of a changed user not removed", zap.String("user", o.Name), zap.Error(err))
			return
		}
		n, err := s.store.DeleteUserSessions(ctx, user)
		if err != nil {
			s.log.Warn("sessions and devices of a changed user not removed", zap.String("user", o.Name), zap.Error(err))
			return
		}
		if n > 0 {
			s.audit.Info("sessions ended", zap.String("user", user), zap.Int("count", n), zap.String("reason", why), zap.String("outcome", "success"))
		}
	}
}

// RevokeAllDevices ends every trusted device of the user, keeping sessions.
func (s *Service) RevokeAllDevices(ctx context.Context, user string) error {
	return s.revokeDevices(ctx, users.Canonical(user), "operator")
}
