package erase

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/lcpipe/lcpipe/dashboards"
	"github.com/lcpipe/lcpipe/erase/erasetest"
	"github.com/lcpipe/lcpipe/internal/mutation"
	"github.com/lcpipe/lcpipe/internal/testenv"
	"github.com/lcpipe/lcpipe/schema"
)

func TestTargetValidate(t *testing.T) {
	tests := []struct {
		t     Target
		want  string
		scope string
	}{
		{Target{Organization: "o"}, "", "organization"},
		{Target{Organization: "o", Customer: "c"}, "", "customer"},
		{Target{Organization: "o", Chat: "c"}, "", "chat"},
		{Target{Customer: "c"}, "organization is required", "customer"},
		{Target{Organization: " "}, "organization is required", "organization"},
		{Target{Organization: "o", Customer: "c", Chat: "x"}, "not both", "customer"},
	}
	for _, tt := range tests {
		err := tt.t.Validate()
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("Validate(%+v) = %v, want %q", tt.t, err, tt.want)
		}
		if got := tt.t.Scope(); got != tt.scope {
			t.Errorf("Scope(%+v) = %s, want %s", tt.t, got, tt.scope)
		}
	}
}

// TestGoneTable: a table dropped while erase runs (a settler's staging
// table) is no error: its rows are gone.
func TestGoneTable(t *testing.T) {
	cfg := testenv.ClickHouseConfig(t)
	conn := testenv.ClickHouse(t, cfg)
	ctx := context.Background()
	if err := conn.Exec(ctx, "CREATE DATABASE "+cfg.Database); err != nil {
		t.Fatal(err)
	}
	_, err := countRows(ctx, conn, cfg.Database, "threads_settled_stage_1_abc", "organization_id = 'o'", nil)
	if !gone(err) {
		t.Fatalf("count of a missing table: %v, want UNKNOWN_TABLE", err)
	}
	err = mutation.Delete(ctx, conn, mutation.Options{Database: cfg.Database}, "missing", []string{"1"})
	if !gone(err) {
		t.Fatalf("delete from a missing table: %v, want UNKNOWN_TABLE", err)
	}
	if gone(fmt.Errorf("other")) || gone(nil) {
		t.Fatal("gone of another error")
	}
}

func TestSelectRows(t *testing.T) {
	tbl := func(cols ...string) table {
		m := map[string]bool{}
		for _, c := range cols {
			m[c] = true
		}
		return table{name: "t", cols: m}
	}
	events := tbl("organization_id", "chat_id", "thread_id", "customer_id", "author_id", "requester_id", "payload", "properties")
	customer := Target{Organization: "o", Customer: "cust-0001"}
	chat := Target{Organization: "o", Chat: "C1"}
	org := Target{Organization: "o"}
	ids := scope{chats: []string{"C1"}, threads: []string{"T1", "T2"}}
	tests := []struct {
		name   string
		t      table
		target Target
		s      scope
		by     string // "" : kept
	}{
		{"events, customer", events, customer, ids, "chat_id thread_id customer_id author_id requester_id payload properties"},
		{"events, chat", events, chat, ids, "chat_id thread_id"},
		{"events, organization", events, org, scope{}, "organization_id"},
		{"thread_state: by thread only", tbl("organization_id", "thread_id"), customer, ids, "thread_id"},
		{"messages", tbl("organization_id", "chat_id", "thread_id", "event_id", "author_id"), customer, ids, "chat_id thread_id author_id"},
		{"webhook counts kept for a customer", tbl("organization_id", "action"), customer, ids, ""},
		{"webhook counts deleted for the organization", tbl("organization_id", "action"), org, scope{}, "organization_id"},
		{"no organization column", tbl("chat_id", "instance"), org, scope{}, ""},
		{"customer without chats: by customer", events, customer, scope{}, "customer_id author_id requester_id payload properties"},
		{"short customer id: no payload search", events, Target{Organization: "o", Customer: "c1"}, scope{}, "customer_id author_id requester_id"},
		{"chat without threads", events, chat, scope{chats: []string{"C1"}}, "chat_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			by, base, terms := selectRows(tt.t, tt.target, tt.s)
			if got := strings.Join(by, " "); got != tt.by {
				t.Fatalf("by %q, want %q", got, tt.by)
			}
			if tt.by == "" {
				if base != "" {
					t.Fatalf("kept table has a condition %q", base)
				}
				return
			}
			if base != "organization_id = 'o'" {
				t.Fatalf("base %q", base)
			}
			if tt.target.Scope() == "organization" && len(terms) != 0 {
				t.Fatalf("organization erase with terms %v", terms)
			}
		})
	}
}

