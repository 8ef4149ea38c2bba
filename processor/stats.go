package processor

import "sync/atomic"

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
