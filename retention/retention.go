// Package retention drops ClickHouse data older than RETENTION_DAYS, by
// whole partitions, so that chat data (customers' personal data) is not
// kept forever. The processor runs it next to the dashboards' settler; it
// is off unless RETENTION_DAYS is set.
//
// What goes, and why whole months: every time-partitioned table is dropped
// by partitions, a cheap metadata operation on 18.16 and current servers
// (ALTER TABLE ... DROP PARTITION; deleting rows by a mutation would
// rewrite every part). events and the tables derived from it are
// partitioned by month, the rollups by day. Data is dropped up to the
// Horizon: the start of the UTC month that holds now - RETENTION_DAYS. A
// month partition goes only when the whole month is older than the
// cutoff, and the day partitions of the rollups go up to the same month
// boundary, not day by day: a rollup day is built from the month tables
// (threads_settled from thread_state), so dropping rollup days whose
// sources are still there would make the settler build them again, and
// panels (rollups before their watermark, live states after) would show a
// range that differs by table. With one boundary every table holds the
// same span. Data is therefore kept between RETENTION_DAYS and
// RETENTION_DAYS plus a month.
//
// The tables are found, not listed: every MergeTree table of the database
// whose partition key is toYYYYMM(col) or toYYYYMMDD(col) is handled
// (events, every derived table, the rollups, pipeline_batches, and any
// table a later migration adds the same way). Two tables have no time
// partition and are handled by row (a mutation, run only when there is
// something to delete): rollup_days (the settler's marks of days before
// the horizon) and chat_threads (one row per thread: its chat and start).
// A chat_threads row is what attributes a chat-level rating to a thread
// (migration 0107); a chat rated after the horizon about a thread that
// started before it still needs its older threads' rows, or the rating
// would be counted for a later thread of the chat. Such chats' rows stay
// until their ratings are dropped too. A table with neither is reported
// (Stats.Skipped) and logged, so a new one does not go unnoticed.
package retention

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/lcpipe/lcpipe/internal/mutation"
)

// Config says what to keep and how often to look.
type Config struct {
	// Database of the pipeline's tables.
	Database string
	// Days of data to keep at least; 0 turns retention off.
	Days int
	// Interval between passes. Default 1h.
	Interval time.Duration
	// DryRun: Pass reports what it would drop and drops nothing.
	DryRun bool
	// Now is the clock (tests run "as of" a time). Default time.Now.
	Now func() time.Time
	// Log receives the passes' outcomes. Default: discard.
	Log *slog.Logger
}

// DefaultConfig has retention off and hourly passes.
func DefaultConfig() Config { return Config{Interval: time.Hour} }

// withDefaults fills the zero fields with the defaults documented on Config.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	c.Interval = cmp.Or(c.Interval, d.Interval)
	if c.Now == nil {
		c.Now = time.Now
	}
	c.Log = cmp.Or(c.Log, slog.New(slog.DiscardHandler))
	return c
}

// Validate reports every problem of the configuration at once (after
// defaults are applied).
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	if c.Days < 0 {
		errs = append(errs, fmt.Errorf("retention: days must be 0 (off) or more, got %d (RETENTION_DAYS)", c.Days))
	}
	if c.Days > 0 && c.Interval <= 0 {
		errs = append(errs, fmt.Errorf("retention: interval must be positive, got %s (RETENTION_INTERVAL)", c.Interval))
	}
	return errors.Join(errs...)
}

// Horizon is the time before which data is dropped when days are kept:
// the start of the UTC month holding now - days.
func Horizon(now time.Time, days int) time.Time {
	c := now.UTC().AddDate(0, 0, -days)
	return time.Date(c.Year(), c.Month(), 1, 0, 0, 0, 0, time.UTC)
}

// Job drops what is older than the horizon.
type Job struct {
	conn driver.Conn
	cfg  Config
}

// New returns a job for cfg's database.
func New(conn driver.Conn, cfg Config) *Job {
	return &Job{conn: conn, cfg: cfg.withDefaults()}
}

// Dropped is one partition dropped (or, in a dry run, to drop).
type Dropped struct {
	Table     string `json:"table"`
	Partition string `json:"partition"` // the partition id: YYYYMM or YYYYMMDD
	Rows      uint64 `json:"rows"`
}

