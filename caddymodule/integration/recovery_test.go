package integration

// Account recovery with an identity check, end to end (SPEC §2 `recovery`,
// §4 /.twostep/recovery, /recovery/status, /review and the API rows
// recovery, recovery/{id}, review, review/{id}/document, review/{id};
// "Behaviour that spans the pages" on recovery; §8 on documents): real
// Caddy, real SMTP, the developer outbox for SMS.

import (
	"archive/zip"
	"bytes"
	"html"
	"image/jpeg"
	"image/png"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

const bobsPhone = "+15551234567" // the number enrolSMS confirms

func pngFile(t *testing.T) *formFile {
	return &formFile{name: "id.png", ctype: "image/png", data: pngWithText(t)}
}

// 1 and 11: request → review → approval → password-only sign-in; every
// document view is audited.
func TestRecoveryJourney(t *testing.T) {
	rf := startRecovery(t, recOpts{
		recovery: []string{"approvals 1", `expected "about two days"`, "cooling_off 0", "after_approval password_only"},
		carol:    "[staff]",
		audit:    true,
	})

	// bob turns two-step on, trusts a browser, signs out and comes back
	// (elsewhere) with the password only.
	bobFull := twoFactorClient(t, "bob", bobPassword)
	wantStatus(t, bobFull.postJSON(api+"logout", ""), http.StatusNoContent)
	trusted := newClient(t)
	signInWithCode(t, trusted, "bob", bobPassword, true)
	wantStatus(t, trusted.postJSON(api+"logout", ""), http.StatusNoContent)
	bob := halfClient(t, "bob", bobPassword)

	mark := rf.mark()
	doc := pngFile(t)
	id := mustFileRecovery(t, bob, "drivers_license", doc)
	rf.waitMail(t, mark, "bob@example.com", "about the recovery request", func(s, b string) bool {
		return strings.Contains(s+b, "recover")
	})
	wantRecoveryStatus(t, bob, id, "pending")
	if m := recoveryStatus(t, bob, id); len(m) != 1 {
		t.Errorf("GET recovery/%s while pending: %v, want exactly {\"status\":\"pending\"}", id, m)
	}

	// A second request, from carol, to see the queue's order.
	twoFactorClient(t, "carol", carolPassword)
	carolID := mustFileRecovery(t, halfClient(t, "carol", carolPassword), "passport", &formFile{"scan.pdf", "application/pdf", minimalPDF()})

	// Someone else's request does not exist for alice.
	alice := newClient(t)
	wantAuthenticatedLogin(t, alice, "alice", alicePassword, "one_factor")
	wantError(t, alice.get(site+api+"recovery/"+id), http.StatusNotFound, "not_found")

	// alice, a reviewer, with two factors.
	enrolSMS(t, alice)
	wantStatus(t, alice.postJSON(api+"logout", ""), http.StatusNoContent)
	signInWithCode(t, alice, "alice", alicePassword, false)
	wantError(t, alice.get(site+api+"recovery/"+id), http.StatusNotFound, "not_found")

	q := reviewQueue(t, alice)
	if len(q) != 2 || q[0].ID != id || q[1].ID != carolID {
		t.Fatalf("GET review: %+v; want bob's request %s then carol's %s (oldest first)", q, id, carolID)
	}
	if it := q[0]; it.User != "bob" || it.DocumentType != "drivers_license" || it.Approvals != 0 || it.AgeSeconds < 0 || it.AgeSeconds > 120 ||
		it.Created.IsZero() || time.Since(it.Created) > 2*time.Minute || !q[0].Created.Before(q[1].Created) {
		t.Errorf("GET review item %+v", it)
	}

	// The document, as the reviewer gets it.
	r := alice.get(site + api + "review/" + id + "/document")
	wantStatus(t, r, http.StatusOK)
	if cd := r.Header.Get("Content-Disposition"); !strings.HasPrefix(strings.ToLower(cd), "attachment") {
		t.Errorf("Content-Disposition %q, want attachment", cd)
	}
	if v := r.Header.Get("X-Content-Type-Options"); v != "nosniff" {
		t.Errorf("X-Content-Type-Options %q, want nosniff", v)
	}
	if csp := r.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "sandbox") {
		t.Errorf("Content-Security-Policy %q, want sandbox", csp)
	}
	if img, err := png.Decode(bytes.NewReader(r.body)); err != nil {
		t.Errorf("the document is not a PNG (%v); Content-Type %q, %d bytes", err, r.Header.Get("Content-Type"), len(r.body))
	} else if b := img.Bounds(); b.Dx() != 64 || b.Dy() != 48 {
		t.Errorf("the document is %v, want 64×48", b)
	}
	if bytes.Contains(r.body, []byte("tEXt")) || bytes.Contains(r.body, []byte("planted-metadata")) {
		t.Errorf("the document still holds the planted tEXt chunk (SPEC: images lose their metadata)")
	}
	if bytes.Equal(r.body, doc.data) {
		t.Errorf("the document is served byte for byte as uploaded")
	}

	// 11: the view is audited, with the reviewer's name.
	eventually(t, 5*time.Second, `an audit entry "recovery document viewed" by alice`, func() bool {
		for _, e := range rf.auditEntries(t) {
			if e["logger"] == "twostep.audit" && e["msg"] == "recovery document viewed" && e["reviewer"] == "alice" && e["user"] == "bob" {
				return true
			}
		}
		return false
	})

	// Approval.
	mark = rf.mark()
	approvedAt := time.Now()
	wantStatus(t, decide(alice, id, map[string]string{"decision": "approve"}), http.StatusNoContent)
	rf.waitMail(t, mark, "bob@example.com", "saying the recovery was approved", func(s, b string) bool {
		return strings.Contains(s, "approved")
	})
	rf.waitMail(t, mark, "bob@example.com", `saying "sign in with your password"`, func(s, b string) bool {
		return strings.Contains(s+" "+b, "sign in with your password")
	})
	var notice *outboxEntry
	eventually(t, 5*time.Second, "an SMS notice of the approval to bob's phone", func() bool {
		for _, e := range outbox(t) {
			if e.Channel == "sms" && e.To == bobsPhone && e.Code == "" && !e.Time.Before(approvedAt) &&
				strings.Contains(strings.ToLower(e.Body), "recovery") {
				notice = &e
				return true
			}
		}
		return false
	})
	t.Logf("SMS notice: %q", notice.Body)

	// bob's old sessions ended; the password alone signs him in.
	wantError(t, bob.get(site+api+"recovery/"+id), http.StatusUnauthorized, "unauthenticated")
	m, bob2 := loginState(t, "bob", bobPassword)
	if m["state"] != "authenticated" || m["level"] != "one_factor" {
		t.Fatalf("bob's sign-in after the approval: %v, want {\"state\":\"authenticated\",\"level\":\"one_factor\"}", m)
	}
	en, methods := twoStepOf(t, wantJSON(t, bob2.me(), http.StatusOK))
	if en || len(methods) != 0 {
		t.Errorf("me after the approval: two_step enabled %v, methods %v; want false and []", en, methods)
	}
	wantRecoveryStatus(t, bob2, id, "approved")
	// …and his trusted browser is no longer trusted.
	wantAuthenticatedLogin(t, trusted, "bob", bobPassword, "one_factor")
	if r := trusted.get(site + api + "devices"); r.StatusCode != http.StatusOK || strings.TrimSpace(string(r.body)) != "[]" {
		t.Errorf("GET devices after the approval: %d %s, want []", r.StatusCode, r.body)
	}
	if q := reviewQueue(t, alice); len(q) != 1 || q[0].ID != carolID {
		t.Errorf("GET review after the approval: %+v, want only carol's request", q)
	}
}

