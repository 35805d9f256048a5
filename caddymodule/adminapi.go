package caddymodule

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/twostep-auth/twostep/account"
)

func init() {
	caddy.RegisterModule(adminAPI{})
}

// adminAPI serves the operator endpoints that `caddy twostep devices` and
// `caddy twostep reset-2sv` call on the running server (the store is open
// there):
//
//	GET    /twostep/users/{user}/devices
//	DELETE /twostep/users/{user}/devices        (all)
//	DELETE /twostep/users/{user}/devices/{id}
//	POST   /twostep/users/{user}/reset-2sv
//	GET    /twostep/recovery                    (every request)
//	GET    /twostep/recovery/{id}
//	POST   /twostep/recovery/{id}/approve|deny  (body: the reason)
//	GET    /twostep/backup                      (a copy of the bolt file)
type adminAPI struct {
	ctx caddy.Context
}

// CaddyModule returns the Caddy module information.
func (adminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.twostep",
		New: func() caddy.Module { return new(adminAPI) },
	}
}

// Provision keeps the context to find the twostep app at request time.
func (a *adminAPI) Provision(ctx caddy.Context) error {
	a.ctx = ctx
	return nil
}

// Routes returns the admin routes.
func (a *adminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{{Pattern: "/twostep/", Handler: caddy.AdminHandlerFunc(a.serve)}}
}

func apiErr(status int, format string, args ...any) error {
	return caddy.APIError{HTTPStatus: status, Err: fmt.Errorf(format, args...)}
}

// runningApp returns the twostep app of the configuration Caddy runs. A
// reload that fails still provisions the new configuration's admin
// routes and apps, and Caddy may keep serving those routes while the old
// configuration runs on: the app to act on is the running one, not the
// one provisioned beside this handler (fallback).
func runningApp(fallback caddy.Context) (*App, error) {
	for _, ctx := range []caddy.Context{caddy.ActiveContext(), fallback} {
		if v, err := ctx.AppIfConfigured("twostep"); err == nil {
			if app, ok := v.(*App); ok && app.Service() != nil {
				return app, nil
			}
		}
	}
	if _, err := fallback.AppIfConfigured("twostep"); err != nil {
		return nil, err
	}
	return nil, nil
}

