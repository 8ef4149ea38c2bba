package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/lcpipe/lcpipe/ingest"
	"github.com/lcpipe/lcpipe/internal/chconn"
	"github.com/lcpipe/lcpipe/internal/kafka"
	"github.com/lcpipe/lcpipe/internal/telemetry"
	"github.com/lcpipe/lcpipe/internal/testenv"
	"github.com/lcpipe/lcpipe/internal/wire"
)

// pipeline is ingest and processor, run in-process as their commands from
// their environment, on the real Kafka and ClickHouse.
type pipeline struct {
	kcfg                    kafka.Config
	chcfg                   chconn.Config
	conn                    driver.Conn
	ingestAddr, ingestAdmin string
	procAdmin               string
	stopIngest, stopProc    func()
	procEnv                 map[string]string
	procOpts                telemetry.Options
}

// startPipeline starts ingest, then the processor, and waits until both
// admin listeners say ready. extra variables override the defaults of
// both.
func startPipeline(t *testing.T, opts telemetry.Options, extra map[string]string) *pipeline {
	t.Helper()
	p := &pipeline{kcfg: testenv.KafkaConfig(t), chcfg: testenv.ClickHouseConfig(t)}
	p.conn = testenv.ClickHouse(t, p.chcfg)
	p.ingestAddr, p.ingestAdmin, p.procAdmin = freeAddr(t), freeAddr(t), freeAddr(t)
	common := map[string]string{
		"KAFKA_BROKERS":          strings.Join(p.kcfg.Brokers, ","),
		"KAFKA_RAW_TOPIC":        p.kcfg.RawTopic,
		"KAFKA_DLQ_TOPIC":        p.kcfg.DLQTopic,
		"KAFKA_TOPIC_PARTITIONS": strconv.Itoa(int(p.kcfg.Partitions)),
	}
	ing := map[string]string{
		"INGEST_ADDR":              p.ingestAddr,
		"ADMIN_ADDR":               p.ingestAdmin,
		"LIVECHAT_WEBHOOK_SECRETS": "test-secret",
		"SPOOL_DIR":                t.TempDir(),
	}
	p.procEnv = map[string]string{
		"ADMIN_ADDR":          p.procAdmin,
		"KAFKA_GROUP":         testenv.Name(t, "group"),
		"CLICKHOUSE_ADDR":     strings.Join(p.chcfg.Addr, ","),
		"CLICKHOUSE_DATABASE": p.chcfg.Database,
		"BATCH_LINGER":        "100ms",
		"INSERT_LINGER":       "200ms",
		"SETTLE_INTERVAL":     "0",
		"LAG_INTERVAL":        "300ms",
	}
	for _, m := range []map[string]string{ing, p.procEnv} {
		for k, v := range common {
			m[k] = v
		}
		for k, v := range extra {
			m[k] = v
		}
	}
	p.stopIngest = runCommand(t, "ingest", runIngest, ing, opts)
	waitReady(t, p.ingestAdmin)
	p.procOpts = opts
	p.startProcessor(t)
	return p
}

// startProcessor (re)starts the processor command.
func (p *pipeline) startProcessor(t *testing.T) {
	t.Helper()
	p.stopProc = runCommand(t, "processor", runProcessor, p.procEnv, p.procOpts)
	waitReady(t, p.procAdmin)
}

// runCommand runs a command in the background; the returned function
// stops it (SIGTERM) and fails the test on an error. It also runs at the
// end of the test.
func runCommand(t *testing.T, name string, run func(context.Context, *invocation) error, env map[string]string, opts telemetry.Options) func() {
	t.Helper()
	inv := newInvocation(name, "test", nil, io.Discard, slog.New(telemetry.LogHandler(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))))
	inv.lookup = func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	inv.telOpts = opts
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, inv) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("%s: %v", name, err)
			}
		case <-time.After(60 * time.Second):
			t.Errorf("%s did not stop", name)
		}
	}
	t.Cleanup(stop)
	return stop
}

// testWriter sends log lines to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func waitReady(t *testing.T, admin string) {
	t.Helper()
	testenv.Eventually(t, 90*time.Second, func() error {
		code, body, err := adminGet(admin, "/readyz")
		if err != nil {
			return err
		}
		if code != 200 {
			return fmt.Errorf("%s/readyz: %d %s", admin, code, body)
		}
		return nil
	})
}

// post sends a fixture (with the test secret) to ingest and returns the
// request id.
func (p *pipeline) post(t *testing.T, fixture string) string {
	t.Helper()
	body, err := os.ReadFile(filepath.Join("..", "..", "ingest", "testdata", "livechat", fixture))
	if err != nil {
		t.Fatal(err)
	}
	return p.postBody(t, body, 200)
}

func (p *pipeline) postBody(t *testing.T, body []byte, want int) string {
	t.Helper()
	resp, err := http.Post("http://"+p.ingestAddr+ingest.WebhookPath, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("POST: %d %s, want %d", resp.StatusCode, b, want)
	}
	var ok struct {
		RequestID string `json:"request_id"`
	}
	_ = json.Unmarshal(b, &ok)
	return ok.RequestID
}

// stored waits until events holds a row of each request id.
func (p *pipeline) stored(t *testing.T, rids ...string) {
	t.Helper()
	testenv.Eventually(t, 60*time.Second, func() error {
		var n uint64
		if err := p.conn.QueryRow(context.Background(), "SELECT uniqExact(request_id) FROM "+p.chcfg.Database+".events WHERE has(?, request_id)", rids).Scan(&n); err != nil {
			return err
		}
		if int(n) != len(rids) {
			return fmt.Errorf("%d of %d webhooks stored", n, len(rids))
		}
		return nil
	})
}

