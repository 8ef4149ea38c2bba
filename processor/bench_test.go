package processor

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lcpipe/lcpipe/internal/chconn"
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
// inserted directly with clickhouse-go in 100k-row INSERTs (one block, and
// 12.5k-row blocks), with the ratio to the faster. The child records
// metrics as in production; LCPIPE_BENCH_TRACING=1 turns tracing on (every
// span recorded), LCPIPE_BENCH_TRACEPARENT=1 gives every record a sampled
// trace context (so every record gets its spans).
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
		"CHILD_INSERT_ROWS="+os.Getenv("LCPIPE_BENCH_INSERT_ROWS"), "CHILD_MAX_PENDING="+os.Getenv("LCPIPE_BENCH_MAX_PENDING"),
		"CHILD_TRACING="+os.Getenv("LCPIPE_BENCH_TRACING"))
	waitRows(b, conn, chcfg.Database, want, 30*time.Minute)
	took := time.Since(start)
	stopChild(b, cmd)
	rss := maxRSSMiB(cmd)
	// CPU the child used (start-up and shutdown included): steadier than
	// wall time on a shared machine.
	cpu := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	b.ReportMetric(float64(cpu.Microseconds())/float64(want), "cpu-µs/event")
	var batches, rowsPer, lookupMs, insertMs, flushMs float64
	if err := conn.QueryRow(context.Background(), "SELECT toFloat64(count()), avg(events_inserted), avg(lookup_ms), avg(insert_ms), avg(flush_ms) FROM "+chcfg.Database+".pipeline_batches").
		Scan(&batches, &rowsPer, &lookupMs, &insertMs, &flushMs); err != nil {
		b.Fatal(err)
	}
	b.Logf("flushes: %.0f, per flush: %.0f rows inserted, lookup %.0f ms, insert %.0f ms, whole flush %.0f ms", batches, rowsPer, lookupMs, insertMs, flushMs)
	rate := float64(want) / took.Seconds()

	// Ceilings: the same rows straight into an empty database of the same
	// schema, with clickhouse-go, timing the insert calls only. "big": one
	// 100 000-row block per INSERT. "streamed": 100 000-row INSERTs sent as
	// 12 500-row blocks, which the server squashes into one block (what the
	// processor does): the faster of the two on 18.16, so the ratio is
	// taken against the larger.
	big := benchCeiling(b, chcfg, "ceiling", g, stories, kcfg.RawTopic, 100_000)
	streamed := benchCeiling(b, chcfg, "ceilstream", g, stories, kcfg.RawTopic, 12_500)
	ceiling := max(big, streamed)

	b.ReportMetric(rate, "events/s")
	b.ReportMetric(ceiling, "ceiling-rows/s")
	b.ReportMetric(rate/ceiling*100, "%-of-ceiling")
	b.ReportMetric(rss, "peak-RSS-MiB")
	b.Logf("processor: %d webhooks → %d events in %s = %.0f events/s (%.0f webhooks/s), peak RSS %.0f MiB; direct insert ceilings: %.0f rows/s (100k-row blocks), %.0f rows/s (100k-row INSERTs in 12.5k-row blocks); ratio %.0f%% of the larger (%.0f%% of the 100k-block one)",
		total, want, fmtDur(took), rate, float64(total)/took.Seconds(), rss, big, streamed, rate/ceiling*100, rate/big*100)
	fmt.Fprintf(os.Stderr, "BENCH processor webhooks=%d events=%d took=%s events/s=%.0f rss_mib=%.0f ceiling_big_rows/s=%.0f ceiling_streamed_rows/s=%.0f ratio=%.0f%% ratio_big=%.0f%% cpu=%s cpu_us/event=%.1f\n",
		total, want, took, rate, rss, big, streamed, rate/ceiling*100, rate/big*100, cpu, float64(cpu.Microseconds())/float64(want))
}

// benchCeiling inserts the unique rows of the stories into a fresh database
// in 100 000-row INSERTs of blockRows-row blocks and returns rows/s of the
// insert calls.
func benchCeiling(b *testing.B, chcfg chconn.Config, name string, g *generator, stories int, topic string, blockRows int) float64 {
	ceil := chcfg
	ceil.Database = testenv.Name(b, name)
	conn := testenv.ClickHouse(b, ceil)
	b.Cleanup(func() { _ = conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+ceil.Database) })
	migrate(b, conn, ceil.Database)
	st := &store{conn: conn, db: ceil.Database}
	var rows []Row
	var insertTime time.Duration
	inserted := 0
	flush := func() {
		if len(rows) == 0 {
			return
		}
		t0 := time.Now()
		ins, err := st.open(context.Background(), "")
		if err != nil {
			b.Fatal(err)
		}
		for off := 0; off < len(rows); off += blockRows {
			if err := st.sendBlock(ins, rows[off:min(off+blockRows, len(rows))], 1); err != nil {
				b.Fatal(err)
			}
		}
		if err := ins.Send(); err != nil {
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
			rows = appendTransform(rows, Source{Topic: topic, ReceivedAt: d.receivedAt, RequestID: d.requestID}, w, users, nil)
		}
		if len(rows) >= 100_000 {
			flush()
		}
	}
	flush()
	b.Logf("ceiling %s: %d rows in %s, blocks of %d rows: %.0f rows/s", name, inserted, fmtDur(insertTime), blockRows, float64(inserted)/insertTime.Seconds())
	return float64(inserted) / insertTime.Seconds()
}
