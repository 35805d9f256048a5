package browser

// The account-recovery journey: a user who has her password but not her
// phone asks for a recovery from the help page, blacks out part of her ID
// photo on the page's canvas before sending it, and waits; a reviewer, in
// another browser and signed in with two factors, opens the request, sees the
// blacked-out image (and the test checks the server's copy pixel by pixel),
// and approves it; the user then signs in with the password alone and is
// offered two-step verification again.

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

const (
	// recoveryUser turns two-step on, then loses her phone and recovers.
	recoveryUser        = "erin"
	recoveryEmail       = "erin@example.com"
	recoveryPhone       = "+15552223333"
	recoveryPhoneMasked = "•••• 3333"

	// reviewerUser is in the review group of the test Caddyfile's recovery
	// block; reviewing needs a two-factor sign-in, so she turns two-step on.
	reviewerUser        = "rita"
	reviewerPhone       = "+15554445555"
	reviewerPhoneMasked = "•••• 5555"
	reviewGroup         = "reviewers"

	// recoveryJourneyTimeout bounds the whole journey, both browsers.
	recoveryJourneyTimeout = 90 * time.Second

	// waitTimeout bounds one wait for something the page's script does.
	waitTimeout = 10 * time.Second

	// The ID photo the journey makes, in pixels.
	docWidth, docHeight = 600, 400
)

var (
	// docBlue is the "name" line of the made-up ID, which must stay visible.
	docBlue = color.NRGBA{R: 30, G: 60, B: 160, A: 255}
	// docRed is the "ID number" of the made-up ID, which gets blacked out.
	docRed = color.NRGBA{R: 200, G: 30, B: 30, A: 255}

	// nameLine and idNumber are where the made-up ID has its name and its
	// number; the journey draws its black rectangle over idNumberBox, which
	// holds idNumber with a white margin.
	nameLine    = image.Rect(40, 40, 320, 64)
	idNumber    = image.Rect(150, 120, 330, 160)
	idNumberBox = image.Rect(130, 100, 350, 180)
)

