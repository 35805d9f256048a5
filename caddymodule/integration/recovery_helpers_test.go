package integration

// Helpers for the account-recovery tests (recovery_test.go): a fixture with
// the developer outbox, a real SMTP server and a `recovery` block; sample
// documents made here, byte by byte; multipart uploads; mail and outbox
// look-ups; and a forced reload that makes the recovery sweeper run at once.

import (
	"archive/zip"
	"bufio"
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"html"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"math/rand/v2"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"
)

// carolPassword is carol's password in the recovery users file.
const carolPassword = bobPassword

// recFix is a running configuration for the recovery tests.
type recFix struct {
	*fixture
	mail     *smtpFake
	auditLog string // "" unless recOpts.audit
	lines    []string
	cfg      string
}

type recOpts struct {
	// recovery holds the lines of the recovery block besides review_group.
	recovery []string
	// carol adds a third user with these groups (e.g. "[admins]").
	carol string
	// audit writes the twostep.audit logger to a JSON file.
	audit bool
}

func recoveryUsersYAML(carolGroups string) string {
	s := fmt.Sprintf(`users:
  alice:
    displayname: Alice Example
    password: "%s"
    email: alice@example.com
    groups: [admins, staff]
  bob:
    displayname: Bob Builder
    password: "%s"
    email: bob@example.com
    groups: [staff]
`, hashes.alice, hashes.bob)
	if carolGroups != "" {
		s += fmt.Sprintf(`  carol:
    displayname: Carol Example
    password: "%s"
    email: carol@example.com
    groups: %s
`, hashes.bob, carolGroups)
	}
	return s
}

func startRecovery(t *testing.T, o recOpts) *recFix {
	t.Helper()
	f := &fixture{t: t, tester: caddytest.NewTester(t), dir: t.TempDir(), echo: newEcho(t)}
	f.usersFile = filepath.Join(f.dir, "users.yml")
	writeUsers(t, f.usersFile, alicePassword, false) // also computes the hashes
	if o.carol != "" {
		if err := writeFile(f.usersFile, recoveryUsersYAML(o.carol)); err != nil {
			t.Fatal(err)
		}
	}
	rf := &recFix{fixture: f, mail: newSMTPFake(t)}
	if o.audit {
		rf.auditLog = filepath.Join(f.dir, "audit.log")
	}
	rf.reload(o.recovery...)
	t.Cleanup(func() { f.load(emptyConfig) })
	return rf
}

func (rf *recFix) config(lines []string) string {
	extra := "dev_outbox\n\t\tcode {\n\t\t\tresend_after 1s\n\t\t\tmax_sends_per_hour 100\n\t\t}\n\t\t" + rf.mail.block() +
		"\n\t\trecovery {\n\t\t\treview_group admins"
	for _, l := range lines {
		extra += "\n\t\t\t" + l
	}
	extra += "\n\t\t}"
	cfg := rf.caddyfile(extra, siteRules)
	global := "\tdefault_bind 127.0.0.1\n"
	if rf.auditLog != "" {
		global += fmt.Sprintf("\tlog audit {\n\t\toutput file %s\n\t\tformat json\n\t\tinclude twostep.audit\n\t}\n", rf.auditLog)
	}
	const anchor = "\tgrace_period 1s\n"
	if !strings.Contains(cfg, anchor) {
		rf.t.Fatal("harness Caddyfile changed: no grace_period line to add global options after")
	}
	return strings.Replace(cfg, anchor, anchor+global, 1)
}

// reload loads the configuration with these recovery lines.
func (rf *recFix) reload(lines ...string) {
	rf.t.Helper()
	rf.lines = lines
	rf.cfg = rf.config(lines)
	rf.load(rf.cfg)
}

// sweep reloads the running configuration unchanged (forced, as
// `Cache-Control: must-revalidate` asks the admin API to), which starts a
// new twostep app, whose recovery sweeper runs once at start.
func (rf *recFix) sweep(t *testing.T) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://localhost:2999/load", strings.NewReader(rf.cfg))
	req.Header.Set("Content-Type", "text/caddyfile")
	req.Header.Set("Cache-Control", "must-revalidate")
	res, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("forced reload: %v", err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("forced reload: %d %s", res.StatusCode, b)
	}
}

// --- mail and outbox ---

