package otp

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base32"
	"image/png"
	"math/rand/v2"
	"net/url"
	"strings"
	"testing"
	"time"

	potp "github.com/pquerna/otp"
	"github.com/pquerna/otp/hotp"
)

// rfcSecret is the SHA-1 key of RFC 4226 Appendix D and RFC 6238 Appendix B,
// "12345678901234567890", in base32.
var rfcSecret = base32.StdEncoding.EncodeToString([]byte("12345678901234567890"))

// codeN computes the digits-long HOTP value of secret for counter.
func codeN(t testing.TB, secret string, counter uint64, digits int) string {
	t.Helper()
	key, ok := decodeSecret(secret)
	if !ok {
		t.Fatalf("decodeSecret(%q) failed", secret)
	}
	out := make([]byte, digits)
	hotpDigits(hmac.New(sha1.New, key), nil, counter, out)
	return string(out)
}

// codeAt is the 6-digit TOTP code of secret for step.
func codeAt(t testing.TB, secret string, step int64) string {
	return codeN(t, secret, uint64(step), TOTPDigits)
}

func TestRFC6238Vectors(t *testing.T) {
	tests := []struct {
		unix  int64
		code8 string
		code6 string
	}{
		{59, "94287082", "287082"},
		{1111111109, "07081804", "081804"},
		{1111111111, "14050471", "050471"},
		{1234567890, "89005924", "005924"},
		{2000000000, "69279037", "279037"},
		{20000000000, "65353130", "353130"},
	}
	for _, tt := range tests {
		now := time.Unix(tt.unix, 0)
		want := TOTPStep(now)
		if got := codeN(t, rfcSecret, uint64(want), 8); got != tt.code8 {
			t.Errorf("t=%d: 8-digit code %s, want %s", tt.unix, got, tt.code8)
		}
		if tt.code8[2:] != tt.code6 {
			t.Fatalf("bad table row %d", tt.unix)
		}
		step, ok := MatchTOTP(rfcSecret, tt.code6, now, 0, want-1)
		if !ok || step != want {
			t.Errorf("t=%d: MatchTOTP(%s) = %d, %v; want %d, true", tt.unix, tt.code6, step, ok, want)
		}
		// pquerna/otp agrees (it is the reference the rest of the world uses).
		ref, err := hotp.GenerateCodeCustom(rfcSecret, uint64(want), hotp.ValidateOpts{Digits: potp.DigitsEight, Algorithm: potp.AlgorithmSHA1})
		if err != nil || ref != tt.code8 {
			t.Errorf("t=%d: pquerna says %q, %v", tt.unix, ref, err)
		}
	}
}

func TestRFC4226Vectors(t *testing.T) {
	want := []string{"755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583", "399871", "520489"}
	for counter, w := range want {
		if got := codeN(t, rfcSecret, uint64(counter), 6); got != w {
			t.Errorf("counter %d: %s, want %s", counter, got, w)
		}
	}
}

// TestHOTPMatchesPquerna cross-checks our RFC 4226 implementation against
// pquerna/otp for random keys and counters, at every length we use.
func TestHOTPMatchesPquerna(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 500 {
		key := make([]byte, minSecretBytes+r.IntN(maxSecretBytes-minSecretBytes+1))
		for j := range key {
			key[j] = byte(r.Uint32())
		}
		secret := b32.EncodeToString(key)
		counter := r.Uint64() >> r.IntN(64)
		digits := []potp.Digits{6, 8}[i%2]
		ref, err := hotp.GenerateCodeCustom(secret, counter, hotp.ValidateOpts{Digits: digits, Algorithm: potp.AlgorithmSHA1})
		if err != nil {
			t.Fatal(err)
		}
		if got := codeN(t, secret, counter, int(digits)); got != ref {
			t.Fatalf("key %x counter %d: %s, pquerna %s", key, counter, got, ref)
		}
	}
}

func TestTOTPStep(t *testing.T) {
	tests := []struct {
		unix int64
		want int64
	}{
		{0, 0},
		{29, 0},
		{30, 1},
		{59, 1},
		{60, 2},
		{1111111109, 37037036},
		{-1, -1},
		{-30, -1},
		{-31, -2},
	}
	for _, tt := range tests {
		if got := TOTPStep(time.Unix(tt.unix, 999_999_999)); got != tt.want {
			t.Errorf("TOTPStep(%d) = %d, want %d", tt.unix, got, tt.want)
		}
	}
}

