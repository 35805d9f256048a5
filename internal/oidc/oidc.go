// Package oidc implements upstream OpenID Connect as the first factor of a
// twostep sign-in: the authorization code flow with PKCE (S256), state and
// nonce, ID token verification against the provider's JWKS, and the mapping
// of claims to a twostep user. twostep applies its own second factor
// afterwards, unless the provider vouches for multi-factor authentication
// and Config.TrustIdPMFA is set.
//
// The package is protocol only: the caller serves the login button, stores
// the Flow server-side bound to a browser cookie, routes the callback to
// Finish and keeps the session.
//
// Provider discovery never happens in New: Discover runs at start or on
// first use (Start and Finish call it), retries lazily at most once per
// RetryInterval after a failure, and Ready reports the outcome for the
// login button, so an unreachable provider never breaks password sign-in.
package oidc

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"sync"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// Provider is one configured upstream OpenID provider. It is safe for
// concurrent use.
type Provider struct {
	cfg Config
	now func() time.Time // clock for discovery retries; time.Now outside tests

	mu          sync.Mutex
	disc        *discovery    // nil until discovery succeeds
	lastErr     error         // last discovery failure (an *unavailableError)
	lastAttempt time.Time     // when lastErr happened
	inflight    chan struct{} // closed when the running discovery ends
}

// discovery is what a successful discovery yields.
type discovery struct {
	provider    *gooidc.Provider
	endSession  string
	hasUserInfo bool
	authStyle   oauth2.AuthStyle
}

// Flow is the state of one sign-in between Start and Finish. The caller
// keeps it server-side, bound to the browser that started it (for example
// by a random cookie); it holds secrets and is never sent to the browser.
type Flow struct {
	// Provider is the Name of the provider that started the flow.
	Provider string
	// State is the OAuth 2.0 state, 32 random bytes, base64url.
	State string
	// Nonce is the OpenID Connect nonce, 32 random bytes, base64url.
	Nonce string
	// Verifier is the PKCE code verifier; the S256 challenge was sent.
	Verifier string
	// RedirectURI is the callback URL sent to the provider.
	RedirectURI string
	// ReturnURL is where the caller wants the browser after sign-in; this
	// package stores it only, the caller validates it.
	ReturnURL string
	// Created is when Start ran; Finish refuses flows older than FlowLifetime.
	Created time.Time
	// Reauth: StartReauth began the flow, and Finish demands an auth_time
	// no earlier than Created.
	Reauth bool `json:",omitempty"`
}

// reauthSkew is how far the provider's clock may be behind ours when
// Finish compares auth_time with the flow's start: a few seconds for
// clocks that NTP keeps, not enough for an earlier login to pass as the
// one the confirmation asked for.
const reauthSkew = 5 * time.Second

// iatSkew is how far in the future an ID token's iat may be (the
// provider's clock ahead of ours).
const iatSkew = 5 * time.Minute

// Identity is who the provider says signed in, mapped to twostep's terms.
type Identity struct {
	// Provider is the Name of the provider.
	Provider string
	// Subject is the ID token's `sub`.
	Subject string
	// Username is the user name (lower-case), from Config.UsernameClaim or a
	// verified `email`.
	Username string
	// Email is the verified email address, or empty.
	Email string
	// EmailVerified is true when Email is set and the provider verified it.
	EmailVerified bool
	// Name is the `name` claim (empty if it holds control characters).
	Name string
	// Groups from Config.GroupsClaim.
	Groups []string
	// AMR is the ID token's `amr` claim, for audit.
	AMR []string
	// ACR is the ID token's `acr` claim.
	ACR string
	// MFA is true when Config.TrustIdPMFA is set and amr/acr say the
	// provider used more than one factor.
	MFA bool
	// Known is true when Config.KnownUser found Username in the users file.
	Known bool
	// AuthTime is the ID token's auth_time (when the user last gave the
	// provider their credentials), or zero if absent.
	AuthTime time.Time
	// IDToken is the raw ID token, for the id_token_hint of RP-initiated
	// logout. Never log it.
	IDToken string
}

// String describes the identity without the ID token.
func (id *Identity) String() string {
	if id == nil {
		return "<nil>"
	}
	return fmt.Sprintf("oidc identity %s/%s user=%q mfa=%t known=%t", id.Provider, id.Subject, id.Username, id.MFA, id.Known)
}

// New checks cfg and returns a provider. It does no network I/O: discovery
// happens in Discover, Start or Finish.
func New(cfg Config) (*Provider, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Provider{cfg: cfg.withDefaults(), now: time.Now}, nil
}

