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
		for _, tbl := range []string{"events", "thread_state", "messages", "agent_status", "webhook_minutes", "chat_ratings", "chat_threads"} {
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
//
// The database is settled as of benchEnd first (the Settler's default: days
// that ended more than an hour ago), so the last day is merged live and the
// days before it come from the rollups, as in a running pipeline.
func BenchmarkPanels(b *testing.B) {
	conn, db := benchDB(b)
	ctx := context.Background()
	now := benchNow(b, conn, db)
	settleBench(b, conn, db, now)
	var org string
	if err := conn.QueryRow(ctx, "SELECT any(organization_id) FROM "+db+".thread_state").Scan(&org); err != nil {
		b.Fatal(err)
	}
	ranges := []struct {
		name     string
		from, to time.Time
		org      string
	}{
		{"24h", now.Add(-24 * time.Hour), now, ""},
		{"24h_org", now.Add(-24 * time.Hour), now, org},
		{"7d", now.Add(-7 * 24 * time.Hour), now, ""},
		{"30d", now.Add(-benchSpan), now, ""},
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

// benchNow is the "now" of the panel benchmark: 59 minutes past the last
// hour with data, the worst time for the panels (the Settler settles
// threads that started before the previous whole hour, so the last ~2
// hours are merged live). Ranges end there.
func benchNow(b *testing.B, conn driver.Conn, db string) time.Time {
	b.Helper()
	var last time.Time
	if err := conn.QueryRow(context.Background(), "SELECT max(hour) FROM "+db+".thread_state").Scan(&last); err != nil {
		b.Fatal(err)
	}
	return last.UTC().Add(59 * time.Minute)
}

// settleBench rebuilds the benchmark database's rollups from scratch as
// of now (about 30 days) and logs how long that took.
func settleBench(b *testing.B, conn driver.Conn, db string, now time.Time) *Settler {
	b.Helper()
	ctx := context.Background()
	for _, t := range []string{"threads_settled", "webhook_hours", "rollup_days"} {
		if err := conn.Exec(ctx, "TRUNCATE TABLE "+db+"."+t); err != nil {
			b.Fatal(err)
		}
	}
	st := NewSettler(conn, SettlerConfig{Database: db, After: time.Hour, Now: func() time.Time { return now }})
	b.Cleanup(func() { st.Close(context.Background()) })
	ps, err := st.Pass(ctx)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("settler pass as of %s: %d days rebuilt in %s", now.Format(time.DateTime), ps.Days, ps.Took.Round(time.Millisecond))
	return st
}

// BenchmarkSettle measures the Settler on the 10M-event database: a pass
// that finds nothing changed (what runs every SETTLE_INTERVAL) and the
// rebuild of one day of each rollup (what a late webhook costs).
func BenchmarkSettle(b *testing.B) {
	conn, db := benchDB(b)
	ctx := context.Background()
	now := benchNow(b, conn, db)
	st := settleBench(b, conn, db, now)
	b.Run("pass-unchanged", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			ps, err := st.Pass(ctx)
			if err != nil || ps.Days != 0 {
				b.Fatalf("%+v %v", ps, err)
			}
		}
	})
	d := now.Truncate(day).Add(-7 * day)
	for _, r := range rollups {
		b.Run("rebuild-day/"+r.name, func(b *testing.B) {
			upto := d.Add(day)
			hours, err := st.sourceHours(ctx, r)
			if err != nil {
				b.Fatal(err)
			}
			byHour := map[int64]uint64{}
			for _, h := range hours {
				byHour[h.hour] = h.n
			}
			fp, src := fingerprint(byHour, d.Add(-r.before), d.Add(day+r.after), upto)
			for i := 0; i < b.N; i++ {
				if err := st.rebuild(ctx, r, d, upto, fp, src); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
