package otp

import (
	"strings"
	"testing"
)

func TestNormalizeCode(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		digits int
		want   string
		ok     bool
	}{
		{"plain", "123456", 6, "123456", true},
		{"leading zeros", "000001", 6, "000001", true},
		{"trimmed", " \t\r\n\v\f123456 \n", 6, "123456", true},
		{"inner space", "123 456", 6, "123456", true},
		{"inner spaces", "1 2 3 4 5 6", 6, "123456", true},
		{"inner hyphen", "123-456", 6, "123456", true},
		{"hyphens and spaces", "12 - 34 - 56", 6, "123456", true},
		{"eight digits", "9428 7082", 8, "94287082", true},
		{"ten digits", "12345-67890", 10, "1234567890", true},
		{"full-width", "１２３４５６", 6, "123456", true},
		{"full-width mixed", "１２３ 456", 6, "123456", true},
		{"full-width zero and nine", "０９０９０９", 6, "090909", true},
		{"too short", "12345", 6, "", false},
		{"too long", "1234567", 6, "", false},
		{"eight for six", "12345678", 6, "", false},
		{"empty", "", 6, "", false},
		{"only separators", " - - ", 6, "", false},
		{"letter", "12345a", 6, "", false},
		{"letter O", "12345O", 6, "", false},
		{"inner tab", "123\t456", 6, "", false},
		{"inner newline", "123\n456", 6, "", false},
		{"dot", "123.456", 6, "", false},
		{"plus", "+123456", 6, "", false},
		{"NUL", "123456\x00", 6, "", false},
		{"arabic-indic", "١٢٣٤٥٦", 6, "", false},
		{"devanagari", "१२३४५६", 6, "", false},
		{"superscript", "¹²³⁴⁵⁶", 6, "", false},
		{"full-width hyphen", "123－456", 6, "", false},
		{"ideographic space", "123\u3000456", 6, "", false},
		{"no-break space", "123\u00a0456", 6, "", false},
		{"full-width letter", "12345Ａ", 6, "", false},
		{"U+FF1A after digits", "12345\uff1a", 6, "", false},
		{"truncated full-width", "12345\xef\xbc", 6, "", false},
		{"invalid utf-8", "123\xff456", 6, "", false},
		{"lone continuation", "123\x90456", 6, "", false},
		{"over 64 bytes", "123456" + strings.Repeat(" ", MaxInputLen-5), 6, "", false},
		{"exactly 64 bytes", "123456" + strings.Repeat(" ", MaxInputLen-6), 6, "123456", true},
		{"digits zero", "", 0, "", false},
		{"digits negative", "123456", -1, "", false},
		{"digits too large", "1", MaxInputLen + 1, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := NormalizeCode(tt.in, tt.digits)
			if got != tt.want || ok != tt.ok {
				t.Fatalf("NormalizeCode(%q, %d) = %q, %v; want %q, %v", tt.in, tt.digits, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestNormalizeBackupCode(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
		ok   bool
	}{
		{"display form", "abcde-fghjk", "abcdefghjk", true},
		{"canonical form", "abcdefghjk", "abcdefghjk", true},
		{"upper case", "ABCDE-FGHJK", "abcdefghjk", true},
		{"spaces", "  abcde fghjk\n", "abcdefghjk", true},
		{"many separators", "ab-cd e-fg hj-k", "abcdefghjk", true},
		{"i and l to 1", "iIlL1-00000", "1111100000", true},
		{"o to 0", "oOooo-mnpqr", "00000mnpqr", true},
		{"all digits", "01234-56789", "0123456789", true},
		{"last letters", "stvwx-yz000", "stvwxyz000", true},
		{"u refused", "uuuuu-uuuuu", "", false},
		{"too short", "abcde-fghj", "", false},
		{"too long", "abcde-fghjkm", "", false},
		{"punctuation", "abcde_fghjk", "", false},
		{"inner tab", "abcde\tfghjk", "", false},
		{"non-ascii", "abcdé-fghjk", "", false},
		{"full-width", "ａｂｃｄｅｆｇｈｊｋ", "", false},
		{"invalid utf-8", "abcde\xfffghjk", "", false},
		{"empty", "", "", false},
		{"over 64 bytes", "abcdefghjk" + strings.Repeat(" ", MaxInputLen-9), "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := NormalizeBackupCode(tt.in)
			if got != tt.want || ok != tt.ok {
				t.Fatalf("NormalizeBackupCode(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
			}
		})
	}
}