// 2 and 10: denial with a reason; the document is deleted after retention.
func TestRecoveryDenialAndRetention(t *testing.T) {
	rf := startRecovery(t, recOpts{recovery: []string{"retention 1s"}})
	twoFactorClient(t, "bob", bobPassword)
	bob := halfClient(t, "bob", bobPassword)
	pdf := minimalPDF()
	id := mustFileRecovery(t, bob, "passport", &formFile{"passport.pdf", "application/pdf", pdf})
	alice := twoFactorClient(t, "alice", alicePassword)

	wantError(t, decide(alice, id, map[string]string{"decision": "deny"}), http.StatusBadRequest, "invalid_request")
	wantError(t, decide(alice, id, map[string]string{"decision": "deny", "reason": ""}), http.StatusBadRequest, "invalid_request")
	wantError(t, decide(alice, id, map[string]string{"decision": "maybe"}), http.StatusBadRequest, "invalid_request")
	wantRecoveryStatus(t, bob, id, "pending")

	const reason = "The photo is too blurry to read the name"
	mark := rf.mark()
	wantStatus(t, decide(alice, id, map[string]string{"decision": "deny", "reason": reason}), http.StatusNoContent)
	if mm := rf.waitMail(t, mark, "bob@example.com", "with the reason for the denial", func(s, b string) bool {
		return strings.Contains(b, strings.ToLower(reason))
	}); mm.Subject != "" && strings.Contains(strings.ToLower(mm.Subject), "approved") {
		t.Errorf("the denial email's subject is %q", mm.Subject)
	}
	m := wantRecoveryStatus(t, bob, id, "denied")
	if m["reason"] != reason {
		t.Errorf("GET recovery/%s: %v, want reason %q", id, m, reason)
	}
	// The status page shows the decided request, reason included.
	if pg := bob.browse(site + "/.twostep/recovery/status"); !strings.Contains(string(pg.body), "Declined") || !strings.Contains(string(pg.body), html.EscapeString(reason)) {
		t.Errorf("recovery/status after the denial: %d %s", pg.StatusCode, pg.body)
	}
	// And the recovery page still takes a new request (it does not send
	// the user back to the decided one).
	if pg := bob.browse(site + "/.twostep/recovery"); pg.StatusCode != http.StatusOK || !strings.Contains(string(pg.body), `name="document"`) {
		t.Errorf("recovery page after a denial: %d %s", pg.StatusCode, pg.body)
	}
	wantError(t, decide(alice, id, map[string]string{"decision": "approve"}), http.StatusConflict, "conflict")
	if q := reviewQueue(t, alice); len(q) != 0 {
		t.Errorf("GET review after the denial: %+v, want []", q)
	}
	if st, _ := loginState(t, "bob", bobPassword); st["state"] != "second_factor" {
		t.Errorf("after a denial bob's sign-in: %v, want second_factor", st)
	}

	// Until retention ends the document is there, as uploaded (PDFs are kept).
	r := alice.get(site + api + "review/" + id + "/document")
	wantStatus(t, r, http.StatusOK)
	if !bytes.Equal(r.body, pdf) {
		t.Errorf("the PDF served differs from the one uploaded (%d vs %d bytes)", len(r.body), len(pdf))
	}
	// 10: then the sweeper deletes it.
	time.Sleep(1200 * time.Millisecond)
	rf.sweep(t)
	eventually(t, 10*time.Second, "GET review/{id}/document → 404 after retention", func() bool {
		return alice.get(site+api+"review/"+id+"/document").StatusCode == http.StatusNotFound
	})
	wantError(t, alice.get(site+api+"review/"+id+"/document"), http.StatusNotFound, "not_found")
	// The owner still sees the outcome.
	wantRecoveryStatus(t, bob, id, "denied")

	// A denied request is closed: a new one may be sent.
	mustFileRecovery(t, bob, "passport", pngFile(t))
}

