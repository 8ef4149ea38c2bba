// Package analysts makes organization-scoped read-only ClickHouse users:
// an analyst of one LiveChat organization reads the pipeline's tables with
// SQL and sees only that organization's rows (`lcpipe analysts`).
//
// How, on current ClickHouse (SQL access control, 20.4 and newer; ClickHouse
// Cloud): per organization one user, readonly = 1, granted SELECT only on the
// tables that have an organization_id column (never pipeline_batches,
// rollup_days, schema_migrations), and on each of them a RESTRICTIVE row
// policy `organization_id = '<org>'` for that user. Restrictive, with one
// shared permissive policy `USING 1 TO ALL` per table: ClickHouse hides
// every row of a table with row policies from users no permissive policy
// names (unless the server's users_without_row_policies_can_read_rows is on,
// the default only since 24.1), so the shared policy keeps the pipeline, the
// dashboards and the `analyst` user seeing everything whatever that setting,
// while the scoped user gets (1 AND organization_id = '<org>'). The shared
// policy is created before any restrictive one and the grants come last, so
// no one ever sees less, and the scoped user never more, than intended.
// Views whose SQL security is not INVOKER are not granted (they would read
// with their definer's rights, past the policies); the materialized views'
// target tables are the tables. Row policies only hold for users who cannot
// write or change settings (ClickHouse's own caveat): readonly = 1 and
// SELECT only; on 22.9 and newer the one setting it may change is
// max_execution_time, which Grafana's ClickHouse plugin sets on every
// query (lcpipe analysts add --grafana-dir makes that user a Grafana
// datasource).
//
// ClickHouse 18.16 (the local server) has none of this: no CREATE USER,
// GRANT or ROW POLICY (SQL access control arrived in 20.x), and its
// users.xml restricts whole databases (<allow_databases>) but knows no row
// filter (<databases><db><table><filter> came later; the 18.16 library has
// no such key). Add answers ErrUnsupported there: locally, analysts use the
// read-only `analyst` user, which sees every organization.
package analysts

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/lcpipe/lcpipe/internal/chconn"
	"github.com/lcpipe/lcpipe/internal/secret"
)

// ErrUnsupported: the server has no SQL access control with row policies.
var ErrUnsupported = errors.New("this ClickHouse cannot make an organization-scoped user")

// Prefixes of what the package creates (and alone lists and removes).
const (
	userPrefix     = "lcpipe_org_"
	everyonePolicy = "lcpipe_everyone"
)

// Options say where the pipeline's tables are.
type Options struct {
	Database string
	// Cluster, when set, makes every statement ON CLUSTER.
	Cluster string
	// timeoutInReadonly: the server knows CHANGEABLE_IN_READONLY (22.9+);
	// Add sets it from the server's version.
	timeoutInReadonly bool
}

// userSettings are the scoped user's settings: read-only, and, where the
// server allows it, free to set max_execution_time, which Grafana's
// ClickHouse plugin sends with every query (a plain readonly = 1 user gets
// "Cannot modify 'max_execution_time' setting in readonly mode" on every
// panel). The compose analyst profile does the same. A timeout cannot
// widen what the row policies show.
func (o Options) userSettings() string {
	if o.timeoutInReadonly {
		return " SETTINGS readonly = 1, max_execution_time = 60 CHANGEABLE_IN_READONLY"
	}
	return " SETTINGS readonly = 1"
}

func (o Options) validate() error {
	if !chconn.ValidIdent(o.Database) {
		return fmt.Errorf("analysts: database name %q is not a plain identifier", o.Database)
	}
	if o.Cluster != "" && !chconn.ValidIdent(o.Cluster) {
		return fmt.Errorf("analysts: cluster name %q is not a plain identifier", o.Cluster)
	}
	return nil
}

func (o Options) onCluster() string {
	if o.Cluster == "" {
		return ""
	}
	return " ON CLUSTER " + o.Cluster
}

// Table is a relation an organization-scoped user may read.
type Table struct {
	Name string
	// View: an ordinary view with INVOKER security: granted, no policy of its
	// own (it reads the policed tables with the user's rights).
	View bool
}

// User is an organization-scoped user.
type User struct {
	Name         string
	Organization string
	Tables       []string // tables it has a policy on
}

// UserName is the ClickHouse user of an organization: a fixed prefix and a
// hash of the organization id (ids are UUIDs, user names are identifiers).
func UserName(org string) string {
	sum := sha256.Sum256([]byte(org))
	return userPrefix + hex.EncodeToString(sum[:10])
}

// policyName is the organization's restrictive policy (one name, one policy per table).
func policyName(org string) string { return UserName(org) }

