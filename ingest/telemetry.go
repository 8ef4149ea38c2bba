package ingest

// Ingest's traces and metrics, as middleware and hooks around the handler
// (STYLE.md rule 7). observe (middleware.go) counts each answer and labels
// its span from what the handler reported; newApp mounts otelfiber; New
// adds the Kafka client hooks; store and deliverSpooled open the spool
// spans.
//
// With tracing off (no exporter, or the sampler always_off) neither
// otelfiber nor kotel is installed: a webhook then costs one counter add
// (pre-built attribute set) and one histogram record, and allocates
// nothing for telemetry.

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/gofiber/contrib/otelfiber/v2"
	"github.com/gofiber/fiber/v2"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kotel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/lcpipe/lcpipe/internal/kafka"
	"github.com/lcpipe/lcpipe/internal/livechat"
	"github.com/lcpipe/lcpipe/internal/telemetry"
	"github.com/lcpipe/lcpipe/internal/wire"
)

const instrumentation = "github.com/lcpipe/lcpipe/ingest"

// ackBuckets (seconds): a Kafka ack takes milliseconds, INGEST_KAFKA_TIMEOUT
// (2s) bounds it before the spool's fsync.
var ackBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 2.5, 5, 10}

// Action labels of lcpipe_ingest_webhooks_total: a known action's name,
// "other" for any other name (the action comes from the body: its label
// values must stay bounded whatever is posted) and "none" when the request
// had no readable envelope.
var (
	actionLabels = map[string]*string{}
	labelOther   = ptr("other")
	labelNone    = ptr("none")
)

func ptr(s string) *string { return &s }

func init() {
	for _, a := range append(livechat.Actions(), wire.ActionCanary) {
		actionLabels[a] = ptr(a)
	}
}

// ingestTel is the server's telemetry.
type ingestTel struct {
	tel     *telemetry.Telemetry
	tracing bool
	tracer  trace.Tracer
	prop    propagation.TextMapPropagator
	kotel   *kotel.Tracer

	webhooks metric.Int64Counter
	ack      metric.Float64Histogram
	// Options are passed as pre-built slices: a variadic argument built
	// per call would be allocated on every webhook.
	ackKafka []metric.RecordOption
	ackSpool []metric.RecordOption
	canaries metric.Int64Counter
	opts     sync.Map // webhookLabel → []metric.AddOption
	reg      metric.Registration
}

type webhookLabel struct {
	action *string
	code   int
}

