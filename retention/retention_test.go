package retention

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/lcpipe/lcpipe/dashboards"
	"github.com/lcpipe/lcpipe/internal/testenv"
	"github.com/lcpipe/lcpipe/schema"
)

func TestHorizon(t *testing.T) {
	tests := []struct {
		now  string
		days int
		want string
	}{
		{"2026-02-21T12:00:00Z", 50, "2026-01-01"}, // cutoff Jan 2: January is not over before it
		{"2026-02-21T12:00:00Z", 20, "2026-02-01"}, // cutoff Feb 1 12:00
		{"2026-03-01T00:00:00Z", 28, "2026-02-01"}, // cutoff exactly Feb 1
		{"2026-01-10T00:00:00Z", 30, "2025-12-01"}, // across a year
		{"2026-01-10T23:00:00+05:00", 0, "2026-01-01"},
	}
	for _, tt := range tests {
		now, _ := time.Parse(time.RFC3339, tt.now)
		if got := Horizon(now, tt.days).Format(time.DateOnly); got != tt.want {
			t.Errorf("Horizon(%s, %d) = %s, want %s", tt.now, tt.days, got, tt.want)
		}
	}
}

func TestPartitionEnd(t *testing.T) {
	tests := []struct {
		daily bool
		id    string
		want  string
		ok    bool
	}{
		{false, "202512", "2026-01-01", true},
		{false, "202602", "2026-03-01", true},
		{true, "20251231", "2026-01-01", true},
		{true, "20260228", "2026-03-01", true},
		{false, "all", "", false},
		{true, "202512", "", false},
	}
	for _, tt := range tests {
		end, ok := partitionEnd(table{monthly: !tt.daily, daily: tt.daily}, tt.id)
		if ok != tt.ok || ok && end.Format(time.DateOnly) != tt.want {
			t.Errorf("partitionEnd(%s) = %s %v, want %s %v", tt.id, end.Format(time.DateOnly), ok, tt.want, tt.ok)
		}
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		c    Config
		want string
	}{
		{DefaultConfig(), ""},
		{Config{Days: 30, Interval: time.Hour}, ""},
		{Config{Days: -1, Interval: time.Hour}, "RETENTION_DAYS"},
		{Config{Days: 30}, ""}, // the default interval
		{Config{Days: 30, Interval: -time.Hour}, "RETENTION_INTERVAL"},
	}
	for _, tt := range tests {
		err := tt.c.Validate()
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("Validate(%+v) = %v, want %q", tt.c, err, tt.want)
		}
	}
}

func TestWithDefaults(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	tests := []struct {
		name         string
		in           Config
		wantInterval time.Duration
		wantLog      *slog.Logger
	}{
		{"zero", Config{}, time.Hour, nil},
		{"set", Config{Interval: time.Minute, Log: log}, time.Minute, log},
	}
	for _, tt := range tests {
		got := tt.in.withDefaults()
		if got.Interval != tt.wantInterval || got.Now == nil || got.Log == nil || tt.wantLog != nil && got.Log != tt.wantLog {
			t.Errorf("%s: withDefaults() = interval %s, now set %v, log %p; want %s, true, %p", tt.name, got.Interval, got.Now != nil, got.Log, tt.wantInterval, tt.wantLog)
		}
	}
}

// The test data: from base, threads every day (three a day, one chat
// each: incoming_chat, a customer message, chat_deactivated), a routing
// status change and a pipeline_batches row a day; and the chat that
// crosses the horizon: a thread that starts on 2025-12-31, a rating sent
// on the chat on 2026-01-01 (it counts for that thread) and the chat's
// next thread on 2026-01-03; and a rating on an old chat in December.
var (
	base = time.Date(2025, 12, 20, 0, 0, 0, 0, time.UTC)
	days = 32 // to 2026-01-20
	now  = time.Date(2026, 1, 21, 12, 0, 0, 0, time.UTC)
	// keep 15 days as of now: the cutoff is 2026-01-06, the horizon 2026-01-01.
	keep = 15
)

