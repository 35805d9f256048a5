package recoveryui

import (
	"encoding/base64"
	"errors"
	"net/http"

	"github.com/twostep-auth/twostep/account"
	"github.com/twostep-auth/twostep/internal/store"
)

// needSession resolves the caller's session for an API call, answering 401
// itself when there is none.
func (p *Portal) needSession(w http.ResponseWriter, r *http.Request, env Env) *account.Resolved {
	res, err := p.resolve(r.Context(), r, env)
	if err != nil {
		p.answerErr(w, r, err)
		return nil
	}
	if res == nil {
		WriteError(w, http.StatusUnauthorized, "unauthenticated", "Sign in first.")
		return nil
	}
	return res
}

// answerUseCase maps the two-step use cases' errors to SPEC §4 answers.
func (p *Portal) answerUseCase(w http.ResponseWriter, r *http.Request, res *account.Resolved, err error) {
	var in *account.InvalidInputError
	var df *account.DeliveryFailedError
	var rl *account.RateLimitedError
	switch {
	case errors.As(err, &in):
		p.fail(w, r, http.StatusBadRequest, "invalid_request", in.Msg)
	case errors.Is(err, account.ErrInvalidCode):
		p.fail(w, r, http.StatusUnauthorized, "invalid_code", "That code is wrong, expired or already used.")
	case errors.Is(err, account.ErrInvalidCredentials):
		p.fail(w, r, http.StatusUnauthorized, "invalid_credentials", "Incorrect password.")
	case errors.Is(err, account.ErrNothingToConfirm):
		p.fail(w, r, http.StatusConflict, "conflict", "No authenticator app is waiting to be confirmed for this session: start with POST totp/enroll (a pending one expires after 15 minutes, or when the session gets a new token).")
	case errors.Is(err, account.ErrStepUp):
		// As a max_age rule answers (SPEC §3): give a code again.
		p.fail(w, r, http.StatusUnauthorized, "second_factor_required", "Enter a verification code again first (POST code/send, code/verify), then retry.")
	case errors.Is(err, account.ErrConflict):
		p.fail(w, r, http.StatusConflict, "conflict", "Set up and confirm a verification method first.")
	case errors.Is(err, account.ErrNoMethod):
		p.fail(w, r, http.StatusConflict, "conflict", "That method is not set up for this account.")
	case errors.Is(err, account.ErrForbidden):
		if res != nil && res.Session.State == store.StateSecondFactor {
			p.fail(w, r, http.StatusUnauthorized, "second_factor_required", "Enter your verification code first.")
			return
		}
		p.fail(w, r, http.StatusForbidden, "forbidden", "This session may not do that.")
	case errors.As(err, &df):
		p.log().Warn("delivery failed", deliveryFields(df)...)
		alts := df.Alternatives
		if alts == nil {
			alts = []string{}
		}
		WriteJSON(w, http.StatusBadGateway, struct {
			Error        string   `json:"error"`
			Message      string   `json:"message"`
			Alternatives []string `json:"alternatives"`
		}{"delivery_failed", "We could not send the code by " + channelWords(df.Channel) + ". Try another way.", alts})
	case errors.As(err, &rl) && rl.TooManyTries():
		w.Header().Set("Retry-After", retryAfterSeconds(rl.RetryAfter))
		p.fail(w, r, http.StatusTooManyRequests, "rate_limited", "That code was tried too many times. Ask for a new one.")
	default:
		p.answerErr(w, r, err)
	}
}

func channelWords(ch string) string {
	switch ch {
	case account.MethodSMS:
		return "text message"
	case account.MethodVoice:
		return "phone call"
	case account.MethodEmail:
		return "email"
	}
	return ch
}

type methodRequest struct {
	Method *string `json:"method"`
}

// SendResponse is the body of code/send and phone.
type SendResponse struct {
	SentTo      string `json:"sent_to"`
	ResendAfter int    `json:"resend_after"`
}

