package redis

import (
	"encoding/binary"
	"fmt"
	"maps"
	"math"
	"slices"
	"time"

	"github.com/twostep-auth/twostep/internal/store"
)

// Every record starts with its logical expiry: 8 bytes, big-endian unix
// nanoseconds, 0 for "never" (keys stored with ttl 0). The Lua scripts
// compare these 8 bytes with the caller's now byte by byte, so "expired at
// now" is decided exactly as in the bolt backend (expiry <= now), whatever the
// Redis server's clock says; the Redis TTL (PXAT, rounded up to the
// millisecond) only makes records vanish on their own once they are expired
// by the wall clock too.
//
// A key's record is the expiry followed by the value. A counter's value is
// the count as 8 big-endian bytes, as in the bolt backend.
//
// A session record is:
//
//	8 bytes  ExpiresAt() (unix nanos, big-endian, clamped to [1, MaxInt64])
//	byte     format (sessionFormat)
//	2 bytes  length of User (big-endian), then User: read by the Lua script
//	         of DeleteUserSessions, which deletes a record only if it is the
//	         user's
//	byte     state
//	byte     flags: bit i set = time i is non-zero (Created, LastSeen,
//	         Expires, SecondFactorAt)
//	for each non-zero time: varint unix seconds, uvarint nanoseconds
//	varint   Idle (nanoseconds)
//	uvarint  Epoch
//	uvarint  number of Pending entries (n)
//	uvarint  lengths of ID, Device, Credential, IP, UserAgent, then key and
//	         value of each Pending entry (sorted by key)
//	bytes    the strings, concatenated in the same order
//
// Decoding works on the string the client returned and slices every string
// field out of it without copying, so a session costs one allocation (plus
// the Pending map) beyond the reply itself.
const sessionFormat = 1

const (
	expiryLen     = 8
	sessionHeader = expiryLen + 1 + 2 // expiry, format, user length
	numTimes      = 4
	numStrings    = 5 // ID, Device, Credential, IP, UserAgent (User is in the header)
	maxVarintLen  = binary.MaxVarintLen64
)

var (
	minNanoTime = time.Unix(0, 1)
	maxNanoTime = time.Unix(0, math.MaxInt64)
)

// expiryNanos maps t to the unix nanoseconds stored in record headers,
// clamped to [1, MaxInt64] so that 0 can mean "never".
func expiryNanos(t time.Time) int64 {
	if t.Before(minNanoTime) {
		return 1
	}
	if t.After(maxNanoTime) {
		return math.MaxInt64
	}
	return t.UnixNano()
}

// pxat returns the Redis expiry (unix milliseconds, as PXAT takes it) of a
// record expiring at exp unix nanoseconds: rounded up, so that Redis never
// drops a record before it has expired, and at least 1 (PXAT rejects 0).
func pxat(exp int64) int64 {
	ms := exp / int64(time.Millisecond)
	if exp%int64(time.Millisecond) != 0 {
		ms++
	}
	return max(ms, 1)
}

// be8 returns n as 8 big-endian bytes (a string, as the scripts take it).
func be8(n int64) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(n))
	return string(b[:])
}

// recordExpiry returns the expiry in the header of rec (0 = never).
func recordExpiry(rec string) (int64, error) {
	if len(rec) < expiryLen {
		return 0, corrupt("record of %d bytes", len(rec))
	}
	exp := uint64(rec[0])<<56 | uint64(rec[1])<<48 | uint64(rec[2])<<40 | uint64(rec[3])<<32 |
		uint64(rec[4])<<24 | uint64(rec[5])<<16 | uint64(rec[6])<<8 | uint64(rec[7])
	if exp > math.MaxInt64 {
		return 0, corrupt("record expiry %d", exp)
	}
	return int64(exp), nil
}

// expiredAt reports whether a record expiring at exp (0 = never) is expired
// at now.
func expiredAt(exp int64, now time.Time) bool {
	return exp != 0 && expiryNanos(now) >= exp
}

