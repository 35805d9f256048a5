// Package twostep is an authentication proxy for Caddy: password plus a second
// factor in front of any site, with trusted devices and account recovery.
//
// Build it into Caddy with
//
//	xcaddy build --with github.com/twostep-auth/twostep
package twostep

import (
	// The Caddy glue registers the twostep app, the http.handlers.twostep
	// handler, the Caddyfile global option and directive, and the
	// `caddy twostep` subcommands.
	_ "github.com/twostep-auth/twostep/caddymodule"
)
