package schema

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Derived tables and their repair.
//
// ClickHouse writes an INSERT's block into `events` first and then pushes it
// through each materialized view in turn. A view that fails (its target
// detached, too many parts, a memory limit, the server killed half-way)
// fails the INSERT but does not undo `events` or the views before it. The
// processor reads such records again and finds their rows stored, so the
// views would never get them. Repair closes that gap: for one INSERT (its
// insert_id, migration 0105) it pushes into each derived table exactly the
// rows that table is missing, through the view's own SELECT as the server
// holds it (SHOW CREATE TABLE), so no view is written twice.
//
// What "missing" means depends on the table: the aggregated ones keep per
// row the set of insert ids that reached it (`inserts`), so a key lacks the
// insert or holds it, whatever else reached it; the others are keyed by the
// event, so a key is there or not. A table keeps its rows atomically with
// that marker (same block, same part), so the check can never say "there"
// for rows that are not.

// Derived describes a table filled from events by a materialized view.
type Derived struct {
	Table string // target table
	View  string // the materialized view writing it
	// SourceKey is the table's key as an expression over events' columns;
	// TargetKey is the same key over the table's columns.
	SourceKey, TargetKey string
	// Marker: the table is aggregated and keeps `inserts`, the set of
	// insert ids per row (groupUniqArray), and `events`, the count of
	// events rows per key. Otherwise the key names one event.
	Marker bool
}

// DerivedTables is every table a materialized view fills from events. A
// test fails when a view on events has no entry here.
var DerivedTables = []Derived{
	{Table: "thread_state", View: "thread_state_mv", Marker: true,
		SourceKey: "organization_id, toStartOfHour(occurred_at), thread_id",
		TargetKey: "organization_id, hour, thread_id"},
	{Table: "webhook_minutes", View: "webhook_minutes_mv", Marker: true,
		SourceKey: "toStartOfMinute(received_at), organization_id, action",
		TargetKey: "minute, organization_id, action"},
	{Table: "messages", View: "messages_mv",
		SourceKey: "organization_id, occurred_at, event_ref",
		TargetKey: "organization_id, created_at, event_id"},
	{Table: "agent_status", View: "agent_status_mv",
		SourceKey: "organization_id, agent_id, occurred_at_ms, routing_status",
		TargetKey: "organization_id, agent_id, changed_at_ms, status"},
	{Table: "chat_ratings", View: "chat_ratings_mv",
		SourceKey: "organization_id, toStartOfHour(occurred_at), chat_id, occurred_at_ms, event_id",
		TargetKey: "organization_id, hour, chat_id, rated_ms, event_id"},
	{Table: "chat_threads", View: "chat_threads_mv",
		SourceKey: "organization_id, chat_id, thread_id",
		TargetKey: "organization_id, chat_id, thread_id"},
}

// RepairResult is, per derived table, how many of its rows Repair wrote.
type RepairResult map[string]uint64

// Total is the number of rows written over all tables.
func (r RepairResult) Total() uint64 {
	var n uint64
	for _, v := range r {
		n += v
	}
	return n
}

// Repair pushes the rows of the INSERT insertID (events.insert_id) that a
// derived table lacks into that table, through its view's SELECT. It is
// idempotent: once a table holds the insert, Repair writes nothing to it.
// Callers must make sure no INSERT with that id still runs (the processor
// waits for its partitions' inserts first) and that one caller at a time
// repairs a given insert (its partitions have one owner).
func Repair(ctx context.Context, conn driver.Conn, db string, insertID uint64) (RepairResult, error) {
	out := RepairResult{}
	if insertID == 0 {
		return out, nil
	}
	for _, d := range DerivedTables {
		create, err := showCreate(ctx, conn, db, d.View)
		if err != nil {
			return out, err
		}
		cols, err := columns(ctx, conn, db, d.Table)
		if err != nil {
			return out, err
		}
		count, insert, err := d.repairSQL(db, create, cols, insertID)
		if err != nil {
			return out, err
		}
		var n uint64
		if err := conn.QueryRow(ctx, count).Scan(&n); err != nil {
			return out, fmt.Errorf("schema: repair %s: count missing rows of insert %d: %w", d.Table, insertID, err)
		}
		if n == 0 {
			continue
		}
		if err := conn.Exec(ctx, insert); err != nil {
			return out, fmt.Errorf("schema: repair %s: insert %d missing rows of insert %d: %w", d.Table, n, insertID, err)
		}
		out[d.Table] = n
	}
	return out, nil
}

// Disagreement is a derived table that does not hold exactly what its view
// makes of events.
type Disagreement struct {
	Table            string
	Expected, Actual uint64 // fingerprints (sums of key hashes, weighted by events per key)
}

func (d Disagreement) String() string {
	return fmt.Sprintf("%s: fingerprint %d, events give %d", d.Table, d.Actual, d.Expected)
}

// CheckDerived compares every derived table with what its view makes of
// the whole events table, event by event: for aggregated tables the number
// of events per key, for the others the set of keys. It returns the tables
// that disagree. Reading everything, it is for tests, audits and repairs,
// not for the hot path.
func CheckDerived(ctx context.Context, conn driver.Conn, db string) ([]Disagreement, error) {
	var out []Disagreement
	for _, d := range DerivedTables {
		create, err := showCreate(ctx, conn, db, d.View)
		if err != nil {
			return nil, err
		}
		expQ, actQ, err := d.checkSQL(db, create)
		if err != nil {
			return nil, err
		}
		var exp, act uint64
		if err := conn.QueryRow(ctx, expQ).Scan(&exp); err != nil {
			return nil, fmt.Errorf("schema: check %s: %w", d.Table, err)
		}
		if err := conn.QueryRow(ctx, actQ).Scan(&act); err != nil {
			return nil, fmt.Errorf("schema: check %s: %w", d.Table, err)
		}
		if exp != act {
			out = append(out, Disagreement{Table: d.Table, Expected: exp, Actual: act})
		}
	}
	return out, nil
}

