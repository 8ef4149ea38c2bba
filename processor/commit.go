package processor

import (
	"context"
	"sort"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

type (
	kmsgOffsetCommitRequest  = kmsg.OffsetCommitRequest
	kmsgOffsetCommitResponse = kmsg.OffsetCommitResponse
)

// commitRespErr returns the first per-partition error of a commit response.
func commitRespErr(resp *kmsg.OffsetCommitResponse) error {
	if resp == nil {
		return nil
	}
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
				return err
			}
		}
	}
	return nil
}

// finish commits the offsets of an insertion's batches (stored now), in
// order, and records their statistics.
func (p *Processor) finish(ctx context.Context, batches []*batch, insertID uint64) {
	p.tel.stored(ctx, p, batches) // queryable now: freshness, canaries
	p.commit(ctx, batches)
	stats := make([]batchStats, 0, len(batches))
	for _, b := range batches {
		p.stats.Batches.Add(1)
		p.stats.Rows.Add(int64(b.rowsIn))
		p.stats.Inserted.Add(int64(b.inserted))
		p.stats.DupIdentity.Add(int64(b.dupID))
		p.stats.DupWindow.Add(int64(b.dupWin))
		p.stats.DeadLetters.Add(int64(len(b.dead)))
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
		stats = append(stats, st)
		p.log.DebugContext(ctx, "flushed", "batch", b.seq, "records", b.records, "rows", b.rowsIn, "inserted", b.inserted,
			"dup_identity", b.dupID, "dup_window", b.dupWin, "dead", len(b.dead), "took", time.Since(b.flushStart))

		p.q.done(b)
	}
	if p.dryRun() { // nothing was inserted
		return
	}
	if err := p.st.insertStats(ctx, stats); err != nil {
		p.log.WarnContext(ctx, "pipeline_batches rows not written (statistics only)", "err", err)
	}
}

// commit commits the offsets after the batches (in order: later ones win),
// with one request. A failure is logged, not retried forever: the records
// are then read again (by us or the partition's new owner) and the lookups
// drop what is stored.
func (p *Processor) commit(ctx context.Context, batches []*batch) {
	p.q.mu.Lock()
	offs := map[int32]kgo.EpochOffset{}
	for _, b := range batches {
		for k, v := range b.offsets {
			offs[k] = v
		}
	}
	p.q.mu.Unlock()
	if len(offs) == 0 {
		return
	}
	if p.cfg.Range != nil { // range mode: no group to commit to
		p.rangeStored(offs)
		return
	}
	for attempt := 0; attempt < 3; attempt++ {
		var cerr error
		p.cl.CommitOffsetsSync(ctx, map[string]map[int32]kgo.EpochOffset{p.kcfg.RawTopic: offs},
			func(_ *kgo.Client, _ *kmsgOffsetCommitRequest, resp *kmsgOffsetCommitResponse, err error) {
				if err != nil {
					cerr = err
					return
				}
				cerr = commitRespErr(resp)
			})
		if cerr == nil {
			return
		}
		p.log.Warn("offset commit failed", "attempt", attempt+1, "err", cerr)
		if !p.backoff(ctx, attempt) {
			return
		}
	}
}