// Name returns the provider's configured name.
func (p *Provider) Name() string { return p.cfg.Name }

// Label returns the text of the provider's login button.
func (p *Provider) Label() string { return p.cfg.Label }

// Issuer returns the configured issuer URL.
func (p *Provider) Issuer() string { return p.cfg.Issuer }

// Discover fetches the provider's /.well-known/openid-configuration and
// caches it. It is safe to call concurrently and repeatedly: once it has
// succeeded it returns nil at once; concurrent callers share one attempt;
// after a failure, calls within RetryInterval return the same error without
// network I/O. A failure caused by ctx itself (cancelled, deadline) is not
// remembered. Errors match ErrUnavailable.
func (p *Provider) Discover(ctx context.Context) error {
	for {
		p.mu.Lock()
		if p.disc != nil {
			p.mu.Unlock()
			return nil
		}
		if ch := p.inflight; ch != nil {
			p.mu.Unlock()
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return p.unavailable(ctx.Err())
			}
		}
		if p.lastErr != nil && p.now().Sub(p.lastAttempt) < RetryInterval {
			err := p.lastErr
			p.mu.Unlock()
			return err
		}
		ch := make(chan struct{})
		p.inflight = ch
		p.mu.Unlock()

		d, err := p.fetch(ctx)

		p.mu.Lock()
		p.inflight = nil
		close(ch)
		if err == nil {
			p.disc, p.lastErr = d, nil
		} else {
			err = p.unavailable(err)
			if ctx.Err() == nil {
				p.lastErr, p.lastAttempt = err, p.now()
			}
		}
		p.mu.Unlock()
		return err
	}
}

// fetch runs one discovery.
func (p *Provider) fetch(ctx context.Context) (*discovery, error) {
	ctx, cancel := context.WithTimeout(ctx, DefaultHTTPTimeout)
	defer cancel()
	prov, err := gooidc.NewProvider(gooidc.ClientContext(ctx, p.cfg.HTTPClient), p.cfg.Issuer)
	if err != nil {
		return nil, err
	}
	var extra struct {
		AuthURL     string   `json:"authorization_endpoint"`
		TokenURL    string   `json:"token_endpoint"`
		JWKSURL     string   `json:"jwks_uri"`
		UserInfo    string   `json:"userinfo_endpoint"`
		EndSession  string   `json:"end_session_endpoint"`
		AuthMethods []string `json:"token_endpoint_auth_methods_supported"`
	}
	if err := prov.Claims(&extra); err != nil {
		return nil, fmt.Errorf("discovery document: %w", err)
	}
	for what, u := range map[string]string{"authorization_endpoint": extra.AuthURL, "token_endpoint": extra.TokenURL, "jwks_uri": extra.JWKSURL} {
		if err := checkEndpoint(u); err != nil {
			return nil, fmt.Errorf("discovery document: %s: %w", what, err)
		}
	}
	// The userinfo endpoint gets the access token and supplies claims (the
	// user name among them): only over https, as the other endpoints.
	d := &discovery{provider: prov, hasUserInfo: extra.UserInfo != "" && checkEndpoint(extra.UserInfo) == nil, authStyle: p.authStyle(extra.AuthMethods)}
	if extra.EndSession != "" && checkEndpoint(extra.EndSession) == nil {
		d.endSession = extra.EndSession
	}
	return d, nil
}

// authStyle picks how the client authenticates at the token endpoint, so
// that a failed exchange is not retried the other way (OIDC Discovery: the
// default is client_secret_basic).
func (p *Provider) authStyle(methods []string) oauth2.AuthStyle {
	switch {
	case p.cfg.ClientSecret == "":
		return oauth2.AuthStyleInParams // public client: client_id in the body
	case len(methods) == 0 || slices.Contains(methods, "client_secret_basic"):
		return oauth2.AuthStyleInHeader
	case slices.Contains(methods, "client_secret_post"):
		return oauth2.AuthStyleInParams
	}
	return oauth2.AuthStyleAutoDetect
}

// checkEndpoint accepts an absolute https URL, or http on a loopback host.
func checkEndpoint(s string) error {
	if s == "" {
		return errors.New("missing")
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return fmt.Errorf("invalid URL %q", clean(s, 200))
	}
	if u.Scheme == "https" || (u.Scheme == "http" && isLoopbackHost(u.Hostname())) {
		return nil
	}
	return fmt.Errorf("URL %q is not https", clean(s, 200))
}

