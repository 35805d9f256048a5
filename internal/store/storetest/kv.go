package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twostep-auth/twostep/internal/store"
)

var kvTests = []testCase{
	{"PutGet", testKVPutGet},
	{"GetReturnsCopy", testKVGetReturnsCopy},
	{"GetMissing", testKVGetMissing},
	{"Overwrite", testKVOverwrite},
	{"TTL", testKVTTL},
	{"OverwriteChangesTTL", testKVOverwriteChangesTTL},
	{"Delete", testKVDelete},
	{"KeyAndValueLimits", testKVLimits},
}

func testKVPutGet(t *testing.T, s store.Store) {
	base := now()
	binary := []byte{0, 1, 2, 0xff, 0, 'x', 0}
	putKV(t, s, "k/text", []byte("hello"), 0, base)
	putKV(t, s, "k/binary", binary, time.Hour, base)
	putKV(t, s, "k/empty", []byte{}, 0, base)
	putKV(t, s, "k/ünï\x00cödé key", []byte("unicode"), 0, base)
	wantValue(t, s, "k/text", base, []byte("hello"), "after Put")
	wantValue(t, s, "k/binary", base, binary, "of a binary value with NUL bytes")
	wantValue(t, s, "k/ünï\x00cödé key", base, []byte("unicode"), "of a key with non-ASCII and NUL bytes")
	got, err := s.Get(bg, "k/empty", base)
	if err != nil || len(got) != 0 {
		t.Errorf("Get of an empty value = %q, %v; want an empty value and no error", got, err)
	}
	// ttl 0 keeps the value until deleted.
	wantValue(t, s, "k/text", base.Add(24*365*time.Hour), []byte("hello"), "a year after a Put with ttl 0")
}

func testKVGetReturnsCopy(t *testing.T, s store.Store) {
	base := now()
	in := []byte("original")
	putKV(t, s, "copy", in, 0, base)
	copy(in, "CHANGED!")
	wantValue(t, s, "copy", base, []byte("original"), "after the caller changed the slice it passed to Put")
	got, err := s.Get(bg, "copy", base)
	if err != nil {
		t.Fatalf("Get(copy): %v", err)
	}
	copy(got, "CHANGED!")
	wantValue(t, s, "copy", base, []byte("original"), "after the caller changed a slice Get returned")
}

func testKVGetMissing(t *testing.T, s store.Store) {
	base := now()
	wantNoValue(t, s, "missing", base, "in an empty store")
	putKV(t, s, "present", []byte("v"), 0, base)
	wantNoValue(t, s, "missing", base, "with another key stored")
	wantNoValue(t, s, "presen", base, "(a prefix of a stored key)")
	wantNoValue(t, s, "present/x", base, "(a stored key plus a suffix)")
}

func testKVOverwrite(t *testing.T, s store.Store) {
	base := now()
	putKV(t, s, "over", []byte("first value, longer"), 0, base)
	putKV(t, s, "over", []byte("second"), 0, base)
	wantValue(t, s, "over", base, []byte("second"), "after an overwrite")
}

func testKVTTL(t *testing.T, s store.Store) {
	base := now()
	putKV(t, s, "ttl", []byte("v"), time.Hour, base)
	wantValue(t, s, "ttl", base.Add(59*time.Minute), []byte("v"), "59m after a Put with ttl 1h")
	wantNoValue(t, s, "ttl", base.Add(time.Hour), "exactly at the end of its ttl")
	wantNoValue(t, s, "ttl", base.Add(2*time.Hour), "an hour after the end of its ttl")
	// The ttl runs from the now given to Put, not from the wall clock.
	later := base.Add(3 * time.Hour)
	putKV(t, s, "ttl2", []byte("w"), time.Hour, later)
	wantValue(t, s, "ttl2", later.Add(59*time.Minute), []byte("w"), "59m after a Put with ttl 1h at a later now")
	wantNoValue(t, s, "ttl2", later.Add(time.Hour), "at the end of a ttl that started at a later now")
}

