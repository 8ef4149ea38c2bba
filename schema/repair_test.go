package schema

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lcpipe/lcpipe/internal/testenv"
)

// TestRepairAfterFailedView: an INSERT whose view fails (its target table
// detached) is stored in events and in the views before it, not in the
// failed one. After the table is back, Repair of that insert makes every
// derived table agree with events event by event, writes each missing row
// once, and a second Repair (or one of a complete insert) writes nothing.
func TestRepairAfterFailedView(t *testing.T) {
	cfg := testenv.ClickHouseConfig(t)
	conn := testenv.ClickHouse(t, cfg)
	ctx := context.Background()
	db := cfg.Database
	if _, err := Migrate(ctx, conn, Options{Database: db}, nil); err != nil {
		t.Fatal(err)
	}
	views, err := ViewsOnEvents(ctx, conn, db)
	if err != nil {
		t.Fatal(err)
	}
	var known []string
	for _, d := range DerivedTables {
		known = append(known, d.View)
	}
	for _, v := range views {
		if !slices.Contains(known, v) {
			t.Fatalf("materialized view %s reads events but has no DerivedTables entry: Repair and CheckDerived would miss it", v)
		}
	}

	// insert writes one INSERT of 5 messages and 5 status changes.
	insert := func(id uint64, base time.Time) error {
		b, err := conn.PrepareBatch(ctx, "INSERT INTO "+db+".events (event_id, organization_id, action, kind, occurred_at, occurred_at_ms, received_at, received_at_ms, chat_id, thread_id, event_ref, event_type, author_id, author_type, agent_id, routing_status, insert_id)")
		if err != nil {
			return err
		}
		for i := 0; i < 5; i++ {
			at := base.Add(time.Duration(i) * time.Second)
			ms := uint64(at.UnixMilli())
			if err := b.Append(fmt.Sprintf("m%d_%d", id, i), "o", "incoming_event", "event", at, ms, at, ms,
				"C", fmt.Sprintf("T%d", id), fmt.Sprintf("E%d_%d", id, i), "message", "c@x", "customer", "", "", id); err != nil {
				return err
			}
			if err := b.Append(fmt.Sprintf("s%d_%d", id, i), "o", "routing_status_set", "routing_status", at, ms, at, ms,
				"", "", "", "", "", "", "a@x", []string{"accepting_chats", "not_accepting_chats"}[i%2], id); err != nil {
				return err
			}
		}
		return b.Send()
	}
	base := time.Date(2025, 3, 14, 9, 0, 0, 0, time.UTC)
	if err := insert(1, base); err != nil {
		t.Fatal(err)
	}
	check := func(wantOK bool) {
		t.Helper()
		bad, err := CheckDerived(ctx, conn, db)
		if err != nil {
			t.Fatal(err)
		}
		if wantOK && len(bad) > 0 {
			t.Fatalf("derived tables disagree with events: %v", bad)
		}
		if !wantOK && len(bad) == 0 {
			t.Fatal("a failed view went unnoticed by CheckDerived")
		}
	}
	check(true)

	// The view of messages fails: events and the views before it keep the rows.
	restore := testenv.BreakTable(t, conn, db, "messages")
	if err := insert(2, base.Add(time.Hour)); err == nil {
		t.Fatal("insert with a broken view target succeeded")
	}
	restore()
	var stored uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM "+db+".events WHERE insert_id = 2").Scan(&stored); err != nil || stored != 10 {
		t.Fatalf("events holds %d rows of the failed insert (%v); the test needs ClickHouse to keep them", stored, err)
	}
	check(false)

	res, err := Repair(ctx, conn, db, 2)
	if err != nil {
		t.Fatal(err)
	}
	if res["messages"] != 5 {
		t.Fatalf("repair wrote %v, want the 5 missing messages", res)
	}
	check(true)
	for _, id := range []uint64{2, 1, 0} {
		again, err := Repair(ctx, conn, db, id)
		if err != nil || again.Total() != 0 {
			t.Fatalf("repair of insert %d wrote %v (%v); want nothing", id, again, err)
		}
	}
	check(true)
}

