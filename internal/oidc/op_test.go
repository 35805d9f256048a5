package oidc

// An in-process OpenID provider for the tests: zitadel/oidc's op package
// serves the real discovery, authorize, token, userinfo, JWKS and
// end_session endpoints and signs real tokens; this file supplies only its
// in-memory storage and a minimal login page (a form POST that picks the
// user), which is the part every OP leaves to the application.

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
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	zoidc "github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/text/language"
)

// testUser is an account at the test OP.
type testUser struct {
	ID, Username, Password string
	Email                  string
	EmailVerified          any // bool, string, or nil for absent
	Name                   string
	Groups                 any // []string, string, or nil
	AMR                    []string
	ACR                    string
	NoPreferredUsername    bool
}

// testClient is an OAuth client registered at the test OP.
type testClient struct {
	id, secret      string
	redirectURIs    []string
	idTokenLifetime time.Duration
	claimsInIDToken bool     // assert profile/email claims in the ID token
	audience        []string // overrides the ID token audience (to test a wrong aud)
}

func (c *testClient) GetID() string          { return c.id }
func (c *testClient) RedirectURIs() []string { return c.redirectURIs }
func (c *testClient) PostLogoutRedirectURIs() []string {
	return []string{"http://127.0.0.1/logged-out"}
}
func (c *testClient) ApplicationType() op.ApplicationType { return op.ApplicationTypeWeb }
func (c *testClient) AuthMethod() zoidc.AuthMethod        { return zoidc.AuthMethodBasic }
func (c *testClient) ResponseTypes() []zoidc.ResponseType {
	return []zoidc.ResponseType{zoidc.ResponseTypeCode}
}
func (c *testClient) GrantTypes() []zoidc.GrantType { return []zoidc.GrantType{zoidc.GrantTypeCode} }
func (c *testClient) LoginURL(id string) string     { return "/login?authRequestID=" + id }
func (c *testClient) AccessTokenType() op.AccessTokenType {
	return op.AccessTokenTypeBearer
}
func (c *testClient) IDTokenLifetime() time.Duration { return c.idTokenLifetime }
func (c *testClient) DevMode() bool                  { return true }
func (c *testClient) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c *testClient) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c *testClient) IsScopeAllowed(scope string) bool     { return scope == "groups" }
func (c *testClient) IDTokenUserinfoClaimsAssertion() bool { return c.claimsInIDToken }
func (c *testClient) ClockSkew() time.Duration             { return 0 }

// testAuthRequest is one authorization request at the test OP.
type testAuthRequest struct {
	id       string
	req      *zoidc.AuthRequest
	userID   string
	amr      []string
	acr      string
	audience []string
	authTime time.Time
	done     bool
}

func (a *testAuthRequest) GetID() string         { return a.id }
func (a *testAuthRequest) GetACR() string        { return a.acr }
func (a *testAuthRequest) GetAMR() []string      { return a.amr }
func (a *testAuthRequest) GetAudience() []string { return a.audience }
func (a *testAuthRequest) GetAuthTime() time.Time {
	return a.authTime
}
func (a *testAuthRequest) GetClientID() string { return a.req.ClientID }
func (a *testAuthRequest) GetCodeChallenge() *zoidc.CodeChallenge {
	if a.req.CodeChallenge == "" {
		return nil
	}
	return &zoidc.CodeChallenge{Challenge: a.req.CodeChallenge, Method: a.req.CodeChallengeMethod}
}
func (a *testAuthRequest) GetNonce() string                    { return a.req.Nonce }
func (a *testAuthRequest) GetRedirectURI() string              { return a.req.RedirectURI }
func (a *testAuthRequest) GetResponseType() zoidc.ResponseType { return a.req.ResponseType }
func (a *testAuthRequest) GetResponseMode() zoidc.ResponseMode { return a.req.ResponseMode }
func (a *testAuthRequest) GetScopes() []string                 { return a.req.Scopes }
func (a *testAuthRequest) GetState() string                    { return a.req.State }
func (a *testAuthRequest) GetSubject() string                  { return a.userID }
func (a *testAuthRequest) Done() bool                          { return a.done }

type testToken struct {
	clientID, subject string
	scopes            []string
	expires           time.Time
}

type signingKey struct {
	id  string
	key *rsa.PrivateKey
}

func (k *signingKey) SignatureAlgorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k *signingKey) Key() any                                    { return k.key }
func (k *signingKey) ID() string                                  { return k.id }

