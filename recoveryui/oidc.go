package recoveryui

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/twostep-auth/twostep/account"
	"github.com/twostep-auth/twostep/internal/oidc"
	"github.com/twostep-auth/twostep/internal/store"
)

const oidcCookie = "twostep_oidc"

// oidcFlowCookie is the cookie that ties a provider's answer to the browser
// that started the flow. Over HTTPS it is a `__Host-` cookie: a sibling
// subdomain (or a network attacker on plain HTTP) cannot plant its own
// flow key in the victim's browser, which would sign the victim in as the
// attacker's provider account (login CSRF). The flow comes back to the
// host it started on, so cookie_domain does not matter here.
func oidcFlowCookie(secure bool, value string, maxAge int) *http.Cookie {
	c := &http.Cookie{Name: oidcCookie, Value: value, Path: Prefix + "oidc/", HttpOnly: true,
		Secure: secure, SameSite: http.SameSiteLaxMode, MaxAge: maxAge}
	if secure {
		c.Name, c.Path = "__Host-"+oidcCookie, "/"
	}
	return c
}

// providerView is a login button.
type providerView struct {
	Name, Label, Problem string
}

func (p *Portal) providerViews() []providerView {
	var out []providerView
	for _, pr := range p.Providers {
		v := providerView{Name: pr.Name(), Label: pr.Label()}
		if ok, err := pr.Ready(); !ok && err != nil {
			v.Problem = providerTitle(pr) + " is unreachable right now"
		}
		out = append(out, v)
	}
	return out
}

func (p *Portal) provider(name string) *oidc.Provider {
	for _, pr := range p.Providers {
		if pr.Name() == name {
			return pr
		}
	}
	return nil
}

// oidcPage serves POST /.twostep/oidc/{name} (the login button: start the
// flow; with reauth=1, the "Confirm with …" button of a signed-in user who
// exists only at that provider) and GET /.twostep/oidc/{name}/callback
// (the provider's answer).
func (p *Portal) oidcPage(w http.ResponseWriter, r *http.Request, env Env, rest string) {
	name, sub, _ := strings.Cut(rest, "/")
	pr := p.provider(name)
	if pr == nil {
		p.fail(w, r, http.StatusNotFound, "not_found", "There is no such sign-in provider.")
		return
	}
	base := requestOrigin(r, env)
	switch {
	case sub == "" && r.Method == http.MethodPost:
		if !p.parseForm(w, r) {
			return
		}
		ret := p.safeReturn(r, env, r.PostFormValue("return"))
		start := pr.Start
		if r.PostFormValue("reauth") == "1" {
			res, err := p.resolve(r.Context(), r, env)
			if err != nil {
				p.answerErr(w, r, err)
				return
			}
			if res == nil || !res.External || res.Session.Pending["provider"] != name ||
				(res.Session.State != store.StateOneFactor && res.Session.State != store.StateTwoFactor) {
				p.fail(w, r, http.StatusForbidden, "forbidden", "Only a signed-in account of "+providerTitle(pr)+" can be confirmed there.")
				return
			}
			start = pr.StartReauth
		}
		authURL, flow, err := start(r.Context(), base+Prefix+"oidc/"+name+"/callback", ret)
		if err != nil {
			p.log().Warn("provider unavailable", zap.String("provider", name), zap.Error(err))
			p.renderLogin(w, r, env, ret, http.StatusServiceUnavailable, providerTitle(pr)+" is unavailable right now. Sign in with your password instead.")
			return
		}
		key, err := account.NewRandom(32)
		if err != nil {
			p.answerErr(w, r, err)
			return
		}
		b, _ := json.Marshal(flow)
		if err := p.Account.PutFlow(r.Context(), key, b, 10*time.Minute); err != nil {
			p.answerErr(w, r, err)
			return
		}
		// Lax so that the provider's redirect back (a top-level GET) carries it.
		http.SetCookie(w, oidcFlowCookie(env.Secure, key, 600))
		http.Redirect(w, r, authURL, http.StatusSeeOther)
	case sub == "callback" && isSafeMethod(r.Method):
		p.oidcCallback(w, r, env, pr)
	default:
		p.methodNotAllowed(w, r, "POST")
	}
}

