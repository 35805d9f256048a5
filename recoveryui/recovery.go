package recoveryui

import (
	"bytes"
	"errors"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/twostep-auth/twostep/account"
	"github.com/twostep-auth/twostep/internal/documents"
	"github.com/twostep-auth/twostep/internal/store"
)

// documentOptions lists the accepted documents in the order the page shows.
var documentOptions = []methodView{
	{Name: "drivers_license", Label: account.DocumentTypes["drivers_license"]},
	{Name: "state_id", Label: account.DocumentTypes["state_id"]},
	{Name: "voter_card", Label: account.DocumentTypes["voter_card"]},
	{Name: "national_id", Label: account.DocumentTypes["national_id"]},
	{Name: "passport", Label: account.DocumentTypes["passport"]},
}

// readUpload reads a multipart recovery upload without touching the disk:
// the document part is read into memory, at most max+1 bytes.
func readUpload(w http.ResponseWriter, r *http.Request, max int64) (docType string, doc []byte, csrf string, err error) {
	mt, _, perr := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if perr != nil || mt != "multipart/form-data" {
		return "", nil, "", errUploadType
	}
	r.Body = http.MaxBytesReader(w, r.Body, max+256<<10)
	mr, err := r.MultipartReader()
	if err != nil {
		return "", nil, "", errUploadType
	}
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "", nil, "", uploadReadError(err)
		}
		switch part.FormName() {
		case "document":
			b, err := io.ReadAll(io.LimitReader(part, max+1))
			if err != nil {
				return "", nil, "", uploadReadError(err)
			}
			if int64(len(b)) > max {
				return "", nil, "", documents.ErrTooLarge
			}
			doc = b
		case "document_type":
			b, _ := io.ReadAll(io.LimitReader(part, 64))
			docType = string(b)
		case "csrf":
			b, _ := io.ReadAll(io.LimitReader(part, 256))
			csrf = string(b)
		default:
			_, _ = io.Copy(io.Discard, io.LimitReader(part, 1<<20))
		}
		part.Close()
	}
	if doc == nil {
		return docType, nil, csrf, errNoDocument
	}
	return docType, doc, csrf, nil
}

// uploadReadError names why reading an upload failed.
func uploadReadError(err error) error {
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return documents.ErrTooLarge
	case errors.Is(err, errUploadSlow):
		return errUploadSlow
	}
	return errUploadBroken
}

var (
	errUploadType   = errors.New("the upload must be multipart/form-data")
	errUploadBroken = errors.New("the upload could not be read")
	errNoDocument   = errors.New(`field "document" (the file) is missing`)
)

// recoveryError maps upload and recovery errors to SPEC answers.
func (p *Portal) recoveryError(w http.ResponseWriter, r *http.Request, res *account.Resolved, err error) {
	switch {
	case errors.Is(err, documents.ErrTooLarge):
		p.fail(w, r, http.StatusRequestEntityTooLarge, "too_large", "The file is larger than "+humanBytes(p.Account.RecoverySettings().MaxSize)+".")
	case errors.Is(err, documents.ErrUnsupported):
		p.fail(w, r, http.StatusUnsupportedMediaType, "unsupported_media_type", "This file is not an accepted document ("+strings.TrimPrefix(err.Error(), documents.ErrUnsupported.Error()+": ")+"). Send a photo or scan as JPG, PNG or PDF, or a DOC/DOCX without macros.")
	case errors.Is(err, errUploadType):
		p.fail(w, r, http.StatusUnsupportedMediaType, "unsupported_media_type", err.Error()+".")
	case errors.Is(err, errUploadSlow):
		p.fail(w, r, http.StatusBadRequest, "invalid_request", "The upload was too slow: send it again on a faster connection, or a smaller file.")
	case errors.Is(err, errUploadBroken), errors.Is(err, errNoDocument):
		p.fail(w, r, http.StatusBadRequest, "invalid_request", "The upload is incomplete: "+err.Error()+".")
	case errors.Is(err, account.ErrRecoveryDisabled):
		p.fail(w, r, http.StatusNotFound, "not_found", "Account recovery is not available on this site. Ask your administrator.")
	case errors.Is(err, account.ErrConflict):
		if res != nil && res.Session.State != store.StateSecondFactor {
			p.fail(w, r, http.StatusConflict, "conflict", "You are signed in: you don't need to recover your account.")
			return
		}
		p.fail(w, r, http.StatusConflict, "conflict", "You already have a recovery request open. We'll email you when it is decided.")
	case errors.Is(err, account.ErrNotFound):
		p.fail(w, r, http.StatusNotFound, "not_found", "There is no such request.")
	default:
		p.answerUseCase(w, r, res, err)
	}
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return itoa(n>>20) + " MiB"
	case n >= 1<<10:
		return itoa(n>>10) + " KiB"
	}
	return itoa(n) + " bytes"
}

