package documents

import (
	"bytes"
	"errors"
	"testing"
)

func testKey(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

func testVault(t testing.TB, b byte) *Vault {
	t.Helper()
	v, err := NewVault(testKey(b))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func sampleDoc() *Document {
	return &Document{Kind: KindPNG, Data: []byte("\x89PNG pixels"), Width: 640, Height: 480,
		SHA256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}
}

func TestNewVaultKeyLength(t *testing.T) {
	tests := []struct {
		n  int
		ok bool
	}{{0, false}, {16, false}, {31, false}, {32, true}, {64, true}}
	for _, tt := range tests {
		_, err := NewVault(make([]byte, tt.n))
		if (err == nil) != tt.ok {
			t.Errorf("key of %d bytes: %v", tt.n, err)
		}
	}
}

func TestVaultRoundTrip(t *testing.T) {
	v := testVault(t, 1)
	docs := []*Document{
		sampleDoc(),
		{Kind: KindPDF, Data: minimalPDF(), SHA256: "ab"},
		{Kind: KindDOCX, Data: nil},
		{Kind: KindJPEG, Data: bytes.Repeat([]byte{7}, 1<<16), Width: 1, Height: 1},
		{Kind: KindDOC, Data: []byte{0}},
	}
	for _, d := range docs {
		blob, err := v.Seal(d, "alice", "req-1")
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(blob, d.Data) && len(d.Data) > 8 {
			t.Fatal("plaintext in the blob")
		}
		got, err := v.Open(blob, "alice", "req-1")
		if err != nil {
			t.Fatal(err)
		}
		if got.Kind != d.Kind || !bytes.Equal(got.Data, d.Data) || got.Width != d.Width ||
			got.Height != d.Height || got.SHA256 != d.SHA256 {
			t.Fatalf("got %+v, want %+v", got, d)
		}
		// The same key opens it in another Vault value.
		if _, err := testVault(t, 1).Open(blob, "alice", "req-1"); err != nil {
			t.Fatal(err)
		}
	}
}

func TestVaultSealsDiffer(t *testing.T) {
	v := testVault(t, 1)
	a, _ := v.Seal(sampleDoc(), "alice", "req-1")
	b, _ := v.Seal(sampleDoc(), "alice", "req-1")
	if bytes.Equal(a, b) {
		t.Fatal("two seals are equal")
	}
	if bytes.Equal(a[offWrapNonce:offWrapped], b[offWrapNonce:offWrapped]) ||
		bytes.Equal(a[offDataNonce:offCiphertext], b[offDataNonce:offCiphertext]) ||
		bytes.Equal(a[offWrapped:offDataNonce], b[offWrapped:offDataNonce]) {
		t.Fatal("nonce or wrapped key repeated")
	}
	if a[0] != vaultVersion || a[offKind] != kindCodes[KindPNG] {
		t.Fatalf("header %x", a[:2])
	}
}

func TestVaultTamperingFails(t *testing.T) {
	v := testVault(t, 1)
	blob, err := v.Seal(sampleDoc(), "alice", "req-1")
	if err != nil {
		t.Fatal(err)
	}
	for i := range blob {
		for _, bit := range []byte{0x01, 0x80} {
			bad := append([]byte{}, blob...)
			bad[i] ^= bit
			if _, err := v.Open(bad, "alice", "req-1"); !errors.Is(err, ErrOpen) {
				t.Fatalf("flipping bit %#x of byte %d: err = %v", bit, i, err)
			}
		}
	}
	for n := 0; n < len(blob); n++ {
		if _, err := v.Open(blob[:n], "alice", "req-1"); !errors.Is(err, ErrOpen) {
			t.Fatalf("truncated to %d: err = %v", n, err)
		}
	}
	if _, err := v.Open(append(append([]byte{}, blob...), 0), "alice", "req-1"); !errors.Is(err, ErrOpen) {
		t.Fatalf("extended: err = %v", err)
	}
}

func TestVaultBindsContext(t *testing.T) {
	v := testVault(t, 1)
	blob, err := v.Seal(sampleDoc(), "alice", "req-1")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		v          *Vault
		owner, req string
	}{
		{"wrong owner", v, "mallory", "req-1"},
		{"wrong request", v, "alice", "req-2"},
		{"both swapped", v, "req-1", "alice"},
		{"boundary moved", v, "alicer", "eq-1"},
		{"empty owner", v, "", "req-1"},
		{"other master key", testVault(t, 2), "alice", "req-1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := tt.v.Open(blob, tt.owner, tt.req); !errors.Is(err, ErrOpen) {
				t.Fatalf("err = %v", err)
			}
		})
	}
	// The kind is bound as well: relabelling it fails.
	bad := append([]byte{}, blob...)
	bad[offKind] = kindCodes[KindJPEG]
	if _, err := v.Open(bad, "alice", "req-1"); !errors.Is(err, ErrOpen) {
		t.Fatalf("relabelled kind: %v", err)
	}
	// A blob from another request cannot be swapped in.
	other, _ := v.Seal(sampleDoc(), "alice", "req-2")
	if _, err := v.Open(other, "alice", "req-1"); !errors.Is(err, ErrOpen) {
		t.Fatalf("swapped blob: %v", err)
	}
}

func TestVaultSealRefuses(t *testing.T) {
	v := testVault(t, 1)
	tests := []struct {
		name       string
		doc        *Document
		owner, req string
	}{
		{"nil", nil, "a", "r"},
		{"unknown kind", &Document{Kind: "gif"}, "a", "r"},
		{"no owner", sampleDoc(), "", "r"},
		{"no request", sampleDoc(), "a", ""},
		{"negative width", &Document{Kind: KindPNG, Width: -1}, "a", "r"},
		{"long hash", &Document{Kind: KindPNG, SHA256: string(make([]byte, 256))}, "a", "r"},
	}
	for _, tt := range tests {
		if _, err := v.Seal(tt.doc, tt.owner, tt.req); err == nil {
			t.Errorf("%s: sealed", tt.name)
		}
	}
}
