package notify

import (
	"testing"
	"time"
)

func TestCodeText(t *testing.T) {
	tests := []struct {
		code, site string
		lifetime   time.Duration
		want       string
	}{
		{"123456", "Example Corp", 10 * time.Minute, "Your code is 123456 for Example Corp. It expires in 10 minutes. Don't share it."},
		{"123456", "", 10 * time.Minute, "Your code is 123456. It expires in 10 minutes. Don't share it."},
		{"123456", "  ", 10 * time.Minute, "Your code is 123456. It expires in 10 minutes. Don't share it."},
		{"042", "Acme", time.Minute, "Your code is 042 for Acme. It expires in 1 minute. Don't share it."},
		{"042", "Acme", 90 * time.Second, "Your code is 042 for Acme. It expires in 1 minute. Don't share it."},
		{"042", "Acme", 30 * time.Second, "Your code is 042 for Acme. It expires in 30 seconds. Don't share it."},
		{"042", "Acme", time.Hour, "Your code is 042 for Acme. It expires in 1 hour. Don't share it."},
		{"042", "Acme", 2 * time.Hour, "Your code is 042 for Acme. It expires in 2 hours. Don't share it."},
		{"042", "Acme", 90 * time.Minute, "Your code is 042 for Acme. It expires in 90 minutes. Don't share it."},
		{"042", "Acme", 0, "Your code is 042 for Acme. Don't share it."},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			if got := CodeText(tc.code, tc.site, tc.lifetime); got != tc.want {
				t.Errorf("CodeText = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestSpokenCode(t *testing.T) {
	tests := []struct{ code, want string }{
		{"123456", "Your code is 1, 2, 3, 4, 5, 6."},
		{"000", "Your code is 0, 0, 0."},
		{"123 456", "Your code is 1, 2, 3, 4, 5, 6."},
		{"123-456", "Your code is 1, 2, 3, 4, 5, 6."},
		{"7", "Your code is 7."},
	}
	for _, tc := range tests {
		t.Run(tc.code, func(t *testing.T) {
			if got := SpokenCode(tc.code); got != tc.want {
				t.Errorf("SpokenCode(%q) = %q, want %q", tc.code, got, tc.want)
			}
		})
	}
}

func TestIsE164AndMaskPhone(t *testing.T) {
	tests := []struct {
		in     string
		valid  bool
		masked string
	}{
		{"+15551234567", true, "•••• 4567"},
		{"+447700900123", true, "•••• 0123"},
		{"+1555", true, "••••"},
		{"+123456789012345", true, "•••• 2345"},
		{"+1234567890123456", false, "•••• 3456"},
		{"15551234567", false, "•••• 4567"},
		{"+05551234567", false, "•••• 4567"},
		{"+1 555 123 4567", false, "•••• 4567"},
		{"", false, "••••"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			if got := IsE164(tc.in); got != tc.valid {
				t.Errorf("IsE164 = %v, want %v", got, tc.valid)
			}
			if got := MaskPhone(tc.in); got != tc.masked {
				t.Errorf("MaskPhone = %q, want %q", got, tc.masked)
			}
		})
	}
}

func TestDeliveryErrorText(t *testing.T) {
	tests := []struct {
		err  *DeliveryError
		want string
	}{
		{&DeliveryError{Provider: "twilio", Status: 400, Err: &TwilioError{Code: 21211, Message: "bad number"}}, "notify: twilio: delivery failed (status 400): twilio error 21211: bad number"},
		{&DeliveryError{Provider: "smtp", Err: ErrEmptyMessage}, "notify: smtp: delivery failed: empty message"},
		{&DeliveryError{}, "notify: provider: delivery failed"},
	}
	for _, tc := range tests {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("Error = %q, want %q", got, tc.want)
		}
	}
}