func testKVOverwriteChangesTTL(t *testing.T, s store.Store) {
	base := now()
	putKV(t, s, "short-then-none", []byte("a"), time.Hour, base)
	putKV(t, s, "short-then-none", []byte("b"), 0, base)
	wantValue(t, s, "short-then-none", base.Add(2*time.Hour), []byte("b"), "after a ttl-1h value was overwritten with ttl 0")
	putKV(t, s, "none-then-short", []byte("a"), 0, base)
	putKV(t, s, "none-then-short", []byte("b"), time.Hour, base)
	wantNoValue(t, s, "none-then-short", base.Add(2*time.Hour), "2h after a ttl-0 value was overwritten with ttl 1h")
	putKV(t, s, "long-then-short", []byte("a"), 5*time.Hour, base)
	putKV(t, s, "long-then-short", []byte("b"), time.Hour, base)
	wantNoValue(t, s, "long-then-short", base.Add(2*time.Hour), "2h after a ttl-5h value was overwritten with ttl 1h")
}

func testKVDelete(t *testing.T, s store.Store) {
	base := now()
	putKV(t, s, "del", []byte("v"), time.Hour, base)
	putKV(t, s, "keep", []byte("k"), 0, base)
	if err := s.Delete(bg, "del"); err != nil {
		t.Fatalf("Delete(del): %v", err)
	}
	wantNoValue(t, s, "del", base, "after Delete")
	wantValue(t, s, "keep", base, []byte("k"), "after Delete of another key")
	if err := s.Delete(bg, "del"); err != nil {
		t.Errorf("Delete of an already deleted key: %v, want nil", err)
	}
	if err := s.Delete(bg, "never-existed"); err != nil {
		t.Errorf("Delete of a missing key: %v, want nil", err)
	}
	// Sessions and keys are separate: deleting key X leaves session X.
	putSession(t, s, newSession("shared-name", "alice", base))
	putKV(t, s, "shared-name", []byte("kv"), 0, base)
	if err := s.Delete(bg, "shared-name"); err != nil {
		t.Fatalf("Delete(shared-name): %v", err)
	}
	getSession(t, s, "shared-name", base)
	if err := s.DeleteSession(bg, "shared-name"); err != nil {
		t.Fatalf("DeleteSession(shared-name): %v", err)
	}
	putKV(t, s, "shared-name", []byte("kv"), 0, base)
	wantValue(t, s, "shared-name", base, []byte("kv"), "after DeleteSession of a session with the same name")
}

// wantInvalid fails unless err is an error other than ErrNotFound/ErrClosed.
func wantInvalid(t *testing.T, what string, err error) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: no error, want a validation error", what)
	} else if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrClosed) {
		t.Errorf("%s: %v; want a validation error, not ErrNotFound or ErrClosed", what, err)
	}
}

func testKVLimits(t *testing.T, s store.Store) {
	base := now()
	wantInvalid(t, "Put with an empty key", s.Put(bg, "", []byte("v"), 0, base))
	long := strings.Repeat("k", MaxKeyLen+1)
	wantInvalid(t, fmt.Sprintf("Put with a key of %d bytes", len(long)), s.Put(bg, long, []byte("v"), 0, base))
	_, _, err := s.PutIfAbsent(bg, long, []byte("v"), 0, base)
	wantInvalid(t, "PutIfAbsent with a key over the limit", err)
	_, _, err = s.PutIfAbsent(bg, "", []byte("v"), 0, base)
	wantInvalid(t, "PutIfAbsent with an empty key", err)
	_, _, err = s.Incr(bg, "", time.Minute, base)
	wantInvalid(t, "Incr with an empty key", err)

	maxKey := strings.Repeat("m", MaxKeyLen)
	putKV(t, s, maxKey, []byte("at the limit"), 0, base)
	wantValue(t, s, maxKey, base, []byte("at the limit"), fmt.Sprintf("of a key of %d bytes", MaxKeyLen))
	wantNoValue(t, s, maxKey[:MaxKeyLen-1], base, "of the max-length key minus one byte")

	big := bytes.Repeat([]byte("0123456789abcdef"), MaxValueLen/16)
	big[len(big)/2] = 'X'
	putKV(t, s, "big", big, time.Hour, base)
	got, err := s.Get(bg, "big", base)
	if err != nil || !bytes.Equal(got, big) {
		t.Errorf("Get of a %d-byte value: %d bytes, %v; want it back intact", len(big), len(got), err)
	}
	tooBig := append(big, 'x')
	wantInvalid(t, fmt.Sprintf("Put of a %d-byte value", len(tooBig)), s.Put(bg, "too-big", tooBig, 0, base))
	wantNoValue(t, s, "too-big", base, "after a rejected oversized Put")
	wantInvalid(t, "Put with a negative ttl", s.Put(bg, "neg", []byte("v"), -time.Second, base))
}