func TestMatchTOTPWindow(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	cur := TOTPStep(now)
	tests := []struct {
		name   string
		offset int64 // code's step relative to now
		skew   uint
		ok     bool
	}{
		{"current skew 0", 0, 0, true},
		{"previous skew 0", -1, 0, false},
		{"next skew 0", 1, 0, false},
		{"current skew 1", 0, 1, true},
		{"previous skew 1", -1, 1, true},
		{"next skew 1", 1, 1, true},
		{"two back skew 1", -2, 1, false},
		{"two ahead skew 1", 2, 1, false},
		{"two back skew 2", -2, 2, true},
		{"two ahead skew 2", 2, 2, true},
		{"three back skew 2", -3, 2, false},
		{"max skew edge", MaxSkew, MaxSkew, true},
		{"max skew beyond", -MaxSkew - 1, MaxSkew, false},
		{"skew above max", 0, MaxSkew + 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code := codeAt(t, rfcSecret, cur+tt.offset)
			step, ok := MatchTOTP(rfcSecret, code, now, tt.skew, -1)
			if ok != tt.ok {
				t.Fatalf("ok = %v, want %v", ok, tt.ok)
			}
			if ok && step != cur+tt.offset {
				t.Fatalf("step = %d, want %d", step, cur+tt.offset)
			}
			if !ok && step != 0 {
				t.Fatalf("refused with step %d, want 0", step)
			}
		})
	}
}

// TestMatchTOTPSkewBoundaryInTime: with skew 1, a code is good from the start
// of the step before its own to the end of the step after it (pquerna's
// TestValidateSkew: the T=59 code at T=29 and T=61), and no longer.
func TestMatchTOTPSkewBoundaryInTime(t *testing.T) {
	code := "287082" // step 1 (T=30..59)
	tests := []struct {
		unix int64
		ok   bool
	}{
		{-1, false}, // step -1: two steps before
		{0, true},   // step 0
		{29, true},
		{59, true},
		{61, true},
		{89, true}, // step 2
		{90, false},
	}
	for _, tt := range tests {
		step, ok := MatchTOTP(rfcSecret, code, time.Unix(tt.unix, 0), 1, -1)
		if ok != tt.ok || (ok && step != 1) {
			t.Errorf("T=%d: %d, %v; want ok=%v (step 1)", tt.unix, step, ok, tt.ok)
		}
	}
}

func TestMatchTOTPReplay(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	cur := TOTPStep(now)
	codeCur := codeAt(t, rfcSecret, cur)
	codePrev := codeAt(t, rfcSecret, cur-1)
	codeNext := codeAt(t, rfcSecret, cur+1)

	step, ok := MatchTOTP(rfcSecret, codeCur, now, 1, -1)
	if !ok || step != cur {
		t.Fatalf("first use: %d, %v", step, ok)
	}
	last := step // the caller stores it

	tests := []struct {
		name string
		code string
		now  time.Time
		ok   bool
	}{
		{"same code again", codeCur, now, false},
		{"same code a step later", codeCur, now.Add(TOTPPeriod * time.Second), false},
		{"earlier step after a later one", codePrev, now, false},
		{"next step still good", codeNext, now, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			step, ok := MatchTOTP(rfcSecret, tt.code, tt.now, 1, last)
			if ok != tt.ok {
				t.Fatalf("ok = %v, want %v (step %d)", ok, tt.ok, step)
			}
			if ok && step <= last {
				t.Fatalf("accepted step %d <= last %d", step, last)
			}
		})
	}

	// After the next step is accepted, the current one is dead too.
	step, ok = MatchTOTP(rfcSecret, codeNext, now, 1, last)
	if !ok {
		t.Fatal("next step refused")
	}
	if _, ok := MatchTOTP(rfcSecret, codeCur, now, 1, step); ok {
		t.Fatal("code of an earlier step accepted after a later one")
	}
}