func itoa(n int64) string {
	var b [20]byte
	i := len(b)
	if n == 0 {
		return "0"
	}
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}

// An upload must keep arriving, or it gives its turn back: after
// uploadGrace the client must have sent minUploadRate bytes a second on
// average, may pause no longer than uploadIdle, and has
// account.UploadReadTimeout in all. A client that dribbles its uploads
// holds few turns (one per account and network, UploadSlot), and not for
// long.
const (
	uploadGrace   = 10 * time.Second
	uploadIdle    = 20 * time.Second
	minUploadRate = 16 << 10 // bytes a second
)

// errUploadSlow: the upload fell behind minUploadRate or paused too long.
var errUploadSlow = errors.New("the upload arrived too slowly")

// uploadDue is when a client that began sending at start, and has sent n
// bytes by now, falls behind.
func uploadDue(start, now time.Time, n int64) time.Time {
	due := start.Add(uploadGrace + time.Duration(n)*time.Second/minUploadRate)
	for _, t := range []time.Time{now.Add(uploadIdle), start.Add(account.UploadReadTimeout)} {
		if t.Before(due) {
			due = t
		}
	}
	return due
}

// pacedBody is an upload's body that must keep arriving: before each read
// the connection's read deadline moves to when the client falls behind.
type pacedBody struct {
	io.ReadCloser
	rc    *http.ResponseController
	start time.Time
	n     int64
}

func (b *pacedBody) Read(p []byte) (int, error) {
	now := time.Now()
	due := uploadDue(b.start, now, b.n)
	if !now.Before(due) {
		return 0, errUploadSlow
	}
	_ = b.rc.SetReadDeadline(due)
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	var ne net.Error
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
		err = errUploadSlow
	}
	return n, err
}

// readUploadSlot reads an upload within the account service's upload
// turns (UploadSlot: the caller's account and network, and this node),
// at a pace the client must keep (pacedBody).
func (p *Portal) readUploadSlot(w http.ResponseWriter, r *http.Request, res *account.Resolved, c account.Client) (docType string, doc []byte, csrf string, err error) {
	release, err := p.Account.UploadSlot(r.Context(), res, c)
	if err != nil {
		return "", nil, "", err
	}
	defer release()
	r.Body = &pacedBody{ReadCloser: r.Body, rc: http.NewResponseController(w), start: time.Now()}
	return readUpload(w, r, p.Account.RecoverySettings().MaxSize)
}

// apiRecovery serves POST api/recovery and GET api/recovery/{id}.
func (p *Portal) apiRecovery(w http.ResponseWriter, r *http.Request, env Env, id string) {
	res := p.needSession(w, r, env)
	if res == nil {
		return
	}
	if id != "" {
		if !isSafeMethod(r.Method) {
			p.methodNotAllowed(w, r, "GET")
			return
		}
		rec, err := p.Account.MyRecovery(r.Context(), res, id)
		if err != nil {
			p.recoveryError(w, r, res, err)
			return
		}
		WriteJSON(w, http.StatusOK, struct {
			Status string `json:"status"`
			Reason string `json:"reason,omitempty"`
		}{rec.Status, rec.Reason})
		return
	}
	if r.Method != http.MethodPost {
		p.methodNotAllowed(w, r, "POST")
		return
	}
	// Refuse what cannot be taken before reading up to max_size of it.
	if err := p.Account.RecoveryAllowed(r.Context(), res); err != nil {
		p.recoveryError(w, r, res, err)
		return
	}
	docType, doc, _, err := p.readUploadSlot(w, r, res, env.Client)
	if err != nil {
		p.recoveryError(w, r, res, err)
		return
	}
	if docType == "" {
		WriteError(w, http.StatusBadRequest, "invalid_request", `Field "document_type" is required.`)
		return
	}
	rec, err := p.Account.RequestRecovery(r.Context(), res, docType, bytes.NewReader(doc), env.Client)
	if err != nil {
		p.recoveryError(w, r, res, err)
		return
	}
	WriteJSON(w, http.StatusAccepted, struct {
		RequestID string `json:"request_id"`
		Status    string `json:"status"`
		Expected  string `json:"expected"`
	}{rec.ID, rec.Status, p.Account.RecoverySettings().Expected})
}

