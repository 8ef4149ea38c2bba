package schema

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/lcpipe/lcpipe/internal/testenv"
)

func TestSplitStatements(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"one", "SELECT 1;\n", []string{"SELECT 1"}},
		{"comments and blank lines", "-- hello\n\nCREATE TABLE a (x UInt8)\nENGINE = Memory;\n-- bye\nSELECT 2;", []string{"CREATE TABLE a (x UInt8)\nENGINE = Memory", "SELECT 2"}},
		{"no trailing semicolon", "SELECT 3", []string{"SELECT 3"}},
		{"semicolon inside a line is kept", "SELECT ';' AS x;\n", []string{"SELECT ';' AS x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := splitStatements(tt.in)
			if strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestLoadRejectsBadNamesAndDuplicates(t *testing.T) {
	tests := []struct {
		name  string
		files fstest.MapFS
		want  string
	}{
		{"bad name", fstest.MapFS{"m/1_x.sql": {Data: []byte("SELECT 1;")}}, "must be named NNNN_name.sql"},
		{"duplicate version", fstest.MapFS{"m/0001_a.sql": {Data: []byte("SELECT 1;")}, "m/0001_b.sql": {Data: []byte("SELECT 1;")}}, "share version 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := load(tt.files, "m")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want error containing %q", err, tt.want)
			}
		})
	}
}

var mapType = regexp.MustCompile(`\bMap\(`)

func TestMigrationsAreOrderedAndRender(t *testing.T) {
	ms, err := Migrations()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) == 0 {
		t.Fatal("no migrations embedded")
	}
	for i, m := range ms {
		if i > 0 && ms[i-1].Version >= m.Version {
			t.Fatalf("migrations out of order: %s after %s", m.Name, ms[i-1].Name)
		}
		stmts, err := m.Statements(Options{Database: "db"})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range stmts {
			for _, banned := range []string{"DateTime64", "LowCardinality", " TTL ", "CODEC(", "ADD COLUMN IF NOT EXISTS", "DROP COLUMN IF EXISTS", "allow_experimental", "toStartOfInterval", "toStartOfWeek", "JSONExtract", "ILIKE", "WITH FILL"} {
				if strings.Contains(s, banned) {
					t.Errorf("%s uses %q, which ClickHouse 18.16 lacks", m.Name, banned)
				}
			}
			if mapType.MatchString(s) {
				t.Errorf("%s uses the Map type, which ClickHouse 18.16 lacks", m.Name)
			}
			if strings.Contains(s, "MergeTree(") && strings.Contains(s, "8192)") {
				t.Errorf("%s uses the legacy MergeTree(date, key, 8192) syntax", m.Name)
			}
		}
	}
}

// TestClusterModeSQL checks the generated SQL of cluster mode: every DDL
// carries ON CLUSTER and every MergeTree-family engine is Replicated with a
// per-table ZooKeeper path. Cluster mode cannot run here (no ZooKeeper), so
// this checks the text.
func TestClusterModeSQL(t *testing.T) {
	ms, err := Migrations()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		stmts, err := m.Statements(Options{Database: "lc", Cluster: "analytics"})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range stmts {
			up := strings.ToUpper(s)
			isDDL := strings.HasPrefix(up, "CREATE") || strings.HasPrefix(up, "ALTER") || strings.HasPrefix(up, "DROP")
			if isDDL && !strings.Contains(s, "ON CLUSTER analytics") {
				t.Errorf("%s: DDL without ON CLUSTER:\n%s", m.Name, s)
			}
			if strings.Contains(s, "MergeTree") && !strings.Contains(up, "MATERIALIZED VIEW") {
				if !strings.Contains(s, "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/lc/") &&
					!strings.Contains(s, "Replicated") {
					t.Errorf("%s: engine is not Replicated in cluster mode:\n%s", m.Name, s)
				}
			}
		}
	}
	// The engine helper itself.
	m := Migration{Name: "x", source: `ENGINE = {{engine "t" "ReplacingMergeTree" "v"}} / {{engine "t" "MergeTree"}}`}
	got, err := m.Statements(Options{Database: "lc", Cluster: "c"})
	if err != nil {
		t.Fatal(err)
	}
	want := `ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/lc/t', '{replica}', v) / ReplicatedMergeTree('/clickhouse/tables/{shard}/lc/t', '{replica}')`
	if got[0] != want {
		t.Fatalf("got  %s\nwant %s", got[0], want)
	}
	got, _ = m.Statements(Options{Database: "lc"})
	if got[0] != "ENGINE = ReplacingMergeTree(v) / MergeTree" {
		t.Fatalf("single-server engine: %s", got[0])
	}
}

