// Package audit proves a range of the raw topic was stored completely and
// once (`lcpipe audit`). Every raw record in the range is accounted for:
// each event it carries is stored from it (events.src_topic, src_partition,
// src_offset, src_index), or is a retry of an event stored from another
// record (which one is named), or the record is in the dead-letter topic.
// Anything else is a gap. Every event ID of the range stored more than once
// (count() without FINAL) is a duplicate. And each derived table
// (messages, agent_status, thread_state, webhook_minutes) must agree with
// events for the keys the range touches.
//
// It does not re-implement the processor: records are decoded and turned
// into events by the processor's own pure code (processor.DecodeRecord,
// processor.Transform), so the event IDs and dedup keys are the ones the
// processor computed; only the question asked of ClickHouse differs.
package audit

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"sort"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/ext"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lcpipe/lcpipe/internal/progress"
	"github.com/lcpipe/lcpipe/internal/wire"
	"github.com/lcpipe/lcpipe/ops"
	"github.com/lcpipe/lcpipe/processor"
	"github.com/lcpipe/lcpipe/schema"
)

// Options of one audit.
type Options struct {
	RawTopic, DLQTopic string
	// From and To bound the range (ops.Bound: earliest, latest, a time,
	// or PARTITION:OFFSET,...).
	From, To string
	// Organization restricts the audit to one organization's records.
	Organization string
	ClickHouse   driver.Conn
	Database     string
	// DedupWindow must be the processors' (DEDUP_WINDOW). Default the
	// processor's default.
	DedupWindow time.Duration
	// Progress draws a bar there when not nil.
	Progress io.Writer
	// Chunk is how many records are checked per ClickHouse round. Default 20 000.
	Chunk int
	// MaxListed bounds the gaps, retries and duplicates listed (counts are
	// always complete). Default 1000.
	MaxListed int
}

// withDefaults fills the zero fields with the defaults documented on
// Options.
func (o Options) withDefaults() Options {
	o.Chunk = cmp.Or(o.Chunk, 20_000)
	o.MaxListed = cmp.Or(o.MaxListed, 1000)
	o.DedupWindow = cmp.Or(o.DedupWindow, processor.DefaultConfig().DedupWindow)
	return o
}

// Counts are one webhook action's figures: Records count raw records,
// the rest count events (an incoming_chat is one record, several events),
// except DeadLettered, which counts records.
type Counts struct {
	Records      int `json:"records"`
	Stored       int `json:"stored"`
	Retries      int `json:"retries"`
	DeadLettered int `json:"dead_lettered"`
	Gaps         int `json:"gaps"`
}

func (c *Counts) add(o Counts) {
	c.Records += o.Records
	c.Stored += o.Stored
	c.Retries += o.Retries
	c.DeadLettered += o.DeadLettered
	c.Gaps += o.Gaps
}

// Source is a raw record's place, with the index of the event in it.
type Source struct {
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
	Index     uint16 `json:"index"`
}

// Gap is an event (or an undecodable record) that is nowhere.
type Gap struct {
	Source
	Action   string `json:"action"`
	EventID  string `json:"event_id,omitempty"`
	Kind     string `json:"kind,omitempty"`
	DedupKey string `json:"dedup_key,omitempty"`
	Reason   string `json:"reason"`
}

// Retry is an event of the range stored from another record.
type Retry struct {
	Source
	Action   string `json:"action"`
	EventID  string `json:"event_id"`
	StoredAs string `json:"stored_as"`
	// StoredFrom is the record the stored event came from.
	StoredFrom Source `json:"stored_from"`
}

// Duplicate is an event ID stored more than once.
type Duplicate struct {
	EventID string `json:"event_id"`
	Count   uint64 `json:"count"`
}

// Mismatch is a key on which a derived table disagrees with events.
type Mismatch struct {
	Table  string `json:"table"`
	Key    string `json:"key"`
	Events uint64 `json:"events"`
	Table2 uint64 `json:"in_table"`
}

