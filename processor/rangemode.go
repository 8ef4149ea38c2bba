package processor

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lcpipe/lcpipe/internal/livechat"
	"github.com/lcpipe/lcpipe/internal/wire"
)

// Range makes Run process a bounded range of the raw topic, for replays
// (`lcpipe replay`): the same decode, transform, identity, de-duplication
// and INSERT path as the live processor, but with its own consumer reading
// the given partitions directly (no consumer group: the live group keeps
// running and is not rebalanced), no offset commits, and Run returning
// once every partition reached its end offset and everything read is stored.
//
// The hooks into the live code are small and marked "range mode": the
// client options (Run), clipping polled records to the range (pollLoop),
// OnStored instead of the group commit (commit), the batch report around
// dedup (prepare), and the dry run (openInsertion, send, finish).
type Range struct {
	// Start and End are, per partition, the first offset to read and the
	// offset to stop before. Partitions with Start >= End are not read.
	Start, End map[int32]int64
	// OnStored is called after every completed INSERT, in order, with the
	// next offset to read per partition (what the group commit records in
	// live mode): a replay saves it, so a rerun resumes there. Optional.
	OnStored func(next map[int32]int64)
	// OnBatch is called for every batch after de-duplication, in order,
	// before its rows are sent. Optional.
	OnBatch func(BatchReport)
	// DryRun decides everything but inserts nothing (OnStored and OnBatch
	// are still called; no pipeline_batches rows).
	DryRun bool
	// Rate caps records read per second (0: no cap), so a replay does not
	// starve the live processor.
	Rate float64
	// DeadLetters produces the range's undecodable records to the
	// dead-letter topic. Off by default: the live processor dead-lettered
	// them when it read them; a replay only counts them (BatchReport).
	DeadLetters bool
}

// RowRef names one row of a batch: its event ID and the record it came from.
type RowRef struct {
	EventID   string
	Action    string
	Partition int32
	Offset    int64
	Index     uint16
	Windowed  bool
}

// BatchReport is what one batch held and what de-duplication decided.
type BatchReport struct {
	// Records per action (decoded or not: a dead letter counts under its
	// action header).
	Records map[string]int
	// DeadLetters per action header.
	DeadLetters map[string]int
	// Kept rows per action (inserted, or would be with DryRun).
	Kept map[string]int
	// Dropped are the rows de-duplication dropped (already stored, or a
	// duplicate of a row kept earlier).
	Dropped []RowRef
}

func (r *Range) validate() error {
	if len(r.End) == 0 {
		return errors.New("processor: range without end offsets")
	}
	for p, e := range r.End {
		if r.Start[p] < 0 || e < 0 {
			return fmt.Errorf("processor: range partition %d: negative offsets %d..%d", p, r.Start[p], e)
		}
	}
	if r.Rate < 0 {
		return errors.New("processor: range rate must not be negative")
	}
	return nil
}

// rangeState is the range mode's running state.
type rangeState struct {
	mu      sync.Mutex
	left    map[int32]int64 // partitions not finished: their end offset
	stop    context.CancelFunc
	started time.Time
	read    int64
}

// rangeClientOpts are the consumer options of range mode: direct
// consumption of the range's partitions from their start offsets.
func (p *Processor) rangeClientOpts() []kgo.Opt {
	parts := map[int32]kgo.Offset{}
	for part, end := range p.cfg.Range.End {
		if start := p.cfg.Range.Start[part]; start < end {
			parts[part] = kgo.NewOffset().At(start)
		}
	}
	return []kgo.Opt{
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{p.kcfg.RawTopic: parts}),
		kgo.FetchMaxBytes(p.cfg.FetchMaxBytes),
		kgo.FetchMaxPartitionBytes(p.cfg.FetchMaxBytes / 4),
		kgo.MaxConcurrentFetches(2),
	}
}

// rangeStart prepares range mode: it returns the context pollLoop runs
// with, cancelled once every partition reached its end (or when ctx ends).
// Caller holds mu.
func (p *Processor) rangeStart(ctx context.Context) context.Context {
	rctx, stop := context.WithCancel(ctx)
	st := &rangeState{left: map[int32]int64{}, stop: stop, started: time.Now()}
	for part, end := range p.cfg.Range.End {
		if p.cfg.Range.Start[part] < end {
			st.left[part] = end
			// A partition is "from" its start: a rewind goes back there.
			p.q.from[part] = kgo.EpochOffset{Epoch: -1, Offset: p.cfg.Range.Start[part]}
		}
	}
	p.rng = st
	if len(st.left) == 0 {
		stop()
	}
	return rctx
}

// rangeWaitInserts waits, like a new owner of a partition, until no INSERT
// naming the range's partitions still runs on the server: a replay killed
// right after sending leaves its INSERT completing, and the lookups of
// the rerun must see its rows.
func (p *Processor) rangeWaitInserts(ctx context.Context) {
	var parts []int32
	for part, end := range p.cfg.Range.End {
		if p.cfg.Range.Start[part] < end {
			parts = append(parts, part)
		}
	}
	if err := p.waitInsertsDone(ctx, parts); err != nil {
		p.log.Warn("running inserts of the range unknown; continuing", "err", err)
	}
}

