package processor

import (
	"sort"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

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

func (p *Processor) newBatch() *batch {
	// Rows are allocated once at the batch's expected size: growing a slice
	// of ~1 KiB structs by doubling would waste up to half of it.
	// A row averages ~2 KiB with its strings (rowOverhead is the struct
	// and short strings only).
	n := min(p.cfg.BatchRows, int(p.cfg.BatchBytes/(rowOverhead+900))+1)
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
func (p *Processor) unsent() int {
	n := 0
	for _, b := range p.pending {
		if !b.sent {
			n++
		}
	}
	return n
}

// seal moves the current batch to the flush queue. Caller holds mu.
func (p *Processor) seal() {
	if p.cur.records == 0 {
		return
	}
	p.sealedSeq++
	p.cur.seq = p.sealedSeq
	p.pending = append(p.pending, p.cur)
	p.cur = p.newBatch()
	p.cond.Broadcast()
}

// waitFlushed waits until batch seq is stored and committed (the flusher
// closes the open insertion for it); false if the flusher stopped first.
func (p *Processor) waitFlushed(seq uint64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.wantSeq = max(p.wantSeq, seq)
	p.cond.Broadcast()
	// A pending rewind drops the batches: their records are read again
	// (by us or the next owner), nothing to wait for.
	for p.doneSeq < seq && !p.stopped && !p.rewindReq {
		p.cond.Wait()
	}
	return p.doneSeq >= seq
}

// wake wakes every waiter on p.cond.
func (p *Processor) wake() {
	p.mu.Lock()
	p.cond.Broadcast()
	p.mu.Unlock()
}

func (p *Processor) closeFailed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.failed != nil
}

func (p *Processor) takeFailure() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	err := p.failed
	p.failed = nil
	return err
}
