package processor

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/ext"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// store is the processor's ClickHouse side: the lookups that make
// de-duplication exact (stored IDs, the kept changes of subjects), the
// INSERTs into events (open/sendBlock: one INSERT spans many batches), the
// statistics rows and the running-insert checks. Lookups send the batch's IDs as an external table (no
// query-size limit, one round trip), and prune by occurred_at so only
// recent parts are read.
type store struct {
	conn driver.Conn
	db   string
}

// lookupMargin widens the occurred_at range of ID lookups for rows whose
// occurred_at is the received-at of their first delivery (events without a
// time of their own): a later delivery of the same event was received at
// most this much later (LiveChat retries within minutes; older docs said
// hours). Rows with a time of their own are looked up in their exact range:
// every delivery carries the same time.
const lookupMargin = 24 * time.Hour

// occRanges are the occurred_at ranges (epoch ms) an ID lookup must cover.
type occRanges struct {
	ownLo, ownHi   uint64 // rows with a time of their own, exact
	recvLo, recvHi uint64 // rows stamped with received-at, widened by lookupMargin
	own, recv      bool
}

func (o *occRanges) add(r *Row) {
	t := r.OccurredAtMs
	if r.ownTime {
		if !o.own || t < o.ownLo {
			o.ownLo = t
		}
		o.own, o.ownHi = true, max(o.ownHi, t)
		return
	}
	if !o.recv || t < o.recvLo {
		o.recvLo = t
	}
	o.recv, o.recvHi = true, max(o.recvHi, t)
}

// where renders the occurred_at condition (DateTime has seconds).
func (o *occRanges) where() (string, []any) {
	var conds []string
	var args []any
	if o.own {
		conds = append(conds, "(occurred_at >= toDateTime(?, 'UTC') AND occurred_at <= toDateTime(?, 'UTC'))")
		args = append(args, o.ownLo/1000, o.ownHi/1000+1)
	}
	if o.recv {
		m := uint64(lookupMargin / time.Millisecond)
		conds = append(conds, "(occurred_at >= toDateTime(?, 'UTC') AND occurred_at <= toDateTime(?, 'UTC'))")
		args = append(args, sub(o.recvLo, m)/1000, (o.recvHi+m)/1000+1)
	}
	if len(conds) == 0 {
		return "1", nil
	}
	return "(" + strings.Join(conds, " OR ") + ")", args
}

// storedAt is where a stored event came from, and which INSERT wrote it.
type storedAt struct {
	topic    string
	part     int32
	off      int64
	idx      uint16
	insertID uint64
}

// storedIDs returns which of rows' IDs are already in events, with the
// stored row's source position and insert id.
func (s *store) storedIDs(ctx context.Context, rows []*Row) (map[string]storedAt, error) {
	out := map[string]storedAt{}
	if len(rows) == 0 {
		return out, nil
	}
	tbl, err := ext.NewTable("_ids", ext.Column("id", "String"))
	if err != nil {
		return nil, fmt.Errorf("clickhouse: external table: %w", err)
	}
	var rng occRanges
	for _, r := range rows {
		if err := tbl.Append(r.EventID); err != nil {
			return nil, fmt.Errorf("clickhouse: external table: %w", err)
		}
		rng.add(r)
	}
	cond, args := rng.where()
	q := "SELECT event_id, src_topic, src_partition, src_offset, src_index, insert_id FROM " + s.db + ".events WHERE " + cond + " AND event_id IN _ids"
	res, err := s.conn.Query(ch.Context(ctx, ch.WithExternalTable(tbl)), q, args...)
	if err != nil {
		return nil, fmt.Errorf("clickhouse: look up %d event ids: %w", len(rows), err)
	}
	defer res.Close()
	for res.Next() {
		var id string
		var at storedAt
		if err := res.Scan(&id, &at.topic, &at.part, &at.off, &at.idx, &at.insertID); err != nil {
			return nil, fmt.Errorf("clickhouse: scan event id: %w", err)
		}
		out[id] = at
	}
	if err := res.Err(); err != nil {
		return nil, fmt.Errorf("clickhouse: look up event ids: %w", err)
	}
	return out, nil
}

