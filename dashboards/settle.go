package dashboards

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// The Settler writes the day rollups of migration 0103 (threads_settled,
// webhook_hours) that let panels over weeks read one finished row per
// thread, or per hour, instead of merging partial states.
//
// Why a periodic job and not a materialized view: a view sees one insert
// block, and a thread's webhooks arrive in many blocks, in any order, some
// after the day is over. A day is therefore rebuilt whole from the
// order-independent states whenever the states it was built from changed
// (a fingerprint of their event counts per hour, kept in rollup_days), and
// swapped in atomically with REPLACE PARTITION. Every step is idempotent:
// two settlers (one per processor) or a crash at any point leave correct
// rows, at worst rebuilt once more.
type Settler struct {
	conn  driver.Conn
	cfg   SettlerConfig
	stage string // suffix of this settler's staging tables
}

// SettlerConfig says where and how often to settle.
type SettlerConfig struct {
	Database string
	// Interval between passes (each pass compares fingerprints and rebuilds
	// the days whose sources changed). Default 1m.
	Interval time.Duration
	// After: threads that started before the hour that began After ago are
	// settled (their day is rebuilt up to that hour), the rest are merged
	// live. With 1h (the default) the live part is 1 to 2 hours whatever
	// the range.
	After time.Duration
	// Now is the clock (tests and benchmarks settle "as of" a time).
	// Default time.Now.
	Now func() time.Time
	// Horizon, when set, is the start of the data retention keeps
	// (retention.Horizon): days before it are neither settled nor
	// rebuilt, so a pass never writes back a day retention dropped.
	Horizon func(now time.Time) time.Time
	// Log receives the passes' outcomes. Default: discard.
	Log *slog.Logger
}

// DefaultSettlerConfig settles threads an hour or two after they started
// and checks every minute.
func DefaultSettlerConfig() SettlerConfig {
	return SettlerConfig{Interval: time.Minute, After: time.Hour}
}

// withDefaults fills the zero fields with the defaults documented on
// SettlerConfig.
func (c SettlerConfig) withDefaults() SettlerConfig {
	d := DefaultSettlerConfig()
	c.Interval = cmp.Or(c.Interval, d.Interval)
	c.After = cmp.Or(c.After, d.After)
	if c.Now == nil {
		c.Now = time.Now
	}
	c.Log = cmp.Or(c.Log, slog.New(slog.DiscardHandler))
	return c
}

// rollup is one day-partitioned table the Settler maintains.
type rollup struct {
	name string // the table, and rollup_days.name
	// engine, partition and order of the staging table: the table's own,
	// without replication (REPLACE PARTITION needs the same structure).
	engine, partitionBy, orderBy string
	// hours returns (hour, events) of the source, one row per hour, ascending.
	hours string
	// A day D depends on the source hours [D-before, D+1d+after).
	before, after time.Duration
	// fill is the INSERT ... SELECT writing day [from, to) into the stage.
	fill func(db, stage string, from, to time.Time) string
}

const day = 24 * time.Hour

