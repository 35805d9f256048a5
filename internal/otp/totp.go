package otp

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/base32"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"image/png"
	"strings"
	"time"

	potp "github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
)

// TOTP parameters. They are what every authenticator app assumes when an
// otpauth URL says nothing else, and are written into the URL anyway.
const (
	// TOTPPeriod is the length of a time step, in seconds (RFC 6238 X).
	TOTPPeriod = 30
	// TOTPDigits is the length of a TOTP code.
	TOTPDigits = 6
	// TOTPSecretSize is the size, in bytes, of a new secret (160 bits, as
	// RFC 4226 R6 recommends).
	TOTPSecretSize = 20
	// MaxSkew is the largest skew MatchTOTP accepts; a larger one refuses
	// every code (RFC 6238 §5.2 recommends at most one step).
	MaxSkew = 10
	// DefaultQRSize is the side, in pixels, of the QR code QRPNG draws when
	// asked for size <= 0.
	DefaultQRSize = 256
	// MaxQRSize is the largest side, in pixels, QRPNG draws.
	MaxQRSize = 2048
)

// Limits on a secret given to MatchTOTP, in decoded bytes. RFC 4226 R6 makes
// 128 bits the minimum; the upper bound only keeps the work bounded.
const (
	minSecretBytes  = 16
	maxSecretBytes  = 128
	maxSecretBase32 = (maxSecretBytes*8 + 4) / 5
)

// b32 is the base32 encoding of secrets: RFC 4648 alphabet, no padding.
var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// TOTPKey is a freshly generated TOTP authenticator, to be shown once at
// enrolment. Secret is what the caller stores (encrypted); URL is what the
// user's app scans.
type TOTPKey struct {
	// Secret is the shared secret, base32 (RFC 4648) without padding.
	Secret string
	// URL is the otpauth://totp/ URI carrying the secret, issuer, algorithm
	// (SHA1), digits (6) and period (30).
	URL string
}

// NewTOTPKey generates a TOTP key with a random 160-bit secret from
// crypto/rand, labelled "issuer:account" for authenticator apps. Neither
// issuer nor account may be empty or contain a colon or a control character.
func NewTOTPKey(issuer, account string) (*TOTPKey, error) {
	return newTOTPKey(issuer, account, nil)
}

// TOTPKeyFromSecret rebuilds the TOTPKey (and so its URL and QR code) of an
// existing secret, for instance to show the QR code again while enrolment is
// pending. The secret is validated as MatchTOTP would.
func TOTPKeyFromSecret(issuer, account, secret string) (*TOTPKey, error) {
	key, ok := decodeSecret(secret)
	if !ok {
		return nil, errors.New("otp: invalid TOTP secret")
	}
	return newTOTPKey(issuer, account, key)
}

func newTOTPKey(issuer, account string, secret []byte) (*TOTPKey, error) {
	if err := checkLabel("issuer", issuer); err != nil {
		return nil, err
	}
	if err := checkLabel("account", account); err != nil {
		return nil, err
	}
	k, err := totp.Generate(totp.GenerateOpts{
		Issuer:      issuer,
		AccountName: account,
		Period:      TOTPPeriod,
		SecretSize:  TOTPSecretSize,
		Secret:      secret,
		Digits:      potp.DigitsSix,
		Algorithm:   potp.AlgorithmSHA1,
	})
	if err != nil {
		return nil, fmt.Errorf("otp: generating TOTP key: %w", err)
	}
	return &TOTPKey{Secret: k.Secret(), URL: k.URL()}, nil
}

// checkLabel refuses label parts that authenticator apps cannot show or that
// break the "issuer:account" label of the key URI format.
func checkLabel(what, s string) error {
	if s == "" {
		return fmt.Errorf("otp: empty TOTP %s", what)
	}
	if len(s) > 256 {
		return fmt.Errorf("otp: TOTP %s too long", what)
	}
	for _, r := range s {
		if r == ':' || r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return fmt.Errorf("otp: TOTP %s %q contains %q", what, s, r)
		}
	}
	return nil
}

