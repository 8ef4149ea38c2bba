package processor

// The processor's traces and metrics, kept beside the core (tracing and
// metrics are hooks: STYLE.md rule 7). The pipeline's files call into them
// at a few points, each a line:
//
//   - Run: kafkaOpts (Kafka client hooks), running/stopped (readiness),
//     startLag (lag.go);
//   - process: recordSpan per record, only for records whose W3C context
//     says "sampled" (sampledFetches) and only while tracing;
//   - preparer: batchSpan around prepare; prepare: prepared (freshness
//     points of the kept rows);
//   - openInsertion / send / closeInsertion: insertOpened, blockSent,
//     insertClosed (the INSERT span with links to the records);
//   - finish: stored (freshness histograms, canaries, batch sizes);
//   - rewind, onAssigned, onRevoked, onLost: rewound, rebalanced.
//
// Cost with tracing off (no exporter, or the sampler always_off): no span
// is started per record or per batch, no context is extracted, nothing is
// allocated per record; what remains per row is appending two timestamps
// at prepare and two histogram records at finish (the freshness metrics,
// which are always on). With tracing on, only records that arrive with a
// sampled W3C context get a span (kotel's process span): a record that
// nobody traced upstream starts no trace here.

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kotel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/lcpipe/lcpipe/internal/kafka"
	"github.com/lcpipe/lcpipe/internal/livechat"
	"github.com/lcpipe/lcpipe/internal/telemetry"
	"github.com/lcpipe/lcpipe/internal/wire"
)

const instrumentation = "github.com/lcpipe/lcpipe/processor"

// Histogram bucket boundaries.
var (
	// freshnessBuckets (seconds): live traffic lands in seconds, a backlog
	// or a replay in hours or days.
	freshnessBuckets = []float64{0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600, 21600, 86400}
	// CanaryBuckets (seconds) are the canary histogram's bounds; the
	// pipeline-health dashboard buckets pipeline_canaries the same way.
	CanaryBuckets = []float64{0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 20, 30, 60, 120, 300, 600}
	insertBuckets = []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120}
	rowsBuckets   = []float64{1, 10, 100, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000}
	bytesBuckets  = []float64{1 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20, 8 << 20, 12 << 20, 16 << 20, 32 << 20, 64 << 20}
)

// procTel is the processor's telemetry: instruments and tracing state.
type procTel struct {
	tracing bool
	tracer  trace.Tracer
	kotel   *kotel.Tracer
	log     *slog.Logger

	batchRows   metric.Int64Histogram
	batchBytes  metric.Int64Histogram
	insertDur   metric.Float64Histogram
	eventFresh  metric.Float64Histogram
	recvFresh   metric.Float64Histogram
	canaryFresh metric.Float64Histogram
	deadLetters metric.Int64Counter
	rewinds     metric.Int64Counter
	rebalances  metric.Int64Counter
	stageOpts   sync.Map // dead-letter stage → metric.AddOption

	dirHits, dirMisses atomic.Int64
	lastCanaryMs       atomic.Int64 // when the last canary became queryable (epoch ms)
	consuming          atomic.Bool
	cl                 atomic.Pointer[kgo.Client]

	lag lagSnapshot // lag.go
}

// batchTel is what a batch carries for telemetry.
type batchTel struct {
	links    []trace.Link  // the span contexts of its traced records
	fresh    []freshPoint  // kept rows' times, for the freshness histograms
	canaries []canaryPoint // kept canary rows
}

type freshPoint struct{ occurredMs, receivedMs uint64 }

type canaryPoint struct {
	sentMs, receivedMs uint64
	eventID, requestID string
	partition          int32
	offset             int64
}

// insertTel is an INSERT's span.
type insertTel struct {
	ctx    context.Context
	span   trace.Span
	opened time.Time
}

