package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// redisServer runs a real redis-server (with AOF, so a restart keeps what
// was written) on a free loopback port.
type redisServer struct {
	t    *testing.T
	dir  string
	port int
	cmd  *exec.Cmd
}

func startRedis(t *testing.T) *redisServer {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("TWOSTEP_REQUIRE_REDIS") == "1" {
			t.Fatal("redis-server is not installed (apt-get install redis-server)")
		}
		t.Skip("redis-server is not installed; set TWOSTEP_REQUIRE_REDIS=1 to make this a failure")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	rs := &redisServer{t: t, dir: t.TempDir(), port: port}
	rs.start()
	t.Cleanup(rs.stop)
	return rs
}

func (rs *redisServer) addr() string { return "127.0.0.1:" + strconv.Itoa(rs.port) }

func (rs *redisServer) start() {
	rs.t.Helper()
	rs.cmd = exec.Command("redis-server", "--port", strconv.Itoa(rs.port), "--bind", "127.0.0.1",
		"--dir", rs.dir, "--appendonly", "yes", "--appendfsync", "always", "--save", "")
	if err := rs.cmd.Start(); err != nil {
		rs.t.Fatal(err)
	}
	eventually(rs.t, 10*time.Second, "redis-server answers", func() bool {
		c, err := net.DialTimeout("tcp", rs.addr(), 200*time.Millisecond)
		if err != nil {
			return false
		}
		defer c.Close()
		_, _ = c.Write([]byte("PING\r\n"))
		buf := make([]byte, 16)
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		n, _ := c.Read(buf)
		return string(buf[:n]) == "+PONG\r\n"
	})
}

func (rs *redisServer) stop() {
	if rs.cmd == nil || rs.cmd.Process == nil {
		return
	}
	_ = rs.cmd.Process.Signal(syscall.SIGTERM)
	_ = rs.cmd.Wait()
	rs.cmd = nil
}

// node is one Caddy process of a two-node deployment sharing Redis.
type node struct {
	url  string
	stop func()
}

// nodeCommand writes the configuration of the node on port and returns the
// command that runs it, with its own Caddy data directory.
func nodeCommand(t *testing.T, ctx context.Context, bin, dir string, port int, redisAddr, usersFile string) *exec.Cmd {
	t.Helper()
	cfg := filepath.Join(dir, fmt.Sprintf("Caddyfile.%d", port))
	body := fmt.Sprintf(`{
	admin off
	skip_install_trust
	default_bind 127.0.0.1
	twostep {
		users_file %s
		store redis redis://%s/0
		secret "one secret shared by every node of this test"
		code {
			resend_after 1s
		}
		dev_outbox
	}
}

http://localhost:%d {
	twostep {
		rule bypass path /health
		default one_factor
	}
	respond "hello {http.auth.user.id}" 200
}
`, usersFile, redisAddr, port)
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, bin, "run", "--config", cfg, "--adapter", "caddyfile")
	cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+filepath.Join(dir, fmt.Sprint("data", port)), "XDG_CONFIG_HOME="+filepath.Join(dir, fmt.Sprint("config", port)))
	return cmd
}

// startNode starts a node and waits until twostep answers a stranger on
// a protected route (the HTTP server may listen before the twostep app
// has started).
func startNode(t *testing.T, bin, dir string, port int, redisAddr, usersFile string) *node {
	t.Helper()
	return startNodeUntil(t, bin, dir, port, redisAddr, usersFile, "/", http.StatusUnauthorized)
}