func journeyRecovery(t *testing.T, chromium string) {
	began := time.Now()
	lap := func(what string) { t.Logf("%-52s %6v", what, time.Since(began).Round(time.Millisecond)) }

	jctx, cancel := context.WithTimeout(context.Background(), recoveryJourneyTimeout)
	t.Cleanup(cancel)

	// --- erin: two-step on, then a recovery request from the help page ---
	ctx := newBrowserIn(t, jctx, chromium)
	console := collectConsole(t, ctx)

	openAndSignIn(t, ctx, recoveryUser)
	wantPath(t, ctx, "/reports")
	wantUser(t, ctx, recoveryUser)
	enrolPhone(t, ctx, recoveryPhone, recoveryPhoneMasked)
	lap(recoveryUser + ": phone confirmed, two-step on")

	signOut(t, ctx)
	openAndSignIn(t, ctx, recoveryUser)
	wantPath(t, ctx, "/.twostep/challenge")
	submit(t, ctx, `follow "Didn't get the code?"`, link("Didn't get the code?"), http.StatusOK)
	wantPath(t, ctx, "/.twostep/help")
	wantBodyContains(t, ctx, "Still can't get in?")
	wantLink(t, ctx, "Recover your account")
	if href := run(t, ctx, `read the "Recover your account" link`, chromedp.Evaluate[string](
		`(Array.from(document.querySelectorAll('a')).find(a => a.textContent.trim() === "Recover your account") || {}).pathname || ""`)); href != "/.twostep/recovery" {
		t.Errorf(`"Recover your account" links to %q, want /.twostep/recovery`, href)
	}
	submit(t, ctx, `follow "Recover your account"`, link("Recover your account"), http.StatusOK)
	wantPath(t, ctx, "/.twostep/recovery")
	lap(recoveryUser + ": on the recovery page from the help page")

	// What the page says: the steps, the time, the documents, the formats
	// and the two tips.
	for _, want := range []string{
		"Recover your account",
		"Send a picture of one of the documents below.",
		"A person checks it. This takes about two days.",
		"We email you the decision.",
		"Which document?",
		"JPG, JPEG, PJPEG, PNG, PDF, DOC or DOCX",
		"Cover your account and ID numbers",
		"Keep your name, address and the issuing authority clearly visible.",
	} {
		wantBodyContains(t, ctx, want)
	}
	type radio struct {
		Value string `json:"value"`
		Label string `json:"label"`
	}
	radios := run(t, ctx, "read the document choices", chromedp.Evaluate[[]radio](
		`Array.from(document.querySelectorAll('input[type=radio][name=document_type]'), r => ({
			value: r.value, label: (r.closest('label') || {textContent: ""}).textContent.trim()}))`))
	wantRadios := []radio{
		{"drivers_license", "Driver's licence"},
		{"state_id", "State ID card"},
		{"voter_card", "Voter registration card"},
		{"national_id", "National ID card"},
		{"passport", "Passport"},
	}
	if fmt.Sprint(radios) != fmt.Sprint(wantRadios) {
		t.Errorf("the document choices are %+v, want %+v", radios, wantRadios)
	}
	if got := run(t, ctx, "read the file input", chromedp.Evaluate[string](
		`(() => { const i = document.getElementById('document'); return i ? i.type + " " + i.name : ""; })()`)); got != "file document" {
		t.Fatalf("#document is %q, want a file input named document (page: %s)", got, pageState(ctx))
	}
	if run(t, ctx, "read the redaction box", chromedp.Evaluate[bool](`!document.getElementById('redact').hidden`)) {
		t.Errorf("the redaction canvas shows before a picture was chosen")
	}

	// Choose the photo: the canvas shows it at its own size.
	docPath := filepath.Join(t.TempDir(), "erin-passport.png")
	writeIDPhoto(t, docPath)
	do(t, ctx, "choose the photo", chromedp.SetUploadFiles(chromedp.CSS(`#document`), []string{docPath}))
	wctx, wcancel := context.WithTimeout(ctx, waitTimeout)
	do(t, wctx, "wait for the redaction canvas", chromedp.WaitVisible(chromedp.CSS(`#redact-canvas`)))
	wcancel()
	type canvasBox struct {
		Width   float64 `json:"width"`
		Height  float64 `json:"height"`
		Left    float64 `json:"left"`
		Top     float64 `json:"top"`
		CSSW    float64 `json:"cssW"`
		CSSH    float64 `json:"cssH"`
		InnerW  float64 `json:"innerW"`
		InnerH  float64 `json:"innerH"`
		File    string  `json:"file"`
		Redacts string  `json:"redacted"`
	}
	const readCanvas = `(() => {
		const c = document.getElementById('redact-canvas'), r = c.getBoundingClientRect(), i = document.getElementById('document');
		return {width: c.width, height: c.height, left: r.left, top: r.top, cssW: r.width, cssH: r.height,
			innerW: window.innerWidth, innerH: window.innerHeight,
			file: i.files.length ? i.files[0].name : "", redacted: i.dataset.redacted || ""};
	})()`
	cb := run(t, ctx, "measure the canvas", chromedp.Evaluate[canvasBox](readCanvas))
	if cb.Width != docWidth || cb.Height != docHeight {
		t.Fatalf("the canvas is %v×%v, want the photo's size %d×%d", cb.Width, cb.Height, docWidth, docHeight)
	}
	if cb.File != "erin-passport.png" || cb.Redacts != "" {
		t.Fatalf("before any black-out the input holds %q (redacted=%q), want erin-passport.png and no redaction", cb.File, cb.Redacts)
	}
	do(t, ctx, "scroll the canvas into view", chromedp.ScrollIntoView(chromedp.CSS(`#redact-canvas`)))
	cb = run(t, ctx, "measure the canvas", chromedp.Evaluate[canvasBox](readCanvas))
	if cb.CSSW <= 0 || cb.CSSH <= 0 {
		t.Fatalf("the canvas has no size on the page: %+v", cb)
	}

	// Drag over the "ID number": press at one corner, move, release at the
	// other. The points are whole CSS pixels; the rectangle that the page
	// draws is what those points map to on the canvas.
	toClient := func(p image.Point) (float64, float64) {
		return math.Round(cb.Left + float64(p.X)*cb.CSSW/cb.Width), math.Round(cb.Top + float64(p.Y)*cb.CSSH/cb.Height)
	}
	toCanvas := func(x, y float64) (float64, float64) {
		return (x - cb.Left) * cb.Width / cb.CSSW, (y - cb.Top) * cb.Height / cb.CSSH
	}
	x0, y0 := toClient(idNumberBox.Min)
	x1, y1 := toClient(idNumberBox.Max)
	if x0 < 0 || y0 < 0 || x1 > cb.InnerW || y1 > cb.InnerH {
		t.Fatalf("the drag (%v,%v)–(%v,%v) is outside the viewport %v×%v: %+v", x0, y0, x1, y1, cb.InnerW, cb.InnerH, cb)
	}
	cx0, cy0 := toCanvas(x0, y0)
	cx1, cy1 := toCanvas(x1, y1)
	drawn := image.Rect(int(math.Ceil(cx0)), int(math.Ceil(cy0)), int(math.Floor(cx1)), int(math.Floor(cy1)))
	t.Logf("canvas %v×%v shown at %.0f×%.0f CSS px; drag (%v,%v)–(%v,%v) → canvas rectangle %v", cb.Width, cb.Height, cb.CSSW, cb.CSSH, x0, y0, x1, y1, drawn)
	left := func(p *input.DispatchMouseEventParams) { p.Button = input.MouseButtonLeft; p.Buttons = 1 }
	do(t, ctx, "drag a black rectangle over the ID number",
		chromedp.MouseEvent(chromedp.MouseMoved, x0, y0),
		chromedp.MouseEvent(chromedp.MousePressed, x0, y0, left, chromedp.ClickCount(1)),
		chromedp.MouseEvent(chromedp.MouseMoved, (x0+x1)/2, (y0+y1)/2, left),
		chromedp.MouseEvent(chromedp.MouseMoved, x1, y1, left),
		chromedp.MouseEvent(chromedp.MouseReleased, x1, y1, left, chromedp.ClickCount(1)),
	)
	pctx, pcancel := context.WithTimeout(ctx, waitTimeout)
	_, err := chromedp.Run(pctx, chromedp.Poll[bool](`document.getElementById('document').dataset.redacted === '1'`,
		chromedp.WithPollingTimeout(waitTimeout)))
	pcancel()
	if err != nil {
		t.Fatalf("the input was not marked redacted (dataset.redacted === '1') within %v after the drag: %v (canvas: %+v; console: %s)",
			waitTimeout, err, run(t, ctx, "measure the canvas", chromedp.Evaluate[canvasBox](readCanvas)), console.String())
	}
	type fileInfo struct {
		N    int    `json:"n"`
		Name string `json:"name"`
		Type string `json:"type"`
		Size int    `json:"size"`
	}
	fi := run(t, ctx, "read the chosen file", chromedp.Evaluate[fileInfo](
		`(() => { const fs = document.getElementById('document').files; const f = fs[0] || {};
			return {n: fs.length, name: f.name || "", type: f.type || "", size: f.size || 0}; })()`))
	if fi.N != 1 || fi.Name != "document.png" || fi.Type != "image/png" || fi.Size == 0 {
		t.Fatalf("after the black-out the input holds %+v, want one image/png named document.png (the canvas)", fi)
	}
	// The canvas itself shows black inside the rectangle.
	if px := run(t, ctx, "read a canvas pixel", chromedp.Evaluate[[]int](fmt.Sprintf(
		`Array.from(document.getElementById('redact-canvas').getContext('2d').getImageData(%d, %d, 1, 1).data)`,
		(drawn.Min.X+drawn.Max.X)/2, (drawn.Min.Y+drawn.Max.Y)/2))); fmt.Sprint(px) != "[0 0 0 255]" {
		t.Errorf("the canvas pixel in the middle of the rectangle is %v, want black", px)
	}
	screenshot(t, ctx, "12-recovery-redact.png")
	lap(recoveryUser + ": photo chosen and blacked out on the canvas")

	do(t, ctx, "choose Passport", chromedp.Click(chromedp.CSS(`input[name=document_type][value=passport]`)))
	if !run(t, ctx, "read the Passport radio", chromedp.Evaluate[bool](
		`document.querySelector('input[name=document_type][value=passport]').checked`)) {
		t.Fatalf("the Passport radio is not checked (page: %s)", pageState(ctx))
	}
	submit(t, ctx, `click "Send for review"`, button("Send for review"), http.StatusOK)
	wantPath(t, ctx, "/.twostep/recovery/status")
	wantBodyContains(t, ctx, "Waiting for review.")
	wantBodyContains(t, ctx, "about two days")
	screenshot(t, ctx, "13-recovery-status.png")
	lap(recoveryUser + ": sent for review, waiting")
	t.Logf("console of %s's browser so far: %d messages", recoveryUser, console.Len())
	if bad := console.Bad(); len(bad) > 0 {
		t.Errorf("the recovery pages wrote errors to the console:\n%s", strings.Join(bad, "\n"))
	}

	// --- rita, in a second browser: two-step on, a two-factor sign-in ---
	rctx := newBrowserIn(t, jctx, chromium)
	openAndSignIn(t, rctx, reviewerUser)
	wantPath(t, rctx, "/reports")
	wantUser(t, rctx, reviewerUser)
	enrolPhone(t, rctx, reviewerPhone, reviewerPhoneMasked)
	signOut(t, rctx)
	openAndSignIn(t, rctx, reviewerUser)
	wantPath(t, rctx, "/.twostep/challenge")
	verifyCode(t, rctx, textCode(t, rctx, reviewerPhone, reviewerPhoneMasked))
	wantPath(t, rctx, "/reports")
	wantUser(t, rctx, reviewerUser)
	lap(reviewerUser + ": signed in with two factors")

	// The queue lists erin's request; open it.
	res, err := chromedp.RunResponse(rctx, chromedp.Navigate(site+"/.twostep/review"))
	if err != nil || res == nil || res.Status != http.StatusOK {
		t.Fatalf("open the review queue: %v, response %+v (page: %s)", err, res, pageState(rctx))
	}
	wantPath(t, rctx, "/.twostep/review")
	wantBodyContains(t, rctx, "Recovery requests")
	type queueRow struct {
		User string `json:"user"`
		Href string `json:"href"`
		Text string `json:"text"`
	}
	const readQueue = `Array.from(document.querySelectorAll('table.devices a[href^="/.twostep/review/"]'), a => ({
		user: a.textContent.trim(), href: a.getAttribute('href'),
		text: a.closest('tr').textContent.replace(/\s+/g, " ").trim()}))`
	rows := run(t, rctx, "read the queue", chromedp.Evaluate[[]queueRow](readQueue))
	var mine []queueRow
	for _, r := range rows {
		if r.User == recoveryUser {
			mine = append(mine, r)
		}
	}
	if len(mine) != 1 {
		t.Fatalf("the queue lists %d requests by %s, want 1: %+v (page: %s)", len(mine), recoveryUser, rows, pageState(rctx))
	}
	t.Logf("queue row: %q", mine[0].Text)
	if !strings.Contains(mine[0].Text, "passport") && !strings.Contains(mine[0].Text, "Passport") {
		t.Errorf("the queue row reads %q, want it to name the passport", mine[0].Text)
	}
	reqPath := mine[0].Href
	id := strings.TrimPrefix(reqPath, "/.twostep/review/")
	if id == "" || strings.Contains(id, "/") {
		t.Fatalf("the queue links to %q, want /.twostep/review/{id}", reqPath)
	}
	screenshot(t, rctx, "14-review-queue.png")

	submit(t, rctx, "open "+recoveryUser+"'s request", chromedp.Search(`//a[@href=`+xpathString(reqPath)+`]`), http.StatusOK)
	wantPath(t, rctx, reqPath)
	wantBodyContains(t, rctx, "Recovery request")
	facts := run(t, rctx, "read the facts", chromedp.Text(chromedp.CSS(`dl.facts`)))
	for _, want := range []string{recoveryUser, "passport", "png", "pending"} {
		if !strings.Contains(strings.ToLower(facts), want) {
			t.Errorf("the request's facts do not show %q:\n%s", want, facts)
		}
	}
	type imgState struct {
		Src      string `json:"src"`
		Complete bool   `json:"complete"`
		Width    int    `json:"width"`
		Height   int    `json:"height"`
	}
	const readImg = `(() => { const i = document.querySelector('p.doc img'); if (!i) return null;
		return {src: i.getAttribute('src'), complete: i.complete, width: i.naturalWidth, height: i.naturalHeight}; })()`
	ictx, icancel := context.WithTimeout(rctx, waitTimeout)
	_, err = chromedp.Run(ictx, chromedp.Poll[bool](`(() => { const i = document.querySelector('p.doc img'); return !!i && i.complete; })()`,
		chromedp.WithPollingTimeout(waitTimeout)))
	icancel()
	if err != nil {
		t.Fatalf("the request page has no inline image that finished loading within %v: %v (page: %s)", waitTimeout, err, pageState(rctx))
	}
	img := run(t, rctx, "read the inline image", chromedp.Evaluate[imgState](readImg))
	if want := "/.twostep/review/" + id + "/document?inline=1"; img.Src != want {
		t.Errorf("the inline image's src is %q, want %q", img.Src, want)
	}
	if img.Width <= 0 {
		t.Fatalf("the inline image did not display: naturalWidth %d (%+v)", img.Width, img)
	}
	if img.Width != docWidth || img.Height != docHeight {
		t.Errorf("the inline image is %d×%d, want %d×%d", img.Width, img.Height, docWidth, docHeight)
	}
	screenshot(t, rctx, "15-review-request.png")
	lap(reviewerUser + ": request open, image shown")

	// The server's copy is the blacked-out one.
	doc := fetchDocument(t, rctx, id)
	checkRedacted(t, doc, drawn)
	lap(reviewerUser + ": the stored document is blacked out")

	// Approve, with a reason.
	do(t, rctx, "type the reason", chromedp.SendKeys(chromedp.ID("reason"), "Passport matches the account; numbers covered."))
	approvedAt := time.Now().UTC().Add(-time.Second)
	submit(t, rctx, `click "Approve: turn off two-step verification"`, button("Approve: turn off two-step verification"), http.StatusOK)
	wantPath(t, rctx, "/.twostep/review")
	if rows := run(t, rctx, "read the queue", chromedp.Evaluate[[]queueRow](readQueue)); len(rows) > 0 {
		for _, r := range rows {
			if r.Href == reqPath {
				t.Fatalf("after approval the queue still lists the request: %+v", rows)
			}
		}
	}
	lap(reviewerUser + ": approved; the queue no longer lists it")

	// erin is told on every channel: by email, and by text to the phone
	// she had.
	waitMessage(t, ctx, "email", recoveryEmail, approvedAt, "Your account recovery is done.")
	waitMessage(t, ctx, "sms", recoveryPhone, approvedAt, "a recovery of your account was approved")

	// --- erin: the password alone, and the offer to turn two-step on ---
	signOut(t, ctx)
	openAndSignIn(t, ctx, recoveryUser)
	wantPath(t, ctx, "/.twostep/settings")
	wantBodyContains(t, ctx, "Welcome back. Your account was recovered and two-step verification is off")
	wantBodyContains(t, ctx, "Off. Anyone with your password can sign in.")
	wantBodyContains(t, ctx, "No phone number yet.") // the recovery removed the old phone
	wantReturn(t, ctx, "/reports")
	screenshot(t, ctx, "16-settings-after-recovery.png")
	lap(recoveryUser + ": signed in with the password alone")

	submit(t, ctx, `follow "Continue"`, link("Continue"), http.StatusOK)
	wantPath(t, ctx, "/reports")
	wantUser(t, ctx, recoveryUser)
	lap(recoveryUser + ": /reports")
}