// rangeClip drops polled records at or after their partition's end,
// pauses finished partitions, stops the poll loop when all are, and
// paces reading to Range.Rate.
func (p *Processor) rangeClip(ctx context.Context, recs []*kgo.Record) []*kgo.Record {
	st := p.rng
	st.mu.Lock()
	out := recs[:0]
	var done []int32
	for _, r := range recs {
		end, ok := st.left[r.Partition]
		if !ok || r.Offset >= end {
			continue
		}
		out = append(out, r)
		if r.Offset+1 >= end {
			delete(st.left, r.Partition)
			done = append(done, r.Partition)
		}
	}
	st.read += int64(len(out))
	read, all := st.read, len(st.left) == 0
	st.mu.Unlock()
	if len(done) > 0 {
		p.cl.PauseFetchPartitions(map[string][]int32{p.kcfg.RawTopic: done})
	}
	if rate := p.cfg.Range.Rate; rate > 0 {
		due := st.started.Add(time.Duration(float64(read) / rate * float64(time.Second)))
		if wait := time.Until(due); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
			}
		}
	}
	if all {
		st.stop()
	}
	return out
}

// pollMax is how many records one poll may return: a tenth of a
// second's worth under Range.Rate, so pacing is smooth (and batches, hence
// saved progress, keep coming), else 5000.
func (p *Processor) pollMax() int {
	if p.cfg.Range != nil && p.cfg.Range.Rate > 0 {
		return max(1, min(5000, int(p.cfg.Range.Rate/10)))
	}
	return 5000
}

// rangeRewind is a rewind in range mode: the consumer restarts at the last
// stored offsets of the partitions read, and finished partitions that
// must be read again are resumed.
func (p *Processor) rangeRewind(offs map[int32]kgo.EpochOffset) {
	st := p.rng
	st.mu.Lock()
	var resume []int32
	for part, o := range offs {
		if end := p.cfg.Range.End[part]; o.Offset < end {
			if _, ok := st.left[part]; !ok {
				resume = append(resume, part)
			}
			st.left[part] = end
		}
	}
	st.mu.Unlock()
	if len(resume) > 0 {
		p.cl.ResumeFetchPartitions(map[string][]int32{p.kcfg.RawTopic: resume})
	}
}

// rangeStored replaces the group commit in range mode.
func (p *Processor) rangeStored(offs map[int32]kgo.EpochOffset) {
	if p.cfg.Range.OnStored == nil {
		return
	}
	next := make(map[int32]int64, len(offs))
	for part, o := range offs {
		next[part] = o.Offset
	}
	p.cfg.Range.OnStored(next)
}

// rangeSnapshot remembers the rows of a batch before de-duplication, for
// its report; nil when nobody asked for reports.
func (p *Processor) rangeSnapshot(rows []Row) []RowRef {
	if p.cfg.Range == nil || p.cfg.Range.OnBatch == nil {
		return nil
	}
	out := make([]RowRef, len(rows))
	for i := range rows {
		r := &rows[i]
		out[i] = RowRef{EventID: r.EventID, Action: r.Action, Partition: r.SrcPartition, Offset: r.SrcOffset, Index: r.SrcIndex, Windowed: r.DedupKey != ""}
	}
	return out
}

// rangeReport builds the batch's report from the rows before (snap) and
// after (keep) de-duplication and hands it to OnBatch.
func (p *Processor) rangeReport(b *batch, snap []RowRef, keep []Row) {
	if snap == nil {
		return
	}
	type src struct {
		part  int32
		off   int64
		index uint16
	}
	kept := make(map[src]struct{}, len(keep))
	rep := BatchReport{Records: map[string]int{}, DeadLetters: map[string]int{}, Kept: map[string]int{}}
	for i := range keep {
		kept[src{keep[i].SrcPartition, keep[i].SrcOffset, keep[i].SrcIndex}] = struct{}{}
		rep.Kept[keep[i].Action]++
	}
	for _, r := range snap {
		if _, ok := kept[src{r.Partition, r.Offset, r.Index}]; !ok {
			rep.Dropped = append(rep.Dropped, r)
		}
	}
	for a, n := range b.actions {
		rep.Records[a] += int(n)
	}
	for _, r := range b.dead {
		a := wire.Header(r, wire.HeaderAction)
		rep.Records[a]++
		rep.DeadLetters[a]++
	}
	p.cfg.Range.OnBatch(rep)
}

func (p *Processor) dryRun() bool { return p.cfg.Range != nil && p.cfg.Range.DryRun }

// produceDead says whether dead letters go to the dead-letter topic.
func (p *Processor) produceDead() bool {
	return p.cfg.Range == nil || (p.cfg.Range.DeadLetters && !p.cfg.Range.DryRun)
}

// discardBatch is the INSERT of a dry run: nothing is sent (send skips it).
type discardBatch struct{ driver.Batch }

func (discardBatch) Abort() error { return nil }
func (discardBatch) Flush() error { return nil }
func (discardBatch) Send() error  { return nil }

// DecodeRecord decodes and validates a raw-topic record exactly as the
// processor does (livechat.Decode, then the identity checks); an error is
// what makes the processor dead-letter it. For audits.
func DecodeRecord(r *kgo.Record) (*livechat.Webhook, error) { return decodeRecord(r, nil) }

// SourceOf is the Source the processor gives Transform for a record.
func SourceOf(r *kgo.Record) Source { return sourceOf(r) }
