// Package erase removes an organization's, a customer's or a chat's data
// from the pipeline's ClickHouse database (`lcpipe erase`): events, every
// table derived from it and the dashboards' rollups, waiting until the
// server has rewritten every part, and says per table how many rows went.
//
// What is deleted is found, not listed: every MergeTree table of the
// database is looked at (events, the derived tables, the rollups, the
// settler's staging tables, and whatever a later migration adds), and a
// table's rows are selected by the columns it has:
//
//   - organization: every row whose organization_id is the organization.
//   - chat: rows of the chat (chat_id) or of one of its threads (thread_id;
//     thread_state keeps per-thread aggregates whose chat is not a plain
//     column, so its rows go by thread, whole).
//   - customer: the chats the customer took part in (a chat_id of any row
//     whose customer_id, author_id or requester_id is the customer), all
//     their rows and their threads' rows as for a chat, plus any other row
//     naming the customer in those columns or in the raw payload.
//
// A table without such a column holds no data of the target and is
// reported as kept, with the reason (Report.Kept): webhook_minutes and
// webhook_hours are webhook counts per organization, action and minute or
// hour (no person in them: a customer or chat erase keeps them, an
// organization erase deletes them), agent_status is the agents' routing
// status, pipeline_batches per-flush statistics without organization,
// rollup_days the settler's bookkeeping.
//
// How: ids are resolved first (SELECTs), then each table gets ALTER TABLE
// ... DELETE mutations with the ids inlined as literals (18.16 cannot be
// trusted with a subquery in a mutation, see internal/mutation), and the
// erase waits for them. Order matters for a second run after a failure:
// events, the table the ids are resolved from, goes last, so a run that
// stopped half-way is finished by running it again. thread_state goes
// before threads_settled: the settler builds threads_settled from
// thread_state, and a settler pass running meanwhile could otherwise write
// erased threads back. The settler also sees the changed sources (its
// fingerprints count thread_state's events per hour) and rebuilds the
// affected days on its next pass, from data without the erased rows.
// Rows found again after the mutations (a settler pass that read
// thread_state just before it changed, or new webhooks of the chat) get
// another round, up to Options.Rounds; what still matches then is an
// error, with the counts.
//
// Not here: the raw and dead-letter Kafka topics keep the webhooks until
// their retention (a replay within it inserts them again), and the
// processor's in-memory caches forget them when it restarts; `lcpipe
// erase` says so in its output.
package erase

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/ClickHouse/clickhouse-go/v2/lib/proto"

	"github.com/lcpipe/lcpipe/internal/mutation"
	"github.com/lcpipe/lcpipe/schema"
)

// Target is what to erase: an organization, or one customer or one chat of
// it.
type Target struct {
	Organization string `json:"organization"`
	Customer     string `json:"customer,omitempty"`
	Chat         string `json:"chat,omitempty"`
}

// Validate reports what is wrong with the target.
func (t Target) Validate() error {
	var errs []error
	if strings.TrimSpace(t.Organization) == "" {
		errs = append(errs, errors.New("erase: an organization is required (--organization)"))
	}
	if t.Customer != "" && t.Chat != "" {
		errs = append(errs, errors.New("erase: give a customer or a chat, not both"))
	}
	return errors.Join(errs...)
}

// Scope names what the target is: organization, customer or chat.
func (t Target) Scope() string {
	switch {
	case t.Customer != "":
		return "customer"
	case t.Chat != "":
		return "chat"
	}
	return "organization"
}

// Options say where and how to erase.
type Options struct {
	// Database of the pipeline's tables.
	Database string
	// DryRun counts what would be deleted and deletes nothing.
	DryRun bool
	// Rounds bounds the rounds of deletion (see the package doc). Default 3.
	Rounds int
	// Log receives progress. Default: discard.
	Log *slog.Logger
}

