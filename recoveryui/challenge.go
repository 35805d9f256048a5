package recoveryui

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/twostep-auth/twostep/account"
	"github.com/twostep-auth/twostep/internal/store"
)

var methodLabels = map[string]string{
	account.MethodTOTP:   "Use your authenticator app",
	account.MethodSMS:    "Text me a code",
	account.MethodVoice:  "Call me with a code",
	account.MethodEmail:  "Email me a code",
	account.MethodBackup: "Use a backup code",
}

func views(methods []string, skip string) []methodView {
	var out []methodView
	for _, m := range methods {
		if m == skip {
			continue
		}
		out = append(out, methodView{Name: m, Label: methodLabels[m]})
	}
	return out
}

// parseForm reads a bounded form body and checks its CSRF token, answering
// the error itself.
func (p *Portal) parseForm(w http.ResponseWriter, r *http.Request) bool {
	r.Body = http.MaxBytesReader(w, r.Body, MaxFormBody)
	if err := r.ParseForm(); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			p.fail(w, r, http.StatusRequestEntityTooLarge, "too_large", "The form is too large.")
			return false
		}
		p.fail(w, r, http.StatusBadRequest, "invalid_request", "The form could not be read.")
		return false
	}
	if !p.checkCSRF(r) {
		p.fail(w, r, http.StatusForbidden, "forbidden", "This form has expired. Go back, reload the page and try again.")
		return false
	}
	return true
}

// pageSession resolves the session for a page; strangers are sent to sign
// in (and false is returned).
func (p *Portal) pageSession(w http.ResponseWriter, r *http.Request, env Env, ret string) (*account.Resolved, bool) {
	res, err := p.resolve(r.Context(), r, env)
	if err != nil {
		p.answerErr(w, r, err)
		return nil, false
	}
	if res == nil {
		http.Redirect(w, r, Prefix+"login?return="+url.QueryEscape(ret), http.StatusSeeOther)
		return nil, false
	}
	return res, true
}

// challengePage: enter a code, pick another method (SPEC §4).
func (p *Portal) challengePage(w http.ResponseWriter, r *http.Request, env Env) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead && r.Method != http.MethodPost {
		p.methodNotAllowed(w, r, "GET, POST")
		return
	}
	if r.Method == http.MethodPost && !p.parseForm(w, r) {
		return
	}
	ret := p.safeReturn(r, env, r.FormValue("return"))
	res, ok := p.pageSession(w, r, env, ret)
	if !ok {
		return
	}
	if st := res.Session.State; st != store.StateSecondFactor && st != store.StateTwoFactor {
		// Nothing to verify: two-step is off (or enrolment is due).
		dest := ret
		if st == store.StateEnrollment {
			dest = Prefix + "settings?enroll=1&return=" + url.QueryEscape(ret)
		}
		http.Redirect(w, r, dest, http.StatusSeeOther)
		return
	}
	methods, err := p.Account.Methods(r.Context(), res.User)
	if err != nil {
		p.answerErr(w, r, err)
		return
	}
	csrf, err := p.csrfFor(w, r, env)
	if err != nil {
		p.answerErr(w, r, err)
		return
	}
	method := r.FormValue("method")
	if !slices.Contains(methods, method) && len(methods) > 0 {
		method = methods[0]
	}
	d := pageData{Title: "Two-step verification", CSRF: p.Account.CSRFToken(csrf), Return: ret,
		Method: method, Methods: views(methods, method)}
	if len(methods) == 0 {
		d.Error = "No verification method is set up for this account. Ask your administrator to reset two-step verification."
		p.render(w, http.StatusConflict, "challenge.html", d)
		return
	}
	if r.FormValue("step_up") == "1" && res.Session.State == store.StateTwoFactor {
		// Sent here by the settings page: a change of sign-in methods.
		d.Notice = "To change how you sign in, confirm it's you with a code first."
	}
	status := http.StatusOK
	if r.Method == http.MethodPost {
		switch r.PostFormValue("action") {
		case "send":
			out, err := p.Account.SendCode(r.Context(), res, method, env.Client)
			if err != nil {
				status = p.pageError(w, &d, err, methods)
				break
			}
			d.CodeSent = true
			d.Notice = "We sent a code to " + out.SentTo + "."
			if method == account.MethodVoice {
				d.Notice = "We are calling " + out.SentTo + " to read you a code."
			}
		case "verify":
			code := strings.TrimSpace(r.PostFormValue("code"))
			if code == "" {
				d.Error = "Enter the code."
				d.CodeSent = true
				status = http.StatusBadRequest
				break
			}
			out, err := p.Account.VerifyCode(r.Context(), res, method, code, r.PostFormValue("trust") == "1", env.Client)
			if errors.Is(err, account.ErrAlreadyVerified) {
				// The form went twice; the first submission signed in and
				// set the new cookie: go on as it did.
				http.Redirect(w, r, ret, http.StatusSeeOther)
				return
			}
			if err != nil {
				d.CodeSent = true
				status = p.pageError(w, &d, err, methods)
				break
			}
			p.setSession(w, env, out.Token, out.Session.Expires)
			if out.DeviceToken != "" {
				p.setDevice(w, env, out.DeviceToken, out.Device.Expires)
			}
			dest := ret
			if method == account.MethodBackup && out.BackupLeft <= 3 {
				dest = Prefix + "settings?few_backup=1&return=" + url.QueryEscape(ret)
			}
			http.Redirect(w, r, dest, http.StatusSeeOther)
			return
		default:
			d.Error = "Unknown action."
			status = http.StatusBadRequest
		}
	}
	// The page asks for a code already on its way (after a reload, the
	// back button, or a resend refused in the cooldown).
	if !d.CodeSent && (method == account.MethodSMS || method == account.MethodVoice || method == account.MethodEmail) {
		d.CodeSent, _ = p.Account.CodePending(r.Context(), res, method)
	}
	p.render(w, status, "challenge.html", d)
}

