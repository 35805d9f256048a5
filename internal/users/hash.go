package users

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// Algorithm names a password hashing scheme accepted in the users file.
type Algorithm string

const (
	// Argon2id is the default for new hashes:
	// $argon2id$v=19$m=65536,t=3,p=4$<salt>$<key>.
	Argon2id Algorithm = "argon2id"
	// Bcrypt is accepted for compatibility ($2a$, $2b$, $2y$).
	Bcrypt Algorithm = "bcrypt"
)

// Parameters used by Hash for new hashes (Authelia's defaults).
const (
	DefaultArgon2Memory  = 65536 // m, in KiB
	DefaultArgon2Time    = 3     // t, passes
	DefaultArgon2Threads = 4     // p, lanes
	DefaultArgon2SaltLen = 16    // bytes
	DefaultArgon2KeyLen  = 32    // bytes
	DefaultBcryptCost    = 12    // log2 of the rounds
)

// MaxPasswordLen is the longest password, in bytes, that Hash accepts and
// Verify can match.
const MaxPasswordLen = 1024

// bcryptMaxPasswordLen is where bcrypt stops looking at the password.
const bcryptMaxPasswordLen = 72

// Limits on the parameters of a hash found in a users file, so that a hostile
// or mistyped hash cannot make a single Verify allocate gigabytes or spin for
// minutes.
const (
	maxArgon2Memory = 1 << 20 // KiB (1 GiB)
	maxArgon2Time   = 20
	// maxArgon2Work bounds m×t (KiB × passes), which is what a Verify
	// costs: 2 GiB-passes (1 GiB × 2, 256 MiB × 8, 64 MiB × 20) already
	// takes seconds, ten times the defaults' 192 MiB-passes.
	maxArgon2Work    = 2 << 20
	maxArgon2Threads = 64
	minArgon2SaltLen = 8
	maxArgon2SaltLen = 64
	minArgon2KeyLen  = 16
	maxArgon2KeyLen  = 128
	minBcryptCost    = 4 // bcrypt.MinCost
	maxBcryptCost    = 16
	bcryptHashLen    = 60
)

var (
	errNotHash   = errors.New("not an argon2id or bcrypt hash")
	errEmptyPass = errors.New("password is empty")
)

// b64 is the encoding of salts and keys in argon2 PHC strings.
var b64 = base64.RawStdEncoding.Strict()

// bcryptB64 is bcrypt's own base64 alphabet, unpadded.
var bcryptB64 = base64.NewEncoding("./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789").WithPadding(base64.NoPadding)

// hashParams is what determines the cost of verifying a password against a
// hash: two hashes with equal params take the same time. It is comparable
// and serves as the key when counting the most common parameters of a file.
type hashParams struct {
	algo Algorithm
	// argon2id
	memory  uint32
	time    uint32
	threads uint8
	keyLen  int
	// bcrypt
	prefix string // "2a", "2b" or "2y"
	cost   int
}

// parsedHash is a hash split into its parts.
type parsedHash struct {
	hashParams
	salt []byte // argon2id only
	key  []byte // argon2id only
}

// HashMemoryKiB is the memory verifying hash takes, in KiB: argon2id's m,
// 0 for bcrypt (a few KiB) and for what is not a valid hash.
func HashMemoryKiB(hash string) uint64 {
	ph, err := parseHash(hash)
	if err != nil || ph.algo != Argon2id {
		return 0
	}
	return uint64(ph.memory)
}

// CheckHash reports whether hash is an argon2id or bcrypt hash that Verify
// accepts, with parameters within this package's limits. The error says what
// is wrong without repeating the hash.
func CheckHash(hash string) error {
	_, err := parseHash(hash)
	return err
}

func parseHash(hash string) (parsedHash, error) {
	switch {
	case strings.HasPrefix(hash, "$argon2id$"):
		return parseArgon2id(hash)
	case strings.HasPrefix(hash, "$2a$"), strings.HasPrefix(hash, "$2b$"), strings.HasPrefix(hash, "$2y$"):
		return parseBcrypt(hash)
	}
	return parsedHash{}, errNotHash
}

