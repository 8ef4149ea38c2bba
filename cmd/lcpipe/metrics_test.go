package main

import (
	"fmt"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/lcpipe/lcpipe/dashboards"
	"github.com/lcpipe/lcpipe/internal/telemetry"
	"github.com/lcpipe/lcpipe/internal/testenv"
)

// scrape is one read of an admin listener's /metrics.
type scrape map[string]*dto.MetricFamily

func scrapeMetrics(t *testing.T, admin string) scrape {
	t.Helper()
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics of %s does not parse: %v", admin, err)
	}
	return fams
}

// get sums the series of name whose labels include the given pairs
// ("k=v"): a counter's or gauge's value, a histogram's count (name
// "x_count") or sum ("x_sum"). ok is false when no series matches.
func (s scrape) get(name string, labels ...string) (v float64, ok bool) {
	fam, part := s[name], ""
	for _, suffix := range []string{"_count", "_sum"} {
		if fam == nil && strings.HasSuffix(name, suffix) {
			fam, part = s[strings.TrimSuffix(name, suffix)], suffix
		}
	}
	if fam == nil {
		return 0, false
	}
series:
	for _, m := range fam.Metric {
		have := map[string]string{}
		for _, l := range m.Label {
			have[l.GetName()] = l.GetValue()
		}
		for _, kv := range labels {
			k, val, _ := strings.Cut(kv, "=")
			if have[k] != val {
				continue series
			}
		}
		ok = true
		switch {
		case m.Counter != nil:
			v += m.Counter.GetValue()
		case m.Gauge != nil:
			v += m.Gauge.GetValue()
		case m.Histogram != nil && part == "_sum":
			v += m.Histogram.GetSampleSum()
		case m.Histogram != nil:
			v += float64(m.Histogram.GetSampleCount())
		}
	}
	return v, ok
}

func (s scrape) value(name string, labels ...string) float64 {
	v, _ := s.get(name, labels...)
	return v
}

// delta is a metric's change between two scrapes.
type delta struct {
	name    string
	labels  []string
	want    float64 // exact change
	atLeast bool    // want is a minimum
}

func checkDeltas(t *testing.T, what string, before, after scrape, ds []delta) {
	t.Helper()
	for _, d := range ds {
		got := after.value(d.name, d.labels...) - before.value(d.name, d.labels...)
		if _, ok := after.get(d.name, d.labels...); !ok {
			t.Errorf("%s: %s%v missing from /metrics", what, d.name, d.labels)
			continue
		}
		if (d.atLeast && got < d.want) || (!d.atLeast && got != d.want) {
			t.Errorf("%s: %s%v moved by %v, want %v%s", what, d.name, d.labels, got, d.want, map[bool]string{true: " or more"}[d.atLeast])
		}
	}
}

// lagTotals sums the processor's lag gauges over partitions.
func lagTotals(s scrape) (records, maxSeconds float64, parts int) {
	if f := s["lcpipe_processor_lag_records"]; f != nil {
		for _, m := range f.Metric {
			records += m.Gauge.GetValue()
			parts++
		}
	}
	if f := s["lcpipe_processor_lag_seconds"]; f != nil {
		for _, m := range f.Metric {
			maxSeconds = max(maxSeconds, m.Gauge.GetValue())
		}
	}
	return
}