// quote makes a ClickHouse string literal.
func quote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// ValidOrganization reports whether org may be scoped to: not empty, no
// control characters, at most 200 bytes (organization ids are UUIDs).
func ValidOrganization(org string) error {
	if org == "" || len(org) > 200 {
		return errors.New("analysts: organization id must be 1 to 200 characters")
	}
	for _, r := range org {
		if r < 0x20 || r == 0x7f {
			return errors.New("analysts: organization id has control characters")
		}
	}
	return nil
}

// AddStatements are the statements Add runs, in order: the user (created,
// then its password and settings set, so adding again rotates it), the shared permissive
// policies, the organization's restrictive policies, then the grants.
func AddStatements(o Options, org string, password secret.Secret, tables []Table) []string {
	user, db, on := UserName(org), o.Database, o.onCluster()
	out := []string{
		"CREATE USER IF NOT EXISTS " + user + on + " IDENTIFIED WITH sha256_password BY " + quote(password.Reveal()) +
			" DEFAULT DATABASE " + db + o.userSettings(),
		// Adding again also brings an older user's settings up to date.
		"ALTER USER " + user + on + " IDENTIFIED WITH sha256_password BY " + quote(password.Reveal()) + o.userSettings(),
	}
	var grants []string
	for _, t := range tables {
		if !t.View {
			out = append(out, "CREATE ROW POLICY IF NOT EXISTS "+everyonePolicy+on+" ON "+db+"."+t.Name+" FOR SELECT USING 1 AS PERMISSIVE TO ALL")
		}
	}
	for _, t := range tables {
		if !t.View {
			out = append(out, "CREATE ROW POLICY OR REPLACE "+policyName(org)+on+" ON "+db+"."+t.Name+
				" FOR SELECT USING organization_id = "+quote(org)+" AS RESTRICTIVE TO "+user)
		}
		grants = append(grants, "GRANT"+on+" SELECT ON "+db+"."+t.Name+" TO "+user)
	}
	return append(out, grants...)
}

// RemoveStatements drop the organization's user and its policies on the
// given tables. The shared permissive policies stay (they change nothing).
func RemoveStatements(o Options, org string, policyTables []string) []string {
	out := []string{"DROP USER IF EXISTS " + UserName(org) + o.onCluster()}
	for _, t := range policyTables {
		out = append(out, "DROP ROW POLICY IF EXISTS "+policyName(org)+o.onCluster()+" ON "+o.Database+"."+t)
	}
	return out
}

// TablesQuery lists the relations of the database that have an
// organization_id column, with their engine and definition.
func TablesQuery(db string) string {
	return "SELECT name, engine, create_table_query FROM system.tables WHERE database = " + quote(db) +
		" AND name IN (SELECT table FROM system.columns WHERE database = " + quote(db) + " AND name = 'organization_id') ORDER BY name"
}

// Classify turns TablesQuery rows into what a scoped user gets: tables
// (with a policy) and INVOKER views; materialized views (their targets
// are tables) and views with definer rights are left out.
func Classify(name, engine, create string) (Table, bool) {
	switch {
	case engine == "MaterializedView":
		return Table{}, false
	case engine == "View":
		c := strings.ToUpper(create)
		if strings.Contains(c, "SQL SECURITY DEFINER") || strings.Contains(c, "SQL SECURITY NONE") {
			return Table{}, false
		}
		return Table{Name: name, View: true}, true
	}
	return Table{Name: name}, true
}

// NewPassword is a random password for a new user (printed once by the CLI).
func NewPassword() secret.Secret {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return secret.Secret(base64.RawURLEncoding.EncodeToString(b))
}

// checkServer refuses servers without SQL access control: ClickHouse
// before 20.4 (18.16 locally). It returns the server's major and minor
// version.
func checkServer(ctx context.Context, conn driver.Conn) (major, minor int, err error) {
	var v string
	if err := conn.QueryRow(ctx, "SELECT version()").Scan(&v); err != nil {
		return 0, 0, fmt.Errorf("analysts: server version: %w", err)
	}
	parts := strings.SplitN(v, ".", 3)
	if len(parts) >= 2 {
		major, _ = strconv.Atoi(parts[0])
		minor, _ = strconv.Atoi(parts[1])
	}
	if !atLeast(major, minor, 20, 4) {
		return major, minor, fmt.Errorf("%w: ClickHouse %s has no SQL access control (CREATE USER, GRANT and CREATE ROW POLICY arrived in 20.4) "+
			"and its users.xml filters whole databases (allow_databases), not rows; on it analysts use the read-only `analyst` user, "+
			"which sees every organization; use ClickHouse 20.4 or newer (current servers, ClickHouse Cloud) for organization-scoped users", ErrUnsupported, v)
	}
	return major, minor, nil
}