// startNodeUntil starts a node and waits until path answers status.
func startNodeUntil(t *testing.T, bin, dir string, port int, redisAddr, usersFile, path string, status int) *node {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := nodeCommand(t, ctx, bin, dir, port, redisAddr, usersFile)
	logf, _ := os.Create(filepath.Join(dir, fmt.Sprintf("node%d.log", port)))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	n := &node{url: fmt.Sprintf("http://localhost:%d", port), stop: func() { cancel(); _ = cmd.Wait() }}
	t.Cleanup(func() {
		n.stop()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, fmt.Sprintf("node%d.log", port)))
			t.Logf("node %d log (tail):\n%s", port, tail(b, 3000))
		}
	})
	eventually(t, 20*time.Second, "node answers", func() bool {
		res, err := http.Get(n.url + path)
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == status
	})
	return n
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

func (n *node) post(t *testing.T, c *client, path, body string) *response {
	t.Helper()
	return c.do(http.MethodPost, n.url+path, bytesReader(body), "Content-Type", "application/json")
}

// redisNodesSetup starts a Redis and builds Caddy for nodes of a test, with
// a directory for their files and the users file they share.
func redisNodesSetup(t *testing.T) (rs *redisServer, bin, dir, usersFile string) {
	t.Helper()
	rs = startRedis(t)
	bin = buildCaddy(t)
	dir = t.TempDir()
	usersFile = filepath.Join(dir, "users.yml")
	writeUsers(t, usersFile, alicePassword, false)
	return rs, bin, dir, usersFile
}

