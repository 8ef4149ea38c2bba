package processor

import (
	"context"
	"errors"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// onAssigned waits until no insert from these partitions is still running
// on the server: a previous owner killed right after sending a batch (or
// one that lost the partitions while an INSERT was completing) leaves that
// insert to complete without it, and our lookups must see its rows. Polls
// wait for this callback, so nothing of these partitions is read, let alone
// inserted, before.
func (p *Processor) onAssigned(ctx context.Context, _ *kgo.Client, assigned map[string][]int32) {
	parts := assigned[p.kcfg.RawTopic]
	p.tel.rebalanced("assigned", parts)
	if len(parts) == 0 {
		return
	}
	p.q.update(func() {
		for _, part := range parts {
			delete(p.q.lost, part)
		}
	})
	if err := p.waitInsertsDone(ctx, parts); err != nil {
		p.log.Warn("stopped waiting for the inserts of newly assigned partitions", "partitions", parts, "err", err)
	}
}

// waitInsertsDone returns once no insert naming one of parts runs on the
// server. It has no deadline: an insert still running after
// ZombieInsertWait is killed (KILL QUERY ... SYNC), and while ClickHouse
// cannot say, it asks again, saying why. It returns an error only when ctx
// ends.
func (p *Processor) waitInsertsDone(ctx context.Context, parts []int32) error {
	start := time.Now()
	reported := false
	for attempt := 0; ; attempt++ {
		running, err := p.st.runningInserts(ctx, p.kcfg.RawTopic)
		var busy []string
		for _, part := range parts {
			busy = append(busy, running[part]...)
		}
		switch {
		case err != nil:
			p.log.Warn("cannot tell whether inserts of these partitions still run; asking again before reading them", "partitions", parts, "err", err)
		case len(busy) == 0:
			return nil
		case time.Since(start) >= p.cfg.ZombieInsertWait:
			p.log.Warn("inserts of these partitions still running; killing them", "partitions", parts, "queries", busy)
			if err := p.st.killInserts(ctx, busy); err != nil {
				p.log.Warn("killing inserts failed; asking again", "err", err)
			}
		case !reported:
			p.log.Info("waiting for running inserts of these partitions", "partitions", parts, "queries", busy)
			reported = true
		}
		if err != nil {
			if !p.backoff(ctx, attempt) {
				return ctx.Err()
			}
			continue
		}
		t := time.NewTimer(200 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// onRevoked flushes and commits everything read before partitions go.
func (p *Processor) onRevoked(ctx context.Context, _ *kgo.Client, revoked map[string][]int32) {
	p.tel.rebalanced("revoked", revoked[p.kcfg.RawTopic])
	last := p.q.sealNow()
	p.log.Info("partitions revoked: flushing before handing them over", "partitions", revoked[p.kcfg.RawTopic])
	p.q.waitFlushed(last)
	p.q.update(func() {
		for _, part := range revoked[p.kcfg.RawTopic] {
			delete(p.q.from, part)
		}
	})
}

// onLost handles partitions lost without a revoke (session expired: a new
// owner may already read them). Their offsets are forgotten (committing
// them could rewind the new owner), and none of their rows may be inserted
// any more: the open INSERT is aborted and every uncommitted batch dropped,
// as after an insert error (the flusher rewinds the partitions we still
// own). An INSERT already completing names the lost partitions in its
// query id, so the new owner waits for it (or kills it) before reading.
func (p *Processor) onLost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	parts := lost[p.kcfg.RawTopic]
	if len(parts) == 0 {
		return // franz-go calls it with nothing of ours (e.g. while Kafka is away)
	}
	p.tel.rebalanced("lost", parts)
	p.q.update(func() {
		p.q.lose(parts)
		p.lostGen.Add(1)
		if p.q.failed == nil {
			p.q.failed = errPartitionsLost
		}
	})
	p.log.Warn("partitions lost: dropping their uncommitted rows", "partitions", parts)
}

// errPartitionsLost makes the flusher abort and rewind after onLost.
var errPartitionsLost = errors.New("partitions lost: uncommitted rows dropped")

// rewind drops every uncommitted batch and the records just polled, and
// sets the consumer back to the last stored offset of each partition. Only
// pollLoop calls it, between a poll and AllowRebalance (no revoke can run).
func (p *Processor) rewind(polled []*kgo.Record) {
	offs := p.q.dropAll(polled)
	if len(offs) > 0 {
		p.cl.SetOffsets(map[string]map[int32]kgo.EpochOffset{p.kcfg.RawTopic: offs})
		if p.rng != nil { // range mode
			p.rangeRewind(offs)
		}
	}
	p.tel.rewound()
	p.log.Info("rewound to the last stored offsets", "offsets", offs)
	p.q.update(func() { p.q.rewindReq = false })
}