func (a *adminAPI) serve(w http.ResponseWriter, r *http.Request) error {
	app, err := runningApp(a.ctx)
	if err != nil {
		return apiErr(http.StatusNotFound, "the twostep app is not configured")
	}
	if app == nil {
		return apiErr(http.StatusServiceUnavailable, "the twostep app is not running")
	}
	svc := app.Service()
	if svc == nil {
		return apiErr(http.StatusServiceUnavailable, "the twostep app is not running")
	}
	if app.storeReplaced() {
		// Its answers would describe, and its writes land in, a store
		// that is not this server's.
		return apiErr(http.StatusServiceUnavailable, "the store was emptied or replaced (see the error log): restore it first")
	}
	if r.URL.Path == "/twostep/backup" {
		return serveBackup(w, r, app)
	}
	parts, err := adminPath(r)
	if err != nil {
		return apiErr(http.StatusBadRequest, "%v", err)
	}
	if len(parts) >= 1 && parts[0] == "recovery" {
		return a.serveRecovery(w, r, svc, parts[1:])
	}
	if len(parts) < 3 || parts[0] != "users" || parts[1] == "" {
		return apiErr(http.StatusNotFound, "no such endpoint: %s", r.URL.Path)
	}
	user, what := parts[1], parts[2]
	ctx := r.Context()
	client := account.Client{UserAgent: "caddy twostep (admin API)"}
	var opErr error
	switch {
	case what == "devices" && len(parts) == 3 && r.Method == http.MethodGet:
		list, err := svc.UserDevices(ctx, user)
		if err == nil {
			w.Header().Set("Content-Type", "application/json")
			return json.NewEncoder(w).Encode(list)
		}
		opErr = err
	case what == "devices" && len(parts) == 3 && r.Method == http.MethodDelete:
		if _, err := svc.UserDevices(ctx, user); err != nil {
			opErr = err
			break
		}
		opErr = svc.RevokeAllDevices(ctx, user)
	case what == "devices" && len(parts) == 4 && r.Method == http.MethodDelete:
		opErr = svc.RevokeDevice(ctx, user, parts[3], client)
	case what == "reset-2sv" && len(parts) == 3 && r.Method == http.MethodPost:
		opErr = svc.ResetTwoStep(ctx, user, "admin API")
	default:
		return apiErr(http.StatusNotFound, "no such endpoint: %s %s", r.Method, r.URL.Path)
	}
	if errors.Is(opErr, account.ErrNotFound) {
		return apiErr(http.StatusNotFound, "no such user or device")
	}
	if opErr != nil {
		return apiErr(http.StatusServiceUnavailable, "%v", opErr)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// serveBackup streams a consistent copy of the store file, with its size
// as Content-Length so that a cut-off copy is noticed.
func serveBackup(w http.ResponseWriter, r *http.Request, app *App) error {
	if r.Method != http.MethodGet {
		return apiErr(http.StatusMethodNotAllowed, "backup is GET")
	}
	started := false
	n, err := app.Backup(r.Context(), func(size int64) io.Writer {
		started = true
		h := w.Header()
		h.Set("Content-Type", "application/octet-stream")
		h.Set("Content-Length", strconv.FormatInt(size, 10))
		h.Set("Content-Disposition", `attachment; filename="twostep.db"`)
		h.Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
		return w
	})
	switch {
	case errors.Is(err, errNoFile):
		return apiErr(http.StatusConflict, "the store is Redis: back up Redis itself (RDB snapshot or AOF)")
	case err != nil && !started:
		return apiErr(http.StatusServiceUnavailable, "%v", err)
	case err != nil:
		// The status is out; the short body tells the client.
		app.logger.Error("backup cut off", zap.Int64("bytes", n), zap.Error(err))
	default:
		app.logger.Info("backup written", zap.Int64("bytes", n))
	}
	return nil
}

// Interface guards.
var (
	_ caddy.AdminRouter = (*adminAPI)(nil)
	_ caddy.Provisioner = (*adminAPI)(nil)
)

// adminPath splits the path after /twostep/ into its segments, each
// unescaped on its own: a user name may hold "/" (the CLI escapes it as
// %2F), which must not read as a separator.
func adminPath(r *http.Request) ([]string, error) {
	parts := strings.Split(strings.TrimPrefix(r.URL.EscapedPath(), "/twostep/"), "/")
	for i, p := range parts {
		u, err := url.PathUnescape(p)
		if err != nil {
			return nil, fmt.Errorf("bad escape in path segment %q", p)
		}
		parts[i] = u
	}
	return parts, nil
}

// maxReasonLen bounds a decision's reason (the body of approve or deny).
const maxReasonLen = 2000

// readReason reads a decision's reason; one over maxReasonLen bytes is
// refused, not cut (the user would read half a sentence).
func readReason(r *http.Request) (string, error) {
	b, err := io.ReadAll(io.LimitReader(r.Body, maxReasonLen+1))
	if err != nil {
		return "", fmt.Errorf("reading the reason: %w", err)
	}
	if len(b) > maxReasonLen {
		return "", fmt.Errorf("the reason is longer than %d bytes", maxReasonLen)
	}
	return strings.TrimSpace(string(b)), nil
}

func (a *adminAPI) serveRecovery(w http.ResponseWriter, r *http.Request, svc *account.Service, parts []string) error {
	ctx := r.Context()
	switch {
	case (len(parts) == 0 || parts[0] == "") && r.Method == http.MethodGet:
		list, err := svc.AllRecoveries(ctx)
		if err != nil {
			return apiErr(http.StatusServiceUnavailable, "%v", err)
		}
		if list == nil {
			list = []*account.Recovery{}
		}
		w.Header().Set("Content-Type", "application/json")
		return json.NewEncoder(w).Encode(list)
	case len(parts) == 1 && r.Method == http.MethodGet:
		list, err := svc.AllRecoveries(ctx)
		if err != nil {
			return apiErr(http.StatusServiceUnavailable, "%v", err)
		}
		for _, rec := range list {
			if rec.ID == parts[0] {
				w.Header().Set("Content-Type", "application/json")
				return json.NewEncoder(w).Encode(rec)
			}
		}
		return apiErr(http.StatusNotFound, "no such request")
	case len(parts) == 2 && r.Method == http.MethodPost && (parts[1] == "approve" || parts[1] == "deny"):
		reason, err := readReason(r)
		if err != nil {
			return apiErr(http.StatusBadRequest, "%v", err)
		}
		_, err = svc.DecideAsOperator(ctx, "admin API", parts[0], parts[1], reason)
		var in *account.InvalidInputError
		switch {
		case errors.As(err, &in):
			return apiErr(http.StatusBadRequest, "%s", in.Msg)
		case errors.Is(err, account.ErrNotFound):
			return apiErr(http.StatusNotFound, "no such request")
		case errors.Is(err, account.ErrAlreadyApproved):
			return apiErr(http.StatusConflict, "the operator's approval of this request is already counted; it needs another reviewer's")
		case errors.Is(err, account.ErrConflict):
			return apiErr(http.StatusConflict, "the request is not pending")
		case err != nil:
			return apiErr(http.StatusServiceUnavailable, "%v", err)
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	return apiErr(http.StatusNotFound, "no such endpoint: %s %s", r.Method, r.URL.Path)
}