var putIfAbsentTests = []testCase{
	{"Basic", testPutIfAbsentBasic},
	{"Expired", testPutIfAbsentExpired},
	{"Concurrent", testPutIfAbsentConcurrent},
}

func putIfAbsent(t *testing.T, s store.Store, key, value string, ttl time.Duration, at time.Time) (string, bool) {
	t.Helper()
	stored, created, err := s.PutIfAbsent(bg, key, []byte(value), ttl, at)
	if err != nil {
		t.Fatalf("PutIfAbsent(%q, %q): %v", key, value, err)
	}
	return string(stored), created
}

func testPutIfAbsentBasic(t *testing.T, s store.Store) {
	base := now()
	if stored, created := putIfAbsent(t, s, "pia", "first", time.Hour, base); !created || stored != "first" {
		t.Errorf("PutIfAbsent on a missing key = %q, created %v; want \"first\", true", stored, created)
	}
	if stored, created := putIfAbsent(t, s, "pia", "second", time.Hour, base.Add(time.Minute)); created || stored != "first" {
		t.Errorf("PutIfAbsent on a present key = %q, created %v; want the existing \"first\", false", stored, created)
	}
	wantValue(t, s, "pia", base.Add(time.Minute), []byte("first"), "after a second PutIfAbsent")
	// The first call's ttl applies (the second one changed nothing).
	wantNoValue(t, s, "pia", base.Add(time.Hour), "at the end of the ttl of the PutIfAbsent that created it")

	putKV(t, s, "pia-put", []byte("by put"), 0, base)
	if stored, created := putIfAbsent(t, s, "pia-put", "other", time.Hour, base); created || stored != "by put" {
		t.Errorf("PutIfAbsent on a key stored by Put = %q, created %v; want \"by put\", false", stored, created)
	}
	if err := s.Delete(bg, "pia-put"); err != nil {
		t.Fatal(err)
	}
	if stored, created := putIfAbsent(t, s, "pia-put", "again", 0, base); !created || stored != "again" {
		t.Errorf("PutIfAbsent after Delete = %q, created %v; want \"again\", true", stored, created)
	}
}

func testPutIfAbsentExpired(t *testing.T, s store.Store) {
	base := now()
	putIfAbsent(t, s, "pia-exp", "old", time.Hour, base)
	later := base.Add(time.Hour)
	if stored, created := putIfAbsent(t, s, "pia-exp", "new", time.Hour, later); !created || stored != "new" {
		t.Errorf("PutIfAbsent over a value expired at now = %q, created %v; want \"new\", true", stored, created)
	}
	wantValue(t, s, "pia-exp", later.Add(59*time.Minute), []byte("new"), "with the new ttl after replacing an expired value")
	wantNoValue(t, s, "pia-exp", later.Add(time.Hour), "at the end of the new ttl")
}

func testPutIfAbsentConcurrent(t *testing.T, s store.Store) {
	base := now()
	const n, rounds = 20, 10
	for round := range rounds {
		key := fmt.Sprintf("race-%d", round)
		type result struct {
			stored  string
			created bool
			err     error
		}
		results := make([]result, n)
		go1 := start()
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				<-go1
				stored, created, err := s.PutIfAbsent(bg, key, []byte(fmt.Sprintf("value-%d", i)), time.Hour, base)
				results[i] = result{string(stored), created, err}
			})
		}
		close(go1)
		wg.Wait()
		winner := -1
		for i, r := range results {
			if r.err != nil {
				t.Errorf("round %d: PutIfAbsent #%d: %v", round, i, r.err)
				continue
			}
			if r.created {
				if winner >= 0 {
					t.Errorf("round %d: PutIfAbsent #%d and #%d both report that they created the value", round, winner, i)
				}
				winner = i
				if r.stored != fmt.Sprintf("value-%d", i) {
					t.Errorf("round %d: PutIfAbsent #%d created the value but returned %q", round, i, r.stored)
				}
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: none of %d concurrent PutIfAbsent calls created the value", round, n)
		}
		want := fmt.Sprintf("value-%d", winner)
		for i, r := range results {
			if r.err == nil && r.stored != want {
				t.Errorf("round %d: PutIfAbsent #%d returned %q, want the winner's %q", round, i, r.stored, want)
			}
		}
		wantValue(t, s, key, base, []byte(want), "after concurrent PutIfAbsent")
		if t.Failed() {
			return
		}
	}
}

