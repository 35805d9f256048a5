package account

// Metrics receives counts of what the use cases do (Prometheus in the Caddy
// glue). Every method must be cheap and safe for concurrent use.
type Metrics interface {
	// SignIn counts a sign-in step: factor is password, oidc, totp, sms,
	// voice, email, backup_code or device; outcome success, failure,
	// banned or locked.
	SignIn(factor, outcome string)
	// CodeSent counts a code (or notice) handed to a channel's providers.
	CodeSent(channel string, ok bool)
	// Device counts trusted devices: created or revoked.
	Device(event string)
	// Decision counts reviewers' decisions: approve or deny.
	Decision(decision string)
}

type noMetrics struct{}

func (noMetrics) SignIn(string, string) {}
func (noMetrics) CodeSent(string, bool) {}
func (noMetrics) Device(string)         {}
func (noMetrics) Decision(string)       {}

// SetMetrics sets where counts go.
func (s *Service) SetMetrics(m Metrics) {
	if m != nil {
		s.metrics = m
	}
}
