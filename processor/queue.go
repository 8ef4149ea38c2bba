package processor

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// queue hands batches from the poll loop to the flusher: the batch being
// filled, the sealed batches not committed yet, and the state both sides
// wait on (a failure, a rewind, a shutdown). mu guards the fields after
// it, the partitions' read positions (from, lost) among them, as they
// change with the batches; cond is broadcast on every change. The batches'
// own flags (taken, prepared, sent, dropped) are under mu too.
type queue struct {
	cfg Config // batch limits

	mu        sync.Mutex
	cond      *sync.Cond
	cur       *batch
	pending   []*batch // sealed and not committed, oldest first
	sealedSeq uint64
	doneSeq   uint64
	wantSeq   uint64 // a waiter (rebalance, shutdown) needs batches up to this one stored

	stopped   bool  // the flusher gave up (shutdown timeout, cancelled flush)
	pollDone  bool  // pollLoop returned (shutdown)
	drained   bool  // the last poll returned nothing: no backlog
	failed    error // a background insert close failed: the flusher must rewind
	rewindReq bool  // the flusher asks pollLoop to rewind

	lost map[int32]bool // partitions lost and not assigned again: their records are ignored
	// from is, per partition read, the offset after the last stored
	// record (or the first offset read): where a rewind restarts.
	from map[int32]kgo.EpochOffset
}

func newQueue(cfg Config) *queue {
	q := &queue{cfg: cfg, cur: newBatch(cfg), lost: map[int32]bool{}, from: map[int32]kgo.EpochOffset{}}
	q.cond = sync.NewCond(&q.mu)
	return q
}

// batch is what one flush handles: rows and dead letters of consecutive
// records, and the offsets to commit after them.
type batch struct {
	seq     uint64
	rows    []Row
	dead    []*kgo.Record
	offsets map[int32]kgo.EpochOffset // next offset to consume, per partition
	records int
	bytes   int64
	started time.Time
	minRecv uint64
	maxRecv uint64
	actions map[string]uint32

	// set by the flusher (taken, prepared, sent, dropped: under mu)
	taken    bool // the preparer has it
	prepared bool // de-duplicated: b.keep is ready to send
	sent     bool // rows sent to an insertion (released)
	dropped  bool // a rewind dropped it: it is read again

	parts         []int32
	keep          []Row
	rowsIn        int
	inserted      int
	dupID, dupWin int
	flushStart    time.Time
	lookupDur     time.Duration
	insertDur     time.Duration

	tel batchTel // telemetry.go
}

func newBatch(cfg Config) *batch {
	// Rows are allocated once at the batch's expected size: growing a slice
	// of ~1 KiB structs by doubling would waste up to half of it.
	// A row counts ~1.6–2 KiB with its strings (rowOverhead is the struct
	// and short strings only); the estimate errs on the small side, as a
	// few unused slots cost far less than one doubling of the array.
	n := min(cfg.BatchRows, int(cfg.BatchBytes/(rowOverhead+384))+1)
	return &batch{rows: make([]Row, 0, n), offsets: map[int32]kgo.EpochOffset{}, actions: map[string]uint32{}}
}

// partitions lists the batch's source partitions, sorted.
func (b *batch) partitions() []int32 {
	out := make([]int32, 0, len(b.offsets))
	for part := range b.offsets {
		out = append(out, part)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

func (b *batch) full(cfg Config) bool {
	return len(b.rows) >= cfg.BatchRows || b.bytes >= cfg.BatchBytes
}

// unsent counts the sealed batches whose rows are still in memory. Caller
// holds mu.
func (q *queue) unsent() int {
	n := 0
	for _, b := range q.pending {
		if !b.sent {
			n++
		}
	}
	return n
}

// oldestUnsent is the next batch to send (batches are sent in order), nil
// when every sealed batch is sent. Caller holds mu.
func (q *queue) oldestUnsent() *batch {
	for _, b := range q.pending {
		if !b.sent {
			return b
		}
	}
	return nil
}

// nextToPrepare waits for the oldest sealed batch the preparer has not
// taken and marks it taken; nil when the flusher stops or ctx ends.
func (q *queue) nextToPrepare(ctx context.Context) *batch {
	q.mu.Lock()
	defer q.mu.Unlock()
	for !q.stopped && ctx.Err() == nil {
		for _, b := range q.pending {
			if !b.taken {
				b.taken = true
				return b
			}
		}
		q.cond.Wait()
	}
	return nil
}

// seal moves the current batch to the flush queue. Caller holds mu.
func (q *queue) seal() {
	if q.cur.records == 0 {
		return
	}
	q.sealedSeq++
	q.cur.seq = q.sealedSeq
	q.pending = append(q.pending, q.cur)
	q.cur = newBatch(q.cfg)
	q.cond.Broadcast()
}

// sealNow seals the current batch and returns the last sealed one's seq.
func (q *queue) sealNow() uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.seal()
	return q.sealedSeq
}

// waitFlushed waits until batch seq is stored and committed (the flusher
// closes the open insertion for it); false if the flusher stopped first.
func (q *queue) waitFlushed(seq uint64) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.wantSeq = max(q.wantSeq, seq)
	q.cond.Broadcast()
	// A pending rewind drops the batches: their records are read again
	// (by us or the next owner), nothing to wait for.
	for q.doneSeq < seq && !q.stopped && !q.rewindReq {
		q.cond.Wait()
	}
	return q.doneSeq >= seq
}