// 3: cooling-off, the "this wasn't me" link, and the sweeper applying an
// approval when cooling-off ends.
func TestRecoveryCoolingOff(t *testing.T) {
	rf := startRecovery(t, recOpts{recovery: []string{"cooling_off 2s"}})
	twoFactorClient(t, "bob", bobPassword)
	alice := twoFactorClient(t, "alice", alicePassword)
	bob := halfClient(t, "bob", bobPassword)

	id := mustFileRecovery(t, bob, "national_id", pngFile(t))
	mark := rf.mark()
	wantStatus(t, decide(alice, id, map[string]string{"decision": "approve"}), http.StatusNoContent)
	wantRecoveryStatus(t, bob, id, "approved")
	if st, _ := loginState(t, "bob", bobPassword); st["state"] != "second_factor" {
		t.Fatalf("during cooling-off bob's sign-in: %v, want second_factor (two-step still on)", st)
	}
	mail := rf.waitMail(t, mark, "bob@example.com", "about the approval with a cancel link", func(s, b string) bool {
		return strings.Contains(s, "approved")
	})
	link := regexp.MustCompile(`https?://\S+/\.twostep/recovery/cancel\?\S+`).FindString(mail.Body)
	if link == "" {
		t.Fatalf("no \"this wasn't me\" link in the approval email: %q", mail.Body)
	}
	t.Logf("cancel link: %s", link)
	if u, err := url.Parse(link); err != nil || u.Host != "localhost:9080" {
		t.Errorf("cancel link %q is not on the site", link)
	}

	// The link opens a page; its form stops the recovery.
	someone := newClient(t)
	page := someone.browse(link)
	wantStatus(t, page, http.StatusOK)
	form := url.Values{
		"csrf": {hiddenField(t, page.body, "csrf")},
		"r":    {hiddenField(t, page.body, "r")},
		"sig":  {hiddenField(t, page.body, "sig")},
	}
	mark = rf.mark()
	r := someone.browserPost(site+"/.twostep/recovery/cancel", "application/x-www-form-urlencoded", []byte(form.Encode()))
	wantStatus(t, r, http.StatusOK)
	if txt := pageText(r.body); !strings.Contains(txt, "stop") && !strings.Contains(txt, "cancel") {
		t.Errorf("the cancel answer does not say the recovery was stopped: %s", txt)
	}
	wantRecoveryStatus(t, bob, id, "cancelled")
	rf.waitMail(t, mark, "bob@example.com", "saying the recovery was stopped", func(s, b string) bool {
		return strings.Contains(s+b, "stop") || strings.Contains(s+b, "cancel")
	})
	// A forged signature is refused.
	bad := url.Values{"csrf": form["csrf"], "r": form["r"], "sig": {"AAAA" + form.Get("sig")[4:]}}
	wantStatus(t, someone.browserPost(site+"/.twostep/recovery/cancel", "application/x-www-form-urlencoded", []byte(bad.Encode())), http.StatusNotFound)

	time.Sleep(3 * time.Second)
	rf.sweep(t)
	time.Sleep(time.Second)
	if st, _ := loginState(t, "bob", bobPassword); st["state"] != "second_factor" {
		t.Fatalf("3 s after a cancelled approval bob's sign-in: %v, want second_factor", st)
	}

	// Approved and not stopped: two-step turns off when cooling-off ends.
	bob = halfClient(t, "bob", bobPassword)
	id2 := mustFileRecovery(t, bob, "national_id", pngFile(t))
	mark = rf.mark()
	wantStatus(t, decide(alice, id2, map[string]string{"decision": "approve"}), http.StatusNoContent)
	if st, _ := loginState(t, "bob", bobPassword); st["state"] != "second_factor" {
		t.Fatalf("right after the second approval bob's sign-in: %v, want second_factor", st)
	}
	time.Sleep(2100 * time.Millisecond)
	rf.sweep(t)
	eventually(t, 15*time.Second, "two-step off for bob after cooling-off", func() bool {
		st, _ := loginState(t, "bob", bobPassword)
		return st["state"] == "authenticated" && st["level"] == "one_factor"
	})
	rf.waitMail(t, mark, "bob@example.com", `saying "sign in with your password"`, func(s, b string) bool {
		return strings.Contains(s+" "+b, "sign in with your password")
	})
}

