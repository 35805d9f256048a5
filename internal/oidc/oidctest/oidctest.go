// Package oidctest runs an in-process OpenID provider for tests, as
// net/http/httptest runs an HTTP server. Only tests import it; no product
// code does.
//
// The provider is github.com/zitadel/oidc/v3's op package: it serves the
// real discovery, authorize, token, userinfo, JWKS and end_session
// endpoints and signs real RS256 tokens. This package supplies only the
// part every OP leaves to the application: in-memory storage for clients,
// users, authorization requests and tokens, and a minimal login page (a
// form that checks a username and password).
//
// NewServer starts the provider on 127.0.0.1 at a random port; its issuer
// URL is Server.Issuer, and the server is closed when the test ends. The
// endpoints are the op package's defaults (/authorize, /oauth/token,
// /userinfo, /keys, /end_session, /.well-known/openid-configuration), plus:
//
//	GET  /login?authRequestID=ID  the login page: a form with the hidden
//	                              field id and the fields username
//	                              (#op-username) and password (#op-password)
//	POST /login                   checks the user's password and redirects
//	                              to the op package's callback (302), or
//	                              answers 403 with the reason
//	GET  /logged-out              the default page after end_session
package oidctest

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"html/template"
	"net"
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

// Defaults of Options and Client.
const (
	DefaultName                = "Example ID"
	DefaultIDTokenLifetime     = time.Hour
	DefaultAccessTokenLifetime = 5 * time.Minute
)

// Options configure a Server. The zero value is a provider with no clients
// and no users.
type Options struct {
	// Clients are registered at the start; AddClient registers more.
	Clients []Client
	// Users are created at the start; AddUser creates more.
	Users []User

	// IDTokenLifetime is the lifetime of the ID tokens issued to clients
	// that do not set their own; zero means DefaultIDTokenLifetime.
	IDTokenLifetime time.Duration
	// AccessTokenLifetime is the lifetime of access tokens (which the
	// userinfo endpoint checks); zero means DefaultAccessTokenLifetime.
	AccessTokenLifetime time.Duration

	// Name is the provider's name on its pages ("<Name> – sign in",
	// "<Name> username", …); empty means DefaultName.
	Name string
	// SiteName, if set, is the relying party the login page says the user
	// is signing in to ("Sign in to continue to <SiteName>.").
	SiteName string
}

// Client is an OAuth client registered at the provider: a confidential web
// client using the authorization code flow (PKCE S256 allowed), with
// client_secret_basic (or client_secret_post) authentication.
type Client struct {
	ID, Secret             string
	RedirectURIs           []string
	PostLogoutRedirectURIs []string

	// IDTokenLifetime is the lifetime of this client's ID tokens; zero
	// means Options.IDTokenLifetime. A negative lifetime issues tokens
	// that have already expired. SetIDTokenLifetime changes it later.
	IDTokenLifetime time.Duration
	// ClaimsFromUserinfoOnly leaves the profile, email and groups claims
	// out of the ID token: the relying party must ask the userinfo
	// endpoint for them.
	ClaimsFromUserinfoOnly bool
	// Audience, if set, replaces the ID token's audience (normally the
	// client ID; the op package adds the client ID if it is missing).
	Audience []string
	// AllowedScopes are the non-standard scopes the client may request,
	// such as "groups"; others are dropped from its requests.
	AllowedScopes []string
}

// User is an account at the provider. The claims below are released for
// the scopes "profile" (preferred_username, name), "email" (email,
// email_verified) and "groups" (groups); amr and acr are in the ID token.
type User struct {
	// Subject is the sub claim; empty means "sub-" + Username.
	Subject string
	// Username and Password are what the login page checks; Username is
	// also the preferred_username claim unless NoPreferredUsername.
	Username, Password  string
	NoPreferredUsername bool

	Email         string // absent if empty
	EmailVerified any    // bool, string (a misbehaving OP), or nil for absent
	Name          string
	Groups        any // []string, string, or nil for absent
	AMR           []string
	ACR           string
	// AuthTime, if set, is the auth_time every sign-in reports (a provider
	// that answers from an old session of its own); NoAuthTime leaves the
	// claim out.
	AuthTime   time.Time
	NoAuthTime bool
}

// Server is a running provider.
type Server struct {
	// Issuer is the provider's issuer URL, http://127.0.0.1:<port>, with
	// no trailing slash.
	Issuer string

	opts    Options
	storage *storage

	hitsMu sync.Mutex
	hits   map[string]int // requests by path
}

