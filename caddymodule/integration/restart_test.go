package integration

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// A session survives stopping the Caddy process and starting it again;
// losing the store file does not go unnoticed.
func TestSessionSurvivesProcessRestart(t *testing.T) {
	bin := buildCaddy(t)
	dir := t.TempDir()
	uf := filepath.Join(dir, "users.yml")
	writeUsers(t, uf, alicePassword, false)
	cfg := filepath.Join(dir, "Caddyfile")
	body := fmt.Sprintf(`{
	admin off
	skip_install_trust
	twostep {
		users_file %s
		store bolt %s
	}
}

http://localhost:9083 {
	twostep {
		default one_factor
	}
	respond "hello {http.auth.user.id}" 200
}
`, uf, filepath.Join(dir, "twostep.db"))
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	startProc := func() (stop func()) {
		ctx, cancel := context.WithCancel(context.Background())
		cmd := exec.CommandContext(ctx, bin, "run", "--config", cfg, "--adapter", "caddyfile")
		cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+filepath.Join(dir, "data"), "XDG_CONFIG_HOME="+filepath.Join(dir, "config"))
		cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
		cmd.WaitDelay = 10 * time.Second
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var once sync.Once
		stop = func() { once.Do(func() { cancel(); _ = cmd.Wait() }) }
		t.Cleanup(stop) // also when the wait below fails
		eventually(t, 20*time.Second, "caddy answers on :9083", func() bool {
			res, err := http.Get("http://localhost:9083/.twostep/login")
			if err != nil {
				return false
			}
			res.Body.Close()
			return res.StatusCode == http.StatusOK
		})
		return stop
	}
	stop := startProc()
	c := newClient(t)
	r := c.do(http.MethodPost, "http://localhost:9083/.twostep/api/login",
		bytesReader(`{"username":"alice","password":"`+alicePassword+`"}`), "Content-Type", "application/json")
	wantStatus(t, r, http.StatusOK)
	if got := c.get("http://localhost:9083/"); string(got.body) != "hello alice" {
		t.Fatalf("before restart: %d %s", got.StatusCode, got.body)
	}
	stop()
	stop = startProc()
	if got := c.get("http://localhost:9083/"); string(got.body) != "hello alice" {
		t.Fatalf("after restart: %d %s", got.StatusCode, got.body)
	}
	stop()

	// The store file is lost and Caddy starts on a new, empty one: every
	// two-step user would sign in with the password alone. It refuses to
	// start, and says what to do.
	if err := os.Remove(filepath.Join(dir, "twostep.db")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "run", "--config", cfg, "--adapter", "caddyfile")
	cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+filepath.Join(dir, "data"), "XDG_CONFIG_HOME="+filepath.Join(dir, "config"))
	out, err := cmd.CombinedOutput()
	markers, _ := filepath.Glob(filepath.Join(dir, "data", "caddy", "twostep", "stores", "*.json"))
	if err == nil || ctx.Err() != nil || len(markers) != 1 {
		t.Fatalf("Caddy on an emptied store: %v (ctx %v), markers %v, output:\n%s", err, ctx.Err(), markers, tail(out, 3000))
	}
	for _, want := range []string{"lost its records", "remove " + markers[0]} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("the refusal does not say %q:\n%s", want, tail(out, 3000))
		}
	}
	// Starting afresh on purpose: remove the marker.
	if err := os.Remove(markers[0]); err != nil {
		t.Fatal(err)
	}
	stop = startProc()
	defer stop()
	if got := c.get("http://localhost:9083/"); got.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a session of the lost store: %d %s", got.StatusCode, got.body)
	}
}
