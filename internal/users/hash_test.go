package users

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

func TestVerifyFixed(t *testing.T) {
	tests := []struct {
		name     string
		hash     string
		password string
		want     bool
	}{
		{"authelia sample", autheliaSampleHash, "password", true},
		{"authelia sample, wrong", autheliaSampleHash, "Password", false},
		{"libargon2", libargon2Hash, "TestPass123", true},
		{"libargon2, wrong", libargon2Hash, "TestPass1234", false},
		{"argon2id fixture", fixtureArgonHash, fixturePassword, true},
		{"argon2id fixture, prefix", fixtureArgonHash, fixturePassword[:len(fixturePassword)-1], false},
		{"argon2id fixture, empty", fixtureArgonHash, "", false},
		{"bcrypt fixture", fixtureBcryptHash, fixturePassword, true},
		{"bcrypt fixture, wrong", fixtureBcryptHash, "correct horse battery stapler", false},
		{"openwall $2a$", openwallBcryptHash, "U*U", true},
		{"openwall $2b$", "$2b$" + openwallBcryptHash[4:], "U*U", true},
		{"openwall $2y$", "$2y$" + openwallBcryptHash[4:], "U*U", true},
		{"openwall, wrong", openwallBcryptHash, "U*V", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Verify(tt.hash, tt.password)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("Verify = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestHashRoundTrip(t *testing.T) {
	tests := []struct {
		algo   Algorithm
		format string
	}{
		{"", `^\$argon2id\$v=19\$m=65536,t=3,p=4\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$`},
		{Argon2id, `^\$argon2id\$v=19\$m=65536,t=3,p=4\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$`},
		{Bcrypt, `^\$2a\$12\$[./A-Za-z0-9]{53}$`},
	}
	const pw = "Tr0ub4dor&3 ✓ long enough"
	for _, tt := range tests {
		t.Run(string(tt.algo), func(t *testing.T) {
			h, err := Hash(pw, tt.algo)
			if err != nil {
				t.Fatal(err)
			}
			if !regexp.MustCompile(tt.format).MatchString(h) {
				t.Errorf("Hash = %s, want %s", h, tt.format)
			}
			if ok, err := Verify(h, pw); !ok || err != nil {
				t.Errorf("Verify(right password) = %v, %v", ok, err)
			}
			if ok, err := Verify(h, pw+"x"); ok || err != nil {
				t.Errorf("Verify(wrong password) = %v, %v", ok, err)
			}
			if h2, _ := Hash(pw, tt.algo); h2 == h {
				t.Error("two hashes of one password are equal (no salt?)")
			}
		})
	}
}

func TestHashRefuses(t *testing.T) {
	tests := []struct {
		name     string
		password string
		algo     Algorithm
	}{
		{"empty", "", Argon2id},
		{"empty bcrypt", "", Bcrypt},
		{"over 1024 bytes", strings.Repeat("a", 1025), Argon2id},
		{"bcrypt over 72 bytes", strings.Repeat("a", 73), Bcrypt},
		{"unknown algorithm", "password", "scrypt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if h, err := Hash(tt.password, tt.algo); err == nil {
				t.Errorf("Hash accepted it: %s", h)
			}
		})
	}
}

// TestVerifyNoTruncation: a bcrypt hash of 72 bytes does not accept those
// 72 bytes followed by more, as bcrypt alone would.
func TestVerifyNoTruncation(t *testing.T) {
	pw := strings.Repeat("é", 36) // 72 bytes
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		password string
		want     bool
	}{
		{pw, true},
		{pw + "x", false},
		{pw + strings.Repeat("x", 2000), false},
	}
	for _, tt := range tests {
		if got, err := Verify(string(h), tt.password); got != tt.want || err != nil {
			t.Errorf("Verify(%d bytes) = %v, %v; want %v", len(tt.password), got, err, tt.want)
		}
	}
	if got, err := Verify(cheapBcryptHash, ""); got || err != nil {
		t.Errorf("Verify(bcrypt, empty) = %v, %v", got, err)
	}
}