func newIngestTel(tel *telemetry.Telemetry, s *Server) *ingestTel {
	if tel == nil {
		tel = telemetry.Disabled()
	}
	t := &ingestTel{tel: tel, tracing: tel.Tracing(), tracer: tel.Tracer(instrumentation), prop: tel.Propagator()}
	if t.tracing {
		t.kotel = kotel.NewTracer(kotel.TracerProvider(tel.TracerProvider()), kotel.TracerPropagator(t.prop),
			kotel.ClientID(s.cfg.Kafka.ClientID))
	}
	m := tel.Meter(instrumentation)
	t.webhooks, _ = m.Int64Counter("lcpipe.ingest.webhooks", metric.WithUnit("{request}"),
		metric.WithDescription("requests to the webhook endpoint, by action (a known action, other or none) and HTTP status code"))
	t.ack, _ = m.Float64Histogram("lcpipe.ingest.ack.duration", metric.WithUnit("s"),
		metric.WithDescription("from receiving a webhook to it being durable (Kafka's ack, or the spool's fsync), by path"),
		metric.WithExplicitBucketBoundaries(ackBuckets...))
	t.ackKafka = []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(attribute.String("path", "kafka")))}
	t.ackSpool = []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(attribute.String("path", "spool")))}
	t.canaries, _ = m.Int64Counter("lcpipe.canary.sent", metric.WithUnit("{webhook}"),
		metric.WithDescription("freshness canaries posted by ingest to its own endpoint, by result (ok: answered 200)"))

	gauge := func(name, unit, desc string) metric.Float64ObservableGauge {
		g, _ := m.Float64ObservableGauge(name, metric.WithUnit(unit), metric.WithDescription(desc))
		return g
	}
	counter := func(name, unit, desc string) metric.Int64ObservableCounter {
		c, _ := m.Int64ObservableCounter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		return c
	}
	spoolRecords := gauge("lcpipe.ingest.spool.records", "{webhook}", "webhooks in the local spool, not in Kafka yet")
	spoolBytes := gauge("lcpipe.ingest.spool.size", "By", "bytes of the spool's segments on disk")
	spoolAge := gauge("lcpipe.ingest.spool.oldest_age", "s", "age of the oldest spooled webhook (0 when empty; an upper bound while a segment drains)")
	spoolMax := gauge("lcpipe.ingest.spool.capacity", "By", "the spool's cap (SPOOL_MAX_BYTES); the quarantine counts toward it")
	quarFiles := gauge("lcpipe.ingest.quarantine.files", "{webhook}", "webhooks Kafka refused for good, kept in SPOOL_DIR/dead")
	quarBytes := gauge("lcpipe.ingest.quarantine.size", "By", "bytes of the quarantine")
	produceErrors := counter("lcpipe.ingest.produce.errors", "{error}", "Kafka produce failures, by path: request (the webhook then went to the spool) or drain (a spool batch, retried)")
	authFailures := counter("lcpipe.ingest.auth.failures", "{request}", "secret checks that failed, by reason: mismatch (401) or lookup (the installation's secrets unavailable: 503)")
	spooled := counter("lcpipe.ingest.spooled", "{webhook}", "webhooks made durable in the spool instead of Kafka")
	drained := counter("lcpipe.ingest.drained", "{webhook}", "spooled webhooks delivered to Kafka")
	quarantined := counter("lcpipe.ingest.quarantined", "{webhook}", "webhooks Kafka refused for good (set aside in the quarantine)")

	attr := func(k, v string) metric.ObserveOption {
		return metric.WithAttributeSet(attribute.NewSet(attribute.String(k, v)))
	}
	request, drain := attr("path", "request"), attr("path", "drain")
	mismatch, lookup := attr("reason", "mismatch"), attr("reason", "lookup")
	c := &s.counters
	t.reg, _ = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		st := s.Status()
		o.ObserveFloat64(spoolRecords, float64(st.Spool.Records))
		o.ObserveFloat64(spoolBytes, float64(st.Spool.Bytes))
		o.ObserveFloat64(spoolAge, st.Spool.OldestAgeSeconds)
		o.ObserveFloat64(spoolMax, float64(st.Spool.MaxBytes))
		o.ObserveFloat64(quarFiles, float64(st.Quarantine.Files))
		o.ObserveFloat64(quarBytes, float64(st.Quarantine.Bytes))
		o.ObserveInt64(produceErrors, c.kafkaErrors.Load(), request)
		o.ObserveInt64(produceErrors, c.drainErrors.Load(), drain)
		o.ObserveInt64(authFailures, c.unauthorized.Load(), mismatch)
		o.ObserveInt64(authFailures, c.installationErrors.Load(), lookup)
		o.ObserveInt64(spooled, c.spooled.Load())
		o.ObserveInt64(drained, c.drained.Load())
		o.ObserveInt64(quarantined, c.quarantined.Load())
		return nil
	}, spoolRecords, spoolBytes, spoolAge, spoolMax, quarFiles, quarBytes, produceErrors, authFailures, spooled, drained, quarantined)
	return t
}

// close unregisters the callbacks (they read the server's spool).
func (t *ingestTel) close() {
	if t.reg != nil {
		_ = t.reg.Unregister()
	}
}

// kafkaOpts: kotel's publish spans (and the W3C context in the record
// headers) while tracing.
func (t *ingestTel) kafkaOpts() []kgo.Opt {
	if !t.tracing {
		return nil
	}
	return []kgo.Opt{kgo.WithHooks(t.kotel)}
}

