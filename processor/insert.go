package processor

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/lcpipe/lcpipe/internal/backoff"
	"github.com/lcpipe/lcpipe/internal/wire"
)

// insertion is one open INSERT into events. Consecutive batches stream into
// it, each as one block sent as soon as the batch is de-duplicated (its rows
// are then released), and the server squashes the blocks into one block
// before writing (min_insert_block_size_rows / _bytes, 1M rows / 256 MiB by
// default): one part per table partition, and one run of the materialized
// views, for many batches, because large blocks cost ClickHouse the least
// per row (BENCHMARKS.md), while the processor holds only a batch or two in
// memory. The offsets of its batches are committed after the INSERT
// completes.
type insertion struct {
	b        driver.Batch
	batches  []*batch
	parts    map[int32]bool // partitions named in the query id
	rows     int
	id       uint64 // insert_id of its rows
	lostGen  int64  // p.lostGen when opened
	windowed int    // state changes (they rely on the subject cache until stored)
	opened   time.Time
	done     chan struct{} // closed when the close finished (committed or failed)
	tel      insertTel     // its span (telemetry.go)
}

func (in *insertion) last() uint64 { return in.batches[len(in.batches)-1].seq }

// covers reports whether b's partitions are named in the insert's query id.
func (in *insertion) covers(b *batch) bool {
	for _, part := range b.parts {
		if !in.parts[part] {
			return false
		}
	}
	return true
}

// newInsertID is a random, non-zero INSERT id (events.insert_id).
func newInsertID() uint64 {
	for {
		if id := rand.Uint64(); id != 0 {
			return id
		}
	}
}

// flusher handles sealed batches in order until stopped: it de-duplicates
// a batch (prepare: decisions build on the previous batches', kept IDs and
// window times enter the memory caches as soon as they are decided), sends
// its rows as one block of the open insertion, and closes the insertion
// when it is large or old enough, when the input is drained or when
// someone waits for one of its batches (rebalance, shutdown). The close
// runs in the background (closeInsertion) while the next insertion fills;
// at most one close is in flight, so commits stay in batch order, each
// after every earlier batch is stored.
//
// When an insertion fails (ClickHouse away, a timeout), its batches' rows
// are no longer in memory: the flusher rewinds instead (recover). The
// consumer is set back to the last stored offsets and every uncommitted
// batch is read again, de-duplicated against ClickHouse with empty caches,
// which is what a restart does (and what the crash tests check).
func (p *Processor) flusher(ctx context.Context) {
	var ins, closing *insertion
	failures := 0
	fail := func(err error) bool {
		if ins != nil {
			_ = ins.b.Abort()
			p.tel.insertClosed(ins, err)
			ins = nil
		}
		if closing != nil {
			<-closing.done
			closing = nil
		}
		failures++
		return p.recover(ctx, err, failures)
	}
	// startClose closes ins in the background once the previous close is
	// done; an error is that previous close's failure: ins must not
	// complete (its commit would pass the failed batches).
	startClose := func() error {
		if closing != nil {
			<-closing.done
			if err := p.q.takeFailure(); err != nil {
				return err
			}
		}
		closing, ins = ins, nil
		go p.closeInsertion(ctx, closing)
		return nil
	}
	var wg sync.WaitGroup
	wg.Go(func() { p.preparer(ctx) })
	defer wg.Wait()
	defer func() {
		if ins != nil {
			_ = ins.b.Abort()
			p.tel.insertClosed(ins, errAborted)
		}
		if closing != nil {
			<-closing.done
		}
	}()
	for {
		b, closeNow, err := p.nextBatch(ctx, ins)
		switch {
		case err != nil:
			if !fail(err) {
				return
			}
			continue
		case closeNow:
			if err := startClose(); err != nil && !fail(err) {
				return
			}
			continue
		case b == nil:
			return
		}
		if p.carefulFor(b) {
			// refused.go: this batch on its own, after every earlier one.
			if ins != nil {
				if err := startClose(); err != nil {
					if !fail(err) {
						return
					}
					continue
				}
			}
			if closing != nil {
				<-closing.done
				closing = nil
				if err := p.q.takeFailure(); err != nil {
					if !fail(err) {
						return
					}
					continue
				}
			}
			if err := p.insertCareful(ctx, b); err != nil {
				if !fail(err) {
					return
				}
				continue
			}
			failures = 0
			continue
		}
		if closing != nil && p.q.closeFailed() {
			// Do not send more: the rewind re-reads this batch anyway.
			if !fail(p.q.takeFailure()) {
				return
			}
			continue
		}
		if ins != nil && !ins.covers(b) {
			// The query id must name every source partition.
			if err := startClose(); err != nil {
				if !fail(err) {
					return
				}
				continue
			}
		}
		if ins == nil {
			ins, err = p.openInsertion(ctx, b)
			if err != nil {
				if ctx.Err() != nil {
					p.abandon(b, err)
					return
				}
				if !fail(err) {
					return
				}
				continue
			}
		}
		if err := p.send(ins, b); err != nil {
			if !fail(err) {
				return
			}
			continue
		}
		failures = 0
		if ins.rows >= p.cfg.InsertRows || 2*ins.windowed >= p.cfg.WindowCacheSize {
			if err := startClose(); err != nil && !fail(err) {
				return
			}
		}
	}
}