var rollups = []rollup{
	{
		name:   "threads_settled",
		engine: "MergeTree", partitionBy: "toYYYYMMDD(started_at)", orderBy: "(organization_id, started_ms, thread_id)",
		// Chat ratings (0107) count for threads too: a late one changes
		// the day it is attributed into (its hour is in the day's window,
		// as the thread's own rows are). Counted by event, so a duplicate
		// row that merges away later does not change the fingerprint.
		hours: `SELECT h, sum(n) AS n FROM
    (
        SELECT hour AS h, countMerge(events) AS n FROM {db}.thread_state GROUP BY h
        UNION ALL
        SELECT hour AS h, uniqExact(event_id) AS n FROM {db}.chat_ratings GROUP BY h
    )
GROUP BY h ORDER BY h`,
		before: time.Hour, after: day,
		fill: func(db, stage string, from, to time.Time) string {
			cols := strings.Join(threadColumns, ", ")
			where := fmt.Sprintf("hour >= toDateTime(%d, 'UTC') AND hour < toDateTime(%d, 'UTC')",
				from.Add(-time.Hour).Unix(), to.Add(day).Unix())
			return fmt.Sprintf("INSERT INTO %s.%s (%s)\nSELECT %s\nFROM\n(\n%s\n)\nWHERE started_ms >= %d AND started_ms < %d",
				db, stage, cols, cols, ThreadsSQL(db, where), from.UnixMilli(), to.UnixMilli())
		},
	},
	{
		name:   "webhook_hours",
		engine: "AggregatingMergeTree", partitionBy: "toYYYYMMDD(hour)", orderBy: "(hour, organization_id, action)",
		hours: `SELECT toStartOfHour(minute) AS h, countMerge(events) AS n FROM {db}.webhook_minutes GROUP BY h ORDER BY h`,
		fill: func(db, stage string, from, to time.Time) string {
			return fmt.Sprintf(`INSERT INTO %s.%s (hour, organization_id, action, webhooks, events, latency_ms_sum, latency_ms_max, last_received_ms)
SELECT toStartOfHour(minute) AS hour, organization_id, action,
    sumMergeState(webhooks), countMergeState(events), sumMergeState(latency_ms_sum),
    maxMergeState(latency_ms_max), maxMergeState(last_received_ms)
FROM %s.webhook_minutes
WHERE minute >= toDateTime(%d, 'UTC') AND minute < toDateTime(%d, 'UTC')
GROUP BY hour, organization_id, action`, db, stage, db, from.Unix(), to.Unix())
		},
	},
}

// NewSettler returns a settler for the database of cfg (migrated to 0107).
func NewSettler(conn driver.Conn, cfg SettlerConfig) *Settler {
	cfg = cfg.withDefaults()
	// Staging tables are per settler (two settlers must not fill one
	// stage), named with their creation time so stale ones can be dropped.
	var rnd [3]byte
	_, _ = rand.Read(rnd[:])
	stage := fmt.Sprintf("stage_%d_%x", time.Now().Unix(), rnd)
	return &Settler{conn: conn, cfg: cfg, stage: stage}
}

// Run settles every Interval until ctx ends, then drops its staging tables.
// A failed pass (ClickHouse away) is logged and tried again next time: the
// panels stay right meanwhile, they only merge more live.
func (s *Settler) Run(ctx context.Context) error {
	log := s.cfg.Log
	if err := s.dropStaleStages(ctx); err != nil {
		log.Warn("settler: dropping stale staging tables", "err", err)
	}
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := s.Close(cctx); err != nil {
				log.Warn("settler: dropping staging tables", "err", err)
			}
			return nil
		case <-t.C:
		}
		st, err := s.Pass(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			log.Warn("settler: pass failed; retrying next interval", "err", err)
		case st.Days > 0:
			log.Info("settler: days settled", "days", st.Days, "took", st.Took.Round(time.Millisecond))
		}
		t.Reset(s.cfg.Interval)
	}
}

