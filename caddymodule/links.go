package caddymodule

import (
	"net"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/twostep-auth/twostep/recoveryui"
)

// portalEnv is requestEnv with the origin for links in emails.
func (h *Handler) portalEnv(r *http.Request) recoveryui.Env {
	env := requestEnv(r)
	env.Client.Base = h.linkBase(r, env.Secure)
	return env
}

// linkBase is the origin that links in emails sent from r point to. The
// Host is the client's to choose: on a site that answers any Host
// (`:8080` behind a load balancer) it may name another site, and a
// genuine email would send the account's owner there. So the Host is used
// only when one of this server's site addresses names it (a top-level
// host matcher accepts it); otherwise the `portal`, otherwise none: the
// email then says where to go instead of linking.
func (h *Handler) linkBase(r *http.Request, secure bool) string {
	scheme := "http"
	if secure {
		scheme = "https"
	}
	if siteNames(r) && portIsListeners(r) {
		return scheme + "://" + strings.ToLower(r.Host)
	}
	if h.portalU != nil {
		return h.portalU.Scheme + "://" + h.portalU.Host
	}
	return ""
}

// portIsListeners reports whether r's Host names no port, or the port of
// the listener r came in on. Host matchers ignore the port, so without this
// a client could point the links at another port of the same host.
func portIsListeners(r *http.Request) bool {
	_, port, err := net.SplitHostPort(r.Host)
	if err != nil {
		return true // no port: the scheme's own, or a proxy's Host
	}
	local, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok {
		return false
	}
	_, lport, err := net.SplitHostPort(local.String())
	return err == nil && lport == port
}

// siteNames reports whether a host matcher of one of the server's
// top-level routes (the Caddyfile's site addresses) accepts r's Host.
func siteNames(r *http.Request) bool {
	srv, ok := r.Context().Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server)
	if !ok || srv == nil || r.Host == "" {
		return false
	}
	for _, rt := range srv.Routes {
		for _, set := range rt.MatcherSets {
			for _, m := range set {
				var mh caddyhttp.MatchHost
				switch v := m.(type) {
				case *caddyhttp.MatchHost:
					mh = *v
				case caddyhttp.MatchHost:
					mh = v
				default:
					continue
				}
				if len(mh) > 0 && mh.Match(r) {
					return true
				}
			}
		}
	}
	return false
}