func TestVerifyMalformed(t *testing.T) {
	const salt, key = "2ohUAfh9yetl+utr4tLcCQ", "AsXx0VlwjvNnCsa70u4HKZvFkC8Gwajr2pHGKcND/xs"
	tests := []struct {
		name, hash string
	}{
		{"empty", ""},
		{"plaintext", "password"},
		{"argon2i", "$argon2i$v=19$m=65536,t=3,p=4$" + salt + "$" + key},
		{"argon2d", "$argon2d$v=19$m=65536,t=3,p=4$" + salt + "$" + key},
		{"no key", "$argon2id$v=19$m=65536,t=3,p=4$" + salt},
		{"extra part", "$argon2id$v=19$m=65536,t=3,p=4$" + salt + "$" + key + "$x"},
		{"no version", "$argon2id$m=65536,t=3,p=4$" + salt + "$" + key},
		{"version 16", "$argon2id$v=16$m=65536,t=3,p=4$" + salt + "$" + key},
		{"params out of order", "$argon2id$v=19$t=3,m=65536,p=4$" + salt + "$" + key},
		{"missing param", "$argon2id$v=19$m=65536,t=3$" + salt + "$" + key},
		{"extra param", "$argon2id$v=19$m=65536,t=3,p=4,keyid=x$" + salt + "$" + key},
		{"signed param", "$argon2id$v=19$m=+65536,t=3,p=4$" + salt + "$" + key},
		{"negative param", "$argon2id$v=19$m=65536,t=-3,p=4$" + salt + "$" + key},
		{"hex param", "$argon2id$v=19$m=0x10000,t=3,p=4$" + salt + "$" + key},
		{"t=0", "$argon2id$v=19$m=65536,t=0,p=4$" + salt + "$" + key},
		{"p=0", "$argon2id$v=19$m=65536,t=3,p=0$" + salt + "$" + key},
		{"m below 8p", "$argon2id$v=19$m=31,t=3,p=4$" + salt + "$" + key},
		{"padded salt", "$argon2id$v=19$m=65536,t=3,p=4$" + salt + "==$" + key},
		{"bad base64 salt", "$argon2id$v=19$m=65536,t=3,p=4$!!!!$" + key},
		{"newline in salt", "$argon2id$v=19$m=65536,t=3,p=4$2ohUAfh9yetl\n+utr4tLcCQ$" + key},
		{"non-canonical base64", "$argon2id$v=19$m=65536,t=3,p=4$2ohUAfh9yetl+utr4tLcCR$" + key},
		{"short salt", "$argon2id$v=19$m=65536,t=3,p=4$YWJj$" + key},
		{"short key", "$argon2id$v=19$m=65536,t=3,p=4$" + salt + "$AsXx0VlwjvNnCsa7"},
		{"empty key", "$argon2id$v=19$m=65536,t=3,p=4$" + salt + "$"},
		{"bcrypt $2$", "$2$10$uu8vuSBjfNNIRyc.iBjhLupQn5aPnkBPStGBRcqUUBzLqmPFQyknu"},
		{"bcrypt $2x$", "$2x$10$uu8vuSBjfNNIRyc.iBjhLupQn5aPnkBPStGBRcqUUBzLqmPFQyknu"},
		{"bcrypt short", fixtureBcryptHash[:59]},
		{"bcrypt long", fixtureBcryptHash + "u"},
		{"bcrypt cost 3", "$2a$03$uu8vuSBjfNNIRyc.iBjhLupQn5aPnkBPStGBRcqUUBzLqmPFQyknu"},
		{"bcrypt cost letters", "$2a$1a$uu8vuSBjfNNIRyc.iBjhLupQn5aPnkBPStGBRcqUUBzLqmPFQyknu"},
		{"bcrypt bad character", "$2a$10$uu8vuSBjfNNIRyc.iBjhLupQn5aPnkBPStGBRcqUUBzLqmPFQyk+u"},
		{"bcrypt no separator", "$2a$10xuu8vuSBjfNNIRyc.iBjhLupQn5aPnkBPStGBRcqUUBzLqmPFQyknu"},
		{"sha512-crypt", "$6$saltsalt$qFmFH.bQmmtXzyBY0s9v7Oicd2z4XSIecDzlB5KiA2/jctKu9YterLp8wwnSq.qc.eoxqOmSuNp2xS0ktL3nh/"},
		{"pbkdf2", "$pbkdf2-sha512$310000$c8p78n7pUMln0jzvd4aK4Q$JNRBzwAo0ek5qKn50cFzzvE3h0AV9R/0R3aHNg"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, err := Verify(tt.hash, "password")
			if err == nil || ok {
				t.Errorf("Verify = %v, %v; want false and an error", ok, err)
			}
			if err := CheckHash(tt.hash); err == nil {
				t.Error("CheckHash accepted it")
			}
			if tt.hash != "" && err != nil && strings.Contains(err.Error(), tt.hash) {
				t.Errorf("error %q repeats the hash", err)
			}
		})
	}
}