var replaceTests = []testCase{
	{"Basic", testReplaceBasic},
	{"Expired", testReplaceExpired},
	{"Limits", testReplaceLimits},
	{"RacesDelete", testReplaceRacesDelete},
}

func testReplaceBasic(t *testing.T, s store.Store) {
	base := now()
	if err := s.Replace(bg, "rep-missing", []byte("v"), time.Hour, base); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Replace of a missing key: %v; want ErrNotFound", err)
	}
	wantNoValue(t, s, "rep-missing", base, "after Replace of a missing key")

	putKV(t, s, "rep", []byte("old"), time.Hour, base)
	if err := s.Replace(bg, "rep", []byte("new"), 2*time.Hour, base.Add(time.Minute)); err != nil {
		t.Fatalf("Replace of a live key: %v", err)
	}
	wantValue(t, s, "rep", base.Add(90*time.Minute), []byte("new"), "within the ttl Replace gave")
	wantNoValue(t, s, "rep", base.Add(time.Minute+2*time.Hour), "at the end of the ttl Replace gave")

	putKV(t, s, "rep-del", []byte("old"), 0, base)
	if err := s.Delete(bg, "rep-del"); err != nil {
		t.Fatal(err)
	}
	if err := s.Replace(bg, "rep-del", []byte("back"), 0, base); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Replace of a deleted key: %v; want ErrNotFound", err)
	}
	wantNoValue(t, s, "rep-del", base, "after Replace of a deleted key (it must not come back)")
}

func testReplaceExpired(t *testing.T, s store.Store) {
	base := now()
	putKV(t, s, "rep-exp", []byte("old"), time.Hour, base)
	later := base.Add(time.Hour)
	if err := s.Replace(bg, "rep-exp", []byte("new"), time.Hour, later); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Replace of a value expired at now: %v; want ErrNotFound", err)
	}
	wantNoValue(t, s, "rep-exp", later, "after Replace of an expired value")
}

func testReplaceLimits(t *testing.T, s store.Store) {
	base := now()
	putKV(t, s, "rep-lim", []byte("kept"), 0, base)
	wantInvalid(t, "Replace with a negative ttl", s.Replace(bg, "rep-lim", []byte("v"), -time.Second, base))
	wantInvalid(t, "Replace with an empty key", s.Replace(bg, "", []byte("v"), 0, base))
	tooBig := make([]byte, store.MaxValueLen+1)
	wantInvalid(t, "Replace with an oversized value", s.Replace(bg, "rep-lim", tooBig, 0, base))
	wantValue(t, s, "rep-lim", base, []byte("kept"), "after rejected Replace calls")
}

// testReplaceRacesDelete runs Replace against Delete: whichever order the
// store applies them in, a deleted key stays deleted unless the Replace
// came first (then the Delete removed its value).
func testReplaceRacesDelete(t *testing.T, s store.Store) {
	base := now()
	const rounds = 20
	for round := range rounds {
		key := fmt.Sprintf("rep-race-%d", round)
		putKV(t, s, key, []byte("old"), time.Hour, base)
		go1 := start()
		var wg sync.WaitGroup
		var repErr, delErr error
		wg.Go(func() {
			<-go1
			repErr = s.Replace(bg, key, []byte("touched"), time.Hour, base)
		})
		wg.Go(func() {
			<-go1
			delErr = s.Delete(bg, key)
		})
		close(go1)
		wg.Wait()
		if delErr != nil {
			t.Fatalf("round %d: Delete: %v", round, delErr)
		}
		if repErr != nil && !errors.Is(repErr, store.ErrNotFound) {
			t.Fatalf("round %d: Replace: %v", round, repErr)
		}
		wantNoValue(t, s, key, base, fmt.Sprintf("round %d: after Delete raced Replace", round))
		if t.Failed() {
			return
		}
	}
}

var takeTests = []testCase{
	{"Basic", testTakeBasic},
	{"Expired", testTakeExpired},
	{"Concurrent", testTakeConcurrent},
}