type publicKey struct{ *signingKey }

func (k publicKey) Algorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k publicKey) Use() string                        { return "sig" }
func (k publicKey) Key() any                           { return &k.key.PublicKey }

var (
	rsaKeyOnce sync.Once
	rsaKey     *rsa.PrivateKey
	rsaKey2    *rsa.PrivateKey // published instead of rsaKey by a broken OP
)

// testStorage implements op.Storage in memory.
type testStorage struct {
	mu       sync.Mutex
	key      *signingKey
	users    map[string]*testUser // by username
	clients  map[string]*testClient
	requests map[string]*testAuthRequest
	codes    map[string]string // code → request id
	tokens   map[string]*testToken
	seq      int

	wrongJWKS bool // publish another key under the signing key's kid
}

var _ op.Storage = (*testStorage)(nil)

func newTestStorage() *testStorage {
	rsaKeyOnce.Do(func() {
		var err error
		if rsaKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if rsaKey2, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
	})
	return &testStorage{
		key:      &signingKey{id: "test-key-1", key: rsaKey},
		users:    map[string]*testUser{},
		clients:  map[string]*testClient{},
		requests: map[string]*testAuthRequest{},
		codes:    map[string]string{},
		tokens:   map[string]*testToken{},
	}
}

func (s *testStorage) nextID(prefix string) string {
	s.seq++
	return fmt.Sprintf("%s-%d", prefix, s.seq)
}

func (s *testStorage) userByID(id string) *testUser {
	for _, u := range s.users {
		if u.ID == id {
			return u
		}
	}
	return nil
}

// login is the OP's login step: it checks the password and completes the
// authorization request for that user.
func (s *testStorage) login(requestID, username, password string) error {
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
	req.userID, req.amr, req.acr = u.ID, u.AMR, u.ACR
	req.authTime = time.Now()
	req.done = true
	return nil
}

func (s *testStorage) CreateAuthRequest(_ context.Context, r *zoidc.AuthRequest, userID string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.clients[r.ClientID]
	if !ok {
		return nil, errors.New("unknown client")
	}
	aud := []string{r.ClientID}
	if c.audience != nil {
		aud = c.audience
	}
	req := &testAuthRequest{id: s.nextID("req"), req: r, userID: userID, audience: aud}
	s.requests[req.id] = req
	return req, nil
}

func (s *testStorage) AuthRequestByID(_ context.Context, id string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	req, ok := s.requests[id]
	if !ok {
		return nil, errors.New("auth request not found")
	}
	return req, nil
}

func (s *testStorage) AuthRequestByCode(ctx context.Context, code string) (op.AuthRequest, error) {
	s.mu.Lock()
	id, ok := s.codes[code]
	s.mu.Unlock()
	if !ok {
		return nil, errors.New("code invalid or already used")
	}
	return s.AuthRequestByID(ctx, id)
}

func (s *testStorage) SaveAuthCode(_ context.Context, id, code string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.codes[code] = id
	return nil
}

