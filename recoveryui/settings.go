package recoveryui

import (
	"encoding/base64"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"strings"

	"go.uber.org/zap"

	"github.com/twostep-auth/twostep/account"
	"github.com/twostep-auth/twostep/internal/store"
)

func errField(err error) zap.Field { return zap.Error(err) }

// settingsPage is "Login & security": two-step on/off, the authenticator
// app, the phone, backup codes. With ?enroll=1 it walks a user through
// setting up a first method.
func (p *Portal) settingsPage(w http.ResponseWriter, r *http.Request, env Env) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead && r.Method != http.MethodPost {
		p.methodNotAllowed(w, r, "GET, POST")
		return
	}
	if r.Method == http.MethodPost && !p.parseForm(w, r) {
		return
	}
	retRaw := r.FormValue("return")
	ret := p.safeReturn(r, env, retRaw)
	self := Prefix + "settings"
	res, ok := p.pageSession(w, r, env, self)
	if !ok {
		return
	}
	if res.Session.State == store.StateSecondFactor {
		http.Redirect(w, r, Prefix+"challenge?return="+url.QueryEscape(self), http.StatusSeeOther)
		return
	}
	csrf, err := p.csrfFor(w, r, env)
	if err != nil {
		p.answerErr(w, r, err)
		return
	}
	d := pageData{Title: "Login & security", CSRF: p.Account.CSRFToken(csrf),
		Enroll: r.FormValue("enroll") == "1" || res.Session.State == store.StateEnrollment, User: displayName(res)}
	if retRaw != "" {
		d.Return = ret
	}
	if r.FormValue("offer") == "1" {
		d.Notice = "Welcome back. Your account was recovered and two-step verification is off: set it up again below to keep your account safe."
	}
	if r.FormValue("few_backup") == "1" {
		d.Notice = "You have few backup codes left. Make new ones below."
	}
	status := http.StatusOK
	if r.Method == http.MethodPost {
		status = p.settingsAction(w, r, env, res, &d)
	}
	if status == http.StatusSeeOther {
		return
	}
	info, err := p.Account.TwoStep(r.Context(), res.User)
	if err != nil {
		p.answerErr(w, r, err)
		return
	}
	d.TwoStep = info
	if res.External {
		d.Reauth = &reauthView{Name: res.Session.Pending["provider"], Confirmed: p.Account.RecentlyReauthenticated(res)}
		d.Reauth.Label = d.Reauth.Name
		if pr := p.provider(d.Reauth.Name); pr != nil {
			d.Reauth.Label = providerTitle(pr)
		}
	}
	if res.Session.State != store.StateEnrollment {
		if d.Devices, err = p.Account.Devices(r.Context(), res, env.Client.Device); err != nil {
			p.answerErr(w, r, err)
			return
		}
	}
	p.render(w, status, "settings.html", d)
}