// 4: approvals 2 needs two different reviewers.
func TestRecoveryTwoApprovals(t *testing.T) {
	startRecovery(t, recOpts{recovery: []string{"approvals 2"}, carol: "[admins]"})
	twoFactorClient(t, "bob", bobPassword)
	alice := twoFactorClient(t, "alice", alicePassword)
	carol := twoFactorClient(t, "carol", carolPassword)
	bob := halfClient(t, "bob", bobPassword)
	docx := sampleDOCX(t)
	id := mustFileRecovery(t, bob, "state_id", &formFile{"id.docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document", docx})

	wantStatus(t, decide(alice, id, map[string]string{"decision": "approve"}), http.StatusNoContent)
	if q := reviewQueue(t, carol); len(q) != 1 || q[0].ID != id || q[0].Approvals != 1 {
		t.Errorf("GET review after one approval: %+v, want the request with approvals 1", q)
	}
	wantRecoveryStatus(t, bob, id, "pending")
	if st, _ := loginState(t, "bob", bobPassword); st["state"] != "second_factor" {
		t.Fatalf("after one of two approvals bob's sign-in: %v, want second_factor", st)
	}
	wantError(t, decide(alice, id, map[string]string{"decision": "approve"}), http.StatusConflict, "conflict")
	if q := reviewQueue(t, carol); len(q) != 1 || q[0].Approvals != 1 {
		t.Errorf("GET review after alice approved twice: %+v, want approvals 1", q)
	}

	// The DOCX reaches the second reviewer as a Word document.
	r := carol.get(site + api + "review/" + id + "/document")
	wantStatus(t, r, http.StatusOK)
	if zr, err := zip.NewReader(bytes.NewReader(r.body), int64(len(r.body))); err != nil {
		t.Errorf("the DOCX served is not a zip: %v", err)
	} else if !slices.ContainsFunc(zr.File, func(f *zip.File) bool { return f.Name == "word/document.xml" }) {
		t.Errorf("the DOCX served has no word/document.xml")
	}

	wantStatus(t, decide(carol, id, map[string]string{"decision": "approve"}), http.StatusNoContent)
	st, c := loginState(t, "bob", bobPassword)
	if st["state"] != "authenticated" || st["level"] != "one_factor" {
		t.Fatalf("after two approvals bob's sign-in: %v, want one_factor", st)
	}
	if en, methods := twoStepOf(t, wantJSON(t, c.me(), http.StatusOK)); en || len(methods) != 0 {
		t.Errorf("me after two approvals: enabled %v, methods %v", en, methods)
	}
	wantRecoveryStatus(t, c, id, "approved")
}

