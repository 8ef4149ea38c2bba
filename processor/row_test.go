package processor

import (
	"context"
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