// recoveryPage: GET the form, POST the upload.
func (p *Portal) recoveryPage(w http.ResponseWriter, r *http.Request, env Env) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead && r.Method != http.MethodPost {
		p.methodNotAllowed(w, r, "GET, POST")
		return
	}
	if !p.Account.RecoveryEnabled() {
		p.fail(w, r, http.StatusNotFound, "not_found", "Account recovery is not available on this site. Ask your administrator to reset two-step verification for you.")
		return
	}
	res, ok := p.pageSession(w, r, env, Prefix+"recovery")
	if !ok {
		return
	}
	if res.Session.State != store.StateSecondFactor {
		p.render(w, http.StatusConflict, "error.html", pageData{Title: "No recovery needed", Error: "You are signed in, so you don't need to recover your account. To change how you get codes, open Login & security."})
		return
	}
	csrf, err := p.csrfFor(w, r, env)
	if err != nil {
		p.answerErr(w, r, err)
		return
	}
	rc := p.Account.RecoverySettings()
	d := pageData{Title: "Recover your account", CSRF: p.Account.CSRFToken(csrf), Methods: documentOptions,
		Notice: "", Secret: rc.Expected, Phone: humanBytes(rc.MaxSize), Enroll: p.Account.AfterApprovalEnroll()}
	if last, err := p.Account.MyRecovery(r.Context(), res, ""); err == nil && last != nil && last.Open() {
		http.Redirect(w, r, Prefix+"recovery/status", http.StatusSeeOther)
		return
	}
	if r.Method == http.MethodPost {
		docType, doc, token, err := p.readUploadSlot(w, r, res, env.Client)
		if err == nil {
			c, cerr := r.Cookie(csrfCookieName(env.Secure))
			if cerr != nil || !p.Account.CheckCSRF(c.Value, token) {
				p.fail(w, r, http.StatusForbidden, "forbidden", "This form has expired. Go back, reload the page and try again.")
				return
			}
			if _, err = p.Account.RequestRecovery(r.Context(), res, docType, bytes.NewReader(doc), env.Client); err == nil {
				http.Redirect(w, r, Prefix+"recovery/status", http.StatusSeeOther)
				return
			}
		}
		status := p.pageUploadError(w, &d, err)
		d.Method = docType // keep the chosen document type checked
		w.Header().Set("Content-Security-Policy", recoveryCSP)
		p.render(w, status, "recovery.html", d)
		return
	}
	w.Header().Set("Content-Security-Policy", recoveryCSP)
	p.render(w, http.StatusOK, "recovery.html", d)
}

// recoveryCSP lets the recovery page load its own redaction script.
const recoveryCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

func (p *Portal) pageUploadError(w http.ResponseWriter, d *pageData, err error) int {
	switch {
	case errors.Is(err, documents.ErrTooLarge):
		d.Error = "The file is too large: the limit is " + humanBytes(p.Account.RecoverySettings().MaxSize) + ". Try a smaller photo or scan."
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, documents.ErrUnsupported), errors.Is(err, errUploadType):
		d.Error = "This file is not one we accept. Send a photo or scan as JPG, PNG or PDF, or a Word document (DOC, DOCX) without macros."
		return http.StatusUnsupportedMediaType
	case errors.Is(err, errUploadSlow):
		d.Error = "The file arrived too slowly. Send it again on a faster connection, or a smaller photo or scan."
		return http.StatusBadRequest
	case errors.Is(err, errNoDocument), errors.Is(err, errUploadBroken):
		d.Error = "Choose the file with your ID and send it again."
		return http.StatusBadRequest
	case errors.Is(err, account.ErrConflict):
		d.Error = "You already have a recovery request open."
		return http.StatusConflict
	}
	var in *account.InvalidInputError
	if errors.As(err, &in) {
		d.Error = "Choose which document you are sending."
		return http.StatusBadRequest
	}
	var rl *account.RateLimitedError
	if errors.As(err, &rl) {
		d.Error = "Too many recovery requests. Try again in " + humanDuration(rl.RetryAfter) + "."
		w.Header().Set("Retry-After", retryAfterSeconds(rl.RetryAfter))
		return http.StatusTooManyRequests
	}
	if errors.Is(err, account.ErrBusy) {
		w.Header().Set("Retry-After", "1")
	}
	d.Error = "The service is unavailable right now. Try again shortly."
	return http.StatusServiceUnavailable
}