// newBrowserIn is newBrowser with the journey's own deadline: it starts a
// headless Chromium with a fresh profile under parent.
func newBrowserIn(t *testing.T, parent context.Context, chromium string) context.Context {
	t.Helper()
	var out syncBuffer
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(parent,
		chromedp.ExecPath(chromium),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.NoFirstRun,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.CombinedOutput(&out),
	)
	t.Cleanup(cancelAlloc)
	bctx, cancelBrowser := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancelBrowser()
		if t.Failed() {
			if log := quietChromiumLog(out.String()); log != "" {
				t.Logf("chromium output:\n%s", log)
			}
		}
	})
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("start %s: %v", chromium, err)
	}
	return bctx
}

// enrolPhone turns two-step on for the signed-in user with a phone for
// text messages, in Login & security.
func enrolPhone(t *testing.T, ctx context.Context, phone, masked string) {
	t.Helper()
	do(t, ctx, "open Login & security",
		chromedp.Navigate(site+"/.twostep/settings"),
		chromedp.WaitVisible(chromedp.CSS(`input[name=phone]`)),
	)
	wantPath(t, ctx, "/.twostep/settings")
	wantBodyContains(t, ctx, "Off. Anyone with your password can sign in.")
	do(t, ctx, "type the phone number and choose text message",
		chromedp.SendKeys(chromedp.CSS(`input[name=phone]`), phone),
		chromedp.Click(chromedp.CSS(`input[name=method][value=sms]`)),
	)
	prev := newestOutbox(t, ctx, "sms", phone)
	submit(t, ctx, `click "Send a code"`, button("Send a code"), http.StatusOK)
	wantBodyContains(t, ctx, "We sent a code to "+masked+".")
	msg := waitOutbox(t, ctx, "sms", phone, prev)
	do(t, ctx, "type the enrolment code",
		chromedp.WaitVisible(chromedp.CSS(`input[name=code]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name=code]`), msg.Code),
	)
	submit(t, ctx, `click "Confirm the number"`, button("Confirm the number"), http.StatusOK)
	wantPath(t, ctx, "/.twostep/settings")
	wantBodyContains(t, ctx, "Your phone number is confirmed.")
}

