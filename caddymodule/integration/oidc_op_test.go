package integration

// An in-process OpenID provider for the OIDC tests, adapted from
// internal/oidc/op_test.go (test files cannot be imported): zitadel/oidc's
// op package serves the real discovery, authorize, token, userinfo, JWKS
// and end_session endpoints and signs real tokens; this file supplies only
// its in-memory storage and a minimal login page (a form that checks a
// user name and password), the part every OP leaves to the application.

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"html"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	zoidc "github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/text/language"
)

const (
	opClientID     = "twostep"
	opClientSecret = "twostep client secret at the OP"
	// opRedirectURI is the callback twostep sends for the provider named
	// "example" on the integration site.
	opRedirectURI = site + "/.twostep/oidc/example/callback"
)

// opUser is an account at the test OP.
type opUser struct {
	ID, Username, Password string
	Email                  string
	EmailVerified          any // bool, string, or nil for absent
	Name                   string
	Groups                 any // []string, string, or nil
	AMR                    []string
	ACR                    string
}

// opClient is an OAuth client registered at the test OP.
type opClient struct {
	o            *testOP
	id, secret   string
	redirectURIs []string
}

func (c *opClient) GetID() string          { return c.id }
func (c *opClient) RedirectURIs() []string { return c.redirectURIs }
func (c *opClient) PostLogoutRedirectURIs() []string {
	return []string{site + "/.twostep/login?signed_out=1"}
}
func (c *opClient) ApplicationType() op.ApplicationType { return op.ApplicationTypeWeb }
func (c *opClient) AuthMethod() zoidc.AuthMethod        { return zoidc.AuthMethodBasic }
func (c *opClient) ResponseTypes() []zoidc.ResponseType {
	return []zoidc.ResponseType{zoidc.ResponseTypeCode}
}
func (c *opClient) GrantTypes() []zoidc.GrantType { return []zoidc.GrantType{zoidc.GrantTypeCode} }
func (c *opClient) LoginURL(id string) string     { return "/login?authRequestID=" + id }
func (c *opClient) AccessTokenType() op.AccessTokenType {
	return op.AccessTokenTypeBearer
}
func (c *opClient) IDTokenLifetime() time.Duration { return time.Duration(c.o.idTokenLifetime.Load()) }
func (c *opClient) DevMode() bool                  { return true }
func (c *opClient) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c *opClient) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c *opClient) IsScopeAllowed(scope string) bool     { return scope == "groups" }
func (c *opClient) IDTokenUserinfoClaimsAssertion() bool { return true }
func (c *opClient) ClockSkew() time.Duration             { return 0 }

// opAuthRequest is one authorization request at the test OP.
type opAuthRequest struct {
	id       string
	req      *zoidc.AuthRequest
	userID   string
	amr      []string
	acr      string
	authTime time.Time
	done     bool
}

func (a *opAuthRequest) GetID() string          { return a.id }
func (a *opAuthRequest) GetACR() string         { return a.acr }
func (a *opAuthRequest) GetAMR() []string       { return a.amr }
func (a *opAuthRequest) GetAudience() []string  { return []string{a.req.ClientID} }
func (a *opAuthRequest) GetAuthTime() time.Time { return a.authTime }
func (a *opAuthRequest) GetClientID() string    { return a.req.ClientID }
func (a *opAuthRequest) GetCodeChallenge() *zoidc.CodeChallenge {
	if a.req.CodeChallenge == "" {
		return nil
	}
	return &zoidc.CodeChallenge{Challenge: a.req.CodeChallenge, Method: a.req.CodeChallengeMethod}
}
func (a *opAuthRequest) GetNonce() string                    { return a.req.Nonce }
func (a *opAuthRequest) GetRedirectURI() string              { return a.req.RedirectURI }
func (a *opAuthRequest) GetResponseType() zoidc.ResponseType { return a.req.ResponseType }
func (a *opAuthRequest) GetResponseMode() zoidc.ResponseMode { return a.req.ResponseMode }
func (a *opAuthRequest) GetScopes() []string                 { return a.req.Scopes }
func (a *opAuthRequest) GetState() string                    { return a.req.State }
func (a *opAuthRequest) GetSubject() string                  { return a.userID }
func (a *opAuthRequest) Done() bool                          { return a.done }