func testTakeBasic(t *testing.T, s store.Store) {
	base := now()
	putKV(t, s, "code", []byte("123456"), time.Hour, base)
	putKV(t, s, "code2", []byte("other"), time.Hour, base)
	got, err := s.Take(bg, "code", base)
	if err != nil || string(got) != "123456" {
		t.Fatalf("Take(code) = %q, %v; want \"123456\", nil", got, err)
	}
	wantNoValue(t, s, "code", base, "after Take")
	got, err = s.Take(bg, "code", base)
	wantNotFound(t, "a second Take of the same key (a code is single use)", err)
	if got != nil {
		t.Errorf("second Take returned %q", got)
	}
	wantValue(t, s, "code2", base, []byte("other"), "after Take of another key")
	_, err = s.Take(bg, "never-existed", base)
	wantNotFound(t, "Take of a missing key", err)
	// A key can be stored again after Take.
	putKV(t, s, "code", []byte("654321"), time.Hour, base)
	if got, err := s.Take(bg, "code", base); err != nil || string(got) != "654321" {
		t.Errorf("Take after a new Put = %q, %v; want \"654321\", nil", got, err)
	}
}

func testTakeExpired(t *testing.T, s store.Store) {
	base := now()
	putKV(t, s, "exp-code", []byte("123456"), time.Hour, base)
	got, err := s.Take(bg, "exp-code", base.Add(time.Hour))
	wantNotFound(t, "Take at the end of the value's ttl", err)
	if got != nil {
		t.Errorf("Take of an expired value returned %q", got)
	}
	got, err = s.Take(bg, "exp-code", base.Add(3*time.Hour))
	wantNotFound(t, "Take hours after the end of the value's ttl", err)
	if got != nil {
		t.Errorf("Take of an expired value returned %q", got)
	}
}

func testTakeConcurrent(t *testing.T, s store.Store) {
	base := now()
	const n = 50
	for round := range 5 {
		key := fmt.Sprintf("once-%d", round)
		value := fmt.Sprintf("secret-%d", round)
		putKV(t, s, key, []byte(value), time.Hour, base)
		type result struct {
			value []byte
			err   error
		}
		results := make([]result, n)
		go1 := start()
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				<-go1
				v, err := s.Take(bg, key, base)
				results[i] = result{v, err}
			})
		}
		close(go1)
		wg.Wait()
		got := 0
		for i, r := range results {
			switch {
			case r.err == nil:
				got++
				if string(r.value) != value {
					t.Errorf("round %d: Take #%d got %q, want %q", round, i, r.value, value)
				}
			case errors.Is(r.err, store.ErrNotFound):
			default:
				t.Errorf("round %d: Take #%d: %v, want the value or ErrNotFound", round, i, r.err)
			}
		}
		if got != 1 {
			t.Errorf("round %d: %d of %d concurrent Take calls got the value, want exactly 1 (a code must be single use)", round, got, n)
		}
		wantNoValue(t, s, key, base, "after concurrent Take")
	}
}

var incrTests = []testCase{
	{"Counts", testIncrCounts},
	{"WindowReset", testIncrWindowReset},
	{"Independent", testIncrIndependent},
	{"DeleteResets", testIncrDeleteResets},
	{"InvalidWindow", testIncrInvalidWindow},
	{"Concurrent", testIncrConcurrent},
}

func incr(t *testing.T, s store.Store, key string, window time.Duration, at time.Time) (int64, time.Time) {
	t.Helper()
	n, reset, err := s.Incr(bg, key, window, at)
	if err != nil {
		t.Fatalf("Incr(%q, %v) at %v: %v", key, window, at, err)
	}
	return n, reset
}

func testIncrCounts(t *testing.T, s store.Store) {
	base := now()
	for i := int64(1); i <= 5; i++ {
		at := base.Add(time.Duration(i) * time.Minute)
		n, reset := incr(t, s, "fails", time.Hour, at)
		if n != i {
			t.Errorf("Incr #%d = %d, want %d", i, n, i)
		}
		// The window started at the first increment (base+1m).
		if want := base.Add(time.Minute + time.Hour); !reset.Equal(want) {
			t.Errorf("Incr #%d resetAt = %v, want %v (first increment + window)", i, reset, want)
		}
	}
}

