// Package schema owns the ClickHouse schema: versioned migrations embedded in
// the binary, applied in order and recorded with their checksum in
// <db>.schema_migrations.
//
// Every migration must run on Debian's ClickHouse 18.16 (local runs and CI)
// and on current servers (docker-compose); tests run each one on both (the
// current engine through chdb). Migration files are Go text/templates so the
// same file serves a single server and a cluster:
//
//	{{.DB}}                                  the database name
//	{{.OnCluster}}                           "" or "ON CLUSTER <name>"
//	{{engine "table" "MergeTree" "args"}}    MergeTree(args) or, in cluster mode,
//	                                         ReplicatedMergeTree('/clickhouse/tables/{shard}/db/table', '{replica}', args)
//
// The checksum is taken over the file as written (before rendering), so the
// same migration has the same checksum in every database and mode. A
// migration's statements should be idempotent (IF NOT EXISTS): a migration is
// recorded only after all its statements succeeded, so a failed one is run
// again from its first statement. 18.16 cannot say ADD COLUMN IF NOT EXISTS,
// so Migrate gives "ALTER TABLE db.t ADD COLUMN c ..." (one column per
// statement) that meaning itself: it skips the statement when t already has c.
package schema

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// Migration is one versioned file of migrations/.
type Migration struct {
	Version  uint32
	Name     string // file name without the .sql suffix
	Checksum string // hex SHA-256 of the file as written
	source   string
}

// Options choose the database and, optionally, cluster mode.
type Options struct {
	Database string
	// Cluster, when not empty, adds ON CLUSTER and uses Replicated engines.
	Cluster string
}

var fileRe = regexp.MustCompile(`^(\d{4})_([a-z0-9_]+)\.sql$`)

// Migrations returns every embedded migration in version order.
func Migrations() ([]Migration, error) { return load(migrationFS, "migrations") }