// NewServer starts a provider on 127.0.0.1 and registers opts' clients and
// users; it is closed when t's test ends.
func NewServer(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.Name == "" {
		opts.Name = DefaultName
	}
	if opts.IDTokenLifetime == 0 {
		opts.IDTokenLifetime = DefaultIDTokenLifetime
	}
	if opts.AccessTokenLifetime == 0 {
		opts.AccessTokenLifetime = DefaultAccessTokenLifetime
	}
	s := &Server{opts: opts, storage: newStorage(opts.AccessTokenLifetime), hits: map[string]int{}}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("oidctest: listen on 127.0.0.1: %v", err)
	}
	var handler http.Handler
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hitsMu.Lock()
		s.hits[r.URL.Path]++
		s.hitsMu.Unlock()
		handler.ServeHTTP(w, r)
	}))
	srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	s.Issuer = srv.URL

	cfg := &op.Config{
		CryptoKey:                sha256.Sum256([]byte("oidctest crypto key")),
		DefaultLogoutRedirectURI: "/logged-out",
		CodeMethodS256:           true,
		AuthMethodPost:           true,
		SupportedUILocales:       []language.Tag{language.English},
	}
	provider, err := op.NewProvider(cfg, s.storage, op.StaticIssuer(s.Issuer), op.WithAllowInsecure())
	if err != nil {
		t.Fatalf("oidctest: op.NewProvider: %v", err)
	}
	callback := op.AuthCallbackURL(provider)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /login", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		loginPage.Execute(w, loginPageData{Name: opts.Name, SiteName: opts.SiteName, ID: r.URL.Query().Get("authRequestID")})
	})
	mux.Handle("POST /login", op.NewIssuerInterceptor(provider.IssuerFromRequest).HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.FormValue("id")
		if err := s.storage.login(id, r.FormValue("username"), r.FormValue("password")); err != nil {
			http.Error(w, err.Error(), http.StatusForbidden)
			return
		}
		http.Redirect(w, r, callback(r.Context(), id), http.StatusFound)
	}))
	mux.HandleFunc("GET /logged-out", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "You have signed out of %s.", opts.Name)
	})
	mux.Handle("/", provider)
	handler = mux

	for _, c := range opts.Clients {
		s.AddClient(c)
	}
	for _, u := range opts.Users {
		s.AddUser(u)
	}
	return s
}

// AddClient registers a client, replacing any with the same ID.
func (s *Server) AddClient(c Client) {
	if c.IDTokenLifetime == 0 {
		c.IDTokenLifetime = s.opts.IDTokenLifetime
	}
	c.RedirectURIs = slices.Clone(c.RedirectURIs)
	c.PostLogoutRedirectURIs = slices.Clone(c.PostLogoutRedirectURIs)
	c.Audience = slices.Clone(c.Audience)
	c.AllowedScopes = slices.Clone(c.AllowedScopes)
	oc := &client{cfg: c}
	oc.idTokenLifetime.Store(int64(c.IDTokenLifetime))
	s.storage.mu.Lock()
	defer s.storage.mu.Unlock()
	s.storage.clients[c.ID] = oc
}

// AddUser creates an account, replacing any with the same username.
func (s *Server) AddUser(u User) {
	if u.Subject == "" {
		u.Subject = "sub-" + u.Username
	}
	u.AMR = slices.Clone(u.AMR)
	s.storage.mu.Lock()
	defer s.storage.mu.Unlock()
	s.storage.users[u.Username] = &u
}

// Password returns the password of the account username ("" if there is
// none), for a test that plays the browser at the login page.
func (s *Server) Password(username string) string {
	s.storage.mu.Lock()
	defer s.storage.mu.Unlock()
	if u, ok := s.storage.users[username]; ok {
		return u.Password
	}
	return ""
}

// SetIDTokenLifetime changes the lifetime of the ID tokens issued to
// clientID from now on; a negative d issues expired tokens.
func (s *Server) SetIDTokenLifetime(clientID string, d time.Duration) {
	s.storage.mu.Lock()
	c, ok := s.storage.clients[clientID]
	s.storage.mu.Unlock()
	if !ok {
		panic("oidctest: SetIDTokenLifetime: no client " + clientID)
	}
	c.idTokenLifetime.Store(int64(d))
}