func parseArgon2id(hash string) (parsedHash, error) {
	fail := func(format string, args ...any) (parsedHash, error) {
		return parsedHash{}, fmt.Errorf("malformed argon2id hash: "+format, args...)
	}
	// The PHC string: "", "argon2id", "v=19", "m=..,t=..,p=..", salt, key.
	parts := strings.Split(hash, "$")
	if len(parts) != 6 {
		return fail("want $argon2id$v=19$m=M,t=T,p=P$salt$key")
	}
	if parts[2] != "v=19" {
		return fail("version must be v=19")
	}
	params := strings.Split(parts[3], ",")
	if len(params) != 3 {
		return fail("parameters must be m=M,t=T,p=P")
	}
	var vals [3]uint64
	for i, name := range [3]string{"m", "t", "p"} {
		v, ok := strings.CutPrefix(params[i], name+"=")
		if !ok {
			return fail("parameters must be m=M,t=T,p=P")
		}
		n, err := parseDecimal(v)
		if err != nil {
			return fail("%s: not a number", name)
		}
		vals[i] = n
	}
	m, t, p := vals[0], vals[1], vals[2]
	switch {
	case p < 1 || p > maxArgon2Threads:
		return fail("p=%d outside 1..%d", p, maxArgon2Threads)
	case t < 1 || t > maxArgon2Time:
		return fail("t=%d outside 1..%d", t, maxArgon2Time)
	case m < 8*p || m > maxArgon2Memory:
		return fail("m=%d outside %d..%d", m, 8*p, maxArgon2Memory)
	case m*t > maxArgon2Work:
		return fail("m=%d with t=%d: m×t above %d, every sign-in would take seconds", m, t, maxArgon2Work)
	}
	// Check encoded lengths before decoding anything.
	if len(parts[4]) > b64.EncodedLen(maxArgon2SaltLen) || len(parts[5]) > b64.EncodedLen(maxArgon2KeyLen) {
		return fail("salt or key too long")
	}
	salt, err := b64.DecodeString(parts[4])
	if err != nil || strings.ContainsAny(parts[4], "\r\n") {
		return fail("salt is not unpadded base64")
	}
	key, err := b64.DecodeString(parts[5])
	if err != nil || strings.ContainsAny(parts[5], "\r\n") {
		return fail("key is not unpadded base64")
	}
	if len(salt) < minArgon2SaltLen || len(salt) > maxArgon2SaltLen {
		return fail("salt of %d bytes outside %d..%d", len(salt), minArgon2SaltLen, maxArgon2SaltLen)
	}
	if len(key) < minArgon2KeyLen || len(key) > maxArgon2KeyLen {
		return fail("key of %d bytes outside %d..%d", len(key), minArgon2KeyLen, maxArgon2KeyLen)
	}
	return parsedHash{
		hashParams: hashParams{
			algo:    Argon2id,
			memory:  uint32(m),
			time:    uint32(t),
			threads: uint8(p),
			keyLen:  len(key),
		},
		salt: salt,
		key:  key,
	}, nil
}

// parseDecimal parses a plain decimal number (digits only, at most 10 of
// them, no sign).
func parseDecimal(s string) (uint64, error) {
	if s == "" || len(s) > 10 {
		return 0, strconv.ErrSyntax
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, strconv.ErrSyntax
		}
	}
	return strconv.ParseUint(s, 10, 64)
}

func parseBcrypt(hash string) (parsedHash, error) {
	fail := func(format string, args ...any) (parsedHash, error) {
		return parsedHash{}, fmt.Errorf("malformed bcrypt hash: "+format, args...)
	}
	// $2b$12$ + 22 characters of salt + 31 of hash.
	if len(hash) != bcryptHashLen || hash[6] != '$' {
		return fail("want $2b$NN$ and 53 characters")
	}
	cost, err := parseDecimal(hash[4:6])
	if err != nil {
		return fail("cost is not a number")
	}
	if cost < minBcryptCost || cost > maxBcryptCost {
		return fail("cost %d outside %d..%d", cost, minBcryptCost, maxBcryptCost)
	}
	for i := 7; i < len(hash); i++ {
		c := hash[i]
		if !(c == '.' || c == '/' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return fail("invalid character")
		}
	}
	return parsedHash{hashParams: hashParams{algo: Bcrypt, prefix: hash[1:3], cost: int(cost)}}, nil
}

