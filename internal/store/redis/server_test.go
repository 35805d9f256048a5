package redis

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// The tests run against real Redis servers that they start themselves on
// free loopback ports (redis-server, and redis-cli for the Cluster), unless
// the environment names servers to use instead:
//
//	TWOSTEP_REDIS_ADDR      host:port of a server to use
//	TWOSTEP_REDIS_CLUSTER   comma-separated host:port of Cluster masters
//	TWOSTEP_REQUIRE_REDIS=1 fail, rather than skip, when redis-server or
//	                        redis-cli is missing
//	TWOSTEP_REDIS_LOG=1     show the client's log lines
//
// Every store a test opens has its own key prefix, and its keys are deleted
// when the test ends, so a shared server is left as it was.

const (
	serverStartTimeout  = 15 * time.Second
	clusterStartTimeout = 30 * time.Second
)

// server is a redis-server process started by the tests.
type server struct {
	bin  string
	dir  string
	port int
	args []string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
}

var (
	serversMu sync.Mutex
	servers   []*server // stopped by TestMain
)

// quietLogger drops the client's log lines (a failed dial each time the
// failure tests stop a server).
type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

func TestMain(m *testing.M) {
	if os.Getenv("TWOSTEP_REDIS_LOG") == "" {
		goredis.SetLogger(quietLogger{})
	}
	code := m.Run()
	serversMu.Lock()
	for _, s := range servers {
		s.stop()
	}
	for _, s := range servers {
		os.RemoveAll(s.dir)
	}
	serversMu.Unlock()
	os.Exit(code)
}

// needBinary returns the path of a Redis program, or skips the test (fails
// it under TWOSTEP_REQUIRE_REDIS=1) if it is not installed.
func needBinary(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	msg := fmt.Sprintf("%s not found (install the Debian packages redis-server and redis-tools, or set TWOSTEP_REDIS_ADDR / TWOSTEP_REDIS_CLUSTER)", name)
	if os.Getenv("TWOSTEP_REQUIRE_REDIS") == "1" {
		t.Fatalf("%s; TWOSTEP_REQUIRE_REDIS=1 requires it", msg)
	}
	t.Skip(msg)
	return ""
}

// freePort returns a loopback TCP port that was free a moment ago; with bus,
// port+10000 (the Cluster bus port) was free too.
func freePort(bus bool) (int, error) {
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		if !bus {
			l.Close()
			return port, nil
		}
		if port+10000 > 65535 {
			l.Close()
			continue
		}
		l2, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port+10000))
		l.Close()
		if err != nil {
			continue
		}
		l2.Close()
		return port, nil
	}
	return 0, errors.New("no free port pair found")
}

// startServer starts redis-server on a free loopback port in a new
// directory, with extra arguments, and waits until it answers PING.
func startServer(bin string, cluster bool, extra ...string) (*server, error) {
	var lastErr error
	for range 3 { // a port taken between freePort and the bind: try another
		port, err := freePort(cluster)
		if err != nil {
			return nil, err
		}
		dir, err := os.MkdirTemp("", "twostep-redis-")
		if err != nil {
			return nil, err
		}
		s := &server{bin: bin, dir: dir, port: port}
		s.args = append([]string{
			"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--dir", dir,
			"--daemonize", "no", "--logfile", filepath.Join(dir, "redis.log"),
		}, extra...)
		if err := s.start(); err != nil {
			lastErr = err
			os.RemoveAll(dir)
			continue
		}
		serversMu.Lock()
		servers = append(servers, s)
		serversMu.Unlock()
		return s, nil
	}
	return nil, lastErr
}

func (s *server) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// start runs the process (again, on the same port) and waits until it
// answers PING.
func (s *server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cmd := exec.Command(s.bin, s.args...)
	cmd.Dir = s.dir
	cmd.SysProcAttr = childProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", s.bin, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	s.cmd, s.done = cmd, done
	deadline := time.Now().Add(serverStartTimeout)
	for {
		if err := rawPing(s.addr()); err == nil {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("redis-server on port %d exited at start: %s", s.port, s.logTail())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.killLocked()
			return fmt.Errorf("redis-server on port %d did not answer PING within %s: %s", s.port, serverStartTimeout, s.logTail())
		}
	}
}