// useTelemetry mounts otelfiber's server span (tracing only; its own HTTP
// metrics are off, ours are counted by observe).
func (s *Server) useTelemetry(app *fiber.App) {
	t := s.tel
	if t.tracing {
		app.Use(otelfiber.Middleware(
			otelfiber.WithTracerProvider(t.tel.TracerProvider()),
			otelfiber.WithPropagators(t.prop),
			otelfiber.WithMeterProvider(metricnoop.NewMeterProvider()),
			otelfiber.WithNext(func(c *fiber.Ctx) bool { p := c.Path(); return p == "/healthz" || p == "/readyz" }),
		))
	}
}

// countWebhook counts a request to the webhook endpoint by action and
// status (observe calls it once the answer is known).
func (t *ingestTel) countWebhook(ctx context.Context, action *string, status int) {
	if action == nil {
		action = labelNone
	}
	key := webhookLabel{action, status}
	opt, ok := t.opts.Load(key)
	if !ok {
		opt, _ = t.opts.LoadOrStore(key, []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(
			attribute.String("action", *action), attribute.String("code", strconv.Itoa(key.code))))})
	}
	t.webhooks.Add(ctx, 1, opt.([]metric.AddOption)...)
}

// actionLabel is the webhook's action as a label value (a pointer to a
// fixed string: no allocation).
func actionLabel(action string) *string {
	if l, ok := actionLabels[action]; ok {
		return l
	}
	return labelOther
}

// acked records how long the webhook took to become durable.
func (t *ingestTel) acked(ctx context.Context, receivedAt time.Time, spooled bool) {
	opts := t.ackKafka
	if spooled {
		opts = t.ackSpool
	}
	t.ack.Record(ctx, time.Since(receivedAt).Seconds(), opts...)
}

// span starts an internal span while tracing; otherwise it returns ctx's
// span (a no-op) without allocating.
func (t *ingestTel) span(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	if !t.tracing {
		return ctx, trace.SpanFromContext(ctx)
	}
	return t.tracer.Start(ctx, name, opts...)
}

// drainSpan spans one spool batch on its way to Kafka, linked to each
// webhook's trace; each record's publish span (kotel) is a child of its
// own webhook's trace, so a spooled webhook's trace goes on from the HTTP
// request through the spool to the processor.
func (t *ingestTel) drainSpan(ctx context.Context, recs []*kgo.Record) (context.Context, trace.Span) {
	if !t.tracing {
		return ctx, trace.SpanFromContext(ctx)
	}
	links := make([]trace.Link, 0, len(recs))
	parents := make([]context.Context, len(recs))
	for i, r := range recs {
		rctx := t.prop.Extract(context.Background(), kotel.NewRecordCarrier(r))
		if sc := trace.SpanContextFromContext(rctx); sc.IsValid() {
			links = append(links, trace.Link{SpanContext: sc})
			parents[i] = trace.ContextWithRemoteSpanContext(ctx, sc)
		}
	}
	ctx, span := t.tracer.Start(ctx, "lcpipe.ingest.spool.drain", trace.WithLinks(links...),
		trace.WithAttributes(attribute.Int("lcpipe.records", len(recs))))
	for i, r := range recs {
		if parents[i] != nil {
			r.Context = parents[i]
		}
	}
	return ctx, span
}

// Ready reports whether a webhook can be made durable now: Kafka answers,
// or the spool has room for a typical large webhook. For the admin
// listener's /readyz (the public /readyz says the same with details).
func (s *Server) Ready(ctx context.Context) error {
	pctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	kerr := kafka.Ping(pctx, s.client)
	if kerr == nil || s.spool.Writable(min(s.cfg.MaxBodyBytes, 64<<10)) {
		return nil
	}
	return fmt.Errorf("kafka unreachable (%v) and the spool is full", kerr)
}