// Report is the audit's result.
type Report struct {
	Topic        string             `json:"topic"`
	Database     string             `json:"database"`
	Organization string             `json:"organization,omitempty"`
	Start        ops.Offsets        `json:"start"`
	End          ops.Offsets        `json:"end"`
	Actions      map[string]*Counts `json:"actions"`
	Total        Counts             `json:"total"`
	Gaps         []Gap              `json:"gaps"`
	Duplicates   []Duplicate        `json:"duplicates"`
	Mismatches   []Mismatch         `json:"derived_mismatches"`
	// DerivedChecked lists the tables compared and the keys compared in each.
	DerivedChecked map[string]int `json:"derived_checked"`
	Retries        []Retry        `json:"retries"`
	Took           string         `json:"took"`
}

// OK is true when there is no gap, no duplicate and no derived mismatch.
func (r *Report) OK() bool {
	return r.Total.Gaps == 0 && len(r.Duplicates) == 0 && len(r.Mismatches) == 0
}

// SortedActions lists the actions by name.
func (r *Report) SortedActions() []string {
	out := make([]string, 0, len(r.Actions))
	for a := range r.Actions {
		out = append(out, a)
	}
	sort.Strings(out)
	return out
}

// pending is an event of the range waiting for its lookup.
type pending struct {
	src    Source
	action string
	row    processor.Row
}

// Run audits the range.
func Run(ctx context.Context, cl *kgo.Client, o Options) (*Report, error) {
	began := time.Now()
	o = o.withDefaults()
	adm := kadm.NewClient(cl)
	logStart, err := ops.StartOffsets(ctx, adm, o.RawTopic)
	if err != nil {
		return nil, err
	}
	logEnd, err := ops.EndOffsets(ctx, adm, o.RawTopic)
	if err != nil {
		return nil, err
	}
	start, err := ops.Bound(ctx, adm, o.RawTopic, o.From, logStart, logEnd, logStart)
	if err != nil {
		return nil, fmt.Errorf("--from: %w", err)
	}
	end, err := ops.Bound(ctx, adm, o.RawTopic, o.To, logStart, logEnd, nil)
	if err != nil {
		return nil, fmt.Errorf("--to: %w", err)
	}
	for p := range end {
		end[p] = min(max(end[p], logStart[p]), logEnd[p])
		start[p] = min(max(start[p], logStart[p]), end[p])
	}
	rep := &Report{Topic: o.RawTopic, Database: o.Database, Organization: o.Organization, Start: start, End: end,
		Actions: map[string]*Counts{}, Gaps: []Gap{}, Duplicates: []Duplicate{}, Mismatches: []Mismatch{}, Retries: []Retry{},
		DerivedChecked: map[string]int{}}

	dead, err := deadLettered(ctx, cl, o.DLQTopic, o.RawTopic)
	if err != nil {
		return nil, err
	}
	a := &auditor{o: o, rep: rep, dead: dead, storedIDs: map[string]struct{}{}}
	var total int64
	for p, e := range end {
		total += e - start[p]
	}
	var bar *progress.Bar
	if o.Progress != nil {
		bar = progress.New(o.Progress, total, "audit")
	}
	err = ops.ReadRange(ctx, cl, o.RawTopic, start, end, func(r *kgo.Record) error {
		bar.Add(1)
		a.record(r)
		if len(a.batch) >= o.Chunk {
			return a.flush(ctx)
		}
		return nil
	})
	if err == nil {
		err = a.flush(ctx)
	}
	bar.Finish()
	if err != nil {
		return nil, err
	}
	if err := a.duplicates(ctx); err != nil {
		return nil, err
	}
	if err := a.derived(ctx); err != nil {
		return nil, err
	}
	rep.Took = time.Since(began).Round(time.Millisecond).String()
	return rep, nil
}

type auditor struct {
	o         Options
	rep       *Report
	dead      map[Source]bool
	batch     []pending
	storedIDs map[string]struct{} // every event ID of the range found stored
}

func (a *auditor) counts(action string) *Counts {
	c := a.rep.Actions[action]
	if c == nil {
		c = &Counts{}
		a.rep.Actions[action] = c
	}
	return c
}

func (a *auditor) gap(g Gap) {
	a.counts(g.Action).Gaps++
	a.rep.Total.Gaps++
	if len(a.rep.Gaps) < a.o.MaxListed {
		a.rep.Gaps = append(a.rep.Gaps, g)
	}
}