// mark is the number of emails received so far, to wait for later ones.
func (rf *recFix) mark() int { return len(rf.mail.all()) }

// waitMail waits for an email to rcpt, received after mark, for which
// match (given the subject and body in lower case) holds.
func (rf *recFix) waitMail(t *testing.T, mark int, rcpt, what string, match func(subject, body string) bool) mailMsg {
	t.Helper()
	var got mailMsg
	found := false
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && !found {
		all := rf.mail.all()
		for _, m := range all[min(mark, len(all)):] {
			if len(m.EnvTo) == 1 && m.EnvTo[0] == rcpt && match(strings.ToLower(m.Subject), strings.ToLower(m.Body)) {
				got, found = m, true
				break
			}
		}
		if !found {
			time.Sleep(50 * time.Millisecond)
		}
	}
	if !found {
		var seen []string
		for _, m := range rf.mail.all()[mark:] {
			seen = append(seen, fmt.Sprintf("%v %q", m.EnvTo, m.Subject))
		}
		t.Errorf("no email to %s %s within 5s; received since: %v", rcpt, what, seen)
		return mailMsg{}
	}
	checkNotice(t, got, rcpt)
	return got
}

func has(s string, subs ...string) bool {
	for _, x := range subs {
		if !strings.Contains(s, x) {
			return false
		}
	}
	return true
}

// outbox returns the developer outbox, newest first.
func outbox(t *testing.T) []outboxEntry {
	t.Helper()
	c := newClient(t)
	r := c.get(site + api + "outbox")
	wantStatus(t, r, http.StatusOK)
	var list []outboxEntry
	if err := json.Unmarshal(r.body, &list); err != nil {
		t.Fatalf("outbox is not a JSON list: %s", r.body)
	}
	return list
}

// --- requests ---

// formFile is the file part of an upload.
type formFile struct {
	name, ctype string
	data        []byte
}

