package oidc

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"

	"github.com/twostep-auth/twostep/internal/oidc/oidctest"
)

const testSecret = "s3cret-client-secret"

// fixture is a running OP with clients and users, and a relying party
// callback server.
type fixture struct {
	op          *oidctest.Server
	redirectURI string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	o := oidctest.NewServer(t, oidctest.Options{})
	rp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "callback reached")
	}))
	t.Cleanup(rp.Close)
	f := &fixture{op: o, redirectURI: rp.URL + "/callback"}

	for _, c := range []oidctest.Client{
		{ID: "twostep"},
		{ID: "short", IDTokenLifetime: time.Minute},
		{ID: "wrong-aud", Audience: []string{"someone-else"}},
		{ID: "userinfo", ClaimsFromUserinfoOnly: true},
	} {
		c.Secret = testSecret
		c.RedirectURIs = []string{f.redirectURI}
		c.PostLogoutRedirectURIs = []string{"http://127.0.0.1/logged-out"}
		c.AllowedScopes = []string{"groups"}
		o.AddClient(c)
	}
	for _, u := range []oidctest.User{
		{Username: "Alice", Email: "alice@example.com", EmailVerified: true, Name: "Alice Liddell", Groups: []string{"admins", "staff"}, AMR: []string{"pwd"}},
		{Username: "bob", Email: "bob@example.com", EmailVerified: false, Name: "Bob", Groups: "staff", AMR: []string{"pwd", "otp"}},
		{Username: "carol", NoPreferredUsername: true, Email: "Carol@Example.com", EmailVerified: true, AMR: []string{"pwd"}},
		{Username: "dave", NoPreferredUsername: true, Email: "dave@example.com", EmailVerified: false},
		{Username: "erin", Email: "erin@example.com", EmailVerified: "true", AMR: []string{"pwd"}, ACR: "urn:example:mfa"},
		{Username: "eve", NoPreferredUsername: true, Email: "a@evil.com@example.com", EmailVerified: true},
		{Username: "john smith", Email: "john@example.com", EmailVerified: true},
		{Username: "sso", Email: "sso@example.com", EmailVerified: true, AuthTime: time.Now().Add(-time.Hour)},
		{Username: "noauthtime", Email: "nat@example.com", EmailVerified: true, NoAuthTime: true},
	} {
		u.Password = "pw-" + strings.ReplaceAll(u.Username, " ", "")
		o.AddUser(u)
	}
	return f
}

// known is the users file of the tests.
var known = map[string]bool{"alice": true, "bob": true, "carol@example.com": true, "erin": true, "alice@example.com": true}

