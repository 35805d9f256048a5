package browser

// The upstream OpenID Connect journey: "Sign in with Example" on the login
// page, the provider's own login page, twostep's second factor (a texted
// code: the user has two-step on), the app, and signing out.
//
// The provider is a real zitadel/oidc v3 OP in-process on 127.0.0.1 with
// in-memory storage and a minimal login page, adapted from
// internal/oidc/op_test.go (test files cannot be imported). It must be
// running before Caddy starts: Caddy discovers it at start.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	jose "github.com/go-jose/go-jose/v4"
	zoidc "github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/text/language"
)

const (
	// oidcUser is in the users file and, under the same name, at the
	// provider; the journey turns two-step on for her first.
	oidcUser        = "olivia"
	oidcIdPPassword = "olivia's password at Example ID"
	oidcPhone       = "+15550007777"
	oidcPhoneMasked = "•••• 7777"

	idpClientID     = "twostep-browser"
	idpClientSecret = "browser test client secret"
	idpRedirectURI  = site + "/.twostep/oidc/example/callback"
	idpLabel        = "Sign in with Example"
)

// oidcUsersEntry is olivia's users-file entry (the shared test password).
func oidcUsersEntry(hash string) string {
	return fmt.Sprintf(`  %s:
    displayname: Olivia Example
    password: "%s"
    email: olivia@example.com
`, oidcUser, hash)
}

// oidcCaddyBlock is the `oidc example { … }` global option for the OP.
func oidcCaddyBlock(issuer string) string {
	return fmt.Sprintf(`# Upstream OpenID Connect as the first factor; twostep's own
		# second factor still applies to users who turned it on.
		oidc example {
			issuer %s
			client_id %s
			client_secret "%s"
			scopes openid email profile
			label "%s"
		}`, issuer, idpClientID, idpClientSecret, idpLabel)
}

func journeyOIDC(t *testing.T, ctx context.Context, idp *idpServer) {
	began := time.Now()
	lap := func(what string) { t.Logf("%-48s %6v", what, time.Since(began).Round(time.Millisecond)) }
	turnOnTwoStepByAPI(t, ctx, oidcUser, oidcPhone)
	lap("two-step on for " + oidcUser + " (JSON API)")

	// The login page offers the provider's button under the password form.
	do(t, ctx, "open the protected page",
		chromedp.Navigate(site+"/reports"),
		chromedp.WaitVisible(chromedp.CSS(`input[name=username]`)),
	)
	wantPath(t, ctx, "/.twostep/login")
	wantButton(t, ctx, idpLabel)
	if disabled := run(t, ctx, "read the provider button's state", chromedp.Evaluate[bool](
		`Array.from(document.querySelectorAll("button")).find(b => b.textContent.trim() === `+jsString(idpLabel)+`).disabled`)); disabled {
		t.Fatalf("the %q button is disabled (page: %s)", idpLabel, pageState(ctx))
	}
	screenshot(t, ctx, "20-login-oidc-button.png")

	// The button leads to the provider's own login page.
	clickTo(t, ctx, "click "+idpLabel, button(idpLabel), http.StatusOK)
	loc := run(t, ctx, "read the location", chromedp.Location())
	if !strings.HasPrefix(loc, idp.issuer+"/login?") {
		t.Fatalf("after %q the browser is at %s, want the provider's login page %s/login (page: %s)", idpLabel, loc, idp.issuer, pageState(ctx))
	}
	wantBodyContains(t, ctx, "Example ID")
	do(t, ctx, "wait for the provider's form", chromedp.WaitVisible(chromedp.CSS(`#op-username`)))
	screenshot(t, ctx, "21-provider-login.png")
	lap("at the provider's login page")

	// Sign in there: the provider sends the browser back to twostep, which
	// asks for olivia's second factor.
	do(t, ctx, "type the provider credentials",
		chromedp.SendKeys(chromedp.CSS(`#op-username`), oidcUser),
		chromedp.SendKeys(chromedp.CSS(`#op-password`), oidcIdPPassword),
	)
	clickTo(t, ctx, "sign in at the provider", button("Continue"), http.StatusOK)
	wantPath(t, ctx, "/.twostep/challenge")
	wantReturn(t, ctx, "/reports")
	wantBodyContains(t, ctx, "Two-step verification")
	screenshot(t, ctx, "22-oidc-challenge.png")
	lap("back from the provider, on the challenge page")

	prev := newestOutbox(t, ctx, "sms", oidcPhone)
	submit(t, ctx, `click "Text me a code"`, button("Text me a code"), http.StatusOK)
	wantPath(t, ctx, "/.twostep/challenge")
	wantBodyContains(t, ctx, "We sent a code to "+oidcPhoneMasked+".")
	msg := waitOutbox(t, ctx, "sms", oidcPhone, prev)
	verifyCode(t, ctx, msg.Code)
	wantPath(t, ctx, "/reports")
	wantUser(t, ctx, oidcUser)
	screenshot(t, ctx, "23-oidc-signed-in.png")
	lap("signed in: provider + texted code")

	// Sign out: the local session ends (the page may offer to sign out at
	// the provider too).
	do(t, ctx, "open the sign-out page",
		chromedp.Navigate(site+"/.twostep/logout"),
		chromedp.WaitVisible(signOutButton),
	)
	wantBodyContains(t, ctx, "Olivia Example")
	submit(t, ctx, "click Sign out", signOutButton, http.StatusOK)
	wantBodyContains(t, ctx, "signed out")
	screenshot(t, ctx, "24-oidc-signed-out.png")
	do(t, ctx, "open the protected page after signing out",
		chromedp.Navigate(site+"/reports"),
		chromedp.WaitVisible(chromedp.CSS(`input[name=username]`)),
	)
	wantPath(t, ctx, "/.twostep/login")
	lap("signed out")
}