// withDefaults fills the zero fields with the defaults documented on
// Options.
func (o Options) withDefaults() Options {
	o.Rounds = cmp.Or(o.Rounds, 3)
	o.Log = cmp.Or(o.Log, slog.New(slog.DiscardHandler))
	return o
}

// Table is what happened in one table.
type Table struct {
	Table string `json:"table"`
	// By names the columns the rows were selected by.
	By []string `json:"by"`
	// Matched is the rows found before deleting; Remaining those found
	// after (in a dry run, Matched).
	Matched   uint64 `json:"matched"`
	Remaining uint64 `json:"remaining"`
	// Mutations sent (ALTER TABLE ... DELETE statements), all rounds.
	Mutations int `json:"mutations"`
}

// Deleted is Matched - Remaining.
func (t Table) Deleted() uint64 { return t.Matched - min(t.Matched, t.Remaining) }

// Kept is a table left alone and why.
type Kept struct {
	Table  string `json:"table"`
	Reason string `json:"reason"`
}

// Report says what an erase found and did.
type Report struct {
	Target   Target `json:"target"`
	Database string `json:"database"`
	DryRun   bool   `json:"dry_run"`
	// Chats and Threads resolved for a customer or chat target.
	Chats   int           `json:"chats"`
	Threads int           `json:"threads"`
	Tables  []Table       `json:"tables"`
	Kept    []Kept        `json:"kept"`
	Rounds  int           `json:"rounds"`
	Took    time.Duration `json:"took"`
}

// Matched and Remaining sum the tables.
func (r *Report) Matched() (n uint64) {
	for _, t := range r.Tables {
		n += t.Matched
	}
	return n
}

// Remaining sums the rows still matching after the erase.
func (r *Report) Remaining() (n uint64) {
	for _, t := range r.Tables {
		n += t.Remaining
	}
	return n
}

// The columns that select rows.
const (
	colOrg    = "organization_id"
	colChat   = "chat_id"
	colThread = "thread_id"
)

// userColumns hold a customer's id; payloadColumns hold raw webhook JSON.
var (
	userColumns    = []string{"customer_id", "author_id", "requester_id"}
	payloadColumns = []string{"payload", "properties"}
)

// keptReasons say, for the tables the pipeline creates that hold no data
// of a customer or chat, what they hold instead.
var keptReasons = map[string]string{
	"webhook_minutes":   "webhook counts per organization, action and minute: no personal data (an organization erase deletes them)",
	"webhook_hours":     "webhook counts per organization, action and hour: no personal data (an organization erase deletes them)",
	"agent_status":      "agents' routing-status changes: no customer or chat data (an organization erase deletes them)",
	"pipeline_batches":  "per-flush pipeline statistics: no organization, customer or chat",
	"rollup_days":       "the settler's bookkeeping (days, counts, fingerprints)",
	"schema_migrations": "applied migrations",
}

// table is a table of the database with its String columns.
type table struct {
	name   string
	engine string
	cols   map[string]bool // String columns
}

func (t table) has(c string) bool { return t.cols[c] }