// stop kills the process and waits (a bounded time) until it has exited.
func (s *server) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.killLocked()
}

func (s *server) killLocked() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Kill()
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
	}
	s.cmd = nil
}

func (s *server) logTail() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}

// rawPing sends PING over a fresh connection and expects +PONG.
func rawPing(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("PING: %q", strings.TrimSpace(line))
	}
	return nil
}

var (
	standaloneOnce sync.Once
	standaloneAddr string
	standaloneErr  error

	clusterOnce  sync.Once
	clusterAddrs []string
	clusterErr   error

	sentinelOnce  sync.Once
	sentinelAddrs []string
	sentinelErr   error
)

// sentinelMaster is the master name the test Sentinel monitors.
const sentinelMaster = "twostep-test"

// standalone returns the address of a single Redis server for the tests.
func standalone(t testing.TB) string {
	t.Helper()
	if a := os.Getenv("TWOSTEP_REDIS_ADDR"); a != "" {
		return a
	}
	bin := needBinary(t, "redis-server")
	standaloneOnce.Do(func() {
		var s *server
		s, standaloneErr = startServer(bin, false)
		if standaloneErr == nil {
			standaloneAddr = s.addr()
		}
	})
	if standaloneErr != nil {
		t.Fatalf("starting redis-server: %v", standaloneErr)
	}
	return standaloneAddr
}

// cluster returns the addresses of the masters of a Redis Cluster for the
// tests: three servers, created with redis-cli --cluster create.
func cluster(t testing.TB) []string {
	t.Helper()
	if a := os.Getenv("TWOSTEP_REDIS_CLUSTER"); a != "" {
		return strings.Split(a, ",")
	}
	bin := needBinary(t, "redis-server")
	cli := needBinary(t, "redis-cli")
	clusterOnce.Do(func() { clusterAddrs, clusterErr = startCluster(bin, cli) })
	if clusterErr != nil {
		t.Fatalf("starting a Redis Cluster: %v", clusterErr)
	}
	return clusterAddrs
}

// sentinel returns the address of a Sentinel that monitors a master named
// sentinelMaster: a server and a Sentinel (redis-server --sentinel) of their
// own, or those named by TWOSTEP_REDIS_SENTINEL (comma-separated Sentinel
// addresses; the master must be named twostep-test).
func sentinel(t testing.TB) []string {
	t.Helper()
	if a := os.Getenv("TWOSTEP_REDIS_SENTINEL"); a != "" {
		return strings.Split(a, ",")
	}
	bin := needBinary(t, "redis-server")
	sentinelOnce.Do(func() { sentinelAddrs, sentinelErr = startSentinel(bin) })
	if sentinelErr != nil {
		t.Fatalf("starting a Sentinel: %v", sentinelErr)
	}
	return sentinelAddrs
}

