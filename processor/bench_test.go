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
// start until every unique event is in ClickHouse; then, in the same run,
// the floor (floor_test.go: a franz-go consumer of the same topic inserting
// the same rows, computed beforehand, into the same schema). Reported for
// each: CPU µs per stored event (utime+stime from /proc: the figure a
// shared machine disturbs least) and events/s; the processor's peak RSS
// (VmHWM) and its throughput as a share of the floor's.
//
// Knobs: LCPIPE_BENCH_GOGC (the child's GOGC), LCPIPE_BENCH_CPUPROFILE and
// LCPIPE_BENCH_HEAPPROFILE (+ _AT) (the child's pprof files),
// LCPIPE_BENCH_BATCH_BYTES, _INSERT_ROWS, _MAX_PENDING (its config),
// LCPIPE_BENCH_CEILINGS=1 (also the direct clickhouse-go insert ceilings),
// LCPIPE_BENCH_TRACING=1 (every span recorded).
// Run with: make bench-processor (or bench-processor-quick: 300k webhooks).
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
		"CHILD_TRACING="+os.Getenv("LCPIPE_BENCH_TRACING"), "CHILD_GOGC="+os.Getenv("LCPIPE_BENCH_GOGC"))
	waitRows(b, conn, chcfg.Database, want, 30*time.Minute)
	took := time.Since(start)
	// Start-up included, shutdown not: the child is idle once the rows are in.
	cpu := procCPU(b, cmd.Process.Pid)
	rss := procHWM(b, cmd.Process.Pid)
	stopChild(b, cmd)
	proc := floorResult{rows: want, took: took, cpu: cpu}
	var batches, rowsPer, lookupMs, insertMs, flushMs float64
	if err := conn.QueryRow(context.Background(), "SELECT toFloat64(count()), avg(events_inserted), avg(lookup_ms), avg(insert_ms), avg(flush_ms) FROM "+chcfg.Database+".pipeline_batches").
		Scan(&batches, &rowsPer, &lookupMs, &insertMs, &flushMs); err != nil {
		b.Fatal(err)
	}
	b.Logf("flushes: %.0f, per flush: %.0f rows inserted, lookup %.0f ms, insert %.0f ms, whole flush %.0f ms", batches, rowsPer, lookupMs, insertMs, flushMs)

	// The floor, same topic, same rows, blocks and INSERTs of the
	// processor's default sizes (a 12 MiB batch is ~6 000 rows).
	rows := floorRows(b, g, stories, kcfg.RawTopic)
	if uint64(len(rows)) != want {
		b.Fatalf("floor rows: %d, want %d", len(rows), want)
	}
	floor := benchFloor(b, kcfg, chcfg, rows, total, 6_000, DefaultConfig().InsertRows)
	rows = nil

	b.ReportMetric(proc.cpuPerEvent(), "cpu-µs/event")
	b.ReportMetric(floor.cpuPerEvent(), "floor-cpu-µs/event")
	b.ReportMetric(proc.rate(), "events/s")
	b.ReportMetric(floor.rate(), "floor-events/s")
	b.ReportMetric(proc.rate()/floor.rate()*100, "%-of-floor")
	b.ReportMetric(rss, "peak-RSS-MiB")
	b.Logf("processor: %d webhooks → %d events in %s = %.0f events/s, %.1f CPU µs/event (%s CPU), peak RSS %.0f MiB; floor: %s = %.0f events/s, %.1f CPU µs/event; processor at %.0f%% of the floor",
		total, want, fmtDur(took), proc.rate(), proc.cpuPerEvent(), cpu, rss, fmtDur(floor.took), floor.rate(), floor.cpuPerEvent(), proc.rate()/floor.rate()*100)
	fmt.Fprintf(os.Stderr, "BENCH processor webhooks=%d events=%d took=%s events/s=%.0f cpu_us/event=%.1f rss_mib=%.0f floor_took=%s floor_events/s=%.0f floor_cpu_us/event=%.1f of_floor=%.0f%%\n",
		total, want, took, proc.rate(), proc.cpuPerEvent(), rss, floor.took, floor.rate(), floor.cpuPerEvent(), proc.rate()/floor.rate()*100)

	if os.Getenv("LCPIPE_BENCH_CEILINGS") == "1" {
		// Ceilings: the same rows straight into an empty database, timing
		// the insert calls only: one 100 000-row block per INSERT ("big"),
		// and 100 000-row INSERTs sent as 12 500-row blocks ("streamed").
		big := benchCeiling(b, chcfg, "ceiling", g, stories, kcfg.RawTopic, 100_000)
		streamed := benchCeiling(b, chcfg, "ceilstream", g, stories, kcfg.RawTopic, 12_500)
		b.ReportMetric(max(big, streamed), "ceiling-rows/s")
		b.Logf("direct insert ceilings: %.0f rows/s (100k-row blocks), %.0f rows/s (100k-row INSERTs in 12.5k-row blocks)", big, streamed)
	}
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