// Run erases target from the database (or, with DryRun, counts what it
// would). The report is returned with the error when one happens half-way.
func Run(ctx context.Context, conn driver.Conn, o Options, target Target) (*Report, error) {
	start := time.Now()
	if err := target.Validate(); err != nil {
		return nil, err
	}
	o = o.withDefaults()
	rep := &Report{Target: target, Database: o.Database, DryRun: o.DryRun}
	tables, err := listTables(ctx, conn, o.Database)
	if err != nil {
		return nil, err
	}
	var ids scope
	if target.Scope() != "organization" {
		if ids, err = resolve(ctx, conn, o.Database, tables, target); err != nil {
			return nil, err
		}
		rep.Chats, rep.Threads = len(ids.chats), len(ids.threads)
		o.Log.Info("erase: resolved", "scope", target.Scope(), "chats", rep.Chats, "threads", rep.Threads)
	}
	type plan struct {
		t     table
		by    []string
		base  string
		terms []mutation.Term
		i     int // index in rep.Tables
	}
	var plans []plan
	for _, t := range tables {
		by, base, terms := selectRows(t, target, ids)
		if base == "" {
			rep.Kept = append(rep.Kept, Kept{Table: t.name, Reason: keptReason(t, target)})
			continue
		}
		var n uint64
		if n, err = countRows(ctx, conn, o.Database, t.name, base, terms); err != nil {
			if gone(err) {
				continue
			}
			return rep, err
		}
		rep.Tables = append(rep.Tables, Table{Table: t.name, By: by, Matched: n, Remaining: n})
		plans = append(plans, plan{t: t, by: by, base: base, terms: terms, i: len(rep.Tables) - 1})
	}
	sort.Slice(rep.Kept, func(i, j int) bool { return rep.Kept[i].Table < rep.Kept[j].Table })
	if o.DryRun {
		rep.Took = time.Since(start)
		return rep, nil
	}
	for round := 1; round <= o.Rounds; round++ {
		rep.Rounds = round
		left := 0
		for _, p := range plans {
			tr := &rep.Tables[p.i]
			if tr.Remaining == 0 {
				continue
			}
			wheres := []string{p.base} // an organization: all its rows
			if len(p.terms) > 0 {
				wheres = mutation.Pack(p.base, p.terms, 0)
			}
			o.Log.Info("erase: deleting", "table", p.t.name, "rows", tr.Remaining, "mutations", len(wheres), "round", round)
			if err := mutation.Delete(ctx, conn, mutation.Options{Database: o.Database}, p.t.name, wheres); err != nil {
				if gone(err) {
					tr.Remaining = 0
					continue
				}
				rep.Took = time.Since(start)
				return rep, fmt.Errorf("erase: %w", err)
			}
			tr.Mutations += len(wheres)
		}
		// Count again, every table: a settler pass can have written rows
		// back into a table done earlier in this round.
		for _, p := range plans {
			n, err := countRows(ctx, conn, o.Database, p.t.name, p.base, p.terms)
			if gone(err) {
				n, err = 0, nil
			}
			if err != nil {
				rep.Took = time.Since(start)
				return rep, err
			}
			rep.Tables[p.i].Remaining = n
			if n > 0 {
				left++
			}
		}
		if left == 0 {
			break
		}
	}
	rep.Took = time.Since(start)
	if n := rep.Remaining(); n > 0 {
		var where []string
		for _, t := range rep.Tables {
			if t.Remaining > 0 {
				where = append(where, fmt.Sprintf("%s: %d", t.Table, t.Remaining))
			}
		}
		return rep, fmt.Errorf("erase: %d row(s) still match after %d round(s) (%s): new webhooks of the target arriving, or a settler pass writing rollup rows back; run erase again",
			n, rep.Rounds, strings.Join(where, ", "))
	}
	return rep, nil
}

