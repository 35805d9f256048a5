// Command upstream is the tiny app behind Caddy in bench/run: it answers
// every request 200 "ok" and counts what it saw, so that the benchmark can
// check that each request wrk sent really went through (and, for the
// twostep variants, really carried the signed-in user in Remote-User).
//
//	GET /__count          {"total":N,"expect":"alice","matched":N,"no_user":N,"other_user":N}
//	GET|POST /__reset?expect=alice   zero the counters; count Remote-User: alice as matched
//
// The control paths are not counted. Only for benchmarks: it listens where
// -addr says (loopback by default).
package main

import (
	"encoding/json"
	"flag"
	"log"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

type counters struct {
	total     atomic.Int64 // every request but the control paths
	matched   atomic.Int64 // Remote-User is exactly the expected value (one header, one value)
	noUser    atomic.Int64 // no Remote-User header at all
	otherUser atomic.Int64 // some other value, or more than one header

	mu     sync.RWMutex
	expect string
}

func (c *counters) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/__count":
		c.mu.RLock()
		expect := c.expect
		c.mu.RUnlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"total":      c.total.Load(),
			"expect":     expect,
			"matched":    c.matched.Load(),
			"no_user":    c.noUser.Load(),
			"other_user": c.otherUser.Load(),
		})
		return
	case "/__reset":
		c.mu.Lock()
		c.expect = r.URL.Query().Get("expect")
		c.total.Store(0)
		c.matched.Store(0)
		c.noUser.Store(0)
		c.otherUser.Store(0)
		c.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
		return
	}
	c.mu.RLock()
	expect := c.expect
	c.mu.RUnlock()
	c.total.Add(1)
	switch vals := r.Header.Values("Remote-User"); {
	case len(vals) == 0:
		c.noUser.Add(1)
	case len(vals) == 1 && expect != "" && vals[0] == expect:
		c.matched.Add(1)
	default:
		c.otherUser.Add(1)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Content-Length", "2")
	_, _ = w.Write([]byte("ok"))
}

func main() {
	addr := flag.String("addr", "127.0.0.1:9300", "listen address")
	flag.Parse()
	srv := &http.Server{
		Addr:              *addr,
		Handler:           &counters{},
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	log.Printf("upstream listening on %s", *addr)
	log.Fatal(srv.ListenAndServe())
}
