package baton_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The tests run against the batond named by BATOND_BIN (scripts/test builds it), on the
// embedded store in a temporary directory, on free loopback ports.

var (
	sharedMu  sync.Mutex
	sharedSrv *batond
	sharedDir string
)

func TestMain(m *testing.M) {
	code := m.Run()
	sharedMu.Lock()
	if sharedSrv != nil {
		sharedSrv.stop()
	}
	if sharedDir != "" {
		_ = os.RemoveAll(sharedDir)
	}
	sharedMu.Unlock()
	os.Exit(code)
}

// batond is one server process; stop and start it again to restart it on the same ports and
// data directory.
type batond struct {
	bin       string
	dataDir   string
	port      int
	adminPort int
	cmd       *exec.Cmd
	log       *lockedBuffer
	done      chan struct{}
	// env ("KEY=value") and args are added to what every batond gets (replicaServer).
	env  []string
	args []string
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func batondBin(t testing.TB) string {
	t.Helper()
	bin := os.Getenv("BATOND_BIN")
	if bin == "" {
		t.Fatal("BATOND_BIN is not set: point it at a built batond (scripts/test clients-go builds one)")
	}
	if st, err := os.Stat(bin); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
		t.Fatalf("BATOND_BIN=%s is not an executable file (%v)", bin, err)
	}
	return bin
}

// sharedServer is one batond for the tests that do not restart it.
func sharedServer(t testing.TB) *batond {
	t.Helper()
	bin := batondBin(t)
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if sharedSrv == nil {
		dir, err := os.MkdirTemp("", "baton-go-shared-")
		if err != nil {
			t.Fatal(err)
		}
		sharedDir = dir
		s := &batond{bin: bin, dataDir: dir, port: freePort(t), adminPort: freePort(t)}
		if err := s.start(); err != nil {
			t.Fatal(err)
		}
		sharedSrv = s
	}
	return sharedSrv
}

// ownServer is a batond for one test, stopped when the test ends.
func ownServer(t testing.TB) *batond {
	t.Helper()
	return startForTest(t, &batond{bin: batondBin(t), dataDir: t.TempDir(), port: freePort(t), adminPort: freePort(t)})
}

// startForTest starts s and stops it when the test ends, logging its output if the test failed.
func startForTest(t testing.TB, s *batond) *batond {
	t.Helper()
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			t.Logf("batond log:\n%s", s.log.String())
		}
	})
	return s
}

// replicaServer is a batond for one test on the test PostgreSQL (as the serving role, under
// row-level security: the test uses a tenant of its own), reading from the held-back read
// replica scripts/test makes (BATON_TEST_READ_REPLICA_URL): a read the replica serves misses
// every write made after the replica was.
func replicaServer(t testing.TB) *batond {
	t.Helper()
	env := []string{}
	for _, v := range [][2]string{
		{"DATABASE_URL", "BATON_TEST_APP_DATABASE_URL"},
		{"BATON_MIGRATE_DATABASE_URL", "BATON_TEST_DATABASE_URL"},
		{"DATABASE_READ_URL", "BATON_TEST_READ_REPLICA_URL"},
	} {
		url := os.Getenv(v[1])
		if url == "" {
			t.Fatalf("%s is not set: run the suite with scripts/test clients-go, which makes the services", v[1])
		}
		env = append(env, v[0]+"="+url)
	}
	return startForTest(t, &batond{bin: batondBin(t), dataDir: t.TempDir(), port: freePort(t), adminPort: freePort(t),
		env: env, args: []string{"--read-replica-max-lag-ms", "3600000"}})
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func (s *batond) target() string { return fmt.Sprintf("127.0.0.1:%d", s.port) }

func (s *batond) start() error {
	if s.log == nil {
		s.log = &lockedBuffer{}
	}
	args := append([]string{
		"--grpc-addr", s.target(),
		"--admin-addr", fmt.Sprintf("127.0.0.1:%d", s.adminPort),
		"--data-dir", filepath.Join(s.dataDir, "store"),
		"--shutdown-grace-secs", "1",
	}, s.args...)
	cmd := exec.Command(s.bin, args...)
	env := []string{"RUST_LOG=warn"}
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "DATABASE_URL=") || strings.HasPrefix(kv, "REDIS_URL=") ||
			strings.HasPrefix(kv, "BATON_") || strings.HasPrefix(kv, "OTEL_") || strings.HasPrefix(kv, "RUST_LOG=") {
			continue
		}
		env = append(env, kv)
	}
	cmd.Env = append(env, s.env...)
	cmd.Stdout = s.log
	cmd.Stderr = s.log
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start batond: %w", err)
	}
	s.cmd = cmd
	s.done = make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(s.done)
	}()
	deadline := time.Now().Add(90 * time.Second)
	url := fmt.Sprintf("http://127.0.0.1:%d/ready", s.adminPort)
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			return fmt.Errorf("batond exited at start-up:\n%s", s.log.String())
		default:
		}
		resp, err := http.Get(url)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.stop()
	return fmt.Errorf("batond not ready within 90s:\n%s", s.log.String())
}