func startSentinel(bin string) ([]string, error) {
	master, err := startServer(bin, false)
	if err != nil {
		return nil, err
	}
	var lastErr error
	for range 3 {
		port, err := freePort(false)
		if err != nil {
			return nil, err
		}
		dir, err := os.MkdirTemp("", "twostep-sentinel-")
		if err != nil {
			return nil, err
		}
		conf := filepath.Join(dir, "sentinel.conf")
		text := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nlogfile %s\nsentinel monitor %s 127.0.0.1 %d 1\nsentinel down-after-milliseconds %s 60000\n",
			port, dir, filepath.Join(dir, "redis.log"), sentinelMaster, master.port, sentinelMaster)
		if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
			return nil, err
		}
		s := &server{bin: bin, dir: dir, port: port, args: []string{conf, "--sentinel"}}
		if err := s.start(); err != nil {
			lastErr = err
			os.RemoveAll(dir)
			continue
		}
		serversMu.Lock()
		servers = append(servers, s)
		serversMu.Unlock()
		// Wait until the Sentinel names the master.
		ctx, cancel := context.WithTimeout(context.Background(), serverStartTimeout)
		defer cancel()
		c := goredis.NewSentinelClient(&goredis.Options{Addr: s.addr(), MaxRetries: -1})
		defer c.Close()
		for {
			addr, err := c.GetMasterAddrByName(ctx, sentinelMaster).Result()
			if err == nil && len(addr) == 2 && addr[1] == strconv.Itoa(master.port) {
				return []string{s.addr()}, nil
			}
			select {
			case <-ctx.Done():
				return nil, fmt.Errorf("the Sentinel did not name master %s within %s: %v, %v", sentinelMaster, serverStartTimeout, addr, err)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return nil, lastErr
}

func startCluster(bin, cli string) ([]string, error) {
	addrs, _, err := startClusterServers(bin, cli)
	return addrs, err
}

// startClusterServers starts a cluster of three masters and returns their
// addresses and processes (for tests that stop one).
func startClusterServers(bin, cli string) ([]string, []*server, error) {
	var addrs []string
	var srvs []*server
	for range 3 {
		s, err := startServer(bin, true, "--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "5000")
		if err != nil {
			return nil, nil, err
		}
		addrs = append(addrs, s.addr())
		srvs = append(srvs, s)
	}
	ctx, cancel := context.WithTimeout(context.Background(), clusterStartTimeout)
	defer cancel()
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput()
	if err != nil {
		return nil, nil, fmt.Errorf("redis-cli --cluster create: %v\n%s", err, out)
	}
	// Every node must see the whole cluster as ok before the tests start.
	for _, a := range addrs {
		c := goredis.NewClient(&goredis.Options{Addr: a, DialTimeout: time.Second, ReadTimeout: time.Second, MaxRetries: -1})
		for {
			info, err := c.ClusterInfo(ctx).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") && strings.Contains(info, "cluster_known_nodes:3") {
				break
			}
			select {
			case <-ctx.Done():
				c.Close()
				return nil, nil, fmt.Errorf("node %s: cluster_state not ok within %s: %q, %v", a, clusterStartTimeout, info, err)
			case <-time.After(50 * time.Millisecond):
			}
		}
		c.Close()
	}
	return addrs, srvs, nil
}

// purge deletes every key under prefix on the servers at addrs (with
// master, the Sentinels of that master).
func purge(addrs []string, prefix string) error { return purgeMaster(addrs, "", prefix) }

func purgeMaster(addrs []string, master, prefix string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := goredis.NewUniversalClient(&goredis.UniversalOptions{Addrs: addrs, MasterName: master, DialTimeout: 2 * time.Second, ReadTimeout: 5 * time.Second})
	defer c.Close()
	del := func(ctx context.Context, n *goredis.Client) error {
		var cursor uint64
		for {
			keys, next, err := n.Scan(ctx, cursor, globEscape(prefix)+"*", 1000).Result()
			if err != nil {
				return err
			}
			if len(keys) > 0 {
				pipe := n.Pipeline()
				for _, k := range keys {
					pipe.Unlink(ctx, k)
				}
				if _, err := pipe.Exec(ctx); err != nil {
					return err
				}
			}
			if next == 0 {
				return nil
			}
			cursor = next
		}
	}
	switch c := c.(type) {
	case *goredis.ClusterClient:
		return c.ForEachMaster(ctx, del)
	case *goredis.Client:
		return del(ctx, c)
	}
	return nil
}

// countKeys returns how many keys lie under prefix on the servers at addrs.
func countKeys(t testing.TB, addrs []string, prefix string) int {
	t.Helper()
	ctx := context.Background()
	c := goredis.NewUniversalClient(&goredis.UniversalOptions{Addrs: addrs})
	defer c.Close()
	var mu sync.Mutex
	n := 0
	count := func(ctx context.Context, node *goredis.Client) error {
		keys, err := node.Keys(ctx, globEscape(prefix)+"*").Result()
		mu.Lock()
		n += len(keys)
		mu.Unlock()
		return err
	}
	var err error
	switch c := c.(type) {
	case *goredis.ClusterClient:
		err = c.ForEachMaster(ctx, count)
	case *goredis.Client:
		err = count(ctx, c)
	}
	if err != nil {
		t.Fatalf("counting keys: %v", err)
	}
	return n
}