// The test data: two organizations with customers 0..4 each; customer i
// of either organization has the same id (a person known to both), its own
// chat with two threads (incoming_chat, a customer and an agent message,
// a membership change requested by the customer, chat_deactivated), a
// rating sent on the chat, and an event outside the chat that names the
// customer in its body only. Agents change routing status.
var day0 = time.Date(2026, 3, 10, 0, 0, 0, 0, time.UTC)

type row struct {
	eventID, org, action, kind                       string
	at                                               time.Time
	chat, thread, ref, typ, author, authorType, cust string
	requester                                        string
	createdMS                                        uint64
	agent, status                                    string
	score, hasScore                                  int
	payload                                          string
	srcIndex                                         uint16
}

const rowColumns = "event_id, organization_id, action, kind, occurred_at, occurred_at_ms, received_at, received_at_ms, chat_id, thread_id, event_ref, event_type, author_id, author_type, customer_id, requester_id, thread_created_at_ms, agent_id, routing_status, rating_score, rating_has_score, payload, src_index"

func customerID(i int) string { return fmt.Sprintf("0000cafe-0000-4000-8000-%012d", i) }
func chatID(org string, i int) string {
	return fmt.Sprintf("chat-%s-%d", org, i)
}
func threadID(org string, i, k int) string { return fmt.Sprintf("thr-%s-%d-%d", org, i, k) }

func testRows() []row {
	var out []row
	for _, org := range []string{"org-a", "org-b"} {
		for i := 0; i < 5; i++ {
			cust, chat := customerID(i), chatID(org, i)
			for k := 0; k < 2; k++ {
				th := threadID(org, i, k)
				s := day0.Add(time.Duration(k)*26*time.Hour + time.Duration(i)*7*time.Minute)
				id := func(what string) string { return fmt.Sprintf("%s-%s", what, th) }
				out = append(out,
					row{eventID: id("start"), org: org, action: "incoming_chat", kind: "thread_started", at: s, chat: chat, thread: th, cust: cust, createdMS: uint64(s.UnixMilli()),
						payload: fmt.Sprintf(`{"chat":{"id":%q,"users":[{"id":%q,"type":"customer"}]}}`, chat, cust)},
					row{eventID: id("cmsg"), org: org, action: "incoming_event", kind: "event", at: s.Add(time.Minute), chat: chat, thread: th, ref: id("ev1"), typ: "message", author: cust, authorType: "customer"},
					row{eventID: id("amsg"), org: org, action: "incoming_event", kind: "event", at: s.Add(2 * time.Minute), chat: chat, thread: th, ref: id("ev2"), typ: "message", author: "agent@example.com", authorType: "agent"},
					row{eventID: id("added"), org: org, action: "user_added_to_chat", kind: "user_added", at: s.Add(90 * time.Second), chat: chat, thread: th, agent: "agent@example.com", requester: cust},
					row{eventID: id("end"), org: org, action: "chat_deactivated", kind: "chat_deactivated", at: s.Add(10 * time.Minute), chat: chat, thread: th},
				)
			}
			out = append(out,
				row{eventID: fmt.Sprintf("rating-%s-%d", org, i), org: org, action: "chat_properties_updated", kind: "rating", at: day0.Add(26*time.Hour + time.Duration(i)*7*time.Minute + 20*time.Minute),
					chat: chat, score: 1, hasScore: 1},
				row{eventID: fmt.Sprintf("fields-%s-%d", org, i), org: org, action: "customer_session_fields_updated", kind: "customer", at: day0.Add(3 * time.Hour),
					payload: fmt.Sprintf(`{"id":%q,"session_fields":[{"plan":"pro"}]}`, cust)},
			)
		}
		out = append(out, row{eventID: "status-" + org, org: org, action: "routing_status_set", kind: "routing_status", at: day0.Add(time.Hour), agent: "agent@example.com", status: "accepting_chats"})
	}
	return out
}

