// Package processor turns raw LiveChat webhooks from Kafka into rows of the
// ClickHouse events table, each unique event exactly once.
//
// A Processor polls the raw topic (consume.go), decodes and transforms
// records into batches (queue.go), de-duplicates them (dedup.go), streams
// them into a long INSERT (insert.go) and commits their offsets only once
// that INSERT completed (commit.go). An insert that fails makes it do what
// a restart does: rewind to the last stored offsets (rebalance.go). The
// flow step by step, and why it stores each event once, is in
// docs/ARCHITECTURE.md, section 2.
//
// Infrastructure failures (ClickHouse down, Kafka away) are retried forever
// with jittered exponential backoff and never reach the dead-letter topic;
// only records that cannot be decoded or validated go there.
package processor

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lcpipe/lcpipe/internal/backoff"
	"github.com/lcpipe/lcpipe/internal/kafka"
)

// Processor consumes the raw topic and writes events. Create with New, run
// with Run; Stats may be called concurrently.
type Processor struct {
	cfg   Config
	kcfg  kafka.Config
	st    *store
	dir   Directory
	log   *slog.Logger
	users *UserCache

	dd *deduper // the preparer decides with it; a rewind empties it (recover)
	// repaired: INSERTs whose derived tables were checked (repair.go).
	repaired map[uint64]struct{}

	cl *kgo.Client

	q *queue // batches between the poll loop and the flusher

	// lostGen counts onLost calls: an insertion opened before the last
	// must not complete.
	lostGen atomic.Int64
	// careful (refused.go), the flusher's: per partition, insert batches
	// one by one up to this offset.
	careful map[int32]int64

	// rng is range mode's state (rangemode.go); nil in live mode.
	rng *rangeState

	tel *procTel // spans and metrics (telemetry.go)

	stats Stats
}

// New checks the options and builds a Processor.
func New(o Options) (*Processor, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	cfg := o.Config.withDefaults()
	log := cmp.Or(o.Log, slog.New(slog.DiscardHandler))
	p := &Processor{
		cfg:      cfg,
		kcfg:     o.Kafka,
		st:       &store{conn: o.ClickHouse, db: o.Database},
		dir:      o.Directory,
		log:      log,
		users:    NewUserCache(cfg.UserCacheSize),
		repaired: map[uint64]struct{}{},
		q:        newQueue(cfg),
		careful:  map[int32]int64{},
	}
	p.dd = newDeduper(cfg, o.Kafka.RawTopic, p.st, p.retry)
	p.tel = newProcTel(o.Telemetry, p)
	if p.dir != nil {
		p.dir = countingDirectory{p.dir, p.tel}
	}
	return p, nil
}

// Run consumes until ctx is cancelled, then flushes what it read, commits
// and leaves the group (bounded by ShutdownTimeout). It returns nil on a
// clean shutdown.
func (p *Processor) Run(ctx context.Context) error {
	opts := []kgo.Opt{
		kgo.ConsumerGroup(p.cfg.Group),
		kgo.ConsumeTopics(p.kcfg.RawTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		// Rebalance callbacks run only between polls, so a revoke sees every
		// polled record in a batch and can flush and commit them.
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsAssigned(p.onAssigned),
		kgo.OnPartitionsRevoked(p.onRevoked),
		kgo.OnPartitionsLost(p.onLost),
		kgo.FetchMaxBytes(p.cfg.FetchMaxBytes),
		kgo.FetchMaxPartitionBytes(p.cfg.FetchMaxBytes / 4),
		kgo.MaxConcurrentFetches(2),
		kgo.SessionTimeout(p.cfg.SessionTimeout),
		kgo.HeartbeatInterval(min(3*time.Second, p.cfg.SessionTimeout/6)),
	}
	if p.cfg.Range != nil { // range mode: own consumer, no group
		opts = p.rangeClientOpts()
	}
	opts = append(opts, p.tel.kafkaOpts(p.kcfg.DLQTopic)...)
	cl, err := kafka.NewClient(p.kcfg, opts...)
	if err != nil {
		return err
	}
	p.cl = cl
	ensureCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = kafka.EnsureTopics(ensureCtx, cl, p.kcfg, p.log, p.kcfg.RawTopic, p.kcfg.DLQTopic)
	cancel()
	var setting *kafka.SettingError
	if errors.As(err, &setting) { // a wrong password or CA: retrying cannot help
		cl.Close()
		return fmt.Errorf("processor: %w", err)
	}
	if err != nil && ctx.Err() == nil {
		p.log.Warn("could not ensure topics; continuing", "err", err)
	}

	// flushCtx outlives ctx by ShutdownTimeout so the last batch can land.
	flushCtx, hardStop := context.WithCancel(context.WithoutCancel(ctx))
	defer hardStop()
	flusherDone := make(chan struct{})
	go func() {
		defer close(flusherDone)
		p.flusher(flushCtx)
	}()
	p.log.Info("processor started", "group", p.cfg.Group, "topic", p.kcfg.RawTopic, "batch_rows", p.cfg.BatchRows,
		"batch_bytes", p.cfg.BatchBytes, "batch_linger", p.cfg.BatchLinger, "dedup_window", p.cfg.DedupWindow)

	pollCtx := ctx
	if p.cfg.Range != nil { // range mode: the loop ends at the end offsets
		p.rangeWaitInserts(ctx)
		p.q.mu.Lock()
		pollCtx = p.rangeStart(ctx)
		p.q.mu.Unlock()
	}
	waitLag := p.startLag(ctx, cl)
	p.tel.running(cl)
	p.pollLoop(pollCtx)
	p.tel.stopped()
	defer waitLag()

	// Shutdown: flush everything read, then leave the group.
	timer := time.AfterFunc(p.cfg.ShutdownTimeout, hardStop)
	defer timer.Stop()
	var last uint64
	p.q.update(func() {
		p.q.pollDone = true
		p.q.seal()
		last = p.q.sealedSeq
	})
	ok := p.q.waitFlushed(last)
	p.q.stop()
	<-flusherDone
	cl.Close()
	if !ok {
		return errors.New("processor: shutdown: the last batches were not stored (timeout or insert failure; their offsets are not committed, they will be read again)")
	}
	p.log.Info("processor stopped", "inserted", p.stats.Inserted.Load(), "records", p.stats.Records.Load())
	return nil
}

// backoff sleeps the attempt's jittered exponential delay
// (RETRY bounds, internal/backoff); false when ctx ended.
func (p *Processor) backoff(ctx context.Context, attempt int) bool {
	return backoff.Policy{Min: p.cfg.RetryMin, Max: p.cfg.RetryMax}.Wait(ctx, attempt) == nil
}

// retry runs op until it succeeds, backing off between attempts; it gives
// up only when ctx ends. It is for the processor's own queries and
// produces, whose failures are the infrastructure's whatever their kind:
// they are repeated, never turned into dead letters.
func (p *Processor) retry(ctx context.Context, what string, op func() error) error {
	for attempt := 0; ; attempt++ {
		err := op()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w (gave up: %w)", what, err, ctx.Err())
		}
		p.log.Warn("retrying", "what", what, "attempt", attempt+1, "err", err)
		if !p.backoff(ctx, attempt) {
			return fmt.Errorf("%s: %w", what, ctx.Err())
		}
	}
}