// fillSQL inserts the test data into db (18.16 and current servers).
func fillSQL(db string) []string {
	cols := "event_id, organization_id, action, kind, occurred_at, occurred_at_ms, received_at, received_at_ms, chat_id, thread_id, event_ref, event_type, author_id, author_type, customer_id, thread_created_at_ms, agent_id, routing_status, rating_score, rating_has_score"
	threads := fmt.Sprintf("(SELECT number AS n, toUInt64(%d + intDiv(number, 3) * 86400000 + (number %% 3) * 18000000 + 600000) AS s FROM numbers(%d))", base.UnixMilli(), days*3)
	row := func(id, action, kind, at, chat, thread, ref, typ, author, authorType, customer, created, agent, status, score, hasScore string) string {
		return fmt.Sprintf("SELECT %s, 'org', %s, %s, toDateTime(intDiv(%s, 1000), 'UTC'), %s, toDateTime(intDiv(%s, 1000), 'UTC'), %s, %s, %s, %s, %s, %s, %s, %s, toUInt64(%s), %s, %s, toInt8(%s), toUInt8(%s)",
			id, action, kind, at, at, at, at, chat, thread, ref, typ, author, authorType, customer, created, agent, status, score, hasScore)
	}
	ins := func(sel, from string) string {
		return fmt.Sprintf("INSERT INTO %s.events (%s) %s FROM %s", db, cols, sel, from)
	}
	one := func(sel string) string { return fmt.Sprintf("INSERT INTO %s.events (%s) %s", db, cols, sel) }
	ms := func(s string) string {
		t, _ := time.Parse(time.DateTime, s)
		return fmt.Sprint(t.UnixMilli())
	}
	return []string{
		ins(row("concat('start-', toString(n))", "'incoming_chat'", "'thread_started'", "s", "concat('chat-', toString(n))", "concat('thread-', toString(n))",
			"''", "''", "''", "''", "concat('cust-', toString(n))", "s", "''", "''", "0", "0"), threads),
		ins(row("concat('msg-', toString(n))", "'incoming_event'", "'event'", "s + 60000", "concat('chat-', toString(n))", "concat('thread-', toString(n))",
			"concat('ev-', toString(n))", "'message'", "concat('cust-', toString(n))", "'customer'", "''", "0", "''", "''", "0", "0"), threads),
		ins(row("concat('end-', toString(n))", "'chat_deactivated'", "'chat_deactivated'", "s + 600000", "concat('chat-', toString(n))", "concat('thread-', toString(n))",
			"''", "''", "''", "''", "''", "0", "''", "''", "0", "0"), threads),
		ins(row("concat('status-', toString(n))", "'routing_status_set'", "'routing_status'", "s", "''", "''",
			"''", "''", "''", "''", "''", "0", "'agent@example.com'", "'accepting_chats'", "0", "0"), threads+" WHERE n % 3 = 0"),
		one(row("'rated-start-dec'", "'incoming_chat'", "'thread_started'", ms("2025-12-31 23:00:00"), "'chat-rated'", "'thread-dec'",
			"''", "''", "''", "''", "'cust-rated'", ms("2025-12-31 23:00:00"), "''", "''", "0", "0")),
		one(row("'rated-rating'", "'chat_properties_updated'", "'rating'", ms("2026-01-01 00:30:00"), "'chat-rated'", "''",
			"''", "''", "''", "''", "''", "0", "''", "''", "1", "1")),
		one(row("'old-rating'", "'chat_properties_updated'", "'rating'", ms("2025-12-20 02:00:00"), "'chat-3'", "''",
			"''", "''", "''", "''", "''", "0", "''", "''", "0", "1")),
		one(row("'rated-start-jan'", "'incoming_chat'", "'thread_started'", ms("2026-01-03 10:00:00"), "'chat-rated'", "'thread-jan'",
			"''", "''", "''", "''", "'cust-rated'", ms("2026-01-03 10:00:00"), "''", "''", "0", "0")),
		fmt.Sprintf("INSERT INTO %s.pipeline_batches (flushed_at, flushed_at_ms, instance) SELECT toDateTime(intDiv(ms, 1000), 'UTC'), ms, 'test' FROM (SELECT toUInt64(%d + number * 86400000) AS ms FROM numbers(%d))",
			db, base.UnixMilli(), days),
	}
}

type partitions map[string]map[string]uint64 // table -> partition id -> rows