func load(fsys fs.FS, dir string) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("schema: read migrations: %w", err)
	}
	var out []Migration
	seen := map[uint32]string{}
	for _, e := range entries {
		m := fileRe.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("schema: migration file %q must be named NNNN_name.sql", e.Name())
		}
		v, _ := strconv.ParseUint(m[1], 10, 32)
		if prev, dup := seen[uint32(v)]; dup {
			return nil, fmt.Errorf("schema: migrations %s and %s share version %d", prev, e.Name(), v)
		}
		seen[uint32(v)] = e.Name()
		b, err := fs.ReadFile(fsys, path.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("schema: read %s: %w", e.Name(), err)
		}
		sum := sha256.Sum256(b)
		out = append(out, Migration{
			Version:  uint32(v),
			Name:     strings.TrimSuffix(e.Name(), ".sql"),
			Checksum: hex.EncodeToString(sum[:]),
			source:   string(b),
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out, nil
}

// Statements renders the migration for the options and splits it into
// statements (a statement ends with ';' at the end of a line).
func (m Migration) Statements(o Options) ([]string, error) {
	funcs := template.FuncMap{
		"engine": func(table, engine string, args ...string) string {
			a := strings.Join(args, ", ")
			if o.Cluster == "" {
				if a == "" {
					return engine
				}
				return engine + "(" + a + ")"
			}
			zk := fmt.Sprintf("'/clickhouse/tables/{shard}/%s/%s', '{replica}'", o.Database, table)
			if a != "" {
				zk += ", " + a
			}
			return "Replicated" + engine + "(" + zk + ")"
		},
	}
	t, err := template.New(m.Name).Option("missingkey=error").Funcs(funcs).Parse(m.source)
	if err != nil {
		return nil, fmt.Errorf("schema: parse %s: %w", m.Name, err)
	}
	onCluster := ""
	if o.Cluster != "" {
		onCluster = "ON CLUSTER " + o.Cluster
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, map[string]string{"DB": o.Database, "OnCluster": onCluster}); err != nil {
		return nil, fmt.Errorf("schema: render %s: %w", m.Name, err)
	}
	return splitStatements(buf.String()), nil
}

func splitStatements(sql string) []string {
	var out []string
	var cur strings.Builder
	for _, line := range strings.Split(sql, "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "--") || (trimmed == "" && cur.Len() == 0) {
			continue
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
		if strings.HasSuffix(trimmed, ";") {
			if s := strings.TrimSuffix(strings.TrimSpace(cur.String()), ";"); strings.TrimSpace(s) != "" {
				out = append(out, s)
			}
			cur.Reset()
		}
	}
	if s := strings.TrimSpace(cur.String()); s != "" {
		out = append(out, s)
	}
	return out
}

// Applied is a row of schema_migrations.
type Applied struct {
	Version   uint32
	Name      string
	Checksum  string
	AppliedAt time.Time
}

// Result says what Migrate did.
type Result struct {
	Applied []string // names of migrations applied by this run
	Current uint32   // highest version now applied
}

// MigrationError is returned when a statement of a migration failed.
type MigrationError struct {
	Migration string
	Statement string
	Err       error
}

func (e *MigrationError) Error() string {
	return fmt.Sprintf("schema: migration %s failed: %v\nstatement:\n%s", e.Migration, e.Err, e.Statement)
}

func (e *MigrationError) Unwrap() error { return e.Err }

// ChecksumError is returned when an applied migration was changed afterwards.
type ChecksumError struct {
	Migration        string
	Applied, Current string
}

func (e *ChecksumError) Error() string {
	return fmt.Sprintf("schema: migration %s was changed after it was applied (checksum %s applied, %s now); add a new migration instead", e.Migration, e.Applied[:12], e.Current[:12])
}

// Migrate applies every migration not applied yet, in order. Re-running is a
// no-op; a changed applied migration is a *ChecksumError naming it; a failed
// statement is a *MigrationError with the statement and the server's message.
func Migrate(ctx context.Context, conn driver.Conn, o Options, log *slog.Logger) (Result, error) {
	ms, err := Migrations()
	if err != nil {
		return Result{}, err
	}
	return apply(ctx, conn, o, ms, log)
}

func apply(ctx context.Context, conn driver.Conn, o Options, ms []Migration, log *slog.Logger) (Result, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	onCluster := ""
	if o.Cluster != "" {
		onCluster = " ON CLUSTER " + o.Cluster
	}
	boot := []string{
		"CREATE DATABASE IF NOT EXISTS " + o.Database + onCluster,
		"CREATE TABLE IF NOT EXISTS " + o.Database + ".schema_migrations" + onCluster + ` (
    version    UInt32,
    name       String,
    checksum   String,
    applied_at DateTime('UTC')
) ENGINE = MergeTree ORDER BY version`,
	}
	for _, s := range boot {
		if err := conn.Exec(ctx, s); err != nil {
			return Result{}, &MigrationError{Migration: "bootstrap", Statement: s, Err: err}
		}
	}
	applied, err := AppliedMigrations(ctx, conn, o.Database)
	if err != nil {
		return Result{}, err
	}
	done := map[uint32]Applied{}
	var res Result
	for _, a := range applied {
		done[a.Version] = a
		if a.Version > res.Current {
			res.Current = a.Version
		}
	}
	for _, m := range ms {
		if a, ok := done[m.Version]; ok {
			if a.Checksum != m.Checksum {
				return res, &ChecksumError{Migration: m.Name, Applied: a.Checksum, Current: m.Checksum}
			}
			continue
		}
		stmts, err := m.Statements(o)
		if err != nil {
			return res, err
		}
		start := time.Now()
		for _, s := range stmts {
			have, err := hasAddedColumn(ctx, conn, s)
			if err != nil {
				return res, &MigrationError{Migration: m.Name, Statement: s, Err: err}
			}
			if have {
				log.Info("column already there; ADD COLUMN skipped", "migration", m.Name)
				continue
			}
			if err := conn.Exec(ctx, s); err != nil {
				return res, &MigrationError{Migration: m.Name, Statement: s, Err: err}
			}
		}
		b, err := conn.PrepareBatch(ctx, "INSERT INTO "+o.Database+".schema_migrations (version, name, checksum, applied_at)")
		if err != nil {
			return res, fmt.Errorf("schema: record %s: %w", m.Name, err)
		}
		if err := b.Append(m.Version, m.Name, m.Checksum, time.Now().UTC()); err != nil {
			return res, fmt.Errorf("schema: record %s: %w", m.Name, err)
		}
		if err := b.Send(); err != nil {
			return res, fmt.Errorf("schema: record %s: %w", m.Name, err)
		}
		log.Info("applied migration", "migration", m.Name, "statements", len(stmts), "took", time.Since(start).Round(time.Millisecond))
		res.Applied = append(res.Applied, m.Name)
		res.Current = m.Version
	}
	return res, nil
}

// addColumnRe matches a statement that adds a column (database, table,
// column); addColumnsRe counts the columns a statement adds.
var (
	addColumnRe  = regexp.MustCompile(`(?is)^\s*ALTER\s+TABLE\s+(\w+)\.(\w+)\s+(?:ON\s+CLUSTER\s+\S+\s+)?ADD\s+COLUMN\s+(\w+)\s`)
	addColumnsRe = regexp.MustCompile(`(?i)\bADD\s+COLUMN\b`)
)

// hasAddedColumn reports whether stmt adds one column that its table already
// has: Migrate then skips it (ADD COLUMN IF NOT EXISTS, which 18.16 lacks).
// A statement adding several columns is not recognised and runs as it is.
func hasAddedColumn(ctx context.Context, conn driver.Conn, stmt string) (bool, error) {
	m := addColumnRe.FindStringSubmatch(stmt)
	if m == nil || len(addColumnsRe.FindAllStringIndex(stmt, 2)) != 1 {
		return false, nil
	}
	var n uint64
	err := conn.QueryRow(ctx, "SELECT count() FROM system.columns WHERE database = ? AND table = ? AND name = ?", m[1], m[2], m[3]).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("look up column %s.%s.%s: %w", m[1], m[2], m[3], err)
	}
	return n > 0, nil
}

// AppliedMigrations lists the rows of <db>.schema_migrations in version order.
func AppliedMigrations(ctx context.Context, conn driver.Conn, db string) ([]Applied, error) {
	rows, err := conn.Query(ctx, "SELECT version, name, checksum, applied_at FROM "+db+".schema_migrations ORDER BY version")
	if err != nil {
		return nil, fmt.Errorf("schema: read %s.schema_migrations: %w", db, err)
	}
	defer rows.Close()
	var out []Applied
	for rows.Next() {
		var a Applied
		if err := rows.Scan(&a.Version, &a.Name, &a.Checksum, &a.AppliedAt); err != nil {
			return nil, fmt.Errorf("schema: scan schema_migrations: %w", err)
		}
		out = append(out, a)
	}
	return out, rows.Err()
}
