// Package erasetest checks that erased data is gone, independently of how
// package erase chose what to delete: it looks at every table of a
// database, whatever its engine, and at every column that can name a
// chat, a thread or a person, plain or aggregated.
package erasetest

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// idColumns are the columns that hold a chat, thread or user id.
var idColumns = []string{"chat_id", "thread_id", "customer_id", "author_id", "requester_id", "agent_id", "event_id"}

// textColumns hold raw webhook JSON.
var textColumns = []string{"payload", "properties"}

// Mentions counts, per table of db, the rows that name any of ids: a plain
// String id column equal to one, an aggregated one (AggregateFunction(any,
// String), as thread_state's chat_id and customer_id) whose value is one,
// or raw JSON containing one. When org is not empty, rows of tables with
// an organization_id column count only when they are that organization's.
// Tables with no such row are left out. Views are skipped (they hold no
// rows of their own).
func Mentions(ctx context.Context, conn driver.Conn, db, org string, ids []string) (map[string]uint64, error) {
	out := map[string]uint64{}
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := conn.Query(ctx, `SELECT c.table, c.name, c.type FROM system.columns AS c
		ALL INNER JOIN (SELECT name AS table FROM system.tables WHERE database = ? AND engine NOT IN ('View', 'MaterializedView')) AS t USING table
		WHERE c.database = ?`, db, db)
	if err != nil {
		return nil, fmt.Errorf("erasetest: columns: %w", err)
	}
	conds := map[string][]string{}
	orgOf := map[string]string{}
	var order []string
	quoted := make([]string, len(ids))
	for i, id := range ids {
		quoted[i] = quote(id)
	}
	list := "(" + strings.Join(quoted, ", ") + ")"
	for rows.Next() {
		var table, col, typ string
		if err := rows.Scan(&table, &col, &typ); err != nil {
			rows.Close()
			return nil, err
		}
		var c string
		switch {
		case col == "organization_id" && typ == "String" && org != "":
			orgOf[table] = "organization_id = " + quote(org)
			continue
		case slices.Contains(idColumns, col) && typ == "String":
			c = col + " IN " + list
		case slices.Contains(idColumns, col) && typ == "AggregateFunction(any, String)":
			c = "finalizeAggregation(" + col + ") IN " + list
		case slices.Contains(textColumns, col) && typ == "String":
			var or []string
			for _, q := range quoted {
				or = append(or, fmt.Sprintf("position(%s, %s) > 0", col, q))
			}
			c = strings.Join(or, " OR ")
		default:
			continue
		}
		if conds[table] == nil {
			order = append(order, table)
		}
		conds[table] = append(conds[table], "("+c+")")
	}
	rows.Close()
	for _, table := range order {
		where := "(" + strings.Join(conds[table], " OR ") + ")"
		if o := orgOf[table]; o != "" {
			where = o + " AND " + where
		}
		q := fmt.Sprintf("SELECT count() FROM %s.%s WHERE %s", db, table, where)
		var n uint64
		qctx := clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"max_query_size": len(q) + 1<<16}))
		if err := conn.QueryRow(qctx, q).Scan(&n); err != nil {
			return nil, fmt.Errorf("erasetest: %s: %w", table, err)
		}
		if n > 0 {
			out[table] = n
		}
	}
	return out, nil
}

// Tables lists the tables of db Mentions looks into (those with an id or
// JSON column), for tests that want to be sure it looked.
func Tables(ctx context.Context, conn driver.Conn, db string) ([]string, error) {
	cols := append(append([]string(nil), idColumns...), textColumns...)
	rows, err := conn.Query(ctx, `SELECT DISTINCT c.table FROM system.columns AS c
		ALL INNER JOIN (SELECT name AS table FROM system.tables WHERE database = ? AND engine NOT IN ('View', 'MaterializedView')) AS t USING table
		WHERE c.database = ? AND has(?, c.name) AND c.type IN ('String', 'AggregateFunction(any, String)') ORDER BY c.table`, db, db, cols)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

func quote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}
