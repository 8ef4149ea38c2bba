package testenv

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Instance is a private Kafka or ClickHouse started for one test by
// scripts/services.sh, so the test can stop or kill it without disturbing
// the shared services other tests use.
type Instance struct {
	t       testing.TB
	service string // "kafka" or "clickhouse"
	env     []string
	runDir  string
	// Addr is host:port of the broker or the native ClickHouse port.
	Addr string
	// SecureAddr is host:port of the SASL_SSL listener or the native port
	// over TLS (PrivateSecureKafka, PrivateSecureClickHouse only).
	SecureAddr string
}

func freePort(t testing.TB, n int) int {
	t.Helper()
	// Find n consecutive free ports (Kafka needs broker + controller).
	for try := 0; try < 50; try++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("testenv: listen: %v", err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		ok := true
		for i := 1; i < n; i++ {
			l2, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p+i))
			if err != nil {
				ok = false
				break
			}
			l2.Close()
		}
		if ok {
			return p
		}
	}
	t.Fatalf("testenv: no free port range")
	return 0
}

// PrivateKafka starts a broker of its own for this test; it is stopped at
// the end of the test.
func PrivateKafka(t testing.TB) *Instance {
	t.Helper()
	port := freePort(t, 2)
	in := &Instance{t: t, service: "kafka", runDir: t.TempDir(), Addr: "127.0.0.1:" + strconv.Itoa(port)}
	in.env = []string{"RUN_DIR=" + in.runDir, "KAFKA_PORT=" + strconv.Itoa(port), "KAFKA_BROKERS=", "KAFKA_HEAP=-Xms128m -Xmx512m"}
	in.Start()
	t.Cleanup(in.Stop)
	return in
}

// PrivateClickHouse starts a ClickHouse server of its own for this test; it
// is stopped at the end of the test.
func PrivateClickHouse(t testing.TB) *Instance {
	t.Helper()
	port := freePort(t, 1)
	http := freePort(t, 1)
	in := &Instance{t: t, service: "clickhouse", runDir: t.TempDir(), Addr: "127.0.0.1:" + strconv.Itoa(port)}
	in.env = []string{"RUN_DIR=" + in.runDir, "CH_TCP_PORT=" + strconv.Itoa(port), "CH_HTTP_PORT=" + strconv.Itoa(http), "CLICKHOUSE_ADDR="}
	in.Start()
	t.Cleanup(in.Stop)
	return in
}

func (in *Instance) run(verb string) {
	in.t.Helper()
	cmd := exec.Command("bash", filepath.Join(RepoRoot(in.t), "scripts", "services.sh"), verb, in.service)
	cmd.Env = append(os.Environ(), in.env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		in.t.Fatalf("testenv: services.sh %s %s: %v\n%s", verb, in.service, err, out)
	}
}

// Start starts the instance (again) and waits until it answers.
func (in *Instance) Start() { in.t.Helper(); in.run("up") }

// Stop stops the instance gracefully (SIGTERM, then SIGKILL after 30 s).
func (in *Instance) Stop() { in.t.Helper(); in.run("down") }

// Kill sends SIGKILL to the instance, as a crash would.
func (in *Instance) Kill() {
	in.t.Helper()
	b, err := os.ReadFile(filepath.Join(in.runDir, in.service+".pid"))
	if err != nil {
		in.t.Fatalf("testenv: read pid of %s: %v", in.service, err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if pid <= 0 {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	// services.sh checks liveness with kill -0, which a killed but unreaped
	// process still passes: without its PID file a Start starts it again.
	defer os.Remove(filepath.Join(in.runDir, in.service+".pid"))
	// The process is not our child (services.sh detached it): wait until it
	// is gone or a zombie, so its ports are free for a restart.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return
		}
		if f := strings.Fields(string(stat)); len(f) > 2 && f[2] == "Z" {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}