// record decodes one raw record with the processor's code and queues its
// events (or accounts for it as dead-lettered).
func (a *auditor) record(r *kgo.Record) {
	action := wire.Header(r, wire.HeaderAction)
	org := wire.Header(r, wire.HeaderOrganization)
	w, err := processor.DecodeRecord(r)
	if err == nil {
		action, org = w.Action, w.Tenant()
	}
	if a.o.Organization != "" && org != a.o.Organization {
		return
	}
	c := a.counts(action)
	c.Records++
	a.rep.Total.Records++
	src := Source{Partition: r.Partition, Offset: r.Offset}
	if err != nil {
		if a.dead[src] {
			c.DeadLettered++
			a.rep.Total.DeadLettered++
			return
		}
		a.gap(Gap{Source: src, Action: action, Reason: "undecodable (" + err.Error() + ") and not in the dead-letter topic"})
		return
	}
	for _, row := range processor.Transform(processor.SourceOf(r), w, nil, nil) {
		s := src
		s.Index = row.SrcIndex
		a.batch = append(a.batch, pending{src: s, action: action, row: row})
	}
}

type stored struct {
	src      Source
	topic    string
	eventID  string
	received uint64
}

// flush looks the queued events up: by event ID (stored from this record,
// or from another: a retry), then windowed events by dedup key (a stored
// event with the same key received less than DEDUP_WINDOW away: a retry).
func (a *auditor) flush(ctx context.Context) error {
	if len(a.batch) == 0 {
		return nil
	}
	defer func() { a.batch = a.batch[:0] }()
	ids := make([]string, 0, len(a.batch))
	for _, p := range a.batch {
		ids = append(ids, p.row.EventID)
	}
	byID := map[string][]stored{}
	err := a.query(ctx, "_ids", ids, "SELECT event_id, src_topic, src_partition, src_offset, src_index, received_at_ms FROM "+a.o.Database+
		".events WHERE event_id IN _ids", func(rows driver.Rows) error {
		var s stored
		if err := rows.Scan(&s.eventID, &s.topic, &s.src.Partition, &s.src.Offset, &s.src.Index, &s.received); err != nil {
			return err
		}
		byID[s.eventID] = append(byID[s.eventID], s)
		return nil
	})
	if err != nil {
		return err
	}
	// State changes not stored: retries by the processor's own rule
	// (processor.ExplainRetries: the subjects' last kept changes before
	// them in the log), not a second implementation of it.
	var states []processor.Row
	var stateIdx []int
	for i, p := range a.batch {
		if _, ok := byID[p.row.EventID]; ok || len(p.row.DedupSubjects) == 0 {
			continue
		}
		states = append(states, p.row)
		stateIdx = append(stateIdx, i)
	}
	retryOf := make([]*processor.RetryOf, len(a.batch))
	if len(states) > 0 {
		expl, err := processor.ExplainRetries(ctx, a.o.ClickHouse, a.o.Database, a.o.RawTopic, a.o.DedupWindow, states)
		if err != nil {
			return err
		}
		for j, i := range stateIdx {
			retryOf[i] = expl[j]
		}
	}
	for i, p := range a.batch {
		c := a.counts(p.action)
		if ss, ok := byID[p.row.EventID]; ok {
			a.storedIDs[p.row.EventID] = struct{}{}
			self := false
			for _, s := range ss {
				self = self || (s.topic == a.o.RawTopic && s.src == p.src)
			}
			if self {
				c.Stored++
				a.rep.Total.Stored++
			} else {
				a.retry(p, ss[0])
			}
			continue
		}
		if r := retryOf[i]; r != nil {
			a.retry(p, stored{eventID: r.EventID, topic: a.o.RawTopic, src: Source{Partition: r.Partition, Offset: r.Offset, Index: r.Index}})
			continue
		}
		reason := "event id not in events"
		if p.row.DedupKey != "" {
			reason = "not a retry by the state-change rule (no same state of its subjects kept within DEDUP_WINDOW before it) and not stored"
		}
		a.gap(Gap{Source: p.src, Action: p.action, EventID: p.row.EventID, Kind: p.row.Kind, DedupKey: p.row.DedupKey, Reason: reason})
	}
	return nil
}

