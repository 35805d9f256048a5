// Package otp holds the second-factor code primitives of twostep: TOTP keys
// and verification with a replay guard (RFC 6238), one-time codes for SMS,
// voice and e-mail, backup codes, keyed hashing of codes, masking of
// destinations, and normalisation of what users type.
//
// The package is pure: it keeps no state, does no I/O beyond reading
// crypto/rand, and knows nothing of storage, HTTP or Caddy. Callers own the
// state that makes codes single use:
//
//   - MatchTOTP returns the time step that matched; the caller stores it
//     atomically as the authenticator's last accepted step (a compare-and-set
//     that refuses a step <= the stored one) before issuing a session, and
//     passes it back as lastStep next time.
//   - One-time and backup codes are stored only as Hasher.Hash values and
//     deleted atomically when consumed.
//
// Everything here is safe for concurrent use.
package otp