// TestMigrateOnClickHouse runs the migrations on the local ClickHouse 18.16:
// they apply to an empty database, re-applying is a no-op, a changed applied
// migration is detected by name, and a failing statement is reported with the
// server's message.
func TestMigrateOnClickHouse(t *testing.T) {
	cfg := testenv.ClickHouseConfig(t)
	conn := testenv.ClickHouse(t, cfg)
	ctx := context.Background()
	opts := Options{Database: cfg.Database}

	res, err := Migrate(ctx, conn, opts, nil)
	if err != nil {
		t.Fatalf("first migrate: %v", err)
	}
	all, _ := Migrations()
	if len(res.Applied) != len(all) {
		t.Fatalf("applied %d of %d migrations", len(res.Applied), len(all))
	}
	var tables uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM system.tables WHERE database = ? AND name = 'events'", cfg.Database).Scan(&tables); err != nil || tables != 1 {
		t.Fatalf("events table missing: %d %v", tables, err)
	}

	res, err = Migrate(ctx, conn, opts, nil)
	if err != nil || len(res.Applied) != 0 {
		t.Fatalf("second migrate: applied %v, err %v; want no-op", res.Applied, err)
	}
	applied, err := AppliedMigrations(ctx, conn, cfg.Database)
	if err != nil || len(applied) != len(all) {
		t.Fatalf("schema_migrations has %d rows (err %v), want %d", len(applied), err, len(all))
	}

	// A tampered migration: same version, other content.
	tampered := append([]Migration(nil), all...)
	tampered[0].source += "\n-- edited after it was applied\n"
	tampered[0].Checksum = "0000000000000000000000000000000000000000000000000000000000000000"
	_, err = apply(ctx, conn, opts, tampered, nil)
	var ce *ChecksumError
	if !errors.As(err, &ce) || ce.Migration != all[0].Name {
		t.Fatalf("tampered migration: got %v, want ChecksumError naming %s", err, all[0].Name)
	}
	if !strings.Contains(err.Error(), all[0].Name) {
		t.Fatalf("error does not name the migration: %v", err)
	}

	// A failing migration stops with the statement and the server's message,
	// and is not recorded.
	bad := append(append([]Migration(nil), all...), Migration{Version: 9999, Name: "9999_broken", Checksum: strings.Repeat("ab", 32),
		source: "CREATE TABLE IF NOT EXISTS {{.DB}}.broken (x UInt8) ENGINE = NoSuchEngine;\n"})
	_, err = apply(ctx, conn, opts, bad, nil)
	var me *MigrationError
	if !errors.As(err, &me) || me.Migration != "9999_broken" || !strings.Contains(me.Statement, "NoSuchEngine") {
		t.Fatalf("broken migration: got %v", err)
	}
	if !strings.Contains(err.Error(), "NoSuchEngine") || !strings.Contains(strings.ToLower(err.Error()), "unknown") {
		t.Fatalf("error lacks the statement or the server message: %v", err)
	}
	applied, _ = AppliedMigrations(ctx, conn, cfg.Database)
	if len(applied) != len(all) {
		t.Fatalf("failed migration was recorded: %d rows", len(applied))
	}
}

// TestMigrationsOnCurrentClickHouse runs every migration, in order, on the
// current ClickHouse engine (chdb), so SQL that current servers reject fails
// here although the local server is 18.16.
func TestMigrationsOnCurrentClickHouse(t *testing.T) {
	ms, err := Migrations()
	if err != nil {
		t.Fatal(err)
	}
	stmts := []testenv.ChdbStatement{{SQL: "CREATE DATABASE IF NOT EXISTS lc"}}
	var names []string
	names = append(names, "create database")
	for _, m := range ms {
		ss, err := m.Statements(Options{Database: "lc"})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range ss {
			stmts = append(stmts, testenv.ChdbStatement{SQL: s})
			names = append(names, m.Name)
		}
	}
	stmts = append(stmts, testenv.ChdbStatement{SQL: "SELECT count() FROM system.tables WHERE database = 'lc'"})
	res := testenv.RunChdb(t, true, stmts...)
	for i, r := range res {
		if !r.OK {
			t.Fatalf("current ClickHouse rejects %s:\n%s\nerror: %s", names[i], stmts[i].SQL, r.Error)
		}
	}
	if len(res) != len(stmts) {
		t.Fatalf("chdb ran %d of %d statements", len(res), len(stmts))
	}
}

// TestChdbCatchesWhatCurrentServersReject proves the check above has teeth:
// the legacy MergeTree syntax runs on 18.16 but current servers reject it.
func TestChdbCatchesWhatCurrentServersReject(t *testing.T) {
	res := testenv.RunChdb(t, false,
		testenv.ChdbStatement{SQL: "CREATE TABLE legacy (d Date, a UInt8) ENGINE = MergeTree(d, a, 8192)"},
		testenv.ChdbStatement{SQL: "SELECT 1"})
	if len(res) != 2 || res[0].OK || !res[1].OK {
		t.Fatalf("chdb results: %+v", res)
	}
	if !strings.Contains(res[0].Error, "deprecated") {
		t.Fatalf("unexpected chdb error: %s", res[0].Error)
	}
}