// textCode clicks "Text me a code" on the challenge page and returns the
// code from the outbox.
func textCode(t *testing.T, ctx context.Context, phone, masked string) string {
	t.Helper()
	prev := newestOutbox(t, ctx, "sms", phone)
	submit(t, ctx, `click "Text me a code"`, button("Text me a code"), http.StatusOK)
	wantPath(t, ctx, "/.twostep/challenge")
	wantBodyContains(t, ctx, "We sent a code to "+masked+".")
	return waitOutbox(t, ctx, "sms", phone, prev).Code
}

// waitMessage waits (up to outboxTimeout) for a message by channel to to,
// recorded after since, whose body contains want. A missing one is an
// error, not the end of the journey.
func waitMessage(t *testing.T, ctx context.Context, channel, to string, since time.Time, want string) {
	t.Helper()
	deadline := time.Now().Add(outboxTimeout)
	for {
		list := readOutbox(t, ctx)
		for _, e := range list {
			if e.Channel == channel && e.To == to && !e.Time.Before(since) && strings.Contains(e.Body, want) {
				return
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			var theirs []string
			for _, e := range list {
				if e.To == to {
					theirs = append(theirs, fmt.Sprintf("%s %s %q", e.Time.Format(time.TimeOnly), e.Channel, e.Body))
				}
			}
			t.Errorf("no %s to %s saying %q in the outbox within %v; to %s it holds:\n%s", channel, to, want, outboxTimeout, to, strings.Join(theirs, "\n"))
			return
		}
		time.Sleep(50 * time.Millisecond) // poll interval, not an assertion
	}
}

// writeIDPhoto writes a made-up ID photo: white, with a blue "name" line, a
// red and black "ID number" and a grey frame.
func writeIDPhoto(t *testing.T, path string) {
	t.Helper()
	m := image.NewNRGBA(image.Rect(0, 0, docWidth, docHeight))
	white := color.NRGBA{R: 255, G: 255, B: 255, A: 255}
	grey := color.NRGBA{R: 128, G: 128, B: 128, A: 255}
	for y := 0; y < docHeight; y++ {
		for x := 0; x < docWidth; x++ {
			c := white
			p := image.Pt(x, y)
			switch {
			case x < 8 || y < 8 || x >= docWidth-8 || y >= docHeight-8:
				c = grey
			case p.In(nameLine):
				c = docBlue
			case p.In(idNumber):
				// Ten "digits": red bars with black stripes.
				if (x-idNumber.Min.X)%18 < 12 {
					c = docRed
				}
				if (y-idNumber.Min.Y)%10 == 0 {
					c = color.NRGBA{A: 255}
				}
			case y >= 260 && y < 340 && x >= 420 && x < 560:
				// A "photo" square, in a gradient.
				c = color.NRGBA{R: uint8(x - 300), G: uint8(y - 100), B: 90, A: 255}
			}
			m.SetNRGBA(x, y, c)
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, m); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}

// fetchDocument downloads a request's document with the reviewer's
// cookies, as her browser would, and decodes it as a PNG.
func fetchDocument(t *testing.T, ctx context.Context, id string) image.Image {
	t.Helper()
	cookies, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{site + "/"}})
	if err != nil {
		t.Fatalf("read the reviewer's cookies: %v", err)
	}
	if len(cookies.Cookies) == 0 {
		t.Fatalf("the reviewer's browser holds no cookie for %s", site)
	}
	u := site + "/.twostep/review/" + url.PathEscape(id) + "/document"
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cookies.Cookies {
		req.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 20<<20))
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d (Location %q): %.300s", u, res.StatusCode, res.Header.Get("Location"), body)
	}
	t.Logf("GET %s: %d, %s, %d bytes, Content-Disposition %q", strings.TrimPrefix(u, site), res.StatusCode,
		res.Header.Get("Content-Type"), len(body), res.Header.Get("Content-Disposition"))
	if ct := res.Header.Get("Content-Type"); ct != "image/png" {
		t.Errorf("the document's Content-Type is %q, want image/png", ct)
	}
	if d := res.Header.Get("Content-Disposition"); !strings.HasPrefix(d, "attachment") {
		t.Errorf("the document's Content-Disposition is %q, want attachment (without ?inline=1)", d)
	}
	if n := res.Header.Get("X-Content-Type-Options"); n != "nosniff" {
		t.Errorf("the document's X-Content-Type-Options is %q, want nosniff", n)
	}
	if csp := res.Header.Get("Content-Security-Policy"); !strings.HasPrefix(csp, "sandbox") {
		t.Errorf("the document's Content-Security-Policy is %q, want sandbox", csp)
	}
	img, err := png.Decode(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("the document is not a PNG: %v (%d bytes, starting %q)", err, len(body), body[:min(len(body), 16)])
	}
	if b := img.Bounds(); b.Dx() != docWidth || b.Dy() != docHeight {
		t.Fatalf("the document is %d×%d, want %d×%d", b.Dx(), b.Dy(), docWidth, docHeight)
	}
	return img
}

