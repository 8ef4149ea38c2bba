package dashboards

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lcpipe/lcpipe/ingest"
	"github.com/lcpipe/lcpipe/ingest/spool"
	"github.com/lcpipe/lcpipe/internal/telemetry"
	"github.com/lcpipe/lcpipe/internal/testenv"
	"github.com/lcpipe/lcpipe/internal/wire"
	"github.com/lcpipe/lcpipe/processor"
	"github.com/lcpipe/lcpipe/schema"
)

func TestCanaryBucketsMatchProcessor(t *testing.T) {
	if !slices.Equal(CanaryBuckets, processor.CanaryBuckets) {
		t.Errorf("dashboards.CanaryBuckets %v, processor.CanaryBuckets %v: the panel and the histogram must bucket alike", CanaryBuckets, processor.CanaryBuckets)
	}
}

// metricValue reads one sample ("name{labels} value") from Prometheus text.
func metricValue(text, series string) (float64, bool) {
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(text)
	if m == nil {
		return 0, false
	}
	v, err := strconv.ParseFloat(m[1], 64)
	return v, err == nil
}

// TestCanaryOnPipelineDashboard runs ingest with the freshness canary on
// (CANARY_INTERVAL 1s) and the processor on the real Kafka and ClickHouse,
// with nothing else posted. The canaries go through the public endpoint
// and the whole pipeline: the processor's canary histogram gets
// observations and pipeline_canaries its rows; the pipeline-health
// dashboard shows them in headless Chromium, every panel with data
// (screenshot dashboards/screenshots/lc-pipeline-canary.png). The canary
// rows count in no chat analytic: every panel of the other dashboards is
// empty or zero, and no derived table but webhook_minutes has a row.
func TestCanaryOnPipelineDashboard(t *testing.T) {
	ctx := context.Background()
	chCfg := testenv.ClickHouseConfig(t)
	conn := testenv.ClickHouse(t, chCfg)
	if _, err := schema.Migrate(ctx, conn, schema.Options{Database: chCfg.Database}, nil); err != nil {
		t.Fatal(err)
	}
	db := chCfg.Database
	kCfg := testenv.KafkaConfig(t)

	// Ingest with the canary, no secret of its own: the canary signs
	// with the random one ingest makes for it.
	icfg := ingest.DefaultConfig()
	icfg.Kafka = kCfg
	icfg.Spool = spool.DefaultConfig(t.TempDir())
	icfg.CanaryInterval = time.Second
	itel, err := telemetry.New(ctx, telemetry.Config{}, telemetry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	icfg.Telemetry = itel
	srv, err := ingest.New(icfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ictx, stopIngest := context.WithCancel(ctx)
	ingestDone := make(chan error, 1)
	go func() { ingestDone <- srv.Serve(ictx, ln) }()
	t.Cleanup(func() { stopIngest(); <-ingestDone })

	ptel, err := telemetry.New(ctx, telemetry.Config{}, telemetry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	pcfg := processor.DefaultConfig()
	pcfg.Group = testenv.Name(t, "group")
	pcfg.BatchLinger = 100 * time.Millisecond
	pcfg.InsertLinger = 200 * time.Millisecond
	pcfg.LagInterval = 300 * time.Millisecond
	p, err := processor.New(processor.Options{Config: pcfg, Kafka: kCfg, ClickHouse: conn, Database: db, Telemetry: ptel})
	if err != nil {
		t.Fatal(err)
	}
	pctx, stopProc := context.WithCancel(ctx)
	procDone := make(chan error, 1)
	go func() { procDone <- p.Run(pctx) }()
	t.Cleanup(func() { stopProc(); <-procDone })

	metrics := func(tel *telemetry.Telemetry) string {
		rec := httptest.NewRecorder()
		tel.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		return rec.Body.String()
	}
	const want = 3
	testenv.Eventually(t, 90*time.Second, func() error {
		var n uint64
		if err := conn.QueryRow(ctx, "SELECT count() FROM "+db+".pipeline_canaries").Scan(&n); err != nil {
			return err
		}
		if n < want {
			return fmt.Errorf("%d canaries queryable", n)
		}
		m := metrics(ptel)
		if c, _ := metricValue(m, "lcpipe_canary_freshness_seconds_count"); c < want {
			return fmt.Errorf("canary histogram: %v observations", c)
		}
		if _, ok := metricValue(m, "lcpipe_canary_last_age_seconds"); !ok {
			return errors.New("no lcpipe_canary_last_age_seconds")
		}
		return nil
	})
	if sent, _ := metricValue(metrics(itel), `lcpipe_canary_sent_total{result="ok"}`); sent < want {
		t.Errorf("ingest counted %v canaries sent", sent)
	}
	m := metrics(ptel)
	sum, _ := metricValue(m, "lcpipe_canary_freshness_seconds_sum")
	count, _ := metricValue(m, "lcpipe_canary_freshness_seconds_count")
	t.Logf("canary sent → queryable: %v canaries, mean %.3fs", count, sum/count)
	if sum/count > 30 {
		t.Errorf("canary latency %vs: the pipeline is idle, it should be seconds", sum/count)
	}

	// The canary rows: in events (kind canary), in webhook_minutes (a
	// pipeline fact), in no other derived table.
	var kinds []string
	rows, err := conn.Query(ctx, "SELECT DISTINCT concat(kind, '/', organization_id, '/', action) FROM "+db+".events")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			t.Fatal(err)
		}
		kinds = append(kinds, k)
	}
	rows.Close()
	if len(kinds) != 1 || kinds[0] != processor.KindCanary+"/"+wire.CanaryOrganization+"/"+wire.ActionCanary {
		t.Errorf("events holds %v, want only canary rows", kinds)
	}
	for _, d := range schema.DerivedTables {
		var n uint64
		if err := conn.QueryRow(ctx, "SELECT count() FROM "+db+"."+d.Table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if (n > 0) != (d.Table == "webhook_minutes") {
			t.Errorf("derived table %s holds %d rows of canaries", d.Table, n)
		}
	}
	// No chat analytic counts them.
	now := time.Now()
	params := Params{DB: db, FromMS: now.Add(-24 * time.Hour).UnixMilli(), ToMS: now.Add(time.Hour).UnixMilli(), Group: -1}
	params.BucketS = Bucket(params.FromMS, params.ToMS)
	for _, d := range All() {
		if d.UID == "lc-pipeline" {
			continue
		}
		for _, pn := range d.Panels {
			res, err := Run(ctx, conn, pn, params)
			if err != nil {
				t.Fatalf("%s/%s: %v", d.UID, pn.ID, err)
			}
			for _, r := range res.Rows {
				for j, c := range r {
					if f, ok := c.(float64); ok && f != 0 && !math.IsNaN(f) {
						t.Errorf("%s/%s: %s = %v with only canaries stored", d.UID, pn.ID, res.Columns[j], c)
					}
				}
			}
		}
	}

	// The pipeline-health dashboard shows them, in the built-in viewer.
	var canaries, bucketed float64
	pd, _ := Find("lc-pipeline")
	cp, _ := pd.Panel("canary")
	res, err := Run(ctx, conn, cp, params)
	if err != nil {
		t.Fatal(err)
	}
	canaries = cell(t, res, 0, "canaries")
	hp, _ := pd.Panel("canary_histogram")
	if res, err = Run(ctx, conn, hp, params); err != nil {
		t.Fatal(err)
	}
	for i := range res.Rows {
		bucketed += cell(t, res, i, "canaries")
	}
	if canaries < want || bucketed != canaries {
		t.Errorf("canary panel: %v canaries, histogram panel %v", canaries, bucketed)
	}
	bin := chromium(t)
	srvV := newTestViewer(t, db)
	url := srvV.URL + "/?dashboard=lc-pipeline&range=1h&refresh=0"
	dom, stderr := headless(t, bin, url, "--dump-dom")
	st := statusRe.FindStringSubmatch(dom)
	if st == nil {
		t.Fatalf("no status element in the DOM:\n%.2000s", dom)
	}
	attrs := map[string]string{}
	for _, a := range attrRe.FindAllStringSubmatch(st[1], -1) {
		attrs[a[1]] = a[2]
	}
	if attrs["state"] != "done" || attrs["errors"] != "" || attrs["with-data"] != strconv.Itoa(len(pd.Panels)) {
		t.Errorf("pipeline dashboard: state %q, errors %q, %s of %d panels with data", attrs["state"], attrs["errors"], attrs["with-data"], len(pd.Panels))
	}
	for _, id := range []string{"canary", "canary_histogram", "kafka_lag", "kafka_lag_over_time"} {
		if !regexp.MustCompile(`data-panel="` + id + `"[^>]*data-state="data"`).MatchString(dom) {
			t.Errorf("panel %s not drawn with data", id)
		}
	}
	if lines := consoleRe.FindAllString(stderr, -1); len(lines) > 0 {
		t.Errorf("console output:\n%s", strings.Join(lines, "\n"))
	}
	shots := filepath.Join(testenv.RepoRoot(t), "dashboards", "screenshots")
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(shots, "lc-pipeline-canary.png")
	_ = os.Remove(file)
	headless(t, bin, url, "--screenshot="+file)
	if fi, err := os.Stat(file); err != nil || fi.Size() < 20_000 {
		t.Errorf("screenshot %s missing or nearly empty (%v)", file, err)
	}
}