// clickTo clicks and waits, at most 15 s, for the page the click loads,
// wherever the redirects lead, and checks its status. A navigation that
// the browser blocks (a CSP violation, say) fails here instead of hanging.
func clickTo(t *testing.T, ctx context.Context, what string, b chromedp.Search, wantStatus int) {
	t.Helper()
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	log := collectConsole(t, cctx)
	res, err := chromedp.RunResponse(cctx, chromedp.Click(b))
	if err != nil || res == nil || res.Status != int64(wantStatus) {
		var status int64
		if res != nil {
			status = res.Status
		}
		t.Fatalf("%s: status %d, err %v, want a page with status %d (page: %s; console: %s)", what, status, err, wantStatus, pageState(ctx), log.String())
	}
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// turnOnTwoStepByAPI signs user in with the password through the JSON API,
// confirms a phone for text messages and signs out: two-step is on.
func turnOnTwoStepByAPI(t *testing.T, ctx context.Context, user, phone string) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	post := func(path string, body any, want int) []byte {
		t.Helper()
		b, _ := json.Marshal(body)
		res, err := c.Post(site+"/.twostep/api/"+path, "application/json", bytes.NewReader(b))
		if err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		defer res.Body.Close()
		out, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
		if res.StatusCode != want {
			t.Fatalf("POST %s: %d %s, want %d", path, res.StatusCode, out, want)
		}
		return out
	}
	post("login", map[string]string{"username": user, "password": password}, http.StatusOK)
	prev := newestOutbox(t, ctx, "sms", phone)
	post("phone", map[string]string{"phone": phone, "method": "sms"}, http.StatusAccepted)
	msg := waitOutbox(t, ctx, "sms", phone, prev)
	post("phone/confirm", map[string]string{"code": msg.Code}, http.StatusOK)
	post("logout", map[string]string{}, http.StatusNoContent)
}

// --- The provider ---

type idpUser struct {
	ID, Username, Password, Email, Name string
	AMR                                 []string
}

type idpClient struct{}

