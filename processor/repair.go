package processor

import (
	"context"
	"maps"
	"slices"

	"github.com/lcpipe/lcpipe/schema"
)

// maxRepaired bounds the INSERT ids remembered as checked.
const maxRepaired = 10_000

// repair makes the derived tables whole for the INSERTs that stored rows of
// records read again (dedup found them at their own log position). Such an
// INSERT either completed (a crash came before the commit; a replay), or
// failed after ClickHouse had written events and possibly some views: then
// the lookups would drop its rows as stored and the views that missed them
// would never get them. INSERTs whose statistics row exists completed (the
// row is written after them); the others are handed to schema.Repair,
// which re-pushes exactly what each derived table lacks. It runs before the
// batch is sent, so before its offsets can be committed; it retries until
// it succeeds (a detached table stalls the pipeline, as an insert error
// does, rather than lose rows) or ctx ends.
func (p *Processor) repair(ctx context.Context, stored map[uint64]struct{}) error {
	var ids []uint64
	for id := range stored {
		if _, done := p.repaired[id]; !done {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	slices.Sort(ids)
	var completed map[uint64]bool
	if err := p.retry(ctx, "look up completed inserts", func() error {
		var e error
		completed, e = p.st.completedInserts(ctx, ids)
		return e
	}); err != nil {
		return err
	}
	for _, id := range ids {
		if !completed[id] {
			var res schema.RepairResult
			if err := p.retry(ctx, "repair derived tables", func() error {
				var e error
				res, e = schema.Repair(ctx, p.st.conn, p.st.db, id)
				if e != nil {
					p.stats.RepairFailures.Add(1)
				}
				return e
			}); err != nil {
				return err
			}
			if n := res.Total(); n > 0 {
				p.stats.Repaired.Add(int64(n))
				p.log.Warn("derived tables lacked rows of an earlier insert; repaired", "insert_id", id,
					"rows", res, "tables", slices.Sorted(maps.Keys(res)))
			}
		}
		if len(p.repaired) >= maxRepaired {
			clear(p.repaired)
		}
		p.repaired[id] = struct{}{}
	}
	return nil
}