// checkSQL renders CheckDerived's two fingerprints of the table: what the
// view makes of events, and what the table holds.
func (d Derived) checkSQL(db, create string) (expected, actual string, err error) {
	m := asSelect.FindStringSubmatch(create)
	if m == nil {
		return "", "", fmt.Errorf("schema: check %s: no SELECT in the definition of %s", d.Table, d.View)
	}
	if d.Marker {
		expected = "SELECT sum(cityHash64(" + d.TargetKey + ") * finalizeAggregation(events)) FROM (" + m[1] + ")"
		actual = "SELECT sum(cityHash64(" + d.TargetKey + ") * c) FROM (SELECT " + d.TargetKey + ", countMerge(events) AS c FROM " + db + "." + d.Table + " GROUP BY " + d.TargetKey + ")"
	} else {
		expected = "SELECT sum(cityHash64(" + d.TargetKey + ")) FROM (SELECT DISTINCT " + d.TargetKey + " FROM (" + m[1] + "))"
		actual = "SELECT sum(cityHash64(" + d.TargetKey + ")) FROM (SELECT DISTINCT " + d.TargetKey + " FROM " + db + "." + d.Table + ")"
	}
	return expected, actual, nil
}

// asSelect finds where a view's SELECT starts in its CREATE statement.
var asSelect = regexp.MustCompile(`(?is)\)?\s+AS\s+(SELECT\b.*)$`)

// repairSQL renders, from the view's CREATE statement as the server shows
// it and the target's columns, the query counting the rows the table lacks
// and the INSERT writing them.
func (d Derived) repairSQL(db, create string, cols []string, insertID uint64) (count, insert string, err error) {
	m := asSelect.FindStringSubmatch(create)
	if m == nil {
		return "", "", fmt.Errorf("schema: repair %s: no SELECT in the definition of %s", d.Table, d.View)
	}
	sel := m[1]
	from := regexp.MustCompile(`(?i)\bFROM\s+` + regexp.QuoteMeta(db) + `\.events\b`)
	if n := len(from.FindAllStringIndex(sel, -1)); n != 1 {
		return "", "", fmt.Errorf("schema: repair %s: %s reads %s.events %d times, want once", d.Table, d.View, db, n)
	}
	id := strconv.FormatUint(insertID, 10)
	present := "SELECT " + d.TargetKey + " FROM " + db + "." + d.Table +
		" WHERE (" + d.TargetKey + ") IN (SELECT " + d.SourceKey + " FROM " + db + ".events WHERE insert_id = " + id + ")"
	if d.Marker {
		present += " GROUP BY " + d.TargetKey + " HAVING has(groupUniqArrayMerge(inserts), toUInt64(" + id + "))"
	}
	source := "(SELECT * FROM " + db + ".events WHERE insert_id = " + id + " AND (" + d.SourceKey + ") NOT IN (" + present + "))"
	repushed := from.ReplaceAllLiteralString(sel, "FROM "+source)
	list := strings.Join(cols, ", ")
	count = "SELECT count() FROM (" + repushed + ")"
	insert = "INSERT INTO " + db + "." + d.Table + " (" + list + ") SELECT " + list + " FROM (" + repushed + ")"
	return count, insert, nil
}

func showCreate(ctx context.Context, conn driver.Conn, db, table string) (string, error) {
	var s string
	if err := conn.QueryRow(ctx, "SHOW CREATE TABLE "+db+"."+table).Scan(&s); err != nil {
		return "", fmt.Errorf("schema: show create %s.%s: %w", db, table, err)
	}
	return s, nil
}

// columns lists the table's insertable columns in order.
func columns(ctx context.Context, conn driver.Conn, db, table string) ([]string, error) {
	rows, err := conn.Query(ctx, "SELECT name, default_kind FROM system.columns WHERE database = ? AND table = ?", db, table)
	if err != nil {
		return nil, fmt.Errorf("schema: columns of %s.%s: %w", db, table, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var name, kind string
		if err := rows.Scan(&name, &kind); err != nil {
			return nil, fmt.Errorf("schema: columns of %s.%s: %w", db, table, err)
		}
		if kind == "MATERIALIZED" || kind == "ALIAS" {
			continue
		}
		out = append(out, name)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("schema: columns of %s.%s: %w", db, table, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("schema: %s.%s has no columns (missing?)", db, table)
	}
	return out, nil
}

// ViewsOnEvents lists the materialized views that read db.events, from the
// server (for the test that every one has a DerivedTables entry).
func ViewsOnEvents(ctx context.Context, conn driver.Conn, db string) ([]string, error) {
	rows, err := conn.Query(ctx, "SELECT name FROM system.tables WHERE database = ? AND engine = 'MaterializedView'", db)
	if err != nil {
		return nil, fmt.Errorf("schema: list views: %w", err)
	}
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return nil, fmt.Errorf("schema: list views: %w", err)
		}
		names = append(names, n)
	}
	rows.Close()
	from := regexp.MustCompile(`(?i)\bFROM\s+` + regexp.QuoteMeta(db) + `\.events\b`)
	var out []string
	for _, n := range names {
		c, err := showCreate(ctx, conn, db, n)
		if err != nil {
			return nil, err
		}
		if from.MatchString(c) {
			out = append(out, n)
		}
	}
	return out, nil
}