// 5 and 6: nobody reviews their own request; only members of review_group
// signed in with two factors review.
func TestRecoveryReviewerRules(t *testing.T) {
	startRecovery(t, recOpts{carol: "[admins]"})

	// alice signs in with two factors first (a second factor passed later
	// would cancel her request), then files a request from another browser.
	alice := twoFactorClient(t, "alice", alicePassword)
	aliceHalf := halfClient(t, "alice", alicePassword)
	jpg := jpegWithGPS(t)
	if !bytes.Contains(jpg, []byte("GPS")) || !bytes.Contains(jpg, []byte("Exif")) {
		t.Fatal("the sample JPEG lacks its EXIF/GPS segment")
	}
	id := mustFileRecovery(t, aliceHalf, "voter_card", &formFile{"id.jpg", "image/jpeg", jpg})

	wantError(t, decide(alice, id, map[string]string{"decision": "approve"}), http.StatusForbidden, "forbidden")
	wantError(t, decide(alice, id, map[string]string{"decision": "deny", "reason": "no"}), http.StatusForbidden, "forbidden")
	wantError(t, alice.get(site+api+"review/"+id+"/document"), http.StatusForbidden, "forbidden")
	wantRecoveryStatus(t, aliceHalf, id, "pending")

	// 6: bob, staff, not a reviewer, even with two factors.
	bob := twoFactorClient(t, "bob", bobPassword)
	wantError(t, bob.get(site+api+"review"), http.StatusForbidden, "forbidden")
	wantError(t, bob.get(site+api+"review/"+id+"/document"), http.StatusForbidden, "forbidden")
	wantError(t, decide(bob, id, map[string]string{"decision": "approve"}), http.StatusForbidden, "forbidden")
	if r := bob.browse(site + "/.twostep/review"); r.StatusCode != http.StatusForbidden {
		t.Errorf("GET /.twostep/review as bob: %d, want 403", r.StatusCode)
	}

	// A reviewer signed in with the password only.
	carol := newClient(t)
	wantAuthenticatedLogin(t, carol, "carol", carolPassword, "one_factor")
	wantError(t, carol.get(site+api+"review"), http.StatusForbidden, "forbidden")
	wantError(t, carol.get(site+api+"review/"+id+"/document"), http.StatusForbidden, "forbidden")
	wantError(t, decide(carol, id, map[string]string{"decision": "approve"}), http.StatusForbidden, "forbidden")
	// Half signed in is no reviewer either.
	if r := aliceHalf.get(site + api + "review"); r.StatusCode == http.StatusOK {
		t.Errorf("GET review half signed in: 200 %s", r.body)
	}
	wantRecoveryStatus(t, aliceHalf, id, "pending")

	// With two factors carol reviews alice's request; the JPEG lost its EXIF.
	enrolSMS(t, carol)
	wantStatus(t, carol.postJSON(api+"logout", ""), http.StatusNoContent)
	signInWithCode(t, carol, "carol", carolPassword, false)
	if q := reviewQueue(t, carol); len(q) != 1 || q[0].ID != id || q[0].User != "alice" || q[0].DocumentType != "voter_card" {
		t.Errorf("GET review as carol: %+v", q)
	}
	r := carol.get(site + api + "review/" + id + "/document")
	wantStatus(t, r, http.StatusOK)
	if _, err := jpeg.Decode(bytes.NewReader(r.body)); err != nil {
		t.Errorf("the document is not a JPEG: %v", err)
	}
	for _, s := range []string{"GPS", "Exif", "planted-metadata"} {
		if bytes.Contains(r.body, []byte(s)) {
			t.Errorf("the JPEG served still holds %q (SPEC: images lose their metadata, EXIF/GPS)", s)
		}
	}
	// Another site's form or script cannot decide or file.
	if r := carol.do(http.MethodPost, site+api+"review/"+id, strings.NewReader(`{"decision":"approve"}`),
		"Content-Type", "application/json", "Origin", "https://evil.example"); r.StatusCode != http.StatusForbidden {
		t.Errorf("POST review/{id} with Origin https://evil.example: %d %s, want 403", r.StatusCode, r.body)
	}
	body, ct := multipartBody(t, [][2]string{{"document_type", "passport"}}, pngFile(t))
	if r := halfClient(t, "bob", bobPassword).do(http.MethodPost, site+api+"recovery", bytes.NewReader(body),
		"Content-Type", ct, "Sec-Fetch-Site", "cross-site"); r.StatusCode != http.StatusForbidden {
		t.Errorf("POST recovery with Sec-Fetch-Site cross-site: %d %s, want 403", r.StatusCode, r.body)
	}
	wantRecoveryStatus(t, aliceHalf, id, "pending")

	const unknown = "0123456789abcdef01234567"
	wantError(t, carol.get(site+api+"review/"+unknown+"/document"), http.StatusNotFound, "not_found")
	wantError(t, decide(carol, unknown, map[string]string{"decision": "approve"}), http.StatusNotFound, "not_found")
	wantStatus(t, decide(carol, id, map[string]string{"decision": "deny", "reason": "test over"}), http.StatusNoContent)
}

