package processor

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lcpipe/lcpipe/internal/backoff"
	"github.com/lcpipe/lcpipe/internal/kafka"
	"github.com/lcpipe/lcpipe/internal/wire"
)

// Records ClickHouse refuses for their content.
//
// An INSERT that fails because the server refuses the data itself
// (backoff.Refused: a parse, conversion or size error, not a broken table
// or a server away) would fail the same way after every rewind and stall
// every partition behind it. After such a failure the processor reads the
// uncommitted records again carefully (up to the offsets it had read when
// the INSERT failed): each batch is inserted on its own, and a refused one
// is split in halves until the refused rows are found. Their records alone
// go to the dead-letter topic with the server's message (stage "insert");
// the rest is stored. A batch all of whose rows are refused one by one is
// not its records' fault (a table, not the data): it is retried, like any
// infrastructure failure.

// RefusedError is the dead-letter reason of a record ClickHouse refused.
type RefusedError struct {
	Index uint16 // the refused row of the record (src_index)
	Err   error
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("clickhouse refused row %d of the record: %v", e.Index, e.Err)
}

func (e *RefusedError) Unwrap() error { return e.Err }

// refusal is one refused row.
type refusal struct {
	part  int32
	off   int64
	index uint16
	err   error
}

// beCareful turns careful mode on up to what has been read so far.
func (p *Processor) beCareful(cause error) {
	p.q.mu.Lock()
	defer p.q.mu.Unlock()
	for _, b := range append(p.q.pending, p.q.cur) {
		for part, o := range b.offsets {
			p.careful[part] = max(p.careful[part], o.Offset)
		}
	}
	p.log.Warn("ClickHouse refused the data of an insert: inserting the uncommitted batches one by one to find the refused records", "err", cause, "until", p.careful)
}

// carefulFor reports whether b must be inserted carefully.
func (p *Processor) carefulFor(b *batch) bool {
	p.q.mu.Lock()
	defer p.q.mu.Unlock()
	careful := false
	for part, o := range b.offsets {
		if until, ok := p.careful[part]; ok {
			if o.Offset <= until {
				careful = true
			} else if o.Offset > until {
				delete(p.careful, part)
			}
		}
	}
	return careful
}

// insertCareful stores b on its own, dead-lettering the records whose rows
// ClickHouse refuses, and commits it. No other INSERT may be open or
// closing. An error is an infrastructure failure (the flusher rewinds).
func (p *Processor) insertCareful(ctx context.Context, b *batch) error {
	start := time.Now()
	refused, err := p.bisect(ctx, b.parts, b.keep)
	if err != nil {
		return err
	}
	if len(refused) > 0 && len(refused) == len(b.keep) && len(b.keep) > 1 {
		return fmt.Errorf("every row of a batch refused on its own, so not the records' fault: %v", refused[0].err)
	}
	if err := p.deadLetterRefused(ctx, refused); err != nil {
		return err
	}
	b.inserted = len(b.keep) - len(refused)
	b.insertDur = time.Since(start)
	p.q.release(b)
	p.finish(ctx, []*batch{b}, 0)
	return nil
}

// bisect inserts rows, splitting them while ClickHouse refuses their data,
// and returns the rows refused on their own. Each INSERT has its own id
// and a query id naming the partitions, like any other.
func (p *Processor) bisect(ctx context.Context, parts []int32, rows []Row) ([]refusal, error) {
	if len(rows) == 0 {
		return nil, nil
	}
	id := newInsertID()
	err := p.st.insert(ctx, rows, insertQueryID(p.st.db, p.kcfg.RawTopic, parts, strconv.FormatUint(id, 16)), id)
	switch {
	case err == nil:
		return nil, nil
	case !backoff.Refused(err):
		return nil, err
	case len(rows) == 1:
		r := &rows[0]
		return []refusal{{part: r.SrcPartition, off: r.SrcOffset, index: r.SrcIndex, err: err}}, nil
	}
	h := len(rows) / 2
	left, err := p.bisect(ctx, parts, rows[:h])
	if err != nil {
		return nil, err
	}
	right, err := p.bisect(ctx, parts, rows[h:])
	if err != nil {
		return nil, err
	}
	return append(left, right...), nil
}

// deadLetterRefused reads the refused rows' records back from the raw
// topic (the batch no longer holds them) and produces them to the
// dead-letter topic, one per record, before the batch can be committed.
func (p *Processor) deadLetterRefused(ctx context.Context, refused []refusal) error {
	if len(refused) == 0 {
		return nil
	}
	type at struct {
		part int32
		off  int64
	}
	first := map[at]refusal{}
	var order []at
	for _, r := range refused {
		k := at{r.part, r.off}
		if _, ok := first[k]; !ok {
			first[k] = r
			order = append(order, k)
		}
	}
	var dead []*kgo.Record
	for _, k := range order {
		var rec *kgo.Record
		if err := p.retry(ctx, "read a refused record back", func() error {
			var e error
			rec, e = p.readRecord(ctx, k.part, k.off)
			return e
		}); err != nil {
			return err
		}
		r := first[k]
		dead = append(dead, deadLetter(rec, &RefusedError{Index: r.index, Err: r.err}))
	}
	if err := p.retry(ctx, "produce dead letters", func() error {
		for _, r := range dead {
			r.Topic = p.kcfg.DLQTopic
		}
		return p.cl.ProduceSync(ctx, dead...).FirstErr()
	}); err != nil {
		return err
	}
	for _, r := range dead {
		p.stats.DeadLetters.Add(1)
		p.log.Warn("dead letter", "partition", wire.Header(r, wire.HeaderDLQPartition), "offset", wire.Header(r, wire.HeaderDLQOffset),
			"stage", wire.Header(r, wire.HeaderDLQStage), "err", wire.Header(r, wire.HeaderDLQError))
	}
	return nil
}

// readRecord fetches one record of the raw topic with a client of its own.
func (p *Processor) readRecord(ctx context.Context, part int32, off int64) (*kgo.Record, error) {
	cl, err := kafka.NewClient(p.kcfg, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{
		p.kcfg.RawTopic: {part: kgo.NewOffset().At(off)},
	}))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("read %s/%d@%d: %w", p.kcfg.RawTopic, part, off, err)
		}
		var found *kgo.Record
		fs.EachRecord(func(r *kgo.Record) {
			if r.Partition == part && r.Offset == off {
				found = r
			}
		})
		if found != nil {
			return found, nil
		}
		if errs := fs.Errors(); len(errs) > 0 {
			return nil, fmt.Errorf("read %s/%d@%d: %w", p.kcfg.RawTopic, part, off, errs[0].Err)
		}
	}
}