// unavailable turns a discovery failure into the message for the login button.
func (p *Provider) unavailable(cause error) error {
	var (
		netErr   net.Error
		urlErr   *url.Error
		mismatch *gooidc.IssuerMismatchError
		msg      string
	)
	switch {
	case errors.As(cause, &mismatch):
		msg = fmt.Sprintf("%s is misconfigured: the provider says its issuer is %q, not %q", p.cfg.Name, clean(mismatch.Discovered, 200), p.cfg.Issuer)
	case errors.Is(cause, context.Canceled), errors.Is(cause, context.DeadlineExceeded),
		errors.As(cause, &netErr), errors.As(cause, &urlErr):
		msg = fmt.Sprintf("%s is unreachable: %s", p.cfg.Name, clean(cause.Error(), 300))
	default:
		msg = fmt.Sprintf("%s is unreachable: discovery at %s failed: %s", p.cfg.Name, p.cfg.Issuer, clean(cause.Error(), 300))
	}
	return &unavailableError{msg: msg, cause: cause}
}

// Ready reports, for the login button, whether discovery has succeeded and,
// if not, the last discovery error (nil when none was attempted yet). It
// does no network I/O.
func (p *Provider) Ready() (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.disc != nil {
		return true, nil
	}
	return false, p.lastErr
}

func (p *Provider) discovered() *discovery {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.disc
}

func (p *Provider) oauth2Config(d *discovery, redirectURI string) *oauth2.Config {
	ep := d.provider.Endpoint()
	ep.AuthStyle = d.authStyle
	return &oauth2.Config{
		ClientID:     p.cfg.ClientID,
		ClientSecret: p.cfg.ClientSecret,
		Endpoint:     ep,
		RedirectURL:  redirectURI,
		Scopes:       slices.Clone(p.cfg.Scopes),
	}
}

// Start begins a sign-in: it discovers the provider if needed, makes a
// random 32-byte state and nonce and a PKCE verifier, and returns the
// provider's authorization URL (with the S256 challenge) and the flow to
// keep. redirectURI must be an absolute http(s) URL registered at the
// provider.
func (p *Provider) Start(ctx context.Context, redirectURI, returnURL string) (string, *Flow, error) {
	return p.start(ctx, redirectURI, returnURL, false)
}

// StartReauth is Start for confirming who is already signed in: the
// provider is told to ask for the user's credentials again even if it has
// a session of its own (prompt=login, max_age=0), and Finish refuses an
// answer whose auth_time does not show that it did.
func (p *Provider) StartReauth(ctx context.Context, redirectURI, returnURL string) (string, *Flow, error) {
	return p.start(ctx, redirectURI, returnURL, true)
}

func (p *Provider) start(ctx context.Context, redirectURI, returnURL string, reauth bool) (string, *Flow, error) {
	if err := checkRedirectURI(redirectURI); err != nil {
		return "", nil, err
	}
	if err := p.Discover(ctx); err != nil {
		return "", nil, err
	}
	d := p.discovered()
	state, err := randomToken()
	if err != nil {
		return "", nil, err
	}
	nonce, err := randomToken()
	if err != nil {
		return "", nil, err
	}
	flow := &Flow{
		Provider:    p.cfg.Name,
		State:       state,
		Nonce:       nonce,
		Verifier:    oauth2.GenerateVerifier(),
		RedirectURI: redirectURI,
		ReturnURL:   returnURL,
		Created:     time.Now(),
		Reauth:      reauth,
	}
	opts := []oauth2.AuthCodeOption{gooidc.Nonce(nonce), oauth2.S256ChallengeOption(flow.Verifier)}
	if reauth {
		opts = append(opts, oauth2.SetAuthURLParam("prompt", "login"), oauth2.SetAuthURLParam("max_age", "0"))
	}
	authURL := p.oauth2Config(d, redirectURI).AuthCodeURL(state, opts...)
	return authURL, flow, nil
}

func checkRedirectURI(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") || u.Fragment != "" {
		return fmt.Errorf("oidc: invalid redirect URI %q: need an absolute http(s) URL without fragment", clean(s, 200))
	}
	return nil
}

func randomToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("oidc: random: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// equal compares secrets in constant time; empty never matches.
func equal(a, b string) bool {
	if a == "" || b == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// Finish checks the provider's callback (the query of the request to the
// redirect URI) against the stored flow, exchanges the code (with the PKCE
// verifier), verifies the ID token (signature via JWKS, issuer, audience,
// authorized party, expiry at now, nonce, at_hash) and maps its claims to an
// Identity. A zero now means time.Now(). The caller must delete the flow
// before or after calling Finish, whatever the outcome: a flow is good for
// one callback.
func (p *Provider) Finish(ctx context.Context, flow *Flow, query url.Values, now time.Time) (*Identity, error) {
	if now.IsZero() {
		now = time.Now()
	}
	if flow == nil || flow.Provider != p.cfg.Name || !equal(query.Get("state"), flow.State) {
		return nil, fmt.Errorf("%w: the callback does not belong to a sign-in started here", ErrState)
	}
	if flow.Created.IsZero() || now.Sub(flow.Created) > FlowLifetime {
		return nil, fmt.Errorf("%w: more than %v since it started", ErrFlowExpired, FlowLifetime)
	}
	// RFC 9207: a provider that names itself in the response must be ours.
	if iss, ok := query["iss"]; ok && (len(iss) != 1 || iss[0] != p.cfg.Issuer) {
		return nil, fmt.Errorf("%w: the callback comes from another issuer", ErrState)
	}
	if e := query.Get("error"); e != "" {
		msg := clean(e, 100)
		if desc := query.Get("error_description"); desc != "" {
			msg += ": " + clean(desc, 300)
		}
		return nil, fmt.Errorf("%w: %s", ErrProviderError, msg)
	}
	code := query.Get("code")
	if code == "" {
		return nil, fmt.Errorf("%w: the callback carries no code", ErrProviderError)
	}
	if err := p.Discover(ctx); err != nil {
		return nil, err
	}
	d := p.discovered()
	ctx = gooidc.ClientContext(ctx, p.cfg.HTTPClient)

	tok, err := p.oauth2Config(d, flow.RedirectURI).Exchange(ctx, code, oauth2.VerifierOption(flow.Verifier))
	if err != nil {
		// A provider that refuses the code answers 4xx; no answer at
		// all, or a 5xx, is the provider being down.
		var re *oauth2.RetrieveError
		if !errors.As(err, &re) || re.Response == nil || re.Response.StatusCode >= 500 {
			return nil, fmt.Errorf("%w: token endpoint: %s", ErrUnavailable, describeExchangeError(err))
		}
		return nil, fmt.Errorf("%w: %s", ErrExchange, describeExchangeError(err))
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return nil, fmt.Errorf("%w: the token response has no id_token", ErrToken)
	}
	verifier := d.provider.Verifier(&gooidc.Config{ClientID: p.cfg.ClientID, Now: func() time.Time { return now }})
	idt, err := verifier.Verify(ctx, raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrToken, err)
	}
	if !equal(idt.Nonce, flow.Nonce) {
		return nil, fmt.Errorf("%w: nonce mismatch", ErrToken)
	}
	if idt.Subject == "" {
		return nil, fmt.Errorf("%w: no sub", ErrToken)
	}
	// OIDC Core 2: iat is required; one from the future is refused.
	if idt.IssuedAt.IsZero() {
		return nil, fmt.Errorf("%w: no iat", ErrToken)
	}
	if idt.IssuedAt.After(now.Add(iatSkew)) {
		return nil, fmt.Errorf("%w: issued in the future (iat %s)", ErrToken, idt.IssuedAt.UTC().Format(time.RFC3339))
	}
	if idt.AccessTokenHash != "" {
		if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrToken, err)
		}
	}
	claims := map[string]any{}
	if err := idt.Claims(&claims); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrToken, err)
	}
	// OIDC Core 3.1.3.7: with several audiences azp must be present, and
	// when present it must be this client.
	azp, hasAZP := claims["azp"].(string)
	if (hasAZP && azp != p.cfg.ClientID) || (!hasAZP && len(idt.Audience) > 1) {
		return nil, fmt.Errorf("%w: the token was issued to another party (azp)", ErrToken)
	}

	var userInfoErr error
	if d.hasUserInfo && tok.AccessToken != "" && p.missingClaims(claims) {
		userInfoErr = p.mergeUserInfo(ctx, d, tok, idt.Subject, claims)
		if errors.Is(userInfoErr, ErrToken) {
			return nil, userInfoErr
		}
	}

	id, err := mapClaims(&p.cfg, claims)
	if err != nil {
		if userInfoErr != nil {
			err = fmt.Errorf("%w (userinfo: %s)", err, clean(userInfoErr.Error(), 200))
		}
		return nil, err
	}
	id.Provider = p.cfg.Name
	id.Subject = idt.Subject
	id.IDToken = raw
	if at, ok := claims["auth_time"].(float64); ok && at > 0 && at < 1<<40 {
		id.AuthTime = time.Unix(int64(at), 0)
	}
	if flow.Reauth {
		if id.AuthTime.IsZero() {
			return nil, fmt.Errorf("%w: the ID token has no auth_time", ErrStaleAuth)
		}
		if id.AuthTime.Before(flow.Created.Add(-reauthSkew)) {
			return nil, fmt.Errorf("%w: auth_time %s is before the confirmation started", ErrStaleAuth, id.AuthTime.UTC().Format(time.RFC3339))
		}
	}
	id.Known = p.cfg.KnownUser != nil && p.cfg.KnownUser(id.Username)
	if !id.Known && !p.cfg.AllowUnknownUsers {
		return nil, fmt.Errorf("%w: %q is not in the users file", ErrUnknownUser, id.Username)
	}
	return id, nil
}