// 7 and 9: one open request per account; only a half-signed-in user files
// one; passing a second factor cancels an open request.
func TestRecoveryOneOpenRequest(t *testing.T) {
	rf := startRecovery(t, recOpts{})
	twoFactorClient(t, "bob", bobPassword)
	bob := halfClient(t, "bob", bobPassword)
	id := mustFileRecovery(t, bob, "drivers_license", pngFile(t))

	wantError(t, bob.fileRecovery("passport", pngFile(t)), http.StatusConflict, "conflict")
	wantError(t, halfClient(t, "bob", bobPassword).fileRecovery("passport", pngFile(t)), http.StatusConflict, "conflict")
	wantError(t, newClient(t).fileRecovery("passport", pngFile(t)), http.StatusUnauthorized, "unauthenticated")
	alice := newClient(t)
	wantAuthenticatedLogin(t, alice, "alice", alicePassword, "one_factor")
	wantError(t, alice.fileRecovery("passport", pngFile(t)), http.StatusConflict, "conflict")
	wantRecoveryStatus(t, bob, id, "pending")
	wantError(t, bob.get(site+api+"recovery/0123456789abcdef01234567"), http.StatusNotFound, "not_found")
	wantError(t, newClient(t).get(site+api+"recovery/"+id), http.StatusUnauthorized, "unauthenticated")

	// 9: bob still has his phone: signing in with a code cancels the request.
	mark := rf.mark()
	full := newClient(t)
	signInWithCode(t, full, "bob", bobPassword, false)
	wantRecoveryStatus(t, full, id, "cancelled")
	wantRecoveryStatus(t, bob, id, "cancelled")
	rf.waitMail(t, mark, "bob@example.com", "saying the request was cancelled", func(s, b string) bool {
		return strings.Contains(s+b, "cancel")
	})
	// Fully signed in: no recovery.
	wantError(t, full.fileRecovery("passport", pngFile(t)), http.StatusConflict, "conflict")
	// The slot is free again for a half-signed-in bob.
	mustFileRecovery(t, halfClient(t, "bob", bobPassword), "passport", pngFile(t))
}

