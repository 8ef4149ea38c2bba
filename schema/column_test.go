package schema

import (
	"context"
	"testing"

	"github.com/lcpipe/lcpipe/internal/testenv"
)

func TestAddColumnRecognised(t *testing.T) {
	tests := []struct {
		stmt              string
		db, table, column string // "" = not an ADD COLUMN Migrate checks
	}{
		{"ALTER TABLE lc.events  ADD COLUMN license_id UInt64 DEFAULT 0 AFTER organization_id", "lc", "events", "license_id"},
		{"ALTER TABLE lc.events ON CLUSTER analytics ADD COLUMN license_id UInt64", "lc", "events", "license_id"},
		{"alter table lc.events\n  add column x String", "lc", "events", "x"},
		{"ALTER TABLE lc.events ADD COLUMN a UInt8, ADD COLUMN b UInt8", "", "", ""},
		{"ALTER TABLE lc.events DROP COLUMN a", "", "", ""},
		{"CREATE TABLE IF NOT EXISTS lc.t (a UInt8) ENGINE = Memory", "", "", ""},
	}
	for _, tt := range tests {
		m := addColumnRe.FindStringSubmatch(tt.stmt)
		single := m != nil && len(addColumnsRe.FindAllStringIndex(tt.stmt, 2)) == 1
		switch {
		case tt.column == "" && single:
			t.Errorf("%q recognised as adding %v", tt.stmt, m[1:])
		case tt.column != "" && (!single || m[1] != tt.db || m[2] != tt.table || m[3] != tt.column):
			t.Errorf("%q: got %v, want %s.%s.%s", tt.stmt, m, tt.db, tt.table, tt.column)
		}
	}
}

// TestLicenseColumn runs the migrations on the local 18.16: events gets
// license_id (UInt64, 0 by default, after organization_id), and running the
// same ADD COLUMN again in another migration is skipped, not an error (18.16
// has no ADD COLUMN IF NOT EXISTS).
func TestLicenseColumn(t *testing.T) {
	cfg := testenv.ClickHouseConfig(t)
	conn := testenv.ClickHouse(t, cfg)
	ctx := context.Background()
	opts := Options{Database: cfg.Database}
	all, err := Migrations()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := apply(ctx, conn, opts, all, nil); err != nil {
		t.Fatal(err)
	}
	rows, err := conn.Query(ctx, "SELECT name, type FROM system.columns WHERE database = ? AND table = 'events'", cfg.Database)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	types := map[string]string{}
	for rows.Next() {
		var name, typ string
		if err := rows.Scan(&name, &typ); err != nil {
			t.Fatal(err)
		}
		names, types[name] = append(names, name), typ
	}
	rows.Close()
	if len(names) < 3 || names[1] != "organization_id" || names[2] != "license_id" || types["license_id"] != "UInt64" {
		t.Fatalf("events columns %v; license_id %q", names[:min(len(names), 4)], types["license_id"])
	}

	var src string
	for _, m := range all {
		if m.Name == "0104_license_id" {
			src = m.source
		}
	}
	if src == "" {
		t.Fatal("0104_license_id not embedded")
	}
	again := append(append([]Migration(nil), all...), Migration{Version: 9998, Name: "9998_license_id_again", Checksum: "x", source: src})
	res, err := apply(ctx, conn, opts, again, nil)
	if err != nil || len(res.Applied) != 1 {
		t.Fatalf("ADD COLUMN of an existing column: applied %v, %v", res.Applied, err)
	}
}