type opToken struct {
	subject string
	scopes  []string
	expires time.Time
}

type opSigningKey struct {
	id  string
	key *rsa.PrivateKey
}

func (k *opSigningKey) SignatureAlgorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k *opSigningKey) Key() any                                    { return k.key }
func (k *opSigningKey) ID() string                                  { return k.id }

type opPublicKey struct{ *opSigningKey }

func (k opPublicKey) Algorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k opPublicKey) Use() string                        { return "sig" }
func (k opPublicKey) Key() any                           { return &k.key.PublicKey }

var (
	opKeyOnce sync.Once
	opKey     *rsa.PrivateKey
)

// opStorage implements op.Storage in memory.
type opStorage struct {
	mu       sync.Mutex
	key      *opSigningKey
	users    map[string]*opUser // by username
	clients  map[string]*opClient
	requests map[string]*opAuthRequest
	codes    map[string]string // code → request id
	tokens   map[string]*opToken
	seq      int
}

var _ op.Storage = (*opStorage)(nil)

func newOPStorage() *opStorage {
	opKeyOnce.Do(func() {
		var err error
		if opKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
	})
	return &opStorage{
		key:      &opSigningKey{id: "integration-key-1", key: opKey},
		users:    map[string]*opUser{},
		clients:  map[string]*opClient{},
		requests: map[string]*opAuthRequest{},
		codes:    map[string]string{},
		tokens:   map[string]*opToken{},
	}
}

func (s *opStorage) nextID(prefix string) string {
	s.seq++
	return fmt.Sprintf("%s-%d", prefix, s.seq)
}

func (s *opStorage) userByID(id string) *opUser {
	for _, u := range s.users {
		if u.ID == id {
			return u
		}
	}
	return nil
}

// login is the OP's login step: it checks the password and completes the
// authorization request for that user.
func (s *opStorage) login(requestID, username, password string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	req, ok := s.requests[requestID]
	if !ok {
		return errors.New("unknown auth request")
	}
	u, ok := s.users[username]
	if !ok || u.Password != password {
		return errors.New("wrong username or password")
	}
	req.userID, req.amr, req.acr = u.ID, slices.Clone(u.AMR), u.ACR
	req.authTime = time.Now()
	req.done = true
	return nil
}

func (s *opStorage) CreateAuthRequest(_ context.Context, r *zoidc.AuthRequest, userID string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.clients[r.ClientID]; !ok {
		return nil, errors.New("unknown client")
	}
	req := &opAuthRequest{id: s.nextID("req"), req: r, userID: userID}
	s.requests[req.id] = req
	return req, nil
}

func (s *opStorage) AuthRequestByID(_ context.Context, id string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	req, ok := s.requests[id]
	if !ok {
		return nil, errors.New("auth request not found")
	}
	return req, nil
}

func (s *opStorage) AuthRequestByCode(ctx context.Context, code string) (op.AuthRequest, error) {
	s.mu.Lock()
	id, ok := s.codes[code]
	s.mu.Unlock()
	if !ok {
		return nil, errors.New("code invalid or already used")
	}
	return s.AuthRequestByID(ctx, id)
}

func (s *opStorage) SaveAuthCode(_ context.Context, id, code string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.codes[code] = id
	return nil
}

func (s *opStorage) DeleteAuthRequest(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.requests, id)
	for code, rid := range s.codes {
		if rid == id {
			delete(s.codes, code)
		}
	}
	return nil
}

func (s *opStorage) CreateAccessToken(_ context.Context, r op.TokenRequest) (string, time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := s.nextID("at")
	t := &opToken{subject: r.GetSubject(), scopes: r.GetScopes(), expires: time.Now().Add(5 * time.Minute)}
	s.tokens[id] = t
	return id, t.expires, nil
}

func (s *opStorage) CreateAccessAndRefreshTokens(context.Context, op.TokenRequest, string) (string, string, time.Time, error) {
	return "", "", time.Time{}, errors.New("refresh tokens are not supported here")
}