// QRPNG draws k.URL as a QR code and returns it as PNG bytes, size pixels
// square (DefaultQRSize when size <= 0; at most MaxQRSize).
func (k *TOTPKey) QRPNG(size int) ([]byte, error) {
	if size <= 0 {
		size = DefaultQRSize
	}
	if size > MaxQRSize {
		return nil, fmt.Errorf("otp: QR size %d above %d", size, MaxQRSize)
	}
	key, err := potp.NewKeyFromURL(k.URL)
	if err != nil {
		return nil, fmt.Errorf("otp: parsing TOTP URL: %w", err)
	}
	img, err := key.Image(size, size)
	if err != nil {
		return nil, fmt.Errorf("otp: drawing QR code: %w", err)
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return nil, fmt.Errorf("otp: encoding QR code: %w", err)
	}
	return buf.Bytes(), nil
}

// TOTPStep returns the RFC 6238 time step of t: floor(unix seconds / 30).
// Times before 1970 give negative steps, which MatchTOTP never accepts.
func TOTPStep(t time.Time) int64 {
	u := t.Unix()
	s := u / TOTPPeriod
	if u%TOTPPeriod < 0 {
		s--
	}
	return s
}

// MatchTOTP checks a TOTP code typed by the user against secret at time now,
// accepting the steps TOTPStep(now)-skew .. TOTPStep(now)+skew, and returns
// the step that matched.
//
// Replay guard: a step <= lastStep is never accepted, so once the caller has
// stored a returned step, that code, and every code of an earlier step, is
// refused. Pass -1 for an authenticator that has never been used. Negative
// steps are never accepted.
//
// The code is normalised with NormalizeCode(code, TOTPDigits). The secret is
// base32 (upper or lower case, padding optional) of 16 to 128 bytes; anything
// else, like a skew above MaxSkew, refuses every code.
//
// Every candidate step is computed and compared in constant time, and the
// result is selected without branching on which one matched, so the timing
// does not reveal whether or where a code matched within the window. If the
// code happens to match several allowed steps, the latest is returned.
func MatchTOTP(secret string, code string, now time.Time, skew uint, lastStep int64) (step int64, ok bool) {
	if skew > MaxSkew {
		return 0, false
	}
	norm, good := NormalizeCode(code, TOTPDigits)
	if !good {
		return 0, false
	}
	key, good := decodeSecret(secret)
	if !good {
		return 0, false
	}
	var typed [TOTPDigits]byte
	copy(typed[:], norm)

	mac := hmac.New(sha1.New, key)
	var sum [sha1.Size]byte
	var cand [TOTPDigits]byte
	t := TOTPStep(now)
	var matched int64
	hit := 0
	for i := -int64(skew); i <= int64(skew); i++ {
		s := t + i // |t| <= MaxInt64/30, so this cannot overflow
		hotpDigits(mac, sum[:0], uint64(s), cand[:])
		eq := subtle.ConstantTimeCompare(cand[:], typed[:])
		allowed := 0
		if s >= 0 && s > lastStep { // public data: the step numbers, not the code
			allowed = 1
		}
		h := eq & allowed
		mask := -int64(h)
		matched = s&mask | matched&^mask
		hit |= h
	}
	if hit == 0 {
		return 0, false
	}
	return matched, true
}

// decodeSecret decodes a base32 TOTP secret: case-insensitive, trailing '='
// padding optional, 16 to 128 bytes once decoded.
func decodeSecret(secret string) ([]byte, bool) {
	if len(secret) > maxSecretBase32+8 {
		return nil, false
	}
	secret = strings.TrimRight(strings.ToUpper(secret), "=")
	if len(secret) > maxSecretBase32 {
		return nil, false
	}
	key, err := b32.DecodeString(secret)
	if err != nil || len(key) < minSecretBytes || len(key) > maxSecretBytes {
		return nil, false
	}
	return key, true
}

// hotpDigits writes the RFC 4226 HOTP value of counter into out, as
// len(out) (1..10) zero-padded decimal digits. mac is an HMAC keyed with the
// secret; buf is scratch space for the MAC.
func hotpDigits(mac hash.Hash, buf []byte, counter uint64, out []byte) {
	var msg [8]byte
	binary.BigEndian.PutUint64(msg[:], counter)
	mac.Reset()
	mac.Write(msg[:])
	sum := mac.Sum(buf)
	// Dynamic truncation, RFC 4226 §5.3.
	off := sum[len(sum)-1] & 0x0f
	v := binary.BigEndian.Uint32(sum[off:off+4]) & 0x7fffffff
	for i := len(out) - 1; i >= 0; i-- {
		out[i] = '0' + byte(v%10)
		v /= 10
	}
}
