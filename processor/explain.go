package processor

import (
	"context"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// RetryOf is the stored change a row repeats: its event and where its
// record is in the log.
type RetryOf struct {
	EventID   string
	Partition int32
	Offset    int64
	Index     uint16
}

// ExplainRetries applies the processor's rule for state changes (dedup.go)
// to rows that were not stored, for audits: for each row the stored change
// it repeats (the change in force for its first subject when it was
// received), or nil when the rule does not make it a retry (then it is a
// gap). Rows without subjects get nil. It reads
// what ClickHouse holds for their subjects in the window before each row,
// from the same topic, exactly as the processor's lookup does.
func ExplainRetries(ctx context.Context, conn driver.Conn, db, topic string, window time.Duration, rows []Row) ([]*RetryOf, error) {
	out := make([]*RetryOf, len(rows))
	w := uint64(window / time.Millisecond)
	need := stateLookup{subjects: map[string]struct{}{}}
	for i := range rows {
		r := &rows[i]
		for _, s := range r.DedupSubjects {
			need.add(s, sub(r.ReceivedAtMs, w), r)
		}
	}
	if len(need.keys) == 0 {
		return out, nil
	}
	kept, err := (&store{conn: conn, db: db}).keptChanges(ctx, topic, &need)
	if err != nil {
		return nil, err
	}
	entries := make(map[string]*subjectEntry, len(kept))
	for s, ks := range kept {
		// All of them: the processor's cache bound does not apply here.
		entries[s] = &subjectEntry{kept: ks}
	}
	for i := range rows {
		r := &rows[i]
		if len(r.DedupSubjects) == 0 {
			continue
		}
		k, repeats := decide(r, w, func(s string) *subjectEntry { return entries[s] })
		if k == nil { // else stored itself
			k = repeats
		}
		if k != nil {
			out[i] = &RetryOf{EventID: k.eventID, Partition: k.part, Offset: k.off, Index: k.idx}
		}
	}
	return out, nil
}
