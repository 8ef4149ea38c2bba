package processor

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lcpipe/lcpipe/internal/kafka"
	"github.com/lcpipe/lcpipe/internal/livechat"
	"github.com/lcpipe/lcpipe/internal/testenv"
)

// BenchmarkProcessor: the raw topic is pre-loaded with N realistic webhooks
// (the fixture story with fresh ids, extra messages, 20 % repeated
// deliveries; N = LCPIPE_BENCH_WEBHOOKS, default 1 000 000), then the
// processor (a child process with the default configuration) runs from the
// start until every unique event is in ClickHouse. Reported: events/s
// Kafka→ClickHouse, the child's peak RSS, and the ceiling: the same rows
// inserted directly with clickhouse-go in 100k-row batches, with the ratio.
// Run with: make bench-processor (go test -run '^$' -bench . -benchtime 1x ./processor/...).
func BenchmarkProcessor(b *testing.B) {
	n := 1_000_000
	if s := os.Getenv("LCPIPE_BENCH_WEBHOOKS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil {
			b.Fatalf("LCPIPE_BENCH_WEBHOOKS: %v", err)
		}
		n = v
	}
	for b.Loop() {
		benchProcessor(b, n)
	}
}

func benchProcessor(b *testing.B, webhooks int) {
	kcfg := testenv.KafkaConfig(b)
	chcfg := testenv.ClickHouseConfig(b)
	conn := testenv.ClickHouse(b, chcfg)
	migrate(b, conn, chcfg.Database)
	e := &env{kafka: kcfg, ch: chcfg, conn: conn}

	g := newGenerator(b, time.Date(2025, 3, 14, 0, 0, 0, 0, time.UTC))
	g.dupEvery = 4 // one repeat per 4 deliveries: 20 % of all deliveries are repeats
	perStory := len(g.expectedIDs(b, 1))

	// Pre-load, streaming (nothing big stays in memory).
	loadStart := time.Now()
	cl, err := kafka.NewClient(kcfg, kgo.ProducerLinger(20*time.Millisecond), kgo.ProducerBatchCompression(kgo.Lz4Compression()))
	if err != nil {
		b.Fatal(err)
	}
	total, stories, counter := 0, 0, 0
	for total < webhooks {
		ds := g.deliveries(stories, &counter)
		produceWith(b, cl, kcfg.RawTopic, ds)
		total += len(ds)
		stories++
		if stories%2000 == 0 {
			_ = cl.Flush(context.Background())
		}
	}
	_ = cl.Flush(context.Background())
	cl.Close()
	want := uint64(stories * perStory)
	b.Logf("pre-loaded %d webhooks (%d stories, %d unique events) in %s", total, stories, want, fmtDur(time.Since(loadStart)))

	// The processor, Kafka → ClickHouse.
	start := time.Now()
	cmd := startChild(b, e, testenv.Name(b, "grp"), "CHILD_CPUPROFILE="+os.Getenv("LCPIPE_BENCH_CPUPROFILE"), "CHILD_BATCH_BYTES="+os.Getenv("LCPIPE_BENCH_BATCH_BYTES"), "CHILD_HEAPPROFILE="+os.Getenv("LCPIPE_BENCH_HEAPPROFILE"), "CHILD_HEAPPROFILE_AT="+os.Getenv("LCPIPE_BENCH_HEAPPROFILE_AT"),
		"CHILD_INSERT_ROWS="+os.Getenv("LCPIPE_BENCH_INSERT_ROWS"), "CHILD_MAX_PENDING="+os.Getenv("LCPIPE_BENCH_MAX_PENDING"))
	waitRows(b, conn, chcfg.Database, want, 30*time.Minute)
	took := time.Since(start)
	stopChild(b, cmd)
	rss := maxRSSMiB(cmd)
	var batches, rowsPer, lookupMs, insertMs, flushMs float64
	if err := conn.QueryRow(context.Background(), "SELECT toFloat64(count()), avg(events_inserted), avg(lookup_ms), avg(insert_ms), avg(flush_ms) FROM "+chcfg.Database+".pipeline_batches").
		Scan(&batches, &rowsPer, &lookupMs, &insertMs, &flushMs); err != nil {
		b.Fatal(err)
	}
	b.Logf("flushes: %.0f, per flush: %.0f rows inserted, lookup %.0f ms, insert %.0f ms, whole flush %.0f ms", batches, rowsPer, lookupMs, insertMs, flushMs)
	rate := float64(want) / took.Seconds()

	// Ceiling: the same rows straight into an empty table of the same schema.
	ceil := chcfg
	ceil.Database = testenv.Name(b, "ceiling")
	ceilConn := testenv.ClickHouse(b, ceil)
	b.Cleanup(func() { _ = ceilConn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+ceil.Database) })
	migrate(b, ceilConn, ceil.Database)
	st := &store{conn: ceilConn, db: ceil.Database}
	var rows []Row
	var insertTime time.Duration
	inserted := 0
	flush := func() {
		t0 := time.Now()
		if err := st.insert(context.Background(), rows, ""); err != nil {
			b.Fatal(err)
		}
		insertTime += time.Since(t0)
		inserted += len(rows)
		rows = rows[:0]
	}
	users := NewUserCache(100_000)
	for s := 0; s < stories; s++ {
		for _, d := range g.story(s) {
			w, err := livechat.Decode(d.body)
			if err != nil {
				b.Fatal(err)
			}
			rows = append(rows, Transform(Source{Topic: kcfg.RawTopic, ReceivedAt: d.receivedAt, RequestID: d.requestID}, w, users, nil)...)
		}
		if len(rows) >= 100_000 {
			flush()
		}
	}
	flush()
	ceiling := float64(inserted) / insertTime.Seconds()

	b.ReportMetric(rate, "events/s")
	b.ReportMetric(ceiling, "ceiling-rows/s")
	b.ReportMetric(rate/ceiling*100, "%-of-ceiling")
	b.ReportMetric(rss, "peak-RSS-MiB")
	b.Logf("processor: %d webhooks → %d events in %s = %.0f events/s (%.0f webhooks/s), peak RSS %.0f MiB; direct insert ceiling %.0f rows/s (%d rows in %s); ratio %.0f%%",
		total, want, fmtDur(took), rate, float64(total)/took.Seconds(), rss, ceiling, inserted, fmtDur(insertTime), rate/ceiling*100)
	fmt.Fprintf(os.Stderr, "BENCH processor webhooks=%d events=%d took=%s events/s=%.0f rss_mib=%.0f ceiling_rows/s=%.0f ratio=%.0f%%\n",
		total, want, took, rate, rss, ceiling, rate/ceiling*100)
}