func testIncrWindowReset(t *testing.T, s store.Store) {
	base := now()
	incr(t, s, "win", 10*time.Minute, base)
	incr(t, s, "win", 10*time.Minute, base.Add(5*time.Minute))
	if n, _ := incr(t, s, "win", 10*time.Minute, base.Add(10*time.Minute-time.Millisecond)); n != 3 {
		t.Errorf("Incr 1ms before the window ends = %d, want 3", n)
	}
	// At the window's end a new window starts at now.
	at := base.Add(10 * time.Minute)
	n, reset := incr(t, s, "win", 10*time.Minute, at)
	if n != 1 {
		t.Errorf("Incr exactly at the end of the window = %d, want 1 (a new window)", n)
	}
	if want := at.Add(10 * time.Minute); !reset.Equal(want) {
		t.Errorf("resetAt of the new window = %v, want %v", reset, want)
	}
	if n, _ := incr(t, s, "win", 10*time.Minute, at.Add(time.Minute)); n != 2 {
		t.Errorf("second Incr in the new window = %d, want 2", n)
	}
	// Long after, a fresh window again.
	late := base.Add(5 * time.Hour)
	n, reset = incr(t, s, "win", 10*time.Minute, late)
	if n != 1 || !reset.Equal(late.Add(10*time.Minute)) {
		t.Errorf("Incr hours after the window = %d, resetAt %v; want 1, %v", n, reset, late.Add(10*time.Minute))
	}
}

func testIncrIndependent(t *testing.T, s store.Store) {
	base := now()
	incr(t, s, "ctr-a", time.Hour, base)
	incr(t, s, "ctr-a", time.Hour, base)
	if n, _ := incr(t, s, "ctr-b", time.Hour, base); n != 1 {
		t.Errorf("first Incr of a second key = %d, want 1 (counters are per key)", n)
	}
	if n, _ := incr(t, s, "ctr-a", time.Hour, base); n != 3 {
		t.Errorf("third Incr of the first key = %d, want 3", n)
	}
	if n, _ := incr(t, s, "ctr-", time.Hour, base); n != 1 {
		t.Errorf("first Incr of a prefix key = %d, want 1", n)
	}
}

func testIncrDeleteResets(t *testing.T, s store.Store) {
	base := now()
	incr(t, s, "reset-me", time.Hour, base)
	incr(t, s, "reset-me", time.Hour, base)
	if err := s.Delete(bg, "reset-me"); err != nil {
		t.Fatalf("Delete of a counter: %v", err)
	}
	if n, reset := incr(t, s, "reset-me", time.Hour, base.Add(time.Minute)); n != 1 || !reset.Equal(base.Add(time.Minute+time.Hour)) {
		t.Errorf("Incr after Delete = %d, resetAt %v; want 1, %v (Delete resets a counter)", n, reset, base.Add(time.Minute+time.Hour))
	}
}

func testIncrInvalidWindow(t *testing.T, s store.Store) {
	base := now()
	_, _, err := s.Incr(bg, "no-window", 0, base)
	wantInvalid(t, "Incr with window 0", err)
	_, _, err = s.Incr(bg, "no-window", -time.Minute, base)
	wantInvalid(t, "Incr with a negative window", err)
}

func testIncrConcurrent(t *testing.T, s store.Store) {
	base := now()
	const n = 100
	counts := make([]int64, n)
	resets := make([]time.Time, n)
	errs := make([]error, n)
	go1 := start()
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-go1
			counts[i], resets[i], errs[i] = s.Incr(bg, "hot", time.Hour, base)
		})
	}
	close(go1)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("concurrent Incr #%d: %v", i, err)
		}
		if !resets[i].Equal(base.Add(time.Hour)) {
			t.Errorf("concurrent Incr #%d resetAt = %v, want %v", i, resets[i], base.Add(time.Hour))
		}
	}
	slices.Sort(counts)
	for i, c := range counts {
		if c != int64(i+1) {
			t.Fatalf("the %d concurrent Incr calls returned counts %v, want each of 1..%d exactly once", n, counts, n)
		}
	}
	if c, _ := incr(t, s, "hot", time.Hour, base); c != n+1 {
		t.Errorf("Incr after %d concurrent ones = %d, want %d", n, c, n+1)
	}
}