func (p *Portal) apiCodeSend(w http.ResponseWriter, r *http.Request, env Env) {
	var req methodRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	if req.Method == nil || *req.Method == "" {
		WriteError(w, http.StatusBadRequest, "invalid_request", `Field "method" is required: "sms", "voice" or "email".`)
		return
	}
	res := p.needSession(w, r, env)
	if res == nil {
		return
	}
	out, err := p.Account.SendCode(r.Context(), res, *req.Method, env.Client)
	if err != nil {
		p.answerUseCase(w, r, res, err)
		return
	}
	WriteJSON(w, http.StatusAccepted, SendResponse{SentTo: out.SentTo, ResendAfter: int(out.ResendAfter.Seconds())})
}

type verifyRequest struct {
	Method      *string `json:"method"`
	Code        *string `json:"code"`
	TrustDevice *bool   `json:"trust_device"`
}

func (p *Portal) apiCodeVerify(w http.ResponseWriter, r *http.Request, env Env) {
	var req verifyRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	switch {
	case req.Method == nil || *req.Method == "":
		WriteError(w, http.StatusBadRequest, "invalid_request", `Field "method" is required.`)
		return
	case req.Code == nil || *req.Code == "":
		WriteError(w, http.StatusBadRequest, "invalid_request", `Field "code" is required and must not be empty.`)
		return
	}
	res := p.needSession(w, r, env)
	if res == nil {
		return
	}
	trust := req.TrustDevice != nil && *req.TrustDevice
	out, err := p.Account.VerifyCode(r.Context(), res, *req.Method, *req.Code, trust, env.Client)
	if err != nil {
		p.answerUseCase(w, r, res, err)
		return
	}
	p.setSession(w, env, out.Token, out.Session.Expires)
	if out.DeviceToken != "" {
		p.setDevice(w, env, out.DeviceToken, out.Device.Expires)
	}
	WriteJSON(w, http.StatusOK, struct {
		State      string `json:"state"`
		Level      string `json:"level"`
		BackupLeft *int   `json:"backup_codes_left,omitempty"`
	}{"authenticated", "two_factor", backupLeft(*req.Method, out.BackupLeft)})
}

func backupLeft(method string, n int) *int {
	if method != account.MethodBackup {
		return nil
	}
	return &n
}

type twoStepRequest struct {
	Enabled  *bool   `json:"enabled"`
	Password *string `json:"password"`
	Code     *string `json:"code"`
}