func newProcTel(tel *telemetry.Telemetry, p *Processor) *procTel {
	if tel == nil {
		tel = telemetry.Disabled()
	}
	t := &procTel{tracing: tel.Tracing(), tracer: tel.Tracer(instrumentation), log: p.log}
	if t.tracing {
		t.kotel = kotel.NewTracer(kotel.TracerProvider(tel.TracerProvider()), kotel.TracerPropagator(tel.Propagator()),
			kotel.ClientID(p.kcfg.ClientID), kotel.ConsumerGroup(p.cfg.Group))
	}
	m := tel.Meter(instrumentation)
	// Instrument errors only arise from invalid names or units, which are
	// constants here: a test (TestProcessorMetrics) sees every one.
	t.batchRows, _ = m.Int64Histogram("lcpipe.processor.batch.rows", metric.WithUnit("{row}"),
		metric.WithDescription("rows decoded per batch (before de-duplication)"), metric.WithExplicitBucketBoundaries(rowsBuckets...))
	t.batchBytes, _ = m.Int64Histogram("lcpipe.processor.batch.size", metric.WithUnit("By"),
		metric.WithDescription("approximate memory of a batch's rows when sealed"), metric.WithExplicitBucketBoundaries(bytesBuckets...))
	t.insertDur, _ = m.Float64Histogram("lcpipe.processor.insert.duration", metric.WithUnit("s"),
		metric.WithDescription("from opening an INSERT into events to its completion on the server"), metric.WithExplicitBucketBoundaries(insertBuckets...))
	t.eventFresh, _ = m.Float64Histogram("lcpipe.freshness.event_to_queryable", metric.WithUnit("s"),
		metric.WithDescription("from an event's own time (its received-at when it has none) to its row being queryable in ClickHouse"), metric.WithExplicitBucketBoundaries(freshnessBuckets...))
	t.recvFresh, _ = m.Float64Histogram("lcpipe.freshness.received_to_queryable", metric.WithUnit("s"),
		metric.WithDescription("from ingest receiving a webhook to its rows being queryable in ClickHouse"), metric.WithExplicitBucketBoundaries(freshnessBuckets...))
	t.canaryFresh, _ = m.Float64Histogram("lcpipe.canary.freshness", metric.WithUnit("s"),
		metric.WithDescription("from ingest sending a canary webhook to its row being queryable"), metric.WithExplicitBucketBoundaries(CanaryBuckets...))
	t.deadLetters, _ = m.Int64Counter("lcpipe.processor.dead_letters", metric.WithUnit("{record}"),
		metric.WithDescription("records written to the dead-letter topic, by stage"))
	t.rewinds, _ = m.Int64Counter("lcpipe.processor.rewinds", metric.WithUnit("{rewind}"),
		metric.WithDescription("times the consumer was set back to the last stored offsets after a failed INSERT"))
	t.rebalances, _ = m.Int64Counter("lcpipe.processor.rebalances", metric.WithUnit("{rebalance}"),
		metric.WithDescription("consumer-group rebalance callbacks, by kind (assigned, revoked, lost)"))

	// Series present at 0 from the start, so rate() and alerts work
	// before the first event.
	t.rewinds.Add(context.Background(), 0)
	for _, opt := range rebalanceKinds {
		t.rebalances.Add(context.Background(), 0, opt)
	}

	st := &p.stats
	counter := func(name, unit, desc string) metric.Int64ObservableCounter {
		c, _ := m.Int64ObservableCounter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		return c
	}
	records := counter("lcpipe.processor.records", "{record}", "raw-topic records read")
	rows := counter("lcpipe.processor.rows", "{row}", "rows decoded from the records (before de-duplication)")
	inserted := counter("lcpipe.processor.rows.inserted", "{row}", "rows inserted into events")
	dups := counter("lcpipe.processor.duplicates", "{row}", "rows dropped as duplicates, by reason: identity (event id already stored) or retry (same state change within DEDUP_WINDOW)")
	batches := counter("lcpipe.processor.batches", "{batch}", "batches stored and committed")
	retries := counter("lcpipe.processor.insert.failures", "{failure}", "failed INSERTs (each followed by a rewind)")
	pauses := counter("lcpipe.processor.pauses", "{pause}", "times fetching paused because ClickHouse was behind")
	repaired := counter("lcpipe.processor.repairs", "{row}", "derived-table rows written by repair after an INSERT whose views failed")
	repairFailed := counter("lcpipe.processor.repair.failures", "{failure}", "failed repair attempts (retried)")
	dir := counter("lcpipe.processor.directory.lookups", "{lookup}", "agent and group name lookups, by result (hit: a name, miss: none)")
	canaryAge, _ := m.Float64ObservableGauge("lcpipe.canary.last_age", metric.WithUnit("s"),
		metric.WithDescription("time since the last canary became queryable (absent before the first)"))
	lagRecords, _ := m.Int64ObservableGauge("lcpipe.processor.lag.records", metric.WithUnit("{record}"),
		metric.WithDescription("per partition: log end offset minus the group's committed offset"))
	lagSeconds, _ := m.Float64ObservableGauge("lcpipe.processor.lag", metric.WithUnit("s"),
		metric.WithDescription("per partition: age of the oldest record not committed yet (0 without lag)"))
	lagAge, _ := m.Float64ObservableGauge("lcpipe.processor.lag.sample_age", metric.WithUnit("s"),
		metric.WithDescription("how old the lag figures are (they are sampled from Kafka every LAG_INTERVAL)"))

	identity := metric.WithAttributeSet(attribute.NewSet(attribute.String("reason", "identity")))
	retry := metric.WithAttributeSet(attribute.NewSet(attribute.String("reason", "retry")))
	hit := metric.WithAttributeSet(attribute.NewSet(attribute.String("result", "hit")))
	miss := metric.WithAttributeSet(attribute.NewSet(attribute.String("result", "miss")))
	_, _ = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		o.ObserveInt64(records, st.Records.Load())
		o.ObserveInt64(rows, st.Rows.Load())
		o.ObserveInt64(inserted, st.Inserted.Load())
		o.ObserveInt64(dups, st.DupIdentity.Load(), identity)
		o.ObserveInt64(dups, st.DupWindow.Load(), retry)
		o.ObserveInt64(batches, st.Batches.Load())
		o.ObserveInt64(retries, st.InsertRetries.Load())
		o.ObserveInt64(pauses, st.Pauses.Load())
		o.ObserveInt64(repaired, st.Repaired.Load())
		o.ObserveInt64(repairFailed, st.RepairFailures.Load())
		o.ObserveInt64(dir, t.dirHits.Load(), hit)
		o.ObserveInt64(dir, t.dirMisses.Load(), miss)
		if ms := t.lastCanaryMs.Load(); ms > 0 {
			o.ObserveFloat64(canaryAge, max(float64(time.Now().UnixMilli()-ms)/1000, 0))
		}
		t.lag.observe(o, lagRecords, lagSeconds, lagAge)
		return nil
	}, records, rows, inserted, dups, batches, retries, pauses, repaired, repairFailed, dir, canaryAge, lagRecords, lagSeconds, lagAge)
	return t
}

