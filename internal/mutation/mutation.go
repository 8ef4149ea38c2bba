// Package mutation deletes rows from ClickHouse tables with ALTER TABLE ...
// DELETE and waits until the server has rewritten every part, so a caller
// (erase, retention) can tell an operator "gone" and mean it.
//
// Why a package: a mutation is asynchronous on every ClickHouse version
// (the ALTER returns once it is queued), and 18.16 has no mutations_sync
// setting and no fail reason in system.mutations; the waiting and what
// can and cannot be said in a mutation's WHERE are decided once, here.
//
// What a WHERE may hold: literals only. On 18.16.1 a mutation whose WHERE
// has IN (SELECT ...) was seen reported done (is_done = 1, every part
// rewritten) with the rows still there when sent by clickhouse-client or
// over HTTP, and deleting them when sent by the Go driver: not something
// to erase personal data with. Callers resolve the ids first and inline
// them with Quote and InList, in statements that Pack keeps below the
// server's max_query_size.
package mutation

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/lcpipe/lcpipe/internal/backoff"
)

// MaxStatementBytes bounds one ALTER statement Pack builds: ClickHouse's
// max_query_size is 256 KiB by default on 18.16 and current servers, and a
// mutation's command is parsed again when the server loads it at start.
const MaxStatementBytes = 128 << 10

// Quote returns s as a ClickHouse string literal.
func Quote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `'`, `\'`)
	return "'" + r.Replace(s) + "'"
}

// InList returns "col IN ('a', 'b')" for ids (which must not be empty).
func InList(col string, ids []string) string {
	q := make([]string, len(ids))
	for i, id := range ids {
		q[i] = Quote(id)
	}
	return col + " IN (" + strings.Join(q, ", ") + ")"
}

// Term is one disjunct of a condition: Column IN (IDs), or Expr as it is
// (when Expr is set, Column and IDs are ignored).
type Term struct {
	Column string
	IDs    []string
	Expr   string
}

// Pack builds the WHERE clauses that together select
// base AND (t1 OR t2 OR ...): the terms' id lists are split so that no
// clause is longer than budget bytes (MaxStatementBytes when 0). Rows
// matching several clauses are deleted by the first; deleting is
// idempotent, so the split does not change what goes. No terms, or terms
// with no ids and no expression, give no clauses.
func Pack(base string, terms []Term, budget int) []string {
	if budget <= 0 {
		budget = MaxStatementBytes
	}
	// Disjuncts no longer than the room a clause leaves beside base...
	room := budget - len(base) - len(" AND ()")
	var parts []string
	for _, t := range terms {
		if t.Expr != "" {
			parts = append(parts, t.Expr)
			continue
		}
		var ids []string
		used := len(t.Column) + len(" IN ()")
		for _, id := range t.IDs {
			l := len(Quote(id)) + len(", ")
			if len(ids) > 0 && used+l > room {
				parts = append(parts, InList(t.Column, ids))
				ids, used = nil, len(t.Column)+len(" IN ()")
			}
			ids = append(ids, id)
			used += l
		}
		if len(ids) > 0 {
			parts = append(parts, InList(t.Column, ids))
		}
	}
	// ...then as many disjuncts per clause as fit.
	var out, cur []string
	size := 0
	for _, p := range parts {
		if len(cur) > 0 && size+len(p)+len(" OR ") > room {
			out = append(out, base+" AND ("+strings.Join(cur, " OR ")+")")
			cur, size = nil, 0
		}
		cur = append(cur, p)
		size += len(p) + len(" OR ")
	}
	if len(cur) > 0 {
		out = append(out, base+" AND ("+strings.Join(cur, " OR ")+")")
	}
	return out
}

// Options say where mutations run.
type Options struct {
	// Database holding the tables.
	Database string
	// Poll bounds the waits between looks at system.mutations.
	// Default 50ms to 2s.
	Poll backoff.Policy
}

// withDefaults fills the zero fields with the defaults documented on
// Options.
func (o Options) withDefaults() Options {
	o.Poll.Min = cmp.Or(o.Poll.Min, 50*time.Millisecond)
	o.Poll.Max = cmp.Or(o.Poll.Max, 2*time.Second)
	return o
}

