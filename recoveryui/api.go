package recoveryui

import (
	"errors"
	"mime"
	"net/http"
	"strings"

	"github.com/twostep-auth/twostep/account"
	"github.com/twostep-auth/twostep/internal/store"
)

// serveAPI routes /.twostep/api/<name>.
func (p *Portal) serveAPI(w http.ResponseWriter, r *http.Request, env Env, name string) {
	if !isSafeMethod(r.Method) && !apiCaller(w, r, name) {
		return
	}
	switch name {
	case "login":
		if r.Method != http.MethodPost {
			p.methodNotAllowed(w, r, "POST")
			return
		}
		p.apiLogin(w, r, env)
	case "logout":
		if r.Method != http.MethodPost {
			p.methodNotAllowed(w, r, "POST")
			return
		}
		if err := p.Account.SignOut(r.Context(), p.SessionToken(r, env.Secure), env.Client); err != nil {
			p.answerErr(w, r, err)
			return
		}
		p.clearSession(w, env)
		w.WriteHeader(http.StatusNoContent)
	case "me":
		if !isSafeMethod(r.Method) {
			p.methodNotAllowed(w, r, "GET")
			return
		}
		p.apiMe(w, r, env)
	case "outbox":
		if !isSafeMethod(r.Method) {
			p.methodNotAllowed(w, r, "GET")
			return
		}
		p.apiOutbox(w, r)
	case "devices":
		p.apiDevices(w, r, env, "")
	case "sessions/revoke_all":
		if r.Method != http.MethodPost {
			p.methodNotAllowed(w, r, "POST")
			return
		}
		p.apiRevokeAll(w, r, env)
	case "recovery":
		p.apiRecovery(w, r, env, "")
	case "review":
		p.apiReview(w, r, env, "")
	default:
		if id, ok := strings.CutPrefix(name, "recovery/"); ok && id != "" && !strings.Contains(id, "/") {
			p.apiRecovery(w, r, env, id)
			return
		}
		if rest, ok := strings.CutPrefix(name, "review/"); ok && rest != "" {
			p.apiReview(w, r, env, rest)
			return
		}
		if id, ok := deviceID(name); ok {
			p.apiDevices(w, r, env, id)
			return
		}
		if h, ok := p.postAPI()[name]; ok {
			if r.Method != http.MethodPost {
				p.methodNotAllowed(w, r, "POST")
				return
			}
			h(w, r, env)
			return
		}
		WriteError(w, http.StatusNotFound, "not_found", "There is no such API endpoint.")
	}
}

// apiCaller refuses a state-changing API request that an HTML form can
// send, answering it itself. The API carries no CSRF token: it relies on
// a JSON body, which a form cannot send cross-origin without a CORS
// preflight we never grant. Endpoints without a body (logout,
// sessions/revoke_all, totp/enroll) and the multipart upload would
// otherwise take a form posted by any page the origin check counts as
// ours: a sibling under cookie_domain, or HTML injected into the protected
// app itself. So a form's navigation (Sec-Fetch-Mode: navigate) is
// refused, and, for browsers that send no Fetch Metadata, so is any
// content type but JSON outside the upload.
func apiCaller(w http.ResponseWriter, r *http.Request, name string) bool {
	if m := r.Header.Get("Sec-Fetch-Mode"); m == "navigate" || m == "nested-navigate" {
		WriteError(w, http.StatusForbidden, "forbidden", "The API does not take form submissions; the pages under /.twostep/ do.")
		return false
	}
	if name == "recovery" {
		return true // multipart, SPEC §4
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			WriteError(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "The body must be JSON (Content-Type: application/json), or empty.")
			return false
		}
	}
	return true
}

// postAPI lists the POST endpoints of the two-step flows.
func (p *Portal) postAPI() map[string]func(http.ResponseWriter, *http.Request, Env) {
	return map[string]func(http.ResponseWriter, *http.Request, Env){
		"code/send":     p.apiCodeSend,
		"code/verify":   p.apiCodeVerify,
		"two_step":      p.apiTwoStep,
		"totp/enroll":   p.apiTOTPEnroll,
		"totp/confirm":  func(w http.ResponseWriter, r *http.Request, e Env) { p.apiConfirm(w, r, e, false) },
		"phone":         p.apiPhone,
		"phone/confirm": func(w http.ResponseWriter, r *http.Request, e Env) { p.apiConfirm(w, r, e, true) },
		"backup_codes":  p.apiBackupCodes,
	}
}

type loginRequest struct {
	Username *string `json:"username"`
	Password *string `json:"password"`
}

// LoginResponse is the body of a successful api/login.
type LoginResponse struct {
	State   string   `json:"state"`
	Level   string   `json:"level,omitempty"`
	Methods []string `json:"methods,omitempty"`
}

func (p *Portal) apiLogin(w http.ResponseWriter, r *http.Request, env Env) {
	var req loginRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	switch {
	case req.Username == nil || *req.Username == "":
		WriteError(w, http.StatusBadRequest, "invalid_request", "Field \"username\" is required and must not be empty.")
		return
	case req.Password == nil || *req.Password == "":
		WriteError(w, http.StatusBadRequest, "invalid_request", "Field \"password\" is required and must not be empty.")
		return
	}
	res, err := p.Account.SignIn(r.Context(), *req.Username, *req.Password, env.Client)
	if errors.Is(err, account.ErrInvalidCredentials) {
		WriteError(w, http.StatusUnauthorized, "invalid_credentials", "Incorrect username or password.")
		return
	}
	if err != nil {
		p.answerErr(w, r, err)
		return
	}
	p.setSession(w, env, res.Token, res.Session.Expires)
	WriteJSON(w, http.StatusOK, stateResponse(res.Session, res.Methods))
}

func stateResponse(s *store.Session, methods []string) LoginResponse {
	switch s.State {
	case store.StateOneFactor, store.StateTwoFactor:
		return LoginResponse{State: "authenticated", Level: s.State.String()}
	case store.StateEnrollment:
		return LoginResponse{State: "enrollment_required"}
	}
	if methods == nil {
		methods = []string{}
	}
	return LoginResponse{State: "second_factor", Methods: methods}
}

// MeResponse is the body of api/me.
type MeResponse struct {
	User    string      `json:"user"`
	Name    string      `json:"name"`
	Email   string      `json:"email"`
	Groups  []string    `json:"groups"`
	Level   string      `json:"level"`
	TwoStep TwoStepInfo `json:"two_step"`
}

// TwoStepInfo says whether two-step is on and with which methods.
type TwoStepInfo struct {
	Enabled bool     `json:"enabled"`
	Methods []string `json:"methods"`
}

func (p *Portal) apiMe(w http.ResponseWriter, r *http.Request, env Env) {
	res, err := p.resolve(r.Context(), r, env)
	if err != nil {
		p.answerErr(w, r, err)
		return
	}
	if res == nil {
		WriteError(w, http.StatusUnauthorized, "unauthenticated", "Sign in first.")
		return
	}
	if res.Session.State == store.StateSecondFactor {
		WriteError(w, http.StatusUnauthorized, "second_factor_required", "Enter your verification code first.")
		return
	}
	groups := res.User.Groups
	if groups == nil {
		groups = []string{}
	}
	info, err := p.Account.TwoStep(r.Context(), res.User)
	if err != nil {
		p.answerErr(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, MeResponse{
		User:    res.User.Name,
		Name:    res.User.DisplayName,
		Email:   res.User.Email,
		Groups:  groups,
		Level:   res.Session.State.String(),
		TwoStep: TwoStepInfo{Enabled: info.Enabled, Methods: info.Methods},
	})
}