// listTables reads the database's MergeTree tables and their String
// columns, in the order erase deletes from them: thread_state first, the
// other derived tables, the rest, events last (see the package doc).
func listTables(ctx context.Context, conn driver.Conn, db string) ([]table, error) {
	rows, err := conn.Query(ctx, "SELECT name, engine FROM system.tables WHERE database = ? AND engine LIKE '%MergeTree'", db)
	if err != nil {
		return nil, fmt.Errorf("erase: list tables: %w", err)
	}
	byName := map[string]*table{}
	for rows.Next() {
		var t table
		if err := rows.Scan(&t.name, &t.engine); err != nil {
			rows.Close()
			return nil, fmt.Errorf("erase: list tables: %w", err)
		}
		t.cols = map[string]bool{}
		byName[t.name] = &t
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("erase: list tables: %w", err)
	}
	if len(byName) == 0 {
		return nil, fmt.Errorf("erase: database %s has no tables (not migrated, or another CLICKHOUSE_DATABASE?)", db)
	}
	if byName["events"] == nil {
		return nil, fmt.Errorf("erase: database %s has no events table", db)
	}
	crows, err := conn.Query(ctx, "SELECT table, name FROM system.columns WHERE database = ? AND type = 'String'", db)
	if err != nil {
		return nil, fmt.Errorf("erase: list columns: %w", err)
	}
	for crows.Next() {
		var tb, c string
		if err := crows.Scan(&tb, &c); err != nil {
			crows.Close()
			return nil, fmt.Errorf("erase: list columns: %w", err)
		}
		if t := byName[tb]; t != nil {
			t.cols[c] = true
		}
	}
	crows.Close()
	if err := crows.Err(); err != nil {
		return nil, fmt.Errorf("erase: list columns: %w", err)
	}
	rank := func(name string) int {
		switch {
		case name == "thread_state":
			return 0
		case slices.ContainsFunc(schema.DerivedTables, func(d schema.Derived) bool { return d.Table == name }):
			return 1
		case name == "events":
			return 3
		}
		return 2
	}
	out := make([]table, 0, len(byName))
	for _, t := range byName {
		out = append(out, *t)
	}
	sort.Slice(out, func(i, j int) bool {
		if ri, rj := rank(out[i].name), rank(out[j].name); ri != rj {
			return ri < rj
		}
		return out[i].name < out[j].name
	})
	return out, nil
}

// scope is what a customer or chat target resolved to.
type scope struct {
	chats, threads []string
}

// resolve finds the chats and threads of a customer or chat target in
// every table that can tell (events holds them all; the others help a
// second run after one that deleted events' rows of some tables only).
func resolve(ctx context.Context, conn driver.Conn, db string, tables []table, target Target) (scope, error) {
	var s scope
	if target.Chat != "" {
		s.chats = []string{target.Chat}
	} else {
		seen := map[string]bool{}
		for _, t := range tables {
			if !t.has(colChat) || !t.has(colOrg) || len(userTerms(t, target.Customer)) == 0 {
				continue
			}
			q := chatsSQL(db, t, target)
			if err := collect(ctx, conn, q, seen, &s.chats); err != nil {
				return s, fmt.Errorf("erase: chats of the customer in %s: %w", t.name, err)
			}
		}
	}
	if len(s.chats) == 0 {
		return s, nil
	}
	seen := map[string]bool{}
	for _, t := range tables {
		if !t.has(colChat) || !t.has(colThread) || !t.has(colOrg) {
			continue
		}
		q := threadsSQL(db, t.name, target.Organization, s.chats)
		if err := collect(withQuerySize(ctx, q), conn, q, seen, &s.threads); err != nil {
			return s, fmt.Errorf("erase: threads of the chats in %s: %w", t.name, err)
		}
	}
	sort.Strings(s.chats)
	sort.Strings(s.threads)
	return s, nil
}

func collect(ctx context.Context, conn driver.Conn, q string, seen map[string]bool, out *[]string) error {
	rows, err := conn.Query(ctx, q)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return err
		}
		if !seen[id] {
			seen[id] = true
			*out = append(*out, id)
		}
	}
	return rows.Err()
}

// chatsSQL selects the chats of t's rows naming the customer.
func chatsSQL(db string, t table, target Target) string {
	return fmt.Sprintf("SELECT DISTINCT chat_id FROM %s.%s WHERE organization_id = %s AND chat_id != '' AND (%s)",
		db, t.name, mutation.Quote(target.Organization), strings.Join(userTerms(t, target.Customer), " OR "))
}

// threadsSQL selects the threads of the chats in a table with both columns.
func threadsSQL(db, table, org string, chats []string) string {
	return fmt.Sprintf("SELECT DISTINCT thread_id FROM %s.%s WHERE organization_id = %s AND thread_id != '' AND %s",
		db, table, mutation.Quote(org), mutation.InList(colChat, chats))
}

// userTerms are the conditions naming the customer in t's user columns.
func userTerms(t table, customer string) []string {
	var out []string
	for _, c := range userColumns {
		if t.has(c) {
			out = append(out, c+" = "+mutation.Quote(customer))
		}
	}
	return out
}

