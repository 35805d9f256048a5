package caddymodule

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/twostep-auth/twostep/internal/notify"
)

// Every provider that fails is counted by channel and provider and
// logged, whether it is a channel's only provider or one of a chain.
func TestDeliveryFailuresCounted(t *testing.T) {
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
	}))
	defer down.Close()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer up.Close()
	hook := func(url string) ProviderConfig {
		return ProviderConfig{Type: "webhook", URL: url, Secret: "webhook-secret-for-tests"}
	}
	for _, c := range []struct {
		name      string
		providers []ProviderConfig
		wantErr   bool
		failed    []string // providers whose failure is counted
	}{
		{"only provider fails", []ProviderConfig{hook(down.URL)}, true, []string{"webhook-1"}},
		{"first of two fails", []ProviderConfig{hook(down.URL), hook(up.URL)}, false, []string{"webhook-1"}},
		{"both fail", []ProviderConfig{hook(down.URL), hook(down.URL)}, true, []string{"webhook-1", "webhook-2"}},
		{"only provider works", []ProviderConfig{hook(up.URL)}, false, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			core, logs := observer.New(zap.WarnLevel)
			a := &App{logger: zap.New(core), Voice: c.providers}
			s, err := a.senderChain("voice", a.Voice)
			if err != nil {
				t.Fatal(err)
			}
			before := map[string]float64{}
			for _, p := range []string{"webhook-1", "webhook-2"} {
				before[p] = counterValue(t, metricDeliveryFailures.WithLabelValues("voice", p))
			}
			err = s.Send(context.Background(), notify.Message{Channel: notify.ChannelVoice, To: "+15550001234", Body: "Your code is 1 2 3.", Code: "123"})
			if (err != nil) != c.wantErr {
				t.Fatalf("Send = %v, want error %v", err, c.wantErr)
			}
			want := map[string]float64{}
			for _, p := range c.failed {
				want[p]++
			}
			for _, p := range []string{"webhook-1", "webhook-2"} {
				if got := counterValue(t, metricDeliveryFailures.WithLabelValues("voice", p)) - before[p]; got != want[p] {
					t.Errorf("delivery_failures_total{voice,%s} rose by %v, want %v", p, got, want[p])
				}
			}
			if got := logs.FilterMessage("delivery failed").Len(); got != len(c.failed) {
				t.Errorf("%d delivery failures logged, want %d", got, len(c.failed))
			}
		})
	}
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// The email channel's one provider is counted the same way.
func TestEmailDeliveryFailureCounted(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	core, logs := observer.New(zap.WarnLevel)
	a := &App{logger: zap.New(core), Email: &SMTPConfig{Address: addr, From: "Security <security@example.com>", TLS: "none"}}
	s, err := a.buildSenders()
	if err != nil {
		t.Fatal(err)
	}
	c := metricDeliveryFailures.WithLabelValues("email", "smtp")
	before := counterValue(t, c)
	if err := s.Email.Send(context.Background(), notify.Message{Channel: notify.ChannelEmail, To: "alice@example.com", Subject: "Test", Body: "Hello"}); err == nil {
		t.Fatal("sending to a closed port succeeded")
	}
	if got := counterValue(t, c) - before; got != 1 {
		t.Errorf("delivery_failures_total{email,smtp} rose by %v, want 1", got)
	}
	if logs.FilterMessage("delivery failed").Len() != 1 {
		t.Error("the failure was not logged")
	}
}