func (s *opStorage) TokenRequestByRefreshToken(context.Context, string) (op.RefreshTokenRequest, error) {
	return nil, op.ErrInvalidRefreshToken
}

func (s *opStorage) TerminateSession(context.Context, string, string) error { return nil }

func (s *opStorage) RevokeToken(context.Context, string, string, string) *zoidc.Error { return nil }

func (s *opStorage) GetRefreshTokenInfo(context.Context, string, string) (string, string, error) {
	return "", "", op.ErrInvalidRefreshToken
}

func (s *opStorage) SigningKey(context.Context) (op.SigningKey, error) { return s.key, nil }

func (s *opStorage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{jose.RS256}, nil
}

func (s *opStorage) KeySet(context.Context) ([]op.Key, error) {
	return []op.Key{opPublicKey{s.key}}, nil
}

func (s *opStorage) GetClientByClientID(_ context.Context, id string) (op.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.clients[id]
	if !ok {
		return nil, errors.New("client not found")
	}
	return c, nil
}

func (s *opStorage) AuthorizeClientIDSecret(_ context.Context, id, secret string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.clients[id]
	if !ok || c.secret != secret {
		return errors.New("wrong client id or secret")
	}
	return nil
}

func (s *opStorage) SetUserinfoFromScopes(context.Context, *zoidc.UserInfo, string, string, []string) error {
	return nil
}

// SetUserinfoFromRequest fills the ID token's profile claims.
func (s *opStorage) SetUserinfoFromRequest(_ context.Context, ui *zoidc.UserInfo, r op.IDTokenRequest, scopes []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.setUserinfo(ui, r.GetSubject(), scopes)
}

func (s *opStorage) SetUserinfoFromToken(_ context.Context, ui *zoidc.UserInfo, tokenID, subject, _ string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tokens[tokenID]
	if !ok || t.subject != subject || time.Now().After(t.expires) {
		return errors.New("token invalid")
	}
	return s.setUserinfo(ui, subject, t.scopes)
}

func (s *opStorage) setUserinfo(ui *zoidc.UserInfo, subject string, scopes []string) error {
	u := s.userByID(subject)
	if u == nil {
		return errors.New("user not found")
	}
	ui.Subject = u.ID
	if slices.Contains(scopes, zoidc.ScopeEmail) && u.Email != "" {
		ui.AppendClaims("email", u.Email)
		if u.EmailVerified != nil {
			ui.AppendClaims("email_verified", u.EmailVerified)
		}
	}
	if slices.Contains(scopes, zoidc.ScopeProfile) {
		ui.PreferredUsername = u.Username
		ui.Name = u.Name
	}
	if slices.Contains(scopes, "groups") && u.Groups != nil {
		ui.AppendClaims("groups", u.Groups)
	}
	return nil
}

func (s *opStorage) SetIntrospectionFromToken(context.Context, *zoidc.IntrospectionResponse, string, string, string) error {
	return errors.New("introspection not supported")
}

func (s *opStorage) GetPrivateClaimsFromScopes(context.Context, string, string, []string) (map[string]any, error) {
	return nil, nil
}

func (s *opStorage) GetKeyByIDAndClientID(context.Context, string, string) (*jose.JSONWebKey, error) {
	return nil, errors.New("no JWT profile keys")
}

func (s *opStorage) ValidateJWTProfileScopes(context.Context, string, []string) ([]string, error) {
	return nil, errors.New("JWT profile not supported")
}

func (s *opStorage) Health(context.Context) error { return nil }

// testOP is a running provider.
type testOP struct {
	server  *httptest.Server
	issuer  string
	storage *opStorage

	idTokenLifetime atomic.Int64 // a time.Duration; negative issues expired tokens

	mu   sync.Mutex
	hits map[string]int // requests by path
}

// hitsFor returns how many requests reached path.
func (o *testOP) hitsFor(path string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.hits[path]
}

// setIDTokenLifetime changes the lifetime of the ID tokens issued from now.
func (o *testOP) setIDTokenLifetime(d time.Duration) { o.idTokenLifetime.Store(int64(d)) }

