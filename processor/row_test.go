package processor

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// TestEventColumnsMatchSchema: the one column list (eventColumns) names
// every column of the migrated events table that a client writes, in any
// order, and every Row field is one of them.
func TestEventColumnsMatchSchema(t *testing.T) {
	e := newEnv(t)
	rows, err := e.conn.Query(context.Background(), "SELECT name, default_kind FROM system.columns WHERE database = ? AND table = 'events'", e.ch.Database)
	if err != nil {
		t.Fatal(err)
	}
	var table []string
	for rows.Next() {
		var name, kind string
		if err := rows.Scan(&name, &kind); err != nil {
			t.Fatal(err)
		}
		if name == "inserted_at" { // the server's time of the INSERT
			continue
		}
		table = append(table, name)
	}
	rows.Close()
	var ours []string
	for _, c := range eventColumns {
		ours = append(ours, c.name)
	}
	slices.Sort(table)
	slices.Sort(ours)
	if !slices.Equal(table, ours) {
		t.Fatalf("events columns differ from eventColumns:\ntable %v\nours  %v", table, ours)
	}
	rt := reflect.TypeFor[Row]()
	for i := range rt.NumField() {
		f := rt.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if !slices.Contains(ours, name) {
			t.Errorf("Row.%s (json %q) is no column of events", f.Name, name)
		}
	}
}

// TestCompactKeepsValues: compact moves every string into one buffer and
// changes no value.
func TestCompactKeepsValues(t *testing.T) {
	for _, name := range fixtureNames(t) {
		for _, r := range Transform(goldenSource, decodeFixture(t, name), nil, nil) {
			before := r
			before.GroupNames = slices.Clone(r.GroupNames)
			r.compact()
			if !reflect.DeepEqual(before, r) {
				t.Fatalf("%s: compact changed the row", name)
			}
		}
	}
}

// TestInsertKeepsArrays: the fixtures' rows inserted into events read back
// with the same array columns (they are appended row by row, the others
// column by column), empty arrays included.
func TestInsertKeepsArrays(t *testing.T) {
	e := newEnv(t)
	var rows []Row
	for _, name := range fixtureNames(t) {
		rows = append(rows, Transform(goldenSource, decodeFixture(t, name), NewUserCache(10), fakeDirectory{})...)
	}
	for i := range rows { // distinct ids: the table may collapse repeats
		rows[i].EventID = fmt.Sprintf("%032d", i)
	}
	st := &store{conn: e.conn, db: e.ch.Database}
	if err := st.insert(context.Background(), rows, "", 7); err != nil {
		t.Fatal(err)
	}
	res, err := e.conn.Query(context.Background(), "SELECT event_id, group_ids, group_names, tags, transfer_group_ids, transfer_agent_ids, dedup_subjects, dedup_states, insert_id FROM "+e.ch.Database+".events ORDER BY event_id")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Close()
	n := 0
	for ; res.Next(); n++ {
		var id string
		var got Row
		var insertID uint64
		if err := res.Scan(&id, &got.GroupIDs, &got.GroupNames, &got.Tags, &got.TransferGroupIDs, &got.TransferAgentIDs, &got.DedupSubjects, &got.DedupStates, &insertID); err != nil {
			t.Fatal(err)
		}
		want := rows[n]
		if id != want.EventID || insertID != 7 {
			t.Fatalf("row %d: id %s insert %d, want %s 7", n, id, insertID, want.EventID)
		}
		for _, c := range []struct {
			name      string
			got, want any
		}{
			{"group_ids", got.GroupIDs, want.GroupIDs}, {"group_names", got.GroupNames, want.GroupNames}, {"tags", got.Tags, want.Tags},
			{"transfer_group_ids", got.TransferGroupIDs, want.TransferGroupIDs}, {"transfer_agent_ids", got.TransferAgentIDs, want.TransferAgentIDs},
			{"dedup_subjects", got.DedupSubjects, want.DedupSubjects}, {"dedup_states", got.DedupStates, want.DedupStates},
		} {
			if fmt.Sprint(c.got) != fmt.Sprint(c.want) {
				t.Errorf("row %d (%s) %s: %v, want %v", n, want.Action, c.name, c.got, c.want)
			}
		}
	}
	if err := res.Err(); err != nil {
		t.Fatal(err)
	}
	if n != len(rows) {
		t.Fatalf("read %d rows, want %d", n, len(rows))
	}
}
