package store

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInvalid is wrapped by every error a backend returns for an argument
// it refuses (never ErrNotFound): the checks below, which every backend
// applies the same way.
var ErrInvalid = errors.New("store: invalid argument")

// Invalid returns an error wrapping ErrInvalid with the given reason.
func Invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// ValidateSession checks what PutSession requires of a record.
func ValidateSession(s *Session) error {
	switch {
	case s == nil:
		return Invalid("nil session")
	case s.ID == "":
		return Invalid("session without ID")
	case len(s.ID) > MaxKeyLen:
		return Invalid("session ID of %d bytes (max %d)", len(s.ID), MaxKeyLen)
	case s.User == "":
		return Invalid("session %q without user", s.ID)
	case len(s.User) > MaxKeyLen:
		return Invalid("session user of %d bytes (max %d)", len(s.User), MaxKeyLen)
	case strings.IndexByte(s.User, 0) >= 0:
		return Invalid("session user contains a NUL byte")
	case !s.State.Valid():
		return Invalid("session %q with state %s (%d)", s.ID, s.State, uint8(s.State))
	case s.Expires.IsZero():
		return Invalid("session %q without expiry", s.ID)
	}
	return nil
}

// ValidateSwap checks what SwapSession requires beyond ValidateSession:
// a new ID. (That next has the old session's user needs the old record.)
func ValidateSwap(oldID string, next *Session) error {
	if err := ValidateSession(next); err != nil {
		return err
	}
	if next.ID == oldID {
		return Invalid("swapping session %q for itself (use ReplaceSession)", oldID)
	}
	return nil
}

// ValidateKey checks a key of the key-value records.
func ValidateKey(key string) error {
	if key == "" {
		return Invalid("empty key")
	}
	if len(key) > MaxKeyLen {
		return Invalid("key of %d bytes (max %d)", len(key), MaxKeyLen)
	}
	return nil
}

// ValidateValue checks a value of the key-value records.
func ValidateValue(value []byte) error {
	if len(value) > MaxValueLen {
		return Invalid("value of %d bytes (max %d)", len(value), MaxValueLen)
	}
	return nil
}
