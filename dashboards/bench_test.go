package dashboards

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/lcpipe/lcpipe/internal/chconn"
	"github.com/lcpipe/lcpipe/internal/simulate"
	"github.com/lcpipe/lcpipe/processor"
	"github.com/lcpipe/lcpipe/schema"
)

// benchEvents is how many events rows the panel benchmark runs on.
const benchEvents = 10_000_000

// benchSpan is the time the benchmark's threads start in (ending at benchEnd).
const benchSpan = 30 * 24 * time.Hour

var benchEnd = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)

// benchDB returns a database holding at least benchEvents simulated events
// rows: BENCH_DB (default bench_dashboards_10m) on the shared server, kept
// between runs because filling it takes minutes. Rows go in directly
// (processor transform, PrepareBatch of 200k rows), not through Kafka.
func benchDB(b *testing.B) (driver.Conn, string) {
	b.Helper()
	ctx := context.Background()
	cfg := chconn.DefaultConfig()
	if a := os.Getenv("CLICKHOUSE_ADDR"); a != "" {
		cfg.Addr = []string{a}
	}
	cfg.Database = os.Getenv("BENCH_DB")
	if cfg.Database == "" {
		cfg.Database = "bench_dashboards_10m"
	}
	conn, err := chconn.Open(ctx, cfg)
	if err != nil {
		b.Fatalf("ClickHouse: %v (run make services-up)", err)
	}
	b.Cleanup(func() { conn.Close() })
	if _, err := schema.Migrate(ctx, conn, schema.Options{Database: cfg.Database}, nil); err != nil {
		var ce *schema.ChecksumError
		if !errors.As(err, &ce) {
			b.Fatal(err)
		}
		// A migration changed since the data was built: rebuild.
		if err := conn.Exec(ctx, "DROP DATABASE "+cfg.Database); err != nil {
			b.Fatal(err)
		}
		if _, err := schema.Migrate(ctx, conn, schema.Options{Database: cfg.Database}, nil); err != nil {
			b.Fatal(err)
		}
	}
	var n uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM "+cfg.Database+".events").Scan(&n); err != nil {
		b.Fatal(err)
	}
	if n >= benchEvents {
		return conn, cfg.Database
	}
	if n > 0 {
		for _, tbl := range []string{"events", "thread_state", "messages", "agent_status", "webhook_minutes"} {
			if err := conn.Exec(ctx, "TRUNCATE TABLE "+cfg.Database+"."+tbl); err != nil {
				b.Fatal(err)
			}
		}
	}
	start := time.Now()
	fillBench(b, conn, cfg.Database)
	if err := conn.QueryRow(ctx, "SELECT count() FROM "+cfg.Database+".events").Scan(&n); err != nil {
		b.Fatal(err)
	}
	b.Logf("filled %s with %d events in %s", cfg.Database, n, time.Since(start).Round(time.Second))
	return conn, cfg.Database
}

// fillBench streams simulated threads (uniform over benchSpan) into events
// until benchEvents rows are in, in chunks so memory stays small.
func fillBench(b *testing.B, conn driver.Conn, db string) {
	ctx := context.Background()
	scfg := simulate.DefaultConfig()
	scfg.Seed, scfg.Orgs, scfg.AgentsPerOrg, scfg.CustomersPerOrg = 99, 20, 25, 5000
	scfg.RetryRate, scfg.LateRate = 0, 0.05
	g, err := simulate.New(scfg)
	if err != nil {
		b.Fatal(err)
	}
	from := benchEnd.Add(-benchSpan)
	_, statuses := g.Statuses(from, benchEnd)
	// About 15.5 rows per thread: spread the threads evenly over the span.
	threads := benchEvents/15 + 1
	step := benchSpan / time.Duration(threads)
	var pending []processor.Row
	total := 0
	flush := func() {
		if len(pending) == 0 {
			return
		}
		if err := insertRows(ctx, conn, db, pending); err != nil {
			b.Fatalf("insert: %v", err)
		}
		total += len(pending)
		pending = pending[:0]
	}
	emit := func(rows []processor.Row) {
		pending = append(pending, rows...)
		if len(pending) >= 200_000 {
			flush()
		}
	}
	rowsOf(b, statuses, emit)
	at := from
	for total+len(pending) < benchEvents {
		var chunk []simulate.Delivery
		for i := 0; i < 5000; i++ {
			_, ds := g.Thread(at)
			chunk = append(chunk, ds...)
			at = at.Add(step)
		}
		sort.SliceStable(chunk, func(i, j int) bool { return chunk[i].At.Before(chunk[j].At) })
		rowsOf(b, chunk, emit)
	}
	flush()
}

// BenchmarkPanels runs every panel's query on 10M events (the whole 30-day
// range and the last day of it, no filter; and the last day for one
// organization), as the analyst user would through the viewer. Record
// ns/op per panel in BENCHMARKS.md; each must stay under 300 ms.
func BenchmarkPanels(b *testing.B) {
	conn, db := benchDB(b)
	ctx := context.Background()
	var org string
	if err := conn.QueryRow(ctx, "SELECT any(organization_id) FROM "+db+".thread_state").Scan(&org); err != nil {
		b.Fatal(err)
	}
	ranges := []struct {
		name     string
		from, to time.Time
		org      string
	}{
		{"24h", benchEnd.Add(-24 * time.Hour), benchEnd, ""},
		{"24h_org", benchEnd.Add(-24 * time.Hour), benchEnd, org},
		{"7d", benchEnd.Add(-7 * 24 * time.Hour), benchEnd, ""},
		{"30d", benchEnd.Add(-benchSpan), benchEnd, ""},
	}
	for _, rg := range ranges {
		for _, d := range All() {
			for _, p := range d.Panels {
				b.Run(fmt.Sprintf("%s/%s/%s", rg.name, d.UID, p.ID), func(b *testing.B) {
					from, to := rg.from.UnixMilli(), rg.to.UnixMilli()
					if panelScope(p.ID) == "flushed" {
						from, to = time.Now().Add(-24*time.Hour).UnixMilli(), time.Now().UnixMilli()
					}
					params := Params{DB: db, FromMS: from, ToMS: to, BucketS: Bucket(from, to), Org: rg.org, Group: -1}
					for i := 0; i < b.N; i++ {
						if _, err := Run(ctx, conn, p, params); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
		}
	}
}
