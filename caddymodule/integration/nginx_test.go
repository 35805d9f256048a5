package integration

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// nginxFront is the port of the nginx that the README's auth_request
// recipe runs on in front of the sidecar.
const nginxFront = "http://localhost:9087"

// nginxConf is the README's nginx recipe (Sidecar mode), with the test's
// addresses and what nginx needs to run unprivileged in a directory.
func nginxConf(dir, app string) string {
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;" // the workers must reach the test's private directory
	}
	return fmt.Sprintf(`%s
daemon off;
worker_processes 1;
pid %[2]s/nginx.pid;
error_log %[2]s/error.log;
events {}
http {
    access_log off;
    client_body_temp_path %[2]s/body;
    proxy_temp_path %[2]s/proxy;
    fastcgi_temp_path %[2]s/fastcgi;
    uwsgi_temp_path %[2]s/uwsgi;
    scgi_temp_path %[2]s/scgi;
    server {
        listen 127.0.0.1:9087;
        location = /_twostep {
            internal;
            proxy_pass http://localhost:9081/.twostep/api/verify; # the Host the sidecar site answers
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-URL $scheme://$host:$server_port$request_uri; # a non-default port
            proxy_set_header X-Original-Method $request_method;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header Accept "application/json";
        }
        location /.twostep/ {
            proxy_pass http://localhost:9081;
            proxy_set_header Host $http_host;
        }
        location / {
            auth_request /_twostep;
            auth_request_set $user $upstream_http_remote_user;
            auth_request_set $groups $upstream_http_remote_groups;
            auth_request_set $email $upstream_http_remote_email;
            auth_request_set $name $upstream_http_remote_name;
            auth_request_set $twostep_page $upstream_http_location;
            proxy_set_header Remote-User $user;
            proxy_set_header Remote-Groups $groups;
            proxy_set_header Remote-Email $email;
            proxy_set_header Remote-Name $name;
            error_page 401 =302 $twostep_page;
            proxy_pass http://%[3]s;
        }
    }
}
`, user, dir, app)
}

// nginxBinary finds nginx (Debian installs it in /usr/sbin).
func nginxBinary(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("nginx"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/nginx"); err == nil {
		return "/usr/sbin/nginx"
	}
	if os.Getenv("TWOSTEP_REQUIRE_NGINX") != "" {
		t.Fatal("nginx is not installed (apt-get install nginx)")
	}
	t.Skip("nginx is not installed; set TWOSTEP_REQUIRE_NGINX=1 to make this a failure")
	return ""
}

// The README's nginx recipe, run by a real nginx in front of the sidecar:
// strangers are sent to sign in, a password-only session on a two_factor
// route to the enrolment page (the recipe used to send it to the sign-in
// page, which sent it straight back), and the app gets the signed-in
// user's headers, never the client's.
func TestSidecarNginxAuthRequest(t *testing.T) {
	bin := nginxBinary(t)
	f := start(t)
	f.load(f.sidecarCaddyfile(true, nginxFront))

	dir := t.TempDir()
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(nginxConf(dir, f.echo.addr())), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "-p", dir, "-c", conf)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGQUIT) }
	cmd.WaitDelay = 10 * time.Second
	out, _ := os.Create(filepath.Join(dir, "nginx.out"))
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			for _, name := range []string{"nginx.out", "error.log"} {
				b, _ := os.ReadFile(filepath.Join(dir, name))
				t.Logf("%s:\n%s", name, tail(b, 3000))
			}
		}
	})
	eventually(t, 10*time.Second, "nginx answers", func() bool {
		res, err := http.Get(nginxFront + "/public/x")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	})

	c := newClient(t)
	t.Run("stranger: sent to sign in, and back", func(t *testing.T) {
		r := c.browse(nginxFront + "/reports?a=b&c=d")
		wantStatus(t, r, http.StatusFound)
		want := nginxFront + "/.twostep/login?return=" + url.QueryEscape(nginxFront+"/reports?a=b&c=d")
		if got := r.Header.Get("Location"); got != want {
			t.Fatalf("Location %q, want %q", got, want)
		}
	})
	t.Run("signed in: the app gets the user, not the client's header", func(t *testing.T) {
		r := c.do(http.MethodPost, nginxFront+"/.twostep/api/login", bytesReader(`{"username":"bob","password":"`+bobPassword+`"}`), "Content-Type", "application/json")
		wantStatus(t, r, http.StatusOK)
		wantStatus(t, c.get(nginxFront+"/reports", "Remote-User", "admin"), http.StatusOK)
		if h := f.echo.lastHeader(); strings.Join(h.Values("Remote-User"), ",") != "bob" || h.Get("Remote-Groups") != "staff" {
			t.Fatalf("the app saw Remote-User %q, Remote-Groups %q", h.Values("Remote-User"), h.Get("Remote-Groups"))
		}
	})
	t.Run("password only on a two_factor route: the enrolment page, no loop", func(t *testing.T) {
		r := c.browse(nginxFront + "/secure/x")
		wantStatus(t, r, http.StatusFound)
		want := nginxFront + "/.twostep/settings?enroll=1&return=" + url.QueryEscape(nginxFront+"/secure/x")
		if got := r.Header.Get("Location"); got != want {
			t.Fatalf("Location %q, want %q", got, want)
		}
		wantStatus(t, c.browse(want), http.StatusOK) // the page itself, through nginx
	})
	t.Run("group rule: 403", func(t *testing.T) {
		wantStatus(t, c.get(nginxFront+"/admin/x"), http.StatusForbidden)
	})
}