// 8: what uploads are refused, and that a refusal files nothing.
func TestRecoveryRejectedUploads(t *testing.T) {
	rf := startRecovery(t, recOpts{})
	twoFactorClient(t, "bob", bobPassword)
	alice := twoFactorClient(t, "alice", alicePassword)
	bob := halfClient(t, "bob", bobPassword)
	// Refused uploads count towards the product's daily cap of recovery
	// attempts per account (5), so they are spread over two accounts.
	aliceHalf := halfClient(t, "alice", alicePassword)

	bomb := zipBomb(t)
	t.Logf("zip bomb: %d bytes for 200 MiB", len(bomb))
	for _, c := range []struct {
		who  *client
		what string
		file *formFile
	}{
		{bob, "HTML named id.png", htmlAsPNG()},
		{bob, "DOCX with word/vbaProject.bin", &formFile{"id.docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document", macroDOCX(t)}},
		{bob, "zip bomb (200 MiB of zeros in one entry)", &formFile{"id.docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document", bomb}},
		{aliceHalf, "XLSX", &formFile{"id.xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", xlsxLike(t)}},
		{aliceHalf, "PNG declaring 100000×100000 pixels", &formFile{"id.png", "image/png", hugePNG()}},
	} {
		r := c.who.fileRecovery("passport", c.file)
		if r.StatusCode != http.StatusUnsupportedMediaType {
			t.Errorf("upload of %s: %d %s, want 415 unsupported_media_type", c.what, r.StatusCode, r.body)
			continue
		}
		wantError(t, r, http.StatusUnsupportedMediaType, "unsupported_media_type")
		t.Logf("%s: 415 %s", c.what, r.json(t)["message"])
	}

	wantError(t, bob.fileRecovery("library_card", pngFile(t)), http.StatusBadRequest, "invalid_request")
	wantError(t, bob.fileRecovery("", pngFile(t)), http.StatusBadRequest, "invalid_request")
	wantError(t, bob.fileRecovery("passport", nil), http.StatusBadRequest, "invalid_request")

	// Over max_size.
	rf.reload("max_size 64KiB")
	big := noisePNG(t, 160, 160)
	if len(big) <= 64<<10 {
		t.Fatalf("the noise PNG is only %d bytes", len(big))
	}
	wantError(t, bob.fileRecovery("passport", &formFile{"id.png", "image/png", big}), http.StatusRequestEntityTooLarge, "too_large")
	huge := bytes.Repeat(big, 8) // well past the limit and the body allowance
	wantError(t, bob.fileRecovery("passport", &formFile{"id.png", "image/png", huge}), http.StatusRequestEntityTooLarge, "too_large")

	if q := reviewQueue(t, alice); len(q) != 0 {
		t.Errorf("GET review after refused uploads: %+v, want []", q)
	}
	// Nothing is open: a good upload is accepted.
	id := mustFileRecovery(t, bob, "passport", pngFile(t))
	if q := reviewQueue(t, alice); len(q) != 1 || q[0].ID != id {
		t.Errorf("GET review after one good upload: %+v", q)
	}
}