// kafkaOpts are the consumer client's hooks: dead letters counted by stage
// as they are acknowledged, and, while tracing, kotel's spans for records
// that arrive sampled (and for dead letters produced).
func (t *procTel) kafkaOpts(dlqTopic string) []kgo.Opt {
	hooks := []kgo.Hook{dlqCounter{t: t, topic: dlqTopic}}
	if t.tracing {
		hooks = append(hooks, sampledFetches{t.kotel})
	}
	return []kgo.Opt{kgo.WithHooks(hooks...)}
}

// dlqCounter counts the dead letters the broker acknowledged, by stage.
type dlqCounter struct {
	t     *procTel
	topic string
}

func (d dlqCounter) OnProduceRecordUnbuffered(r *kgo.Record, err error) {
	if err != nil || r.Topic != d.topic {
		return
	}
	stage := wire.Header(r, wire.HeaderDLQStage)
	opt, ok := d.t.stageOpts.Load(stage)
	if !ok {
		opt, _ = d.t.stageOpts.LoadOrStore(stage, metric.WithAttributeSet(attribute.NewSet(attribute.String("stage", stage))))
	}
	d.t.deadLetters.Add(context.Background(), 1, opt.(metric.AddOption))
}

// sampledFetches gives a record whose W3C context is sampled that context
// (r.Context, the parent of its process span: recordSpan). A record
// without one costs a header scan and allocates nothing. Unlike kotel's
// own fetch hook it starts no "receive" span per record: the process span
// is the record's one span in the processor (half the spans at 100 %
// sampling, BENCHMARKS.md). Dead letters produced get kotel's publish
// spans.
type sampledFetches struct{ k *kotel.Tracer }

