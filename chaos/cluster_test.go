package chaos

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
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

	"github.com/lcpipe/lcpipe/ingest"
	"github.com/lcpipe/lcpipe/internal/testenv"
)

// timeline logs what happens during the run with the time since its start,
// so a failure can be read against the faults.
type timeline struct {
	t  testing.TB
	t0 time.Time
	mu sync.Mutex
	f  *os.File
}

func newTimeline(t testing.TB, dir string) *timeline {
	f, err := os.Create(filepath.Join(dir, "timeline.log"))
	if err != nil {
		t.Fatalf("chaos: %v", err)
	}
	tl := &timeline{t: t, t0: time.Now(), f: f}
	t.Cleanup(func() { tl.mu.Lock(); tl.f.Close(); tl.f = nil; tl.mu.Unlock() })
	return tl
}

func (tl *timeline) since() time.Duration { return time.Since(tl.t0) }

func (tl *timeline) logf(format string, args ...any) {
	line := fmt.Sprintf("+%7.1fs  %s", tl.since().Seconds(), fmt.Sprintf(format, args...))
	tl.mu.Lock()
	defer tl.mu.Unlock()
	if tl.f == nil {
		return // the test is over
	}
	fmt.Fprintln(tl.f, line)
	tl.t.Log(line)
}

// freeAddr returns a loopback address with a port free right now.
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("chaos: listen: %v", err)
	}
	defer l.Close()
	return l.Addr().String()
}

// buildBinary builds cmd/lcpipe into dir, as `make build` does.
func buildBinary(t testing.TB, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "lcpipe")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/lcpipe")
	cmd.Dir = testenv.RepoRoot(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("chaos: go build ./cmd/lcpipe: %v\n%s", err, out)
	}
	return bin
}

// childEnv is the parent's environment without anything that configures
// lcpipe (the test's own KAFKA_BROKERS, CLICKHOUSE_ADDR... must not leak
// into the children), plus env.
func childEnv(env ...string) []string {
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(k, "KAFKA_"), strings.HasPrefix(k, "CLICKHOUSE_"), strings.HasPrefix(k, "INGEST_"),
			strings.HasPrefix(k, "SPOOL_"), strings.HasPrefix(k, "LIVECHAT_"), strings.HasPrefix(k, "APP_"),
			strings.HasPrefix(k, "BATCH_"), strings.HasPrefix(k, "INSERT_"), strings.HasPrefix(k, "SETTLE_"),
			k == "ADMIN_ADDR", k == "PUBLIC_BASE_URL", k == "DEDUP_WINDOW", k == "GOMEMLIMIT", k == "LOG_FORMAT", k == "LOG_LEVEL":
			continue
		}
		out = append(out, kv)
	}
	return append(out, env...)
}

// child is one lcpipe process (an ingest or a processor) under a small
// supervisor: killed on purpose it stays down until started again; exiting
// on its own (a processor that cannot reach ClickHouse at start, say) it is
// restarted after a second, as systemd or Kubernetes would, and the exit is
// counted.
type child struct {
	name    string
	bin     string
	args    []string
	env     []string
	dir     string
	logPath string
	tl      *timeline

	mu          sync.Mutex
	cmd         *exec.Cmd
	done        chan struct{}
	want        bool // should run: restart after an unexpected exit
	intentional bool // the running process is being killed or stopped by us
	frozen      bool // stopped with SIGSTOP (a fault)
	starts      int
	kills       int
	exits       int // unexpected exits
	logFile     *os.File
}

func newChild(tl *timeline, name, bin, dir string, env []string, args ...string) *child {
	return &child{name: name, bin: bin, args: args, env: childEnv(env...), dir: dir,
		logPath: filepath.Join(dir, name+".log"), tl: tl}
}

// Start starts the process (no-op while it runs).
func (c *child) Start() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.want = true
	if c.cmd != nil {
		return nil
	}
	return c.spawn()
}