func snapshot(t *testing.T, ctx context.Context, conn driver.Conn, db string) partitions {
	t.Helper()
	rows, err := conn.Query(ctx, "SELECT table, partition_id, sum(rows) FROM system.parts WHERE database = ? AND active AND table NOT LIKE '%_stage_%' GROUP BY table, partition_id", db)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := partitions{}
	for rows.Next() {
		var tb, id string
		var n uint64
		if err := rows.Scan(&tb, &id, &n); err != nil {
			t.Fatal(err)
		}
		if out[tb] == nil {
			out[tb] = map[string]uint64{}
		}
		out[tb][id] = n
	}
	return out
}

func count(t *testing.T, ctx context.Context, conn driver.Conn, q string) uint64 {
	t.Helper()
	var n uint64
	if err := conn.QueryRow(ctx, q).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

// TestPassDropsWholeOldPartitions fills a migrated database on 18.16 with
// a month of data across a new year, settles the rollups, and runs a pass
// as of 2026-01-21 keeping 15 days: the horizon is 2026-01-01 (the cutoff,
// 2026-01-06, falls in January, which is kept whole). Every partition of
// every table that ends by the horizon is gone, every other one is
// untouched, the old rows of rollup_days and chat_threads are deleted but
// the thread row a chat rating after the horizon still needs, no table is
// left unclassified, and a settler pass afterwards does not write the
// dropped days back.
func TestPassDropsWholeOldPartitions(t *testing.T) {
	cfg := testenv.ClickHouseConfig(t)
	conn := testenv.ClickHouse(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	db := cfg.Database
	if _, err := schema.Migrate(ctx, conn, schema.Options{Database: db}, nil); err != nil {
		t.Fatal(err)
	}
	for _, q := range fillSQL(db) {
		if err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%.80s: %v", q, err)
		}
	}
	settler := dashboards.NewSettler(conn, dashboards.SettlerConfig{Database: db, After: time.Hour, Now: func() time.Time { return now }})
	t.Cleanup(func() { settler.Close(context.Background()) })
	if st, err := settler.Pass(ctx); err != nil || st.Days < 2*days-10 {
		t.Fatalf("settle: %+v %v", st, err)
	}
	janRating := fmt.Sprintf("SELECT toUInt64(rating + 1) FROM %s.threads WHERE thread_id = 'thread-jan'", db)
	if r := count(t, ctx, conn, janRating); r != 0 {
		t.Fatalf("before retention: the January thread has rating %d, want none (the rating is the December thread's)", int(r)-1)
	}
	settledKept := fmt.Sprintf("SELECT count() FROM %s.threads_settled WHERE started_at >= toDateTime('2026-01-01 00:00:00', 'UTC')", db)
	settledBefore := count(t, ctx, conn, settledKept)
	before := snapshot(t, ctx, conn, db)
	horizon := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

	dry, err := New(conn, Config{Database: db, Days: keep, DryRun: true, Now: func() time.Time { return now }}).Pass(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !dry.Horizon.Equal(horizon) || len(dry.Dropped) == 0 || len(dry.Skipped) > 0 {
		t.Fatalf("dry run: %+v", dry)
	}
	if after := snapshot(t, ctx, conn, db); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatal("the dry run changed partitions")
	}

	// Two buckets for one rated chat: the hashed clauses run too.
	defer func(n uint64) { keptPerBucket = n }(keptPerBucket)
	keptPerBucket = 1
	job := New(conn, Config{Database: db, Days: keep, Now: func() time.Time { return now }})
	st, err := job.Pass(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Skipped) > 0 {
		t.Fatalf("tables without a time partition or rule: %v", st.Skipped)
	}
	if fmt.Sprint(st.Dropped) != fmt.Sprint(dry.Dropped) || fmt.Sprint(st.Deleted) != fmt.Sprint(dry.Deleted) {
		t.Fatalf("the pass did other than the dry run said:\n%+v\n%+v", st, dry)
	}
	after := snapshot(t, ctx, conn, db)
	// Every table with data before, time-partitioned or not.
	want := []string{"agent_status", "chat_ratings", "chat_threads", "events", "messages", "pipeline_batches",
		"rollup_days", "schema_migrations", "thread_state", "threads_settled", "webhook_hours", "webhook_minutes"}
	var have []string
	for tb := range before {
		have = append(have, tb)
	}
	sort.Strings(have)
	if fmt.Sprint(have) != fmt.Sprint(want) {
		t.Fatalf("tables with data: %v, want %v", have, want)
	}
	dropped := map[string]bool{}
	for _, d := range st.Dropped {
		dropped[d.Table+"/"+d.Partition] = true
	}
	for tb, parts := range before {
		if tb == "chat_threads" || tb == "rollup_days" || tb == "schema_migrations" {
			continue
		}
		daily := tb == "threads_settled" || tb == "webhook_hours"
		oldParts := 0
		for id, n := range parts {
			end, ok := partitionEnd(table{daily: daily, monthly: !daily}, id)
			if !ok {
				t.Fatalf("%s: partition %s is not a time partition", tb, id)
			}
			switch {
			case !end.After(horizon):
				oldParts++
				if _, there := after[tb][id]; there || !dropped[tb+"/"+id] {
					t.Errorf("%s: partition %s (ends %s) should be dropped", tb, id, end.Format(time.DateOnly))
				}
			case after[tb][id] != n:
				t.Errorf("%s: partition %s (ends %s) had %d rows, now %d: should be untouched", tb, id, end.Format(time.DateOnly), n, after[tb][id])
			}
		}
		if oldParts == 0 || oldParts == len(parts) {
			t.Errorf("%s: %d of %d partitions old: the data should span the horizon", tb, oldParts, len(parts))
		}
	}
	// By row: old marks gone; old thread rows gone but the rated chat's.
	if n := count(t, ctx, conn, fmt.Sprintf("SELECT count() FROM %s.rollup_days WHERE day < toDate('2026-01-01')", db)); n != 0 {
		t.Errorf("rollup_days: %d rows before the horizon", n)
	}
	if n := count(t, ctx, conn, fmt.Sprintf("SELECT count() FROM %s.rollup_days WHERE day >= toDate('2026-01-01')", db)); n == 0 {
		t.Error("rollup_days: no rows after the horizon")
	}
	if n := count(t, ctx, conn, fmt.Sprintf("SELECT count() FROM %s.chat_threads WHERE started_ms < %d AND chat_id != 'chat-rated'", db, horizon.UnixMilli())); n != 0 {
		t.Errorf("chat_threads: %d old rows left", n)
	}
	if n := count(t, ctx, conn, fmt.Sprintf("SELECT count() FROM %s.chat_threads WHERE chat_id = 'chat-rated'", db)); n != 2 {
		t.Errorf("chat_threads: %d rows of the rated chat, want 2 (the December thread is the rating's)", n)
	}
	if r := count(t, ctx, conn, janRating); r != 0 {
		t.Errorf("after retention: the January thread has rating %d, want none", int(r)-1)
	}
	if n := count(t, ctx, conn, settledKept); n != settledBefore || n == 0 {
		t.Errorf("threads_settled after the horizon: %d rows, had %d", n, settledBefore)
	}

	// The settler, told the horizon, leaves the dropped days alone.
	settler2 := dashboards.NewSettler(conn, dashboards.SettlerConfig{Database: db, After: time.Hour,
		Now: func() time.Time { return now }, Horizon: func(n time.Time) time.Time { return Horizon(n, keep) }})
	t.Cleanup(func() { settler2.Close(context.Background()) })
	if _, err := settler2.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	for _, tb := range []string{"threads_settled", "webhook_hours"} {
		if n := count(t, ctx, conn, fmt.Sprintf("SELECT count() FROM system.parts WHERE database = '%s' AND table = '%s' AND active AND partition_id < '20260101'", db, tb)); n != 0 {
			t.Errorf("%s: the settler wrote back %d parts before the horizon", tb, n)
		}
	}
	if n := count(t, ctx, conn, settledKept); n != settledBefore {
		t.Errorf("threads_settled after the settler: %d rows, had %d", n, settledBefore)
	}

	// Again: nothing left to do.
	again, err := job.Pass(ctx)
	if err != nil || len(again.Dropped) > 0 || len(again.Deleted) > 0 {
		t.Fatalf("second pass: %+v %v", again, err)
	}
}

// TestStatementsOnCurrentClickHouse runs the statements a pass sends, as
// the functions build them, on the current engine (chdb) over the same
// data: the partition keys read as the pattern expects, partitions are
// dropped by id, the counts and the chat_threads clauses run and select
// what they must.
func TestStatementsOnCurrentClickHouse(t *testing.T) {
	ms, err := schema.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	stmts := []testenv.ChdbStatement{{SQL: "CREATE DATABASE IF NOT EXISTS lc"}}
	for _, m := range ms {
		ss, err := m.Statements(schema.Options{Database: "lc"})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range ss {
			stmts = append(stmts, testenv.ChdbStatement{SQL: s})
		}
	}
	for _, q := range fillSQL("lc") {
		stmts = append(stmts, testenv.ChdbStatement{SQL: q})
	}
	horizon := Horizon(now, keep)
	old := oldRows("chat_threads", horizon)
	mark := len(stmts)
	tsv := func(q string) testenv.ChdbStatement { return testenv.ChdbStatement{SQL: q, Format: "TabSeparated"} }
	stmts = append(stmts,
		tsv(tablesSQL("lc")),
		tsv(partitionsSQL("lc", "events")),
		testenv.ChdbStatement{SQL: dropSQL("lc", "events", "202512")},
		testenv.ChdbStatement{SQL: dropSQL("lc", "events", "202512")}, // gone already: no error
		tsv(partitionsSQL("lc", "events")),
		tsv(countOldSQL("lc", "chat_threads", horizon)),
		tsv(countOldSQL("lc", "rollup_days", horizon)),
		tsv(ratedChatsSQL("lc", horizon, 0)),
		tsv(ratedChatsSQL("lc", horizon, 3)),
	)
	for _, w := range chatThreadsWheres(old, [][]string{{"chat-rated"}}) {
		stmts = append(stmts, testenv.ChdbStatement{SQL: "ALTER TABLE lc.chat_threads DELETE WHERE " + w + " SETTINGS mutations_sync = 2"})
	}
	stmts = append(stmts, tsv("SELECT count(), countIf(chat_id = 'chat-rated') FROM lc.chat_threads WHERE "+old))
	res := testenv.RunChdb(t, true, stmts...)
	if len(res) != len(stmts) {
		t.Fatalf("chdb ran %d of %d statements; last: %+v", len(res), len(stmts), res[len(res)-1])
	}
	out := res[mark:]
	keys := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out[0].Output), "\n") {
		f := strings.SplitN(line, "\t", 2)
		keys[f[0]] = f[1]
	}
	for tb, want := range map[string]string{"events": "toYYYYMM", "thread_state": "toYYYYMM", "messages": "toYYYYMM", "agent_status": "toYYYYMM",
		"webhook_minutes": "toYYYYMM", "chat_ratings": "toYYYYMM", "pipeline_batches": "toYYYYMM", "threads_settled": "toYYYYMMDD", "webhook_hours": "toYYYYMMDD"} {
		m := timePartition.FindStringSubmatch(keys[tb])
		if m == nil || m[1] != want {
			t.Errorf("%s: partition key %q on the current engine, want %s(...)", tb, keys[tb], want)
		}
	}
	for _, tb := range []string{"chat_threads", "rollup_days", "schema_migrations"} {
		if timePartition.MatchString(keys[tb]) || !byRow[tb] {
			t.Errorf("%s: partition key %q, want a by-row table", tb, keys[tb])
		}
	}
	if !strings.HasPrefix(out[1].Output, "202512\t") || strings.Contains(out[4].Output, "202512") || !strings.Contains(out[4].Output, "202601\t") {
		t.Errorf("partitions of events before and after dropping 202512:\n%s\n%s", out[1].Output, out[4].Output)
	}
	// Threads started before the horizon: every day's three from Dec 20 to
	// Dec 31, and the rated chat's December thread (kept).
	oldThreads := 3 * int(horizon.Sub(base).Hours()/24)
	if got := strings.TrimSpace(out[5].Output); got != fmt.Sprint(oldThreads) {
		t.Errorf("old chat_threads rows to delete: %s, want %d", got, oldThreads)
	}
	if got := strings.TrimSpace(out[6].Output); got != "0" {
		t.Errorf("old rollup_days rows (none settled here): %s", got)
	}
	if got := strings.TrimSpace(out[7].Output); got != "1" {
		t.Errorf("rated chats with old threads: %s, want 1", got)
	}
	if !strings.HasPrefix(out[8].Output, "chat-rated\t") {
		t.Errorf("rated chats listed: %q", out[8].Output)
	}
	if got := strings.TrimSpace(res[len(res)-1].Output); got != "1\t1" {
		t.Errorf("old chat_threads rows after the deletes (all, rated chat's): %s, want 1 1", got)
	}
}
