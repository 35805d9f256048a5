package integration

import (
	"fmt"
	"net/http"
	"os"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

// TestMain gives the in-process Caddy its own storage (certificates, and
// the marker of every store it opens), so that the tests leave nothing
// in the user's data directory.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "twostep-caddy-data-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	caddy.DefaultStorage.Path = dir
	// Every request on a new connection, for the clients that use the
	// default transport too (the admin endpoint, the nodes): a config load
	// replaces the admin server and a restart the process, and a request
	// sent on a kept-alive connection as it closed fails with EOF.
	http.DefaultTransport.(*http.Transport).DisableKeepAlives = true
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