// record reads the raw-topic record of a request id.
func (p *pipeline) record(t *testing.T, rid string) *kgo.Record {
	t.Helper()
	cl := testenv.KafkaClient(t, p.kcfg, kgo.ConsumeTopics(p.kcfg.RawTopic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		for _, r := range cl.PollFetches(ctx).Records() {
			if wire.Header(r, wire.HeaderRequestID) == rid {
				return r
			}
		}
	}
	t.Fatalf("no record with request id %s in %s", rid, p.kcfg.RawTopic)
	return nil
}

// TestTraceThroughPipeline posts one webhook through ingest and the
// processor with an in-memory span exporter: the HTTP server span
// (otelfiber), the produce span (kotel) and the processor's process span
// (kotel's, its parent the produce span) share the webhook's trace id,
// which the Kafka record carries in its traceparent header; the INSERT
// span is a trace of its own that links to the record's process span and
// names the ClickHouse query and insert id.
func TestTraceThroughPipeline(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	p := startPipeline(t, telemetry.Options{SpanExporter: exp}, nil)
	rid := p.post(t, "incoming_event.json")
	p.stored(t, rid)

	var server, publish, process, insert tracetest.SpanStub
	testenv.Eventually(t, 30*time.Second, func() error {
		server = tracetest.SpanStub{}
		for _, s := range exp.GetSpans() {
			for _, a := range s.Attributes {
				if a.Key == "request.id" && a.Value.AsString() == rid && s.SpanKind == trace.SpanKindServer {
					server = s
				}
			}
		}
		if !server.SpanContext.IsValid() {
			return errors.New("no server span with the request id yet")
		}
		tid := server.SpanContext.TraceID()
		publish, process, insert = tracetest.SpanStub{}, tracetest.SpanStub{}, tracetest.SpanStub{}
		for _, s := range exp.GetSpans() {
			switch {
			case s.Name == p.kcfg.RawTopic+" publish" && s.SpanContext.TraceID() == tid:
				publish = s
			case s.Name == p.kcfg.RawTopic+" process" && s.SpanContext.TraceID() == tid:
				process = s
			}
		}
		for _, s := range exp.GetSpans() {
			if s.Name != "lcpipe.processor.insert" {
				continue
			}
			for _, l := range s.Links {
				if process.SpanContext.IsValid() && l.SpanContext.SpanID() == process.SpanContext.SpanID() {
					insert = s
				}
			}
		}
		switch {
		case !publish.SpanContext.IsValid():
			return errors.New("no publish span in the webhook's trace")
		case !process.SpanContext.IsValid():
			return errors.New("no processor span in the webhook's trace")
		case !insert.SpanContext.IsValid():
			return errors.New("no INSERT span linking to the record's process span")
		}
		return nil
	})
	tid := server.SpanContext.TraceID()
	t.Logf("trace %s: server %s → publish %s → process %s; INSERT %s (trace %s)", tid,
		server.SpanContext.SpanID(), publish.SpanContext.SpanID(), process.SpanContext.SpanID(),
		insert.SpanContext.SpanID(), insert.SpanContext.TraceID())

	if publish.Parent.SpanID() != server.SpanContext.SpanID() || publish.SpanKind != trace.SpanKindProducer {
		t.Errorf("publish span: parent %s (want the server span %s), kind %v", publish.Parent.SpanID(), server.SpanContext.SpanID(), publish.SpanKind)
	}
	if process.Parent.SpanID() != publish.SpanContext.SpanID() || process.SpanKind != trace.SpanKindConsumer {
		t.Errorf("process span: parent %s (want the publish span %s), kind %v", process.Parent.SpanID(), publish.SpanContext.SpanID(), process.SpanKind)
	}
	// The record carries the trace (the publish span's context).
	rec := p.record(t, rid)
	if tp := wire.Header(rec, wire.HeaderTraceparent); !strings.Contains(tp, tid.String()) || !strings.Contains(tp, publish.SpanContext.SpanID().String()) {
		t.Errorf("record traceparent %q does not carry trace %s / publish span %s", tp, tid, publish.SpanContext.SpanID())
	}
	// The INSERT: a root of its own (links, not parents), with the query id.
	if insert.SpanContext.TraceID() == tid || insert.Parent.IsValid() {
		t.Errorf("INSERT span is in the webhook's trace (parent %v): it must be its own root with links", insert.Parent)
	}
	attrs := map[string]string{}
	for _, a := range insert.Attributes {
		attrs[string(a.Key)] = a.Value.Emit()
	}
	if qid := attrs["db.clickhouse.query_id"]; !strings.HasPrefix(qid, "lcpipe:"+p.chcfg.Database+":"+p.kcfg.RawTopic+":") {
		t.Errorf("INSERT span's query id %q", qid)
	}
	// ... and it is the INSERT that stored the webhook's row.
	var insertID uint64
	if err := p.conn.QueryRow(context.Background(), "SELECT any(insert_id) FROM "+p.chcfg.Database+".events WHERE request_id = ?", rid).Scan(&insertID); err != nil {
		t.Fatal(err)
	}
	if got := attrs["lcpipe.insert_id"]; got != strconv.FormatUint(insertID, 16) || !strings.HasSuffix(attrs["db.clickhouse.query_id"], ":"+got) {
		t.Errorf("INSERT span's insert id %s (query id %s), the row's %x", got, attrs["db.clickhouse.query_id"], insertID)
	}
	var eventIDs string
	for _, a := range process.Attributes {
		if a.Key == "lcpipe.event_ids" {
			eventIDs = a.Value.Emit()
		}
	}
	if eventIDs == "" {
		t.Errorf("process span without lcpipe.event_ids")
	}
}