func insertRows(ctx context.Context, conn driver.Conn, db string, rows []row) error {
	b, err := conn.PrepareBatch(ctx, "INSERT INTO "+db+".events ("+rowColumns+")")
	if err != nil {
		return err
	}
	for _, r := range rows {
		if err := b.Append(r.eventID, r.org, r.action, r.kind, r.at, uint64(r.at.UnixMilli()), r.at, uint64(r.at.UnixMilli()), r.chat, r.thread, r.ref, r.typ,
			r.author, r.authorType, r.cust, r.requester, r.createdMS, r.agent, r.status, int8(r.score), uint8(r.hasScore), r.payload, r.srcIndex); err != nil {
			return err
		}
	}
	return b.Send()
}

// insertSQL is the same rows as one INSERT ... VALUES (for chdb; 18.16
// takes inserts through PrepareBatch only).
func insertSQL(db string, rows []row) string {
	var vals []string
	for _, r := range rows {
		ms := r.at.UnixMilli()
		vals = append(vals, fmt.Sprintf("(%s, %s, %s, %s, toDateTime(%d, 'UTC'), %d, toDateTime(%d, 'UTC'), %d, %s, %s, %s, %s, %s, %s, %s, %s, %d, %s, %s, %d, %d, %s, %d)",
			q(r.eventID), q(r.org), q(r.action), q(r.kind), ms/1000, ms, ms/1000, ms, q(r.chat), q(r.thread), q(r.ref), q(r.typ), q(r.author), q(r.authorType),
			q(r.cust), q(r.requester), r.createdMS, q(r.agent), q(r.status), r.score, r.hasScore, q(r.payload), r.srcIndex))
	}
	return "INSERT INTO " + db + ".events (" + rowColumns + ") VALUES " + strings.Join(vals, ", ")
}

var q = mutation.Quote

// rowCounts counts the rows of every table of the database (FINAL-free:
// what is stored).
func rowCounts(t *testing.T, ctx context.Context, conn driver.Conn, db string) map[string]uint64 {
	t.Helper()
	rows, err := conn.Query(ctx, "SELECT name FROM system.tables WHERE database = ? AND engine LIKE '%MergeTree'", db)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for rows.Next() {
		var n string
		_ = rows.Scan(&n)
		names = append(names, n)
	}
	rows.Close()
	out := map[string]uint64{}
	for _, n := range names {
		var c uint64
		if err := conn.QueryRow(ctx, fmt.Sprintf("SELECT count() FROM %s.%s", db, n)).Scan(&c); err != nil {
			t.Fatal(err)
		}
		out[n] = c
	}
	return out
}