// SetAuthContext changes what the provider says about how username
// authenticates (the amr and acr claims), from the next sign-in on.
func (s *Server) SetAuthContext(username string, amr []string, acr string) {
	s.storage.mu.Lock()
	defer s.storage.mu.Unlock()
	u, ok := s.storage.users[username]
	if !ok {
		panic("oidctest: SetAuthContext: no user " + username)
	}
	u.AMR, u.ACR = slices.Clone(amr), acr
}

// PublishWrongKey makes the JWKS publish, while on, another RSA key under
// the signing key's key ID: tokens no longer verify against it.
func (s *Server) PublishWrongKey(on bool) {
	if on {
		otherKey() // generated outside the lock
	}
	s.storage.mu.Lock()
	defer s.storage.mu.Unlock()
	s.storage.wrongJWKS = on
}

// Hits returns how many requests have reached path (all methods).
func (s *Server) Hits(path string) int {
	s.hitsMu.Lock()
	defer s.hitsMu.Unlock()
	return s.hits[path]
}

// loginPage is the provider's own sign-in page: a plain form, as an
// identity provider's login page is, distinct enough from a relying
// party's to tell apart.
var loginPage = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{{.Name}} – sign in</title>
<style>body{font-family:sans-serif;background:#eef2f7;margin:0}main{max-width:22rem;margin:3rem auto;background:#fff;padding:1.5rem;border-radius:8px;box-shadow:0 1px 4px #0002}
h1{color:#1f6f43}label,input,button{display:block;width:100%;box-sizing:border-box;margin:.4rem 0}input{padding:.5rem}button{padding:.6rem;background:#1f6f43;color:#fff;border:0;border-radius:4px}</style>
</head><body><main>
<h1>{{.Name}}</h1>
{{if .SiteName}}<p>Sign in to continue to <strong>{{.SiteName}}</strong>.</p>
{{end}}<form method="post" action="/login">
<input type="hidden" name="id" value="{{.ID}}">
<label for="op-username">{{.Name}} username</label><input id="op-username" name="username" autocomplete="username">
<label for="op-password">{{.Name}} password</label><input id="op-password" name="password" type="password" autocomplete="current-password">
<button type="submit">Continue</button>
</form></main></body></html>`))

type loginPageData struct{ Name, SiteName, ID string }

// client implements op.Client.
type client struct {
	cfg             Client       // read-only once registered
	idTokenLifetime atomic.Int64 // a time.Duration; SetIDTokenLifetime changes it
}

func (c *client) GetID() string                       { return c.cfg.ID }
func (c *client) RedirectURIs() []string              { return c.cfg.RedirectURIs }
func (c *client) PostLogoutRedirectURIs() []string    { return c.cfg.PostLogoutRedirectURIs }
func (c *client) ApplicationType() op.ApplicationType { return op.ApplicationTypeWeb }
func (c *client) AuthMethod() zoidc.AuthMethod        { return zoidc.AuthMethodBasic }
func (c *client) ResponseTypes() []zoidc.ResponseType {
	return []zoidc.ResponseType{zoidc.ResponseTypeCode}
}
func (c *client) GrantTypes() []zoidc.GrantType { return []zoidc.GrantType{zoidc.GrantTypeCode} }
func (c *client) LoginURL(id string) string     { return "/login?authRequestID=" + id }
func (c *client) AccessTokenType() op.AccessTokenType {
	return op.AccessTokenTypeBearer
}
func (c *client) IDTokenLifetime() time.Duration { return time.Duration(c.idTokenLifetime.Load()) }
func (c *client) DevMode() bool                  { return true }
func (c *client) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c *client) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c *client) IsScopeAllowed(scope string) bool {
	return slices.Contains(c.cfg.AllowedScopes, scope)
}
func (c *client) IDTokenUserinfoClaimsAssertion() bool { return !c.cfg.ClaimsFromUserinfoOnly }
func (c *client) ClockSkew() time.Duration             { return 0 }

// authRequest implements op.AuthRequest.
type authRequest struct {
	id       string
	req      *zoidc.AuthRequest
	userID   string
	amr      []string
	acr      string
	audience []string
	authTime time.Time
	done     bool
}

func (a *authRequest) GetID() string          { return a.id }
func (a *authRequest) GetACR() string         { return a.acr }
func (a *authRequest) GetAMR() []string       { return a.amr }
func (a *authRequest) GetAudience() []string  { return a.audience }
func (a *authRequest) GetAuthTime() time.Time { return a.authTime }
func (a *authRequest) GetClientID() string    { return a.req.ClientID }
func (a *authRequest) GetCodeChallenge() *zoidc.CodeChallenge {
	if a.req.CodeChallenge == "" {
		return nil
	}
	return &zoidc.CodeChallenge{Challenge: a.req.CodeChallenge, Method: a.req.CodeChallengeMethod}
}
func (a *authRequest) GetNonce() string                    { return a.req.Nonce }
func (a *authRequest) GetRedirectURI() string              { return a.req.RedirectURI }
func (a *authRequest) GetResponseType() zoidc.ResponseType { return a.req.ResponseType }
func (a *authRequest) GetResponseMode() zoidc.ResponseMode { return a.req.ResponseMode }
func (a *authRequest) GetScopes() []string                 { return a.req.Scopes }
func (a *authRequest) GetState() string                    { return a.req.State }
func (a *authRequest) GetSubject() string                  { return a.userID }
func (a *authRequest) Done() bool                          { return a.done }

type accessToken struct {
	subject string
	scopes  []string
	expires time.Time
}

// The RSA keys are generated once per test binary: generating them is the
// slow part of starting a provider.
var (
	theKey   = sync.OnceValue(func() *rsa.PrivateKey { return generateKey() })
	otherKey = sync.OnceValue(func() *rsa.PrivateKey { return generateKey() })
)

func generateKey() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
}

const keyID = "oidctest-key-1"

type signingKey struct{ key *rsa.PrivateKey }

func (k signingKey) SignatureAlgorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k signingKey) Key() any                                    { return k.key }
func (k signingKey) ID() string                                  { return keyID }

type publicKey struct{ key *rsa.PrivateKey }

func (k publicKey) ID() string                         { return keyID }
func (k publicKey) Algorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k publicKey) Use() string                        { return "sig" }
func (k publicKey) Key() any                           { return &k.key.PublicKey }

// storage implements op.Storage in memory.
type storage struct {
	accessTokenLifetime time.Duration

	mu        sync.Mutex
	users     map[string]*User // by username
	clients   map[string]*client
	requests  map[string]*authRequest
	codes     map[string]string // code → request id
	tokens    map[string]*accessToken
	seq       int
	wrongJWKS bool // publish otherKey under the signing key's kid
}

var _ op.Storage = (*storage)(nil)

func newStorage(accessTokenLifetime time.Duration) *storage {
	theKey()
	return &storage{
		accessTokenLifetime: accessTokenLifetime,
		users:               map[string]*User{},
		clients:             map[string]*client{},
		requests:            map[string]*authRequest{},
		codes:               map[string]string{},
		tokens:              map[string]*accessToken{},
	}
}

func (s *storage) nextID(prefix string) string {
	s.seq++
	return fmt.Sprintf("%s-%d", prefix, s.seq)
}

func (s *storage) userBySubject(sub string) *User {
	for _, u := range s.users {
		if u.Subject == sub {
			return u
		}
	}
	return nil
}

// login is the provider's login step: it checks the password and completes
// the authorization request for that user.
func (s *storage) login(requestID, username, password string) error {
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
	req.userID, req.amr, req.acr = u.Subject, slices.Clone(u.AMR), u.ACR
	req.authTime = time.Now()
	if !u.AuthTime.IsZero() {
		req.authTime = u.AuthTime
	}
	if u.NoAuthTime {
		req.authTime = time.Time{}
	}
	req.done = true
	return nil
}

func (s *storage) CreateAuthRequest(_ context.Context, r *zoidc.AuthRequest, userID string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.clients[r.ClientID]
	if !ok {
		return nil, errors.New("unknown client")
	}
	aud := []string{r.ClientID}
	if c.cfg.Audience != nil {
		aud = c.cfg.Audience
	}
	req := &authRequest{id: s.nextID("req"), req: r, userID: userID, audience: aud}
	s.requests[req.id] = req
	return req, nil
}

func (s *storage) AuthRequestByID(_ context.Context, id string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	req, ok := s.requests[id]
	if !ok {
		return nil, errors.New("auth request not found")
	}
	return req, nil
}

func (s *storage) AuthRequestByCode(ctx context.Context, code string) (op.AuthRequest, error) {
	s.mu.Lock()
	id, ok := s.codes[code]
	s.mu.Unlock()
	if !ok {
		return nil, errors.New("code invalid or already used")
	}
	return s.AuthRequestByID(ctx, id)
}

func (s *storage) SaveAuthCode(_ context.Context, id, code string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.codes[code] = id
	return nil
}

func (s *storage) DeleteAuthRequest(_ context.Context, id string) error {
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

func (s *storage) CreateAccessToken(_ context.Context, r op.TokenRequest) (string, time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := s.nextID("at")
	t := &accessToken{subject: r.GetSubject(), scopes: r.GetScopes(), expires: time.Now().Add(s.accessTokenLifetime)}
	s.tokens[id] = t
	return id, t.expires, nil
}

func (s *storage) CreateAccessAndRefreshTokens(context.Context, op.TokenRequest, string) (string, string, time.Time, error) {
	return "", "", time.Time{}, errors.New("refresh tokens are not supported here")
}

func (s *storage) TokenRequestByRefreshToken(context.Context, string) (op.RefreshTokenRequest, error) {
	return nil, op.ErrInvalidRefreshToken
}

func (s *storage) TerminateSession(context.Context, string, string) error { return nil }

func (s *storage) RevokeToken(context.Context, string, string, string) *zoidc.Error { return nil }

func (s *storage) GetRefreshTokenInfo(context.Context, string, string) (string, string, error) {
	return "", "", op.ErrInvalidRefreshToken
}

func (s *storage) SigningKey(context.Context) (op.SigningKey, error) {
	return signingKey{theKey()}, nil
}

func (s *storage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{jose.RS256}, nil
}

func (s *storage) KeySet(context.Context) ([]op.Key, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.wrongJWKS {
		return []op.Key{publicKey{otherKey()}}, nil
	}
	return []op.Key{publicKey{theKey()}}, nil
}

func (s *storage) GetClientByClientID(_ context.Context, id string) (op.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.clients[id]
	if !ok {
		return nil, errors.New("client not found")
	}
	return c, nil
}

func (s *storage) AuthorizeClientIDSecret(_ context.Context, id, secret string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.clients[id]
	if !ok || c.cfg.Secret != secret {
		return errors.New("wrong client id or secret")
	}
	return nil
}

func (s *storage) SetUserinfoFromScopes(context.Context, *zoidc.UserInfo, string, string, []string) error {
	return nil
}

// SetUserinfoFromRequest fills the ID token's profile claims.
func (s *storage) SetUserinfoFromRequest(_ context.Context, ui *zoidc.UserInfo, r op.IDTokenRequest, scopes []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.setUserinfo(ui, r.GetSubject(), scopes)
}

// SetUserinfoFromToken fills the userinfo endpoint's answer.
func (s *storage) SetUserinfoFromToken(_ context.Context, ui *zoidc.UserInfo, tokenID, subject, _ string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tokens[tokenID]
	if !ok || t.subject != subject || time.Now().After(t.expires) {
		return errors.New("token invalid")
	}
	return s.setUserinfo(ui, subject, t.scopes)
}

func (s *storage) setUserinfo(ui *zoidc.UserInfo, subject string, scopes []string) error {
	u := s.userBySubject(subject)
	if u == nil {
		return errors.New("user not found")
	}
	ui.Subject = u.Subject
	if slices.Contains(scopes, zoidc.ScopeEmail) && u.Email != "" {
		ui.AppendClaims("email", u.Email)
		if u.EmailVerified != nil {
			ui.AppendClaims("email_verified", u.EmailVerified)
		}
	}
	if slices.Contains(scopes, zoidc.ScopeProfile) {
		if !u.NoPreferredUsername {
			ui.PreferredUsername = u.Username
		}
		ui.Name = u.Name
	}
	if slices.Contains(scopes, "groups") && u.Groups != nil {
		ui.AppendClaims("groups", u.Groups)
	}
	return nil
}

func (s *storage) SetIntrospectionFromToken(context.Context, *zoidc.IntrospectionResponse, string, string, string) error {
	return errors.New("introspection not supported")
}

func (s *storage) GetPrivateClaimsFromScopes(context.Context, string, string, []string) (map[string]any, error) {
	return nil, nil
}

func (s *storage) GetKeyByIDAndClientID(context.Context, string, string) (*jose.JSONWebKey, error) {
	return nil, errors.New("no JWT profile keys")
}

func (s *storage) ValidateJWTProfileScopes(context.Context, string, []string) ([]string, error) {
	return nil, errors.New("JWT profile not supported")
}

func (s *storage) Health(context.Context) error { return nil }