// TestVerifyHostileFast: parameters beyond the limits are refused before any
// work is done.
func TestVerifyHostileFast(t *testing.T) {
	const salt, key = "2ohUAfh9yetl+utr4tLcCQ", "AsXx0VlwjvNnCsa70u4HKZvFkC8Gwajr2pHGKcND/xs"
	tests := []struct {
		name, hash string
	}{
		{"m=4 GiB", "$argon2id$v=19$m=4194304,t=3,p=4$" + salt + "$" + key},
		{"m just over", "$argon2id$v=19$m=1048577,t=1,p=1$" + salt + "$" + key},
		{"m max uint32", "$argon2id$v=19$m=4294967295,t=1,p=1$" + salt + "$" + key},
		{"m overflow", "$argon2id$v=19$m=99999999999999999999,t=1,p=1$" + salt + "$" + key},
		{"t=21", "$argon2id$v=19$m=65536,t=21,p=4$" + salt + "$" + key},
		{"t max uint32", "$argon2id$v=19$m=65536,t=4294967295,p=4$" + salt + "$" + key},
		{"p=65", "$argon2id$v=19$m=65536,t=3,p=65$" + salt + "$" + key},
		{"p=256", "$argon2id$v=19$m=65536,t=3,p=256$" + salt + "$" + key},
		{"key 129 bytes", "$argon2id$v=19$m=65536,t=3,p=4$" + salt + "$" + strings.Repeat("A", 172)},
		{"key 1 MB", "$argon2id$v=19$m=65536,t=3,p=4$" + salt + "$" + strings.Repeat("A", 1<<20)},
		{"salt 1 MB", "$argon2id$v=19$m=65536,t=3,p=4$" + strings.Repeat("A", 1<<20) + "$" + key},
		{"bcrypt cost 17", "$2b$17$uu8vuSBjfNNIRyc.iBjhLupQn5aPnkBPStGBRcqUUBzLqmPFQyknu"},
		{"bcrypt cost 31", "$2b$31$uu8vuSBjfNNIRyc.iBjhLupQn5aPnkBPStGBRcqUUBzLqmPFQyknu"},
		{"bcrypt cost 99", "$2b$99$uu8vuSBjfNNIRyc.iBjhLupQn5aPnkBPStGBRcqUUBzLqmPFQyknu"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			ok, err := Verify(tt.hash, "password")
			if err == nil || ok {
				t.Errorf("Verify = %v, %v; want false and an error", ok, err)
			}
			// Generous bound for a loaded machine: refusing takes microseconds,
			// computing any of these would take seconds.
			if d := time.Since(start); d > 500*time.Millisecond {
				t.Errorf("refusing took %v", d)
			}
		})
	}
}

func TestVerifyLimitsAccepted(t *testing.T) {
	// The cheapest hash within the limits, with the largest key: accepted.
	const h = "$argon2id$v=19$m=8,t=1,p=1$2ohUAfh9yetl+utr4tLcCQ$"
	key := strings.Repeat("A", 170) + "A" // 171 characters: 128 bytes
	if err := CheckHash(h + key); err != nil {
		t.Errorf("CheckHash(128-byte key) = %v", err)
	}
	if ok, err := Verify(h+key, "password"); ok || err != nil {
		t.Errorf("Verify = %v, %v; want false, nil", ok, err)
	}
}