func (p *Portal) settingsAction(w http.ResponseWriter, r *http.Request, env Env, res *account.Resolved, d *pageData) int {
	ctx := r.Context()
	switch r.PostFormValue("action") {
	case "totp-enroll":
		out, err := p.Account.EnrollTOTP(ctx, res)
		if err != nil {
			return p.settingsError(w, r, d, err)
		}
		d.QR = template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(out.QRPNG))
		d.Secret = groupSecret(out.Secret)
		d.ConfirmTOTP = true
	case "totp-confirm":
		out, err := p.Account.ConfirmTOTP(ctx, res, strings.TrimSpace(r.PostFormValue("code")), env.Client)
		if errors.Is(err, account.ErrStepUp) {
			return p.stepUp(w, r, d)
		}
		if err != nil {
			d.ConfirmTOTP = true
			// The same QR code and key again, for a user who has to scan
			// once more.
			if pend, perr := p.Account.PendingTOTP(ctx, res); perr == nil {
				d.QR = template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(pend.QRPNG))
				d.Secret = groupSecret(pend.Secret)
			}
			return p.pageError(w, d, err, nil)
		}
		p.setSession(w, env, out.Token, out.Session.Expires)
		d.Codes = out.BackupCodes
		d.Notice = "Your authenticator app is set up."
	case "phone":
		// People type numbers with spaces, dashes, dots and brackets.
		phone := strings.Map(func(r rune) rune {
			if strings.ContainsRune(" -.()\u00a0", r) {
				return -1
			}
			return r
		}, r.PostFormValue("phone"))
		method := r.PostFormValue("method")
		if method == "" {
			method = account.MethodSMS
		}
		out, err := p.Account.SetPhone(ctx, res, phone, method, env.Client)
		d.Phone = phone
		var in *account.InvalidInputError
		if errors.As(err, &in) && strings.Contains(in.Msg, `"phone"`) {
			d.Error = "Enter your phone number with its country code, for example +1 555 123 4567."
			return http.StatusBadRequest
		}
		if err != nil {
			return p.settingsError(w, r, d, err)
		}
		d.ConfirmPh = true
		d.Notice = "We sent a code to " + out.SentTo + ". Enter it below to confirm the number."
	case "phone-confirm":
		out, err := p.Account.ConfirmPhone(ctx, res, strings.TrimSpace(r.PostFormValue("code")), env.Client)
		if err != nil {
			d.ConfirmPh = true
			return p.settingsError(w, r, d, err)
		}
		p.setSession(w, env, out.Token, out.Session.Expires)
		d.Codes = out.BackupCodes
		d.Notice = "Your phone number is confirmed."
	case "backup":
		codes, err := p.Account.RegenerateBackupCodes(ctx, res, r.PostFormValue("password"), env.Client)
		if err != nil {
			return p.settingsError(w, r, d, err)
		}
		d.Codes = codes
		d.Notice = "New backup codes are ready; the old ones no longer work."
	case "on":
		if err := p.Account.SetTwoStep(ctx, res, true, "", "", env.Client); err != nil {
			return p.pageError(w, d, err, nil)
		}
		d.Notice = "Two-step verification is on."
	case "off":
		if err := p.Account.SetTwoStep(ctx, res, false, r.PostFormValue("password"), strings.TrimSpace(r.PostFormValue("code")), env.Client); err != nil {
			d.Method = "off" // keep the form open beside the error
			return p.pageError(w, d, err, nil)
		}
		d.Notice = "Two-step verification is off. Anyone with your password can now sign in."
	case "device-revoke":
		err := p.Account.RevokeDevice(ctx, res.Session.User, r.PostFormValue("device"), env.Client)
		if err != nil && !errors.Is(err, account.ErrNotFound) {
			return p.pageError(w, d, err, nil)
		}
		d.Notice = "That browser will be asked for a code again."
	case "revoke-all":
		if err := p.Account.RevokeAll(ctx, res.Session.User, env.Client); err != nil {
			return p.pageError(w, d, err, nil)
		}
		p.clearSession(w, env)
		http.Redirect(w, r, Prefix+"login?signed_out=1", http.StatusSeeOther)
		return http.StatusSeeOther
	default:
		d.Error = "Unknown action."
		return http.StatusBadRequest
	}
	return http.StatusOK
}

// settingsError answers an action's error: a session that must give its
// second factor again goes to the challenge page and comes back here;
// anything else is said on the page.
func (p *Portal) settingsError(w http.ResponseWriter, r *http.Request, d *pageData, err error) int {
	if errors.Is(err, account.ErrStepUp) {
		return p.stepUp(w, r, d)
	}
	return p.pageError(w, d, err, nil)
}

// stepUp sends the browser to the challenge page, to return to the
// settings page (keeping its own return) once a code is given.
func (p *Portal) stepUp(w http.ResponseWriter, r *http.Request, d *pageData) int {
	back := Prefix + "settings"
	if d.Return != "" {
		back += "?return=" + url.QueryEscape(d.Return)
	}
	http.Redirect(w, r, Prefix+"challenge?step_up=1&return="+url.QueryEscape(back), http.StatusSeeOther)
	return http.StatusSeeOther
}

// groupSecret spaces a base32 secret in groups of four for typing.
func groupSecret(s string) string {
	var b strings.Builder
	for i, c := range s {
		if i > 0 && i%4 == 0 {
			b.WriteByte(' ')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// reauthView is the "Confirm with …" button of the settings page.
type reauthView struct {
	Name, Label string
	Confirmed   bool
}