func (s sampledFetches) OnFetchRecordBuffered(r *kgo.Record) {
	if sc, ok := sampledParent(r); ok {
		r.Context = trace.ContextWithRemoteSpanContext(context.Background(), sc)
	}
}

func (s sampledFetches) OnProduceRecordBuffered(r *kgo.Record) { s.k.OnProduceRecordBuffered(r) }
func (s sampledFetches) OnProduceRecordUnbuffered(r *kgo.Record, err error) {
	s.k.OnProduceRecordUnbuffered(r, err)
}

// sampledParent parses the record's W3C traceparent
// ("00-<32 hex trace id>-<16 hex span id>-<2 hex flags>") when its sampled
// flag is set, without allocating.
func sampledParent(r *kgo.Record) (trace.SpanContext, bool) {
	for i := range r.Headers {
		if r.Headers[i].Key != wire.HeaderTraceparent {
			continue
		}
		v := r.Headers[i].Value
		if len(v) < 55 || v[2] != '-' || v[35] != '-' || v[52] != '-' || unhex(v[54])&1 != 1 {
			return trace.SpanContext{}, false
		}
		var tid trace.TraceID
		var sid trace.SpanID
		if !hexInto(tid[:], v[3:35]) || !hexInto(sid[:], v[36:52]) {
			return trace.SpanContext{}, false
		}
		sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled, Remote: true})
		return sc, sc.IsValid()
	}
	return trace.SpanContext{}, false
}

// hexInto decodes lower- or upper-case hex into dst (len(src) = 2·len(dst)).
func hexInto(dst []byte, src []byte) bool {
	for i := range dst {
		hi, lo := src[2*i], src[2*i+1]
		if !isHexDigit(hi) || !isHexDigit(lo) {
			return false
		}
		dst[i] = unhex(hi)<<4 | unhex(lo)
	}
	return true
}

func isHexDigit(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10
	}
	return 0
}

// recordSpan is the record's consume/transform span (kotel's "process"
// span, a child of the span that produced the record, so in the webhook's
// trace). Its context joins the batch's links. Call only while tracing,
// for records whose Context a sampled fetch set.
func (t *procTel) recordSpan(b *batch, r *kgo.Record, w *livechat.Webhook, err error, rows []Row) {
	_, span := t.kotel.WithProcessSpan(r)
	attrs := []attribute.KeyValue{attribute.Int("lcpipe.rows", len(rows)), attribute.String("lcpipe.request_id", wire.Header(r, wire.HeaderRequestID))}
	if w != nil {
		attrs = append(attrs, attribute.String("livechat.action", w.Action))
	}
	if len(rows) > 0 {
		ids := make([]string, len(rows))
		for i := range rows {
			ids[i] = rows[i].EventID
		}
		attrs = append(attrs, attribute.StringSlice("lcpipe.event_ids", ids))
	}
	span.SetAttributes(attrs...)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, "dead letter")
	}
	span.End()
	b.tel.links = append(b.tel.links, trace.Link{SpanContext: span.SpanContext()})
}

// batchSpan spans the preparation of a batch (dead letters, lookups,
// repair); log lines written meanwhile carry its trace id.
func (t *procTel) batchSpan(ctx context.Context, b *batch) (context.Context, trace.Span) {
	if !t.tracing {
		return ctx, trace.SpanFromContext(ctx)
	}
	return t.tracer.Start(ctx, "lcpipe.processor.batch", trace.WithAttributes(
		attribute.Int64("lcpipe.batch", int64(b.seq)), attribute.Int("lcpipe.records", b.records),
		attribute.Int("lcpipe.rows", len(b.rows)), attribute.Int("lcpipe.dead_letters", len(b.dead))))
}