// kvRecord is the stored form of value expiring at exp (0 = never).
func kvRecord(exp int64, value []byte) []byte {
	v := make([]byte, expiryLen+len(value))
	binary.BigEndian.PutUint64(v, uint64(exp))
	copy(v[expiryLen:], value)
	return v
}

func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
}

func sessionTimes(s *store.Session) [numTimes]*time.Time {
	return [numTimes]*time.Time{&s.Created, &s.LastSeen, &s.Expires, &s.SecondFactorAt}
}

func sessionStrings(s *store.Session) [numStrings]*string {
	return [numStrings]*string{&s.ID, &s.Device, &s.Credential, &s.IP, &s.UserAgent}
}

// userTag is what a session record of user holds after its expiry: the
// format byte and the length-prefixed user name. The DeleteUserSessions
// script compares it with the record.
func userTag(user string) string {
	b := make([]byte, 0, 3+len(user))
	b = append(b, sessionFormat, byte(len(user)>>8), byte(len(user)))
	return string(append(b, user...))
}

// encodeSession returns the stored form of s, which must be valid
// (store.ValidateSession) so that User fits its 2-byte length.
func encodeSession(s *store.Session) []byte {
	var keys []string
	if len(s.Pending) > 0 {
		keys = slices.Sorted(maps.Keys(s.Pending))
	}
	strs := sessionStrings(s)
	size := sessionHeader + len(s.User) + 2 + numTimes*2*maxVarintLen + 3*maxVarintLen + (numStrings+2*len(keys))*maxVarintLen
	for _, p := range strs {
		size += len(*p)
	}
	for _, k := range keys {
		size += len(k) + len(s.Pending[k])
	}
	b := make([]byte, 0, size)
	b = binary.BigEndian.AppendUint64(b, uint64(expiryNanos(s.ExpiresAt())))
	b = append(b, sessionFormat, byte(len(s.User)>>8), byte(len(s.User)))
	b = append(b, s.User...)

	var flags byte
	times := sessionTimes(s)
	for i, t := range times {
		if !t.IsZero() {
			flags |= 1 << i
		}
	}
	b = append(b, byte(s.State), flags)
	for _, t := range times {
		if !t.IsZero() {
			b = binary.AppendVarint(b, t.Unix())
			b = binary.AppendUvarint(b, uint64(t.Nanosecond()))
		}
	}
	b = binary.AppendVarint(b, int64(s.Idle))
	b = binary.AppendUvarint(b, s.Epoch)
	b = binary.AppendUvarint(b, uint64(len(keys)))
	for _, p := range strs {
		b = binary.AppendUvarint(b, uint64(len(*p)))
	}
	for _, k := range keys {
		b = binary.AppendUvarint(b, uint64(len(k)))
		b = binary.AppendUvarint(b, uint64(len(s.Pending[k])))
	}
	for _, p := range strs {
		b = append(b, *p...)
	}
	for _, k := range keys {
		b = append(b, k...)
		b = append(b, s.Pending[k]...)
	}
	return b
}

// reader reads varints from a string; after the first malformed one, bad is
// set and every later read returns 0.
type reader struct {
	s   string
	i   int
	bad bool
}

func (r *reader) uvarint() uint64 {
	if r.bad {
		return 0
	}
	var x uint64
	var shift uint
	for n := 0; n < maxVarintLen; n++ {
		if r.i >= len(r.s) {
			break
		}
		c := r.s[r.i]
		r.i++
		if c < 0x80 {
			if n == maxVarintLen-1 && c > 1 {
				break // overflows 64 bits
			}
			return x | uint64(c)<<shift
		}
		x |= uint64(c&0x7f) << shift
		shift += 7
	}
	r.bad = true
	return 0
}