// stop ends the server with SIGTERM (its streams end with UNAVAILABLE), SIGKILL after 20s.
func (s *batond) stop() { s.signal(syscall.SIGTERM) }

// kill ends the server at once, as a crash would.
func (s *batond) kill() { s.signal(syscall.SIGKILL) }

func (s *batond) signal(sig syscall.Signal) {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(sig)
	select {
	case <-s.done:
	case <-time.After(20 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	s.cmd = nil
}

// proxy is a TCP proxy in front of batond that can, once, lose the answer to a request: it
// forwards the client's bytes, and after a chunk containing the marker has gone to the server
// it stops relaying the server's bytes; in drop mode it closes both connections as soon as the
// answer (which echoes the marker) has come back from the server, in stall mode it keeps
// swallowing the server's bytes.
type proxy struct {
	ln      net.Listener
	backend string

	mu         sync.Mutex
	marker     []byte
	stall      bool
	conns      int
	dropped    int
	answerSeen bool
	open       []net.Conn
}

func newProxy(t testing.TB, backend string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, backend: backend}
	go p.serve()
	t.Cleanup(p.close)
	return p
}

func (p *proxy) target() string { return p.ln.Addr().String() }

// arm makes the next request containing marker lose its answer (stall: never answer).
func (p *proxy) arm(marker string, stall bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.marker = []byte(marker)
	p.stall = stall
}

func (p *proxy) stats() (conns, dropped int, answerSeen bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.conns, p.dropped, p.answerSeen
}

func (p *proxy) close() {
	_ = p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.open {
		_ = c.Close()
	}
}

func (p *proxy) serve() {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", p.backend)
		if err != nil {
			_ = client.Close()
			continue
		}
		p.mu.Lock()
		p.conns++
		p.open = append(p.open, client, server)
		p.mu.Unlock()
		go p.relay(client, server)
	}
}

func (p *proxy) relay(client, server net.Conn) {
	var (
		mu       sync.Mutex
		swallow  bool   // the server's bytes are no longer relayed
		stall    bool   // ... and the connection is kept open
		answer   []byte // the marker to wait for in the server's bytes
		closeAll = func() { _ = client.Close(); _ = server.Close() }
	)
	// client -> server
	go func() {
		defer closeAll()
		buf := make([]byte, 32*1024)
		var tail []byte
		for {
			n, err := client.Read(buf)
			if n > 0 {
				p.mu.Lock()
				marker := p.marker
				if len(marker) > 0 {
					window := append(tail, buf[:n]...)
					if bytes.Contains(window, marker) {
						mu.Lock()
						swallow, stall, answer = true, p.stall, marker
						mu.Unlock()
						p.marker = nil
						p.dropped++
					}
					if keep := len(marker) - 1; len(window) > keep {
						tail = append([]byte(nil), window[len(window)-keep:]...)
					} else {
						tail = window
					}
				}
				p.mu.Unlock()
				if _, werr := server.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	// server -> client
	defer closeAll()
	buf := make([]byte, 32*1024)
	var seen []byte
	for {
		n, err := server.Read(buf)
		if n > 0 {
			mu.Lock()
			sw, st, ans := swallow, stall, answer
			mu.Unlock()
			if !sw {
				if _, werr := client.Write(buf[:n]); werr != nil {
					return
				}
			} else if !st {
				seen = append(seen, buf[:n]...)
				if bytes.Contains(seen, ans) {
					p.mu.Lock()
					p.answerSeen = true
					p.mu.Unlock()
					return // drop the connection instead of relaying the answer
				}
			}
		}
		if err != nil {
			return
		}
	}
}

// testCtx is a context bounded by the test's own time budget.
func testCtx(t testing.TB, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