// describeExchangeError keeps the provider's error code and description.
func describeExchangeError(err error) string {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		msg := "the provider answered " + clean(re.ErrorCode, 100)
		if re.ErrorCode == "" && re.Response != nil {
			msg = "the provider answered " + re.Response.Status
		}
		if re.ErrorDescription != "" {
			msg += ": " + clean(re.ErrorDescription, 300)
		}
		return msg
	}
	return clean(err.Error(), 300)
}

// missingClaims reports whether the ID token lacks a claim that the
// userinfo endpoint could supply.
func (p *Provider) missingClaims(claims map[string]any) bool {
	for _, k := range []string{p.cfg.UsernameClaim, "email", "name", p.cfg.GroupsClaim} {
		if _, ok := claims[k]; !ok {
			return true
		}
	}
	return false
}

// mergeUserInfo fills claims that the ID token lacks from the userinfo
// endpoint (OIDC Core 5.3). Only profile claims are taken, never amr or acr,
// and `email` comes with its own `email_verified`. A userinfo response for
// another subject is an ErrToken.
func (p *Provider) mergeUserInfo(ctx context.Context, d *discovery, tok *oauth2.Token, subject string, claims map[string]any) error {
	ctx, cancel := context.WithTimeout(ctx, DefaultHTTPTimeout)
	defer cancel()
	ui, err := d.provider.UserInfo(ctx, oauth2.StaticTokenSource(tok))
	if err != nil {
		return err
	}
	if ui.Subject != subject {
		return fmt.Errorf("%w: userinfo is about another subject", ErrToken)
	}
	extra := map[string]any{}
	if err := ui.Claims(&extra); err != nil {
		return err
	}
	for _, k := range []string{p.cfg.UsernameClaim, "name", p.cfg.GroupsClaim} {
		if _, ok := claims[k]; !ok && k != "email" && k != "email_verified" {
			if v, ok := extra[k]; ok {
				claims[k] = v
			}
		}
	}
	if _, ok := claims["email"]; !ok {
		if v, ok := extra["email"]; ok {
			claims["email"] = v
			if ev, ok := extra["email_verified"]; ok {
				claims["email_verified"] = ev
			} else {
				delete(claims, "email_verified")
			}
		}
	}
	return nil
}

// EndSessionURL returns the provider's RP-initiated logout URL (OpenID
// Connect RP-Initiated Logout 1.0) with id_token_hint, client_id and
// post_logout_redirect_uri, when discovery advertised end_session_endpoint.
// It does no network I/O; before a successful discovery it returns false.
func (p *Provider) EndSessionURL(idTokenHint, postLogoutRedirect string) (string, bool) {
	d := p.discovered()
	if d == nil || d.endSession == "" {
		return "", false
	}
	u, err := url.Parse(d.endSession)
	if err != nil {
		return "", false
	}
	q := u.Query()
	if idTokenHint != "" {
		q.Set("id_token_hint", idTokenHint)
	}
	q.Set("client_id", p.cfg.ClientID)
	if postLogoutRedirect != "" {
		q.Set("post_logout_redirect_uri", postLogoutRedirect)
	}
	u.RawQuery = q.Encode()
	return u.String(), true
}

// Origins returns the scheme://host[:port] of the issuer and, once
// discovered, of the authorization endpoint: the places a login form's
// redirect may go (the portal's CSP form-action must allow them).
func (p *Provider) Origins() []string {
	out := []string{origin(p.cfg.Issuer)}
	if d := p.discovered(); d != nil {
		if o := origin(d.provider.Endpoint().AuthURL); o != "" && o != out[0] {
			out = append(out, o)
		}
	}
	return out
}

func origin(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return ""
	}
	return u.Scheme + "://" + u.Host
}