func (r *reader) varint() int64 {
	ux := r.uvarint()
	x := int64(ux >> 1)
	if ux&1 != 0 {
		x = ^x
	}
	return x
}

// sessionUser returns the user name in the header of a session record, or ""
// if the header is malformed.
func sessionUser(rec string) string {
	if len(rec) < sessionHeader || rec[expiryLen] != sessionFormat {
		return ""
	}
	n := int(rec[expiryLen+1])<<8 | int(rec[expiryLen+2])
	if n > len(rec)-sessionHeader {
		return ""
	}
	return rec[sessionHeader : sessionHeader+n]
}

// decodeSession parses a stored session record. Every string of the result
// is a substring of rec. Anything malformed is an ErrCorrupt error, never a
// panic.
func decodeSession(rec string) (*store.Session, error) {
	exp, err := recordExpiry(rec)
	if err != nil {
		return nil, err
	}
	if len(rec) < sessionHeader+2 {
		return nil, corrupt("session record of %d bytes", len(rec))
	}
	if rec[expiryLen] != sessionFormat {
		return nil, corrupt("session format %d", rec[expiryLen])
	}
	user := sessionUser(rec)
	if user == "" {
		return nil, corrupt("session without user")
	}
	i := sessionHeader + len(user)
	if len(rec) < i+2 {
		return nil, corrupt("truncated session record")
	}
	s := &store.Session{User: user, State: store.SessionState(rec[i])}
	if !s.State.Valid() {
		return nil, corrupt("session state %d", rec[i])
	}
	flags := rec[i+1]
	if flags>>numTimes != 0 {
		return nil, corrupt("session flags %#x", flags)
	}
	r := reader{s: rec, i: i + 2}
	for i, t := range sessionTimes(s) {
		if flags&(1<<i) == 0 {
			continue
		}
		sec := r.varint()
		nsec := r.uvarint()
		if nsec >= 1e9 {
			return nil, corrupt("session time nanoseconds %d", nsec)
		}
		*t = time.Unix(sec, int64(nsec)).UTC()
	}
	s.Idle = time.Duration(r.varint())
	s.Epoch = r.uvarint()
	npending := r.uvarint()
	if r.bad {
		return nil, corrupt("truncated session fields")
	}
	// Every pending entry needs at least two length bytes.
	if npending > uint64(len(rec)-r.i)/2 {
		return nil, corrupt("session with %d pending entries in %d bytes", npending, len(rec))
	}
	nlens := numStrings + 2*int(npending)
	lensAt := r.i
	var total uint64
	for range nlens {
		n := r.uvarint()
		if n > uint64(len(rec)) {
			return nil, corrupt("session string length %d", n)
		}
		total += n
	}
	if r.bad {
		return nil, corrupt("truncated session lengths")
	}
	if total != uint64(len(rec)-r.i) {
		return nil, corrupt("session strings of %d bytes, record has %d", total, len(rec)-r.i)
	}
	off := r.i
	r.i = lensAt
	next := func() string {
		n := int(r.uvarint())
		v := rec[off : off+n]
		off += n
		return v
	}
	for _, p := range sessionStrings(s) {
		*p = next()
	}
	if npending > 0 {
		s.Pending = make(map[string]string, npending)
		for range npending {
			k := next()
			s.Pending[k] = next()
		}
	}
	if s.ID == "" {
		return nil, corrupt("session without ID")
	}
	if s.Expires.IsZero() {
		return nil, corrupt("session without expiry")
	}
	if want := expiryNanos(s.ExpiresAt()); exp != want {
		return nil, corrupt("session header expiry %d, fields say %d", exp, want)
	}
	return s, nil
}

// loadSession decodes the record stored under id, which must carry that ID.
func loadSession(rec, id string) (*store.Session, error) {
	s, err := decodeSession(rec)
	if err != nil {
		return nil, err
	}
	if s.ID != id {
		return nil, corrupt("session stored under one ID carries another")
	}
	return s, nil
}
