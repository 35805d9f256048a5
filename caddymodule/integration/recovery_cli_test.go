package integration

import (
	"bytes"
	"fmt"
	"image"
	"image/png"
	"mime/multipart"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

var recoveryIDRe = regexp.MustCompile(`(?m)^([0-9a-f]{24})\s+bob\s`)

// `caddy twostep recovery list|show|approve|deny` decide requests from the
// shell, through the running server's admin API.
func TestRecoveryCommands(t *testing.T) {
	f := start(t)
	f.load(f.outboxConfig("recovery {\n\t\t\treview_group admins\n\t\t\tapprovals 1\n\t\t}\n"))
	c := newClient(t)
	c.mustLogin("bob", bobPassword)
	enrolSMS(t, c)
	wantStatus(t, c.postJSON("/.twostep/api/logout", ""), http.StatusNoContent)
	r := c.login("bob", bobPassword)
	if r.json(t)["state"] != "second_factor" {
		t.Fatalf("login: %s", r.body)
	}
	var img bytes.Buffer
	_ = png.Encode(&img, image.NewRGBA(image.Rect(0, 0, 8, 8)))
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	_ = mw.WriteField("document_type", "passport")
	fw, _ := mw.CreateFormFile("document", "id.png")
	_, _ = fw.Write(img.Bytes())
	_ = mw.Close()
	r = c.do(http.MethodPost, site+"/.twostep/api/recovery", &body, "Content-Type", mw.FormDataContentType())
	wantStatus(t, r, http.StatusAccepted)

	bin := buildCaddy(t)
	run := func(args ...string) (string, error) {
		out, err := exec.Command(bin, append([]string{"twostep"}, append(args, "--address", "localhost:2999")...)...).CombinedOutput()
		return string(out), err
	}
	out, err := run("recovery", "list")
	m := recoveryIDRe.FindStringSubmatch(out)
	if err != nil || m == nil || !strings.Contains(out, "pending") {
		t.Fatalf("recovery list: %v\n%s", err, out)
	}
	id := m[1]
	if out, err := run("recovery", "show", id); err != nil || !strings.Contains(out, `"status":"pending"`) {
		t.Fatalf("recovery show: %v\n%s", err, out)
	}
	if out, err := run("recovery", "deny", id); err == nil {
		t.Fatalf("deny without a reason succeeded:\n%s", out)
	}
	if out, err := run("recovery", "approve", id, "--reason", "checked by phone"); err != nil || !strings.Contains(out, "approved "+id+": the request is approved") {
		t.Fatalf("recovery approve: %v\n%s", err, out)
	}
	if out, err := run("recovery", "approve", id); err == nil {
		t.Fatalf("approving a decided request succeeded:\n%s", out)
	}
	r = c.login("bob", bobPassword)
	if m := r.json(t); m["state"] != "authenticated" || m["level"] != "one_factor" {
		t.Fatalf("after approval from the shell: %s", r.body)
	}
	if out, _ := run("recovery", "show", "000000000000000000000000"); !strings.Contains(out, "404") {
		t.Fatal(fmt.Sprintf("unknown id: %s", out))
	}
}
