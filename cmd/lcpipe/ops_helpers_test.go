package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lcpipe/lcpipe/internal/chconn"
	"github.com/lcpipe/lcpipe/internal/kafka"
	"github.com/lcpipe/lcpipe/internal/livechat"
	"github.com/lcpipe/lcpipe/internal/simulate"
	"github.com/lcpipe/lcpipe/internal/testenv"
	"github.com/lcpipe/lcpipe/internal/wire"
	"github.com/lcpipe/lcpipe/processor"
	"github.com/lcpipe/lcpipe/schema"
)

// The operator tests run the lcpipe binary itself (this test binary
// re-executed with mainChildEnv set: main's run with the given arguments),
// so a command can be killed with SIGKILL and its exit status checked.
const mainChildEnv = "LCPIPE_MAIN_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(mainChildEnv) == "1" {
		if a := os.Getenv(oldDecoderEnv); a != "" {
			processorConfigHook = func(c *processor.Config) { c.Decode = oldDecoder(a) }
		}
		var args []string
		if err := json.Unmarshal([]byte(os.Getenv(mainChildEnv+"_ARGS")), &args); err != nil {
			fmt.Fprintln(os.Stderr, "bad child args:", err)
			os.Exit(3)
		}
		os.Exit(run(args, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// oldDecoderEnv plays a processor build whose decoder cannot read one
// action (a decoder bug): the real decoder is the "fixed" one.
const oldDecoderEnv = "LCPIPE_TEST_OLD_DECODER"

func oldDecoder(action string) func([]byte) (*livechat.Webhook, error) {
	return func(b []byte) (*livechat.Webhook, error) {
		w, err := livechat.Decode(b)
		if err == nil && w.Action == action {
			return nil, &livechat.DecodeError{Stage: "payload", Action: action, Err: errors.New("old decoder cannot read " + action)}
		}
		return w, err
	}
}

// opsEnv is one operator test's topics, group and migrated database, and
// the environment the commands read.
type opsEnv struct {
	kcfg  kafka.Config
	chcfg chconn.Config
	conn  driver.Conn
	group string
	env   map[string]string
}

func newOpsEnv(t *testing.T) *opsEnv {
	t.Helper()
	e := &opsEnv{kcfg: testenv.KafkaConfig(t), chcfg: testenv.ClickHouseConfig(t), group: testenv.Name(t, "group")}
	e.conn = testenv.ClickHouse(t, e.chcfg)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := schema.Migrate(ctx, e.conn, schema.Options{Database: e.chcfg.Database}, nil); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	e.env = map[string]string{
		"KAFKA_BROKERS":          strings.Join(e.kcfg.Brokers, ","),
		"KAFKA_RAW_TOPIC":        e.kcfg.RawTopic,
		"KAFKA_DLQ_TOPIC":        e.kcfg.DLQTopic,
		"KAFKA_TOPIC_PARTITIONS": "3",
		"KAFKA_GROUP":            e.group,
		"KAFKA_SESSION_TIMEOUT":  "6s",
		"CLICKHOUSE_ADDR":        strings.Join(e.chcfg.Addr, ","),
		"CLICKHOUSE_DATABASE":    e.chcfg.Database,
		"BATCH_LINGER":           "100ms",
		"INSERT_LINGER":          "200ms",
		"SETTLE_INTERVAL":        "0",
		"LOG_LEVEL":              "warn",
		"ADMIN_ADDR":             "", // off: tests run several processors side by side
	}
	return e
}

// command builds the lcpipe child for args with the test's environment
// plus extra KEY=VALUE pairs.
func (e *opsEnv) command(t testing.TB, extra map[string]string, args ...string) *exec.Cmd {
	t.Helper()
	a, _ := json.Marshal(args)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), mainChildEnv+"=1", mainChildEnv+"_ARGS="+string(a))
	for k, v := range e.env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	for k, v := range extra {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	return cmd
}

// result is a finished command.
type result struct {
	stdout, stderr string
	code           int
}

// run runs lcpipe args to completion (at most 3 minutes).
func (e *opsEnv) run(t testing.TB, extra map[string]string, args ...string) result {
	t.Helper()
	cmd := e.command(t, extra, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(3 * time.Minute):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("lcpipe %v did not finish in 3 minutes\nstdout: %s\nstderr: %s", args, out.String(), errb.String())
	}
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{stdout: out.String(), stderr: errb.String(), code: code}
}

// mustRun runs lcpipe args and fails the test unless it exits 0.
func (e *opsEnv) mustRun(t testing.TB, extra map[string]string, args ...string) result {
	t.Helper()
	r := e.run(t, extra, args...)
	if r.code != 0 {
		t.Fatalf("lcpipe %v exited %d\nstdout: %s\nstderr: %s", args, r.code, r.stdout, r.stderr)
	}
	return r
}

// start starts a long-running lcpipe command (processor, ingest), stopped
// (SIGTERM, then SIGKILL) at the end of the test.
func (e *opsEnv) start(t testing.TB, extra map[string]string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := e.command(t, extra, args...)
	if os.Getenv("OPS_TEST_LOG") != "" {
		cmd.Stderr = os.Stderr
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return cmd
}

// stop sends SIGTERM and waits for a clean exit.
func stop(t testing.TB, cmd *exec.Cmd) {
	t.Helper()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%v: %v", cmd.Args, err)
		}
	case <-time.After(time.Minute):
		_ = cmd.Process.Kill()
		t.Fatal("command did not stop on SIGTERM")
	}
}

// kill9 kills the command with SIGKILL.
func kill9(t testing.TB, cmd *exec.Cmd) {
	t.Helper()
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
}

// simRecords are raw-topic records of simulated traffic (threads
// conversations and their retries) as ingest writes them.
func simRecords(topic string, seed uint64, threads int, from time.Time) ([]*kgo.Record, error) {
	cfg := simulate.DefaultConfig()
	cfg.Seed = seed
	cfg.Orgs = 2
	ds, err := simulate.Generate(cfg, from, time.Hour, threads)
	if err != nil {
		return nil, err
	}
	out := make([]*kgo.Record, 0, len(ds.Deliveries))
	for i, d := range ds.Deliveries {
		out = append(out, &kgo.Record{
			Topic: topic, Key: wire.Key(d.OrgID, d.ChatID), Value: d.Body, Timestamp: d.At,
			Headers: []kgo.RecordHeader{
				{Key: wire.HeaderReceivedAt, Value: []byte(wire.FormatTime(d.At))},
				{Key: wire.HeaderRequestID, Value: []byte(fmt.Sprintf("sim-%d-%d", seed, i))},
				{Key: wire.HeaderAction, Value: []byte(d.Action)},
				{Key: wire.HeaderOrganization, Value: []byte(d.OrgID)},
				{Key: wire.HeaderIngestVersion, Value: []byte("test")},
			},
		})
	}
	return out, nil
}

// produce writes records to Kafka and waits for the acks.
func (e *opsEnv) produce(t testing.TB, recs []*kgo.Record) {
	t.Helper()
	cl := testenv.KafkaClient(t, e.kcfg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

// count runs a count query.
func (e *opsEnv) count(t testing.TB, q string, args ...any) uint64 {
	t.Helper()
	var n uint64
	if err := e.conn.QueryRow(context.Background(), q, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

// freeAddr is a loopback address nobody listens on.
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