// pageError turns a use-case error into words on the page and a status.
func (p *Portal) pageError(w http.ResponseWriter, d *pageData, err error, methods []string) int {
	var rl *account.RateLimitedError
	var df *account.DeliveryFailedError
	var in *account.InvalidInputError
	switch {
	case errors.Is(err, account.ErrInvalidCode):
		d.Error = "That code didn't work. Check it and try again, or ask for a new one."
		return http.StatusUnauthorized
	case errors.Is(err, account.ErrInvalidCredentials):
		d.Error = "Incorrect password."
		return http.StatusUnauthorized
	case errors.Is(err, account.ErrReauthRequired):
		d.Error = "Confirm it's you with your sign-in provider first (the button below), then try again."
		return http.StatusForbidden
	case errors.As(err, &rl) && rl.TooManyTries():
		d.Error = "That code was tried too many times. Ask for a new one."
		w.Header().Set("Retry-After", retryAfterSeconds(rl.RetryAfter))
		return http.StatusTooManyRequests
	case errors.As(err, &rl):
		d.Error = "Please wait " + humanDuration(rl.RetryAfter) + " before trying again."
		w.Header().Set("Retry-After", retryAfterSeconds(rl.RetryAfter))
		return http.StatusTooManyRequests
	case errors.As(err, &df):
		p.log().Warn("delivery failed", deliveryFields(df)...)
		d.Error = "We couldn't send the code by " + channelWords(df.Channel) + ". Try another way below."
		d.Alternatives = views(df.Alternatives, "")
		d.CodeSent = false
		return http.StatusBadGateway
	case errors.As(err, &in):
		d.Error = in.Msg
		return http.StatusBadRequest
	case errors.Is(err, account.ErrNoMethod):
		d.Error = "That method is not set up for this account."
		return http.StatusConflict
	case errors.Is(err, account.ErrNothingToConfirm):
		d.Error = "The authenticator set-up expired. Start again: scan the new QR code and enter its code."
		return http.StatusConflict
	case errors.Is(err, account.ErrConflict):
		d.Error = "Set up and confirm a verification method first."
		return http.StatusConflict
	case errors.Is(err, account.ErrForbidden):
		d.Error = "This needs a recent second factor: sign in again with your code."
		return http.StatusForbidden
	}
	p.log().Error("portal error", errField(err))
	d.Error = "The sign-in service is unavailable right now. Try again shortly."
	return http.StatusServiceUnavailable
}

// helpPage: "Didn't get the code?"
func (p *Portal) helpPage(w http.ResponseWriter, r *http.Request, env Env) {
	if !isSafeMethod(r.Method) {
		p.methodNotAllowed(w, r, "GET")
		return
	}
	ret := p.safeReturn(r, env, r.URL.Query().Get("return"))
	res, ok := p.pageSession(w, r, env, ret)
	if !ok {
		return
	}
	if st := res.Session.State; st != store.StateSecondFactor && st != store.StateTwoFactor {
		http.Redirect(w, r, ret, http.StatusSeeOther)
		return
	}
	methods, err := p.Account.Methods(r.Context(), res.User)
	if err != nil {
		p.answerErr(w, r, err)
		return
	}
	csrf, err := p.csrfFor(w, r, env)
	if err != nil {
		p.answerErr(w, r, err)
		return
	}
	current := r.URL.Query().Get("method")
	d := pageData{Title: "Didn't get the code?", CSRF: p.Account.CSRFToken(csrf), Return: ret,
		Method: current, Methods: views(methods, ""), Recover: p.Account.RecoveryEnabled(),
		Secret: p.Account.RecoverySettings().Expected}
	p.render(w, http.StatusOK, "help.html", d)
}

func (p *Portal) outboxPage(w http.ResponseWriter, r *http.Request) {
	if p.Outbox == nil {
		p.fail(w, r, http.StatusNotFound, "not_found", "There is no such page.")
		return
	}
	if !isSafeMethod(r.Method) {
		p.methodNotAllowed(w, r, "GET")
		return
	}
	p.render(w, http.StatusOK, "outbox.html", pageData{Title: "Developer outbox", Outbox: p.Outbox.List()})
}