// Two Caddy processes share one Redis: sessions, trusted devices and
// revocations cross nodes; Redis down means 503 (bypass still works), and
// when it returns the same session works again.
func TestTwoNodesShareRedis(t *testing.T) {
	rs, bin, dir, uf := redisNodesSetup(t)
	a := startNode(t, bin, dir, 9085, rs.addr(), uf)
	b := startNode(t, bin, dir, 9086, rs.addr(), uf)

	c := newClient(t)
	wantStatus(t, a.post(t, c, "/.twostep/api/login", `{"username":"bob","password":"`+bobPassword+`"}`), http.StatusOK)
	// The cookie is per host: copy it to node B's host as a shared domain would.
	copyCookies(t, c, a.url, b.url)

	t.Run("sign in on A, request on B", func(t *testing.T) {
		if r := c.get(b.url + "/"); string(r.body) != "hello bob" {
			t.Fatalf("node B: %d %s", r.StatusCode, r.body)
		}
	})

	t.Run("trust a device on B, use it on A; revoke on B, refused on A within a second", func(t *testing.T) {
		// Two-step on for bob, through node B (codes from B's outbox).
		before := time.Now()
		wantStatus(t, b.post(t, c, "/.twostep/api/phone", `{"phone":"+15551234567","method":"sms"}`), http.StatusAccepted)
		code := outboxCode(t, c, b.url, "sms", before)
		wantStatus(t, b.post(t, c, "/.twostep/api/phone/confirm", `{"code":"`+code+`"}`), http.StatusOK)
		time.Sleep(1100 * time.Millisecond)
		// Sign in on B with a code and trust the browser.
		r := b.post(t, c, "/.twostep/api/login", `{"username":"bob","password":"`+bobPassword+`"}`)
		if r.json(t)["state"] != "second_factor" {
			t.Fatalf("login on B: %s", r.body)
		}
		before = time.Now()
		wantStatus(t, b.post(t, c, "/.twostep/api/code/send", `{"method":"sms"}`), http.StatusAccepted)
		code = outboxCode(t, c, b.url, "sms", before)
		wantStatus(t, b.post(t, c, "/.twostep/api/code/verify", `{"method":"sms","code":"`+code+`","trust_device":true}`), http.StatusOK)
		copyCookies(t, c, b.url, a.url)
		// On A the password alone now suffices.
		r = a.post(t, c, "/.twostep/api/login", `{"username":"bob","password":"`+bobPassword+`"}`)
		if m := r.json(t); m["state"] != "authenticated" || m["level"] != "two_factor" {
			t.Fatalf("login on A with B's trusted device: %s", r.body)
		}
		copyCookies(t, c, a.url, b.url)
		if r := c.get(a.url + "/"); string(r.body) != "hello bob" {
			t.Fatalf("A before revoke: %d %s", r.StatusCode, r.body)
		}
		// Revoke everything on B.
		wantStatus(t, b.post(t, c, "/.twostep/api/sessions/revoke_all", ""), http.StatusNoContent)
		revoked := time.Now()
		eventually(t, 3*time.Second, "A refuses the revoked session", func() bool {
			return c.get(a.url+"/").StatusCode == http.StatusUnauthorized
		})
		if took := time.Since(revoked); took > 1500*time.Millisecond {
			t.Fatalf("revocation took %s to reach node A, want within a second", took)
		}
	})

	t.Run("Redis down: 503, bypass still 200; back up: the same session works", func(t *testing.T) {
		c2 := newClient(t)
		wantStatus(t, a.post(t, c2, "/.twostep/api/login", `{"username":"alice","password":"`+alicePassword+`"}`), http.StatusOK)
		if r := c2.get(a.url + "/"); string(r.body) != "hello alice" {
			t.Fatalf("before: %s", r.body)
		}
		rs.stop()
		eventually(t, 5*time.Second, "503 while Redis is down", func() bool {
			r := c2.get(a.url + "/")
			return r.StatusCode == http.StatusServiceUnavailable && r.json(t)["error"] == "unavailable"
		})
		wantStatus(t, c2.get(a.url+"/health"), http.StatusOK)
		wantError(t, c2.get(a.url+"/.twostep/api/me"), http.StatusServiceUnavailable, "unavailable")
		// A stranger (no cookie at all) is told the same, not asked to sign in.
		stranger := newClient(t)
		eventually(t, 5*time.Second, "503 for a stranger while Redis is down", func() bool {
			r := stranger.get(a.url + "/")
			return r.StatusCode == http.StatusServiceUnavailable && r.json(t)["error"] == "unavailable"
		})
		wantError(t, stranger.get(a.url+"/.twostep/api/me"), http.StatusServiceUnavailable, "unavailable")
		wantStatus(t, stranger.do(http.MethodGet, a.url+"/.twostep/login", nil, "Accept", "text/html"), http.StatusServiceUnavailable)
		wantStatus(t, stranger.do(http.MethodGet, a.url+"/app", nil, "Accept", "text/html"), http.StatusServiceUnavailable)
		wantStatus(t, stranger.get(a.url+"/health"), http.StatusOK)
		wantError(t, a.post(t, c2, "/.twostep/api/login", `{"username":"alice","password":"`+alicePassword+`"}`), http.StatusServiceUnavailable, "unavailable")
		rs.start()
		eventually(t, 10*time.Second, "the same session works when Redis is back", func() bool {
			r := c2.get(a.url + "/")
			return string(r.body) == "hello alice"
		})
		eventually(t, 5*time.Second, "a stranger is asked to sign in again", func() bool {
			r := stranger.get(a.url + "/")
			return r.StatusCode == http.StatusUnauthorized && r.json(t)["error"] == "unauthenticated"
		})
	})
}

