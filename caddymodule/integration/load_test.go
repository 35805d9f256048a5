package integration

import (
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// peakRSS is this process's peak resident set size in bytes (VmHWM).
func peakRSS(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skip("no /proc/self/status")
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	t.Skip("no VmHWM")
	return 0
}

// 200 concurrent sign-ins with argon2id (64 MiB each): the hash limiter
// keeps memory bounded, and every answer is a success or an explicit 503
// with Retry-After. The peak RSS is reported (and must stay under 512 MiB,
// except under the race detector, which multiplies memory use).
func TestConcurrentSignIns(t *testing.T) {
	start(t)
	// Reset the peak so that earlier tests do not count.
	_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
	const n = 200
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		statuses = map[int]int{}
		bad      []string
	)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := newClient(t)
			res, err := c.http.Post(site+"/.twostep/api/login", "application/json",
				strings.NewReader(`{"username":"bob","password":"`+bobPassword+`"}`))
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				bad = append(bad, err.Error())
				return
			}
			res.Body.Close()
			statuses[res.StatusCode]++
			switch res.StatusCode {
			case http.StatusOK:
			case http.StatusServiceUnavailable:
				if res.Header.Get("Retry-After") == "" {
					bad = append(bad, "503 without Retry-After")
				}
			default:
				bad = append(bad, "status "+strconv.Itoa(res.StatusCode))
			}
		}()
	}
	wg.Wait()
	peak := peakRSS(t)
	t.Logf("200 concurrent sign-ins: %v; peak RSS %d MiB", statuses, peak>>20)
	if len(bad) > 0 {
		t.Fatalf("answers other than 200 or 503 with Retry-After: %v", bad)
	}
	if statuses[http.StatusOK] == 0 {
		t.Fatal("no sign-in succeeded")
	}
	// The bound holds for the reference machine (2 cores: 2 hashes at once);
	// more cores run more 64 MiB hashes at once, by design.
	if peak > 512<<20 && !raceEnabled && runtime.NumCPU() <= 2 {
		t.Fatalf("peak RSS %d MiB, want under 512 MiB", peak>>20)
	}
}