// multipartBody builds a multipart/form-data body with fields (in order)
// and, unless file is nil, a "document" file part.
func multipartBody(t *testing.T, fields [][2]string, file *formFile) ([]byte, string) {
	t.Helper()
	var b bytes.Buffer
	w := multipart.NewWriter(&b)
	for _, f := range fields {
		if err := w.WriteField(f[0], f[1]); err != nil {
			t.Fatal(err)
		}
	}
	if file != nil {
		h := textproto.MIMEHeader{}
		h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="document"; filename="%s"`, file.name))
		h.Set("Content-Type", file.ctype)
		p, err := w.CreatePart(h)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Write(file.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes(), w.FormDataContentType()
}

// fileRecovery is POST /.twostep/api/recovery; docType "" leaves the
// document_type field out, file nil the document.
func (c *client) fileRecovery(docType string, file *formFile) *response {
	c.t.Helper()
	var fields [][2]string
	if docType != "" {
		fields = append(fields, [2]string{"document_type", docType})
	}
	body, ct := multipartBody(c.t, fields, file)
	return c.do(http.MethodPost, site+api+"recovery", bytes.NewReader(body), "Content-Type", ct)
}

// mustFileRecovery files a request and checks the 202 answer; it returns
// the request id.
func mustFileRecovery(t *testing.T, c *client, docType string, file *formFile) string {
	t.Helper()
	r := c.fileRecovery(docType, file)
	m := wantJSON(t, r, http.StatusAccepted)
	wantKeys(t, m, "POST recovery", "request_id", "status", "expected")
	id, _ := m["request_id"].(string)
	if id == "" || m["status"] != "pending" || m["expected"] != "about two days" {
		t.Fatalf("POST recovery: %s; want {\"request_id\":…,\"status\":\"pending\",\"expected\":\"about two days\"}", r.body)
	}
	return id
}

// recoveryStatus is GET recovery/{id}: 200 and its JSON.
func recoveryStatus(t *testing.T, c *client, id string) map[string]any {
	t.Helper()
	return wantJSON(t, c.get(site+api+"recovery/"+id), http.StatusOK)
}

func wantRecoveryStatus(t *testing.T, c *client, id, status string) map[string]any {
	t.Helper()
	m := recoveryStatus(t, c, id)
	if m["status"] != status {
		t.Fatalf("GET recovery/%s: %v, want status %q", id, m, status)
	}
	for k := range m {
		if k != "status" && k != "reason" {
			t.Errorf("GET recovery/%s: unexpected field %q in %v", id, k, m)
		}
	}
	return m
}

// wantKeys checks that m has exactly these keys.
func wantKeys(t *testing.T, m map[string]any, what string, keys ...string) {
	t.Helper()
	var got []string
	for k := range m {
		got = append(got, k)
	}
	sort.Strings(got)
	want := append([]string(nil), keys...)
	sort.Strings(want)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("%s: fields %v, want exactly %v (%v)", what, got, want, m)
	}
}

type reviewItem struct {
	ID           string    `json:"id"`
	User         string    `json:"user"`
	Created      time.Time `json:"created"`
	DocumentType string    `json:"document_type"`
	Approvals    int       `json:"approvals"`
	AgeSeconds   float64   `json:"age_seconds"`
}

// reviewQueue is GET review as a reviewer: 200 and the list. Each item
// must have exactly the SPEC's fields.
func reviewQueue(t *testing.T, c *client) []reviewItem {
	t.Helper()
	r := c.get(site + api + "review")
	wantStatus(t, r, http.StatusOK)
	var raw []map[string]any
	if err := json.Unmarshal(r.body, &raw); err != nil || raw == nil {
		t.Fatalf("GET review is not a JSON list (%v): %s", err, r.body)
	}
	for _, m := range raw {
		wantKeys(t, m, "GET review item", "id", "user", "created", "document_type", "approvals", "age_seconds")
	}
	var list []reviewItem
	if err := json.Unmarshal(r.body, &list); err != nil {
		t.Fatalf("GET review items have the wrong types (%v): %s", err, r.body)
	}
	return list
}

func decide(c *client, id string, v any) *response {
	c.t.Helper()
	return c.api("review/"+id, v)
}

// loginState signs in with the password on a new client and returns the
// answer and the client.
func loginState(t *testing.T, user, pw string) (map[string]any, *client) {
	t.Helper()
	c := newClient(t)
	return wantJSON(t, c.login(user, pw), http.StatusOK), c
}

// twoFactorClient turns two-step on for user (who has it off) and returns
// a client signed in with password and SMS code.
func twoFactorClient(t *testing.T, user, pw string) *client {
	t.Helper()
	c := newClient(t)
	wantAuthenticatedLogin(t, c, user, pw, "one_factor")
	enrolSMS(t, c)
	wantStatus(t, c.postJSON(api+"logout", ""), http.StatusNoContent)
	signInWithCode(t, c, user, pw, false)
	return c
}

// halfClient is a client past the password of a user with two-step on.
func halfClient(t *testing.T, user, pw string) *client {
	t.Helper()
	c := newClient(t)
	c.halfSignIn(user, pw)
	return c
}

// --- pages ---

var (
	tagRe   = regexp.MustCompile(`(?s)<[^>]*>`)
	spaceRe = regexp.MustCompile(`\s+`)
)

// pageText is the visible text of an HTML page, lower case.
func pageText(b []byte) string {
	s := tagRe.ReplaceAllString(string(b), " ")
	return strings.ToLower(spaceRe.ReplaceAllString(html.UnescapeString(s), " "))
}

func hiddenField(t *testing.T, page []byte, name string) string {
	t.Helper()
	m := regexp.MustCompile(`name="` + regexp.QuoteMeta(name) + `" value="([^"]*)"`).FindSubmatch(page)
	if m == nil {
		t.Fatalf("no %q field on the page: %s", name, page)
	}
	return html.UnescapeString(string(m[1]))
}

// browserPost sends a form as a browser without JavaScript does.
func (c *client) browserPost(target, contentType string, body []byte) *response {
	c.t.Helper()
	return c.do(http.MethodPost, target, bytes.NewReader(body),
		"Content-Type", contentType, "Origin", "null", "Sec-Fetch-Site", "same-origin", "Accept", "text/html")
}

// --- audit log ---

// auditEntries reads the JSON lines of the audit log file.
func (rf *recFix) auditEntries(t *testing.T) []map[string]any {
	t.Helper()
	fh, err := os.Open(rf.auditLog)
	if err != nil {
		return nil
	}
	defer fh.Close()
	var out []map[string]any
	sc := bufio.NewScanner(fh)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// --- sample documents, all made here ---

// plantedText is metadata planted in sample images; it must not survive.
const plantedText = "planted-metadata GPS 51.5007N 0.1246W"

func sampleImage(w, h int) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.Set(x, y, color.RGBA{uint8(x * 4), uint8(y * 5), 128, 255})
		}
	}
	return img
}