// update changes the queue's state under mu and wakes every waiter.
func (q *queue) update(f func()) {
	q.mu.Lock()
	defer q.mu.Unlock()
	f()
	q.cond.Broadcast()
}

// wake wakes every waiter on cond.
func (q *queue) wake() { q.update(func() {}) }

// wakeOnDone wakes the waiters when ctx ends, so that a wait on cond
// can check ctx; call stop when done waiting.
func (q *queue) wakeOnDone(ctx context.Context) (stop func() bool) {
	return context.AfterFunc(ctx, q.wake)
}

// stop tells every side that the flusher gave up.
func (q *queue) stop() { q.update(func() { q.stopped = true }) }

// fail records a failed insert close for the flusher (the first one
// counts: the rewind covers the rest).
func (q *queue) fail(err error) {
	q.update(func() {
		if q.failed == nil {
			q.failed = err
		}
	})
}

func (q *queue) closeFailed() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.failed != nil
}

func (q *queue) takeFailure() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	err := q.failed
	q.failed = nil
	return err
}

// release marks b's rows as handed to an insertion and releases them: b
// stops counting against MaxPendingBatches.
func (q *queue) release(b *batch) {
	q.update(func() {
		b.rows, b.keep = nil, nil
		b.sent = true
	})
}

// done records b as stored and committed: the read positions of its
// partitions move past it and waiters for it go on.
func (q *queue) done(b *batch) {
	q.update(func() {
		for part, o := range b.offsets {
			if _, owned := q.from[part]; owned {
				q.from[part] = o
			}
		}
		if len(q.pending) > 0 && q.pending[0] == b {
			q.pending = q.pending[1:]
		}
		q.doneSeq = max(q.doneSeq, b.seq)
	})
}

// lose forgets partitions lost without a revoke: their offsets in every
// uncommitted batch and their read positions, and ignores their records
// until they are assigned again. Caller holds mu.
func (q *queue) lose(parts []int32) {
	for _, b := range append(q.pending, q.cur) {
		for _, part := range parts {
			delete(b.offsets, part)
		}
	}
	for _, part := range parts {
		delete(q.from, part)
		q.lost[part] = true
	}
}

// dropAll drops every uncommitted batch (a rewind reads them again) and
// returns where each partition read restarts: the offset after its last
// stored record, or for a partition first seen in polled (records fetched
// and dropped too), its first record there.
func (q *queue) dropAll(polled []*kgo.Record) map[int32]kgo.EpochOffset {
	q.mu.Lock()
	defer q.mu.Unlock()
	// Without this, a partition first seen in the dropped poll would go on
	// after its dropped records.
	for _, r := range polled {
		if _, ok := q.from[r.Partition]; !ok && !q.lost[r.Partition] {
			q.from[r.Partition] = kgo.EpochOffset{Epoch: r.LeaderEpoch, Offset: r.Offset}
		}
	}
	offs := make(map[int32]kgo.EpochOffset, len(q.from))
	for part, o := range q.from {
		offs[part] = o
	}
	for _, b := range q.pending {
		b.dropped = true
	}
	q.pending = nil
	q.cur = newBatch(q.cfg)
	// Waiters for dropped batches (a revoke) go on: their records are not
	// committed, so they are read again (by us or the next owner).
	q.doneSeq = q.sealedSeq
	return offs
}
