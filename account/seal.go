package account

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
)

// sealer encrypts secrets at rest (TOTP secrets, phone numbers) with
// AES-256-GCM under a key derived from the configured secret. Every value
// has its own random nonce; the associated data binds it to its owner and
// purpose, so a value copied to another user's record does not open.
type sealer struct{ aead cipher.AEAD }

func newSealer(secret []byte) (*sealer, error) {
	block, err := aes.NewCipher(deriveKey(secret, "twostep at-rest v1"))
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &sealer{aead: aead}, nil
}

func (s *sealer) seal(plaintext []byte, aad string) ([]byte, error) {
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(plaintext)+s.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return s.aead.Seal(nonce, nonce, plaintext, []byte(aad)), nil
}

var errUnseal = errors.New("a sealed record (TOTP secret, phone number) does not decrypt: the `secret` changed since it was written, or it was tampered with; put the old secret back, or reset-2sv the user")

func (s *sealer) open(sealed []byte, aad string) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < n+s.aead.Overhead() {
		return nil, errUnseal
	}
	out, err := s.aead.Open(nil, sealed[:n], sealed[n:], []byte(aad))
	if err != nil {
		return nil, errUnseal
	}
	return out, nil
}