func pngChunk(typ string, data []byte) []byte {
	var b bytes.Buffer
	_ = binary.Write(&b, binary.BigEndian, uint32(len(data)))
	b.WriteString(typ)
	b.Write(data)
	crc := crc32.NewIEEE()
	crc.Write([]byte(typ))
	crc.Write(data)
	_ = binary.Write(&b, binary.BigEndian, crc.Sum32())
	return b.Bytes()
}

// pngWithText is a 64×48 PNG with a tEXt chunk holding plantedText.
func pngWithText(t *testing.T) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, sampleImage(64, 48)); err != nil {
		t.Fatal(err)
	}
	raw := b.Bytes()
	if string(raw[12:16]) != "IHDR" {
		t.Fatal("image/png did not start with IHDR")
	}
	const afterIHDR = 8 + 4 + 4 + 13 + 4
	out := append([]byte(nil), raw[:afterIHDR]...)
	out = append(out, pngChunk("tEXt", []byte("Comment\x00"+plantedText))...)
	out = append(out, raw[afterIHDR:]...)
	if _, err := png.Decode(bytes.NewReader(out)); err != nil {
		t.Fatalf("the planted PNG does not decode: %v", err)
	}
	return out
}

// noisePNG is a valid PNG of random pixels, about 4·w·h bytes.
func noisePNG(t *testing.T, w, h int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	rnd := rand.New(rand.NewPCG(1, 2))
	for i := range img.Pix {
		img.Pix[i] = byte(rnd.Uint32())
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// hugePNG declares 100000×100000 pixels in a well-formed IHDR.
func hugePNG() []byte {
	var b bytes.Buffer
	b.Write([]byte{0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A})
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], 100000)
	binary.BigEndian.PutUint32(ihdr[4:], 100000)
	ihdr[8], ihdr[9] = 8, 2 // 8-bit RGB
	b.Write(pngChunk("IHDR", ihdr))
	var z bytes.Buffer
	zw := zlib.NewWriter(&z)
	_, _ = zw.Write(make([]byte, 4096))
	_ = zw.Close()
	b.Write(pngChunk("IDAT", z.Bytes()))
	b.Write(pngChunk("IEND", nil))
	return b.Bytes()
}

// jpegWithGPS is a JPEG with an EXIF APP1 segment holding a GPS IFD and
// plantedText.
func jpegWithGPS(t *testing.T) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := jpeg.Encode(&b, sampleImage(64, 48), &jpeg.Options{Quality: 90}); err != nil {
		t.Fatal(err)
	}
	raw := b.Bytes()
	// TIFF, little endian: IFD0 at 8 with one entry, GPSInfo (0x8825) → 26;
	// the GPS IFD with GPSVersionID 2.2.0.0; then the planted text.
	var tiff bytes.Buffer
	le := binary.LittleEndian
	tiff.WriteString("II*\x00")
	_ = binary.Write(&tiff, le, uint32(8))
	_ = binary.Write(&tiff, le, uint16(1))
	_ = binary.Write(&tiff, le, [4]uint16{0x8825, 4, 1, 0}) // tag, LONG, count 1 (low half)
	_ = binary.Write(&tiff, le, uint32(26))
	_ = binary.Write(&tiff, le, uint32(0))
	_ = binary.Write(&tiff, le, uint16(1))
	_ = binary.Write(&tiff, le, [4]uint16{0x0000, 1, 4, 0}) // GPSVersionID, BYTE, count 4
	tiff.Write([]byte{2, 2, 0, 0})
	_ = binary.Write(&tiff, le, uint32(0))
	tiff.WriteString(plantedText)
	payload := append([]byte("Exif\x00\x00"), tiff.Bytes()...)
	seg := []byte{0xFF, 0xE1, byte((len(payload) + 2) >> 8), byte(len(payload) + 2)}
	out := append([]byte(nil), raw[:2]...)
	out = append(out, seg...)
	out = append(out, payload...)
	out = append(out, raw[2:]...)
	if _, err := jpeg.Decode(bytes.NewReader(out)); err != nil {
		t.Fatalf("the planted JPEG does not decode: %v", err)
	}
	return out
}

