package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lcpipe/lcpipe/ingest"
	"github.com/lcpipe/lcpipe/internal/chconn"
	"github.com/lcpipe/lcpipe/internal/testenv"
	"github.com/lcpipe/lcpipe/internal/tlsconf"
)

// syncBuffer is a log destination the test reads while a command writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestSecureServices runs migrate, ingest and processor from their
// environment against a broker reachable only over TLS + SCRAM-SHA-512
// (its SASL_SSL listener) and a ClickHouse over its TLS native port, both
// with certificates the test makes: a webhook posted to ingest reaches
// `events`. Then each wrong setting (password, CA) makes the command fail,
// or for ingest log, an error naming the variable to fix.
func TestSecureServices(t *testing.T) {
	ca := testenv.NewCA(t, "lcpipe test CA")
	other := testenv.NewCA(t, "some other CA")
	server := ca.Server("services", "localhost", "127.0.0.1")
	const user, password = "lcpipe", "scram-password"
	broker := testenv.PrivateSecureKafka(t, testenv.SecureKafka{Server: server, Users: map[string]string{user: password}})
	ch := testenv.PrivateSecureClickHouse(t, server)
	db := testenv.Name(t, "test")

	env := map[string]string{
		"KAFKA_BROKERS":            broker.SecureAddr,
		"KAFKA_TLS":                "true",
		"KAFKA_TLS_CA_FILE":        ca.File,
		"KAFKA_SASL_MECHANISM":     "SCRAM-SHA-512",
		"KAFKA_SASL_USERNAME":      user,
		"KAFKA_SASL_PASSWORD":      password,
		"KAFKA_RAW_TOPIC":          testenv.Name(t, "raw"),
		"KAFKA_DLQ_TOPIC":          testenv.Name(t, "dlq"),
		"KAFKA_TOPIC_PARTITIONS":   "2",
		"KAFKA_GROUP":              testenv.Name(t, "group"),
		"CLICKHOUSE_ADDR":          ch.SecureAddr,
		"CLICKHOUSE_TLS":           "true",
		"CLICKHOUSE_TLS_CA_FILE":   ca.File,
		"CLICKHOUSE_DATABASE":      db,
		"BATCH_LINGER":             "100ms",
		"INSERT_LINGER":            "200ms",
		"SETTLE_INTERVAL":          "0",
		"INGEST_ADDR":              freeAddr(t),
		"ADMIN_ADDR":               freeAddr(t),
		"SPOOL_DIR":                t.TempDir(),
		"LIVECHAT_WEBHOOK_SECRETS": "test-secret",
	}
	with := func(changes map[string]string) map[string]string {
		e := maps.Clone(env)
		maps.Copy(e, changes)
		return e
	}
	newInv := func(name string, env map[string]string, log io.Writer) *invocation {
		inv := newInvocation(name, "test", nil, io.Discard, slog.New(slog.NewTextHandler(log, nil)))
		inv.lookup = func(k string) (string, bool) { v, ok := env[k]; return v, ok }
		return inv
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	if err := runMigrate(ctx, newInv("migrate", env, io.Discard)); err != nil {
		t.Fatalf("migrate over TLS: %v", err)
	}

	var procLog, ingestLog syncBuffer
	procDone, ingestDone := make(chan error, 1), make(chan error, 1)
	procEnv := maps.Clone(env)
	procEnv["ADMIN_ADDR"] = freeAddr(t) // each process has its admin listener
	go func() { procDone <- runProcessor(ctx, newInv("processor", procEnv, &procLog)) }()
	go func() { ingestDone <- runIngest(ctx, newInv("ingest", env, &ingestLog)) }()

	body, err := os.ReadFile(filepath.Join("..", "..", "ingest", "testdata", "livechat", "incoming_chat.json"))
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, func() error {
		resp, err := http.Post("http://"+env["INGEST_ADDR"]+ingest.WebhookPath, "application/json", bytes.NewReader(body))
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("webhook answered %d", resp.StatusCode)
		}
		return nil
	})

	// The row can only come through Kafka: the processor reads nothing else.
	chcfg := chconn.DefaultConfig()
	chcfg.Addr = []string{ch.SecureAddr}
	chcfg.TLS = tlsconf.Config{Enabled: true, CAFile: ca.File}
	conn, err := chconn.Open(ctx, chcfg)
	if err != nil {
		t.Fatalf("open ClickHouse over TLS: %v", err)
	}
	defer conn.Close()
	testenv.Eventually(t, 60*time.Second, func() error {
		for name, done := range map[string]chan error{"processor": procDone, "ingest": ingestDone} {
			select {
			case err := <-done:
				t.Fatalf("%s stopped early: %v\nprocessor log:\n%s\ningest log:\n%s", name, err, procLog.String(), ingestLog.String())
			default:
			}
		}
		var n uint64
		if err := conn.QueryRow(ctx, fmt.Sprintf("SELECT count() FROM %s.events", db)).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("no event yet")
		}
		return nil
	})
	cancel()
	for name, done := range map[string]chan error{"processor": procDone, "ingest": ingestDone} {
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s: %v", name, err)
			}
		case <-time.After(60 * time.Second):
			t.Fatalf("%s did not stop", name)
		}
	}

	t.Run("wrong settings", func(t *testing.T) {
		tests := []struct {
			name    string
			command string
			env     map[string]string
			says    string
		}{
			{"kafka password", "processor", map[string]string{"KAFKA_SASL_PASSWORD": "wrong"}, "KAFKA_SASL_PASSWORD rejected by the broker"},
			{"kafka CA", "processor", map[string]string{"KAFKA_TLS_CA_FILE": other.File}, "KAFKA_TLS_CA_FILE does not trust the broker's certificate"},
			{"kafka CA", "ingest", map[string]string{"KAFKA_TLS_CA_FILE": other.File}, "KAFKA_TLS_CA_FILE does not trust the broker's certificate"},
			{"kafka password", "ingest", map[string]string{"KAFKA_SASL_PASSWORD": "wrong"}, "KAFKA_SASL_PASSWORD rejected by the broker"},
			{"clickhouse CA", "migrate", map[string]string{"CLICKHOUSE_TLS_CA_FILE": other.File}, "CLICKHOUSE_TLS_CA_FILE does not trust the server's certificate"},
			{"clickhouse plaintext port", "migrate", map[string]string{"CLICKHOUSE_ADDR": ch.Addr}, "CLICKHOUSE_TLS is on but the server"},
			{"clickhouse server name", "migrate", map[string]string{"CLICKHOUSE_TLS_SERVER_NAME": "clickhouse.example.com"}, "CLICKHOUSE_TLS_SERVER_NAME"},
		}
		for _, tt := range tests {
			t.Run(tt.command+" "+tt.name, func(t *testing.T) {
				var log syncBuffer
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				e := with(tt.env)
				if tt.command == "ingest" { // a listener and spool of its own
					e["INGEST_ADDR"], e["ADMIN_ADDR"], e["SPOOL_DIR"] = freeAddr(t), freeAddr(t), t.TempDir()
				}
				inv := newInv(tt.command, e, &log)
				if tt.command == "ingest" {
					// Ingest keeps answering (webhooks go to the spool) and
					// logs why Kafka refuses it.
					done := make(chan error, 1)
					go func() { done <- runIngest(ctx, inv) }()
					testenv.Eventually(t, 30*time.Second, func() error {
						if !strings.Contains(log.String(), tt.says) {
							return fmt.Errorf("log does not say %q yet:\n%s", tt.says, log.String())
						}
						return nil
					})
					cancel()
					<-done
					return
				}
				run := map[string]func(context.Context, *invocation) error{"processor": runProcessor, "migrate": runMigrate}[tt.command]
				done := make(chan error, 1)
				go func() { done <- run(ctx, inv) }()
				select {
				case err := <-done:
					if err == nil || !strings.Contains(err.Error(), tt.says) {
						t.Fatalf("%s: error %v, want it to say %q", tt.command, err, tt.says)
					}
					t.Logf("%s: %v", tt.command, err)
				case <-time.After(60 * time.Second):
					t.Fatalf("%s did not fail within a minute\nlog:\n%s", tt.command, log.String())
				}
			})
		}
	})
}