// Stats says what one pass did.
type Stats struct {
	Horizon time.Time `json:"horizon"`
	DryRun  bool      `json:"dry_run"`
	Dropped []Dropped `json:"dropped"`
	// Deleted counts rows deleted (or to delete) by mutation, per table.
	Deleted map[string]uint64 `json:"deleted"`
	// Skipped names tables with neither a time partition nor a rule.
	Skipped []string      `json:"skipped"`
	Took    time.Duration `json:"took"`
}

// Rows is the number of rows dropped and deleted.
func (s Stats) Rows() uint64 {
	var n uint64
	for _, d := range s.Dropped {
		n += d.Rows
	}
	for _, v := range s.Deleted {
		n += v
	}
	return n
}

// Run makes a pass every Interval until ctx ends. A failed pass is logged
// and tried again next time (what it did not drop is still older than the
// horizon then).
func (j *Job) Run(ctx context.Context) error {
	log := j.cfg.Log
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		st, err := j.Pass(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			log.Warn("retention: pass failed; retrying next interval", "err", err)
		case len(st.Dropped) > 0 || len(st.Deleted) > 0:
			log.Info("retention: dropped data older than the horizon", "horizon", st.Horizon.Format(time.DateOnly),
				"partitions", len(st.Dropped), "rows", st.Rows(), "took", st.Took.Round(time.Millisecond))
		}
		t.Reset(j.cfg.Interval)
	}
}

// timePartition matches the partition keys retention understands.
var timePartition = regexp.MustCompile(`^(toYYYYMM|toYYYYMMDD)\(\s*\w+\s*\)$`)

// byRow are the tables without a time partition and how their old rows
// are found; schema_migrations holds no data to expire.
var byRow = map[string]bool{"rollup_days": true, "chat_threads": true, "schema_migrations": true}

// Pass drops, once, every partition that ends at or before the horizon
// and deletes the old rows of the tables kept by row. Idempotent: two
// processors running it at once drop and delete the same things.
func (j *Job) Pass(ctx context.Context) (Stats, error) {
	start := time.Now()
	st := Stats{Horizon: Horizon(j.cfg.Now(), j.cfg.Days), DryRun: j.cfg.DryRun, Deleted: map[string]uint64{}}
	if j.cfg.Days <= 0 {
		return st, errors.New("retention: off (RETENTION_DAYS is 0)")
	}
	tables, err := j.tables(ctx)
	if err != nil {
		return st, err
	}
	var errs []error
	for _, t := range tables {
		switch {
		case t.monthly || t.daily:
			if err := j.dropPartitions(ctx, t, st.Horizon, &st); err != nil {
				errs = append(errs, err)
			}
		case !byRow[t.name]:
			st.Skipped = append(st.Skipped, t.name)
			j.cfg.Log.Warn("retention: table has no time partition and no rule: its rows are kept", "table", t.name, "partition_key", t.key)
		}
	}
	// After the partitions: chat_threads keeps the rows that chat ratings
	// still present need, which the drops above decide.
	for _, t := range tables {
		if t.name != "rollup_days" && t.name != "chat_threads" {
			continue
		}
		if err := j.deleteRows(ctx, t.name, st.Horizon, &st); err != nil {
			errs = append(errs, err)
		}
	}
	st.Took = time.Since(start)
	return st, errors.Join(errs...)
}

type table struct {
	name, key      string
	monthly, daily bool
}

