package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// processesUnder lists processes whose command line mentions dir.
func processesUnder(t *testing.T, dir string) []string {
	t.Helper()
	out, _ := exec.Command("pgrep", "-af", dir).Output()
	var ps []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l != "" && !strings.Contains(l, "pgrep") {
			ps = append(ps, l)
		}
	}
	return ps
}

// TestServicesScript runs scripts/services.sh the way `make services-up` /
// `make services-down` do, on a private folder and ports: up starts both
// services, up again is a no-op, a stale PID file is handled, and down
// leaves no process behind.
func TestServicesScript(t *testing.T) {
	k := PrivateKafka(t)
	c := PrivateClickHouse(t)
	if err := reachable(k.Addr); err != nil {
		t.Fatalf("kafka: %v", err)
	}
	if err := reachable(c.Addr); err != nil {
		t.Fatalf("clickhouse: %v", err)
	}
	pidBefore, _ := os.ReadFile(filepath.Join(k.runDir, "kafka.pid"))
	k.Start() // again: no-op
	pidAfter, _ := os.ReadFile(filepath.Join(k.runDir, "kafka.pid"))
	if string(pidBefore) != string(pidAfter) {
		t.Fatalf("second up restarted Kafka: pid %s -> %s", pidBefore, pidAfter)
	}

	// A crash leaves a stale PID file: up must notice and start again.
	c.Kill()
	if err := os.WriteFile(filepath.Join(c.runDir, "clickhouse.pid"), []byte("999999\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c.Start()
	if err := reachable(c.Addr); err != nil {
		t.Fatalf("clickhouse after stale pid: %v", err)
	}

	k.Stop()
	c.Stop()
	for _, dir := range []string{k.runDir, c.runDir} {
		if ps := processesUnder(t, dir); len(ps) > 0 {
			t.Fatalf("processes left behind after down:\n%s", strings.Join(ps, "\n"))
		}
	}
}