// minimalPDF is a one-page PDF with a correct cross-reference table.
func minimalPDF() []byte {
	var b bytes.Buffer
	b.WriteString("%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
	objs := []string{
		"<< /Type /Catalog /Pages 2 0 R >>",
		"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
		"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 300 200] >>",
	}
	var offs []int
	for i, o := range objs {
		offs = append(offs, b.Len())
		fmt.Fprintf(&b, "%d 0 obj\n%s\nendobj\n", i+1, o)
	}
	xref := b.Len()
	fmt.Fprintf(&b, "xref\n0 %d\n0000000000 65535 f \n", len(objs)+1)
	for _, o := range offs {
		fmt.Fprintf(&b, "%010d 00000 n \n", o)
	}
	fmt.Fprintf(&b, "trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n", len(objs)+1, xref)
	return b.Bytes()
}

type zipEntry struct {
	name string
	data []byte
}

func buildZip(t *testing.T, entries ...zipEntry) []byte {
	t.Helper()
	var b bytes.Buffer
	w := zip.NewWriter(&b)
	for _, e := range entries {
		fw, err := w.CreateHeader(&zip.FileHeader{Name: e.name, Method: zip.Deflate})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fw.Write(e.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

const (
	docxMain    = "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"
	xlsxMain    = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"
	relsType    = "application/vnd.openxmlformats-package.relationships+xml"
	officeDocRe = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument"
)

func contentTypes(part, typ string) []byte {
	return []byte(`<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="` + relsType +
		`"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="` + part + `" ContentType="` + typ + `"/></Types>`)
}

func rootRels(target string) []byte {
	return []byte(`<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="` + officeDocRe + `" Target="` + target + `"/></Relationships>`)
}

const docxBody = `<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body><w:p><w:r><w:t>Bob Builder, 1 Main Street, issued by the State of Nowhere</w:t></w:r></w:p></w:body></w:document>`

func docxEntries() []zipEntry {
	return []zipEntry{
		{"[Content_Types].xml", contentTypes("/word/document.xml", docxMain)},
		{"_rels/.rels", rootRels("word/document.xml")},
		{"word/document.xml", []byte(docxBody)},
	}
}

// sampleDOCX is a minimal Word document.
func sampleDOCX(t *testing.T) []byte { return buildZip(t, docxEntries()...) }

// macroDOCX is the same document carrying word/vbaProject.bin.
func macroDOCX(t *testing.T) []byte {
	vba := append([]byte{0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1}, bytes.Repeat([]byte("Sub AutoOpen() Shell \"calc\" End Sub "), 8)...)
	return buildZip(t, append(docxEntries(), zipEntry{"word/vbaProject.bin", vba})...)
}

// xlsxLike is a spreadsheet package: a valid Office Open XML zip, not Word.
func xlsxLike(t *testing.T) []byte {
	return buildZip(t,
		zipEntry{"[Content_Types].xml", contentTypes("/xl/workbook.xml", xlsxMain)},
		zipEntry{"_rels/.rels", rootRels("xl/workbook.xml")},
		zipEntry{"xl/workbook.xml", []byte(`<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheets/></workbook>`)},
	)
}

// zipBomb is one entry of 200 MB of zeros (named as a Word document's main
// part, next to Word content types), deflated to a few hundred KB.
func zipBomb(t *testing.T) []byte {
	t.Helper()
	var b bytes.Buffer
	w := zip.NewWriter(&b)
	add := func(name string, data []byte) {
		fw, err := w.CreateHeader(&zip.FileHeader{Name: name, Method: zip.Deflate})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fw.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	add("[Content_Types].xml", contentTypes("/word/document.xml", docxMain))
	fw, err := w.CreateHeader(&zip.FileHeader{Name: "word/document.xml", Method: zip.Deflate})
	if err != nil {
		t.Fatal(err)
	}
	zeros := make([]byte, 1<<20)
	for i := 0; i < 200; i++ {
		if _, err := fw.Write(zeros); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// htmlAsPNG is an HTML page that a browser would run, named id.png.
func htmlAsPNG() *formFile {
	return &formFile{name: "id.png", ctype: "image/png",
		data: []byte("<!DOCTYPE html><html><body><script>fetch('/.twostep/api/review').then(r=>r.text()).then(alert)</script></body></html>\n")}
}
