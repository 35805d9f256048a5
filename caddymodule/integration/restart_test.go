package integration

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// A session survives stopping the Caddy process and starting it again.
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
		eventually(t, 20*time.Second, "caddy answers on :9083", func() bool {
			res, err := http.Get("http://localhost:9083/.twostep/login")
			if err != nil {
				return false
			}
			res.Body.Close()
			return res.StatusCode == http.StatusOK
		})
		return func() { cancel(); _ = cmd.Wait() }
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
	defer stop()
	if got := c.get("http://localhost:9083/"); string(got.body) != "hello alice" {
		t.Fatalf("after restart: %d %s", got.StatusCode, got.body)
	}
}