// A Redis that loses its data (flushed, or restarted without persistence)
// looks like a store whose users never turned two-step on. The running
// node answers 503 instead of letting bob sign in with the password
// alone, and a node started on it refuses to start.
func TestRedisEmptiedIsRefused(t *testing.T) {
	rs, bin, dir, uf := redisNodesSetup(t)
	a := startNode(t, bin, dir, 9085, rs.addr(), uf)

	c := newClient(t)
	wantStatus(t, a.post(t, c, "/.twostep/api/login", `{"username":"bob","password":"`+bobPassword+`"}`), http.StatusOK)
	before := time.Now()
	wantStatus(t, a.post(t, c, "/.twostep/api/phone", `{"phone":"+15551234567","method":"sms"}`), http.StatusAccepted)
	code := outboxCode(t, c, a.url, "sms", before)
	wantStatus(t, a.post(t, c, "/.twostep/api/phone/confirm", `{"code":"`+code+`"}`), http.StatusOK)
	if r := a.post(t, c, "/.twostep/api/login", `{"username":"bob","password":"`+bobPassword+`"}`); r.json(t)["state"] != "second_factor" {
		t.Fatalf("two-step on: %s", r.body)
	}

	if out, err := exec.Command("redis-cli", "-p", strconv.Itoa(rs.port), "FLUSHALL").CombinedOutput(); err != nil {
		t.Fatalf("FLUSHALL: %v %s", err, out)
	}
	// At once, not only from the next ping: the sign-in itself checks the
	// store before it lets bob in on the password alone.
	stranger := newClient(t)
	wantError(t, a.post(t, stranger, "/.twostep/api/login", `{"username":"bob","password":"`+bobPassword+`"}`), http.StatusServiceUnavailable, "unavailable")
	eventually(t, 5*time.Second, "503 for strangers once the ping sees it", func() bool {
		return stranger.get(a.url+"/").StatusCode == http.StatusServiceUnavailable
	})
	wantError(t, stranger.get(a.url+"/"), http.StatusServiceUnavailable, "unavailable")
	wantStatus(t, stranger.get(a.url+"/health"), http.StatusOK)
	if r := a.post(t, stranger, "/.twostep/api/login", `{"username":"bob","password":"`+bobPassword+`"}`); r.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("bob on the emptied store: %d %s", r.StatusCode, r.body)
	}
	a.stop()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := nodeCommand(t, ctx, bin, dir, 9085, rs.addr(), uf).CombinedOutput()
	if err == nil || ctx.Err() != nil || !strings.Contains(string(out), "lost its records") || !strings.Contains(string(out), "redis store "+rs.addr()+" db 0") {
		t.Fatalf("a node started on the emptied store: %v (ctx %v):\n%s", err, ctx.Err(), tail(out, 3000))
	}
}

// Redis that starts after Caddy (containers starting together): the node
// starts, answers 503 until the store can be checked, then serves.
func TestRedisAfterCaddy(t *testing.T) {
	rs, bin, dir, uf := redisNodesSetup(t)
	rs.stop()
	a := startNodeUntil(t, bin, dir, 9085, rs.addr(), uf, "/health", http.StatusOK)
	time.Sleep(500 * time.Millisecond) // the twostep app has started too
	c := newClient(t)
	wantError(t, c.get(a.url+"/"), http.StatusServiceUnavailable, "unavailable")
	wantError(t, a.post(t, c, "/.twostep/api/login", `{"username":"bob","password":"`+bobPassword+`"}`), http.StatusServiceUnavailable, "unavailable")
	rs.start()
	eventually(t, 10*time.Second, "the node serves once Redis answers", func() bool {
		return c.get(a.url+"/").StatusCode == http.StatusUnauthorized
	})
	wantStatus(t, a.post(t, c, "/.twostep/api/login", `{"username":"bob","password":"`+bobPassword+`"}`), http.StatusOK)
	if r := c.get(a.url + "/"); string(r.body) != "hello bob" {
		t.Fatalf("signed in: %d %s", r.StatusCode, r.body)
	}
}

func copyCookies(t *testing.T, c *client, from, to string) {
	t.Helper()
	fu, _ := parseURL(from)
	tu, _ := parseURL(to)
	c.http.Jar.SetCookies(tu, c.http.Jar.Cookies(fu))
}

func outboxCode(t *testing.T, c *client, base, channel string, after time.Time) string {
	t.Helper()
	var code string
	eventually(t, 5*time.Second, "a code in the outbox", func() bool {
		r := c.get(base + "/.twostep/api/outbox")
		var list []outboxEntry
		if json.Unmarshal(r.body, &list) != nil {
			return false
		}
		for _, e := range list {
			if e.Channel == channel && e.Code != "" && e.Time.After(after) {
				code = e.Code
				return true
			}
		}
		return false
	})
	return code
}
