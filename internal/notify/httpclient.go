package notify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// DefaultHTTPTimeout bounds one request to Twilio or a webhook when the
// provider's Timeout is zero.
const DefaultHTTPTimeout = 10 * time.Second

// maxResponse is how much of a provider's answer is read.
const maxResponse = 64 << 10

// defaultHTTPClient is used when a provider has no Client of its own. It
// does not follow redirects: a code is posted to the configured URL or not
// at all, and a 3xx counts as a failed delivery.
var defaultHTTPClient = &http.Client{
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

func httpClient(c *http.Client) *http.Client {
	if c != nil {
		return c
	}
	return defaultHTTPClient
}

func timeoutOr(d time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return DefaultHTTPTimeout
}

// post sends one request and returns the status and (the start of) the
// answer's body. The body is always drained and closed.
func post(ctx context.Context, c *http.Client, timeout time.Duration, req *http.Request) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeoutOr(timeout))
	defer cancel()
	resp, err := httpClient(c).Do(req.WithContext(ctx))
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponse))
	if err != nil && resp.StatusCode/100 == 2 {
		// The provider said yes; a cut answer does not undo that.
		err = nil
	}
	return resp.StatusCode, body, err
}

// validHTTPURL checks that raw is an absolute http(s) URL with a host.
func validHTTPURL(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, errors.New("is empty")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, errors.New("is not a valid URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("must be an http or https URL, not %q", u.Scheme)
	}
	if u.Hostname() == "" {
		return nil, errors.New("has no host")
	}
	if u.Fragment != "" {
		return nil, errors.New("must not have a fragment")
	}
	return u, nil
}
