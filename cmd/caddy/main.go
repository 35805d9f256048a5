// Command caddy is Caddy with its standard modules plus twostep.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/twostep-auth/twostep"
)

func main() {
	caddycmd.Main()
}