func (p *Portal) apiTwoStep(w http.ResponseWriter, r *http.Request, env Env) {
	var req twoStepRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	if req.Enabled == nil {
		WriteError(w, http.StatusBadRequest, "invalid_request", `Field "enabled" is required (true or false).`)
		return
	}
	if !*req.Enabled && (req.Code == nil || *req.Code == "") {
		WriteError(w, http.StatusBadRequest, "invalid_request", `Field "code" is required to turn two-step off.`)
		return
	}
	res := p.needSession(w, r, env)
	if res == nil {
		return
	}
	// A user who exists only at an identity provider has no password here
	// (a fresh confirmation there stands in: account.ErrReauthRequired).
	if !*req.Enabled && !res.External && (req.Password == nil || *req.Password == "") {
		WriteError(w, http.StatusBadRequest, "invalid_request", `Field "password" is required to turn two-step off.`)
		return
	}
	err := p.Account.SetTwoStep(r.Context(), res, *req.Enabled, deref(req.Password), deref(req.Code), env.Client)
	if err != nil {
		p.answerUseCase(w, r, res, err)
		return
	}
	info, err := p.Account.TwoStep(r.Context(), res.User)
	if err != nil {
		p.answerErr(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, TwoStepInfo{Enabled: info.Enabled, Methods: info.Methods})
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// TOTPEnrollResponse is the body of totp/enroll.
type TOTPEnrollResponse struct {
	Secret     string `json:"secret"`
	OTPAuthURL string `json:"otpauth_url"`
	QRPNG      string `json:"qr_png"`
}

func (p *Portal) apiTOTPEnroll(w http.ResponseWriter, r *http.Request, env Env) {
	res := p.needSession(w, r, env)
	if res == nil {
		return
	}
	out, err := p.Account.EnrollTOTP(r.Context(), res)
	if err != nil {
		p.answerUseCase(w, r, res, err)
		return
	}
	WriteJSON(w, http.StatusOK, TOTPEnrollResponse{Secret: out.Secret, OTPAuthURL: out.URL, QRPNG: base64.StdEncoding.EncodeToString(out.QRPNG)})
}

type codeRequest struct {
	Code *string `json:"code"`
}

// ConfirmResponse is the body of totp/confirm and phone/confirm.
type ConfirmResponse struct {
	Codes []string `json:"codes,omitempty"`
}

func (p *Portal) apiConfirm(w http.ResponseWriter, r *http.Request, env Env, phone bool) {
	var req codeRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	if req.Code == nil || *req.Code == "" {
		WriteError(w, http.StatusBadRequest, "invalid_request", `Field "code" is required and must not be empty.`)
		return
	}
	res := p.needSession(w, r, env)
	if res == nil {
		return
	}
	var out *account.ConfirmResult
	var err error
	if phone {
		out, err = p.Account.ConfirmPhone(r.Context(), res, *req.Code, env.Client)
	} else {
		out, err = p.Account.ConfirmTOTP(r.Context(), res, *req.Code, env.Client)
	}
	if err != nil {
		p.answerUseCase(w, r, res, err)
		return
	}
	// The session goes on under a new token; the old one is ended.
	p.setSession(w, env, out.Token, out.Session.Expires)
	WriteJSON(w, http.StatusOK, ConfirmResponse{Codes: out.BackupCodes})
}

type phoneRequest struct {
	Phone  *string `json:"phone"`
	Method *string `json:"method"`
}

func (p *Portal) apiPhone(w http.ResponseWriter, r *http.Request, env Env) {
	var req phoneRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	if req.Phone == nil || *req.Phone == "" {
		WriteError(w, http.StatusBadRequest, "invalid_request", `Field "phone" is required, e.g. "+15551234567".`)
		return
	}
	if req.Method == nil || *req.Method == "" {
		WriteError(w, http.StatusBadRequest, "invalid_request", `Field "method" is required: "sms" or "voice" (how the code for the new number is sent).`)
		return
	}
	method := *req.Method
	res := p.needSession(w, r, env)
	if res == nil {
		return
	}
	out, err := p.Account.SetPhone(r.Context(), res, *req.Phone, method, env.Client)
	if err != nil {
		p.answerUseCase(w, r, res, err)
		return
	}
	WriteJSON(w, http.StatusAccepted, SendResponse{SentTo: out.SentTo, ResendAfter: int(out.ResendAfter.Seconds())})
}

type passwordRequest struct {
	Password *string `json:"password"`
}

func (p *Portal) apiBackupCodes(w http.ResponseWriter, r *http.Request, env Env) {
	var req passwordRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	res := p.needSession(w, r, env)
	if res == nil {
		return
	}
	if !res.External && (req.Password == nil || *req.Password == "") {
		WriteError(w, http.StatusBadRequest, "invalid_request", `Field "password" is required and must not be empty.`)
		return
	}
	codes, err := p.Account.RegenerateBackupCodes(r.Context(), res, deref(req.Password), env.Client)
	if err != nil {
		p.answerUseCase(w, r, res, err)
		return
	}
	WriteJSON(w, http.StatusOK, ConfirmResponse{Codes: codes})
}

func (p *Portal) apiOutbox(w http.ResponseWriter, r *http.Request) {
	if p.Outbox == nil {
		WriteError(w, http.StatusNotFound, "not_found", "There is no such API endpoint.")
		return
	}
	list := p.Outbox.List()
	if list == nil {
		WriteJSON(w, http.StatusOK, []struct{}{})
		return
	}
	WriteJSON(w, http.StatusOK, list)
}