// selectRows says how the target's rows of t are selected: the columns,
// the base condition and the terms any of which a row must match (no
// terms: the base alone). An empty base means t holds none of them.
func selectRows(t table, target Target, s scope) (by []string, base string, terms []mutation.Term) {
	if !t.has(colOrg) {
		return nil, "", nil
	}
	base = colOrg + " = " + mutation.Quote(target.Organization)
	if target.Scope() == "organization" {
		return []string{colOrg}, base, nil
	}
	if t.has(colChat) && len(s.chats) > 0 {
		by = append(by, colChat)
		terms = append(terms, mutation.Term{Column: colChat, IDs: s.chats})
	}
	if t.has(colThread) && len(s.threads) > 0 {
		by = append(by, colThread)
		terms = append(terms, mutation.Term{Column: colThread, IDs: s.threads})
	}
	if target.Customer != "" {
		for _, c := range userColumns {
			if t.has(c) {
				by = append(by, c)
				terms = append(terms, mutation.Term{Expr: c + " = " + mutation.Quote(target.Customer)})
			}
		}
		// The raw body names the customer wherever LiveChat put it. Only
		// for ids long enough not to occur by chance (LiveChat's are UUIDs).
		if len(target.Customer) >= 8 {
			for _, c := range payloadColumns {
				if t.has(c) {
					by = append(by, c)
					terms = append(terms, mutation.Term{Expr: fmt.Sprintf("position(%s, %s) > 0", c, mutation.Quote(target.Customer))})
				}
			}
		}
	}
	if len(terms) == 0 {
		return nil, "", nil
	}
	return by, base, terms
}

func keptReason(t table, target Target) string {
	if r, ok := keptReasons[t.name]; ok {
		return r
	}
	if !t.has(colOrg) {
		return "no organization_id column"
	}
	if target.Scope() == "chat" {
		return "no chat_id or thread_id column"
	}
	return "no chat_id, thread_id or customer column"
}

// countRows counts the rows matching base AND (any term).
func countRows(ctx context.Context, conn driver.Conn, db, name, base string, terms []mutation.Term) (uint64, error) {
	q := countSQL(db, name, base, terms)
	var n uint64
	if err := conn.QueryRow(withQuerySize(ctx, q), q).Scan(&n); err != nil {
		return 0, fmt.Errorf("erase: count rows of %s: %w", name, err)
	}
	return n, nil
}

// countSQL counts the rows the terms select.
func countSQL(db, name, base string, terms []mutation.Term) string {
	return fmt.Sprintf("SELECT count() FROM %s.%s WHERE %s", db, name, whereAll(base, terms))
}

// whereAll is base AND (t1 OR t2 ...) in one condition (for SELECTs, which
// may be as long as max_query_size allows: withQuerySize).
func whereAll(base string, terms []mutation.Term) string {
	if len(terms) == 0 {
		return base
	}
	var or []string
	for _, t := range terms {
		if t.Expr != "" {
			or = append(or, t.Expr)
		} else if len(t.IDs) > 0 {
			or = append(or, mutation.InList(t.Column, t.IDs))
		}
	}
	if len(or) == 0 {
		return base + " AND 0"
	}
	return base + " AND (" + strings.Join(or, " OR ") + ")"
}

// gone reports a table dropped while erase ran (a settler's staging table
// when that settler stops): its rows are gone with it.
func gone(err error) bool {
	var ce *proto.Exception
	return errors.As(err, &ce) && ce.Code == 60 // UNKNOWN_TABLE
}

// withQuerySize lets a SELECT with long inlined id lists through
// max_query_size (256 KiB by default).
func withQuerySize(ctx context.Context, q string) context.Context {
	if len(q) < mutation.MaxStatementBytes {
		return ctx
	}
	return clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"max_query_size": len(q) + 1<<16}))
}
