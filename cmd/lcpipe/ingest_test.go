package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lcpipe/lcpipe/ingest"
	"github.com/lcpipe/lcpipe/internal/testenv"
	"github.com/lcpipe/lcpipe/internal/wire"
)

func ingestInvocation(env map[string]string) *invocation {
	inv := newInvocation("ingest", "test", nil, io.Discard, slog.New(slog.DiscardHandler))
	inv.lookup = func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	return inv
}

// TestRunIngest runs the ingest command from its environment on the real
// Kafka: a fixture posted with one of the configured secrets lands in the
// configured topic, and cancelling the context (SIGTERM) stops it cleanly.
func TestRunIngest(t *testing.T) {
	kcfg := testenv.KafkaConfig(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	env := map[string]string{
		"INGEST_ADDR":              addr,
		"ADMIN_ADDR":               freeAddr(t),
		"KAFKA_BROKERS":            strings.Join(kcfg.Brokers, ","),
		"KAFKA_RAW_TOPIC":          kcfg.RawTopic,
		"KAFKA_DLQ_TOPIC":          kcfg.DLQTopic,
		"LIVECHAT_WEBHOOK_SECRETS": "other-secret, test-secret",
		"SPOOL_DIR":                t.TempDir(),
		"INGEST_KAFKA_TIMEOUT":     "1500ms",
		"INGEST_MAX_BODY":          "1MiB",
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runIngest(ctx, ingestInvocation(env)) }()

	body, err := os.ReadFile(filepath.Join("..", "..", "ingest", "testdata", "livechat", "thread_tagged.json"))
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 20*time.Second, func() error {
		resp, err := http.Post("http://"+addr+ingest.WebhookPath, "application/json", bytes.NewReader(body))
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		return nil
	})
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("runIngest: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("runIngest did not stop after cancel")
	}

	cl := testenv.KafkaClient(t, kcfg, kgo.ConsumeTopics(kcfg.RawTopic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	pctx, pcancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer pcancel()
	fs := cl.PollFetches(pctx)
	recs := fs.Records()
	if len(recs) != 1 || wire.Header(recs[0], wire.HeaderIngestVersion) != version || bytes.Contains(recs[0].Value, []byte("test-secret")) {
		t.Fatalf("raw topic: %d records, errors %v", len(recs), fs.Errors())
	}
}

func TestRunIngestConfigErrors(t *testing.T) {
	cases := map[string]string{
		"INGEST_KAFKA_TIMEOUT": "soon",
		"INGEST_MAX_BODY":      "big",
		"SPOOL_MAX_BYTES":      "-1",
	}
	for name, val := range cases {
		t.Run(name, func(t *testing.T) {
			err := runIngest(context.Background(), ingestInvocation(map[string]string{name: val, "SPOOL_DIR": t.TempDir()}))
			if err == nil || !strings.Contains(err.Error(), name) {
				t.Fatalf("err = %v, want it to name %s", err, name)
			}
		})
	}
	// Kafka timeout too close to LiveChat's 10 s is refused by Validate.
	err := runIngest(context.Background(), ingestInvocation(map[string]string{"INGEST_KAFKA_TIMEOUT": "12s", "SPOOL_DIR": t.TempDir()}))
	if err == nil || !strings.Contains(err.Error(), "well below") {
		t.Fatalf("err = %v", err)
	}
}