// 12: the HTML pages work without JavaScript.
func TestRecoveryPages(t *testing.T) {
	startRecovery(t, recOpts{recovery: []string{`expected "about two days"`}})
	twoFactorClient(t, "bob", bobPassword)
	bob := halfClient(t, "bob", bobPassword)

	page := bob.browse(site + "/.twostep/recovery")
	wantStatus(t, page, http.StatusOK)
	for h, want := range map[string]string{"X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"} {
		if got := page.Header.Get(h); got != want {
			t.Errorf("GET /.twostep/recovery: %s %q, want %q", h, got, want)
		}
	}
	if page.Header.Get("Content-Security-Policy") == "" {
		t.Error("GET /.twostep/recovery: no Content-Security-Policy")
	}
	txt := pageText(page.body)
	for _, want := range []string{"driver", "state id", "voter registration", "national id", "passport", "about two days",
		"png", "pdf", "docx", "cover your account and id numbers", "issuing authority"} {
		if !strings.Contains(txt, want) {
			t.Errorf("the recovery page does not say %q: %s", want, txt)
		}
	}
	if !regexp.MustCompile(`\bjpe?g\b`).MatchString(txt) || !regexp.MustCompile(`\bdoc\b`).MatchString(txt) {
		t.Errorf("the recovery page does not list JPEG and DOC: %s", txt)
	}
	if !regexp.MustCompile(`name[^.]*address[^.]*issuing authority[^.]*visible`).MatchString(txt) {
		t.Errorf("the recovery page does not say to keep name, address and issuing authority visible: %s", txt)
	}
	for _, v := range []string{"drivers_license", "state_id", "voter_card", "national_id", "passport"} {
		if !strings.Contains(string(page.body), `value="`+v+`"`) {
			t.Errorf("the recovery form has no document_type %q", v)
		}
	}

	// Without the CSRF field the form is refused.
	body, ct := multipartBody(t, [][2]string{{"document_type", "passport"}}, pngFile(t))
	if r := bob.browserPost(site+"/.twostep/recovery", ct, body); r.StatusCode != http.StatusForbidden {
		t.Errorf("form POST without csrf: %d, want 403", r.StatusCode)
	}

	body, ct = multipartBody(t, [][2]string{{"csrf", hiddenField(t, page.body, "csrf")}, {"document_type", "passport"}},
		pngFile(t))
	r := bob.browserPost(site+"/.twostep/recovery", ct, body)
	if r.StatusCode != http.StatusSeeOther && r.StatusCode != http.StatusFound {
		t.Fatalf("form POST /.twostep/recovery: %d %s, want a redirect to /.twostep/recovery/status", r.StatusCode, r.body)
	}
	if loc := r.Header.Get("Location"); !strings.HasPrefix(loc, "/.twostep/recovery/status") {
		t.Fatalf("form POST /.twostep/recovery: Location %q, want /.twostep/recovery/status", loc)
	}
	st := bob.browse(site + "/.twostep/recovery/status")
	wantStatus(t, st, http.StatusOK)
	if txt := pageText(st.body); !strings.Contains(txt, "about two days") || !regexp.MustCompile(`waiting|pending`).MatchString(txt) {
		t.Errorf("the status page does not say the request waits (about two days): %s", txt)
	}

	alice := twoFactorClient(t, "alice", alicePassword)
	q := reviewQueue(t, alice)
	if len(q) != 1 {
		t.Fatalf("GET review: %+v, want bob's request", q)
	}
	id := q[0].ID
	rp := alice.browse(site + "/.twostep/review")
	wantStatus(t, rp, http.StatusOK)
	if !strings.Contains(pageText(rp.body), "bob") || !strings.Contains(string(rp.body), "/.twostep/review/"+id) {
		t.Fatalf("the review page does not list bob's request %s: %s", id, rp.body)
	}
	one := alice.browse(site + "/.twostep/review/" + id)
	wantStatus(t, one, http.StatusOK)
	form := url.Values{"csrf": {hiddenField(t, one.body, "csrf")}, "decision": {"approve"}, "reason": {""}}
	r = alice.browserPost(site+"/.twostep/review/"+id, "application/x-www-form-urlencoded", []byte(form.Encode()))
	if r.StatusCode != http.StatusSeeOther && r.StatusCode != http.StatusFound && r.StatusCode != http.StatusOK {
		t.Fatalf("form POST /.twostep/review/%s: %d %s", id, r.StatusCode, r.body)
	}
	if m, _ := loginState(t, "bob", bobPassword); m["state"] != "authenticated" || m["level"] != "one_factor" {
		t.Fatalf("after the approval from the review page bob's sign-in: %v, want one_factor", m)
	}
}

// after_approval enroll: the next sign-in enrols a new second factor first.
func TestRecoveryAfterApprovalEnroll(t *testing.T) {
	startRecovery(t, recOpts{recovery: []string{"after_approval enroll"}})
	twoFactorClient(t, "bob", bobPassword)
	alice := twoFactorClient(t, "alice", alicePassword)
	id := mustFileRecovery(t, halfClient(t, "bob", bobPassword), "passport", pngFile(t))
	wantStatus(t, decide(alice, id, map[string]string{"decision": "approve"}), http.StatusNoContent)
	if m, _ := loginState(t, "bob", bobPassword); m["state"] != "enrollment_required" {
		t.Errorf("with after_approval enroll bob's sign-in after the approval: %v, want {\"state\":\"enrollment_required\"}", m)
	}
}
