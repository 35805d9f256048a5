package integration

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// Prometheus metrics appear on Caddy's own metrics endpoint.
func TestMetrics(t *testing.T) {
	start(t)
	c := newClient(t)
	c.mustLogin("alice", alicePassword)
	wantError(t, c.login("alice", "wrong"), http.StatusUnauthorized, "invalid_credentials")
	res, err := http.Get("http://localhost:2999/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	body := string(b)
	for _, want := range []string{
		`twostep_sign_ins_total{factor="password",outcome="success"}`,
		`twostep_sign_ins_total{factor="password",outcome="failure"}`,
		`twostep_store_latency_seconds_bucket{op="put_session"`,
		`twostep_recovery_pending`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