func (idpClient) GetID() string          { return idpClientID }
func (idpClient) RedirectURIs() []string { return []string{idpRedirectURI} }
func (idpClient) PostLogoutRedirectURIs() []string {
	return []string{site + "/.twostep/login?signed_out=1"}
}
func (idpClient) ApplicationType() op.ApplicationType { return op.ApplicationTypeWeb }
func (idpClient) AuthMethod() zoidc.AuthMethod        { return zoidc.AuthMethodBasic }
func (idpClient) ResponseTypes() []zoidc.ResponseType {
	return []zoidc.ResponseType{zoidc.ResponseTypeCode}
}
func (idpClient) GrantTypes() []zoidc.GrantType       { return []zoidc.GrantType{zoidc.GrantTypeCode} }
func (idpClient) LoginURL(id string) string           { return "/login?authRequestID=" + id }
func (idpClient) AccessTokenType() op.AccessTokenType { return op.AccessTokenTypeBearer }
func (idpClient) IDTokenLifetime() time.Duration      { return time.Hour }
func (idpClient) DevMode() bool                       { return true }
func (idpClient) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (idpClient) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (idpClient) IsScopeAllowed(string) bool           { return false }
func (idpClient) IDTokenUserinfoClaimsAssertion() bool { return true }
func (idpClient) ClockSkew() time.Duration             { return 0 }

type idpAuthRequest struct {
	id       string
	req      *zoidc.AuthRequest
	userID   string
	amr      []string
	authTime time.Time
	done     bool
}

func (a *idpAuthRequest) GetID() string          { return a.id }
func (a *idpAuthRequest) GetACR() string         { return "" }
func (a *idpAuthRequest) GetAMR() []string       { return a.amr }
func (a *idpAuthRequest) GetAudience() []string  { return []string{a.req.ClientID} }
func (a *idpAuthRequest) GetAuthTime() time.Time { return a.authTime }
func (a *idpAuthRequest) GetClientID() string    { return a.req.ClientID }
func (a *idpAuthRequest) GetCodeChallenge() *zoidc.CodeChallenge {
	if a.req.CodeChallenge == "" {
		return nil
	}
	return &zoidc.CodeChallenge{Challenge: a.req.CodeChallenge, Method: a.req.CodeChallengeMethod}
}
func (a *idpAuthRequest) GetNonce() string                    { return a.req.Nonce }
func (a *idpAuthRequest) GetRedirectURI() string              { return a.req.RedirectURI }
func (a *idpAuthRequest) GetResponseType() zoidc.ResponseType { return a.req.ResponseType }
func (a *idpAuthRequest) GetResponseMode() zoidc.ResponseMode { return a.req.ResponseMode }
func (a *idpAuthRequest) GetScopes() []string                 { return a.req.Scopes }
func (a *idpAuthRequest) GetState() string                    { return a.req.State }
func (a *idpAuthRequest) GetSubject() string                  { return a.userID }
func (a *idpAuthRequest) Done() bool                          { return a.done }

type idpKey struct{ key *rsa.PrivateKey }

func (k idpKey) SignatureAlgorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k idpKey) Key() any                                    { return k.key }
func (k idpKey) ID() string                                  { return "browser-key-1" }

type idpPublicKey struct{ idpKey }

func (k idpPublicKey) Algorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k idpPublicKey) Use() string                        { return "sig" }
func (k idpPublicKey) Key() any                           { return &k.key.PublicKey }

// idpStorage implements op.Storage in memory.
type idpStorage struct {
	mu       sync.Mutex
	key      idpKey
	users    map[string]*idpUser
	requests map[string]*idpAuthRequest
	codes    map[string]string
	tokens   map[string]string // access token → subject
	seq      int
}

var _ op.Storage = (*idpStorage)(nil)

func (s *idpStorage) nextID(prefix string) string {
	s.seq++
	return fmt.Sprintf("%s-%d", prefix, s.seq)
}

func (s *idpStorage) login(requestID, username, pw string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	req, ok := s.requests[requestID]
	if !ok {
		return errors.New("unknown auth request")
	}
	u, ok := s.users[username]
	if !ok || u.Password != pw {
		return errors.New("wrong username or password")
	}
	req.userID, req.amr, req.authTime, req.done = u.ID, slices.Clone(u.AMR), time.Now(), true
	return nil
}

func (s *idpStorage) CreateAuthRequest(_ context.Context, r *zoidc.AuthRequest, userID string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.ClientID != idpClientID {
		return nil, errors.New("unknown client")
	}
	req := &idpAuthRequest{id: s.nextID("req"), req: r, userID: userID}
	s.requests[req.id] = req
	return req, nil
}