// keptChanges returns, per subject, the stored state changes of that
// subject from topic received within the lookup's range.
func (s *store) keptChanges(ctx context.Context, topic string, l *stateLookup) (map[string][]keptChange, error) {
	out := map[string][]keptChange{}
	if len(l.keys) == 0 {
		return out, nil
	}
	tbl, err := ext.NewTable("_subjects", ext.Column("s", "String"))
	if err != nil {
		return nil, fmt.Errorf("clickhouse: external table: %w", err)
	}
	for _, k := range l.keys {
		if err := tbl.Append(k); err != nil {
			return nil, fmt.Errorf("clickhouse: external table: %w", err)
		}
	}
	// Most state changes have occurred_at = received_at, so the partition
	// and part pruning on occurred_at applies; event edits keep their
	// event's own time (the same in every edit of it).
	occ := "(occurred_at >= toDateTime(?, 'UTC') AND occurred_at <= toDateTime(?, 'UTC'))"
	args := []any{l.lo / 1000, l.hi/1000 + 1}
	if l.occ.own {
		occ = "(" + occ + " OR (occurred_at >= toDateTime(?, 'UTC') AND occurred_at <= toDateTime(?, 'UTC')))"
		args = append(args, l.occ.ownLo/1000, l.occ.ownHi/1000+1)
	}
	args = append(args, l.lo, l.hi, topic)
	q := "SELECT subject, state, dedup_key, received_at_ms, src_partition, src_offset, src_index, insert_id, event_id FROM " + s.db + ".events" +
		" ARRAY JOIN dedup_subjects AS subject, dedup_states AS state" +
		" WHERE " + occ + " AND received_at_ms >= ? AND received_at_ms <= ? AND src_topic = ? AND subject IN _subjects"
	rows, err := s.conn.Query(ch.Context(ctx, ch.WithExternalTable(tbl)), q, args...)
	if err != nil {
		return nil, fmt.Errorf("clickhouse: look up %d subjects: %w", len(l.keys), err)
	}
	defer rows.Close()
	for rows.Next() {
		var subj string
		var k keptChange
		if err := rows.Scan(&subj, &k.state, &k.key, &k.ms, &k.part, &k.off, &k.idx, &k.insertID, &k.eventID); err != nil {
			return nil, fmt.Errorf("clickhouse: scan state change: %w", err)
		}
		out[subj] = append(out[subj], k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("clickhouse: look up subjects: %w", err)
	}
	return out, nil
}

// completedInserts returns which of ids are INSERTs known to have
// completed (their statistics rows are written after the commit), so their
// derived tables are whole.
func (s *store) completedInserts(ctx context.Context, ids []uint64) (map[uint64]bool, error) {
	out := map[uint64]bool{}
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := s.conn.Query(ctx, "SELECT DISTINCT insert_id FROM "+s.db+".pipeline_batches WHERE has(?, insert_id)", ids)
	if err != nil {
		return nil, fmt.Errorf("clickhouse: look up completed inserts: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id uint64
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("clickhouse: scan insert id: %w", err)
		}
		out[id] = true
	}
	return out, rows.Err()
}

// open starts an INSERT into events (driver.Batch). Blocks are sent with
// sendBlock; Send completes it. The server squashes the blocks of one INSERT
// into one block before writing (up to min_insert_block_size_rows/_bytes),
// so the INSERT is still one part per table partition. An error does not
// prove nothing was written (see clickhouse-compat.md): callers look the IDs
// up again before retrying.
//
// The insert's query id names the source partitions (insertQueryID), so a
// new owner of a partition can wait for an insert that a crashed owner had
// fully sent and that the server is still completing (runningInserts).
func (s *store) open(ctx context.Context, queryID string) (driver.Batch, error) {
	if queryID != "" {
		ctx = ch.Context(ctx, ch.WithQueryID(queryID))
	}
	b, err := s.conn.PrepareBatch(ctx, "INSERT INTO "+s.db+".events ("+insertColumns+")")
	if err != nil {
		return nil, fmt.Errorf("clickhouse: prepare insert: %w", err)
	}
	return b, nil
}

// sendBlock sends rows as one block of the open INSERT b (insertID).
func (s *store) sendBlock(b driver.Batch, rows []Row, insertID uint64) error {
	if len(rows) == 0 {
		return nil
	}
	if err := appendColumns(b, rows, insertID); err != nil {
		return fmt.Errorf("clickhouse: append %d rows: %w", len(rows), err)
	}
	if err := b.Flush(); err != nil {
		return fmt.Errorf("clickhouse: send %d rows: %w", len(rows), err)
	}
	return nil
}

// insert writes rows into events with one INSERT of one block.
func (s *store) insert(ctx context.Context, rows []Row, queryID string, insertID uint64) error {
	if len(rows) == 0 {
		return nil
	}
	b, err := s.open(ctx, queryID)
	if err != nil {
		return err
	}
	if err := appendColumns(b, rows, insertID); err != nil {
		_ = b.Abort()
		return fmt.Errorf("clickhouse: append %d rows: %w", len(rows), err)
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("clickhouse: insert %d rows: %w", len(rows), err)
	}
	return nil
}

// batchStats is one pipeline_batches row.
type batchStats struct {
	FlushedAt                    time.Time
	Instance, Group, Topic       string
	Partitions                   []int32
	Records, RowsIn, Inserted    uint32
	DupIdentity, DupWindow, Dead uint32
	MinReceivedMs, MaxReceivedMs uint64
	Attempts                     uint32
	LookupMs, InsertMs, FlushMs  uint32
	Actions                      []string
	ActionCounts                 []uint32
	InsertID                     uint64
}

func (s *store) insertStats(ctx context.Context, sts []batchStats) error {
	if len(sts) == 0 {
		return nil
	}
	b, err := s.conn.PrepareBatch(ctx, "INSERT INTO "+s.db+".pipeline_batches (flushed_at, flushed_at_ms, instance, consumer_group, src_topic, partitions, records, rows_in, events_inserted, duplicates_identity, duplicates_window, dead_letters, min_received_at_ms, max_received_at_ms, insert_attempts, lookup_ms, insert_ms, flush_ms, actions, action_counts, insert_id)")
	if err != nil {
		return fmt.Errorf("clickhouse: prepare pipeline_batches insert: %w", err)
	}
	for _, st := range sts {
		if err := b.Append(st.FlushedAt.UTC(), uint64(st.FlushedAt.UnixMilli()), st.Instance, st.Group, st.Topic, st.Partitions,
			st.Records, st.RowsIn, st.Inserted, st.DupIdentity, st.DupWindow, st.Dead, st.MinReceivedMs, st.MaxReceivedMs,
			st.Attempts, st.LookupMs, st.InsertMs, st.FlushMs, st.Actions, st.ActionCounts, st.InsertID); err != nil {
			_ = b.Abort()
			return fmt.Errorf("clickhouse: append pipeline_batches row: %w", err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("clickhouse: insert pipeline_batches row: %w", err)
	}
	return nil
}

// insertQueryID is "lcpipe:<db>:<topic>:<p1>,<p2>,...:<random>".
func insertQueryID(db, topic string, partitions []int32, nonce string) string {
	var sb strings.Builder
	sb.WriteString(queryIDPrefix(db, topic))
	for i, p := range partitions {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(strconv.Itoa(int(p)))
	}
	sb.WriteByte(':')
	sb.WriteString(nonce)
	return sb.String()
}

func queryIDPrefix(db, topic string) string { return "lcpipe:" + db + ":" + topic + ":" }

// runningInserts lists, per source partition, the query ids of events
// inserts still running on the server (from any processor, alive or
// crashed).
func (s *store) runningInserts(ctx context.Context, topic string) (map[int32][]string, error) {
	prefix := queryIDPrefix(s.db, topic)
	rows, err := s.conn.Query(ctx, "SELECT query_id FROM system.processes WHERE startsWith(query_id, ?)", prefix)
	if err != nil {
		return nil, fmt.Errorf("clickhouse: list running inserts: %w", err)
	}
	defer rows.Close()
	out := map[int32][]string{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("clickhouse: scan running insert: %w", err)
		}
		rest := strings.TrimPrefix(id, prefix)
		parts, _, _ := strings.Cut(rest, ":")
		for _, p := range strings.Split(parts, ",") {
			if n, err := strconv.Atoi(p); err == nil {
				out[int32(n)] = append(out[int32(n)], id)
			}
		}
	}
	return out, rows.Err()
}

// killInserts cancels the given inserts and waits until the server has
// stopped them (KILL QUERY ... SYNC). An insert killed half-way may have
// written events and some views: the records are read again, found stored
// and repaired (repair.go).
func (s *store) killInserts(ctx context.Context, queryIDs []string) error {
	for _, id := range queryIDs {
		if err := s.conn.Exec(ctx, "KILL QUERY WHERE query_id = ? SYNC", id); err != nil {
			return fmt.Errorf("clickhouse: kill insert %s: %w", id, err)
		}
	}
	return nil
}