// Close drops the settler's staging tables (Run does on its way out).
func (s *Settler) Close(ctx context.Context) error {
	var errs []error
	for _, r := range rollups {
		if err := s.conn.Exec(ctx, fmt.Sprintf("DROP TABLE IF EXISTS %s.%s_%s", s.cfg.Database, r.name, s.stage)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// PassStats summarizes one pass.
type PassStats struct {
	Days int // days (re)built, all rollups
	Took time.Duration
}

// Pass brings every rollup up to date once: each finished day whose
// fingerprint differs from the recorded one (or that has none) is rebuilt,
// oldest first, so the watermark only moves over settled days.
func (s *Settler) Pass(ctx context.Context) (PassStats, error) {
	start := time.Now()
	var st PassStats
	for _, r := range rollups {
		days, err := s.settle(ctx, r)
		st.Days += days
		if err != nil {
			st.Took = time.Since(start)
			return st, fmt.Errorf("settler: %s: %w", r.name, err)
		}
	}
	st.Took = time.Since(start)
	return st, nil
}

func (s *Settler) settle(ctx context.Context, r rollup) (int, error) {
	hours, err := s.sourceHours(ctx, r)
	if err != nil {
		return 0, err
	}
	marks, err := s.marks(ctx, r.name)
	if err != nil {
		return 0, err
	}
	// Days from the first with source rows (or a mark) to the last finished.
	// Threads that started before the cutoff are settled: whole days
	// before it, and the part of its own day before it.
	cutoff := s.cfg.Now().UTC().Add(-s.cfg.After).Truncate(time.Hour)
	last := cutoff.Truncate(day)
	if last.Equal(cutoff) {
		last = last.Add(-day)
	}
	var first time.Time
	if len(hours) > 0 {
		first = time.Unix(hours[0].hour, 0).UTC().Add(-r.after).Truncate(day)
	}
	for d := range marks {
		if first.IsZero() || d.Before(first) {
			first = d
		}
	}
	if first.IsZero() {
		return 0, nil
	}
	if s.cfg.Horizon != nil {
		if h := s.cfg.Horizon(s.cfg.Now().UTC()).Truncate(day); first.Before(h) {
			first = h
		}
	}
	byHour := make(map[int64]uint64, len(hours))
	for _, h := range hours {
		byHour[h.hour] = h.n
	}
	n := 0
	for d := first; !d.After(last); d = d.Add(day) {
		upto := d.Add(day)
		if upto.After(cutoff) {
			upto = cutoff
		}
		m, marked := marks[d]
		if marked && m.upto.After(upto) {
			// Never settle less of a day than before (SETTLE_AFTER was
			// raised): the watermark is the largest upto ever recorded.
			upto = m.upto
		}
		fp, srcRows := fingerprint(byHour, d.Add(-r.before), d.Add(day+r.after), upto)
		if (marked && m.fp == fp) || (!marked && srcRows == 0) {
			// Unchanged, or a day without data that never had any (the
			// rollup has no rows for it, and none are missing).
			continue
		}
		if err := s.rebuild(ctx, r, d, upto, fp, srcRows); err != nil {
			return n, fmt.Errorf("day %s: %w", d.Format(time.DateOnly), err)
		}
		n++
	}
	return n, nil
}

type hourCount struct {
	hour int64 // epoch seconds
	n    uint64
}

// sourceHours reads the rollup's source event counts per hour, ascending.
func (s *Settler) sourceHours(ctx context.Context, r rollup) ([]hourCount, error) {
	rows, err := s.conn.Query(ctx, strings.ReplaceAll(r.hours, "{db}", s.cfg.Database))
	if err != nil {
		return nil, fmt.Errorf("source hours: %w", err)
	}
	defer rows.Close()
	var out []hourCount
	for rows.Next() {
		var h time.Time
		var n uint64
		if err := rows.Scan(&h, &n); err != nil {
			return nil, fmt.Errorf("source hours: %w", err)
		}
		out = append(out, hourCount{h.Unix(), n})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("source hours: %w", err)
	}
	return out, nil
}

// mark is what rollup_days says of a settled day.
type mark struct {
	fp   uint64    // fingerprint of the newest rebuild
	upto time.Time // the most of the day ever settled
}

// marks reads, per settled day, the newest fingerprint and the largest upto.
func (s *Settler) marks(ctx context.Context, name string) (map[time.Time]mark, error) {
	rows, err := s.conn.Query(ctx, fmt.Sprintf(
		"SELECT day, argMax(fingerprint, settled_at), max(upto_ms) FROM %s.rollup_days WHERE name = '%s' GROUP BY day",
		s.cfg.Database, name))
	if err != nil {
		return nil, fmt.Errorf("rollup_days: %w", err)
	}
	defer rows.Close()
	out := map[time.Time]mark{}
	for rows.Next() {
		var d time.Time
		var fp, upto uint64
		if err := rows.Scan(&d, &fp, &upto); err != nil {
			return nil, fmt.Errorf("rollup_days: %w", err)
		}
		out[time.Date(d.Year(), d.Month(), d.Day(), 0, 0, 0, 0, time.UTC)] = mark{fp, time.UnixMilli(int64(upto)).UTC()}
	}
	return out, rows.Err()
}

// fingerprint hashes the (hour, events) pairs of [from, to) and how far
// the day is settled (upto). Event counts only grow as rows arrive (merges
// keep them), so any new source row changes it, and so does a later cutoff.
func fingerprint(byHour map[int64]uint64, from, to, upto time.Time) (uint64, uint64) {
	h := fnv.New64a()
	var total uint64
	var buf [16]byte
	for i := 0; i < 8; i++ {
		buf[i] = byte(uint64(upto.Unix()) >> (8 * i))
	}
	h.Write(buf[:8])
	for t := from.Unix(); t < to.Unix(); t += 3600 {
		n := byHour[t]
		if n == 0 {
			continue
		}
		total += n
		for i := 0; i < 8; i++ {
			buf[i] = byte(uint64(t) >> (8 * i))
			buf[8+i] = byte(n >> (8 * i))
		}
		h.Write(buf[:])
	}
	return h.Sum64(), total
}

// rebuild runs the statements that rebuild day d of the rollup.
func (s *Settler) rebuild(ctx context.Context, r rollup, d, upto time.Time, fp, srcRows uint64) error {
	db, stage := s.cfg.Database, r.name+"_"+s.stage
	exec := func(qs []string) error {
		for _, q := range qs {
			if err := s.conn.Exec(ctx, q); err != nil {
				return fmt.Errorf("%.60s...: %w", q, err)
			}
		}
		return nil
	}
	if err := exec(r.fillStatements(db, stage, d, upto)); err != nil {
		return err
	}
	var rows uint64
	if err := s.conn.QueryRow(ctx, fmt.Sprintf("SELECT count() FROM %s.%s", db, stage)).Scan(&rows); err != nil {
		return fmt.Errorf("count stage: %w", err)
	}
	return exec(r.swapStatements(db, stage, d, upto, fp, srcRows, rows))
}

// fillStatements (re)create the staging table, clear day d in it
// (leftovers of an interrupted rebuild) and fill it.
func (r rollup) fillStatements(db, stage string, d, upto time.Time) []string {
	return []string{
		fmt.Sprintf("CREATE TABLE IF NOT EXISTS %[1]s.%[2]s AS %[1]s.%[3]s ENGINE = %[4]s PARTITION BY %[5]s ORDER BY %[6]s",
			db, stage, r.name, r.engine, r.partitionBy, r.orderBy),
		fmt.Sprintf("ALTER TABLE %s.%s DROP PARTITION %s", db, stage, d.Format("20060102")),
		r.fill(db, stage, d, upto),
	}
}

// swapStatements put the staged day (rows rows) into the rollup, record
// its fingerprint and clear the stage. An empty day drops the partition:
// current servers refuse REPLACE PARTITION from an empty source.
func (r rollup) swapStatements(db, stage string, d, upto time.Time, fp, srcRows, rows uint64) []string {
	part := d.Format("20060102")
	swap := fmt.Sprintf("ALTER TABLE %s.%s REPLACE PARTITION %s FROM %s.%s", db, r.name, part, db, stage)
	if rows == 0 {
		swap = fmt.Sprintf("ALTER TABLE %s.%s DROP PARTITION %s", db, r.name, part)
	}
	return []string{
		swap,
		fmt.Sprintf(`INSERT INTO %s.rollup_days (name, day, upto_ms, fingerprint, source_rows, rows, settled_at)
SELECT '%s', toDate('%s'), %d, %d, %d, %d, now()`,
			db, r.name, d.Format(time.DateOnly), upto.UnixMilli(), fp, srcRows, rows),
		fmt.Sprintf("ALTER TABLE %s.%s DROP PARTITION %s", db, stage, part),
	}
}

// dropStaleStages drops staging tables left by settlers that died more
// than a day ago (a live settler recreates its stage when needed).
func (s *Settler) dropStaleStages(ctx context.Context) error {
	rows, err := s.conn.Query(ctx, fmt.Sprintf(
		"SELECT name FROM system.tables WHERE database = '%s' AND name LIKE '%%_stage_%%'", s.cfg.Database))
	if err != nil {
		return err
	}
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return err
		}
		names = append(names, n)
	}
	rows.Close()
	var errs []error
	for _, n := range names {
		i := strings.LastIndex(n, "_stage_")
		parts := strings.Split(n[i+len("_stage_"):], "_")
		sec, err := strconv.ParseInt(parts[0], 10, 64)
		if err != nil || time.Since(time.Unix(sec, 0)) < day {
			continue
		}
		if err := s.conn.Exec(ctx, fmt.Sprintf("DROP TABLE IF EXISTS %s.%s", s.cfg.Database, n)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