func TestMatchTOTPNegativeSteps(t *testing.T) {
	now := time.Unix(-90, 0) // step -3
	code := codeAt(t, rfcSecret, -3)
	if step, ok := MatchTOTP(rfcSecret, code, now, 1, -1000); ok {
		t.Fatalf("negative step %d accepted", step)
	}
	// Around the epoch only step 0 may match.
	code0 := codeAt(t, rfcSecret, 0)
	if step, ok := MatchTOTP(rfcSecret, code0, time.Unix(-1, 0), 1, -1000); !ok || step != 0 {
		t.Fatalf("step 0 at T=-1: %d, %v", step, ok)
	}
}

func TestMatchTOTPInput(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	good := codeAt(t, rfcSecret, TOTPStep(now))
	fullWidth := strings.Map(func(r rune) rune { return r - '0' + '０' }, good)
	arabicIndic := strings.Map(func(r rune) rune { return r - '0' + '٠' }, good)
	// A 15-byte secret and its right code: refused because the secret is
	// below 128 bits, not because the code is wrong.
	shortSecret := b32.EncodeToString([]byte("123456789012345"))
	shortCode, err := hotp.GenerateCodeCustom(shortSecret, uint64(TOTPStep(now)), hotp.ValidateOpts{Digits: potp.DigitsSix, Algorithm: potp.AlgorithmSHA1})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		secret string
		code   string
		ok     bool
	}{
		{"plain", rfcSecret, good, true},
		{"surrounding space", rfcSecret, " \t" + good + "\r\n", true},
		{"inner space", rfcSecret, good[:3] + " " + good[3:], true},
		{"inner hyphen", rfcSecret, good[:3] + "-" + good[3:], true},
		{"full-width digits normalised", rfcSecret, fullWidth, true},
		{"arabic-indic digits", rfcSecret, arabicIndic, false},
		{"five digits", rfcSecret, good[:5], false},
		{"seven digits", rfcSecret, good + "0", false},
		{"eight digits", rfcSecret, "94287082", false},
		{"letter", rfcSecret, good[:5] + "a", false},
		{"inner tab", rfcSecret, good[:3] + "\t" + good[3:], false},
		{"plus sign", rfcSecret, "+" + good, false},
		{"empty", rfcSecret, "", false},
		{"invalid utf-8", rfcSecret, good + "\xff", false},
		{"wrong code", rfcSecret, wrongCode(good), false},
		{"lower-case secret", strings.ToLower(rfcSecret), good, true},
		{"padded secret", base32.StdEncoding.EncodeToString([]byte("1234567890123456")), codeAt(t, b32.EncodeToString([]byte("1234567890123456")), TOTPStep(now)), true},
		{"invalid base32", "not base32!", good, false},
		{"base32 with 1", "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJ1", good, false},
		{"empty secret", "", good, false},
		{"secret too short", shortSecret, shortCode, false},
		{"secret too long", b32.EncodeToString(make([]byte, maxSecretBytes+1)), good, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, ok := MatchTOTP(tt.secret, tt.code, now, 1, -1)
			if ok != tt.ok {
				t.Fatalf("MatchTOTP(%q, %q) ok = %v, want %v", tt.secret, tt.code, ok, tt.ok)
			}
		})
	}
}

// wrongCode returns a 6-digit code that is not c.
func wrongCode(c string) string {
	b := []byte(c)
	b[0] = '0' + (b[0]-'0'+1)%10
	return string(b)
}

// TestMatchTOTPLatestOfSeveral: when a code matches more than one allowed
// step, the latest is returned, so storing it refuses the most.
func TestMatchTOTPLatestOfSeveral(t *testing.T) {
	// Find, by brute force (about 2e-4 per key), a key whose code repeats
	// within a window of 2*MaxSkew+1 steps.
	const centre = 100
	r := rand.New(rand.NewPCG(3, 4))
	for range 200000 {
		key := make([]byte, 20)
		for j := range key {
			key[j] = byte(r.Uint32())
		}
		secret := b32.EncodeToString(key)
		steps := map[string][]int64{}
		for s := int64(centre - MaxSkew); s <= centre+MaxSkew; s++ {
			c := codeAt(t, secret, s)
			steps[c] = append(steps[c], s)
		}
		for code, ss := range steps {
			if len(ss) < 2 {
				continue
			}
			now := time.Unix(centre*TOTPPeriod, 0)
			latest := ss[len(ss)-1]
			step, ok := MatchTOTP(secret, code, now, MaxSkew, -1)
			if !ok || step != latest {
				t.Fatalf("steps %v: got %d, %v; want %d, true", ss, step, ok, latest)
			}
			// An earlier match does not reopen the door once latest is stored.
			if step, ok := MatchTOTP(secret, code, now, MaxSkew, latest); ok {
				t.Fatalf("steps %v: step %d accepted at lastStep %d", ss, step, latest)
			}
			return
		}
	}
	t.Fatal("no key with a repeating code found")
}