func (c *child) spawn() error {
	if c.logFile == nil {
		f, err := os.OpenFile(c.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		c.logFile = f
	}
	fmt.Fprintf(c.logFile, "==== chaos: start #%d at +%.1fs\n", c.starts+1, c.tl.since().Seconds())
	cmd := exec.Command(c.bin, c.args...)
	cmd.Env = c.env
	cmd.Dir = c.dir
	cmd.Stdout, cmd.Stderr = c.logFile, c.logFile
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("chaos: start %s: %w", c.name, err)
	}
	c.starts++
	done := make(chan struct{})
	c.cmd, c.done, c.intentional = cmd, done, false
	go c.wait(cmd, done)
	return nil
}

func (c *child) wait(cmd *exec.Cmd, done chan struct{}) {
	err := cmd.Wait()
	c.mu.Lock()
	defer c.mu.Unlock()
	close(done)
	if c.cmd != cmd {
		return
	}
	c.cmd = nil
	if c.intentional {
		return
	}
	c.exits++
	c.tl.logf("%s exited on its own (%v); restarting in 1s", c.name, err)
	time.AfterFunc(time.Second, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.want && c.cmd == nil {
			if err := c.spawn(); err != nil {
				c.tl.logf("%s: %v", c.name, err)
			}
		}
	})
}

// Kill sends SIGKILL and waits until the process is gone. It stays down
// until Start.
func (c *child) Kill() {
	c.mu.Lock()
	c.want = false
	cmd, done := c.cmd, c.done
	if cmd == nil {
		c.mu.Unlock()
		return
	}
	c.intentional = true
	c.kills++
	_ = cmd.Process.Signal(syscall.SIGKILL)
	c.mu.Unlock()
	<-done
}

// Stop sends SIGTERM and waits (SIGKILL after a minute); it reports
// whether the process stopped cleanly (exit 0).
func (c *child) Stop() error {
	c.mu.Lock()
	c.want = false
	cmd, done := c.cmd, c.done
	if cmd == nil {
		c.mu.Unlock()
		return nil
	}
	c.intentional = true
	_ = cmd.Process.Signal(syscall.SIGTERM)
	c.mu.Unlock()
	select {
	case <-done:
	case <-time.After(time.Minute):
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-done
		return fmt.Errorf("%s did not stop within a minute of SIGTERM", c.name)
	}
	if !cmd.ProcessState.Success() {
		return fmt.Errorf("%s stopped with %s", c.name, cmd.ProcessState)
	}
	return nil
}

// Running reports whether a process is running now (and not frozen).
func (c *child) Running() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cmd != nil && !c.frozen
}

// Freeze stops the process with SIGSTOP for d, then continues it: it
// outlives its session and wakes up as an owner that lost its partitions.
func (c *child) Freeze(d time.Duration) bool {
	c.mu.Lock()
	cmd := c.cmd
	if cmd == nil || c.frozen {
		c.mu.Unlock()
		return false
	}
	c.frozen = true
	_ = cmd.Process.Signal(syscall.SIGSTOP)
	c.mu.Unlock()
	time.Sleep(d)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.frozen = false
	_ = cmd.Process.Signal(syscall.SIGCONT)
	return true
}

func (c *child) counts() (starts, kills, exits int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.starts, c.kills, c.exits
}

// close releases the log file once the process is down.
func (c *child) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.logFile != nil && c.cmd == nil {
		c.logFile.Close()
		c.logFile = nil
	}
}

// grepCount counts the lines of the child's log that contain s.
func (c *child) grepCount(s string) int {
	f, err := os.Open(c.logPath)
	if err != nil {
		return 0
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		// "partitions=[]": a callback that named none of the raw topic's.
		if l := sc.Text(); strings.Contains(l, s) && !strings.Contains(l, "partitions=[]") {
			n++
		}
	}
	return n
}

// ingestChild is an ingest instance with its own spool and admin listener.
type ingestChild struct {
	*child
	URL, Admin string
}

// status asks the admin listener for the spool and the counters.
func (in *ingestChild) status(ctx context.Context) (ingest.Status, error) {
	var st ingest.Status
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+in.Admin+"/status", nil)
	if err != nil {
		return st, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("%s /status: %s", in.name, resp.Status)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// waitUp waits until the webhook port accepts connections.
func (in *ingestChild) waitUp(timeout time.Duration) error {
	addr := strings.TrimSuffix(strings.TrimPrefix(in.URL, "http://"), ingest.WebhookPath)
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not listening on %s after %s: %v", in.name, addr, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