func atLeast(major, minor, wantMajor, wantMinor int) bool {
	return major > wantMajor || major == wantMajor && minor >= wantMinor
}

// scopedTables reads which relations a scoped user gets.
func scopedTables(ctx context.Context, conn driver.Conn, db string) ([]Table, error) {
	rows, err := conn.Query(ctx, TablesQuery(db))
	if err != nil {
		return nil, fmt.Errorf("analysts: list tables of %s: %w", db, err)
	}
	defer rows.Close()
	var out []Table
	for rows.Next() {
		var name, engine, create string
		if err := rows.Scan(&name, &engine, &create); err != nil {
			return nil, fmt.Errorf("analysts: list tables of %s: %w", db, err)
		}
		if t, ok := Classify(name, engine, create); ok {
			out = append(out, t)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("analysts: list tables of %s: %w", db, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("analysts: no table of %s has an organization_id column: run lcpipe migrate first", db)
	}
	return out, nil
}

// Add creates (or updates, rotating its password) the read-only user of
// the organization, restricted to its rows in every table that has them.
// Adding again after a migration covers the new tables.
func Add(ctx context.Context, conn driver.Conn, o Options, org string, password secret.Secret) (User, error) {
	if err := o.validate(); err != nil {
		return User{}, err
	}
	if err := ValidOrganization(org); err != nil {
		return User{}, err
	}
	major, minor, err := checkServer(ctx, conn)
	if err != nil {
		return User{}, err
	}
	o.timeoutInReadonly = atLeast(major, minor, 22, 9)
	tables, err := scopedTables(ctx, conn, o.Database)
	if err != nil {
		return User{}, err
	}
	u := User{Name: UserName(org), Organization: org}
	for _, t := range tables {
		if !t.View {
			u.Tables = append(u.Tables, t.Name)
		}
	}
	for i, s := range AddStatements(o, org, password, tables) {
		if err := conn.Exec(ctx, s); err != nil {
			// The statement itself may hold the password: name its position only.
			return u, fmt.Errorf("analysts: add user for organization %s: statement %d: %w", org, i+1, err)
		}
	}
	return u, nil
}

// filterRe reads the organization back from a restrictive policy's filter.
var filterRe = regexp.MustCompile(`^organization_id = '((?:[^'\\]|\\.)*)'$`)

// List returns the organization-scoped users and their tables, from the
// server's row policies.
func List(ctx context.Context, conn driver.Conn, o Options) ([]User, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	if _, _, err := checkServer(ctx, conn); err != nil {
		return nil, err
	}
	rows, err := conn.Query(ctx, "SELECT short_name, table, select_filter FROM system.row_policies WHERE database = "+quote(o.Database)+
		" AND startsWith(short_name, "+quote(userPrefix)+") ORDER BY short_name, table")
	if err != nil {
		return nil, fmt.Errorf("analysts: list row policies: %w", err)
	}
	defer rows.Close()
	byUser := map[string]*User{}
	for rows.Next() {
		var name, table string
		var filter *string
		if err := rows.Scan(&name, &table, &filter); err != nil {
			return nil, fmt.Errorf("analysts: list row policies: %w", err)
		}
		u := byUser[name]
		if u == nil {
			u = &User{Name: name}
			byUser[name] = u
		}
		if filter != nil {
			if m := filterRe.FindStringSubmatch(*filter); m != nil {
				u.Organization = strings.NewReplacer(`\'`, `'`, `\\`, `\`).Replace(m[1])
			}
		}
		u.Tables = append(u.Tables, table)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("analysts: list row policies: %w", err)
	}
	out := make([]User, 0, len(byUser))
	for _, u := range byUser {
		out = append(out, *u)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Organization < out[j].Organization })
	return out, nil
}

// Remove drops the organization's user and its row policies.
func Remove(ctx context.Context, conn driver.Conn, o Options, org string) error {
	if err := ValidOrganization(org); err != nil {
		return err
	}
	users, err := List(ctx, conn, o)
	if err != nil {
		return err
	}
	var tables []string
	for _, u := range users {
		if u.Name == UserName(org) {
			tables = u.Tables
		}
	}
	for _, s := range RemoveStatements(o, org, tables) {
		if err := conn.Exec(ctx, s); err != nil {
			return fmt.Errorf("analysts: remove user for organization %s: %s: %w", org, s, err)
		}
	}
	return nil
}