// checkRedacted checks the stored document: black inside the rectangle the
// journey drew (drawn, in image pixels, less a 2 px edge for antialiasing),
// and the photo unchanged outside it.
func checkRedacted(t *testing.T, img image.Image, drawn image.Rectangle) {
	t.Helper()
	rgb := func(x, y int) [3]uint8 {
		c := color.NRGBAModel.Convert(img.At(x, y)).(color.NRGBA)
		return [3]uint8{c.R, c.G, c.B}
	}
	near := func(got [3]uint8, want color.NRGBA) bool {
		d := func(a, b uint8) int { return max(int(a)-int(b), int(b)-int(a)) }
		return d(got[0], want.R) <= 2 && d(got[1], want.G) <= 2 && d(got[2], want.B) <= 2
	}
	inner := drawn.Inset(2)
	if inner.Empty() || !idNumber.In(inner) {
		t.Fatalf("the drawn rectangle %v does not cover the ID number %v: the drag missed", drawn, idNumber)
	}
	notBlack := 0
	var first string
	for y := inner.Min.Y; y < inner.Max.Y; y++ {
		for x := inner.Min.X; x < inner.Max.X; x++ {
			if c := rgb(x, y); c != [3]uint8{} {
				if notBlack == 0 {
					first = fmt.Sprintf("(%d,%d) is %v", x, y, c)
				}
				notBlack++
			}
		}
	}
	if notBlack > 0 {
		t.Errorf("the stored document is not blacked out where the rectangle was drawn: %d of %d pixels in %v are not black; %s",
			notBlack, inner.Dx()*inner.Dy(), inner, first)
	}
	white := color.NRGBA{R: 255, G: 255, B: 255, A: 255}
	mid := (drawn.Min.Y + drawn.Max.Y) / 2
	for _, p := range []struct {
		what string
		at   image.Point
		want color.NRGBA
	}{
		{"white background, far from the rectangle", image.Pt(500, 200), white},
		{"white background, left of the rectangle", image.Pt(drawn.Min.X-6, mid), white},
		{"white background, right of the rectangle", image.Pt(drawn.Max.X+6, mid), white},
		{"white background, below the rectangle", image.Pt((drawn.Min.X+drawn.Max.X)/2, drawn.Max.Y+6), white},
		{"the blue name line", image.Pt(100, 50), docBlue},
	} {
		if got := rgb(p.at.X, p.at.Y); !near(got, p.want) {
			t.Errorf("the stored document's %s at %v is %v, want %v", p.what, p.at, got, [3]uint8{p.want.R, p.want.G, p.want.B})
		}
	}
}