// Delete runs one ALTER TABLE ... DELETE WHERE per clause on table and
// waits until each of them is done. It returns an error naming the table
// when the server refuses a statement, reports a mutation failing (current
// servers; 18.16 keeps retrying a failing mutation silently, and ctx's
// deadline ends the wait), or ctx ends. No clauses: nothing to do.
func Delete(ctx context.Context, conn driver.Conn, o Options, table string, wheres []string) error {
	if len(wheres) == 0 {
		return nil
	}
	before, err := ids(ctx, conn, o.Database, table)
	if err != nil {
		return err
	}
	for _, w := range wheres {
		if err := conn.Exec(ctx, DeleteSQL(o.Database, table, w)); err != nil {
			return fmt.Errorf("mutation: %s.%s: delete: %w", o.Database, table, err)
		}
	}
	after, err := ids(ctx, conn, o.Database, table)
	if err != nil {
		return err
	}
	var ours []string
	for _, id := range after {
		if !slices.Contains(before, id) {
			ours = append(ours, id)
		}
	}
	if len(ours) == 0 {
		// The server keeps a bounded history of finished mutations
		// (finished_mutations_to_keep, 100): ours may already be done and
		// gone from it only if it finished, so there is nothing to wait for.
		return nil
	}
	return Wait(ctx, conn, o, table, ours)
}

// DeleteSQL is the statement Delete sends for one clause.
func DeleteSQL(db, table, where string) string {
	return fmt.Sprintf("ALTER TABLE %s.%s DELETE WHERE %s", db, table, where)
}

// ids lists the mutation ids system.mutations knows for the table.
func ids(ctx context.Context, conn driver.Conn, db, table string) ([]string, error) {
	rows, err := conn.Query(ctx, "SELECT mutation_id FROM system.mutations WHERE database = ? AND table = ?", db, table)
	if err != nil {
		return nil, fmt.Errorf("mutation: %s.%s: list mutations: %w", db, table, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("mutation: %s.%s: list mutations: %w", db, table, err)
		}
		out = append(out, id)
	}
	return out, rows.Err()
}

// Wait polls system.mutations until the mutations ids of table are done
// (is_done = 1; a mutation the server no longer lists finished long ago).
// On current servers a mutation that keeps failing (latest_fail_reason) is
// an error at once; on 18.16, which does not report failures, the wait
// lasts until ctx ends, and the error then says how many parts were left.
func Wait(ctx context.Context, conn driver.Conn, o Options, table string, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	o = o.withDefaults()
	poll := o.Poll
	failReason, err := hasFailReason(ctx, conn)
	if err != nil {
		return err
	}
	cols := "mutation_id, is_done, parts_to_do, ''"
	if failReason {
		cols = "mutation_id, is_done, parts_to_do, latest_fail_reason"
	}
	q := fmt.Sprintf("SELECT %s FROM system.mutations WHERE database = ? AND table = ? AND has(?, mutation_id)", cols)
	start := time.Now()
	for attempt := 0; ; attempt++ {
		pending, parts, reason, err := pendingOf(ctx, conn, q, o.Database, table, ids)
		if err != nil {
			return err
		}
		if pending == 0 {
			return nil
		}
		if reason != "" {
			return fmt.Errorf("mutation: %s.%s: %d mutation(s) failing: %s", o.Database, table, pending, reason)
		}
		if err := poll.Wait(ctx, attempt); err != nil {
			return fmt.Errorf("mutation: %s.%s: %d mutation(s) not done after %s (%d part(s) to rewrite; 18.16 does not report why: see the server log): %w",
				o.Database, table, pending, time.Since(start).Round(time.Millisecond), parts, err)
		}
	}
}

func pendingOf(ctx context.Context, conn driver.Conn, q, db, table string, ids []string) (pending int, parts int64, reason string, err error) {
	rows, err := conn.Query(ctx, q, db, table, ids)
	if err != nil {
		return 0, 0, "", fmt.Errorf("mutation: %s.%s: read system.mutations: %w", db, table, err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, r string
		var done uint8
		var todo int64
		if err := rows.Scan(&id, &done, &todo, &r); err != nil {
			return 0, 0, "", fmt.Errorf("mutation: %s.%s: read system.mutations: %w", db, table, err)
		}
		if done == 0 {
			pending++
			parts += todo
			if r != "" {
				reason = r
			}
		}
	}
	return pending, parts, reason, rows.Err()
}

// hasFailReason reports whether system.mutations has latest_fail_reason
// (current servers do, 18.16 does not).
func hasFailReason(ctx context.Context, conn driver.Conn) (bool, error) {
	var n uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM system.columns WHERE database = 'system' AND table = 'mutations' AND name = 'latest_fail_reason'").Scan(&n); err != nil {
		return false, errors.Join(errors.New("mutation: read system.columns"), err)
	}
	return n > 0, nil
}