// TestRepairOnCurrentClickHouse runs Repair's and CheckDerived's SQL, built
// from the view definitions as a current server shows them, on the current
// engine (chdb): the same failed-view story as on 18.16.
func TestRepairOnCurrentClickHouse(t *testing.T) {
	ms, err := Migrations()
	if err != nil {
		t.Fatal(err)
	}
	var migrations []testenv.ChdbStatement
	for _, m := range ms {
		stmts, err := m.Statements(Options{Database: "lc"})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range stmts {
			migrations = append(migrations, testenv.ChdbStatement{SQL: s})
		}
	}
	migrations = append([]testenv.ChdbStatement{{SQL: "CREATE DATABASE IF NOT EXISTS lc"}}, migrations...)

	// First session: the definitions and columns as the server has them.
	stmts := append([]testenv.ChdbStatement(nil), migrations...)
	for _, d := range DerivedTables {
		stmts = append(stmts,
			testenv.ChdbStatement{SQL: "SHOW CREATE TABLE lc." + d.View, Format: "TabSeparatedRaw"},
			testenv.ChdbStatement{SQL: "SELECT name FROM system.columns WHERE database = 'lc' AND table = '" + d.Table + "' AND default_kind NOT IN ('MATERIALIZED', 'ALIAS') ORDER BY position", Format: "TabSeparatedRaw"})
	}
	res := testenv.RunChdb(t, true, stmts...)
	if len(res) != len(stmts) {
		t.Fatalf("chdb ran %d of %d statements; last: %+v", len(res), len(stmts), res[len(res)-1])
	}
	defs := res[len(migrations):]

	row := func(id uint64, i int, msg bool) string {
		at := fmt.Sprintf("toDateTime('2025-03-14 0%d:00:0%d', 'UTC')", id, i)
		if msg {
			return fmt.Sprintf("SELECT 'm%d_%d' AS event_id, 'o' AS organization_id, 'incoming_event' AS action, 'event' AS kind, %s AS occurred_at, toUInt64(%d) AS occurred_at_ms, %s AS received_at, toUInt64(%d) AS received_at_ms, 'C' AS chat_id, 'T%d' AS thread_id, 'E%d_%d' AS event_ref, 'message' AS event_type, 'c@x' AS author_id, '' AS agent_id, '' AS routing_status, toUInt64(%d) AS insert_id",
				id, i, at, i, at, i, id, id, i, id)
		}
		return fmt.Sprintf("SELECT 's%d_%d', 'o', 'routing_status_set', 'routing_status', %s, toUInt64(%d), %s, toUInt64(%d), '', '', '', '', '', 'a@x', 'accepting_chats', toUInt64(%d)",
			id, i, at, i, at, i, id)
	}
	insert := func(id uint64) testenv.ChdbStatement {
		var sel []string
		for i := 0; i < 5; i++ {
			sel = append(sel, row(id, i, true), row(id, i, false))
		}
		q := "INSERT INTO lc.events (event_id, organization_id, action, kind, occurred_at, occurred_at_ms, received_at, received_at_ms, chat_id, thread_id, event_ref, event_type, author_id, agent_id, routing_status, insert_id) "
		for i, s := range sel {
			if i > 0 {
				q += " UNION ALL "
			}
			q += s
		}
		return testenv.ChdbStatement{SQL: q}
	}
	stmts = append(append([]testenv.ChdbStatement(nil), migrations...),
		insert(1),
		testenv.ChdbStatement{SQL: "RENAME TABLE lc.messages TO lc.messages_away"},
		testenv.ChdbStatement{SQL: "CREATE TABLE lc.messages (organization_id UInt8) ENGINE = Memory"},
		insert(2), // fails pushing into messages
		testenv.ChdbStatement{SQL: "DROP TABLE lc.messages"},
		testenv.ChdbStatement{SQL: "RENAME TABLE lc.messages_away TO lc.messages"},
		testenv.ChdbStatement{SQL: "SELECT count() FROM lc.events WHERE insert_id = 2", Format: "TabSeparatedRaw"})
	fixed := len(stmts)
	for i, d := range DerivedTables {
		cols := strings.Fields(defs[2*i+1].Output)
		count, ins, err := d.repairSQL("lc", defs[2*i].Output, cols, 2)
		if err != nil {
			t.Fatal(err)
		}
		exp, act, err := d.checkSQL("lc", defs[2*i].Output)
		if err != nil {
			t.Fatal(err)
		}
		stmts = append(stmts,
			testenv.ChdbStatement{SQL: count, Format: "TabSeparatedRaw"},
			testenv.ChdbStatement{SQL: ins},
			testenv.ChdbStatement{SQL: count, Format: "TabSeparatedRaw"},
			testenv.ChdbStatement{SQL: exp, Format: "TabSeparatedRaw"},
			testenv.ChdbStatement{SQL: act, Format: "TabSeparatedRaw"})
	}
	res = testenv.RunChdb(t, false, stmts...)
	for i, r := range res {
		if i == len(migrations)+3 {
			if r.OK {
				t.Fatal("current ClickHouse: the insert into a broken view target succeeded")
			}
			continue
		}
		if !r.OK {
			t.Fatalf("current ClickHouse rejects statement %d:\n%s\nerror: %s", i, stmts[i].SQL, r.Error)
		}
	}
	if got := strings.TrimSpace(res[fixed-1].Output); got != "10" {
		t.Fatalf("current ClickHouse kept %s rows of the failed insert in events; the test needs 10", got)
	}
	for i, d := range DerivedTables {
		r := res[fixed+5*i:]
		missing, after := strings.TrimSpace(r[0].Output), strings.TrimSpace(r[2].Output)
		if d.Table == "messages" && missing != "5" {
			t.Fatalf("messages lacks %s rows of the failed insert, want 5", missing)
		}
		if after != "0" {
			t.Fatalf("%s still lacks %s rows after the repair", d.Table, after)
		}
		if exp, act := strings.TrimSpace(r[3].Output), strings.TrimSpace(r[4].Output); exp != act {
			t.Fatalf("%s disagrees with events after the repair: %s vs %s", d.Table, act, exp)
		}
	}
}