// consoleLog collects what a tab writes to its console.
type consoleLog struct {
	mu   sync.Mutex
	msgs []chromedp.ConsoleMessage
}

// collectConsole records the console of the tab of ctx until it ends.
func collectConsole(t *testing.T, ctx context.Context) *consoleLog {
	t.Helper()
	l := &consoleLog{}
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			l.mu.Lock()
			l.msgs = append(l.msgs, m)
			l.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		if t.Failed() {
			if s := l.String(); s != "" {
				t.Logf("console of %s's browser:\n%s", recoveryUser, s)
			}
		}
	})
	return l
}

func describeConsole(m chromedp.ConsoleMessage) string {
	s := m.String()
	if m.Source != "" {
		s += " [" + m.Source + "]"
	}
	if m.URL != "" {
		s += fmt.Sprintf(" (%s:%d)", m.URL, m.Line)
	}
	return s
}

// Len is the number of messages so far.
func (l *consoleLog) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.msgs)
}

// String lists every message.
func (l *consoleLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, m := range l.msgs {
		out = append(out, describeConsole(m))
	}
	return strings.Join(out, "\n")
}

// Bad lists the uncaught exceptions, the CSP violations and the errors of
// the redaction script; a favicon that needs a sign-in is no error of the
// pages.
func (l *consoleLog) Bad() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, m := range l.msgs {
		switch {
		case m.IsException(),
			strings.Contains(m.Text, "Content Security Policy"),
			m.Type == chromedp.ConsoleError && !strings.HasSuffix(m.URL, "/favicon.ico"):
			out = append(out, describeConsole(m))
		}
	}
	return out
}