func names(s scrape) []string {
	var out []string
	for n := range s {
		if strings.HasPrefix(n, "lcpipe_") {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// TestMetricsThroughPipeline reads ingest's and the processor's /metrics
// before and after posting webhooks through the real pipeline: every
// documented metric is present and moved by exactly what was posted
// (accepted, rejected, duplicates by reason, a dead letter by stage, rows
// inserted, freshness observations). Then ClickHouse refuses the INSERTs
// (a derived table broken): the processor keeps running but cannot commit,
// so the lag read from Kafka rises, in records and seconds, and the failed
// INSERTs and rewinds are counted; once the table is back the lag falls to
// 0 and the repair is counted.
func TestMetricsThroughPipeline(t *testing.T) {
	p := startPipeline(t, telemetry.Options{}, nil)
	ib, pb := scrapeMetrics(t, p.ingestAdmin), scrapeMetrics(t, p.procAdmin)

	const org = "3f2b8c1e-9d4a-4e6b-8f1a-2c5d7e9b0a14"
	event := readFixture(t, "incoming_event.json")
	tagged := readFixture(t, "thread_tagged.json")
	unknown := []byte(`{"webhook_id":"u1","secret_key":"test-secret","action":"brand_new_thing","organization_id":"` + org + `","payload":{"id":"x1","v":1}}`)
	poison := []byte(`{"webhook_id":"p1","secret_key":"test-secret","action":"incoming_event","organization_id":"` + org + `","payload":{"chat_id":"C1","thread_id":"T1","event":{"type":"message","text":"no id"}}}`)
	var rids []string
	rids = append(rids, p.postBody(t, event, 200), p.postBody(t, tagged, 200), p.postBody(t, unknown, 200))
	rids = append(rids, p.postBody(t, event, 200))  // LiveChat's retry: same event id
	rids = append(rids, p.postBody(t, tagged, 200)) // a retry of the same state change, within DEDUP_WINDOW
	p.postBody(t, poison, 200)                      // accepted by ingest, dead-lettered by the processor
	p.postBody(t, []byte(strings.Replace(string(event), "test-secret", "wrong-secret", 1)), 401)
	p.postBody(t, []byte("{not json"), 400)

	posted := time.Now()
	// Settled: every record read and committed (a lag sample taken after
	// the posts says 0), the batch counters caught up with the histograms.
	testenv.Eventually(t, 60*time.Second, func() error {
		s := scrapeMetrics(t, p.procAdmin)
		if n := s.value("lcpipe_processor_records_total") - pb.value("lcpipe_processor_records_total"); n < 6 {
			return fmt.Errorf("processor read %v of 6 records", n)
		}
		if age := s.value("lcpipe_processor_lag_sample_age_seconds"); age >= time.Since(posted).Seconds() {
			return fmt.Errorf("no lag sample since the posts")
		}
		if r, _, _ := lagTotals(s); r != 0 {
			return fmt.Errorf("lag %v records", r)
		}
		if b, h := s.value("lcpipe_processor_batches_total")-pb.value("lcpipe_processor_batches_total"),
			s.value("lcpipe_processor_batch_rows_count")-pb.value("lcpipe_processor_batch_rows_count"); b < 1 || b != h {
			return fmt.Errorf("%v batches counted, %v in the histogram", b, h)
		}
		if s.value("lcpipe_processor_dead_letters_total") == pb.value("lcpipe_processor_dead_letters_total") {
			return fmt.Errorf("no dead letter yet")
		}
		return nil
	})
	ia, pa := scrapeMetrics(t, p.ingestAdmin), scrapeMetrics(t, p.procAdmin)
	t.Logf("ingest metrics: %v", names(ia))
	t.Logf("processor metrics: %v", names(pa))

	checkDeltas(t, "ingest", ib, ia, []delta{
		{name: "lcpipe_ingest_webhooks_total", labels: []string{"action=incoming_event", "code=200"}, want: 3},
		{name: "lcpipe_ingest_webhooks_total", labels: []string{"action=thread_tagged", "code=200"}, want: 2},
		{name: "lcpipe_ingest_webhooks_total", labels: []string{"action=other", "code=200"}, want: 1},
		{name: "lcpipe_ingest_webhooks_total", labels: []string{"action=incoming_event", "code=401"}, want: 1},
		{name: "lcpipe_ingest_webhooks_total", labels: []string{"action=none", "code=400"}, want: 1},
		{name: "lcpipe_ingest_webhooks_total", want: 8},
		{name: "lcpipe_ingest_ack_duration_seconds_count", labels: []string{"path=kafka"}, want: 6},
		{name: "lcpipe_ingest_auth_failures_total", labels: []string{"reason=mismatch"}, want: 1},
		{name: "lcpipe_ingest_auth_failures_total", labels: []string{"reason=lookup"}, want: 0},
		{name: "lcpipe_ingest_produce_errors_total", labels: []string{"path=request"}, want: 0},
		{name: "lcpipe_ingest_produce_errors_total", labels: []string{"path=drain"}, want: 0},
		{name: "lcpipe_ingest_spooled_total", want: 0},
		{name: "lcpipe_ingest_drained_total", want: 0},
		{name: "lcpipe_ingest_quarantined_total", want: 0},
		{name: "lcpipe_ingest_spool_records", want: 0},
		{name: "lcpipe_ingest_spool_size_bytes", want: 0},
		{name: "lcpipe_ingest_spool_oldest_age_seconds", want: 0},
		{name: "lcpipe_ingest_spool_capacity_bytes", want: 0},
		{name: "lcpipe_ingest_quarantine_files", want: 0},
		{name: "lcpipe_ingest_quarantine_size_bytes", want: 0},
	})
	if v := ia.value("lcpipe_ingest_ack_duration_seconds_sum", "path=kafka") - ib.value("lcpipe_ingest_ack_duration_seconds_sum", "path=kafka"); v <= 0 || v > 6*2 {
		t.Errorf("ack latency sum moved by %vs for 6 webhooks", v)
	}

	var stored uint64
	if err := p.conn.QueryRow(t.Context(), "SELECT count() FROM "+p.chcfg.Database+".events").Scan(&stored); err != nil {
		t.Fatal(err)
	}
	inserted := float64(stored)
	rows := pa.value("lcpipe_processor_rows_total") - pb.value("lcpipe_processor_rows_total")
	checkDeltas(t, "processor", pb, pa, []delta{
		{name: "lcpipe_processor_records_total", want: 6},
		{name: "lcpipe_processor_rows_inserted_total", want: inserted},
		{name: "lcpipe_processor_rows_total", want: inserted + 2},
		{name: "lcpipe_processor_duplicates_total", labels: []string{"reason=identity"}, want: 1},
		{name: "lcpipe_processor_duplicates_total", labels: []string{"reason=retry"}, want: 1},
		{name: "lcpipe_processor_dead_letters_total", labels: []string{"stage=validate"}, want: 1},
		{name: "lcpipe_processor_batch_rows_count", want: pa.value("lcpipe_processor_batches_total") - pb.value("lcpipe_processor_batches_total")},
		{name: "lcpipe_processor_batch_rows_sum", want: rows},
		{name: "lcpipe_processor_batch_size_bytes_count", want: 1, atLeast: true},
		{name: "lcpipe_processor_insert_duration_seconds_count", want: 1, atLeast: true},
		{name: "lcpipe_freshness_event_to_queryable_seconds_count", want: inserted},
		{name: "lcpipe_freshness_received_to_queryable_seconds_count", want: inserted},
		{name: "lcpipe_processor_insert_failures_total", want: 0},
		{name: "lcpipe_processor_rewinds_total", want: 0, atLeast: true},
		{name: "lcpipe_processor_pauses_total", want: 0},
		{name: "lcpipe_processor_repairs_total", want: 0},
		{name: "lcpipe_processor_repair_failures_total", want: 0},
		{name: "lcpipe_processor_rebalances_total", labels: []string{"kind=assigned"}, want: 0, atLeast: true},
		{name: "lcpipe_processor_directory_lookups_total", want: 0},
		{name: "lcpipe_processor_lag_records", want: 0},
		{name: "lcpipe_processor_lag_seconds", want: 0},
		{name: "lcpipe_processor_lag_sample_age_seconds", want: -1e9, atLeast: true},
	})
	if inserted != 3 {
		t.Errorf("events holds %v rows, want 3 (event, tag, unknown action)", inserted)
	}
	// Received → queryable of a webhook posted a moment ago: seconds, not more.
	if sum := pa.value("lcpipe_freshness_received_to_queryable_seconds_sum") - pb.value("lcpipe_freshness_received_to_queryable_seconds_sum"); sum <= 0 || sum > 30*inserted {
		t.Errorf("received→queryable sum %vs over %v rows", sum, inserted)
	}
	// Grafana's Prometheus panels query metrics the processor exports.
	for _, d := range dashboards.All() {
		for _, pn := range d.Panels {
			for _, q := range pn.Prom {
				for _, m := range promNameRe.FindAllString(q.Expr, -1) {
					if _, ok := pa[m]; !ok {
						t.Errorf("%s/%s: Grafana queries %s, which the processor does not export", d.UID, pn.ID, m)
					}
				}
			}
		}
	}
	if _, _, parts := lagTotals(pa); parts != int(p.kcfg.Partitions) {
		t.Errorf("lag reported for %d partitions, the topic has %d", parts, p.kcfg.Partitions)
	}

	// Pause: ClickHouse fails every INSERT (a derived table broken), so
	// nothing is committed while records keep arriving.
	restore := testenv.BreakTable(t, p.conn, p.chcfg.Database, "webhook_minutes")
	before := scrapeMetrics(t, p.procAdmin)
	for i := range 4 {
		p.postBody(t, []byte(`{"webhook_id":"l`+fmt.Sprint(i)+`","secret_key":"test-secret","action":"thread_tagged","organization_id":"`+org+`","payload":{"chat_id":"LAG`+fmt.Sprint(i)+`","thread_id":"T","tag":"t"}}`), 200)
	}
	var paused scrape
	testenv.Eventually(t, 60*time.Second, func() error {
		paused = scrapeMetrics(t, p.procAdmin)
		recs, secs, _ := lagTotals(paused)
		if recs < 4 || secs < 1 {
			return fmt.Errorf("lag %v records, %vs", recs, secs)
		}
		return nil
	})
	recs, secs, _ := lagTotals(paused)
	t.Logf("paused: lag %v records, oldest %.1fs", recs, secs)
	checkDeltas(t, "paused", before, paused, []delta{
		{name: "lcpipe_processor_insert_failures_total", want: 1, atLeast: true},
		{name: "lcpipe_processor_rewinds_total", want: 1, atLeast: true},
	})
	restore()
	testenv.Eventually(t, 90*time.Second, func() error {
		s := scrapeMetrics(t, p.procAdmin)
		recs, secs, _ := lagTotals(s)
		if recs != 0 || secs != 0 {
			return fmt.Errorf("lag still %v records, %vs", recs, secs)
		}
		return nil
	})
	after := scrapeMetrics(t, p.procAdmin)
	checkDeltas(t, "resumed", before, after, []delta{
		{name: "lcpipe_processor_repairs_total", want: 1, atLeast: true},
	})
	// The failed INSERT wrote events before the view failed: read again,
	// its rows are found stored (identity duplicates) and repaired; rows
	// of it that were not written are inserted. Either way, 4 rows.
	stored4 := after.value("lcpipe_processor_rows_inserted_total") - before.value("lcpipe_processor_rows_inserted_total") +
		after.value("lcpipe_processor_duplicates_total", "reason=identity") - before.value("lcpipe_processor_duplicates_total", "reason=identity")
	if stored4 != 4 {
		t.Errorf("after the pause: %v rows inserted or found stored, want 4", stored4)
	}
}

var promNameRe = regexp.MustCompile(`lcpipe_[a-z_]+`)

func readFixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("../../ingest/testdata/livechat/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