// prepared keeps the times of the batch's kept rows (the freshness
// metrics are recorded when their INSERT completes) and its canaries.
func (t *procTel) prepared(b *batch) {
	if cap(b.tel.fresh) < len(b.keep) {
		b.tel.fresh = make([]freshPoint, 0, len(b.keep))
	}
	for i := range b.keep {
		r := &b.keep[i]
		b.tel.fresh = append(b.tel.fresh, freshPoint{occurredMs: r.OccurredAtMs, receivedMs: r.ReceivedAtMs})
		if r.Kind == KindCanary {
			b.tel.canaries = append(b.tel.canaries, canaryPoint{sentMs: r.OccurredAtMs, receivedMs: r.ReceivedAtMs,
				eventID: r.EventID, requestID: r.RequestID, partition: r.SrcPartition, offset: r.SrcOffset})
		}
	}
}

// insertOpened starts the INSERT's span: a root span of its own (one
// INSERT carries thousands of traces), linked to each record's span as its
// blocks are sent, with the ClickHouse query id.
func (t *procTel) insertOpened(ctx context.Context, in *insertion, queryID string) {
	in.tel.opened = time.Now()
	if !t.tracing {
		return
	}
	in.tel.ctx, in.tel.span = t.tracer.Start(ctx, "lcpipe.processor.insert", trace.WithNewRoot(),
		trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(
			attribute.String("db.system", "clickhouse"),
			attribute.String("db.operation.name", "INSERT"),
			attribute.String("db.collection.name", "events"),
			attribute.String("db.clickhouse.query_id", queryID),
			attribute.String("lcpipe.insert_id", strconv.FormatUint(in.id, 16)),
		))
}

// blockSent links the INSERT's span to the records of a batch sent as one
// of its blocks.
func (t *procTel) blockSent(in *insertion, b *batch) {
	if in.tel.span == nil {
		return
	}
	for _, l := range b.tel.links {
		in.tel.span.AddLink(l)
	}
	b.tel.links = nil
}

// insertClosed ends the INSERT's span and records its duration.
func (t *procTel) insertClosed(in *insertion, err error) {
	if err == nil {
		t.insertDur.Record(context.Background(), time.Since(in.tel.opened).Seconds())
	}
	if in.tel.span == nil {
		return
	}
	in.tel.span.SetAttributes(attribute.Int("lcpipe.rows", in.rows), attribute.Int("lcpipe.batches", len(in.batches)))
	if err != nil {
		in.tel.span.RecordError(err)
		in.tel.span.SetStatus(codes.Error, "insert failed")
	}
	in.tel.span.End()
}

// insertContext is ctx with the INSERT's span (for the log lines of its
// commit).
func (t *procTel) insertContext(ctx context.Context, in *insertion) context.Context {
	if in == nil || in.tel.span == nil {
		return ctx
	}
	return trace.ContextWithSpan(ctx, in.tel.span)
}

// stored runs when the batches' rows became queryable (their INSERT
// completed): freshness histograms, batch sizes, canaries.
func (t *procTel) stored(ctx context.Context, p *Processor, batches []*batch) {
	now := time.Now()
	nowMs := uint64(now.UnixMilli())
	secs := func(ms uint64) float64 {
		if ms == 0 || ms > nowMs {
			return 0
		}
		return float64(nowMs-ms) / 1000
	}
	var canaries []canaryPoint
	for _, b := range batches {
		t.batchRows.Record(ctx, int64(b.rowsIn))
		t.batchBytes.Record(ctx, b.bytes)
		for _, f := range b.tel.fresh {
			t.eventFresh.Record(ctx, secs(f.occurredMs))
			t.recvFresh.Record(ctx, secs(f.receivedMs))
		}
		b.tel.fresh = nil
		canaries = append(canaries, b.tel.canaries...)
		b.tel.canaries = nil
	}
	// A replay (range mode) stores old canaries again: their freshness
	// would measure the replay, not the pipeline.
	if len(canaries) == 0 || p.cfg.Range != nil {
		return
	}
	for _, c := range canaries {
		t.canaryFresh.Record(ctx, secs(c.sentMs))
	}
	t.lastCanaryMs.Store(now.UnixMilli())
	if err := p.st.insertCanaries(ctx, now, p.cfg.Instance, canaries); err != nil {
		t.log.WarnContext(ctx, "pipeline_canaries rows not written (statistics only)", "err", err)
	}
}

