package recoveryui

import (
	"errors"
	"net/http"
	"strings"

	"github.com/twostep-auth/twostep/account"
	"github.com/twostep-auth/twostep/internal/store"
)

// signedIn: a full session (one_factor or two_factor), or an answer.
func (p *Portal) signedInAPI(w http.ResponseWriter, r *http.Request, env Env) *account.Resolved {
	res := p.needSession(w, r, env)
	if res == nil {
		return nil
	}
	switch res.Session.State {
	case store.StateOneFactor, store.StateTwoFactor:
		return res
	case store.StateSecondFactor:
		WriteError(w, http.StatusUnauthorized, "second_factor_required", "Enter your verification code first.")
	default:
		WriteError(w, http.StatusUnauthorized, "enrollment_required", "Set up two-step verification first.")
	}
	return nil
}

// apiDevices serves GET devices and DELETE devices/{id}.
func (p *Portal) apiDevices(w http.ResponseWriter, r *http.Request, env Env, id string) {
	res := p.signedInAPI(w, r, env)
	if res == nil {
		return
	}
	switch {
	case id == "" && isSafeMethod(r.Method):
		list, err := p.Account.Devices(r.Context(), res, env.Client.Device)
		if err != nil {
			p.answerUseCase(w, r, res, err)
			return
		}
		WriteJSON(w, http.StatusOK, list)
	case id != "" && r.Method == http.MethodDelete:
		err := p.Account.RevokeDevice(r.Context(), res.Session.User, id, env.Client)
		if errors.Is(err, account.ErrNotFound) {
			WriteError(w, http.StatusNotFound, "not_found", "There is no such device on your account.")
			return
		}
		if err != nil {
			p.answerUseCase(w, r, res, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	case id == "":
		p.methodNotAllowed(w, r, "GET")
	default:
		p.methodNotAllowed(w, r, "DELETE")
	}
}

func (p *Portal) apiRevokeAll(w http.ResponseWriter, r *http.Request, env Env) {
	res := p.signedInAPI(w, r, env)
	if res == nil {
		return
	}
	if err := p.Account.RevokeAll(r.Context(), res.Session.User, env.Client); err != nil {
		p.answerUseCase(w, r, res, err)
		return
	}
	p.clearSession(w, env)
	w.WriteHeader(http.StatusNoContent)
}

// revokeLinkPage serves the link in the new-device email: GET shows what
// will be revoked and one button; POST (CSRF-protected) revokes. The link
// is signed, so it works without signing in.
func (p *Portal) revokeLinkPage(w http.ResponseWriter, r *http.Request, env Env) {
	if r.Method == http.MethodPost {
		if !p.parseForm(w, r) {
			return
		}
	} else if !isSafeMethod(r.Method) {
		p.methodNotAllowed(w, r, "GET, POST")
		return
	}
	user, id, sig := r.FormValue("u"), r.FormValue("d"), r.FormValue("sig")
	if !p.Account.CheckRevokeLink(user, id, sig) {
		p.fail(w, r, http.StatusNotFound, "not_found", "This link is not valid. Sign in and use Login & security to manage your devices.")
		return
	}
	csrf, err := p.csrfFor(w, r, env)
	if err != nil {
		p.answerErr(w, r, err)
		return
	}
	d := pageData{Title: "Revoke a trusted browser", CSRF: p.Account.CSRFToken(csrf), User: user, Secret: id, Method: sig}
	if r.Method == http.MethodPost {
		err := p.Account.RevokeDevice(r.Context(), user, id, env.Client)
		switch {
		case errors.Is(err, account.ErrNotFound):
			d.Notice = "That browser was already revoked."
		case err != nil:
			p.answerErr(w, r, err)
			return
		default:
			d.Notice = "Done: that browser will be asked for a code again. If you didn't trust it yourself, change your password."
		}
		d.Secret = ""
	}
	p.render(w, http.StatusOK, "revoke.html", d)
}

func deviceID(rest string) (string, bool) {
	id, ok := strings.CutPrefix(rest, "devices/")
	if !ok || id == "" || strings.Contains(id, "/") || len(id) > 64 {
		return "", false
	}
	return id, true
}
