package caddymodule

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/twostep-auth/twostep/internal/store/bolt"
)

func TestServeBackup(t *testing.T) {
	app := &App{run: new(appRun), logger: zap.NewNop()}
	status := func(method string) int {
		w := httptest.NewRecorder()
		err := serveBackup(w, httptest.NewRequest(method, "/twostep/backup", nil), app)
		var ae caddy.APIError
		if errors.As(err, &ae) {
			return ae.HTTPStatus
		}
		if err != nil {
			t.Fatal(err)
		}
		return w.Code
	}
	// On Redis there is no file to copy.
	if got := status(http.MethodGet); got != http.StatusConflict {
		t.Fatalf("backup on Redis: %d, want 409", got)
	}
	db, err := bolt.Open(filepath.Join(t.TempDir(), "t.db"), bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	app.run.bolt = db
	if got := status(http.MethodPost); got != http.StatusMethodNotAllowed {
		t.Fatalf("POST backup: %d, want 405", got)
	}
	w := httptest.NewRecorder()
	if err := serveBackup(w, httptest.NewRequest(http.MethodGet, "/twostep/backup", nil), app); err != nil {
		t.Fatal(err)
	}
	if w.Code != http.StatusOK || w.Header().Get("Content-Length") != strconv.Itoa(w.Body.Len()) || w.Header().Get("Cache-Control") != "no-store" {
		t.Fatalf("backup: %d, %d bytes, headers %v", w.Code, w.Body.Len(), w.Header())
	}
	copyPath := filepath.Join(t.TempDir(), "copy.db")
	if err := os.WriteFile(copyPath, w.Body.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := bolt.Check(copyPath); err != nil {
		t.Fatal(err)
	}
	// A closed store (its last configuration stopped): 503, not a body.
	db.Close()
	if got := status(http.MethodGet); got != http.StatusServiceUnavailable {
		t.Fatalf("backup of a closed store: %d, want 503", got)
	}
}

// A user name may hold "/": the CLI escapes it, and the admin API reads
// each segment on its own.
func TestAdminPath(t *testing.T) {
	for _, c := range []struct {
		path string
		want []string
		err  bool
	}{
		{"/twostep/users/alice/devices", []string{"users", "alice", "devices"}, false},
		{"/twostep/users/" + url.PathEscape("ops/alice") + "/devices/abc", []string{"users", "ops/alice", "devices", "abc"}, false},
		{"/twostep/users/caf%C3%A9/reset-2sv", []string{"users", "café", "reset-2sv"}, false},
		{"/twostep/recovery/r1/approve", []string{"recovery", "r1", "approve"}, false},
	} {
		got, err := adminPath(httptest.NewRequest(http.MethodGet, c.path, nil))
		if (err != nil) != c.err || !slices.Equal(got, c.want) {
			t.Errorf("adminPath(%q) = %q, %v; want %q", c.path, got, err, c.want)
		}
	}
}

// A reason over the limit is refused, not cut.
func TestReadReason(t *testing.T) {
	for _, c := range []struct {
		body string
		want string
		err  bool
	}{
		{"  blurry photo \n", "blurry photo", false},
		{strings.Repeat("x", maxReasonLen), strings.Repeat("x", maxReasonLen), false},
		{strings.Repeat("x", maxReasonLen+1), "", true},
	} {
		got, err := readReason(httptest.NewRequest(http.MethodPost, "/twostep/recovery/r1/deny", strings.NewReader(c.body)))
		if (err != nil) != c.err || got != c.want {
			t.Errorf("readReason(%d bytes) = %d bytes, %v; want %d bytes, error %v", len(c.body), len(got), err, len(c.want), c.err)
		}
	}
}