// tables lists the database's MergeTree tables with their partition key;
// the settler's staging tables are its own to drop.
func (j *Job) tables(ctx context.Context) ([]table, error) {
	rows, err := j.conn.Query(ctx, tablesSQL(j.cfg.Database))
	if err != nil {
		return nil, fmt.Errorf("retention: list tables: %w", err)
	}
	defer rows.Close()
	var out []table
	for rows.Next() {
		var t table
		if err := rows.Scan(&t.name, &t.key); err != nil {
			return nil, fmt.Errorf("retention: list tables: %w", err)
		}
		if strings.Contains(t.name, "_stage_") {
			continue
		}
		if m := timePartition.FindStringSubmatch(strings.TrimSpace(t.key)); m != nil {
			t.monthly, t.daily = m[1] == "toYYYYMM", m[1] == "toYYYYMMDD"
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// partitionEnd is when the time span of a partition id ends.
func partitionEnd(t table, id string) (time.Time, bool) {
	layout, next := "200601", func(s time.Time) time.Time { return s.AddDate(0, 1, 0) }
	if t.daily {
		layout, next = "20060102", func(s time.Time) time.Time { return s.AddDate(0, 0, 1) }
	}
	s, err := time.ParseInLocation(layout, id, time.UTC)
	if err != nil {
		return time.Time{}, false
	}
	return next(s), true
}

func (j *Job) dropPartitions(ctx context.Context, t table, horizon time.Time, st *Stats) error {
	db := j.cfg.Database
	rows, err := j.conn.Query(ctx, partitionsSQL(db, t.name))
	if err != nil {
		return fmt.Errorf("retention: %s: list partitions: %w", t.name, err)
	}
	var old []Dropped
	for rows.Next() {
		var id string
		var n uint64
		if err := rows.Scan(&id, &n); err != nil {
			rows.Close()
			return fmt.Errorf("retention: %s: list partitions: %w", t.name, err)
		}
		if end, ok := partitionEnd(t, id); ok && !end.After(horizon) {
			old = append(old, Dropped{Table: t.name, Partition: id, Rows: n})
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("retention: %s: list partitions: %w", t.name, err)
	}
	for _, d := range old {
		if !j.cfg.DryRun {
			if err := j.conn.Exec(ctx, dropSQL(db, t.name, d.Partition)); err != nil {
				return fmt.Errorf("retention: %s: drop partition %s: %w", t.name, d.Partition, err)
			}
		}
		st.Dropped = append(st.Dropped, d)
	}
	return nil
}

// deleteRows deletes the rows of a by-row table that are older than the
// horizon, when there are any.
func (j *Job) deleteRows(ctx context.Context, name string, horizon time.Time, st *Stats) error {
	db := j.cfg.Database
	old := oldRows(name, horizon)
	var n uint64
	if err := j.conn.QueryRow(ctx, countOldSQL(db, name, horizon)).Scan(&n); err != nil {
		return fmt.Errorf("retention: %s: count old rows: %w", name, err)
	}
	if n == 0 {
		return nil
	}
	st.Deleted[name] = n
	if j.cfg.DryRun {
		return nil
	}
	wheres := []string{old}
	if name == "chat_threads" {
		var err error
		if wheres, err = j.chatThreadsWheres(ctx, horizon); err != nil {
			return err
		}
	}
	if err := mutation.Delete(ctx, j.conn, mutation.Options{Database: db}, name, wheres); err != nil {
		return fmt.Errorf("retention: %w", err)
	}
	return nil
}

// keptPerBucket bounds the chat ids one chat_threads clause lists (a
// variable for the tests).
var keptPerBucket uint64 = 2000

// chatThreadsWheres selects the old chat_threads rows except those of
// chats that still have chat ratings. The exceptions are inlined (a
// mutation cannot use a subquery); when there are many, the rows are
// split into buckets by a hash of the chat id, each clause listing only
// its bucket's exceptions.
func (j *Job) chatThreadsWheres(ctx context.Context, horizon time.Time) ([]string, error) {
	old := oldRows("chat_threads", horizon)
	db := j.cfg.Database
	var kept uint64
	if err := j.conn.QueryRow(ctx, ratedChatsSQL(db, horizon, 0)).Scan(&kept); err != nil {
		return nil, fmt.Errorf("retention: chat_threads: count rated chats: %w", err)
	}
	if kept == 0 {
		return []string{old}, nil
	}
	buckets := 1 + kept/keptPerBucket
	rows, err := j.conn.Query(ctx, ratedChatsSQL(db, horizon, buckets))
	if err != nil {
		return nil, fmt.Errorf("retention: chat_threads: list rated chats: %w", err)
	}
	defer rows.Close()
	byBucket := make([][]string, buckets)
	for rows.Next() {
		var id string
		var b uint64
		if err := rows.Scan(&id, &b); err != nil {
			return nil, fmt.Errorf("retention: chat_threads: list rated chats: %w", err)
		}
		byBucket[b] = append(byBucket[b], id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("retention: chat_threads: list rated chats: %w", err)
	}
	return chatThreadsWheres(old, byBucket), nil
}

// chatThreadsWheres builds one clause per bucket: the old rows of the
// bucket but those of its rated chats.
func chatThreadsWheres(old string, byBucket [][]string) []string {
	var out []string
	for b, ids := range byBucket {
		w := old
		if len(byBucket) > 1 {
			w += fmt.Sprintf(" AND cityHash64(chat_id) %% %d = %d", len(byBucket), b)
		}
		if len(ids) > 0 {
			w += " AND NOT (" + mutation.InList("chat_id", ids) + ")"
		}
		out = append(out, w)
	}
	return out
}

// The statements, one function each so that the tests run exactly these
// on 18.16 and on the current engine (chdb).

// tablesSQL lists the database's MergeTree tables and partition keys.
func tablesSQL(db string) string {
	return fmt.Sprintf("SELECT name, partition_key FROM system.tables WHERE database = %s AND engine LIKE '%%MergeTree' ORDER BY name", mutation.Quote(db))
}

// partitionsSQL lists a table's active partitions and their rows.
func partitionsSQL(db, table string) string {
	return fmt.Sprintf("SELECT partition_id, sum(rows) FROM system.parts WHERE database = %s AND table = %s AND active GROUP BY partition_id ORDER BY partition_id",
		mutation.Quote(db), mutation.Quote(table))
}

// dropSQL drops one partition by id (the same id whatever the key's type;
// dropping a partition that is gone already is no error).
func dropSQL(db, table, id string) string {
	return fmt.Sprintf("ALTER TABLE %s.%s DROP PARTITION ID %s", db, table, mutation.Quote(id))
}

// oldRows selects the rows of a by-row table older than the horizon.
func oldRows(name string, horizon time.Time) string {
	if name == "rollup_days" {
		return fmt.Sprintf("day < toDate('%s')", horizon.Format(time.DateOnly))
	}
	return fmt.Sprintf("started_ms < %d", horizon.UnixMilli()) // chat_threads
}

// countOldSQL counts the rows deleteRows would delete (a SELECT may use a
// subquery; only mutations must not).
func countOldSQL(db, name string, horizon time.Time) string {
	q := fmt.Sprintf("SELECT count() FROM %s.%s WHERE %s", db, name, oldRows(name, horizon))
	if name == "chat_threads" {
		q += " AND chat_id NOT IN (" + keptRatings(db, horizon) + ")"
	}
	return q
}

// keptRatings selects the chats with chat ratings at or after the horizon:
// those retention keeps (the month partitions of chat_ratings end on it).
// Said explicitly rather than read after the drops, so that a dry run
// counts what the pass deletes.
func keptRatings(db string, horizon time.Time) string {
	return fmt.Sprintf("SELECT chat_id FROM %s.chat_ratings WHERE hour >= toDateTime(%d, 'UTC')", db, horizon.Unix())
}

// ratedChatsSQL counts (buckets 0) or lists with their bucket the chats of
// old chat_threads rows that chat ratings still need.
func ratedChatsSQL(db string, horizon time.Time, buckets uint64) string {
	from := fmt.Sprintf("FROM %s.chat_threads WHERE %s AND chat_id IN (%s)", db, oldRows("chat_threads", horizon), keptRatings(db, horizon))
	if buckets == 0 {
		return "SELECT uniqExact(chat_id) " + from
	}
	return fmt.Sprintf("SELECT DISTINCT chat_id, toUInt64(cityHash64(chat_id) %% %d) %s", buckets, from)
}

// String summarizes the stats for logs and the CLI.
func (s Stats) String() string {
	verb := "dropped"
	if s.DryRun {
		verb = "would drop"
	}
	return fmt.Sprintf("horizon %s: %s %d partition(s), %s rows", s.Horizon.Format(time.DateOnly), verb, len(s.Dropped), strconv.FormatUint(s.Rows(), 10))
}
