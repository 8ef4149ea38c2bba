package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// listener counts the connections made to a local port.
type listener struct {
	ln    net.Listener
	conns atomic.Int64
}

func listen(t *testing.T, addr string) *listener {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil
	}
	l := &listener{ln: ln}
	// An OTLP/HTTP collector that accepts everything, so a flush returns
	// at once instead of retrying.
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.Copy(io.Discard, r.Body) }),
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				l.conns.Add(1)
			}
		},
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return l
}

// exercise makes a span and a metric and flushes everything out, which is
// when a configured exporter would connect.
func exercise(t *testing.T, cfg Config) *Telemetry {
	t.Helper()
	ctx := context.Background()
	tel, err := New(ctx, cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, span := tel.Tracer("test").Start(ctx, "work")
	span.End()
	c, _ := tel.Meter("test").Int64Counter("lcpipe.test.things")
	c.Add(ctx, 3)
	rec := httptest.NewRecorder()
	tel.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if !strings.Contains(rec.Body.String(), "lcpipe_test_things_total 3") {
		t.Errorf("/metrics lacks the counter:\n%.3000s", rec.Body.String())
	}
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_ = tel.Shutdown(sctx) // flushes: an exporter would send now
	return tel
}

// clearOTelEnv makes the exporter libraries see no OTEL_* variable but
// those the test sets.
func clearOTelEnv(t *testing.T) {
	for _, k := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
		"OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER", "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_SDK_DISABLED"} {
		t.Setenv(k, "")
	}
}

// TestNoExporterNoNetwork: without an exporter configured, spans are not
// recorded and nothing connects anywhere, even through a flush and
// shutdown (the moment an exporter sends); with one, the same exercise
// connects (so the check can see a connection).
func TestNoExporterNoNetwork(t *testing.T) {
	clearOTelEnv(t)
	// The default OTLP ports, when free here: a default-configured
	// exporter would send there.
	defaults := []*listener{listen(t, "127.0.0.1:4318"), listen(t, "127.0.0.1:4317")}
	tel := exercise(t, DefaultConfig())
	if tel.Tracing() || len(tel.Exporting()) > 0 {
		t.Errorf("no exporter configured, yet tracing %v, exporting %v", tel.Tracing(), tel.Exporting())
	}
	_, span := tel.Tracer("x").Start(context.Background(), "x")
	if span.IsRecording() || span.SpanContext().IsValid() {
		t.Errorf("span recorded without an exporter")
	}
	for _, l := range defaults {
		if l != nil && l.conns.Load() > 0 {
			t.Errorf("%d connections to %s without an exporter configured", l.conns.Load(), l.ln.Addr())
		}
	}

	// An endpoint in the environment, but exporters turned off: nothing.
	target := listen(t, "127.0.0.1:0")
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+target.ln.Addr().String())
	off := DefaultConfig()
	off.Endpoint = "http://" + target.ln.Addr().String()
	off.TracesExporter, off.MetricsExporter = ExporterNone, ExporterPrometheus
	exercise(t, off)
	if n := target.conns.Load(); n > 0 {
		t.Errorf("exporters off: %d connections to the collector", n)
	}

	// Positive control: the endpoint configured, the flush connects.
	on := DefaultConfig()
	on.Endpoint = "http://" + target.ln.Addr().String()
	tel = exercise(t, on)
	if !tel.Tracing() || len(tel.Exporting()) != 2 {
		t.Errorf("endpoint set: tracing %v, exporting %v", tel.Tracing(), tel.Exporting())
	}
	if target.conns.Load() == 0 {
		t.Errorf("endpoint configured, yet no connection: the check would not see one")
	}
}

func TestExporterDefaults(t *testing.T) {
	for _, tc := range []struct {
		name            string
		cfg             Config
		traces, metrics string
	}{
		{"nothing", Config{}, "none", "prometheus"},
		{"endpoint", Config{Endpoint: "http://c:4318"}, "otlp", "otlp"},
		{"traces endpoint only", Config{TracesEndpoint: "http://c:4318/v1/traces"}, "otlp", "prometheus"},
		{"metrics endpoint only", Config{MetricsEndpoint: "http://c:4318/v1/metrics"}, "none", "otlp"},
		{"explicit none", Config{Endpoint: "http://c:4318", TracesExporter: "none", MetricsExporter: "none"}, "none", "none"},
		{"console", Config{TracesExporter: "console"}, "console", "prometheus"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.cfg.TracesExporterName(); got != tc.traces {
				t.Errorf("traces exporter %q, want %q", got, tc.traces)
			}
			if got := tc.cfg.MetricsExporterName(); got != tc.metrics {
				t.Errorf("metrics exporter %q, want %q", got, tc.metrics)
			}
		})
	}
}