func (s *idpStorage) AuthRequestByID(_ context.Context, id string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if req, ok := s.requests[id]; ok {
		return req, nil
	}
	return nil, errors.New("auth request not found")
}

func (s *idpStorage) AuthRequestByCode(ctx context.Context, code string) (op.AuthRequest, error) {
	s.mu.Lock()
	id, ok := s.codes[code]
	s.mu.Unlock()
	if !ok {
		return nil, errors.New("code invalid or already used")
	}
	return s.AuthRequestByID(ctx, id)
}

func (s *idpStorage) SaveAuthCode(_ context.Context, id, code string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.codes[code] = id
	return nil
}

func (s *idpStorage) DeleteAuthRequest(_ context.Context, id string) error {
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

func (s *idpStorage) CreateAccessToken(_ context.Context, r op.TokenRequest) (string, time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := s.nextID("at")
	s.tokens[id] = r.GetSubject()
	return id, time.Now().Add(5 * time.Minute), nil
}

func (s *idpStorage) CreateAccessAndRefreshTokens(context.Context, op.TokenRequest, string) (string, string, time.Time, error) {
	return "", "", time.Time{}, errors.New("refresh tokens are not supported here")
}

func (s *idpStorage) TokenRequestByRefreshToken(context.Context, string) (op.RefreshTokenRequest, error) {
	return nil, op.ErrInvalidRefreshToken
}

func (s *idpStorage) TerminateSession(context.Context, string, string) error { return nil }

func (s *idpStorage) RevokeToken(context.Context, string, string, string) *zoidc.Error { return nil }

func (s *idpStorage) GetRefreshTokenInfo(context.Context, string, string) (string, string, error) {
	return "", "", op.ErrInvalidRefreshToken
}

func (s *idpStorage) SigningKey(context.Context) (op.SigningKey, error) { return s.key, nil }

func (s *idpStorage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{jose.RS256}, nil
}

func (s *idpStorage) KeySet(context.Context) ([]op.Key, error) {
	return []op.Key{idpPublicKey{s.key}}, nil
}

func (s *idpStorage) GetClientByClientID(_ context.Context, id string) (op.Client, error) {
	if id != idpClientID {
		return nil, errors.New("client not found")
	}
	return idpClient{}, nil
}

func (s *idpStorage) AuthorizeClientIDSecret(_ context.Context, id, secret string) error {
	if id != idpClientID || secret != idpClientSecret {
		return errors.New("wrong client id or secret")
	}
	return nil
}

func (s *idpStorage) SetUserinfoFromScopes(context.Context, *zoidc.UserInfo, string, string, []string) error {
	return nil
}

func (s *idpStorage) SetUserinfoFromRequest(_ context.Context, ui *zoidc.UserInfo, r op.IDTokenRequest, scopes []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.setUserinfo(ui, r.GetSubject(), scopes)
}

func (s *idpStorage) SetUserinfoFromToken(_ context.Context, ui *zoidc.UserInfo, tokenID, subject, _ string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tokens[tokenID] != subject {
		return errors.New("token invalid")
	}
	return s.setUserinfo(ui, subject, []string{zoidc.ScopeEmail, zoidc.ScopeProfile})
}

func (s *idpStorage) setUserinfo(ui *zoidc.UserInfo, subject string, scopes []string) error {
	for _, u := range s.users {
		if u.ID != subject {
			continue
		}
		ui.Subject = u.ID
		if slices.Contains(scopes, zoidc.ScopeEmail) {
			ui.AppendClaims("email", u.Email)
			ui.AppendClaims("email_verified", true)
		}
		if slices.Contains(scopes, zoidc.ScopeProfile) {
			ui.PreferredUsername, ui.Name = u.Username, u.Name
		}
		return nil
	}
	return errors.New("user not found")
}

func (s *idpStorage) SetIntrospectionFromToken(context.Context, *zoidc.IntrospectionResponse, string, string, string) error {
	return errors.New("introspection not supported")
}

func (s *idpStorage) GetPrivateClaimsFromScopes(context.Context, string, string, []string) (map[string]any, error) {
	return nil, nil
}

func (s *idpStorage) GetKeyByIDAndClientID(context.Context, string, string) (*jose.JSONWebKey, error) {
	return nil, errors.New("no JWT profile keys")
}

func (s *idpStorage) ValidateJWTProfileScopes(context.Context, string, []string) ([]string, error) {
	return nil, errors.New("JWT profile not supported")
}

func (s *idpStorage) Health(context.Context) error { return nil }

// idpServer is the running provider.
type idpServer struct {
	issuer  string
	storage *idpStorage
}

// idpLoginPage is the provider's sign-in page.
const idpLoginPage = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>Example ID – sign in</title>
<style>body{font-family:sans-serif;background:#eef2f7;margin:0}main{max-width:22rem;margin:3rem auto;background:#fff;padding:1.5rem;border-radius:8px;box-shadow:0 1px 4px #0002}
h1{color:#1f6f43}label,input,button{display:block;width:100%%;box-sizing:border-box;margin:.4rem 0}input{padding:.5rem}button{padding:.6rem;background:#1f6f43;color:#fff;border:0;border-radius:4px}</style>
</head><body><main>
<h1>Example ID</h1>
<p>Sign in to continue to <strong>%s</strong>.</p>
<form method="post" action="/login">
<input type="hidden" name="id" value="%s">
<label for="op-username">Example ID username</label><input id="op-username" name="username" autocomplete="username">
<label for="op-password">Example ID password</label><input id="op-password" name="password" type="password" autocomplete="current-password">
<button type="submit">Continue</button>
</form></main></body></html>`

// startIdP starts the provider on 127.0.0.1 (a random port), with olivia's
// account.
func startIdP(t *testing.T) *idpServer {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	s := &idpStorage{key: idpKey{key}, users: map[string]*idpUser{}, requests: map[string]*idpAuthRequest{},
		codes: map[string]string{}, tokens: map[string]string{}}
	s.users[oidcUser] = &idpUser{ID: "sub-" + oidcUser, Username: oidcUser, Password: oidcIdPPassword,
		Email: "olivia@idp.example", Name: "Olivia at Example ID", AMR: []string{"pwd"}}

	var handler http.Handler
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handler.ServeHTTP(w, r) }))
	t.Cleanup(srv.Close)
	idp := &idpServer{issuer: srv.URL, storage: s}

	provider, err := op.NewProvider(&op.Config{
		CryptoKey:                sha256.Sum256([]byte("browser crypto key")),
		DefaultLogoutRedirectURI: "/logged-out",
		CodeMethodS256:           true,
		AuthMethodPost:           true,
		SupportedUILocales:       []language.Tag{language.English},
	}, s, op.StaticIssuer(idp.issuer), op.WithAllowInsecure())
	if err != nil {
		t.Fatalf("op.NewProvider: %v", err)
	}
	callback := op.AuthCallbackURL(provider)
	mux := http.NewServeMux()
	mux.Handle("GET /login", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, idpLoginPage, html.EscapeString(siteName), html.EscapeString(r.URL.Query().Get("authRequestID")))
	}))
	mux.Handle("POST /login", op.NewIssuerInterceptor(provider.IssuerFromRequest).HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.FormValue("id")
		if err := s.login(id, r.FormValue("username"), r.FormValue("password")); err != nil {
			http.Error(w, err.Error(), http.StatusForbidden)
			return
		}
		http.Redirect(w, r, callback(r.Context(), id), http.StatusFound)
	}))
	mux.Handle("GET /logged-out", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "You have signed out of Example ID.")
	}))
	mux.Handle("/", provider)
	handler = mux

	// Discovery works before Caddy is started on it.
	res, err := (&http.Client{Timeout: 5 * time.Second}).Get(idp.issuer + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatalf("the provider's discovery: %v", err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("the provider's discovery: %s", res.Status)
	}
	if u, _ := url.Parse(idp.issuer); u.Hostname() != "127.0.0.1" {
		t.Fatalf("the provider runs on %s, want 127.0.0.1", idp.issuer)
	}
	return idp
}