// Verify reports whether password matches hash. It returns an error, and
// false, when the hash is not a well-formed argon2id or bcrypt hash within
// this package's limits. An empty password never matches, nor does one
// longer than MaxPasswordLen, nor, for bcrypt, one longer than the 72 bytes
// bcrypt reads (no silent truncation); the hash is computed in every case so
// that the time taken does not depend on the answer.
func Verify(hash, password string) (bool, error) {
	ph, err := parseHash(hash)
	if err != nil {
		return false, err
	}
	acceptable := password != ""
	switch ph.algo {
	case Argon2id:
		if len(password) > MaxPasswordLen {
			password, acceptable = password[:MaxPasswordLen], false
		}
		key := argon2.IDKey([]byte(password), ph.salt, ph.time, ph.memory, ph.threads, uint32(len(ph.key)))
		match := subtle.ConstantTimeCompare(key, ph.key) == 1
		return match && acceptable, nil
	case Bcrypt:
		if len(password) > bcryptMaxPasswordLen {
			password, acceptable = password[:bcryptMaxPasswordLen], false
		}
		err := bcrypt.CompareHashAndPassword([]byte(hash), []byte(password))
		switch {
		case err == nil:
			return acceptable, nil
		case errors.Is(err, bcrypt.ErrMismatchedHashAndPassword):
			return false, nil
		default:
			return false, fmt.Errorf("malformed bcrypt hash: %w", err)
		}
	}
	return false, errNotHash
}

// Hash returns a new hash of password: argon2id (the default, also for an
// empty algo) with m=65536 KiB, t=3, p=4, a 16-byte random salt and a
// 32-byte key, or bcrypt with cost 12. It refuses an empty password, one
// longer than MaxPasswordLen bytes and, for bcrypt, one longer than 72 bytes.
func Hash(password string, algo Algorithm) (string, error) {
	if password == "" {
		return "", errEmptyPass
	}
	if len(password) > MaxPasswordLen {
		return "", fmt.Errorf("password longer than %d bytes", MaxPasswordLen)
	}
	switch algo {
	case "", Argon2id:
		salt := make([]byte, DefaultArgon2SaltLen)
		_, _ = rand.Read(salt) // never fails (crypto/rand)
		key := argon2.IDKey([]byte(password), salt, DefaultArgon2Time, DefaultArgon2Memory, DefaultArgon2Threads, DefaultArgon2KeyLen)
		return formatArgon2id(DefaultArgon2Memory, DefaultArgon2Time, DefaultArgon2Threads, salt, key), nil
	case Bcrypt:
		if len(password) > bcryptMaxPasswordLen {
			return "", fmt.Errorf("bcrypt reads at most %d bytes of a password; this one has %d (use argon2id)", bcryptMaxPasswordLen, len(password))
		}
		h, err := bcrypt.GenerateFromPassword([]byte(password), DefaultBcryptCost)
		if err != nil {
			return "", err
		}
		return string(h), nil
	}
	return "", fmt.Errorf("unknown algorithm %q (want argon2id or bcrypt)", string(algo))
}

func formatArgon2id(m, t uint32, p uint8, salt, key []byte) string {
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, m, t, p, b64.EncodeToString(salt), b64.EncodeToString(key))
}

// defaultParams are those of a hash made by Hash with the default algorithm.
var defaultParams = hashParams{
	algo:    Argon2id,
	memory:  DefaultArgon2Memory,
	time:    DefaultArgon2Time,
	threads: DefaultArgon2Threads,
	keyLen:  DefaultArgon2KeyLen,
}

// dummyHash returns a hash with parameters p whose salt and key are random:
// checking any password against it costs what checking against a real hash
// with those parameters costs, and it matches no password (the odds are those
// of guessing a 128-bit or longer key). Making it costs nothing, so Parse can
// make one for every load of a file, whatever its parameters.
func dummyHash(p hashParams) string {
	switch p.algo {
	case Bcrypt:
		raw := make([]byte, 16+23)
		_, _ = rand.Read(raw)
		return fmt.Sprintf("$%s$%02d$%s%s", p.prefix, p.cost, bcryptB64.EncodeToString(raw[:16]), bcryptB64.EncodeToString(raw[16:]))
	default:
		salt := make([]byte, DefaultArgon2SaltLen)
		key := make([]byte, p.keyLen)
		_, _ = rand.Read(salt)
		_, _ = rand.Read(key)
		return formatArgon2id(p.memory, p.time, p.threads, salt, key)
	}
}