// preparer de-duplicates sealed batches in order (prepare), one batch
// ahead of the sender, so the lookups of a batch overlap the sending of the
// previous one. Decisions build on the previous batches' (kept IDs and
// window times enter the memory caches as soon as they are decided).
func (p *Processor) preparer(ctx context.Context) {
	for {
		b := p.q.nextToPrepare(ctx)
		if b == nil {
			return
		}

		p.dd.gate.Lock()
		p.q.mu.Lock()
		dropped := b.dropped
		p.q.mu.Unlock()
		var err error
		if !dropped {
			bctx, span := p.tel.batchSpan(ctx, b)
			err = p.prepare(bctx, b)
			span.End()
		}
		p.dd.gate.Unlock()
		if err != nil {
			p.abandon(b, err)
			return
		}
		p.q.update(func() { b.prepared = true })
	}
}

// prepare produces the batch's dead letters and de-duplicates its rows
// (b.keep). It returns an error only when ctx ends.
func (p *Processor) prepare(ctx context.Context, b *batch) error {
	b.flushStart = time.Now()
	if len(b.dead) > 0 && p.produceDead() { // range mode may only count them

		err := p.retry(ctx, "produce dead letters", func() error {
			for _, r := range b.dead {
				r.Topic = p.kcfg.DLQTopic
			}
			return p.cl.ProduceSync(ctx, b.dead...).FirstErr()
		})
		if err != nil {
			return err
		}
		for _, r := range b.dead {
			p.log.WarnContext(ctx, "dead letter", "partition", wire.Header(r, wire.HeaderDLQPartition), "offset", wire.Header(r, wire.HeaderDLQOffset),
				"stage", wire.Header(r, wire.HeaderDLQStage), "err", wire.Header(r, wire.HeaderDLQError), "request_id", wire.Header(r, wire.HeaderRequestID))
		}
	}
	p.q.mu.Lock() // onLost may edit offsets
	b.parts = b.partitions()
	p.q.mu.Unlock()
	b.rowsIn = len(b.rows)
	lookStart := time.Now()
	snap := p.rangeSnapshot(b.rows) // range mode reports
	res, err := p.dd.dedup(ctx, b.rows)
	if err != nil {
		return err
	}
	p.rangeReport(b, snap, res.keep)
	b.lookupDur = time.Since(lookStart)
	b.keep, b.dupID, b.dupWin = res.keep, res.dupID, res.dupWin
	p.tel.prepared(b)
	// Records read again whose rows an earlier INSERT stored: before their
	// offsets are committed, the derived tables must hold those rows too.
	return p.repair(ctx, res.stored)
}

// nextBatch waits for the next batch to send (the oldest unsent one, once
// prepared). It returns closeNow when
// the open insertion should be closed first: it is older than
// InsertLinger, someone waits for one of its batches, or the last poll
// found nothing more to read. nil, false, nil means stop; an error is a failed close that
// needs a rewind.
func (p *Processor) nextBatch(ctx context.Context, ins *insertion) (b *batch, closeNow bool, err error) {
	p.q.mu.Lock()
	defer p.q.mu.Unlock()
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		if p.q.stopped || ctx.Err() != nil {
			return nil, false, nil
		}
		if p.q.failed != nil {
			e := p.q.failed
			p.q.failed = nil
			return nil, false, e
		}
		if next := p.q.oldestUnsent(); next != nil && next.prepared {
			return next, false, nil
		}
		if ins != nil {
			age := time.Since(ins.opened)
			if p.q.wantSeq >= ins.last() || age >= p.cfg.InsertLinger || p.q.drained {
				return nil, true, nil
			}
			if timer == nil {
				timer = time.AfterFunc(p.cfg.InsertLinger-age, p.q.wake)
			}
		}
		p.q.cond.Wait()
	}
}

// openInsertion starts an INSERT into events whose query id names b's
// partitions, so a new owner of a partition can wait for an insert that a
// crashed owner left running on the server (runningInserts).
func (p *Processor) openInsertion(ctx context.Context, b *batch) (*insertion, error) {
	parts := p.ownedPartitions(b.parts)
	id := newInsertID()
	qid := insertQueryID(p.st.db, p.kcfg.RawTopic, parts, strconv.FormatUint(id, 16))
	var ib driver.Batch = discardBatch{}
	if !p.dryRun() { // range mode's dry run inserts nothing
		var err error
		if ib, err = p.st.open(ctx, qid); err != nil {
			return nil, err
		}
	}
	in := &insertion{b: ib, id: id, lostGen: p.lostGen.Load(), parts: map[int32]bool{}, opened: time.Now(), done: make(chan struct{})}
	for _, part := range parts {
		in.parts[part] = true
	}
	p.tel.insertOpened(ctx, in, qid)
	return in, nil
}

