package bolt

import (
	"encoding/binary"
	"fmt"
	"maps"
	"math"
	"slices"
	"time"

	"github.com/twostep-auth/twostep/internal/store"
)

// Session records are a compact binary encoding, cheap to decode because
// GetSession runs on every request:
//
//	byte    format (sessionFormat)
//	byte    state
//	byte    flags: bit i set = time i is non-zero (Created, LastSeen,
//	        Expires, SecondFactorAt)
//	for each non-zero time: varint unix seconds, uvarint nanoseconds
//	varint  Idle (nanoseconds)
//	uvarint Epoch
//	uvarint number of Pending entries (n)
//	uvarint lengths of ID, User, Device, Credential, IP, UserAgent, then
//	        key and value of each Pending entry (sorted by key)
//	bytes   the strings, concatenated in the same order
//
// Decoding copies the string region once and slices every string field out
// of that copy, so a session costs two allocations (plus the Pending map).
const sessionFormat = 1

const (
	numTimes     = 4
	numStrings   = 6
	maxVarintLen = binary.MaxVarintLen64
)

func sessionTimes(s *store.Session) [numTimes]*time.Time {
	return [numTimes]*time.Time{&s.Created, &s.LastSeen, &s.Expires, &s.SecondFactorAt}
}

func sessionStrings(s *store.Session) [numStrings]*string {
	return [numStrings]*string{&s.ID, &s.User, &s.Device, &s.Credential, &s.IP, &s.UserAgent}
}

// encodeSession returns the stored form of s.
func encodeSession(s *store.Session) []byte {
	var keys []string
	if len(s.Pending) > 0 {
		keys = slices.Sorted(maps.Keys(s.Pending))
	}
	strs := sessionStrings(s)
	size := 3 + numTimes*2*maxVarintLen + 3*maxVarintLen + (numStrings+2*len(keys))*maxVarintLen
	for _, p := range strs {
		size += len(*p)
	}
	for _, k := range keys {
		size += len(k) + len(s.Pending[k])
	}
	b := make([]byte, 0, size)

	var flags byte
	times := sessionTimes(s)
	for i, t := range times {
		if !t.IsZero() {
			flags |= 1 << i
		}
	}
	b = append(b, sessionFormat, byte(s.State), flags)
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

// reader reads varints from b; after the first malformed one, bad is set
// and every later read returns 0.
type reader struct {
	b   []byte
	i   int
	bad bool
}

func (r *reader) uvarint() uint64 {
	if r.bad {
		return 0
	}
	v, n := binary.Uvarint(r.b[r.i:])
	if n <= 0 {
		r.bad = true
		return 0
	}
	r.i += n
	return v
}

func (r *reader) varint() int64 {
	if r.bad {
		return 0
	}
	v, n := binary.Varint(r.b[r.i:])
	if n <= 0 {
		r.bad = true
		return 0
	}
	r.i += n
	return v
}

func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
}

// decodeSession parses a stored session. It never retains b (which may point
// into bbolt's memory map) and returns ErrCorrupt for anything malformed.
func decodeSession(b []byte) (*store.Session, error) {
	if len(b) < 3 {
		return nil, corrupt("session record of %d bytes", len(b))
	}
	if b[0] != sessionFormat {
		return nil, corrupt("session format %d", b[0])
	}
	s := &store.Session{State: store.SessionState(b[1])}
	if !s.State.Valid() {
		return nil, corrupt("session state %d", b[1])
	}
	flags := b[2]
	if flags>>numTimes != 0 {
		return nil, corrupt("session flags %#x", flags)
	}
	r := reader{b: b, i: 3}
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
		return nil, corrupt("truncated session header")
	}
	// Every pending entry needs at least two length bytes.
	if npending > uint64(len(b)-r.i)/2 {
		return nil, corrupt("session with %d pending entries in %d bytes", npending, len(b))
	}
	nlens := numStrings + 2*int(npending)
	lensAt := r.i
	var total uint64
	for range nlens {
		n := r.uvarint()
		if n > uint64(len(b)) {
			return nil, corrupt("session string length %d", n)
		}
		total += n
	}
	if r.bad {
		return nil, corrupt("truncated session lengths")
	}
	if total != uint64(len(b)-r.i) {
		return nil, corrupt("session strings of %d bytes, record has %d", total, len(b)-r.i)
	}
	blob := string(b[r.i:])
	r.i = lensAt
	off := 0
	next := func() string {
		n := int(r.uvarint())
		v := blob[off : off+n]
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
	if s.ID == "" || s.User == "" {
		return nil, corrupt("session without ID or user")
	}
	if s.Expires.IsZero() {
		return nil, corrupt("session without expiry")
	}
	return s, nil
}

// loadSession decodes the record stored under id, which must carry that ID.
func loadSession(v, id []byte) (*store.Session, error) {
	s, err := decodeSession(v)
	if err != nil {
		return nil, err
	}
	if s.ID != string(id) {
		return nil, corrupt("session stored under %q has ID %q", id, s.ID)
	}
	return s, nil
}

// expiryNanos maps t to the unix nanoseconds used in the expiry index and kv
// records, clamped to [1, MaxInt64] so that 0 can mean "never" and the
// big-endian encoding sorts by time.
func expiryNanos(t time.Time) int64 {
	if t.Before(minNanoTime) {
		return 1
	}
	if t.After(maxNanoTime) {
		return math.MaxInt64
	}
	return t.UnixNano()
}

var (
	minNanoTime = time.Unix(0, 1)
	maxNanoTime = time.Unix(0, math.MaxInt64)
)

const (
	kindSession byte = 's'
	kindKV      byte = 'k'
)

// expiryKey is the expiry index key of a record of kind under key expiring
// at exp (unix nanos).
func expiryKey(exp int64, kind byte, key []byte) []byte {
	k := make([]byte, 9+len(key))
	binary.BigEndian.PutUint64(k, uint64(exp))
	k[8] = kind
	copy(k[9:], key)
	return k
}

// userKey is the per-user index key of session id.
func userKey(user, id string) []byte {
	k := make([]byte, 0, len(user)+1+len(id))
	k = append(k, user...)
	k = append(k, 0)
	return append(k, id...)
}

// kvRecord is the stored form of a key's value expiring at exp (0 = never).
func kvRecord(exp int64, value []byte) []byte {
	v := make([]byte, 8+len(value))
	binary.BigEndian.PutUint64(v, uint64(exp))
	copy(v[8:], value)
	return v
}

// kvExpiry returns a kv record's expiry (0 = never) or ErrCorrupt.
func kvExpiry(v []byte) (int64, error) {
	if len(v) < 8 {
		return 0, corrupt("kv record of %d bytes", len(v))
	}
	exp := binary.BigEndian.Uint64(v)
	if exp > math.MaxInt64 {
		return 0, corrupt("kv expiry %d", exp)
	}
	return int64(exp), nil
}
