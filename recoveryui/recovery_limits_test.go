package recoveryui

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twostep-auth/twostep/account"
	"github.com/twostep-auth/twostep/internal/store"
	"github.com/twostep-auth/twostep/internal/store/bolt"
	"github.com/twostep-auth/twostep/internal/users"
)

// uploadServer reads recovery uploads with readUploadSlot; the test names
// each request's user and client address in X-User and X-IP, and gets
// 200 for an upload read, else the status the portal answers.
func uploadServer(t *testing.T) *httptest.Server {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "t.db"), bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	db, err := users.Parse([]byte("users: {}\n"))
	if err != nil {
		t.Fatal(err)
	}
	svc, err := account.New(account.Config{
		Secret:          []byte("0123456789abcdef0123456789abcdef"),
		SessionIdle:     30 * time.Minute,
		SessionLifetime: 12 * time.Hour,
		Regulation:      account.Regulation{MaxRetries: 3, FindTime: 10 * time.Minute, BanTime: 15 * time.Minute},
		Recovery:        account.RecoveryConfig{Enabled: true, ReviewGroup: "admins", MaxSize: 1 << 20},
	}, st, staticUsers{db}, time.Now, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := &Portal{Account: svc}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		res := &account.Resolved{Session: &store.Session{User: r.Header.Get("X-User"), State: store.StateSecondFactor}}
		c := account.Client{IP: netip.MustParseAddr(r.Header.Get("X-IP"))}
		if _, _, _, err := p.readUploadSlot(w, r, res, c); err != nil {
			r.Header.Set("Accept", "application/json")
			p.recoveryError(w, r, res, err)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// A client (any half-signed-in user: their own password is enough) opens
// four uploads and sends them slowly. Only the first holds an upload
// turn: the others, of the same account and network, are refused with
// 429 and Retry-After without taking one, so another user's upload still
// goes through.
func TestUploadTurnsOnePerAccountAndNetwork(t *testing.T) {
	srv := uploadServer(t)
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range 4 {
		c, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: x\r\nX-User: mallory\r\nX-IP: 192.0.2.66\r\n"+
			"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 1000000\r\n\r\n-")
		time.Sleep(20 * time.Millisecond) // the first one in is the one that holds
	}
	// The same account from elsewhere, and someone else from the same
	// network, wait their turn too.
	var wg sync.WaitGroup
	for _, who := range [][2]string{{"mallory", "198.51.100.7"}, {"trudy", "192.0.2.66"}} {
		wg.Go(func() {
			if got := sendUpload(t, srv, who[0], who[1]); got.StatusCode != http.StatusTooManyRequests || got.Header.Get("Retry-After") == "" {
				t.Errorf("%s from %s beside mallory's slow upload: %d, Retry-After %q", who[0], who[1], got.StatusCode, got.Header.Get("Retry-After"))
			}
		})
	}
	wg.Wait()
	// Three of the slow four were refused at once; the first still holds.
	refused := 0
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			continue
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusTooManyRequests {
			t.Errorf("a stalled upload: %d", resp.StatusCode)
		}
		refused++
	}
	if refused != 3 {
		t.Errorf("%d of mallory's four concurrent uploads refused, want 3", refused)
	}
	// Others are served meanwhile.
	for i := range 4 {
		if got := sendUpload(t, srv, fmt.Sprintf("user%d", i), fmt.Sprintf("203.0.113.%d", i+1)); got.StatusCode != http.StatusOK {
			t.Fatalf("another user's upload: %d while one client stalls four uploads", got.StatusCode)
		}
	}
}

// sendUpload sends a small, complete upload as user from ip.
func sendUpload(t *testing.T, srv *httptest.Server, user, ip string) *http.Response {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, _ := mw.CreateFormFile("document", "id.png")
	fw.Write([]byte("\x89PNG\r\n\x1a\n"))
	mw.WriteField("document_type", "passport")
	mw.Close()
	req, _ := http.NewRequest(http.MethodPost, srv.URL, &body)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("X-User", user)
	req.Header.Set("X-IP", ip)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Error(err)
		return &http.Response{}
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// An upload must keep arriving: the grace, then the minimum rate, a
// longest pause, and the overall bound.
func TestUploadDue(t *testing.T) {
	start := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		at   time.Duration // since start
		sent int64
		want time.Duration // since start
	}{
		{0, 0, uploadGrace},
		{5 * time.Second, 0, uploadGrace},
		{5 * time.Second, 1 << 20, 5*time.Second + uploadIdle},            // well ahead: at most a pause
		{11 * time.Second, 32 << 10, uploadGrace + 2*time.Second},         // 2 seconds' worth
		{110 * time.Second, 100 << 20, account.UploadReadTimeout},         // never beyond the bound
		{account.UploadReadTimeout, 100 << 20, account.UploadReadTimeout}, // due now: refused
	} {
		if got := uploadDue(start, start.Add(tc.at), tc.sent).Sub(start); got != tc.want {
			t.Errorf("at %v with %d bytes sent: due at %v, want %v", tc.at, tc.sent, got, tc.want)
		}
	}
}

// A client that fell behind is cut off with errUploadSlow, on its next
// read or when the read deadline ends the one it is in; readUpload says
// so.
func TestPacedBodyCutsSlowClients(t *testing.T) {
	rc := http.NewResponseController(httptest.NewRecorder())
	late := &pacedBody{ReadCloser: io.NopCloser(strings.NewReader("data")), rc: rc, start: time.Now().Add(-time.Minute)}
	if _, err := late.Read(make([]byte, 4)); !errors.Is(err, errUploadSlow) {
		t.Fatalf("behind the rate: %v", err)
	}
	timedOut := &pacedBody{ReadCloser: io.NopCloser(iotestErrReader{os.ErrDeadlineExceeded}), rc: rc, start: time.Now()}
	if _, err := timedOut.Read(make([]byte, 4)); !errors.Is(err, errUploadSlow) {
		t.Fatalf("read deadline: %v", err)
	}
	ok := &pacedBody{ReadCloser: io.NopCloser(strings.NewReader("data")), rc: rc, start: time.Now()}
	if n, err := ok.Read(make([]byte, 4)); n != 4 || err != nil {
		t.Fatalf("on time: %d %v", n, err)
	}
	r := httptest.NewRequest(http.MethodPost, "/", nil)
	r.Header.Set("Content-Type", "multipart/form-data; boundary=b")
	r.Body = &pacedBody{ReadCloser: io.NopCloser(strings.NewReader("--b\r\n")), rc: rc, start: time.Now().Add(-time.Minute)}
	if _, _, _, err := readUpload(httptest.NewRecorder(), r, 1<<20); !errors.Is(err, errUploadSlow) {
		t.Fatalf("readUpload of a slow client: %v", err)
	}
}

type iotestErrReader struct{ err error }

func (r iotestErrReader) Read([]byte) (int, error) { return 0, r.err }