func (f *fixture) provider(t *testing.T, clientID string, mutate ...func(*Config)) *Provider {
	t.Helper()
	cfg := Config{
		Name:         "example",
		Issuer:       f.op.Issuer,
		ClientID:     clientID,
		ClientSecret: testSecret,
		Scopes:       []string{"openid", "email", "profile", "groups"},
		KnownUser:    func(u string) bool { return known[u] },
	}
	for _, m := range mutate {
		m(&cfg)
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p
}

// browse plays the browser: it follows the authorization URL to the OP's
// login page, posts the user's credentials there, follows the redirects
// back to the relying party's callback and returns the callback's query.
func (f *fixture) browse(t *testing.T, authURL, username string) url.Values {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	resp, err := client.Get(authURL)
	if err != nil {
		t.Fatalf("GET authorization URL: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/login" {
		t.Fatalf("authorization request ended at %s (%s): %s", resp.Request.URL, resp.Status, body)
	}
	id := resp.Request.URL.Query().Get("authRequestID")
	if id == "" || !strings.Contains(string(body), `name="id"`) {
		t.Fatalf("no login form: %s", body)
	}
	resp, err = client.PostForm(f.op.Issuer+"/login", url.Values{"id": {id}, "username": {username}, "password": {f.op.Password(username)}})
	if err != nil {
		t.Fatalf("POST login: %v", err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Request.URL.String() == "" || !strings.HasPrefix(resp.Request.URL.String(), f.redirectURI) {
		t.Fatalf("login ended at %s (%s): %s", resp.Request.URL, resp.Status, body)
	}
	return resp.Request.URL.Query()
}

// signIn runs Start, the browser part and returns the flow and callback query.
func (f *fixture) signIn(t *testing.T, p *Provider, username string) (*Flow, url.Values) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	authURL, flow, err := p.Start(ctx, f.redirectURI, "/app/")
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	return flow, f.browse(t, authURL, username)
}

func finish(t *testing.T, p *Provider, flow *Flow, q url.Values, now time.Time) (*Identity, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return p.Finish(ctx, flow, q, now)
}

func TestHappyPath(t *testing.T) {
	f := newFixture(t)
	p := f.provider(t, "twostep")
	if ok, err := p.Ready(); ok || err != nil {
		t.Fatalf("Ready before discovery = %v, %v", ok, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	authURL, flow, err := p.Start(ctx, f.redirectURI, "/app/?x=1")
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if ok, err := p.Ready(); !ok || err != nil {
		t.Fatalf("Ready after discovery = %v, %v", ok, err)
	}
	au, _ := url.Parse(authURL)
	q := au.Query()
	for k, want := range map[string]string{
		"response_type": "code", "client_id": "twostep", "redirect_uri": f.redirectURI,
		"state": flow.State, "nonce": flow.Nonce, "code_challenge_method": "S256",
		"scope": "openid email profile groups",
	} {
		if got := q.Get(k); got != want {
			t.Errorf("authorization URL %s = %q, want %q", k, got, want)
		}
	}
	if q.Get("code_challenge") == "" || q.Get("code_challenge") == flow.Verifier {
		t.Errorf("code_challenge = %q", q.Get("code_challenge"))
	}
	for name, v := range map[string]string{"state": flow.State, "nonce": flow.Nonce} {
		if len(v) != 43 { // 32 bytes, base64url without padding
			t.Errorf("%s %q is not 32 random bytes", name, v)
		}
	}
	if flow.State == flow.Nonce || flow.Provider != "example" || flow.ReturnURL != "/app/?x=1" || flow.RedirectURI != f.redirectURI || time.Since(flow.Created) > time.Minute {
		t.Errorf("flow = %+v", flow)
	}

	cb := f.browse(t, authURL, "Alice")
	id, err := finish(t, p, flow, cb, time.Time{})
	if err != nil {
		t.Fatalf("Finish: %v", err)
	}
	want := Identity{Provider: "example", Subject: "sub-Alice", Username: "alice", Email: "alice@example.com", EmailVerified: true,
		Name: "Alice Liddell", Groups: []string{"admins", "staff"}, AMR: []string{"pwd"}, Known: true}
	if id.Provider != want.Provider || id.Subject != want.Subject || id.Username != want.Username || id.Email != want.Email ||
		id.EmailVerified != want.EmailVerified || id.Name != want.Name || !slices.Equal(id.Groups, want.Groups) ||
		!slices.Equal(id.AMR, want.AMR) || id.MFA || !id.Known {
		t.Errorf("identity = %+v\nwant       %+v", *id, want)
	}
	if strings.Count(id.IDToken, ".") != 2 {
		t.Errorf("IDToken is not a JWS: %q", id.IDToken)
	}
	if strings.Contains(id.String(), id.IDToken) {
		t.Errorf("String() leaks the ID token")
	}
}

func TestWrongState(t *testing.T) {
	f := newFixture(t)
	p := f.provider(t, "twostep")
	flow, cb := f.signIn(t, p, "Alice")

	for name, q := range map[string]url.Values{
		"mismatched": {"code": cb["code"], "state": {flow.State[:42] + "x"}},
		"missing":    {"code": cb["code"]},
		"empty":      {"code": cb["code"], "state": {""}},
	} {
		if _, err := finish(t, p, flow, q, time.Time{}); !errors.Is(err, ErrState) {
			t.Errorf("%s state: err = %v, want ErrState", name, err)
		}
	}
	if _, err := finish(t, p, nil, cb, time.Time{}); !errors.Is(err, ErrState) {
		t.Errorf("nil flow: err = %v, want ErrState", err)
	}
	other := *flow
	other.Provider = "another"
	if _, err := finish(t, p, &other, cb, time.Time{}); !errors.Is(err, ErrState) {
		t.Errorf("flow of another provider: err = %v, want ErrState", err)
	}
	empty := *flow
	empty.State = ""
	if _, err := finish(t, p, &empty, url.Values{"code": cb["code"], "state": {""}}, time.Time{}); !errors.Is(err, ErrState) {
		t.Errorf("empty stored state: err = %v, want ErrState", err)
	}
	iss := url.Values{"code": cb["code"], "state": cb["state"], "iss": {"https://evil.example"}}
	if _, err := finish(t, p, flow, iss, time.Time{}); !errors.Is(err, ErrState) {
		t.Errorf("foreign iss: err = %v, want ErrState", err)
	}
	// None of these reached the token endpoint: the code is still good.
	if _, err := finish(t, p, flow, cb, time.Time{}); err != nil {
		t.Errorf("the right state after refusals: %v", err)
	}
}

func TestReplayedCode(t *testing.T) {
	f := newFixture(t)
	p := f.provider(t, "twostep")
	flow, cb := f.signIn(t, p, "Alice")
	if _, err := finish(t, p, flow, cb, time.Time{}); err != nil {
		t.Fatalf("first Finish: %v", err)
	}
	_, err := finish(t, p, flow, cb, time.Time{})
	if !errors.Is(err, ErrExchange) {
		t.Fatalf("replayed code: err = %v, want ErrExchange", err)
	}
	if !strings.Contains(err.Error(), "invalid_grant") {
		t.Errorf("the provider's error code is missing: %v", err)
	}
	if strings.Contains(err.Error(), cb.Get("code")) {
		t.Errorf("the error shows the code: %v", err)
	}
}

func TestPKCEVerifierChecked(t *testing.T) {
	f := newFixture(t)
	p := f.provider(t, "twostep")
	flow, cb := f.signIn(t, p, "Alice")
	bad := *flow
	bad.Verifier = strings.Repeat("A", 43)
	if _, err := finish(t, p, &bad, cb, time.Time{}); !errors.Is(err, ErrExchange) {
		t.Fatalf("wrong PKCE verifier: err = %v, want ErrExchange", err)
	}
}

func TestWrongNonce(t *testing.T) {
	f := newFixture(t)
	p := f.provider(t, "twostep")
	flow, cb := f.signIn(t, p, "Alice")
	tampered := *flow
	tampered.Nonce, _ = randomToken()
	_, err := finish(t, p, &tampered, cb, time.Time{})
	if !errors.Is(err, ErrToken) || !strings.Contains(err.Error(), "nonce") {
		t.Fatalf("wrong nonce: err = %v, want ErrToken (nonce)", err)
	}
}

func TestExpiredToken(t *testing.T) {
	f := newFixture(t)
	p := f.provider(t, "short") // the OP issues ID tokens valid for 1 minute
	flow, cb := f.signIn(t, p, "Alice")
	_, err := finish(t, p, flow, cb, time.Now().Add(5*time.Minute))
	var expired *gooidc.TokenExpiredError
	if !errors.Is(err, ErrToken) || !errors.As(err, &expired) {
		t.Fatalf("expired token: err = %v, want ErrToken wrapping TokenExpiredError", err)
	}
}

func TestWrongAudience(t *testing.T) {
	f := newFixture(t)
	issuing := f.provider(t, "twostep")
	flow, cb := f.signIn(t, issuing, "Alice")
	// A second provider configured with another client id receives that
	// callback; its token request reaches the OP with the first client's
	// credentials (a token issued to another client), so the OP answers with
	// real tokens whose audience is "twostep".
	other := f.provider(t, "other", func(c *Config) {
		c.HTTPClient = &http.Client{Timeout: 10 * time.Second, Transport: credentialSwap{id: "twostep", secret: testSecret}}
	})
	_, err := finish(t, other, flow, cb, time.Time{})
	if !errors.Is(err, ErrToken) || !strings.Contains(err.Error(), "audience") {
		t.Fatalf("wrong audience: err = %v, want ErrToken (audience)", err)
	}

	// Several audiences that include this client, with azp naming it, are fine.
	p := f.provider(t, "wrong-aud") // the OP adds "someone-else" to aud
	flow, cb = f.signIn(t, p, "Alice")
	if _, err := finish(t, p, flow, cb, time.Time{}); err != nil {
		t.Fatalf("aud [someone-else wrong-aud], azp wrong-aud: %v", err)
	}
}

// credentialSwap replaces the client credentials of token requests.
type credentialSwap struct{ id, secret string }

func (c credentialSwap) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/token") {
		r = r.Clone(r.Context())
		r.SetBasicAuth(url.QueryEscape(c.id), url.QueryEscape(c.secret))
	}
	return http.DefaultTransport.RoundTrip(r)
}

func TestBadSignature(t *testing.T) {
	f := newFixture(t)
	f.op.PublishWrongKey(true) // the JWKS no longer holds the key that signs
	p := f.provider(t, "twostep")
	flow, cb := f.signIn(t, p, "Alice")
	_, err := finish(t, p, flow, cb, time.Time{})
	if !errors.Is(err, ErrToken) || !strings.Contains(err.Error(), "signature") {
		t.Fatalf("token not signed by a JWKS key: err = %v, want ErrToken (signature)", err)
	}
	if f.op.Hits("/keys") == 0 {
		t.Error("the JWKS was never fetched")
	}
}

func TestWrongClientSecret(t *testing.T) {
	f := newFixture(t)
	p := f.provider(t, "twostep", func(c *Config) { c.ClientSecret = "wrong" })
	flow, cb := f.signIn(t, p, "Alice")
	if _, err := finish(t, p, flow, cb, time.Time{}); !errors.Is(err, ErrExchange) {
		t.Fatalf("wrong client secret: err = %v, want ErrExchange", err)
	}
}

func TestFlowExpired(t *testing.T) {
	f := newFixture(t)
	p := f.provider(t, "twostep")
	flow, cb := f.signIn(t, p, "Alice")
	if _, err := finish(t, p, flow, cb, flow.Created.Add(FlowLifetime+time.Second)); !errors.Is(err, ErrFlowExpired) {
		t.Fatalf("old flow: err = %v, want ErrFlowExpired", err)
	}
}

func TestProviderError(t *testing.T) {
	f := newFixture(t)
	p := f.provider(t, "twostep")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, flow, err := p.Start(ctx, f.redirectURI, "/")
	if err != nil {
		t.Fatal(err)
	}
	q := url.Values{"state": {flow.State}, "error": {"access_denied"}, "error_description": {"the user said no\r\nX-Injected: 1"}}
	_, err = finish(t, p, flow, q, time.Time{})
	if !errors.Is(err, ErrProviderError) || !strings.Contains(err.Error(), "access_denied: the user said no") || strings.ContainsAny(err.Error(), "\r\n") {
		t.Fatalf("err = %q, want ErrProviderError with the cleaned message", err)
	}
	if _, err := finish(t, p, flow, url.Values{"state": {flow.State}}, time.Time{}); !errors.Is(err, ErrProviderError) || !strings.Contains(err.Error(), "no code") {
		t.Errorf("no code: err = %v, want ErrProviderError saying there is no code", err)
	}
}

func TestUnknownUser(t *testing.T) {
	f := newFixture(t)
	p := f.provider(t, "twostep", func(c *Config) { c.KnownUser = func(string) bool { return false } })
	flow, cb := f.signIn(t, p, "Alice")
	if _, err := finish(t, p, flow, cb, time.Time{}); !errors.Is(err, ErrUnknownUser) {
		t.Fatalf("unknown user: err = %v, want ErrUnknownUser", err)
	}

	p = f.provider(t, "twostep", func(c *Config) { c.KnownUser = nil })
	flow, cb = f.signIn(t, p, "Alice")
	if _, err := finish(t, p, flow, cb, time.Time{}); !errors.Is(err, ErrUnknownUser) {
		t.Fatalf("no KnownUser hook: err = %v, want ErrUnknownUser (fail closed)", err)
	}

	p = f.provider(t, "twostep", func(c *Config) { c.KnownUser = nil; c.AllowUnknownUsers = true })
	flow, cb = f.signIn(t, p, "Alice")
	id, err := finish(t, p, flow, cb, time.Time{})
	if err != nil || id.Known || id.Username != "alice" {
		t.Fatalf("allow_unknown_users: %+v, %v", id, err)
	}
}

func TestTrustIdPMFA(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		user  string
		trust bool
		acrs  []string
		mfa   bool
	}{
		{"bob", true, nil, true}, // amr pwd+otp
		{"bob", false, nil, false},
		{"Alice", true, nil, false}, // amr pwd only
		{"erin", true, []string{"urn:example:mfa"}, true},
		{"erin", true, nil, false},
		{"erin", false, []string{"urn:example:mfa"}, false},
	} {
		p := f.provider(t, "twostep", func(c *Config) { c.TrustIdPMFA = tc.trust; c.ACRs = tc.acrs })
		flow, cb := f.signIn(t, p, tc.user)
		id, err := finish(t, p, flow, cb, time.Time{})
		if err != nil {
			t.Fatalf("%s trust=%v acrs=%v: %v", tc.user, tc.trust, tc.acrs, err)
		}
		if id.MFA != tc.mfa {
			t.Errorf("%s trust=%v acrs=%v: MFA = %v (amr %v, acr %q), want %v", tc.user, tc.trust, tc.acrs, id.MFA, id.AMR, id.ACR, tc.mfa)
		}
	}
}

func TestUsernameAndEmail(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		user, claim string
		want        string
		err         error
		email       string
	}{
		{"carol", "", "carol@example.com", nil, "Carol@Example.com"},      // no preferred_username: verified email
		{"dave", "", "", ErrNoUsername, ""},                               // email not verified
		{"eve", "", "", ErrNoUsername, ""},                                // a@evil.com@example.com
		{"bob", "", "bob", nil, ""},                                       // unverified email is not reported
		{"erin", "", "erin", nil, "erin@example.com"},                     // email_verified "true"
		{"Alice", "email", "alice@example.com", nil, "alice@example.com"}, // email as the configured claim
		{"bob", "email", "", ErrNoUsername, ""},                           // configured email claim, unverified
		{"carol", "nickname", "", ErrNoUsername, ""},                      // no fallback for a custom claim
		{"john smith", "", "", ErrNoUsername, ""},                         // whitespace
	} {
		p := f.provider(t, "twostep", func(c *Config) { c.UsernameClaim = tc.claim; c.AllowUnknownUsers = true })
		flow, cb := f.signIn(t, p, tc.user)
		id, err := finish(t, p, flow, cb, time.Time{})
		if tc.err != nil {
			if !errors.Is(err, tc.err) {
				t.Errorf("%s claim %q: err = %v, want %v", tc.user, tc.claim, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s claim %q: %v", tc.user, tc.claim, err)
			continue
		}
		if id.Username != tc.want || id.Email != tc.email || id.EmailVerified != (tc.email != "") {
			t.Errorf("%s claim %q: username %q email %q verified %v, want %q %q", tc.user, tc.claim, id.Username, id.Email, id.EmailVerified, tc.want, tc.email)
		}
	}
}

func TestGroups(t *testing.T) {
	f := newFixture(t)
	p := f.provider(t, "twostep")
	flow, cb := f.signIn(t, p, "bob") // groups is a single string
	id, err := finish(t, p, flow, cb, time.Time{})
	if err != nil || !slices.Equal(id.Groups, []string{"staff"}) {
		t.Fatalf("single-string groups: %v, %v", id, err)
	}
	p = f.provider(t, "twostep", func(c *Config) { c.GroupsClaim = "roles" })
	flow, cb = f.signIn(t, p, "Alice")
	if id, err = finish(t, p, flow, cb, time.Time{}); err != nil || id.Groups != nil {
		t.Fatalf("groups from an absent claim: %v, %v", id, err)
	}
	p = f.provider(t, "twostep", func(c *Config) { c.Scopes = nil }) // defaults: no groups scope
	flow, cb = f.signIn(t, p, "Alice")
	if id, err = finish(t, p, flow, cb, time.Time{}); err != nil || id.Groups != nil || id.Email != "alice@example.com" {
		t.Fatalf("default scopes: %v, %v", id, err)
	}
}

func TestClaimsFromUserinfo(t *testing.T) {
	f := newFixture(t)
	p := f.provider(t, "userinfo") // the OP keeps profile claims out of the ID token
	flow, cb := f.signIn(t, p, "Alice")
	id, err := finish(t, p, flow, cb, time.Time{})
	if err != nil {
		t.Fatalf("Finish: %v", err)
	}
	if id.Username != "alice" || id.Email != "alice@example.com" || id.Name != "Alice Liddell" || !slices.Equal(id.Groups, []string{"admins", "staff"}) {
		t.Errorf("identity from userinfo = %+v", id)
	}
	if f.op.Hits("/userinfo") != 1 {
		t.Errorf("userinfo requests = %d, want 1", f.op.Hits("/userinfo"))
	}
	// With the claims in the ID token there is no userinfo request.
	p = f.provider(t, "twostep")
	flow, cb = f.signIn(t, p, "Alice")
	if _, err := finish(t, p, flow, cb, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if f.op.Hits("/userinfo") != 1 {
		t.Errorf("userinfo requests = %d, want still 1", f.op.Hits("/userinfo"))
	}
}

func TestEndSessionURL(t *testing.T) {
	f := newFixture(t)
	p := f.provider(t, "twostep")
	if _, ok := p.EndSessionURL("hint", "http://127.0.0.1/logged-out"); ok {
		t.Fatal("EndSessionURL before discovery")
	}
	flow, cb := f.signIn(t, p, "Alice")
	id, err := finish(t, p, flow, cb, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	end, ok := p.EndSessionURL(id.IDToken, "http://127.0.0.1/logged-out")
	if !ok {
		t.Fatal("no end_session_endpoint")
	}
	u, _ := url.Parse(end)
	if q := u.Query(); q.Get("id_token_hint") != id.IDToken || q.Get("client_id") != "twostep" || q.Get("post_logout_redirect_uri") != "http://127.0.0.1/logged-out" {
		t.Errorf("end session URL = %s", end)
	}
	// The real OP accepts it and sends the browser to the post-logout URL.
	client := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Get(end)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc, "http://127.0.0.1/logged-out") {
		t.Errorf("end session answered %s, Location %q", resp.Status, loc)
	}
}

// closedAddr returns a loopback address where nothing listens.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestUnreachableProvider(t *testing.T) {
	p, err := New(Config{Name: "example", Issuer: "http://" + closedAddr(t), ClientID: "c", ClientSecret: "s", KnownUser: func(string) bool { return true }})
	if err != nil {
		t.Fatalf("New with an unreachable issuer: %v", err)
	}
	if ok, err := p.Ready(); ok || err != nil {
		t.Fatalf("Ready before any attempt = %v, %v", ok, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = p.Discover(ctx)
	if !errors.Is(err, ErrUnavailable) || !strings.HasPrefix(err.Error(), "example is unreachable: ") {
		t.Fatalf("Discover = %v", err)
	}
	ok, rerr := p.Ready()
	if ok || rerr == nil || rerr.Error() != err.Error() {
		t.Fatalf("Ready = %v, %v; want false, %v", ok, rerr, err)
	}
	if _, _, err := p.Start(ctx, "https://app.example.com/cb", "/"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Start = %v, want ErrUnavailable", err)
	}
	flow := &Flow{Provider: "example", State: "s", Created: time.Now()}
	if _, err := p.Finish(ctx, flow, url.Values{"state": {"s"}, "code": {"c"}}, time.Time{}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Finish = %v, want ErrUnavailable", err)
	}
	if _, ok := p.EndSessionURL("", ""); ok {
		t.Fatal("EndSessionURL without discovery")
	}
}

func TestDiscoveryRetryAndNoIOInNew(t *testing.T) {
	var hits atomic.Int32
	var healthy atomic.Bool
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if !healthy.Load() || r.URL.Path != "/.well-known/openid-configuration" {
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"issuer":"`+srv.URL+`","authorization_endpoint":"`+srv.URL+`/authorize",`+
			`"token_endpoint":"`+srv.URL+`/token","jwks_uri":"`+srv.URL+`/keys"}`)
	}))
	defer srv.Close()

	p, err := New(Config{Name: "example", Issuer: srv.URL, ClientID: "c"})
	if err != nil {
		t.Fatal(err)
	}
	if hits.Load() != 0 {
		t.Fatalf("New made %d requests", hits.Load())
	}
	clock := time.Now()
	var clockMu sync.Mutex
	p.now = func() time.Time { clockMu.Lock(); defer clockMu.Unlock(); return clock }
	advance := func(d time.Duration) { clockMu.Lock(); clock = clock.Add(d); clockMu.Unlock() }

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = p.Discover(ctx)
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "503") || !strings.HasPrefix(err.Error(), "example is unreachable") {
		t.Fatalf("Discover against a failing provider = %v", err)
	}
	healthy.Store(true)
	advance(RetryInterval / 2)
	if err2 := p.Discover(ctx); err2 == nil || err2.Error() != err.Error() || hits.Load() != 1 {
		t.Fatalf("retry within %v: err %v, %d requests; want the cached error and 1 request", RetryInterval, err2, hits.Load())
	}
	if _, _, err2 := p.Start(ctx, "https://app.example.com/cb", "/"); err2 == nil || hits.Load() != 1 {
		t.Fatalf("Start within %v: err %v, %d requests", RetryInterval, err2, hits.Load())
	}
	advance(RetryInterval)
	if err := p.Discover(ctx); err != nil {
		t.Fatalf("retry after %v: %v", RetryInterval, err)
	}
	if ok, err := p.Ready(); !ok || err != nil {
		t.Fatalf("Ready = %v, %v", ok, err)
	}
	if _, ok := p.EndSessionURL("", ""); ok {
		t.Fatal("EndSessionURL without end_session_endpoint in discovery")
	}
	n := hits.Load()
	for range 3 {
		if err := p.Discover(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := p.Start(ctx, "https://app.example.com/cb", "/"); err != nil {
		t.Fatal(err)
	}
	if hits.Load() != n {
		t.Fatalf("Discover after success made %d more requests", hits.Load()-n)
	}
}

func TestDiscoverConcurrent(t *testing.T) {
	f := newFixture(t)
	p := f.provider(t, "twostep")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() { errs[i] = p.Discover(ctx) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := f.op.Hits("/.well-known/openid-configuration"); n != 1 {
		t.Fatalf("%d discovery requests for 8 concurrent callers, want 1", n)
	}
}

func TestDiscoverCancelledIsNotRemembered(t *testing.T) {
	f := newFixture(t)
	p := f.provider(t, "twostep")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.Discover(ctx); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Discover with a cancelled context = %v", err)
	}
	if _, err := p.Ready(); err != nil {
		t.Fatalf("a cancelled attempt was remembered: %v", err)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	if err := p.Discover(ctx2); err != nil {
		t.Fatalf("Discover right after a cancelled attempt: %v", err)
	}
}

func TestIssuerMismatch(t *testing.T) {
	o := oidctest.NewServer(t, oidctest.Options{})
	// The same OP under another name for the loopback host.
	issuer := strings.Replace(o.Issuer, "127.0.0.1", "localhost", 1)
	p, err := New(Config{Name: "example", Issuer: issuer, ClientID: "c"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Discover(ctx); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "misconfigured") {
		t.Fatalf("Discover = %v, want an issuer mismatch", err)
	}
}

// StartReauth asks the provider to ask again (prompt=login, max_age=0),
// and Finish accepts only an answer whose auth_time shows that it did.
func TestReauth(t *testing.T) {
	f := newFixture(t)
	p := f.provider(t, "twostep", func(c *Config) { c.AllowUnknownUsers = true })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	reauth := func(user string) (*Identity, error) {
		t.Helper()
		authURL, flow, err := p.StartReauth(ctx, f.redirectURI, "/.twostep/settings")
		if err != nil {
			t.Fatal(err)
		}
		q, _ := url.Parse(authURL)
		if q.Query().Get("prompt") != "login" || q.Query().Get("max_age") != "0" || !flow.Reauth {
			t.Fatalf("reauth authorization URL %s, flow %+v", authURL, flow)
		}
		return finish(t, p, flow, f.browse(t, authURL, user), time.Time{})
	}
	id, err := reauth("Alice")
	if err != nil {
		t.Fatalf("a fresh re-authentication: %v", err)
	}
	if time.Since(id.AuthTime) > time.Minute || id.Username != "alice" {
		t.Fatalf("identity %+v", id)
	}
	for _, user := range []string{"sso", "noauthtime"} {
		if _, err := reauth(user); !errors.Is(err, ErrStaleAuth) {
			t.Errorf("re-authentication of %s (provider answered from its own session / without auth_time): %v, want ErrStaleAuth", user, err)
		}
	}
	// An ordinary sign-in does not ask for either, and still reports auth_time.
	authURL, flow, err := p.Start(ctx, f.redirectURI, "/")
	if err != nil {
		t.Fatal(err)
	}
	if q, _ := url.Parse(authURL); q.Query().Has("prompt") || q.Query().Has("max_age") || flow.Reauth {
		t.Fatalf("a sign-in asked for re-authentication: %s", authURL)
	}
	id, err = finish(t, p, flow, f.browse(t, authURL, "sso"), time.Time{})
	if err != nil {
		t.Fatalf("an ordinary sign-in with an old auth_time: %v", err)
	}
	if time.Since(id.AuthTime) < 50*time.Minute {
		t.Fatalf("AuthTime %v, want the provider's (an hour ago)", id.AuthTime)
	}
}