// recoveryStatusPage shows where the caller's request stands.
func (p *Portal) recoveryStatusPage(w http.ResponseWriter, r *http.Request, env Env) {
	if !isSafeMethod(r.Method) {
		p.methodNotAllowed(w, r, "GET")
		return
	}
	res, ok := p.pageSession(w, r, env, Prefix+"recovery/status")
	if !ok {
		return
	}
	rec, err := p.Account.MyRecovery(r.Context(), res, r.URL.Query().Get("id"))
	d := pageData{Title: "Your recovery request", Secret: p.Account.RecoverySettings().Expected, Enroll: p.Account.AfterApprovalEnroll()}
	switch {
	case errors.Is(err, account.ErrNotFound):
		d.Notice = "You have no recovery request."
	case err != nil:
		p.answerErr(w, r, err)
		return
	default:
		d.Recovery = rec
	}
	p.render(w, http.StatusOK, "recovery_status.html", d)
}

// recoveryCancelPage: the "this wasn't me" link of the approval message.
func (p *Portal) recoveryCancelPage(w http.ResponseWriter, r *http.Request, env Env) {
	if r.Method == http.MethodPost {
		if !p.parseForm(w, r) {
			return
		}
	} else if !isSafeMethod(r.Method) {
		p.methodNotAllowed(w, r, "GET, POST")
		return
	}
	id, sig := r.FormValue("r"), r.FormValue("sig")
	if !p.Account.CheckCancelLink(id, sig) {
		p.fail(w, r, http.StatusNotFound, "not_found", "This link is not valid.")
		return
	}
	csrf, err := p.csrfFor(w, r, env)
	if err != nil {
		p.answerErr(w, r, err)
		return
	}
	d := pageData{Title: "Stop the recovery of your account", CSRF: p.Account.CSRFToken(csrf), Secret: id, Method: sig}
	if r.Method == http.MethodPost {
		err := p.Account.CancelRecoveryLink(r.Context(), id, sig)
		switch {
		case errors.Is(err, account.ErrNotFound):
			p.fail(w, r, http.StatusNotFound, "not_found", "This link is not valid.")
			return
		case errors.Is(err, account.ErrConflict):
			d.Notice = "This request is already closed: it can no longer be stopped. If two-step verification was turned off without you, change your password now."
		case err != nil:
			p.answerErr(w, r, err)
			return
		default:
			d.Notice = "Stopped. Two-step verification stays on. Someone may know your password: change it now."
		}
		d.Secret = ""
	}
	p.render(w, http.StatusOK, "recovery_cancel.html", d)
}

// --- reviewers ---

func (p *Portal) reviewer(w http.ResponseWriter, r *http.Request, env Env, page bool) *account.Resolved {
	var res *account.Resolved
	if page {
		var ok bool
		if res, ok = p.pageSession(w, r, env, Prefix+"review"); !ok {
			return nil
		}
		if res.Session.State == store.StateSecondFactor {
			http.Redirect(w, r, Prefix+"challenge?return="+url.QueryEscape(Prefix+"review"), http.StatusSeeOther)
			return nil
		}
	} else if res = p.needSession(w, r, env); res == nil {
		return nil
	}
	if !p.Account.IsReviewer(res) {
		p.fail(w, r, http.StatusForbidden, "forbidden", "Only reviewers signed in with two-step verification can see this.")
		return nil
	}
	return res
}

