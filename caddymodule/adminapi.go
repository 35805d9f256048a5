package caddymodule

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"

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

func (a *adminAPI) serve(w http.ResponseWriter, r *http.Request) error {
	appIface, err := a.ctx.AppIfConfigured("twostep")
	if err != nil {
		return apiErr(http.StatusNotFound, "the twostep app is not configured")
	}
	svc := appIface.(*App).Service()
	if svc == nil {
		return apiErr(http.StatusServiceUnavailable, "the twostep app is not running")
	}
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/twostep/"), "/")
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

// Interface guards.
var (
	_ caddy.AdminRouter = (*adminAPI)(nil)
	_ caddy.Provisioner = (*adminAPI)(nil)
)
