package integration

import (
	"fmt"
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
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
