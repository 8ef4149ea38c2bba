package processor

import (
	"sort"
	"sync/atomic"
	"time"
)

// Stats are running totals since start.
type Stats struct {
	Records, Rows, Inserted, DupIdentity, DupWindow, DeadLetters atomic.Int64
	Batches, InsertRetries, Pauses                               atomic.Int64
	// Repaired counts derived-table rows written by repair;
	// RepairFailures the repair attempts that failed (retried).
	Repaired, RepairFailures atomic.Int64
}

// Stats returns the running totals.
func (p *Processor) Stats() *Stats { return &p.stats }

// add counts a stored batch.
func (s *Stats) add(b *batch) {
	s.Batches.Add(1)
	s.Rows.Add(int64(b.rowsIn))
	s.Inserted.Add(int64(b.inserted))
	s.DupIdentity.Add(int64(b.dupID))
	s.DupWindow.Add(int64(b.dupWin))
	s.DeadLetters.Add(int64(len(b.dead)))
}

// batchRow is a stored batch's pipeline_batches row.
func (p *Processor) batchRow(b *batch, insertID uint64) batchStats {
	st := batchStats{
		FlushedAt: time.Now(), Instance: p.cfg.Instance, Group: p.cfg.Group, Topic: p.kcfg.RawTopic,
		Records: uint32(b.records), RowsIn: uint32(b.rowsIn), Inserted: uint32(b.inserted),
		DupIdentity: uint32(b.dupID), DupWindow: uint32(b.dupWin), Dead: uint32(len(b.dead)),
		MinReceivedMs: b.minRecv, MaxReceivedMs: b.maxRecv, Attempts: 1,
		LookupMs: uint32(b.lookupDur.Milliseconds()), InsertMs: uint32(b.insertDur.Milliseconds()),
		FlushMs:  uint32(time.Since(b.flushStart).Milliseconds()),
		InsertID: insertID,
	}
	st.Partitions = b.parts
	for a := range b.actions {
		st.Actions = append(st.Actions, a)
	}
	sort.Strings(st.Actions)
	for _, a := range st.Actions {
		st.ActionCounts = append(st.ActionCounts, b.actions[a])
	}
	return st
}