func (p *Portal) oidcCallback(w http.ResponseWriter, r *http.Request, env Env, pr *oidc.Provider) {
	gone := oidcFlowCookie(env.Secure, "", -1)
	c, err := r.Cookie(gone.Name)
	http.SetCookie(w, gone)
	if err != nil || len(c.Value) < 32 || len(c.Value) > 128 {
		p.renderLogin(w, r, env, "/", http.StatusBadRequest, "That sign-in did not start on this browser. Try again.")
		return
	}
	b, err := p.Account.TakeFlow(r.Context(), c.Value)
	if errors.Is(err, account.ErrNotFound) {
		p.renderLogin(w, r, env, "/", http.StatusBadRequest, "That sign-in has expired or was already used. Try again.")
		return
	}
	if err != nil {
		p.answerErr(w, r, err)
		return
	}
	var flow oidc.Flow
	if err := json.Unmarshal(b, &flow); err != nil || flow.Provider != pr.Name() {
		p.renderLogin(w, r, env, "/", http.StatusBadRequest, "That sign-in did not match. Try again.")
		return
	}
	ret := p.safeReturn(r, env, flow.ReturnURL)
	id, err := pr.Finish(r.Context(), &flow, r.URL.Query(), time.Now())
	if flow.Reauth {
		p.reauthCallback(w, r, env, pr, id, err, ret)
		return
	}
	if errors.Is(err, oidc.ErrUnknownUser) {
		p.log().Info("provider sign-in refused", zap.String("provider", pr.Name()), zap.Error(err))
		p.renderLogin(w, r, env, ret, http.StatusForbidden, noAccess(pr))
		return
	}
	if err != nil {
		p.log().Info("provider sign-in refused", zap.String("provider", pr.Name()), zap.Error(err))
		status := http.StatusUnauthorized
		if errors.Is(err, oidc.ErrUnavailable) {
			status = http.StatusServiceUnavailable
		}
		p.renderLogin(w, r, env, ret, status, "Signing in with "+providerTitle(pr)+" did not work: "+oidcProblem(err))
		return
	}
	res, err := p.Account.SignInExternal(r.Context(), account.ExternalIdentity{
		Provider: pr.Name(), Subject: id.Subject, Username: id.Username, Email: id.Email, Name: id.Name,
		// Finish admits a user missing from the users file only with
		// allow_unknown_users.
		Groups: id.Groups, MFA: id.MFA, AuthTime: id.AuthTime, AllowUnknown: !id.Known,
	}, env.Client)
	if errors.Is(err, account.ErrInvalidCredentials) || errors.Is(err, account.ErrAccountLinked) {
		// One answer (noAccess) for an unknown or disabled user and for a
		// name that another provider account owns: the page must not
		// tell which names exist here. The log says which (an operator
		// frees a name whose provider account was re-created with
		// reset-2sv).
		p.log().Info("provider sign-in refused", zap.String("provider", pr.Name()), zap.String("user", id.Username), zap.Error(err))
		p.renderLogin(w, r, env, ret, http.StatusForbidden, noAccess(pr))
		return
	}
	if err != nil {
		p.answerErr(w, r, err)
		return
	}
	p.setSession(w, env, res.Token, res.Session.Expires)
	dest := ret
	switch res.Session.State {
	case store.StateSecondFactor:
		dest = Prefix + "challenge?return=" + url.QueryEscape(ret)
	case store.StateEnrollment:
		dest = Prefix + "settings?enroll=1&return=" + url.QueryEscape(ret)
	}
	http.Redirect(w, r, dest, http.StatusSeeOther)
}

// reauthCallback ends a confirmation flow: the signed-in session is marked
// as confirmed (account.Reauthenticated) and the browser goes back.
func (p *Portal) reauthCallback(w http.ResponseWriter, r *http.Request, env Env, pr *oidc.Provider, id *oidc.Identity, err error, ret string) {
	if err != nil {
		p.log().Info("provider confirmation refused", zap.String("provider", pr.Name()), zap.Error(err))
		p.fail(w, r, http.StatusUnauthorized, "invalid_credentials", "Confirming with "+providerTitle(pr)+" did not work: "+oidcProblem(err))
		return
	}
	res, err := p.resolve(r.Context(), r, env)
	if err != nil {
		p.answerErr(w, r, err)
		return
	}
	if res == nil {
		http.Redirect(w, r, Prefix+"login?return="+url.QueryEscape(ret), http.StatusSeeOther)
		return
	}
	err = p.Account.Reauthenticated(r.Context(), res, account.ExternalIdentity{
		Provider: pr.Name(), Subject: id.Subject, Username: id.Username,
	}, env.Client)
	if errors.Is(err, account.ErrForbidden) {
		p.fail(w, r, http.StatusForbidden, "forbidden", "You confirmed with another "+providerTitle(pr)+" account than the one signed in here.")
		return
	}
	if err != nil {
		p.answerErr(w, r, err)
		return
	}
	http.Redirect(w, r, ret, http.StatusSeeOther)
}

// noAccess is the one refusal of a provider account that may not sign
// in: whether its name is missing from the users file (oidc.ErrUnknownUser),
// disabled, or owned by another provider account, in the same words, so
// that the page does not tell a stranger which names exist here.
func noAccess(pr *oidc.Provider) string {
	return "Your " + providerTitle(pr) + " account has no access to this site."
}

func oidcProblem(err error) string {
	switch {
	case errors.Is(err, oidc.ErrStaleAuth):
		return "it did not ask for your password again."
	case errors.Is(err, oidc.ErrState):
		return "the answer did not belong to this sign-in."
	case errors.Is(err, oidc.ErrProviderError):
		return strings.TrimPrefix(err.Error(), "oidc: ") + "."
	case errors.Is(err, oidc.ErrExchange):
		return "the provider refused the sign-in code (it may have been used already)."
	case errors.Is(err, oidc.ErrToken):
		return "the provider's token did not check out."
	case errors.Is(err, oidc.ErrNoUsername):
		return "the provider did not say who you are (no user name or verified email)."
	case errors.Is(err, oidc.ErrFlowExpired):
		return "it took too long. Try again."
	case errors.Is(err, oidc.ErrUnknownUser):
		return "your account there has no access to this site."
	case errors.Is(err, oidc.ErrUnavailable):
		return "the provider is unreachable right now. Sign in with your password instead."
	}
	return "try again."
}

// renderLogin shows the login page with an error (provider problems).
func (p *Portal) renderLogin(w http.ResponseWriter, r *http.Request, env Env, ret string, status int, msg string) {
	csrf, err := p.csrfFor(w, r, env)
	if err != nil {
		p.answerErr(w, r, err)
		return
	}
	p.render(w, status, "login.html", pageData{Title: "Sign in", CSRF: p.Account.CSRFToken(csrf), Return: ret, Error: msg, Providers: p.providerViews()})
}

// providerTitle names a provider in sentences: "Example" for a button
// labelled "Sign in with Example", else the label or the name.
func providerTitle(pr *oidc.Provider) string {
	if t, ok := strings.CutPrefix(pr.Label(), "Sign in with "); ok && t != "" {
		return t
	}
	if pr.Label() != "" {
		return pr.Label()
	}
	return pr.Name()
}