// ownedPartitions is the partitions this process reads (those it has read
// from since their last commit), at least b's.
func (p *Processor) ownedPartitions(must []int32) []int32 {
	p.q.mu.Lock()
	defer p.q.mu.Unlock()
	set := map[int32]bool{}
	for _, part := range must {
		set[part] = true
	}
	for part := range p.q.from {
		set[part] = true
	}
	out := make([]int32, 0, len(set))
	for part := range set {
		out = append(out, part)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// send appends b's kept rows to the insertion as one block and releases
// them; b stops counting against MaxPendingBatches.
func (p *Processor) send(in *insertion, b *batch) error {
	if err := p.lostSince(in); err != nil {
		return err
	}
	start := time.Now()
	if !p.dryRun() { // range mode's dry run inserts nothing
		if err := p.st.sendBlock(in.b, b.keep, in.id); err != nil {
			return err
		}
	}
	for i := range b.keep {
		if len(b.keep[i].DedupSubjects) > 0 {
			in.windowed++
		}
	}
	in.rows += len(b.keep)
	b.inserted = len(b.keep)
	b.insertDur = time.Since(start)
	in.batches = append(in.batches, b)
	p.tel.blockSent(in, b)
	p.q.release(b)
	return nil
}

// lostSince is errPartitionsLost when partitions were lost since the
// insertion opened: it may hold their rows and must not complete.
func (p *Processor) lostSince(in *insertion) error {
	if p.lostGen.Load() != in.lostGen {
		return errPartitionsLost
	}
	return nil
}

// closeInsertion completes the INSERT (the server writes the squashed block
// and runs the views) and commits its batches in order; on error it
// records the failure for the flusher. It closes in.done.
func (p *Processor) closeInsertion(ctx context.Context, in *insertion) {
	defer close(in.done)
	start := time.Now()
	err := p.lostSince(in)
	if err != nil {
		_ = in.b.Abort()
	} else {
		err = in.b.Send()
	}
	p.tel.insertClosed(in, err)
	if err != nil {
		p.q.fail(fmt.Errorf("insert of %d rows: %w", in.rows, err))
		return
	}
	last := in.batches[len(in.batches)-1]
	last.insertDur += time.Since(start)
	p.finish(p.tel.insertContext(ctx, in), in.batches, in.id)
}

// recover handles a failed insertion (ClickHouse away, a timeout, a lost
// connection): after backing off, it waits until no insert of our
// partitions still runs on the server (the failed one may be completing:
// the lookups must see its rows), empties the caches (they hold decisions
// about rows that may not be stored) and has the poll loop rewind to the
// last stored offsets. It returns false when the flusher must stop.
func (p *Processor) recover(ctx context.Context, cause error, attempt int) bool {
	p.stats.InsertRetries.Add(1)
	p.log.Warn("insert failed; reading the uncommitted records again", "attempt", attempt, "err", cause)
	if backoff.Refused(cause) {
		p.beCareful(cause)
	}
	if !p.backoff(ctx, attempt-1) {
		return false
	}
	parts := p.ownedPartitions(nil)
	if err := p.waitInsertsDone(ctx, parts); err != nil {
		return false
	}
	// Between two preparations: the caches may hold decisions about
	// dropped batches; the preparer skips batches dropped meanwhile.
	p.dd.gate.Lock()
	defer p.dd.gate.Unlock()
	p.dd.reset()
	p.q.mu.Lock()
	defer p.q.mu.Unlock()
	if p.q.pollDone {
		// Shutting down: nobody polls any more. The uncommitted records
		// are read again by the next owner.
		p.q.stopped = true
		p.q.cond.Broadcast()
		return false
	}
	p.q.rewindReq = true
	p.q.failed = nil // the rewind covers it
	p.q.cond.Broadcast()
	defer p.q.wakeOnDone(ctx)()
	for p.q.rewindReq && !p.q.pollDone && !p.q.stopped && ctx.Err() == nil {
		p.q.cond.Wait()
	}
	if p.q.rewindReq {
		p.q.stopped = true
		p.q.cond.Broadcast()
		return false
	}
	return true
}

// abandon stops the flusher: only a cancelled flush context ends here.
func (p *Processor) abandon(b *batch, err error) {
	p.log.Error("flush abandoned", "batch", b.seq, "err", err)
	p.q.stop()
}