func (a *auditor) retry(p pending, s stored) {
	a.counts(p.action).Retries++
	a.rep.Total.Retries++
	a.storedIDs[s.eventID] = struct{}{}
	if len(a.rep.Retries) < a.o.MaxListed {
		a.rep.Retries = append(a.rep.Retries, Retry{Source: p.src, Action: p.action, EventID: p.row.EventID, StoredAs: s.eventID, StoredFrom: s.src})
	}
}

// query runs q with values as the external table name (one String column).
func (a *auditor) query(ctx context.Context, name string, values []string, q string, scan func(driver.Rows) error, args ...any) error {
	tbl, err := ext.NewTable(name, ext.Column("v", "String"))
	if err != nil {
		return err
	}
	for _, v := range values {
		if err := tbl.Append(v); err != nil {
			return err
		}
	}
	rows, err := a.o.ClickHouse.Query(ch.Context(ctx, ch.WithExternalTable(tbl)), q, args...)
	if err != nil {
		return fmt.Errorf("clickhouse: audit: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			return fmt.Errorf("clickhouse: audit: %w", err)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("clickhouse: audit: %w", err)
	}
	return nil
}

func (a *auditor) ids() []string {
	out := make([]string, 0, len(a.storedIDs))
	for id := range a.storedIDs {
		out = append(out, id)
	}
	return out
}

// duplicates lists the range's event IDs stored more than once (count()
// without FINAL: ReplacingMergeTree may have hidden them after a merge,
// but not until then, and any is a broken promise).
func (a *auditor) duplicates(ctx context.Context) error {
	if len(a.storedIDs) == 0 {
		return nil
	}
	return a.query(ctx, "_ids", a.ids(), "SELECT event_id, count() AS c FROM "+a.o.Database+".events WHERE event_id IN _ids GROUP BY event_id HAVING c > 1 ORDER BY event_id",
		func(rows driver.Rows) error {
			var d Duplicate
			if err := rows.Scan(&d.EventID, &d.Count); err != nil {
				return err
			}
			if len(a.rep.Duplicates) < a.o.MaxListed {
				a.rep.Duplicates = append(a.rep.Duplicates, d)
			}
			return nil
		})
}

// derivedCheck compares, per key touched by the range, a count from events
// with the same count from a derived table.
type derivedCheck struct {
	table, events, derived string
}

// derived checks that each table the materialized views fill agrees with
// events on the keys the range's stored events touch: every message event
// has its messages row, every routing_status_set its agent_status row,
// and per thread and per (minute, organization, action) the event counts
// in thread_state and webhook_minutes equal those in events.
func (a *auditor) derived(ctx context.Context) error {
	if len(a.storedIDs) == 0 {
		return nil
	}
	db := a.o.Database
	msgCond := "action IN ('incoming_chat', 'incoming_event') AND event_ref != '' AND event_type != ''"
	checks := []derivedCheck{
		{"messages",
			"SELECT concat(organization_id, '/', event_ref) AS k, toUInt64(1) FROM " + db + ".events WHERE event_id IN _ids AND " + msgCond + " GROUP BY k",
			"SELECT concat(organization_id, '/', event_id) AS k, toUInt64(1) FROM " + db + ".messages WHERE (organization_id, event_id) IN (SELECT organization_id, event_ref FROM " + db + ".events WHERE event_id IN _ids AND " + msgCond + ") GROUP BY k"},
		{"agent_status",
			"SELECT concat(organization_id, '/', agent_id, '/', toString(occurred_at_ms), '/', routing_status) AS k, toUInt64(1) FROM " + db + ".events WHERE event_id IN _ids AND action = 'routing_status_set' AND agent_id != '' GROUP BY k",
			"SELECT concat(organization_id, '/', agent_id, '/', toString(changed_at_ms), '/', status) AS k, toUInt64(1) FROM " + db + ".agent_status WHERE (organization_id, agent_id, changed_at_ms, status) IN (SELECT organization_id, agent_id, occurred_at_ms, routing_status FROM " + db + ".events WHERE event_id IN _ids AND action = 'routing_status_set' AND agent_id != '') GROUP BY k"},
		{"thread_state",
			"SELECT concat(organization_id, '/', thread_id) AS k, count() FROM " + db + ".events WHERE thread_id != '' AND (organization_id, thread_id) IN (SELECT organization_id, thread_id FROM " + db + ".events WHERE event_id IN _ids AND thread_id != '') GROUP BY k",
			"SELECT concat(organization_id, '/', thread_id) AS k, countMerge(events) FROM " + db + ".thread_state WHERE (organization_id, thread_id) IN (SELECT organization_id, thread_id FROM " + db + ".events WHERE event_id IN _ids AND thread_id != '') GROUP BY k"},
		{"webhook_minutes",
			"SELECT concat(toString(toStartOfMinute(received_at)), '/', organization_id, '/', action) AS k, count() FROM " + db + ".events WHERE (toStartOfMinute(received_at), organization_id, action) IN (SELECT toStartOfMinute(received_at), organization_id, action FROM " + db + ".events WHERE event_id IN _ids) GROUP BY k",
			"SELECT concat(toString(minute), '/', organization_id, '/', action) AS k, countMerge(events) FROM " + db + ".webhook_minutes WHERE (minute, organization_id, action) IN (SELECT toStartOfMinute(received_at), organization_id, action FROM " + db + ".events WHERE event_id IN _ids) GROUP BY k"},
	}
	ids := a.ids()
	for _, c := range checks {
		want, err := a.keyCounts(ctx, ids, c.events)
		if err != nil {
			return fmt.Errorf("%s: %w", c.table, err)
		}
		got, err := a.keyCounts(ctx, ids, c.derived)
		if err != nil {
			return fmt.Errorf("%s: %w", c.table, err)
		}
		a.rep.DerivedChecked[c.table] = len(want)
		keys := make([]string, 0, len(want))
		for k := range want {
			keys = append(keys, k)
		}
		for k := range got {
			if _, ok := want[k]; !ok {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		for _, k := range keys {
			if want[k] != got[k] && len(a.rep.Mismatches) < a.o.MaxListed {
				a.rep.Mismatches = append(a.rep.Mismatches, Mismatch{Table: c.table, Key: k, Events: want[k], Table2: got[k]})
			}
		}
	}
	// Every other derived table (schema.DerivedTables names them all) is
	// compared whole: what its view makes of events against what it holds.
	checked := map[string]bool{}
	for _, c := range checks {
		checked[c.table] = true
	}
	bad, err := schema.CheckDerived(ctx, a.o.ClickHouse, a.o.Database)
	if err != nil {
		return err
	}
	for _, d := range schema.DerivedTables {
		if !checked[d.Table] {
			a.rep.DerivedChecked[d.Table] = -1 // the whole table
		}
	}
	for _, d := range bad {
		if !checked[d.Table] && len(a.rep.Mismatches) < a.o.MaxListed {
			a.rep.Mismatches = append(a.rep.Mismatches, Mismatch{Table: d.Table, Key: "(whole table: fingerprint differs)", Events: d.Expected, Table2: d.Actual})
		}
	}
	return nil
}

func (a *auditor) keyCounts(ctx context.Context, ids []string, q string) (map[string]uint64, error) {
	out := map[string]uint64{}
	err := a.query(ctx, "_ids", ids, q, func(rows driver.Rows) error {
		var k string
		var n uint64
		if err := rows.Scan(&k, &n); err != nil {
			return err
		}
		out[k] = n
		return nil
	})
	return out, err
}

// deadLettered is the set of raw records (partition, offset) of rawTopic
// in the dead-letter topic.
func deadLettered(ctx context.Context, cl *kgo.Client, dlqTopic, rawTopic string) (map[Source]bool, error) {
	dls, err := ops.ListDeadLetters(ctx, cl, dlqTopic, ops.DLQFilter{}, nil)
	if err != nil {
		return nil, fmt.Errorf("read dead letters: %w", err)
	}
	out := map[Source]bool{}
	for _, d := range dls {
		if d.Stage != ops.StageRedrive && d.SourceTopic == rawTopic && d.SourceOffset >= 0 {
			out[Source{Partition: d.SourcePartition, Offset: d.SourceOffset}] = true
		}
	}
	return out, nil
}