// apiReview serves GET review, GET review/{id}/document, POST review/{id}.
func (p *Portal) apiReview(w http.ResponseWriter, r *http.Request, env Env, rest string) {
	res := p.reviewer(w, r, env, false)
	if res == nil {
		return
	}
	id, sub, _ := strings.Cut(rest, "/")
	switch {
	case id == "" && isSafeMethod(r.Method):
		list, err := p.Account.ReviewQueue(r.Context(), res)
		if err != nil {
			p.recoveryError(w, r, res, err)
			return
		}
		WriteJSON(w, http.StatusOK, list)
	case id != "" && sub == "document" && isSafeMethod(r.Method):
		p.serveDocument(w, r, env, res, id, false)
	case id != "" && sub == "" && r.Method == http.MethodPost:
		var req struct {
			Decision *string `json:"decision"`
			Reason   *string `json:"reason"`
		}
		if !decodeJSON(w, r, &req) {
			return
		}
		if req.Decision == nil {
			WriteError(w, http.StatusBadRequest, "invalid_request", `Field "decision" is required: "approve" or "deny".`)
			return
		}
		if _, err := p.Account.Decide(r.Context(), res, id, *req.Decision, deref(req.Reason), env.Client); err != nil {
			switch {
			case errors.Is(err, account.ErrForbidden):
				WriteError(w, http.StatusForbidden, "forbidden", "You cannot review your own request.")
			case errors.Is(err, account.ErrAlreadyApproved):
				WriteError(w, http.StatusConflict, "conflict", "You already approved this request; it needs another reviewer's approval.")
			case errors.Is(err, account.ErrAlreadyDecided):
				WriteError(w, http.StatusConflict, "conflict", "This request is already decided.")
			default:
				p.recoveryError(w, r, res, err)
			}
			return
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		WriteError(w, http.StatusNotFound, "not_found", "There is no such API endpoint.")
	}
}

// serveDocument sends a document so that it cannot run in the portal's
// origin: attachment, nosniff, CSP sandbox. Re-encoded images may be shown
// inline on the review page.
func (p *Portal) serveDocument(w http.ResponseWriter, r *http.Request, env Env, res *account.Resolved, id string, inline bool) {
	doc, err := p.Account.ReviewDocument(r.Context(), res, id, env.Client)
	if err != nil {
		if errors.Is(err, account.ErrForbidden) {
			p.fail(w, r, http.StatusForbidden, "forbidden", "You cannot review your own request.")
			return
		}
		p.recoveryError(w, r, res, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", doc.ContentType())
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "sandbox; default-src 'none'")
	h.Set("Cache-Control", "no-store")
	disp := "attachment"
	if inline && doc.Inline() {
		disp = "inline"
	}
	h.Set("Content-Disposition", disp+`; filename="`+doc.Filename()+`"`)
	_, _ = w.Write(doc.Data)
}

// decisionNotice says on the queue what the reviewer's decision did.
func decisionNotice(r *http.Request, p *Portal, res *account.Resolved, id string) string {
	rec, err := p.Account.ReviewRequest(r.Context(), res, id)
	if err != nil {
		return ""
	}
	switch {
	case rec.Status == account.RecoveryApproved && rec.Applied:
		return "Approved: two-step verification for " + rec.User + " is off, and they were told."
	case rec.Status == account.RecoveryApproved:
		return "Approved: two-step verification for " + rec.User + " turns off on " + rec.EffectiveAt.UTC().Format("2 Jan 2006 at 15:04 UTC") + "; they were told, with a link to stop it."
	case rec.Status == account.RecoveryDenied:
		return "Denied: " + rec.User + " was told why."
	case rec.Status == account.RecoveryPending:
		return "Your approval of " + rec.User + "'s request is recorded; it needs another reviewer's too."
	}
	return ""
}

// reviewPage: the queue, one request, its document, and the decision form.
func (p *Portal) reviewPage(w http.ResponseWriter, r *http.Request, env Env, rest string) {
	if r.Method == http.MethodPost {
		if !p.parseForm(w, r) {
			return
		}
	} else if !isSafeMethod(r.Method) {
		p.methodNotAllowed(w, r, "GET, POST")
		return
	}
	res := p.reviewer(w, r, env, true)
	if res == nil {
		return
	}
	id, sub, _ := strings.Cut(rest, "/")
	if id != "" && sub == "document" {
		p.serveDocument(w, r, env, res, id, r.URL.Query().Get("inline") == "1")
		return
	}
	csrf, err := p.csrfFor(w, r, env)
	if err != nil {
		p.answerErr(w, r, err)
		return
	}
	d := pageData{Title: "Recovery requests", CSRF: p.Account.CSRFToken(csrf), User: displayName(res), Secret: p.Account.RecoverySettings().Expected}
	status := http.StatusOK
	if id == "" {
		list, err := p.Account.ReviewQueue(r.Context(), res)
		if err != nil {
			p.answerErr(w, r, err)
			return
		}
		d.Queue = list
		if decided := r.URL.Query().Get("decided"); decided != "" {
			d.Notice = decisionNotice(r, p, res, decided)
		}
		p.render(w, status, "review.html", d)
		return
	}
	if r.Method == http.MethodPost {
		_, err := p.Account.Decide(r.Context(), res, id, r.PostFormValue("decision"), r.PostFormValue("reason"), env.Client)
		switch {
		case err == nil:
			http.Redirect(w, r, Prefix+"review?decided="+url.QueryEscape(id), http.StatusSeeOther)
			return
		case errors.Is(err, account.ErrForbidden):
			d.Error, status = "You cannot review your own request.", http.StatusForbidden
		case errors.Is(err, account.ErrAlreadyApproved):
			d.Error, status = "You already approved this request; it needs another reviewer's approval.", http.StatusConflict
		case errors.Is(err, account.ErrConflict):
			d.Error, status = "This request is already decided.", http.StatusConflict
		default:
			status = p.pageError(w, &d, err, nil)
		}
	}
	rec, err := p.Account.ReviewRequest(r.Context(), res, id)
	if err != nil {
		p.recoveryError(w, r, res, err)
		return
	}
	d.Title = "Recovery request"
	d.Recovery = rec
	d.Own = rec.User == res.Session.User
	p.render(w, status, "review_request.html", d)
}