func TestNewTOTPKey(t *testing.T) {
	k, err := NewTOTPKey("Example Corp", "alice@example.com")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := b32.DecodeString(k.Secret)
	if err != nil || len(raw) != TOTPSecretSize {
		t.Fatalf("secret %q: %d bytes, %v", k.Secret, len(raw), err)
	}
	if strings.Contains(k.Secret, "=") {
		t.Errorf("secret %q is padded", k.Secret)
	}
	u, err := url.Parse(k.URL)
	if err != nil {
		t.Fatal(err)
	}
	if u.Scheme != "otpauth" || u.Host != "totp" || u.Path != "/Example Corp:alice@example.com" {
		t.Errorf("URL %s: scheme %q host %q path %q", k.URL, u.Scheme, u.Host, u.Path)
	}
	q := u.Query()
	for name, want := range map[string]string{
		"secret":    k.Secret,
		"issuer":    "Example Corp",
		"algorithm": "SHA1",
		"digits":    "6",
		"period":    "30",
	} {
		if got := q.Get(name); got != want {
			t.Errorf("URL %s: %s = %q, want %q", k.URL, name, got, want)
		}
	}
	// The key works with MatchTOTP.
	now := time.Now()
	code := codeAt(t, k.Secret, TOTPStep(now))
	if _, ok := MatchTOTP(k.Secret, code, now, 0, -1); !ok {
		t.Error("own key refused")
	}
	// Fresh randomness each time.
	k2, err := NewTOTPKey("Example Corp", "alice@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if k2.Secret == k.Secret {
		t.Error("two keys share a secret")
	}
}

func TestNewTOTPKeyErrors(t *testing.T) {
	tests := []struct {
		name, issuer, account string
	}{
		{"empty issuer", "", "alice"},
		{"empty account", "Example", ""},
		{"colon in issuer", "Ex:ample", "alice"},
		{"colon in account", "Example", "al:ice"},
		{"newline", "Example", "alice\n"},
		{"too long", strings.Repeat("x", 257), "alice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if k, err := NewTOTPKey(tt.issuer, tt.account); err == nil {
				t.Fatalf("accepted: %+v", k)
			}
		})
	}
}

func TestTOTPKeyFromSecret(t *testing.T) {
	k, err := TOTPKeyFromSecret("Example", "alice", strings.ToLower(rfcSecret))
	if err != nil {
		t.Fatal(err)
	}
	if k.Secret != strings.TrimRight(rfcSecret, "=") {
		t.Errorf("secret %q", k.Secret)
	}
	if !strings.Contains(k.URL, "secret="+k.Secret) {
		t.Errorf("URL %s lacks the secret", k.URL)
	}
	if _, err := TOTPKeyFromSecret("Example", "alice", "!!"); err == nil {
		t.Error("bad secret accepted")
	}
	if _, err := TOTPKeyFromSecret("Example", "", rfcSecret); err == nil {
		t.Error("empty account accepted")
	}
}

func TestQRPNG(t *testing.T) {
	k, err := NewTOTPKey("Example Corp", "alice@example.com")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		size, want int
		fail       bool
	}{
		{0, DefaultQRSize, false},
		{-5, DefaultQRSize, false},
		{300, 300, false},
		{MaxQRSize + 1, 0, true},
		{10, 0, true}, // smaller than the QR code's modules
	}
	for _, tt := range tests {
		b, err := k.QRPNG(tt.size)
		if tt.fail {
			if err == nil {
				t.Errorf("size %d: no error", tt.size)
			}
			continue
		}
		if err != nil {
			t.Fatalf("size %d: %v", tt.size, err)
		}
		img, err := png.Decode(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("size %d: not a PNG: %v", tt.size, err)
		}
		if r := img.Bounds(); r.Dx() != tt.want || r.Dy() != tt.want {
			t.Errorf("size %d: image %v, want %d square", tt.size, r, tt.want)
		}
	}
}
