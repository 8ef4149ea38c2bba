// Package testenv gives integration tests the real services the project
// starts (make services-up): Kafka, ClickHouse and the chdb helper for the
// current ClickHouse engine. A test that needs one and cannot reach it fails
// with a message saying how to start it; it never skips, so CI (CI=true)
// cannot pass without running it.
//
// Tests share the services, so every helper hands out unique names: topics,
// consumer groups and databases carry the test name and a random suffix.
package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"

	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lcpipe/lcpipe/internal/chconn"
	"github.com/lcpipe/lcpipe/internal/kafka"
	"github.com/lcpipe/lcpipe/internal/secret"
)

// RepoRoot is the folder holding go.mod.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatalf("testenv: getwd: %v", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatalf("testenv: no go.mod above the test directory")
		}
		dir = parent
	}
}

func env(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// Suffix returns a random hex string for unique names.
func Suffix() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

var nonIdent = regexp.MustCompile(`[^a-zA-Z0-9_]+`)

// Name makes a unique identifier for the test: prefix_testname_suffix.
func Name(t testing.TB, prefix string) string {
	n := strings.ToLower(nonIdent.ReplaceAllString(t.Name(), "_"))
	if len(n) > 40 {
		n = n[:40]
	}
	return prefix + "_" + strings.Trim(n, "_") + "_" + Suffix()
}

func reachable(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return err
	}
	return c.Close()
}

// KafkaBrokers returns the brokers of the shared test Kafka (KAFKA_BROKERS,
// default 127.0.0.1:9092) and fails the test when none answers.
func KafkaBrokers(t testing.TB) []string {
	t.Helper()
	brokers := strings.Split(env("KAFKA_BROKERS", "127.0.0.1:9092"), ",")
	if err := reachable(brokers[0]); err != nil {
		t.Fatalf("testenv: Kafka is not reachable at %s (%v): run `make services-up` (CI=%q)", brokers[0], err, os.Getenv("CI"))
	}
	return brokers
}

// KafkaConfig returns a kafka.Config on the shared broker with unique raw and
// dead-letter topics for this test, created with 3 partitions.
func KafkaConfig(t testing.TB) kafka.Config {
	t.Helper()
	cfg := kafka.DefaultConfig()
	cfg.Brokers = KafkaBrokers(t)
	cfg.RawTopic = Name(t, "raw")
	cfg.DLQTopic = Name(t, "dlq")
	cfg.Partitions = 3
	cfg.ClientID = "lcpipe-test"
	cl := KafkaClient(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := kafka.EnsureTopics(ctx, cl, cfg, nil, cfg.RawTopic, cfg.DLQTopic); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return cfg
}

// KafkaClient builds a client closed at the end of the test.
func KafkaClient(t testing.TB, cfg kafka.Config, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kafka.NewClient(cfg, opts...)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// ClickHouseConfig returns a chconn.Config on the shared test server
// (CLICKHOUSE_ADDR, default 127.0.0.1:9000) with a unique database that is
// dropped at the end of the test (kept when KEEP_TEST_DB=1).
func ClickHouseConfig(t testing.TB) chconn.Config {
	t.Helper()
	cfg := chconn.DefaultConfig()
	cfg.Addr = strings.Split(env("CLICKHOUSE_ADDR", "127.0.0.1:9000"), ",")
	cfg.User = env("CLICKHOUSE_USER", "default")
	cfg.Password = secret.Secret(os.Getenv("CLICKHOUSE_PASSWORD"))
	cfg.Database = Name(t, "test")
	if err := reachable(cfg.Addr[0]); err != nil {
		t.Fatalf("testenv: ClickHouse is not reachable at %s (%v): run `make services-up` (CI=%q)", cfg.Addr[0], err, os.Getenv("CI"))
	}
	t.Cleanup(func() {
		if os.Getenv("KEEP_TEST_DB") == "1" {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := chconn.Open(ctx, cfg)
		if err != nil {
			return
		}
		defer conn.Close()
		_ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+cfg.Database)
	})
	return cfg
}

// ClickHouse opens a connection for cfg, closed at the end of the test.
func ClickHouse(t testing.TB, cfg chconn.Config) driver.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := chconn.Open(ctx, cfg)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// ChdbResult is one statement's outcome from the chdb helper.
type ChdbResult struct {
	OK     bool   `json:"ok"`
	Output string `json:"output"`
	Error  string `json:"error"`
}

// ChdbStatement is one statement for RunChdb; Format defaults to CSV.
type ChdbStatement struct {
	SQL    string `json:"sql"`
	Format string `json:"format,omitempty"`
}

// ChdbPython is the interpreter with chdb installed: CHDB_PYTHON, or the
// virtualenv that `make chdb` creates under .cache/chdb-venv.
func ChdbPython(t testing.TB) string {
	t.Helper()
	p := os.Getenv("CHDB_PYTHON")
	if p == "" {
		p = filepath.Join(RepoRoot(t), ".cache", "chdb-venv", "bin", "python")
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("testenv: no Python with chdb at %s: run `make chdb` (make test does)", p)
	}
	return p
}

// RunChdb runs statements in one fresh chdb session (current ClickHouse
// engine) and returns one result per statement run; with stopOnError it
// stops after the first failure.
func RunChdb(t testing.TB, stopOnError bool, stmts ...ChdbStatement) []ChdbResult {
	t.Helper()
	req, _ := json.Marshal(map[string]any{"dir": t.TempDir(), "stop_on_error": stopOnError, "statements": stmts})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, ChdbPython(t), filepath.Join(RepoRoot(t), "scripts", "chdb_exec.py"))
	cmd.Stdin = bytes.NewReader(req)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("testenv: chdb helper: %v\n%s", err, stderr.String())
	}
	var out []ChdbResult
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		t.Fatalf("testenv: chdb helper output: %v\n%s", err, stdout.String())
	}
	return out
}

// Eventually polls cond every 100 ms until it returns nil or the timeout
// passes, then fails the test with cond's last error.
func Eventually(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("testenv: condition not met after %s: %v", timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// BreakTable makes every write into db.table fail at run time, as a
// materialized view's target that fails mid-INSERT (too many parts, a full
// disk, a killed server): the table is moved aside and an impostor with an
// incompatible column takes its name, so ClickHouse writes events and the
// other views and then fails pushing into this one. (Detaching the table
// is no use: the INSERT then fails before writing anything.) The returned
// function puts the real table back.
func BreakTable(t testing.TB, conn driver.Conn, db, table string) (restore func()) {
	t.Helper()
	ctx := context.Background()
	away := table + "_broken_away"
	for _, q := range []string{
		"RENAME TABLE " + db + "." + table + " TO " + db + "." + away,
		"CREATE TABLE " + db + "." + table + " (organization_id UInt8) ENGINE = Memory",
	} {
		if err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("testenv: break %s.%s: %s: %v", db, table, q, err)
		}
	}
	return func() {
		t.Helper()
		for _, q := range []string{
			"DROP TABLE " + db + "." + table,
			"RENAME TABLE " + db + "." + away + " TO " + db + "." + table,
		} {
			if err := conn.Exec(ctx, q); err != nil {
				t.Fatalf("testenv: restore %s.%s: %s: %v", db, table, q, err)
			}
		}
	}
}