// Zero fields take the documented defaults, except ServiceName (a
// service.name in OTEL_RESOURCE_ATTRIBUTES may name the service); set
// ones are kept.
func TestWithDefaults(t *testing.T) {
	set := Config{Protocol: "grpc", Sampler: "always_off", MetricInterval: time.Second}
	for _, tc := range []struct {
		name     string
		in, want Config
	}{
		{"zero", Config{}, Config{Protocol: "http/protobuf", Sampler: "parentbased_always_on", MetricInterval: time.Minute}},
		{"set", set, set},
	} {
		if got := tc.in.withDefaults(); got != tc.want {
			t.Errorf("%s: withDefaults() = %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		err  string
	}{
		{"defaults", DefaultConfig(), ""},
		{"ratio", Config{Sampler: "parentbased_traceidratio", SamplerArg: "0.25"}, ""},
		{"bad ratio", Config{Sampler: "traceidratio", SamplerArg: "2"}, "OTEL_TRACES_SAMPLER_ARG"},
		{"bad sampler", Config{Sampler: "sometimes"}, "OTEL_TRACES_SAMPLER"},
		{"bad exporter", Config{TracesExporter: "zipkin"}, "OTEL_TRACES_EXPORTER"},
		{"bad metrics exporter", Config{MetricsExporter: "console"}, "OTEL_METRICS_EXPORTER"},
		{"bad protocol", Config{Protocol: "http/json"}, "OTEL_EXPORTER_OTLP_PROTOCOL"},
		{"bad attributes", Config{ResourceAttributes: "a=1,b"}, "OTEL_RESOURCE_ATTRIBUTES"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			switch {
			case tc.err == "" && err != nil:
				t.Errorf("unexpected error %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Errorf("error %v, want one naming %s", err, tc.err)
			}
		})
	}
}

func TestResourceAttributes(t *testing.T) {
	got, err := ParseResourceAttributes("deployment.environment=prod, team=data%20eng,,service.name=x")
	if err != nil {
		t.Fatal(err)
	}
	want := []attribute.KeyValue{attribute.String("deployment.environment", "prod"), attribute.String("team", "data eng"), attribute.String("service.name", "x")}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("attribute %d: %v, want %v", i, got[i], want[i])
		}
	}
	// OTEL_SERVICE_NAME wins over the attribute; without it the attribute names the service.
	for _, tc := range []struct{ name, want string }{{"lcpipe-ingest", "lcpipe-ingest"}, {"", "x"}} {
		res, err := Config{ServiceName: tc.name, ResourceAttributes: "service.name=x"}.resource()
		if err != nil {
			t.Fatal(err)
		}
		v, _ := res.Set().Value("service.name")
		if v.AsString() != tc.want {
			t.Errorf("service.name %q, want %q", v.AsString(), tc.want)
		}
	}
}

// TestSpanExporterOption: an injected exporter turns tracing on and
// receives the ended spans synchronously.
func TestSpanExporterOption(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tel, err := New(context.Background(), Config{}, Options{SpanExporter: exp})
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Shutdown(context.Background())
	_, span := tel.Tracer("t").Start(context.Background(), "op")
	span.End()
	if !tel.Tracing() || len(exp.GetSpans()) != 1 || exp.GetSpans()[0].Name != "op" {
		t.Errorf("tracing %v, spans %v", tel.Tracing(), exp.GetSpans())
	}
}

// TestLogHandler: a line logged with a span's context carries its trace and
// span id and the request id; one without context is unchanged.
func TestLogHandler(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tel, err := New(context.Background(), Config{}, Options{SpanExporter: exp})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	log := slog.New(LogHandler(slog.NewJSONHandler(&buf, nil))).With("cmd", "ingest")
	ctx, span := tel.Tracer("t").Start(context.Background(), "webhook")
	ctx = WithRequestID(ctx, "rid-1")
	log.InfoContext(ctx, "handled")
	log.Info("no context")
	log.InfoContext(ctx, "explicit", "request_id", "rid-1")
	span.End()

	var lines []map[string]any
	for _, l := range bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n")) {
		var m map[string]any
		if err := json.Unmarshal(l, &m); err != nil {
			t.Fatalf("%s: %v", l, err)
		}
		lines = append(lines, m)
	}
	if lines[0]["trace_id"] != span.SpanContext().TraceID().String() || lines[0]["span_id"] != span.SpanContext().SpanID().String() ||
		lines[0]["request_id"] != "rid-1" || lines[0]["cmd"] != "ingest" {
		t.Errorf("line with context: %v", lines[0])
	}
	if _, ok := lines[1]["trace_id"]; ok {
		t.Errorf("line without context got a trace id: %v", lines[1])
	}
	if n := bytes.Count(buf.Bytes(), []byte(`"request_id"`)); n != 2 {
		t.Errorf("request_id written %d times, want 2 (once per line that has it):\n%s", n, buf.String())
	}
}

// TestHistogramBuckets: explicit bucket boundaries reach /metrics.
func TestHistogramBuckets(t *testing.T) {
	tel, err := New(context.Background(), Config{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	h, _ := tel.Meter("t").Float64Histogram("lcpipe.test.wait", metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(0.5, 1))
	h.Record(context.Background(), 0.7)
	rec := httptest.NewRecorder()
	tel.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, want := range []string{`lcpipe_test_wait_seconds_bucket{le="0.5"} 0`, `lcpipe_test_wait_seconds_bucket{le="1"} 1`, `lcpipe_test_wait_seconds_count 1`} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("/metrics lacks %s:\n%.3000s", want, rec.Body.String())
		}
	}
}
