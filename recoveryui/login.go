package recoveryui

import (
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/twostep-auth/twostep/account"
	"github.com/twostep-auth/twostep/internal/store"
)

// loginPage serves GET (the form) and POST (a form submission).
func (p *Portal) loginPage(w http.ResponseWriter, r *http.Request, env Env) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		ret := p.safeReturn(r, env, r.URL.Query().Get("return"))
		res, err := p.resolve(r.Context(), r, env)
		if err != nil {
			p.answerErr(w, r, err)
			return
		}
		if res != nil && (res.Session.State == store.StateOneFactor || res.Session.State == store.StateTwoFactor) {
			http.Redirect(w, r, ret, http.StatusSeeOther)
			return
		}
		csrf, err := p.csrfFor(w, r, env)
		if err != nil {
			p.answerErr(w, r, err)
			return
		}
		d := pageData{Title: "Sign in", CSRF: p.Account.CSRFToken(csrf), Return: ret, Providers: p.providerViews()}
		if r.URL.Query().Get("signed_out") == "1" {
			d.Notice = "You have signed out."
		}
		p.render(w, http.StatusOK, "login.html", d)
	case http.MethodPost:
		p.loginSubmit(w, r, env)
	default:
		p.methodNotAllowed(w, r, "GET, POST")
	}
}

func (p *Portal) loginSubmit(w http.ResponseWriter, r *http.Request, env Env) {
	r.Body = http.MaxBytesReader(w, r.Body, MaxFormBody)
	if err := r.ParseForm(); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			p.fail(w, r, http.StatusRequestEntityTooLarge, "too_large", "The form is too large.")
			return
		}
		p.fail(w, r, http.StatusBadRequest, "invalid_request", "The form could not be read.")
		return
	}
	ret := p.safeReturn(r, env, r.PostFormValue("return"))
	if !p.checkCSRF(r) {
		p.fail(w, r, http.StatusForbidden, "forbidden", "This form has expired. Go back, reload the page and try again.")
		return
	}
	csrf, err := p.csrfFor(w, r, env)
	if err != nil {
		p.answerErr(w, r, err)
		return
	}
	username := strings.TrimSpace(r.PostFormValue("username"))
	d := pageData{Title: "Sign in", CSRF: p.Account.CSRFToken(csrf), Return: ret, Username: username, Providers: p.providerViews()}
	if username == "" || r.PostFormValue("password") == "" {
		d.Error = "Enter your username and your password."
		p.render(w, http.StatusBadRequest, "login.html", d)
		return
	}
	res, err := p.Account.SignIn(r.Context(), username, r.PostFormValue("password"), env.Client)
	if errors.Is(err, account.ErrInvalidCredentials) {
		d.Error = "Incorrect username or password."
		p.render(w, http.StatusUnauthorized, "login.html", d)
		return
	}
	if err != nil {
		var rl *account.RateLimitedError
		if errors.As(err, &rl) {
			w.Header().Set("Retry-After", retryAfterSeconds(rl.RetryAfter))
			d.Error = "Too many failed attempts. Try again in " + humanDuration(rl.RetryAfter) + "."
			p.render(w, http.StatusTooManyRequests, "login.html", d)
			return
		}
		p.answerErr(w, r, err)
		return
	}
	p.setSession(w, env, res.Token, res.Session.Expires)
	if res.OfferTwoStep {
		// An approved recovery turned two-step off: offer it again.
		http.Redirect(w, r, Prefix+"settings?offer=1&return="+url.QueryEscape(ret), http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, ret, http.StatusSeeOther)
}

// logoutPage: GET asks for confirmation (GET never changes state), POST
// signs out.
func (p *Portal) logoutPage(w http.ResponseWriter, r *http.Request, env Env) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		csrf, err := p.csrfFor(w, r, env)
		if err != nil {
			p.answerErr(w, r, err)
			return
		}
		res, err := p.resolve(r.Context(), r, env)
		if err != nil {
			p.answerErr(w, r, err)
			return
		}
		d := pageData{Title: "Sign out", CSRF: p.Account.CSRFToken(csrf)}
		if res != nil {
			d.User = displayName(res)
		}
		p.render(w, http.StatusOK, "logout.html", d)
	case http.MethodPost:
		r.Body = http.MaxBytesReader(w, r.Body, MaxFormBody)
		if err := r.ParseForm(); err != nil || !p.checkCSRF(r) {
			p.fail(w, r, http.StatusForbidden, "forbidden", "This form has expired. Go back, reload the page and try again.")
			return
		}
		res, err := p.resolve(r.Context(), r, env)
		if err != nil {
			p.answerErr(w, r, err)
			return
		}
		if err := p.Account.SignOut(r.Context(), p.SessionToken(r, env.Secure), env.Client); err != nil {
			p.answerErr(w, r, err)
			return
		}
		p.clearSession(w, env)
		// Signed in through a provider that offers RP-initiated logout:
		// offer to sign out there too.
		if res != nil && res.Session.Pending != nil {
			if pr := p.provider(res.Session.Pending["provider"]); pr != nil {
				if u, ok := pr.EndSessionURL("", requestOrigin(r, env)+Prefix+"login?signed_out=1"); ok {
					csrf, _ := p.csrfFor(w, r, env)
					p.render(w, http.StatusOK, "logout.html", pageData{Title: "Signed out", CSRF: p.Account.CSRFToken(csrf),
						Notice: "You have signed out of this site.", Return: u, Secret: providerTitle(pr)})
					return
				}
			}
		}
		http.Redirect(w, r, Prefix+"login?signed_out=1", http.StatusSeeOther)
	default:
		p.methodNotAllowed(w, r, "GET, POST")
	}
}

func displayName(res *account.Resolved) string {
	if res.User.DisplayName != "" {
		return res.User.DisplayName
	}
	return res.User.Name
}
