package notify

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// countingSender counts the calls to another Sender.
type countingSender struct {
	Sender
	mu    sync.Mutex
	calls int
}

func (c *countingSender) Send(ctx context.Context, m Message) error {
	c.mu.Lock()
	c.calls++
	c.mu.Unlock()
	return c.Sender.Send(ctx, m)
}

func (c *countingSender) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls
}

// plainErrSender fails with an error that is not a DeliveryError.
type plainErrSender struct{}

func (plainErrSender) Name() string { return "custom" }
func (plainErrSender) Send(context.Context, Message) error {
	return errors.New("custom gateway down, code 246810 not sent")
}

func TestFallback(t *testing.T) {
	okRC, okSrv := newReceiver(t, 0)
	_, badSrv := newReceiver(t, http.StatusInternalServerError)
	_, twSrv := newFakeTwilio(t)

	good := func() *countingSender {
		return &countingSender{Sender: &Webhook{URL: okSrv.URL, Secret: testWebhookSecret, Label: "gateway"}}
	}
	failingWebhook := func() *countingSender {
		return &countingSender{Sender: &Webhook{URL: badSrv.URL, Secret: testWebhookSecret, Label: "backup-gateway"}}
	}
	// Twilio refuses: the token is wrong.
	failingTwilio := func() *countingSender {
		return &countingSender{Sender: &Twilio{AccountSID: testSID, AuthToken: "stale-token-8080", From: testFrom, Endpoint: twSrv.URL}}
	}

	msg := Message{Channel: ChannelSMS, To: "+15551234567", User: "alice", Body: "Your code is 135790", Code: "135790"}
	tests := []struct {
		name      string
		senders   func() []*countingSender
		wantOK    bool
		wantBy    string
		wantCalls []int
		wantNames []string // in the error
	}{
		{
			name:      "first fails, second delivers",
			senders:   func() []*countingSender { return []*countingSender{failingTwilio(), good()} },
			wantOK:    true,
			wantBy:    "gateway",
			wantCalls: []int{1, 1},
		},
		{
			name:      "first delivers, second untouched",
			senders:   func() []*countingSender { return []*countingSender{good(), failingTwilio()} },
			wantOK:    true,
			wantBy:    "gateway",
			wantCalls: []int{1, 0},
		},
		{
			name:      "both fail",
			senders:   func() []*countingSender { return []*countingSender{failingTwilio(), failingWebhook()} },
			wantCalls: []int{1, 1},
			wantNames: []string{"twilio", "backup-gateway"},
		},
		{
			name:      "a non-DeliveryError is wrapped",
			senders:   func() []*countingSender { return []*countingSender{{Sender: plainErrSender{}}} },
			wantCalls: []int{1},
			wantNames: []string{"custom"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			counted := tc.senders()
			fb := &Fallback{}
			for _, c := range counted {
				fb.Senders = append(fb.Senders, c)
			}
			var failed, delivered []string
			fb.OnFailure = func(p string, err error) { failed = append(failed, p) }
			fb.OnSuccess = func(p string) { delivered = append(delivered, p) }
			core, logs := observer.New(zap.DebugLevel)
			fb.Logger = zap.New(core)

			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			before := okRC.count()
			by, err := fb.Deliver(ctx, msg)
			for i, c := range counted {
				if c.count() != tc.wantCalls[i] {
					t.Errorf("sender %d called %d times, want %d", i, c.count(), tc.wantCalls[i])
				}
			}
			failures := 0
			for _, n := range tc.wantCalls {
				failures += n
			}
			if tc.wantOK {
				failures--
			}
			if tc.wantOK && (len(delivered) != 1 || delivered[0] != tc.wantBy) || !tc.wantOK && len(delivered) != 0 {
				t.Errorf("OnSuccess saw %v, want [%s] on success only", delivered, tc.wantBy)
			}
			if len(failed) != failures || logs.Len() != failures {
				t.Errorf("OnFailure saw %v and %d log entries, want %d failures", failed, logs.Len(), failures)
			}
			for _, e := range logs.All() {
				for _, f := range e.Context {
					if strings.Contains(f.String, msg.Code) || strings.Contains(f.String, msg.To) {
						t.Errorf("log field %s=%q leaks the code or the number", f.Key, f.String)
					}
				}
			}
			if tc.wantOK {
				if err != nil {
					t.Fatalf("Deliver: %v", err)
				}
				if by != tc.wantBy {
					t.Errorf("delivered by %q, want %q", by, tc.wantBy)
				}
				if okRC.count() != before+1 {
					t.Errorf("the receiver did not get the message")
				}
				return
			}
			var all *AllFailedError
			if !errors.As(err, &all) {
				t.Fatalf("error %v (%T) is not an *AllFailedError", err, err)
			}
			if strings.Join(all.Providers, ",") != strings.Join(tc.wantNames, ",") {
				t.Errorf("Providers %v, want %v", all.Providers, tc.wantNames)
			}
			txt := err.Error()
			if !strings.Contains(txt, "every provider failed") {
				t.Errorf("error %q does not say every provider failed", txt)
			}
			for _, n := range tc.wantNames {
				if !strings.Contains(txt, n) {
					t.Errorf("error %q does not name %s", txt, n)
				}
			}
			de := asDelivery(t, err)
			if de.Provider != tc.wantNames[len(tc.wantNames)-1] {
				t.Errorf("unwraps to %q's error, want the last provider's", de.Provider)
			}
			assertNoSecrets(t, err, "stale-token-8080", testWebhookSecret, msg.Code)
		})
	}
}

func TestFallbackSendAndName(t *testing.T) {
	o := NewOutbox(10)
	fb := &Fallback{Senders: []Sender{
		&Webhook{URL: "http://127.0.0.1:1/", Label: "broken"}, // fails Validate: no secret
		o.Sender("dev"),
	}}
	if fb.Name() != "broken+dev" {
		t.Errorf("Name = %q", fb.Name())
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := fb.Send(ctx, Message{Channel: ChannelSMS, To: "+15551234567", Body: "hi"}); err != nil {
		t.Fatal(err)
	}
	if o.Len() != 1 {
		t.Errorf("outbox has %d messages", o.Len())
	}
}

func TestFallbackEdgeCases(t *testing.T) {
	msg := Message{Channel: ChannelSMS, To: "+15551234567", Body: "hi"}
	t.Run("no senders", func(t *testing.T) {
		if err := (&Fallback{}).Send(context.Background(), msg); !errors.Is(err, ErrNoProvider) {
			t.Fatalf("error %v, want ErrNoProvider", err)
		}
	})
	t.Run("cancelled context tries nothing", func(t *testing.T) {
		o := NewOutbox(10)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err := (&Fallback{Senders: []Sender{o.Sender("a"), o.Sender("b")}}).Send(ctx, msg)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("error %v, want context.Canceled", err)
		}
		if o.Len() != 0 {
			t.Errorf("a sender was tried after cancellation")
		}
		var all *AllFailedError
		if !errors.As(err, &all) || len(all.Providers) != 2 {
			t.Errorf("error %v does not list both providers", err)
		}
	})
}
