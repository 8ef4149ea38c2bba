package ingest

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/lcpipe/lcpipe/internal/kafka"
	"github.com/lcpipe/lcpipe/internal/telemetry"
	"github.com/lcpipe/lcpipe/internal/testenv"
	"github.com/lcpipe/lcpipe/internal/wire"
)

func tracing(t *testing.T) (*telemetry.Telemetry, *tracetest.InMemoryExporter) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tel, err := telemetry.New(context.Background(), telemetry.Config{}, telemetry.Options{SpanExporter: exp})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	return tel, exp
}

func spanNamed(spans tracetest.SpanStubs, name string, tid trace.TraceID) (tracetest.SpanStub, bool) {
	for _, s := range spans {
		if s.Name == name && (!tid.IsValid() || s.SpanContext.TraceID() == tid) {
			return s, true
		}
	}
	return tracetest.SpanStub{}, false
}

// TestSpoolTraced: a webhook spooled while Kafka is away keeps its trace
// through the spool. The request's trace holds the server span, the failed
// publish and the spool append; after a restart with Kafka, the drain span
// links to that trace, the record's publish span is a child of it, and the
// record's traceparent carries it to the processor.
func TestSpoolTraced(t *testing.T) {
	kcfg := testenv.KafkaConfig(t)
	away := kafka.DefaultConfig()
	away.Brokers = []string{freeAddr(t)} // nothing listens
	away.RawTopic, away.DLQTopic = kcfg.RawTopic, kcfg.DLQTopic
	cfg := testConfig(t, away)
	cfg.KafkaTimeout = 200 * time.Millisecond
	tel1, exp1 := tracing(t)
	cfg.Telemetry = tel1
	first := startServer(t, cfg)
	r := postWebhook(t, first.url, fixtures(t)["incoming_chat.json"])
	if r.status != 200 {
		t.Fatalf("post with Kafka away: %d %s", r.status, r.body)
	}
	// The spool path in the metrics (while the server holds the record).
	m := metricsText(t, tel1)
	for _, want := range []string{`lcpipe_ingest_ack_duration_seconds_count{path="spool"} 1`, "lcpipe_ingest_spooled_total 1",
		"lcpipe_ingest_spool_records 1", `lcpipe_ingest_produce_errors_total{path="request"} 1`, `lcpipe_ingest_webhooks_total{action="incoming_chat",code="200"} 1`} {
		if !strings.Contains(m, want+"\n") {
			t.Errorf("metrics lack %s", want)
		}
	}
	if err := first.stop(); err != nil {
		t.Fatal(err)
	}
	spans := exp1.GetSpans()
	server, ok := spanNamed(spans, WebhookPath, trace.TraceID{})
	if !ok {
		t.Fatalf("no server span: %v", spans.Snapshots())
	}
	tid := server.SpanContext.TraceID()
	for _, name := range []string{kcfg.RawTopic + " publish", "lcpipe.ingest.spool.append"} {
		if s, ok := spanNamed(spans, name, tid); !ok || s.Parent.SpanID() != server.SpanContext.SpanID() {
			t.Errorf("%s: not a child of the server span (found %v)", name, ok)
		}
	}

	// Restart on the same spool with Kafka: the drain delivers it.
	cfg.Kafka = kcfg
	tel2, exp2 := tracing(t)
	cfg.Telemetry = tel2
	startServer(t, cfg)
	recs := consume(t, kcfg, kcfg.RawTopic, 1, time.Second)
	if len(recs) != 1 || wire.Header(recs[0], wire.HeaderSpooled) != "1" {
		t.Fatalf("topic holds %d records (spooled %q)", len(recs), wire.Header(recs[0], wire.HeaderSpooled))
	}
	if tp := wire.Header(recs[0], wire.HeaderTraceparent); !strings.Contains(tp, tid.String()) {
		t.Errorf("drained record's traceparent %q lacks the webhook's trace %s", tp, tid)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		spans := exp2.GetSpans()
		drain, ok := spanNamed(spans, "lcpipe.ingest.spool.drain", trace.TraceID{})
		if !ok {
			return errNotYet("drain span")
		}
		linked := false
		for _, l := range drain.Links {
			linked = linked || l.SpanContext.TraceID() == tid
		}
		if !linked {
			t.Fatalf("drain span links %v, none to the webhook's trace %s", drain.Links, tid)
		}
		pub, ok := spanNamed(spans, kcfg.RawTopic+" publish", tid)
		if !ok {
			return errNotYet("drain's publish span in the webhook's trace")
		}
		if !pub.Parent.IsRemote() {
			t.Errorf("drain's publish span parent %v: want the spooled record's context", pub.Parent)
		}
		if m := metricsText(t, tel2); !strings.Contains(m, "lcpipe_ingest_drained_total 1\n") {
			return errNotYet("drained count")
		}
		return nil
	})
}

// metricsText is the Prometheus text of tel's metrics.
func metricsText(t *testing.T, tel *telemetry.Telemetry) string {
	t.Helper()
	rec := httptest.NewRecorder()
	tel.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return rec.Body.String()
}

type errNotYet string

func (e errNotYet) Error() string { return "no " + string(e) + " yet" }
