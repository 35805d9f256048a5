package documents

import (
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"golang.org/x/crypto/chacha20poly1305"
)

// Sealed blob, version 1 (all integers big-endian):
//
//	off  len  field
//	0    1    version (1)
//	1    1    kind code (1 jpeg, 2 png, 3 pdf, 4 doc, 5 docx)
//	2    8    key id: HKDF of the master key, to tell keys apart when rotating
//	10   24   wrap nonce
//	34   48   data key (32 bytes) sealed with the key-encryption key
//	82   24   data nonce
//	106  …    document sealed with the data key: width u32, height u32,
//	          len(SHA256) u8, SHA256, Data
//
// Both seals are XChaCha20-Poly1305. The associated data is a context string,
// the length-prefixed owner and request id, and the header up to the seal in
// question (so the kind, key id and nonces are authenticated, and the data
// seal covers the wrapped key as well).
const (
	vaultVersion  = 1
	keyIDLen      = 8
	offKind       = 1
	offKeyID      = 2
	offWrapNonce  = offKeyID + keyIDLen
	offWrapped    = offWrapNonce + chacha20poly1305.NonceSizeX
	offDataNonce  = offWrapped + chacha20poly1305.KeySize + chacha20poly1305.Overhead
	offCiphertext = offDataNonce + chacha20poly1305.NonceSizeX
	plainHeader   = 4 + 4 + 1
	minVaultKey   = 32
	vaultContext  = "twostep/documents/v1"
)

var kindCodes = map[Kind]byte{KindJPEG: 1, KindPNG: 2, KindPDF: 3, KindDOC: 4, KindDOCX: 5}

func kindOf(code byte) (Kind, bool) {
	for k, c := range kindCodes {
		if c == code {
			return k, true
		}
	}
	return "", false
}

// ErrOpen is returned (wrapped) by Vault.Open for any blob it cannot open:
// tampered with, truncated, of an unknown version, sealed with another key,
// or for another owner or request.
var ErrOpen = errors.New("documents: cannot open sealed document")

// Vault seals documents for storage with envelope encryption: every document
// gets a fresh random data key, which is itself sealed with a key-encryption
// key derived from the master key. Deleting a blob's wrapped key (the blob)
// shreds it. A Vault is safe for concurrent use.
type Vault struct {
	kek   cipher.AEAD
	keyID [keyIDLen]byte
}

// NewVault derives the vault's keys from a master key of at least 32 bytes
// (which should come from outside the store: a file readable only by the
// service, a KMS). The master key itself is never used directly.
func NewVault(key []byte) (*Vault, error) {
	if len(key) < minVaultKey {
		return nil, fmt.Errorf("documents: the vault key must be at least %d bytes", minVaultKey)
	}
	kek, err := hkdf.Key(sha256.New, key, nil, vaultContext+" key-encryption key", chacha20poly1305.KeySize)
	if err != nil {
		return nil, fmt.Errorf("documents: deriving the vault key: %w", err)
	}
	id, err := hkdf.Key(sha256.New, key, nil, vaultContext+" key id", keyIDLen)
	if err != nil {
		return nil, fmt.Errorf("documents: deriving the vault key id: %w", err)
	}
	aead, err := chacha20poly1305.NewX(kek)
	if err != nil {
		return nil, fmt.Errorf("documents: %w", err)
	}
	v := &Vault{kek: aead}
	copy(v.keyID[:], id)
	return v, nil
}

// associated builds the associated data: context, owner, request id and the
// authenticated part of the header.
func associated(owner, requestID string, header []byte) []byte {
	ad := make([]byte, 0, len(vaultContext)+8+len(owner)+len(requestID)+len(header))
	ad = append(ad, vaultContext...)
	ad = binary.BigEndian.AppendUint32(ad, uint32(len(owner)))
	ad = append(ad, owner...)
	ad = binary.BigEndian.AppendUint32(ad, uint32(len(requestID)))
	ad = append(ad, requestID...)
	return append(ad, header...)
}