func (s *testStorage) DeleteAuthRequest(_ context.Context, id string) error {
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

func (s *testStorage) CreateAccessToken(_ context.Context, r op.TokenRequest) (string, time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var clientID string
	if ar, ok := r.(*testAuthRequest); ok {
		clientID = ar.req.ClientID
	}
	id := s.nextID("at")
	t := &testToken{clientID: clientID, subject: r.GetSubject(), scopes: r.GetScopes(), expires: time.Now().Add(5 * time.Minute)}
	s.tokens[id] = t
	return id, t.expires, nil
}

func (s *testStorage) CreateAccessAndRefreshTokens(context.Context, op.TokenRequest, string) (string, string, time.Time, error) {
	return "", "", time.Time{}, errors.New("refresh tokens are not supported here")
}

func (s *testStorage) TokenRequestByRefreshToken(context.Context, string) (op.RefreshTokenRequest, error) {
	return nil, op.ErrInvalidRefreshToken
}

func (s *testStorage) TerminateSession(context.Context, string, string) error { return nil }

func (s *testStorage) RevokeToken(context.Context, string, string, string) *zoidc.Error { return nil }

func (s *testStorage) GetRefreshTokenInfo(context.Context, string, string) (string, string, error) {
	return "", "", op.ErrInvalidRefreshToken
}

func (s *testStorage) SigningKey(context.Context) (op.SigningKey, error) { return s.key, nil }

func (s *testStorage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{jose.RS256}, nil
}

func (s *testStorage) KeySet(context.Context) ([]op.Key, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.wrongJWKS {
		return []op.Key{publicKey{&signingKey{id: s.key.id, key: rsaKey2}}}, nil
	}
	return []op.Key{publicKey{s.key}}, nil
}

func (s *testStorage) GetClientByClientID(_ context.Context, id string) (op.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.clients[id]
	if !ok {
		return nil, errors.New("client not found")
	}
	return c, nil
}

func (s *testStorage) AuthorizeClientIDSecret(_ context.Context, id, secret string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.clients[id]
	if !ok || c.secret != secret {
		return errors.New("wrong client id or secret")
	}
	return nil
}

func (s *testStorage) SetUserinfoFromScopes(context.Context, *zoidc.UserInfo, string, string, []string) error {
	return nil
}

// SetUserinfoFromRequest fills the ID token's profile claims.
func (s *testStorage) SetUserinfoFromRequest(_ context.Context, ui *zoidc.UserInfo, r op.IDTokenRequest, scopes []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.setUserinfo(ui, r.GetSubject(), scopes)
}

func (s *testStorage) SetUserinfoFromToken(_ context.Context, ui *zoidc.UserInfo, tokenID, subject, _ string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tokens[tokenID]
	if !ok || t.subject != subject || time.Now().After(t.expires) {
		return errors.New("token invalid")
	}
	return s.setUserinfo(ui, subject, t.scopes)
}

func (s *testStorage) setUserinfo(ui *zoidc.UserInfo, subject string, scopes []string) error {
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

func (s *testStorage) SetIntrospectionFromToken(context.Context, *zoidc.IntrospectionResponse, string, string, string) error {
	return errors.New("introspection not supported")
}

func (s *testStorage) GetPrivateClaimsFromScopes(context.Context, string, string, []string) (map[string]any, error) {
	return nil, nil
}

func (s *testStorage) GetKeyByIDAndClientID(context.Context, string, string) (*jose.JSONWebKey, error) {
	return nil, errors.New("no JWT profile keys")
}

func (s *testStorage) ValidateJWTProfileScopes(context.Context, string, []string) ([]string, error) {
	return nil, errors.New("JWT profile not supported")
}

func (s *testStorage) Health(context.Context) error { return nil }

// testOP is a running provider.
type testOP struct {
	t       *testing.T
	server  *httptest.Server
	issuer  string
	storage *testStorage

	mu   sync.Mutex
	hits map[string]int // requests by path
}

// hitsFor returns how many requests reached path.
func (o *testOP) hitsFor(path string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.hits[path]
}

// startOP starts the zitadel OP on 127.0.0.1 with the login page at /login.
func startOP(t *testing.T) *testOP {
	t.Helper()
	var handler http.Handler
	o := &testOP{t: t, storage: newTestStorage(), hits: map[string]int{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.mu.Lock()
		o.hits[r.URL.Path]++
		o.mu.Unlock()
		handler.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	o.server, o.issuer = srv, srv.URL

	cfg := &op.Config{
		CryptoKey:                sha256.Sum256([]byte("test crypto key")),
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
		fmt.Fprintf(w, `<form method="post" action="/login"><input type="hidden" name="id" value="%s"><input name="username"><input name="password" type="password"></form>`, html.EscapeString(id))
	}))
	mux.Handle("POST /login", op.NewIssuerInterceptor(provider.IssuerFromRequest).HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.FormValue("id")
		if err := o.storage.login(id, r.FormValue("username"), r.FormValue("password")); err != nil {
			http.Error(w, err.Error(), http.StatusForbidden)
			return
		}
		http.Redirect(w, r, callback(r.Context(), id), http.StatusFound)
	}))
	mux.Handle("/", provider)
	handler = mux
	return o
}

// addClient registers a client at the OP.
func (o *testOP) addClient(c *testClient) {
	o.storage.mu.Lock()
	defer o.storage.mu.Unlock()
	if c.idTokenLifetime == 0 {
		c.idTokenLifetime = time.Hour
	}
	o.storage.clients[c.id] = c
}

// addUser creates an account at the OP.
func (o *testOP) addUser(u *testUser) {
	o.storage.mu.Lock()
	defer o.storage.mu.Unlock()
	if u.ID == "" {
		u.ID = "sub-" + u.Username
	}
	o.storage.users[u.Username] = u
}