func mentions(t *testing.T, ctx context.Context, conn driver.Conn, db, org string, ids ...string) map[string]uint64 {
	t.Helper()
	m, err := erasetest.Mentions(ctx, conn, db, org, ids)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// subjectIDs are the ids that name customer i of org: the customer, the
// chat and its threads.
func subjectIDs(org string, i int) []string {
	return []string{customerID(i), chatID(org, i), threadID(org, i, 0), threadID(org, i, 1)}
}

// TestErase erases, on 18.16, a customer, a chat and an organization from
// a migrated database whose rollups are settled, and checks after each
// that nothing names them in any table (erasetest.Mentions looks at every
// table and id column, plain or aggregated, and the raw bodies), that the
// report's counts are those rows, that nobody else's rows moved (the same
// customer id in the other organization included), and that a settler
// pass does not bring anything back.
func TestErase(t *testing.T) {
	cfg := testenv.ClickHouseConfig(t)
	conn := testenv.ClickHouse(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	db := cfg.Database
	if _, err := schema.Migrate(ctx, conn, schema.Options{Database: db}, nil); err != nil {
		t.Fatal(err)
	}
	if err := insertRows(ctx, conn, db, testRows()); err != nil {
		t.Fatal(err)
	}
	settler := dashboards.NewSettler(conn, dashboards.SettlerConfig{Database: db, After: time.Hour, Now: func() time.Time { return day0.Add(4 * 24 * time.Hour) }})
	t.Cleanup(func() { settler.Close(context.Background()) })
	settle := func() {
		t.Helper()
		if _, err := settler.Pass(ctx); err != nil {
			t.Fatal(err)
		}
	}
	settle()
	tables, err := erasetest.Tables(ctx, conn, db)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"events", "thread_state", "messages", "agent_status", "chat_ratings", "chat_threads", "threads_settled"} {
		if !slices.Contains(tables, want) {
			t.Fatalf("erasetest looks at %v, not at %s", tables, want)
		}
	}
	o := Options{Database: db}

	// Dry run of customer 0 of org-a: counts, nothing deleted.
	target := Target{Organization: "org-a", Customer: customerID(0)}
	before := rowCounts(t, ctx, conn, db)
	named := mentions(t, ctx, conn, db, "org-a", subjectIDs("org-a", 0)...)
	otherOrg := mentions(t, ctx, conn, db, "org-b", subjectIDs("org-b", 0)...)
	want := []string{"chat_ratings", "chat_threads", "events", "messages", "thread_state", "threads_settled"}
	if got := slices.Sorted(maps.Keys(named)); !slices.Equal(got, want) || !maps.Equal(named, otherOrg) {
		t.Fatalf("the customer should be in %v of each organization: %v, %v", want, named, otherOrg)
	}
	dry, err := Run(ctx, conn, Options{Database: db, DryRun: true}, target)
	if err != nil {
		t.Fatal(err)
	}
	if dry.Chats != 1 || dry.Threads != 2 || !maps.Equal(rowCounts(t, ctx, conn, db), before) {
		t.Fatalf("dry run: %d chats, %d threads, or rows changed", dry.Chats, dry.Threads)
	}
	checkMatched := func(rep *Report, named map[string]uint64) {
		t.Helper()
		for _, tb := range rep.Tables {
			if tb.Matched != named[tb.Table] {
				t.Errorf("%s: erase matched %d rows, %d rows name the target", tb.Table, tb.Matched, named[tb.Table])
			}
		}
		for tb, n := range named {
			if !slices.ContainsFunc(rep.Tables, func(x Table) bool { return x.Table == tb }) {
				t.Errorf("%s: %d rows name the target but erase does not look at it (kept: %v)", tb, n, rep.Kept)
			}
		}
	}
	checkMatched(dry, named)
	kept := map[string]bool{}
	for _, k := range dry.Kept {
		kept[k.Table] = true
	}
	for _, tb := range []string{"webhook_minutes", "webhook_hours", "agent_status", "pipeline_batches", "rollup_days", "schema_migrations"} {
		if !kept[tb] {
			t.Errorf("%s should be reported as kept: %v", tb, dry.Kept)
		}
	}

	// The erase.
	rep, err := Run(ctx, conn, o, target)
	if err != nil {
		t.Fatal(err)
	}
	checkMatched(rep, named)
	if rep.Remaining() != 0 || rep.Matched() != dry.Matched() {
		t.Fatalf("erase left %d rows, matched %d (dry run %d)", rep.Remaining(), rep.Matched(), dry.Matched())
	}
	if m := mentions(t, ctx, conn, db, "org-a", subjectIDs("org-a", 0)...); len(m) > 0 {
		t.Fatalf("after the erase, rows still name the customer: %v", m)
	}
	if m := mentions(t, ctx, conn, db, "org-b", subjectIDs("org-b", 0)...); !maps.Equal(m, otherOrg) {
		t.Fatalf("the same customer in org-b: %v before, %v after", otherOrg, m)
	}
	after := rowCounts(t, ctx, conn, db)
	for tb, n := range before {
		if want := n - named[tb]; after[tb] != want && !kept[tb] {
			t.Errorf("%s: %d rows after, want %d (%d before, %d erased): others' rows moved", tb, after[tb], want, n, named[tb])
		}
	}
	// The settler rebuilds the changed days; nothing comes back.
	settle()
	if m := mentions(t, ctx, conn, db, "org-a", subjectIDs("org-a", 0)...); len(m) > 0 {
		t.Fatalf("after a settler pass, rows name the customer again: %v", m)
	}
	if n := rowCounts(t, ctx, conn, db)["threads_settled"]; n != after["threads_settled"] {
		t.Fatalf("threads_settled: %d rows after the settler, %d after the erase", n, after["threads_settled"])
	}

	// A chat: customer 1's chat of org-a (its customer's other rows stay).
	chatNamed := mentions(t, ctx, conn, db, "org-a", subjectIDs("org-a", 1)[1:]...)
	rep, err = Run(ctx, conn, o, Target{Organization: "org-a", Chat: chatID("org-a", 1)})
	if err != nil {
		t.Fatal(err)
	}
	checkMatched(rep, chatNamed)
	if m := mentions(t, ctx, conn, db, "org-a", subjectIDs("org-a", 1)[1:]...); len(m) > 0 {
		t.Fatalf("after erasing the chat, rows still name it or its threads: %v", m)
	}
	if m := mentions(t, ctx, conn, db, "org-a", customerID(1)); m["events"] != 1 {
		t.Fatalf("the customer's event outside the chat should stay: %v", m)
	}

	// The organization org-b: every row with its organization_id, the
	// webhook counts included; org-a untouched.
	before = rowCounts(t, ctx, conn, db)
	rep, err = Run(ctx, conn, o, Target{Organization: "org-b"})
	if err != nil {
		t.Fatal(err)
	}
	var orgTables []string
	for _, tb := range rep.Tables {
		orgTables = append(orgTables, tb.Table)
		var n uint64
		if err := conn.QueryRow(ctx, fmt.Sprintf("SELECT count() FROM %s.%s WHERE organization_id = 'org-b'", db, tb.Table)).Scan(&n); err != nil || n != 0 {
			t.Errorf("%s: %d rows of org-b left (%v)", tb.Table, n, err)
		}
		if tb.Matched == 0 && !strings.Contains(tb.Table, "_stage_") {
			t.Errorf("%s: nothing of org-b matched", tb.Table)
		}
	}
	for _, want := range []string{"webhook_minutes", "webhook_hours", "agent_status", "threads_settled", "thread_state", "events"} {
		if !slices.Contains(orgTables, want) {
			t.Errorf("organization erase skipped %s (erased %v)", want, orgTables)
		}
	}
	after = rowCounts(t, ctx, conn, db)
	for _, tb := range rep.Tables {
		if after[tb.Table] != before[tb.Table]-tb.Matched {
			t.Errorf("%s: %d rows after, want %d: org-a's rows moved", tb.Table, after[tb.Table], before[tb.Table]-tb.Matched)
		}
	}
	settle()

	// Again: nothing left, nothing to do, no error.
	for _, tg := range []Target{target, {Organization: "org-b"}} {
		rep, err = Run(ctx, conn, o, tg)
		if err != nil || rep.Matched() != 0 {
			t.Fatalf("second erase of %+v: matched %d, %v", tg, rep.Matched(), err)
		}
	}
}

// TestStatementsOnCurrentClickHouse runs what erase sends, built by the
// same functions, on the current engine (chdb) over the same data: the
// resolution SELECTs, the counts and the packed ALTER TABLE ... DELETE
// statements (with mutations_sync, as the helper cannot poll), and checks
// that nothing names the customer afterwards in the tables erase covers.
func TestStatementsOnCurrentClickHouse(t *testing.T) {
	ms, err := schema.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	setup := []testenv.ChdbStatement{{SQL: "CREATE DATABASE IF NOT EXISTS lc"}}
	for _, m := range ms {
		ss, err := m.Statements(schema.Options{Database: "lc"})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range ss {
			setup = append(setup, testenv.ChdbStatement{SQL: s})
		}
	}
	setup = append(setup, testenv.ChdbStatement{SQL: insertSQL("lc", testRows())})
	// First session: the tables and String columns as the engine has them.
	res := testenv.RunChdb(t, true, append(setup,
		testenv.ChdbStatement{SQL: "SELECT c.table, c.name FROM system.columns AS c WHERE c.database = 'lc' AND c.type = 'String' AND c.table IN (SELECT name FROM system.tables WHERE database = 'lc' AND engine LIKE '%MergeTree')", Format: "TabSeparated"})...)
	if len(res) != len(setup)+1 {
		t.Fatalf("chdb ran %d of %d statements; last: %+v", len(res), len(setup)+1, res[len(res)-1])
	}
	byName := map[string]*table{}
	for _, line := range strings.Split(strings.TrimSpace(res[len(res)-1].Output), "\n") {
		f := strings.Split(line, "\t")
		if byName[f[0]] == nil {
			byName[f[0]] = &table{name: f[0], cols: map[string]bool{}}
		}
		byName[f[0]].cols[f[1]] = true
	}
	target := Target{Organization: "org-a", Customer: customerID(0)}
	ids := scope{chats: []string{chatID("org-a", 0)}, threads: []string{threadID("org-a", 0, 0), threadID("org-a", 0, 1)}}
	var stmts []testenv.ChdbStatement
	type check struct {
		i    int
		want string
	}
	var checks []check
	tsv := func(q, want string) {
		checks = append(checks, check{len(setup) + len(stmts), want})
		stmts = append(stmts, testenv.ChdbStatement{SQL: q, Format: "TabSeparated"})
	}
	tsv(chatsSQL("lc", *byName["events"], target), ids.chats[0]+"\n")
	tsv(threadsSQL("lc", "events", "org-a", ids.chats)+" ORDER BY thread_id", strings.Join(ids.threads, "\n")+"\n")
	var names []string
	for n := range byName {
		names = append(names, n)
	}
	slices.Sort(names)
	deleted := 0
	for _, n := range names {
		_, base, terms := selectRows(*byName[n], target, ids)
		if base == "" {
			continue
		}
		stmts = append(stmts, testenv.ChdbStatement{SQL: countSQL("lc", n, base, terms), Format: "TabSeparated"})
		for _, w := range mutation.Pack(base, terms, 0) {
			stmts = append(stmts, testenv.ChdbStatement{SQL: mutation.DeleteSQL("lc", n, w) + " SETTINGS mutations_sync = 2"})
		}
		tsv(countSQL("lc", n, base, terms), "0\n")
		deleted++
	}
	if deleted != 6 {
		t.Fatalf("only %d tables to erase from: %v", deleted, names)
	}
	// Independently of selectRows: the aggregated thread rows are gone too.
	tsv("SELECT count() FROM lc.thread_state WHERE organization_id = 'org-a' AND (finalizeAggregation(customer_id) = "+q(customerID(0))+" OR finalizeAggregation(chat_id) = "+q(ids.chats[0])+")", "0\n")
	tsv("SELECT count() FROM lc.events WHERE position(payload, "+q(customerID(0))+") > 0 AND organization_id = 'org-a'", "0\n")
	tsv("SELECT count() FROM lc.events WHERE customer_id = "+q(customerID(0))+" AND organization_id = 'org-b'", "2\n")
	// An organization: every row of it, in a table a customer erase keeps.
	_, base, terms := selectRows(*byName["webhook_minutes"], Target{Organization: "org-b"}, scope{})
	if len(terms) != 0 {
		t.Fatalf("organization erase with terms %v", terms)
	}
	stmts = append(stmts, testenv.ChdbStatement{SQL: mutation.DeleteSQL("lc", "webhook_minutes", base) + " SETTINGS mutations_sync = 2"})
	tsv("SELECT countIf(organization_id = 'org-b'), countIf(organization_id = 'org-a') > 0 FROM lc.webhook_minutes", "0\t1\n")
	res = testenv.RunChdb(t, true, append(setup, stmts...)...)
	if len(res) != len(setup)+len(stmts) {
		t.Fatalf("chdb ran %d of %d statements; last: %+v", len(res), len(setup)+len(stmts), res[len(res)-1])
	}
	for _, c := range checks {
		if res[c.i].Output != c.want {
			t.Errorf("%.120s\n= %q, want %q", stmts[c.i-len(setup)].SQL, res[c.i].Output, c.want)
		}
	}
}