// rewound counts a rewind.
func (t *procTel) rewound() { t.rewinds.Add(context.Background(), 1) }

var rebalanceKinds = map[string]metric.AddOption{}

func init() {
	for _, k := range []string{"assigned", "revoked", "lost"} {
		rebalanceKinds[k] = metric.WithAttributeSet(attribute.NewSet(attribute.String("kind", k)))
	}
}

// rebalanced counts a rebalance callback of a kind (assigned, revoked,
// lost) that concerned partitions of the raw topic.
func (t *procTel) rebalanced(kind string, parts []int32) {
	if len(parts) == 0 {
		return
	}
	t.rebalances.Add(context.Background(), 1, rebalanceKinds[kind])
}

// running marks the processor as consuming with cl (readiness); stopped
// when the poll loop ended.
func (t *procTel) running(cl *kgo.Client) { t.cl.Store(cl); t.consuming.Store(true) }
func (t *procTel) stopped()               { t.consuming.Store(false) }

// Ready reports whether the processor is doing its work: consuming (its
// Kafka client answers) with ClickHouse reachable. For /readyz.
func (p *Processor) Ready(ctx context.Context) error {
	cl := p.tel.cl.Load()
	if cl == nil || !p.tel.consuming.Load() {
		return errNotConsuming
	}
	if err := kafka.Ping(ctx, cl); err != nil {
		return err
	}
	if err := p.st.conn.Ping(ctx); err != nil {
		return err
	}
	return nil
}

var errNotConsuming = errors.New("not consuming (starting, or stopped)")

// countingDirectory counts name lookups that found a name (hits) and those
// that did not (misses).
type countingDirectory struct {
	d Directory
	t *procTel
}

func (c countingDirectory) AgentName(org, agent string) string {
	n := c.d.AgentName(org, agent)
	c.count(n)
	return n
}

func (c countingDirectory) GroupName(org string, group uint32) string {
	n := c.d.GroupName(org, group)
	c.count(n)
	return n
}

func (c countingDirectory) count(name string) {
	if name != "" {
		c.t.dirHits.Add(1)
	} else {
		c.t.dirMisses.Add(1)
	}
}

// KindCanary is the kind of a freshness canary's row (wire.ActionCanary):
// stored in events like any webhook, so it measures the real path, and
// excluded from every chat analytic (it has no chat or thread, so no
// materialized view but webhook_minutes picks it up).
const KindCanary = "canary"

// canary turns a canary webhook into its row: a server identity from the
// canary's id, its sent_at as the event time. False when the payload is
// not a canary's (it is then stored as an unknown action).
func (t *transformer) canary() bool {
	c, ok := parseCanary(t.w.Payload)
	if !ok {
		return false
	}
	r := t.base(KindCanary)
	r.OccurredAtMs = uint64(max(c.SentAt.UnixMilli(), 0))
	r.ownTime = true
	t.identified(r, "canary", c.ID)
	return true
}

// canaryPayload is a canary webhook's payload (wire.ActionCanary).
type canaryPayload struct {
	ID       string    `json:"id"`
	SentAt   time.Time `json:"sent_at"`
	Instance string    `json:"instance"`
}

func parseCanary(payload []byte) (canaryPayload, bool) {
	var c canaryPayload
	if err := json.Unmarshal(payload, &c); err != nil || c.ID == "" || c.SentAt.IsZero() {
		return c, false
	}
	return c, true
}

// errAborted ends the span of an INSERT abandoned at shutdown.
var errAborted = errors.New("insert abandoned at shutdown")
