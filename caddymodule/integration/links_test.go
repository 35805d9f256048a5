package integration

import (
	"net/http"
	"regexp"
	"strings"
	"testing"
)

// TestEmailLinksNotFromClientHost: links in emails are built from the
// site's own names, never from the Host a client sent. On a site that
// answers any Host (`http://:9080`, as behind a load balancer), someone
// with bob's password and phone signs in with `Host: evil.example` and
// trusts the browser; bob's genuine "new browser" email must not send him
// to evil.example to "revoke" it (THREATS: caddy-security #269, "build
// absolute URLs only from configured public origins"). Nor may a
// reviewer's Host end up in the approval's "this wasn't me" link.
func TestEmailLinksNotFromClientHost(t *testing.T) {
	rf := startRecovery(t, recOpts{recovery: []string{"cooling_off 1h"}})
	anyHost := func(portal string) {
		t.Helper()
		cfg := rf.config(rf.lines)
		if portal != "" {
			cfg = strings.Replace(cfg, "\t\ttwostep {\n", "\t\ttwostep {\n\t\t\tportal "+portal+"\n", 1)
		}
		const named = "http://localhost:9080 {"
		if !strings.Contains(cfg, named) {
			t.Fatal("harness Caddyfile changed: no " + named + " site")
		}
		rf.cfg = strings.Replace(cfg, named, "http://:9080 {", 1)
		rf.load(rf.cfg)
	}
	links := regexp.MustCompile(`https?://[^\s"<>]+`)
	trustAs := func(host string) mailMsg { t.Helper(); return trustBobAs(t, rf, host) }

	// bob turns two-step on from the real site.
	anyHost("")
	twoFactorClient(t, "bob", bobPassword)

	t.Run("no portal: the email has no link and says where to go", func(t *testing.T) {
		m := trustAs("evil.example:9080")
		if strings.Contains(strings.ToLower(m.Body), "evil.example") {
			t.Fatalf("the email links to the Host the client sent:\n%s", m.Body)
		}
		if l := links.FindAllString(m.Body, -1); len(l) > 0 {
			t.Errorf("the email holds links %v although this site has no name of its own", l)
		}
		if !strings.Contains(m.Body, "Login & security") {
			t.Errorf("the email does not say where to revoke the browser:\n%s", m.Body)
		}
	})

	t.Run("with portal: the link goes to the portal", func(t *testing.T) {
		anyHost("http://localhost:9080")
		m := trustAs("evil.example:9080")
		if strings.Contains(strings.ToLower(m.Body), "evil.example") {
			t.Fatalf("the email links to the Host the client sent:\n%s", m.Body)
		}
		link := regexp.MustCompile(`http://localhost:9080/\.twostep/devices/revoke\?\S+`).FindString(m.Body)
		if link == "" {
			t.Fatalf("no revoke link on the portal in the email:\n%s", m.Body)
		}
		// The link works.
		r := newClient(t).browse(link)
		wantStatus(t, r, http.StatusOK)
	})

	t.Run("approval: the cancel link is not the reviewer's Host", func(t *testing.T) {
		anyHost("")
		bob := newClient(t)
		bob.host = "localhost:9080"
		bob.halfSignIn("bob", bobPassword)
		id := mustFileRecovery(t, bob, "passport", pngFile(t))
		alice := newClient(t)
		alice.host = "evil.example:9080"
		wantAuthenticatedLogin(t, alice, "alice", alicePassword, "one_factor")
		enrolSMS(t, alice)
		mark := rf.mark()
		wantStatus(t, decide(alice, id, map[string]string{"decision": "approve"}), http.StatusNoContent)
		m := rf.waitMail(t, mark, "bob@example.com", "about the approval", func(s, b string) bool {
			return strings.Contains(s, "approved")
		})
		if strings.Contains(strings.ToLower(m.Body), "evil.example") {
			t.Fatalf("the approval email links to the reviewer's Host:\n%s", m.Body)
		}
		if l := links.FindAllString(m.Body, -1); len(l) > 0 {
			t.Errorf("the approval email holds links %v although this site has no name of its own", l)
		}
	})
}

// On a named site, a Host with another port than the one the request came
// in on must not steer the links: a service of someone else's on that port
// of the same host would receive the revoke or "this wasn't me" token, and
// could show the owner a fake "stopped".
func TestEmailLinksKeepTheListenerPort(t *testing.T) {
	rf := startRecovery(t, recOpts{})
	twoFactorClient(t, "bob", bobPassword)
	trustAs := func(host string) mailMsg { t.Helper(); return trustBobAs(t, rf, host) }
	if m := trustAs("localhost:9080"); !strings.Contains(m.Body, "http://localhost:9080/.twostep/devices/revoke?") {
		t.Fatalf("with the site's own Host the email has no revoke link on it:\n%s", m.Body)
	}
	if m := trustAs("localhost:9443"); strings.Contains(m.Body, ":9443") {
		t.Fatalf("the email links to the port the client named, not the one it came in on:\n%s", m.Body)
	}
}

// trustBobAs signs bob in with a code from a browser that sends Host host,
// trusting it, and returns the "new browser" email.
func trustBobAs(t *testing.T, rf *recFix, host string) mailMsg {
	t.Helper()
	c := newClient(t)
	c.host = host
	mark := rf.mark()
	signInWithCode(t, c, "bob", bobPassword, true)
	return rf.waitMail(t, mark, "bob@example.com", "about the new trusted browser", func(s, b string) bool {
		return strings.Contains(s, "new browser")
	})
}