// Seal encrypts doc for the given owner (account) and recovery request id,
// returning one self-describing blob. Two seals of the same document differ.
func (v *Vault) Seal(doc *Document, owner, requestID string) ([]byte, error) {
	switch {
	case doc == nil:
		return nil, errors.New("documents: nothing to seal")
	case !doc.Kind.Valid():
		return nil, fmt.Errorf("documents: cannot seal a document of kind %q", doc.Kind)
	case owner == "" || requestID == "":
		return nil, errors.New("documents: sealing needs an owner and a request id")
	case uint64(len(owner)) > math.MaxUint32 || uint64(len(requestID)) > math.MaxUint32:
		return nil, errors.New("documents: owner or request id too long")
	case doc.Width < 0 || doc.Height < 0 || int64(doc.Width) > math.MaxUint32 || int64(doc.Height) > math.MaxUint32:
		return nil, errors.New("documents: bad image dimensions")
	case len(doc.SHA256) > math.MaxUint8:
		return nil, errors.New("documents: bad SHA-256")
	}
	dek := make([]byte, chacha20poly1305.KeySize)
	blob := make([]byte, offCiphertext, offCiphertext+plainHeader+len(doc.SHA256)+len(doc.Data)+chacha20poly1305.Overhead)
	blob[0] = vaultVersion
	blob[offKind] = kindCodes[doc.Kind]
	copy(blob[offKeyID:], v.keyID[:])
	if _, err := rand.Read(dek); err != nil {
		return nil, fmt.Errorf("documents: %w", err)
	}
	if _, err := rand.Read(blob[offWrapNonce:offWrapped]); err != nil {
		return nil, fmt.Errorf("documents: %w", err)
	}
	if _, err := rand.Read(blob[offDataNonce:offCiphertext]); err != nil {
		return nil, fmt.Errorf("documents: %w", err)
	}
	v.kek.Seal(blob[offWrapped:offWrapped], blob[offWrapNonce:offWrapped], dek,
		associated(owner, requestID, blob[:offWrapped]))
	aead, err := chacha20poly1305.NewX(dek)
	clear(dek)
	if err != nil {
		return nil, fmt.Errorf("documents: %w", err)
	}
	plain := make([]byte, 0, plainHeader+len(doc.SHA256)+len(doc.Data))
	plain = binary.BigEndian.AppendUint32(plain, uint32(doc.Width))
	plain = binary.BigEndian.AppendUint32(plain, uint32(doc.Height))
	plain = append(plain, byte(len(doc.SHA256)))
	plain = append(plain, doc.SHA256...)
	plain = append(plain, doc.Data...)
	blob = aead.Seal(blob, blob[offDataNonce:offCiphertext], plain,
		associated(owner, requestID, blob[:offCiphertext]))
	clear(plain)
	return blob, nil
}

// Open decrypts a blob made by Seal for the same owner and request id. It
// fails, with an error wrapping ErrOpen, on any change to the blob, on a wrong
// owner or request id, and on a blob sealed under another master key.
func (v *Vault) Open(blob []byte, owner, requestID string) (*Document, error) {
	if len(blob) < offCiphertext+chacha20poly1305.Overhead+plainHeader {
		return nil, fmt.Errorf("%w: too short", ErrOpen)
	}
	if blob[0] != vaultVersion {
		return nil, fmt.Errorf("%w: unknown version %d", ErrOpen, blob[0])
	}
	kind, ok := kindOf(blob[offKind])
	if !ok {
		return nil, fmt.Errorf("%w: unknown kind", ErrOpen)
	}
	if string(blob[offKeyID:offWrapNonce]) != string(v.keyID[:]) {
		return nil, fmt.Errorf("%w: sealed under another key", ErrOpen)
	}
	dek, err := v.kek.Open(nil, blob[offWrapNonce:offWrapped], blob[offWrapped:offDataNonce],
		associated(owner, requestID, blob[:offWrapped]))
	if err != nil {
		return nil, fmt.Errorf("%w: authentication failed", ErrOpen)
	}
	aead, err := chacha20poly1305.NewX(dek)
	clear(dek)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrOpen, err)
	}
	plain, err := aead.Open(nil, blob[offDataNonce:offCiphertext], blob[offCiphertext:],
		associated(owner, requestID, blob[:offCiphertext]))
	if err != nil {
		return nil, fmt.Errorf("%w: authentication failed", ErrOpen)
	}
	if len(plain) < plainHeader || len(plain) < plainHeader+int(plain[8]) {
		return nil, fmt.Errorf("%w: malformed content", ErrOpen)
	}
	n := int(plain[8])
	return &Document{
		Kind:   kind,
		Width:  int(binary.BigEndian.Uint32(plain[0:])),
		Height: int(binary.BigEndian.Uint32(plain[4:])),
		SHA256: string(plain[plainHeader : plainHeader+n]),
		Data:   plain[plainHeader+n:],
	}, nil
}
