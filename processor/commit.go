package processor

import (
	"context"
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
		p.stats.add(b)
		stats = append(stats, p.batchRow(b, insertID))
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
