package chaos

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lcpipe/lcpipe/internal/wire"
	"github.com/lcpipe/lcpipe/ops"
	"github.com/lcpipe/lcpipe/processor"
)

// waitDrained waits until both spools and quarantines are empty and the
// group has committed every raw record, twice in a row a second apart.
func waitDrained(ctx context.Context, tl *timeline, ingests []*ingestChild, adm *kadm.Client, group, topic string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	report := time.Now()
	settled := 0
	var why string
	for {
		why = ""
		for _, in := range ingests {
			c, cancel := context.WithTimeout(ctx, 2*time.Second)
			st, err := in.status(c)
			cancel()
			switch {
			case err != nil:
				why = fmt.Sprintf("%s: %v", in.name, err)
			case st.Spool.Records > 0:
				why = fmt.Sprintf("%s spool holds %d records", in.name, st.Spool.Records)
			case st.Quarantine.Files > 0:
				why = fmt.Sprintf("%s quarantine holds %d files", in.name, st.Quarantine.Files)
			}
			if why != "" {
				break
			}
		}
		if why == "" {
			lag, err := groupLag(ctx, adm, group, topic)
			switch {
			case err != nil:
				why = err.Error()
			case lag > 0:
				why = fmt.Sprintf("consumer lag %d", lag)
			}
		}
		if why == "" {
			if settled++; settled >= 2 {
				return nil
			}
		} else {
			settled = 0
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not drained after %s: %s", timeout, why)
		}
		if time.Since(report) > 15*time.Second && why != "" {
			tl.logf("drain: %s", why)
			report = time.Now()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// groupLag is the records of topic the group has not committed.
func groupLag(ctx context.Context, adm *kadm.Client, group, topic string) (int64, error) {
	c, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	end, err := ops.EndOffsets(c, adm, topic)
	if err != nil {
		return 0, err
	}
	com, err := ops.Committed(c, adm, group, topic)
	if err != nil {
		return 0, err
	}
	var lag int64
	for p, e := range end {
		lag += max(e-com[p], 0)
	}
	return lag, nil
}

// logTruth is what the raw topic says must be stored: every event of every
// record, server-named ones once, state changes by the rule of
// processor/README.md (dedup.go) applied to the whole log: a change is a
// retry, and not stored, when for each of its subjects the last kept
// change before it in its partition (by received-at, ties by log
// position) left the same state, with the same whole content, less than the
// window before it. This is a
// second, deliberately simple implementation of that rule over the
// complete log, against which the processor's incremental one (memory,
// ClickHouse lookups, restarts, rebalances) is checked.
type logTruth struct {
	Records, Spooled, Undecodable int
	Rows                          int
	IDs                           map[string]struct{} // expected event IDs
	StateKept, StateRetries       int
	DupIdentity                   int
}

type keptChange struct {
	ms    uint64
	state string
	key   string // the change's whole content (a retry is the same body)
	off   int64
	idx   uint16
}

func readLogTruth(ctx context.Context, cl *kgo.Client, adm *kadm.Client, topic string, window time.Duration) (*logTruth, error) {
	start, err := ops.StartOffsets(ctx, adm, topic)
	if err != nil {
		return nil, err
	}
	end, err := ops.EndOffsets(ctx, adm, topic)
	if err != nil {
		return nil, err
	}
	lt := &logTruth{IDs: map[string]struct{}{}}
	win := uint64(window / time.Millisecond)
	// subjects: partition → subject → its kept changes.
	subjects := map[int32]map[string][]keptChange{}
	err = ops.ReadRange(ctx, cl, topic, start, end, func(r *kgo.Record) error {
		lt.Records++
		if wire.Header(r, wire.HeaderSpooled) == "1" {
			lt.Spooled++
		}
		w, err := processor.DecodeRecord(r)
		if err != nil {
			lt.Undecodable++
			return nil
		}
		subs := subjects[r.Partition]
		if subs == nil {
			subs = map[string][]keptChange{}
			subjects[r.Partition] = subs
		}
		for _, row := range processor.Transform(processor.SourceOf(r), w, nil, nil) {
			lt.Rows++
			if len(row.DedupSubjects) == 0 {
				if _, dup := lt.IDs[row.EventID]; dup {
					lt.DupIdentity++
				}
				lt.IDs[row.EventID] = struct{}{}
				continue
			}
			retry := true
			for j, s := range row.DedupSubjects {
				var prev *keptChange
				for i := range subs[s] {
					k := &subs[s][i]
					if k.ms > row.ReceivedAtMs {
						continue
					}
					if prev == nil || k.ms > prev.ms || (k.ms == prev.ms && (k.off > prev.off || (k.off == prev.off && k.idx > prev.idx))) {
						prev = k
					}
				}
				if prev == nil || row.ReceivedAtMs-prev.ms >= win || prev.state != row.DedupStates[j] || prev.key != row.DedupKey {
					retry = false
				}
			}
			if retry {
				lt.StateRetries++
				continue
			}
			lt.StateKept++
			lt.IDs[row.EventID] = struct{}{}
			for j, s := range row.DedupSubjects {
				subs[s] = append(subs[s], keptChange{ms: row.ReceivedAtMs, state: row.DedupStates[j], key: row.DedupKey, off: r.Offset, idx: row.SrcIndex})
			}
		}
		return nil
	})
	return lt, err
}

// stored is what ClickHouse holds.
type stored struct {
	Count, Unique uint64
	IDs           map[string]uint64 // event_id → rows (without FINAL)
	Keys          map[string]struct{}
	// from pipeline_batches (statistics: a crash may lose or repeat a row)
	DupIdentity, DupWindow, DeadLetters, Batches uint64
}

func readStored(ctx context.Context, conn driver.Conn, db string) (*stored, error) {
	s := &stored{IDs: map[string]uint64{}, Keys: map[string]struct{}{}}
	if err := conn.QueryRow(ctx, "SELECT count(), uniqExact(event_id) FROM "+db+".events").Scan(&s.Count, &s.Unique); err != nil {
		return nil, fmt.Errorf("count events: %w", err)
	}
	rows, err := conn.Query(ctx, "SELECT event_id, dedup_key, count() FROM "+db+".events GROUP BY event_id, dedup_key")
	if err != nil {
		return nil, fmt.Errorf("read event ids: %w", err)
	}
	for rows.Next() {
		var id, key string
		var n uint64
		if err := rows.Scan(&id, &key, &n); err != nil {
			rows.Close()
			return nil, err
		}
		s.IDs[id] += n
		if key != "" {
			s.Keys[key] = struct{}{}
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if err := conn.QueryRow(ctx, "SELECT toUInt64(sum(duplicates_identity)), toUInt64(sum(duplicates_window)), toUInt64(sum(dead_letters)), count() FROM "+db+".pipeline_batches").
		Scan(&s.DupIdentity, &s.DupWindow, &s.DeadLetters, &s.Batches); err != nil {
		return nil, fmt.Errorf("read pipeline_batches: %w", err)
	}
	return s, nil
}

// comparison is the verdict.
type comparison struct {
	Lost, Extra, Duplicated []string // vs the log's truth
	AckLostIDs, AckLostKeys []string // events of acknowledged deliveries not stored
	NotAckStored            int      // server-named events stored though no delivery of them got a 200
}

func compare(lt *logTruth, st *stored, exp *expectation) comparison {
	var c comparison
	for id := range lt.IDs {
		if st.IDs[id] == 0 {
			c.Lost = append(c.Lost, id)
		}
	}
	for id, n := range st.IDs {
		if _, ok := lt.IDs[id]; !ok {
			c.Extra = append(c.Extra, id)
		}
		if n > 1 {
			c.Duplicated = append(c.Duplicated, fmt.Sprintf("%s×%d", id, n))
		}
	}
	for id := range exp.ackIDs {
		if st.IDs[id] == 0 {
			c.AckLostIDs = append(c.AckLostIDs, id)
		}
	}
	for k := range exp.ackKeys {
		if _, ok := st.Keys[k]; !ok {
			c.AckLostKeys = append(c.AckLostKeys, k)
		}
	}
	for id := range exp.lostIDs {
		if _, acked := exp.ackIDs[id]; !acked && st.IDs[id] > 0 {
			c.NotAckStored++
		}
	}
	for _, s := range [][]string{c.Lost, c.Extra, c.Duplicated, c.AckLostIDs, c.AckLostKeys} {
		sort.Strings(s)
	}
	return c
}

// firstN shows at most n items of a list.
func firstN(s []string, n int) string {
	if len(s) <= n {
		return fmt.Sprint(s)
	}
	return fmt.Sprintf("%v … (%d in all)", s[:n], len(s))
}

// dlqRecords counts the records of the dead-letter topic.
func dlqRecords(ctx context.Context, adm *kadm.Client, topic string) (int64, error) {
	start, err := ops.StartOffsets(ctx, adm, topic)
	if err != nil {
		return 0, err
	}
	end, err := ops.EndOffsets(ctx, adm, topic)
	if err != nil {
		return 0, err
	}
	var n int64
	for p, e := range end {
		n += e - start[p]
	}
	return n, nil
}
