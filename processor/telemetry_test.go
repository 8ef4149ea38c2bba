package processor

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kotel"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/lcpipe/lcpipe/internal/livechat"
	"github.com/lcpipe/lcpipe/internal/telemetry"
	"github.com/lcpipe/lcpipe/internal/wire"
)

func TestSampledParent(t *testing.T) {
	const tid, sid = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	for _, tc := range []struct {
		name, value string
		want        bool
	}{
		{"sampled", "00-" + tid + "-" + sid + "-01", true},
		{"not sampled", "00-" + tid + "-" + sid + "-00", false},
		{"other flags, sampled", "00-" + tid + "-" + sid + "-03", true},
		{"other flags, not sampled", "00-" + tid + "-" + sid + "-02", false},
		{"upper-case flags", "00-" + tid + "-" + sid + "-0B", true},
		{"not hex", "00-" + strings.Repeat("z", 32) + "-" + sid + "-01", false},
		{"zero trace id", "00-" + strings.Repeat("0", 32) + "-" + sid + "-01", false},
		{"truncated", "00-" + tid + "-" + sid + "-0", false},
		{"garbage", "sampled please, 01 01 01 01 01 01 01 01 01 01 01 01 01 01 01", false},
		{"absent", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &kgo.Record{Headers: []kgo.RecordHeader{{Key: wire.HeaderRequestID, Value: []byte("r")}}}
			if tc.value != "" {
				r.Headers = append(r.Headers, kgo.RecordHeader{Key: wire.HeaderTraceparent, Value: []byte(tc.value)})
			}
			sc, got := sampledParent(r)
			if got != tc.want {
				t.Errorf("sampledParent(%q) = %v", tc.value, got)
			}
			if got && (sc.TraceID().String() != tid || sc.SpanID().String() != sid || !sc.IsSampled() || !sc.IsRemote()) {
				t.Errorf("sampledParent(%q) = %v", tc.value, sc)
			}
		})
	}
}

// TestUnsampledRecordsCostNothing: a record that arrives without a sampled
// context gets no context and allocates nothing in the fetch hook, even
// while tracing; a sampled one gets its parent, and recordSpan makes its
// one span (kotel's process span), a child of the producer's span, linked
// from the batch.
func TestUnsampledRecordsCostNothing(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tel, err := telemetry.New(context.Background(), telemetry.Config{}, telemetry.Options{SpanExporter: exp})
	if err != nil {
		t.Fatal(err)
	}
	k := kotel.NewTracer(kotel.TracerProvider(tel.TracerProvider()), kotel.TracerPropagator(tel.Propagator()))
	hook := sampledFetches{k}
	unsampled := &kgo.Record{Topic: "raw", Headers: []kgo.RecordHeader{
		{Key: wire.HeaderRequestID, Value: []byte("r")},
		{Key: wire.HeaderTraceparent, Value: []byte("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")},
	}}
	if n := testing.AllocsPerRun(1000, func() { hook.OnFetchRecordBuffered(unsampled) }); n != 0 || unsampled.Context != nil {
		t.Errorf("unsampled record: %.1f allocations, context %v", n, unsampled.Context)
	}
	sampled := &kgo.Record{Topic: "raw", Headers: []kgo.RecordHeader{
		{Key: wire.HeaderTraceparent, Value: []byte("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")},
	}}
	hook.OnFetchRecordBuffered(sampled)
	pt := &procTel{tracing: true, kotel: k}
	b := &batch{}
	pt.recordSpan(b, sampled, nil, nil, []Row{{EventID: "e1"}})
	spans := exp.GetSpans()
	if len(spans) != 1 || spans[0].Name != "raw process" || spans[0].SpanContext.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" ||
		spans[0].Parent.SpanID().String() != "00f067aa0ba902b7" {
		t.Fatalf("sampled record's spans: %v", spans.Snapshots())
	}
	if len(b.tel.links) != 1 || b.tel.links[0].SpanContext.SpanID() != spans[0].SpanContext.SpanID() {
		t.Errorf("batch links %v", b.tel.links)
	}
}

// TestCanaryRow: a canary webhook becomes one row of kind canary, with a
// server identity from its id (a redelivery is a duplicate, another
// canary is not) and its sent_at as the event time; a malformed one is
// kept as an unknown action.
func TestCanaryRow(t *testing.T) {
	body := func(id, sent string) []byte {
		return []byte(`{"webhook_id":"w","secret_key":"","action":"` + wire.ActionCanary + `","organization_id":"` + wire.CanaryOrganization +
			`","payload":{"id":"` + id + `","sent_at":"` + sent + `","instance":"h-1"}}`)
	}
	rowsOf := func(b []byte, recv time.Time) []Row {
		w, err := livechat.Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		return Transform(Source{Topic: "raw", ReceivedAt: recv}, w, nil, nil)
	}
	sent := time.Date(2026, 3, 1, 10, 0, 0, 123_000_000, time.UTC)
	a := rowsOf(body("c-1", sent.Format(time.RFC3339Nano)), sent.Add(time.Second))
	again := rowsOf(body("c-1", sent.Format(time.RFC3339Nano)), sent.Add(time.Minute))
	other := rowsOf(body("c-2", sent.Format(time.RFC3339Nano)), sent.Add(time.Second))
	if len(a) != 1 || a[0].Kind != KindCanary || a[0].OrganizationID != wire.CanaryOrganization || a[0].Action != wire.ActionCanary ||
		a[0].OccurredAtMs != uint64(sent.UnixMilli()) || a[0].ReceivedAtMs != uint64(sent.Add(time.Second).UnixMilli()) ||
		a[0].ChatID != "" || a[0].ThreadID != "" || len(a[0].DedupSubjects) != 0 {
		t.Fatalf("canary rows %+v", a)
	}
	if again[0].EventID != a[0].EventID || other[0].EventID == a[0].EventID {
		t.Errorf("identity: same canary %s/%s, other %s", a[0].EventID, again[0].EventID, other[0].EventID)
	}
	if bad := rowsOf(body("", "yesterday"), sent); len(bad) != 1 || bad[0].Kind != KindUnknown {
		t.Errorf("malformed canary: %+v", bad)
	}
}