// setMFA changes what the OP says about how a user authenticated.
func (o *testOP) setMFA(username string, amr []string, acr string) {
	o.storage.mu.Lock()
	defer o.storage.mu.Unlock()
	u := o.storage.users[username]
	u.AMR, u.ACR = amr, acr
}

// opLoginPage is the OP's own sign-in page: a plain form, as an identity
// provider's login page is, distinct enough from twostep's to tell apart.
const opLoginPage = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>Example ID – sign in</title>
<style>body{font-family:sans-serif;background:#eef2f7;margin:0}main{max-width:22rem;margin:3rem auto;background:#fff;padding:1.5rem;border-radius:8px;box-shadow:0 1px 4px #0002}
label,input,button{display:block;width:100%%;box-sizing:border-box;margin:.4rem 0}input{padding:.5rem}button{padding:.6rem;background:#1f6f43;color:#fff;border:0;border-radius:4px}</style>
</head><body><main>
<h1>Example ID</h1>
<p>Sign in to continue to <strong>%s</strong>.</p>
<form method="post" action="/login">
<input type="hidden" name="id" value="%s">
<label for="op-username">Example ID username</label><input id="op-username" name="username" autocomplete="username">
<label for="op-password">Example ID password</label><input id="op-password" name="password" type="password" autocomplete="current-password">
<button type="submit">Continue</button>
</form></main></body></html>`

// startOP starts the zitadel OP on 127.0.0.1 (a random port) with the
// login page at /login and one confidential client, opClientID, whose
// redirect URI is opRedirectURI.
func startOP(t *testing.T) *testOP {
	t.Helper()
	var handler http.Handler
	o := &testOP{storage: newOPStorage(), hits: map[string]int{}}
	o.setIDTokenLifetime(time.Hour)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.mu.Lock()
		o.hits[r.URL.Path]++
		o.mu.Unlock()
		handler.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	o.server, o.issuer = srv, srv.URL

	cfg := &op.Config{
		CryptoKey:                sha256.Sum256([]byte("integration crypto key")),
		DefaultLogoutRedirectURI: "/logged-out",
		CodeMethodS256:           true,
		AuthMethodPost:           true,
		SupportedUILocales:       []language.Tag{language.English},
	}
	provider, err := op.NewProvider(cfg, o.storage, op.StaticIssuer(o.issuer), op.WithAllowInsecure())
	if err != nil {
		t.Fatalf("op.NewProvider: %v", err)
	}
	callback := op.AuthCallbackURL(provider)
	mux := http.NewServeMux()
	mux.Handle("GET /login", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.URL.Query().Get("authRequestID")
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, opLoginPage, "Integration Corp", html.EscapeString(id))
	}))
	mux.Handle("POST /login", op.NewIssuerInterceptor(provider.IssuerFromRequest).HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.FormValue("id")
		if err := o.storage.login(id, r.FormValue("username"), r.FormValue("password")); err != nil {
			http.Error(w, err.Error(), http.StatusForbidden)
			return
		}
		http.Redirect(w, r, callback(r.Context(), id), http.StatusFound)
	}))
	mux.Handle("GET /logged-out", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "signed out of Example ID")
	}))
	mux.Handle("/", provider)
	handler = mux

	o.storage.mu.Lock()
	o.storage.clients[opClientID] = &opClient{o: o, id: opClientID, secret: opClientSecret, redirectURIs: []string{opRedirectURI}}
	o.storage.mu.Unlock()
	return o
}

// addUser creates an account at the OP.
func (o *testOP) addUser(u *opUser) {
	o.storage.mu.Lock()
	defer o.storage.mu.Unlock()
	if u.ID == "" {
		u.ID = "sub-" + u.Username
	}
	o.storage.users[u.Username] = u
}

// oidcBlock is the `oidc example { … }` block of the twostep global
// options for this OP (or any issuer), with extra lines.
func oidcBlock(issuer string, extra ...string) string {
	b := fmt.Sprintf(`oidc example {
			issuer %s
			client_id %s
			client_secret "%s"
			scopes openid email profile groups
			label "Sign in with Example"
`, issuer, opClientID, opClientSecret)
	for _, line := range extra {
		b += "\t\t\t" + line + "\n"
	}
	return b + "\t\t}\n"
}
