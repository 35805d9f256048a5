// Package caddymodule is the Caddy glue of twostep: the `twostep` app, the
// `http.handlers.twostep` handler, their Caddyfile syntax and the
// `caddy twostep` subcommands. It is the only package that imports Caddy.
package caddymodule
