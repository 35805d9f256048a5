package caddymodule

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/twostep-auth/twostep/account"
	"github.com/twostep-auth/twostep/internal/store"
)

// The collectors live for the process, so counts survive `caddy reload`;
// each configuration registers them with its own registry.
var (
	metricSignIns = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "twostep", Name: "sign_ins_total",
		Help: "Sign-in steps by factor (password, oidc, totp, sms, voice, email, backup_code, device) and outcome.",
	}, []string{"factor", "outcome"})
	metricCodes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "twostep", Name: "codes_sent_total",
		Help: "Codes handed to a channel, by channel and result (sent or failed).",
	}, []string{"channel", "result"})
	metricDeliveryFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "twostep", Name: "delivery_failures_total",
		Help: "Failed deliveries by channel and provider (a fallback may still have delivered).",
	}, []string{"channel", "provider"})
	metricDeliveries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "twostep", Name: "deliveries_total",
		Help: "Messages (codes and notices) delivered, by channel and the provider that took them.",
	}, []string{"channel", "provider"})
	metricDevices = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "twostep", Name: "trusted_devices_total",
		Help: "Trusted devices created and revoked.",
	}, []string{"event"})
	metricDecisions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "twostep", Name: "review_decisions_total",
		Help: "Reviewers' decisions on recovery requests.",
	}, []string{"decision"})
	metricStoreErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "twostep", Name: "store_errors_total",
		Help: "Store calls that failed (not counting 'not found'), by operation.",
	}, []string{"op"})
	metricStoreLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "twostep", Name: "store_latency_seconds",
		Help:    "Latency of store calls that reached the backend, by operation.",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	}, []string{"op"})
)

// promMetrics feeds account events into the collectors.
type promMetrics struct{}

func (promMetrics) SignIn(factor, outcome string) {
	metricSignIns.WithLabelValues(factor, outcome).Inc()
}
func (promMetrics) CodeSent(channel string, ok bool) {
	result := "sent"
	if !ok {
		result = "failed"
	}
	metricCodes.WithLabelValues(channel, result).Inc()
}
func (promMetrics) Device(event string)      { metricDevices.WithLabelValues(event).Inc() }
func (promMetrics) Decision(decision string) { metricDecisions.WithLabelValues(decision).Inc() }

var _ account.Metrics = promMetrics{}

// registerMetrics registers the collectors, and the recovery-queue gauges
// (read from the store when scraped), with this configuration's registry.
func (a *App) registerMetrics(reg *prometheus.Registry) {
	if reg == nil {
		return
	}
	for _, c := range []prometheus.Collector{metricSignIns, metricCodes, metricDeliveryFailures, metricDeliveries, metricDevices,
		metricDecisions, metricStoreErrors, metricStoreLatency} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				a.logger.Warn("registering a metric", zap.Error(err))
			}
		}
	}
	queue := func(oldest bool) func() float64 {
		return func() float64 {
			// The running configuration's app (see runningApp): after a
			// refused reload, a is one that never started.
			run, _ := runningApp(a.ctx)
			if run == nil {
				return 0
			}
			svc := run.Service()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			n, age, err := svc.QueueStats(ctx)
			if err != nil {
				return 0
			}
			if oldest {
				return age.Seconds()
			}
			return float64(n)
		}
	}
	_ = reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "twostep", Name: "recovery_pending",
		Help: "Recovery requests waiting for review."}, queue(false)))
	_ = reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "twostep", Name: "recovery_oldest_pending_seconds",
		Help: "How long the oldest pending recovery request has waited."}, queue(true)))
}

// measured times every backend call and counts failures.
type measured struct{ store.Store }

func observe(op string, start time.Time, err error) {
	metricStoreLatency.WithLabelValues(op).Observe(time.Since(start).Seconds())
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		metricStoreErrors.WithLabelValues(op).Inc()
	}
}

func (m measured) PutSession(ctx context.Context, s *store.Session) error {
	start := time.Now()
	err := m.Store.PutSession(ctx, s)
	observe("put_session", start, err)
	return err
}

func (m measured) ReplaceSession(ctx context.Context, s *store.Session) error {
	start := time.Now()
	err := m.Store.ReplaceSession(ctx, s)
	observe("replace_session", start, err)
	return err
}

func (m measured) SwapSession(ctx context.Context, oldID string, next *store.Session, now time.Time) error {
	start := time.Now()
	err := m.Store.SwapSession(ctx, oldID, next, now)
	observe("swap_session", start, err)
	return err
}

func (m measured) GetSession(ctx context.Context, id string, now time.Time) (s *store.Session, err error) {
	start := time.Now()
	s, err = m.Store.GetSession(ctx, id, now)
	observe("get_session", start, err)
	return s, err
}

func (m measured) TouchSession(ctx context.Context, id string, t time.Time) error {
	start := time.Now()
	err := m.Store.TouchSession(ctx, id, t)
	observe("touch_session", start, err)
	return err
}

func (m measured) DeleteSession(ctx context.Context, id string) error {
	start := time.Now()
	err := m.Store.DeleteSession(ctx, id)
	observe("delete_session", start, err)
	return err
}

func (m measured) Get(ctx context.Context, key string, now time.Time) ([]byte, error) {
	start := time.Now()
	b, err := m.Store.Get(ctx, key, now)
	observe("get", start, err)
	return b, err
}

func (m measured) Put(ctx context.Context, key string, v []byte, ttl time.Duration, now time.Time) error {
	start := time.Now()
	err := m.Store.Put(ctx, key, v, ttl, now)
	observe("put", start, err)
	return err
}

func (m measured) Replace(ctx context.Context, key string, v []byte, ttl time.Duration, now time.Time) error {
	start := time.Now()
	err := m.Store.Replace(ctx, key, v, ttl, now)
	observe("replace", start, err)
	return err
}

func (m measured) Take(ctx context.Context, key string, now time.Time) ([]byte, error) {
	start := time.Now()
	b, err := m.Store.Take(ctx, key, now)
	observe("take", start, err)
	return b, err
}

func (m measured) Incr(ctx context.Context, key string, w time.Duration, now time.Time) (int64, time.Time, error) {
	start := time.Now()
	n, r, err := m.Store.Incr(ctx, key, w, now)
	observe("incr", start, err)
	return n, r, err
}

func (m measured) DeleteUserSessions(ctx context.Context, user string) (int, error) {
	start := time.Now()
	n, err := m.Store.DeleteUserSessions(ctx, user)
	observe("delete_user_sessions", start, err)
	return n, err
}

func (m measured) ListUserSessions(ctx context.Context, user string, now time.Time) ([]*store.Session, error) {
	start := time.Now()
	list, err := m.Store.ListUserSessions(ctx, user, now)
	observe("list_user_sessions", start, err)
	return list, err
}

func (m measured) PutIfAbsent(ctx context.Context, key string, v []byte, ttl time.Duration, now time.Time) ([]byte, bool, error) {
	start := time.Now()
	stored, created, err := m.Store.PutIfAbsent(ctx, key, v, ttl, now)
	observe("put_if_absent", start, err)
	return stored, created, err
}

func (m measured) Delete(ctx context.Context, key string) error {
	start := time.Now()
	err := m.Store.Delete(ctx, key)
	observe("delete", start, err)
	return err
}

func (m measured) Sweep(ctx context.Context, now time.Time) (int, error) {
	start := time.Now()
	n, err := m.Store.Sweep(ctx, now)
	observe("sweep", start, err)
	return n, err
}

func (m measured) Ping(ctx context.Context) error {
	start := time.Now()
	err := m.Store.Ping(ctx)
	observe("ping", start, err)
	return err
}
